/* Unit tests for the timer heap (src/transport/timer.c): arming, re-arming
 * earlier and later, cancelling, the next expiry, firing in time order,
 * handlers that re-arm themselves, growth past the initial capacity, and a
 * randomised comparison of 10000 timers against a sorted reference. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "transport/timer.h"

/* A test timer: the heap node plus what the handlers record. */
typedef struct tt {
	ferry__timer t;
	int id;
	int fired;
	uint64_t fired_when; /* when_us as seen by the handler */
	/* Self re-arm: when rearm_delta is set, the handler re-arms this timer
	 * at when_us + rearm_delta... */
	int rearm;
	int64_t rearm_delta;
	/* ...and cancels this one (for cancel-from-handler tests). */
	struct tt *cancel_other;
} tt;

static ferry__timers *cur_ts; /* heap the handlers act on */

/* Firing order log. */
#define LOG_MAX 20000
static int fire_log[LOG_MAX];
static int nlog;

static void on_fire(ferry__timer *t)
{
	tt *x = (tt *)t;
	assert_false(ferry__timer_armed(t)); /* disarmed before fn runs */
	x->fired++;
	x->fired_when = t->when_us;
	if (nlog < LOG_MAX)
		fire_log[nlog++] = x->id;
	if (x->cancel_other != NULL)
		ferry__timer_cancel(cur_ts, &x->cancel_other->t);
	if (x->rearm)
		assert_int_equal(ferry__timer_arm(cur_ts, t,
		                                  (uint64_t)((int64_t)t->when_us +
		                                             x->rearm_delta)),
		                 0);
}

static void tt_init(tt *x, int id)
{
	memset(x, 0, sizeof(*x));
	x->id = id;
	x->t.fn = on_fire;
}

static int setup(void **state)
{
	ferry__timers *ts = calloc(1, sizeof(*ts));
	if (ts == NULL || ferry__timers_init(ts, 0) != 0)
		return -1;
	cur_ts = ts;
	nlog = 0;
	*state = ts;
	return 0;
}

static int teardown(void **state)
{
	ferry__timers *ts = *state;
	/* A failed test may leave timers armed that lived on its stack: do not
	 * let fini touch them. Tests that pass leave the heap empty. */
	int leftover = ts->n != 0;
	ts->n = 0;
	ferry__timers_fini(ts);
	free(ts);
	cur_ts = NULL;
	return leftover ? -1 : 0;
}

/* Heap invariant, slots consistent with positions. */
static void check_heap(const ferry__timers *ts)
{
	assert_true(ts->n <= ts->cap);
	for (uint32_t i = 0; i < ts->n; i++) {
		assert_int_equal(ts->heap[i]->slot, i + 1);
		if (i > 0)
			assert_true(ts->heap[(i - 1) / 2]->when_us <=
			            ts->heap[i]->when_us);
	}
}

static void test_empty(void **state)
{
	ferry__timers *ts = *state;
	assert_int_equal(ts->n, 0);
	assert_true(ts->cap >= 16);
	assert_true(ferry__timers_next(ts) == UINT64_MAX);
	assert_int_equal(ferry__timers_run(ts, 0), 0);
	assert_int_equal(ferry__timers_run(ts, UINT64_MAX), 0);
}

static void test_arm_cancel(void **state)
{
	ferry__timers *ts = *state;
	tt a, b, c;
	tt_init(&a, 1), tt_init(&b, 2), tt_init(&c, 3);
	assert_false(ferry__timer_armed(&a.t));

	assert_int_equal(ferry__timer_arm(ts, &a.t, 100), 0);
	assert_true(ferry__timer_armed(&a.t));
	assert_int_equal(a.t.when_us, 100);
	assert_true(ferry__timers_next(ts) == 100);
	assert_int_equal(ferry__timer_arm(ts, &b.t, 50), 0);
	assert_true(ferry__timers_next(ts) == 50);
	assert_int_equal(ferry__timer_arm(ts, &c.t, 200), 0);
	assert_true(ferry__timers_next(ts) == 50);
	assert_int_equal(ts->n, 3);
	check_heap(ts);

	/* Cancel the earliest. */
	ferry__timer_cancel(ts, &b.t);
	assert_false(ferry__timer_armed(&b.t));
	assert_int_equal(ts->n, 2);
	assert_true(ferry__timers_next(ts) == 100);
	check_heap(ts);

	/* Cancelling something not armed is harmless, twice over. */
	ferry__timer_cancel(ts, &b.t);
	ferry__timer_cancel(ts, &b.t);
	tt d;
	tt_init(&d, 4);
	ferry__timer_cancel(ts, &d.t);
	assert_int_equal(ts->n, 2);
	check_heap(ts);

	/* Cancel the last in the array, then everything. */
	ferry__timer_cancel(ts, &c.t);
	ferry__timer_cancel(ts, &a.t);
	assert_int_equal(ts->n, 0);
	assert_true(ferry__timers_next(ts) == UINT64_MAX);
	assert_int_equal(ferry__timers_run(ts, UINT64_MAX), 0);
	assert_int_equal(a.fired + b.fired + c.fired + d.fired, 0);
}

