/* Trace ring dump. Ticks become nanoseconds with the rate measured between
 * the clock pair taken at init and one taken now, so no calibration delay
 * is ever paid up front. */
#include <errno.h>
#include <stdio.h>

#include "trace.h"

static uint64_t trace_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ferry__trace_init(ferry__trace *t)
{
	t->next = 0;
	t->tsc0 = ferry__ticks();
	t->ns0 = trace_ns();
}

int ferry__trace_dump(const ferry__trace *t, FILE *f)
{
	uint64_t tsc1 = ferry__ticks(), ns1 = trace_ns();
	double ns_per_tick =
	        tsc1 > t->tsc0 ? (double)(ns1 - t->ns0) / (double)(tsc1 - t->tsc0) : 1.0;
	uint64_t first =
	        t->next > FERRY_TRACE_ENTRIES ? t->next - FERRY_TRACE_ENTRIES : 0;
	for (uint64_t i = first; i < t->next; i++) {
		const ferry__trace_ev *e = &t->ev[i % FERRY_TRACE_ENTRIES];
		double ns = (double)(e->tsc - t->tsc0) * ns_per_tick;
		if (fprintf(f, "%.0f ", ns) < 0)
			return -EIO;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		fprintf(f, e->fmt, (unsigned long long)e->a, (unsigned long long)e->b);
#pragma GCC diagnostic pop
		fputc('\n', f);
	}
	return fflush(f) == 0 ? 0 : -errno;
}
