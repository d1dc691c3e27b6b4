/* Message reassembly from fragments, shared by the datagram transports.
 *
 * In-order fragments are appended to the destination buffer at once, as
 * loans of the driver's packet memory (zero copy). Fragments ahead of the
 * first missing one are parked in a fixed window ring indexed by fragment
 * number; farther ones, duplicates and inconsistent ones are refused (the
 * caller drops and counts them). Nothing here allocates. */
#ifndef FERRY_REASM_H
#define FERRY_REASM_H

#include <stdint.h>

#include "ferry/driver.h"

#define FERRY_REASM_WINDOW 64 /* fragments parked ahead of the first missing */

typedef struct ferry__reasm {
	ferry_buf *dst;
	uint32_t msg_len, frag_bytes, nfrags;
	uint32_t next;   /* first missing fragment */
	uint32_t parked; /* fragments in the ring */
	uint8_t active;
	struct {
		ferry_pkt *pkt; /* NULL = empty slot */
		uint8_t *data;
		uint32_t len;
	} ring[FERRY_REASM_WINDOW];
} ferry__reasm;

enum ferry_reasm_verdict {
	FERRY_REASM_ACCEPTED = 0, /* taken; message not complete yet */
	FERRY_REASM_COMPLETE = 1, /* taken; dst now holds the whole message */
	FERRY_REASM_DUP = -1,     /* already have it (pkt not taken) */
	FERRY_REASM_AHEAD = -2,   /* beyond the window (not taken) */
	FERRY_REASM_MISMATCH = -3, /* msg_len/frag_bytes disagree (not taken) */
	FERRY_REASM_NOMEM = -4,   /* buffer could not take the loan (not taken) */
};

void ferry__reasm_start(ferry__reasm *r, ferry_buf *dst, uint32_t msg_len,
                        uint32_t frag_bytes);
/* Offer a fragment whose payload is data[0..len). */
int ferry__reasm_add(ferry__reasm *r, ferry_pkt *pkt, uint32_t frag,
                     uint32_t msg_len, uint32_t frag_bytes, uint8_t *data,
                     uint32_t len);
/* Give back parked packets and forget the message (dst is left alone). */
void ferry__reasm_abort(ferry__reasm *r);

/* Loan release callback for packet memory appended to buffers (arg = pkt):
 * releases on the owner thread, or queues to the context's handoff. */
void ferry__pkt_loan_release(void *arg, void *data);

#endif