static void test_rearm(void **state)
{
	ferry__timers *ts = *state;
	tt x[8];
	for (int i = 0; i < 8; i++) {
		tt_init(&x[i], i);
		assert_int_equal(ferry__timer_arm(ts, &x[i].t, 1000 + 100 * (uint64_t)i),
		                 0);
	}
	check_heap(ts);
	/* Re-arm later: no longer the earliest, count unchanged. */
	assert_int_equal(ferry__timer_arm(ts, &x[0].t, 5000), 0);
	assert_int_equal(ts->n, 8);
	assert_true(ferry__timers_next(ts) == 1100);
	check_heap(ts);
	/* Re-arm earlier: becomes the earliest. */
	assert_int_equal(ferry__timer_arm(ts, &x[7].t, 10), 0);
	assert_int_equal(ts->n, 8);
	assert_true(ferry__timers_next(ts) == 10);
	check_heap(ts);
	/* Re-arm to the same time: no change. */
	assert_int_equal(ferry__timer_arm(ts, &x[3].t, 1300), 0);
	check_heap(ts);
	/* Re-arm a middle one earlier and later. */
	assert_int_equal(ferry__timer_arm(ts, &x[4].t, 1050), 0);
	check_heap(ts);
	assert_int_equal(ferry__timer_arm(ts, &x[4].t, 1650), 0);
	check_heap(ts);

	/* Fire all: time order 7(10) 1(1100) 2(1200) 3(1300) 5(1500) 6(1600)
	 * 4(1650) 0(5000). */
	assert_int_equal(ferry__timers_run(ts, UINT64_MAX), 8);
	static const int want[] = {7, 1, 2, 3, 5, 6, 4, 0};
	assert_int_equal(nlog, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(fire_log[i], want[i]);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(x[i].fired, 1);
		assert_false(ferry__timer_armed(&x[i].t));
	}
	assert_int_equal(ts->n, 0);
}

static void test_run_in_order(void **state)
{
	ferry__timers *ts = *state;
	tt x[6];
	static const uint64_t when[] = {30, 10, 50, 20, 10, 40};
	for (int i = 0; i < 6; i++) {
		tt_init(&x[i], i);
		assert_int_equal(ferry__timer_arm(ts, &x[i].t, when[i]), 0);
	}
	/* Nothing due yet. */
	assert_int_equal(ferry__timers_run(ts, 9), 0);
	assert_int_equal(nlog, 0);
	/* Due exactly at now fires (<=). */
	assert_int_equal(ferry__timers_run(ts, 10), 2);
	assert_int_equal(nlog, 2);
	assert_true((fire_log[0] == 1 && fire_log[1] == 4) ||
	            (fire_log[0] == 4 && fire_log[1] == 1));
	assert_true(ferry__timers_next(ts) == 20);
	/* Run to 35: 20 then 30. */
	assert_int_equal(ferry__timers_run(ts, 35), 2);
	assert_int_equal(fire_log[2], 3);
	assert_int_equal(fire_log[3], 0);
	assert_true(ferry__timers_next(ts) == 40);
	/* A run at an earlier time than before fires nothing. */
	assert_int_equal(ferry__timers_run(ts, 5), 0);
	assert_int_equal(ferry__timers_run(ts, 1000), 2);
	assert_int_equal(fire_log[4], 5);
	assert_int_equal(fire_log[5], 2);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(x[i].fired, 1);
		assert_true(x[i].fired_when == when[i]);
	}
	assert_int_equal(ts->n, 0);
	assert_true(ferry__timers_next(ts) == UINT64_MAX);
}

/* A handler that re-arms itself as already due fires once per run call:
 * the re-arm is moved to now + 1 (timer.h), so it waits for the next run. */
static void test_self_rearm_due(void **state)
{
	ferry__timers *ts = *state;
	tt a;
	tt_init(&a, 1);
	a.rearm = 1;
	a.rearm_delta = 0; /* same time: always due */
	assert_int_equal(ferry__timer_arm(ts, &a.t, 100), 0);
	for (int i = 1; i <= 5; i++) {
		uint64_t now = 100 + (uint64_t)i - 1;
		assert_int_equal(ferry__timers_run(ts, now), 1);
		assert_int_equal(a.fired, i);
		assert_true(ferry__timer_armed(&a.t));
		assert_true(a.t.when_us == now + 1);
		/* the same clock again: nothing is due */
		assert_int_equal(ferry__timers_run(ts, now), 0);
	}
	/* Re-armed in the past: still once per call, at now + 1. */
	a.rearm_delta = -50;
	assert_int_equal(ferry__timers_run(ts, 1000), 1);
	assert_int_equal(a.fired, 6);
	assert_true(a.t.when_us == 1001);
	assert_int_equal(ferry__timers_run(ts, 1001), 1);
	assert_int_equal(a.fired, 7);
	/* Re-armed in the future: waits. */
	a.rearm_delta = 10000;
	assert_int_equal(ferry__timers_run(ts, 1002), 1);
	assert_int_equal(ferry__timers_run(ts, 1002), 0);
	assert_int_equal(a.fired, 8);
	ferry__timer_cancel(ts, &a.t);
}

