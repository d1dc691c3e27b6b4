/* Message reassembly from fragments, shared by the datagram transports.
 *
 * Two modes, chosen when a message starts:
 * - loan (up to FERRY_REASM_WINDOW fragments): in-order fragments are
 *   appended to the destination buffer at once, as loans of the driver's
 *   packet memory (zero copy); fragments ahead of the first missing one are
 *   parked in a ring indexed by fragment number.
 * - copy (longer messages): the destination gets the whole message's
 *   memory up front and every fragment is copied to its offset and its
 *   packet given back at once, with a bitmap of what came. A long message
 *   thus never holds the driver's receive pool: at a 1500-byte MTU a 1 MiB
 *   message is ~730 datagrams, more than udp's whole pool, and loaning them
 *   all starved the receive path until the session was declared dead.
 * Duplicates, fragments beyond the window and inconsistent ones are
 * refused (the caller drops and counts them). Nothing here allocates but
 * the copy-mode destination (ferry_buf_alloc: the buffer's spare block
 * makes that malloc-free once a buffer is reused). */
#ifndef FERRY_REASM_H
#define FERRY_REASM_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry/driver.h"

#define FERRY_REASM_WINDOW     64 /* loan mode: fragments parked ahead */
#define FERRY_REASM_COPY_WORDS 64
/* copy mode: fragments accepted ahead of the first missing one */
#define FERRY_REASM_COPY_WINDOW (64 * FERRY_REASM_COPY_WORDS)

typedef struct ferry__reasm {
	ferry_buf *dst;
	uint32_t msg_len, frag_bytes, nfrags;
	uint32_t next;   /* first missing fragment */
	uint32_t parked; /* fragments held past next (ring or bitmap) */
	uint32_t high;   /* one past the highest fragment received */
	uint32_t got;    /* fragments taken */
	uint8_t active;
	uint8_t copy; /* copy mode: base holds the message */
	uint8_t *base;
	union {
		struct {
			ferry_pkt *pkt; /* NULL = empty slot */
			uint8_t *data;
			uint32_t len;
		} ring[FERRY_REASM_WINDOW];
		/* copy mode: bit f % COPY_WINDOW for f in [next, next + COPY_WINDOW) */
		uint64_t bits[FERRY_REASM_COPY_WORDS];
	} u;
} ferry__reasm;

enum ferry_reasm_verdict {
	FERRY_REASM_ACCEPTED = 0,  /* taken; message not complete yet */
	FERRY_REASM_COMPLETE = 1,  /* taken; dst now holds the whole message */
	FERRY_REASM_DUP = -1,      /* already have it (pkt not taken) */
	FERRY_REASM_AHEAD = -2,    /* beyond the window (not taken) */
	FERRY_REASM_MISMATCH = -3, /* msg_len/frag_bytes disagree (not taken) */
	FERRY_REASM_NOMEM = -4,    /* buffer could not take the loan (not taken) */
};

void ferry__reasm_start(ferry__reasm *r, ferry_buf *dst, uint32_t msg_len,
                        uint32_t frag_bytes);
/* Offer a fragment whose payload is data[0..len). */
int ferry__reasm_add(ferry__reasm *r, ferry_pkt *pkt, uint32_t frag, uint32_t msg_len,
                     uint32_t frag_bytes, uint8_t *data, uint32_t len);
/* Give back parked packets and forget the message (dst is left alone). */
void ferry__reasm_abort(ferry__reasm *r);
/* Fragments accepted ahead of the first missing one. */
static inline uint32_t ferry__reasm_window(const ferry__reasm *r)
{
	return r->copy ? FERRY_REASM_COPY_WINDOW : FERRY_REASM_WINDOW;
}
/* Is fragment f (>= next, within the window) here? */
static inline bool ferry__reasm_has(const ferry__reasm *r, uint32_t f)
{
	if (r->copy) {
		uint32_t b = f % FERRY_REASM_COPY_WINDOW;
		return (r->u.bits[b / 64] >> (b % 64)) & 1;
	}
	return r->u.ring[f % FERRY_REASM_WINDOW].pkt != NULL;
}

/* Loan release callback for packet memory appended to buffers (arg = pkt):
 * releases on the owner thread, or queues to the context's handoff. */
void ferry__pkt_loan_release(void *arg, void *data);

#endif
