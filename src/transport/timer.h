/* Timers of a context: a binary min-heap of intrusive timer nodes.
 * arm/cancel are O(log n), finding the next expiry O(1), firing k due
 * timers O(k log n). The heap array grows by doubling (allocation only while
 * warming up), so arming never allocates in steady state. */
#ifndef FERRY_TIMER_H
#define FERRY_TIMER_H
#include <stdbool.h>
#include <stdint.h>

typedef struct ferry__timer ferry__timer;
typedef void (*ferry__timer_fn)(ferry__timer *t);
struct ferry__timer {
	uint64_t when_us;
	uint64_t later_us; /* ferry__timer_push: fire then instead (0 = no) */
	uint32_t slot;     /* heap index + 1; 0 = not armed */
	ferry__timer_fn fn;
};

typedef struct ferry__timers {
	ferry__timer **heap;
	uint32_t n, cap;
	bool running;     /* inside ferry__timers_run */
	uint64_t run_now; /* its now_us */
} ferry__timers;

int ferry__timers_init(ferry__timers *ts, uint32_t cap);
void ferry__timers_fini(ferry__timers *ts);
/* (Re)arm t to fire at when_us. 0 or -ENOMEM. */
int ferry__timer_arm(ferry__timers *ts, ferry__timer *t, uint64_t when_us);
/* Arm t for when_us, cheaply when that only postpones it: an armed timer
 * due earlier keeps its heap place and, when it comes due, is re-armed for
 * when_us instead of firing. For deadlines pushed back on every packet
 * (retransmission timers): one heap operation per interval, not per
 * packet. */
int ferry__timer_push(ferry__timers *ts, ferry__timer *t, uint64_t when_us);
/* Disarm; harmless when not armed. */
void ferry__timer_cancel(ferry__timers *ts, ferry__timer *t);
static inline int ferry__timer_armed(const ferry__timer *t)
{
	return t->slot != 0;
}
/* Earliest expiry, or UINT64_MAX. */
uint64_t ferry__timers_next(const ferry__timers *ts);
/* Fire every timer due at now_us (each disarmed before its fn runs, so fn
 * may re-arm it). A timer armed during the run for a time <= now_us is
 * moved to now_us + 1: it fires at the next run, never twice in one, so a
 * handler that re-arms itself as already due cannot loop or starve the
 * other due timers. Returns the number fired. */
int ferry__timers_run(ferry__timers *ts, uint64_t now_us);

#endif
