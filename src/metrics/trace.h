/* The event-trace ring: the last FERRY_TRACE_ENTRIES events of a context,
 * each a cycle-counter timestamp, a static format string and two integer
 * arguments. Recording is a timestamp read and four stores; nothing is
 * formatted until someone dumps the ring. */
#ifndef FERRY_TRACE_H
#define FERRY_TRACE_H

#include <stdint.h>
#include <time.h>

#include "ferry/metrics.h"

typedef struct ferry__trace_ev {
	uint64_t tsc;
	const char *fmt;
	uint64_t a, b;
} ferry__trace_ev;

typedef struct ferry__trace {
	uint64_t next;      /* events recorded so far; next slot = next % size */
	uint64_t tsc0, ns0; /* a clock pair taken at init, to convert ticks */
	ferry__trace_ev ev[FERRY_TRACE_ENTRIES];
} ferry__trace;

/* The cheapest monotonic tick source here: the TSC on x86-64, else the
 * monotonic clock in nanoseconds. */
static inline uint64_t ferry__ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#else
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static inline void ferry__trace_rec(ferry__trace *t, const char *fmt, uint64_t a,
                                    uint64_t b)
{
	ferry__trace_ev *e = &t->ev[t->next++ % FERRY_TRACE_ENTRIES];
	e->tsc = ferry__ticks();
	e->fmt = fmt;
	e->a = a;
	e->b = b;
}

void ferry__trace_init(ferry__trace *t);
int ferry__trace_dump(const ferry__trace *t, FILE *f);

#endif
