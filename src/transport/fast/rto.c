/* RFC 6298 estimator (see rto.h). Integer arithmetic in microseconds; the
 * 1/8 and 1/4 gains are exact shifts of values kept unscaled, which loses
 * at most a microsecond per update. */
#include "rto.h"

static uint32_t rto_clamp(const fast_rto *r, uint64_t v)
{
	if (v < r->min_us)
		return r->min_us;
	if (v > r->max_us)
		return r->max_us;
	return (uint32_t)v;
}

void ferry__fast_rto_init(fast_rto *r, uint32_t min_us, uint32_t max_us)
{
	*r = (fast_rto){.min_us = min_us, .max_us = max_us};
	r->rto_us = rto_clamp(r, FAST_RTO_INITIAL_US);
}

static uint32_t rto_compute(const fast_rto *r)
{
	uint64_t k = 4ull * r->rttvar_us;
	return rto_clamp(r, (uint64_t)r->srtt_us + (k > FAST_RTO_GRANULARITY_US
	                                                    ? k
	                                                    : FAST_RTO_GRANULARITY_US));
}

void ferry__fast_rto_sample(fast_rto *r, uint32_t rtt)
{
	if (!r->have_sample) {
		r->srtt_us = rtt;
		r->rttvar_us = rtt / 2;
		r->have_sample = true;
	} else {
		uint32_t diff = r->srtt_us > rtt ? r->srtt_us - rtt : rtt - r->srtt_us;
		r->rttvar_us = (uint32_t)(((uint64_t)3 * r->rttvar_us + diff) / 4);
		r->srtt_us = (uint32_t)(((uint64_t)7 * r->srtt_us + rtt) / 8);
	}
	r->backoffs = 0;
	r->rto_us = rto_compute(r);
}

void ferry__fast_rto_backoff(fast_rto *r)
{
	r->backoffs++;
	r->rto_us = rto_clamp(r, 2ull * r->rto_us);
}

void ferry__fast_rto_progress(fast_rto *r)
{
	if (r->backoffs == 0)
		return;
	r->backoffs = 0;
	r->rto_us = r->have_sample ? rto_compute(r) : rto_clamp(r, FAST_RTO_INITIAL_US);
}
