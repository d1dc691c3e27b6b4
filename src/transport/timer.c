/* Min-heap timers (see timer.h for the complexity contract). */
#include <errno.h>
#include <stdint.h>

#include "base/alloc.h"
#include "timer.h"

int ferry__timers_init(ferry__timers *ts, uint32_t cap)
{
	ts->n = 0;
	ts->cap = cap < 16 ? 16 : cap;
	ts->heap = ferry__calloc(ts->cap, sizeof(*ts->heap));
	return ts->heap == NULL ? -ENOMEM : 0;
}

void ferry__timers_fini(ferry__timers *ts)
{
	for (uint32_t i = 0; i < ts->n; i++)
		ts->heap[i]->slot = 0;
	ferry__free(ts->heap);
	ts->heap = NULL;
	ts->n = ts->cap = 0;
}

static void timer_place(ferry__timers *ts, uint32_t i, ferry__timer *t)
{
	ts->heap[i] = t;
	t->slot = i + 1;
}

static void timer_up(ferry__timers *ts, uint32_t i)
{
	ferry__timer *t = ts->heap[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (ts->heap[parent]->when_us <= t->when_us)
			break;
		timer_place(ts, i, ts->heap[parent]);
		i = parent;
	}
	timer_place(ts, i, t);
}

static void timer_down(ferry__timers *ts, uint32_t i)
{
	ferry__timer *t = ts->heap[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= ts->n)
			break;
		if (c + 1 < ts->n && ts->heap[c + 1]->when_us < ts->heap[c]->when_us)
			c++;
		if (t->when_us <= ts->heap[c]->when_us)
			break;
		timer_place(ts, i, ts->heap[c]);
		i = c;
	}
	timer_place(ts, i, t);
}

int ferry__timer_arm(ferry__timers *ts, ferry__timer *t, uint64_t when_us)
{
	t->later_us = 0;
	if (ts->running && when_us <= ts->run_now)
		when_us = ts->run_now + 1;
	if (t->slot != 0) {
		uint64_t old = t->when_us;
		t->when_us = when_us;
		if (when_us < old)
			timer_up(ts, t->slot - 1);
		else
			timer_down(ts, t->slot - 1);
		return 0;
	}
	if (ts->n == ts->cap) {
		ferry__timer **h = ferry__realloc(ts->heap, 2 * sizeof(*h) * ts->cap);
		if (h == NULL)
			return -ENOMEM;
		ts->heap = h;
		ts->cap *= 2;
	}
	t->when_us = when_us;
	ts->heap[ts->n] = t;
	ts->n++;
	timer_up(ts, ts->n - 1);
	return 0;
}

int ferry__timer_push(ferry__timers *ts, ferry__timer *t, uint64_t when_us)
{
	if (t->slot != 0 && when_us >= t->when_us) {
		t->later_us = when_us;
		return 0;
	}
	return ferry__timer_arm(ts, t, when_us);
}

void ferry__timer_cancel(ferry__timers *ts, ferry__timer *t)
{
	if (t->slot == 0)
		return;
	uint32_t i = t->slot - 1;
	t->slot = 0;
	ts->n--;
	if (i == ts->n)
		return;
	ferry__timer *last = ts->heap[ts->n];
	timer_place(ts, i, last);
	if (i > 0 && ts->heap[(i - 1) / 2]->when_us > last->when_us)
		timer_up(ts, i);
	else
		timer_down(ts, i);
}

uint64_t ferry__timers_next(const ferry__timers *ts)
{
	return ts->n == 0 ? UINT64_MAX : ts->heap[0]->when_us;
}

int ferry__timers_run(ferry__timers *ts, uint64_t now_us)
{
	int fired = 0;
	ts->running = true;
	ts->run_now = now_us;
	while (ts->n > 0 && ts->heap[0]->when_us <= now_us) {
		ferry__timer *t = ts->heap[0];
		if (t->later_us > now_us) {
			/* pushed back since it was armed: not due yet */
			ferry__timer_arm(ts, t, t->later_us);
			continue;
		}
		ferry__timer_cancel(ts, t);
		fired++;
		t->fn(t);
	}
	ts->running = false;
	return fired;
}