/* Several due timers, one re-arming itself as due (a periodic timer
 * catching up): every timer due at entry fires exactly once, the re-armed
 * one waits for the next call. The budget of "n at entry" alone does not
 * guarantee this: the re-armed timer can sort before an older due one. */
static void test_self_rearm_with_others(void **state)
{
	ferry__timers *ts = *state;
	tt a, b, c;
	tt_init(&a, 1), tt_init(&b, 2), tt_init(&c, 3);
	a.rearm = 1;
	a.rearm_delta = 10; /* period 10, far behind "now" */
	assert_int_equal(ferry__timer_arm(ts, &a.t, 10), 0);
	assert_int_equal(ferry__timer_arm(ts, &b.t, 50), 0);
	assert_int_equal(ferry__timer_arm(ts, &c.t, 60), 0);
	int n = ferry__timers_run(ts, 100);
	if (a.fired != 1 || b.fired != 1 || c.fired != 1)
		fail_msg("one run at 100 fired a %d, b %d, c %d times (returned %d); "
		         "want 1 each",
		         a.fired, b.fired, c.fired, n);
	assert_int_equal(n, 3);
	assert_true(ferry__timer_armed(&a.t));
	assert_true(a.t.when_us == 101); /* overdue re-arm: now + 1 */
	ferry__timer_cancel(ts, &a.t);
}

/* Handlers that cancel another due timer, or arm new ones. */
static void test_cancel_from_handler(void **state)
{
	ferry__timers *ts = *state;
	tt a, b, c;
	tt_init(&a, 1), tt_init(&b, 2), tt_init(&c, 3);
	a.cancel_other = &b; /* a fires first and cancels b, also due */
	assert_int_equal(ferry__timer_arm(ts, &a.t, 10), 0);
	assert_int_equal(ferry__timer_arm(ts, &b.t, 20), 0);
	assert_int_equal(ferry__timer_arm(ts, &c.t, 30), 0);
	assert_int_equal(ferry__timers_run(ts, 100), 2);
	assert_int_equal(a.fired, 1);
	assert_int_equal(b.fired, 0);
	assert_int_equal(c.fired, 1);
	assert_false(ferry__timer_armed(&b.t));
	assert_int_equal(ts->n, 0);

	/* Cancelling itself from its own handler (already disarmed). */
	tt d;
	tt_init(&d, 4);
	d.cancel_other = &d;
	assert_int_equal(ferry__timer_arm(ts, &d.t, 1), 0);
	assert_int_equal(ferry__timers_run(ts, 1), 1);
	assert_int_equal(ts->n, 0);
}

/* Growth past the initial capacity (16 for cap 0), and fini disarms. */
static void test_growth(void **state)
{
	ferry__timers *ts = *state;
	uint32_t cap0 = ts->cap;
	enum { N = 1000 };
	tt *x = calloc(N, sizeof(*x));
	assert_non_null(x);
	for (int i = 0; i < N; i++) {
		tt_init(&x[i], i);
		/* Descending times: every arm sifts to the root. */
		assert_int_equal(ferry__timer_arm(ts, &x[i].t, (uint64_t)(N - i)), 0);
	}
	assert_int_equal(ts->n, N);
	assert_true(ts->cap > cap0);
	assert_true(ts->cap >= N);
	check_heap(ts);
	assert_true(ferry__timers_next(ts) == 1);
	/* Half of them fire, in order. */
	assert_int_equal(ferry__timers_run(ts, N / 2), N / 2);
	for (int i = 0; i < N / 2; i++)
		assert_int_equal(fire_log[i], N - 1 - i);
	check_heap(ts);
	/* fini disarms what is left. */
	ferry__timers_fini(ts);
	for (int i = 0; i < N; i++)
		assert_false(ferry__timer_armed(&x[i].t));
	assert_int_equal(ferry__timers_init(ts, 40), 0);
	assert_true(ts->cap >= 40);
	free(x);
}

