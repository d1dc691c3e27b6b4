/* Reassembly (see reasm.h). The loan ring and the copy bitmap are both
 * addressed by absolute fragment number modulo their size, so parking and
 * draining are O(1) and a message of any length costs O(fragments). */
#include <errno.h>
#include <string.h>

#include "core.h"
#include "reasm.h"

void ferry__reasm_start(ferry__reasm *r, ferry_buf *dst, uint32_t msg_len,
                        uint32_t frag_bytes)
{
	r->dst = dst;
	r->msg_len = msg_len;
	r->frag_bytes = frag_bytes;
	r->nfrags =
	        msg_len == 0 || frag_bytes == 0
	                ? 1
	                : (uint32_t)(((uint64_t)msg_len + frag_bytes - 1) / frag_bytes);
	r->next = 0;
	r->parked = 0;
	r->high = 0;
	r->got = 0;
	r->active = 1;
	r->copy = 0;
	r->base = NULL;
	if (r->nfrags <= FERRY_REASM_WINDOW)
		return;
	/* Long: copy mode, if the memory is there (else loans, as before). */
	r->base = ferry_buf_alloc(dst, msg_len);
	if (r->base == NULL)
		return;
	r->copy = 1;
	memset(r->u.bits, 0, sizeof(r->u.bits));
}

static int reasm_take(ferry__reasm *r, ferry_pkt *pkt, uint8_t *data, uint32_t len)
{
	if (len == 0) {
		ferry__pkt_loan_release(pkt, data);
		return 0;
	}
	if (pkt->ep->ctx->rx_scarce) {
		/* The driver's pool runs low: keep a copy, give the packet back. */
		if (ferry_buf_append(r->dst, data, len) != 0)
			return -ENOMEM;
		pkt->ep->ctx->cnt.rx_scarce_copies++;
		ferry__pkt_loan_release(pkt, data);
		return 0;
	}
	return ferry_buf_append_loan(r->dst, data, len, ferry__pkt_loan_release, pkt);
}

static int reasm_done(ferry__reasm *r)
{
	if (r->next != r->nfrags)
		return FERRY_REASM_ACCEPTED;
	r->active = 0;
	return FERRY_REASM_COMPLETE;
}

static int reasm_add_copy(ferry__reasm *r, ferry_pkt *pkt, uint32_t frag, uint8_t *data,
                          uint32_t len)
{
	if (frag - r->next >= FERRY_REASM_COPY_WINDOW)
		return FERRY_REASM_AHEAD;
	uint64_t off = (uint64_t)frag * r->frag_bytes;
	uint32_t b = frag % FERRY_REASM_COPY_WINDOW;
	uint64_t bit = 1ull << (b % 64);
	if (r->u.bits[b / 64] & bit)
		return FERRY_REASM_DUP;
	memcpy(r->base + off, data, len);
	ferry__ep_release(pkt); /* dispatch runs on the owner thread */
	r->u.bits[b / 64] |= bit;
	r->parked++;
	r->got++;
	if (frag + 1 > r->high)
		r->high = frag + 1;
	/* Slide past what is here, clearing bits for their next use. */
	while (r->next < r->nfrags) {
		uint32_t n = r->next % FERRY_REASM_COPY_WINDOW;
		uint64_t nb = 1ull << (n % 64);
		if (!(r->u.bits[n / 64] & nb))
			break;
		r->u.bits[n / 64] &= ~nb;
		r->parked--;
		r->next++;
	}
	return reasm_done(r);
}

int ferry__reasm_add(ferry__reasm *r, ferry_pkt *pkt, uint32_t frag, uint32_t msg_len,
                     uint32_t frag_bytes, uint8_t *data, uint32_t len)
{
	if (msg_len != r->msg_len || frag_bytes != r->frag_bytes || frag >= r->nfrags)
		return FERRY_REASM_MISMATCH;
	/* A fragment is frag_bytes long, the last one what remains. Bytes
	 * after it are padding (docs/WIRE.md "Padding"); fewer is malformed
	 * (loan mode used to append whatever came, so a short fragment made a
	 * short message). */
	uint64_t off = (uint64_t)frag * r->frag_bytes;
	uint32_t want =
	        frag + 1 == r->nfrags ? (uint32_t)(r->msg_len - off) : r->frag_bytes;
	if (len < want)
		return FERRY_REASM_MISMATCH;
	len = want;
	if (frag < r->next)
		return FERRY_REASM_DUP;
	if (r->copy)
		return reasm_add_copy(r, pkt, frag, data, len);
	if (frag - r->next >= FERRY_REASM_WINDOW)
		return FERRY_REASM_AHEAD;
	if (frag + 1 > r->high)
		r->high = frag + 1;
	if (frag != r->next) {
		uint32_t slot = frag % FERRY_REASM_WINDOW;
		if (r->u.ring[slot].pkt != NULL)
			return FERRY_REASM_DUP;
		r->u.ring[slot].pkt = pkt;
		r->u.ring[slot].data = data;
		r->u.ring[slot].len = len;
		r->parked++;
		r->got++;
		return FERRY_REASM_ACCEPTED;
	}
	if (reasm_take(r, pkt, data, len) != 0)
		return FERRY_REASM_NOMEM;
	r->got++;
	r->next++;
	/* Drain parked successors. A failed append leaves the fragment parked
	 * and the message incomplete: its deadline reports the failure. */
	while (r->parked > 0) {
		uint32_t slot = r->next % FERRY_REASM_WINDOW;
		if (r->u.ring[slot].pkt == NULL)
			break;
		if (reasm_take(r, r->u.ring[slot].pkt, r->u.ring[slot].data,
		               r->u.ring[slot].len) != 0)
			break;
		r->u.ring[slot].pkt = NULL;
		r->parked--;
		r->next++;
	}
	return reasm_done(r);
}

void ferry__reasm_abort(ferry__reasm *r)
{
	if (r->copy) {
		/* Nothing held: the packets went back as they came. The bits
		 * share memory with the loan ring, which must read empty for
		 * the next (possibly short) message: a stale bit was a parked
		 * "packet" that the next abort released (found by fuzz_packet). */
		memset(r->u.bits, 0, sizeof(r->u.bits));
		r->parked = 0;
		r->active = 0;
		return;
	}
	for (uint32_t i = 0; r->parked > 0 && i < FERRY_REASM_WINDOW; i++) {
		if (r->u.ring[i].pkt == NULL)
			continue;
		ferry__pkt_loan_release(r->u.ring[i].pkt, r->u.ring[i].data);
		r->u.ring[i].pkt = NULL;
		r->parked--;
	}
	r->active = 0;
}
