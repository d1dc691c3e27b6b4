/* Retransmission timeout from measured round trips, after RFC 6298:
 * the first sample sets SRTT = R and RTTVAR = R/2; later ones
 * RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| and SRTT = 7/8 SRTT + 1/8 R;
 * RTO = SRTT + max(G, 4 RTTVAR), clamped to [min, max]. A timeout doubles
 * the RTO (backoff, up to max) until a new sample arrives. Samples come only
 * from packets sent once (Karn), which the caller ensures. Microseconds. */
#ifndef FERRY_FAST_RTO_H
#define FERRY_FAST_RTO_H

#include <stdbool.h>
#include <stdint.h>

#define FAST_RTO_MIN_US         1000u   /* loss recovery within a ms on loopback */
#define FAST_RTO_MAX_US         200000u /* liveness handles longer silence */
#define FAST_RTO_INITIAL_US     20000u  /* before any sample */
#define FAST_RTO_GRANULARITY_US 50u     /* G: the timer's resolution */

typedef struct fast_rto {
	uint32_t srtt_us, rttvar_us;
	uint32_t rto_us; /* current, backoff included */
	uint32_t min_us, max_us;
	uint32_t backoffs; /* consecutive timeouts since the last sample */
	bool have_sample;
} fast_rto;

void ferry__fast_rto_init(fast_rto *r, uint32_t min_us, uint32_t max_us);
/* A round-trip sample from a packet that was sent once. */
void ferry__fast_rto_sample(fast_rto *r, uint32_t rtt_us);
/* A retransmission timer fired: double the RTO (clamped). */
void ferry__fast_rto_backoff(fast_rto *r);
/* An ack acknowledged new data: the path works again, so the backoff ends
 * (as Linux TCP does) even without a new sample. */
void ferry__fast_rto_progress(fast_rto *r);

#endif