/* Randomised: 10000 timers, random arms, re-arms and cancels, fired in
 * steps; the firing order must match a reference sorted by time. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

typedef struct ref_ent {
	uint64_t when;
	int id;
} ref_ent;

static int ref_cmp(const void *a, const void *b)
{
	const ref_ent *x = a, *y = b;
	if (x->when != y->when)
		return x->when < y->when ? -1 : 1;
	return x->id - y->id;
}

static void test_random_vs_reference(void **state)
{
	ferry__timers *ts = *state;
	enum { N = 10000, TMAX = 1000000 };
	tt *x = calloc(N, sizeof(*x));
	ref_ent *ref = calloc(N, sizeof(*ref));
	uint64_t *want = calloc(N, sizeof(*want)); /* 0 = not armed */
	assert_non_null(x);
	assert_non_null(ref);
	assert_non_null(want);
	for (int i = 0; i < N; i++)
		tt_init(&x[i], i);

	/* Time ranges per round: sparse, then dense (many equal and adjacent
	 * times, where tie handling in the sift loops matters). */
	static const uint64_t span[] = {TMAX, 1000, 50, 3, TMAX};
	for (int round = 0; round < 5; round++) {
		/* Arm every timer at a random time, some more than once. */
		for (int i = 0; i < N; i++) {
			uint64_t w = 1 + rng() % span[round];
			assert_int_equal(ferry__timer_arm(ts, &x[i].t, w), 0);
			want[i] = w;
		}
		for (int k = 0; k < N; k++) {
			int i = (int)(rng() % N);
			uint64_t r = rng() % 3;
			if (r == 0) { /* cancel */
				ferry__timer_cancel(ts, &x[i].t);
				want[i] = 0;
			} else { /* re-arm (or arm again after a cancel) */
				uint64_t w = 1 + rng() % span[round];
				assert_int_equal(ferry__timer_arm(ts, &x[i].t, w), 0);
				want[i] = w;
			}
		}
		check_heap(ts);

		/* Reference: every armed timer, sorted. */
		int nref = 0;
		for (int i = 0; i < N; i++)
			if (want[i] != 0)
				ref[nref++] = (ref_ent){want[i], i};
		qsort(ref, (size_t)nref, sizeof(*ref), ref_cmp);
		assert_int_equal(ts->n, nref);
		for (int i = 0; i < N; i++) {
			assert_int_equal(ferry__timer_armed(&x[i].t), want[i] != 0);
			x[i].fired = 0;
		}

		/* Fire in random steps; check the next expiry as we go. */
		nlog = 0;
		uint64_t now = 0;
		int done = 0;
		while (done < nref) {
			assert_true(ferry__timers_next(ts) == ref[done].when);
			now += rng() % (span[round] / 50 + 2);
			int expect = 0;
			while (done + expect < nref && ref[done + expect].when <= now)
				expect++;
			int before = nlog;
			assert_int_equal(ferry__timers_run(ts, now), expect);
			assert_int_equal(nlog - before, expect);
			/* Same times may fire in any order: compare as multisets of
			 * (when, id) by checking times are non-decreasing and each
			 * fired timer is one the reference expects by now. */
			uint64_t last = 0;
			for (int k = before; k < nlog; k++) {
				tt *f = &x[fire_log[k]];
				assert_int_equal(f->fired, 1);
				assert_true(f->fired_when == want[f->id]);
				assert_true(f->fired_when >= last);
				assert_true(f->fired_when <= now);
				last = f->fired_when;
			}
			done += expect;
		}
		assert_int_equal(ts->n, 0);
		assert_true(ferry__timers_next(ts) == UINT64_MAX);
		for (int i = 0; i < N; i++)
			assert_int_equal(x[i].fired, want[i] != 0);
		for (int i = 0; i < N; i++)
			want[i] = 0;
	}

	/* Interleaved: cancel random armed timers between runs. */
	for (int i = 0; i < N; i++) {
		want[i] = 1 + rng() % TMAX;
		x[i].fired = 0;
		assert_int_equal(ferry__timer_arm(ts, &x[i].t, want[i]), 0);
	}
	uint64_t now = 0;
	while (ts->n > 0) {
		for (int k = 0; k < 50; k++) {
			int i = (int)(rng() % N);
			if (ferry__timer_armed(&x[i].t)) {
				ferry__timer_cancel(ts, &x[i].t);
				want[i] = 0;
			}
		}
		check_heap(ts);
		now += TMAX / 100;
		int expect = 0;
		for (int i = 0; i < N; i++)
			if (want[i] != 0 && want[i] <= now && x[i].fired == 0)
				expect++;
		assert_int_equal(ferry__timers_run(ts, now), expect);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(x[i].fired, want[i] != 0);

	free(x);
	free(ref);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_arm_cancel, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rearm, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_run_in_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_self_rearm_due, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_self_rearm_with_others, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_cancel_from_handler, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_growth, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_random_vs_reference, setup,
	                                        teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
