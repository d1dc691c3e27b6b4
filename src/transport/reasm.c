/* Reassembly (see reasm.h). The window ring is addressed by absolute
 * fragment number modulo its size, so parking and draining are O(1) and a
 * message of any length costs O(fragments). */
#include <string.h>

#include "reasm.h"

void ferry__reasm_start(ferry__reasm *r, ferry_buf *dst, uint32_t msg_len,
                        uint32_t frag_bytes)
{
	r->dst = dst;
	r->msg_len = msg_len;
	r->frag_bytes = frag_bytes;
	r->nfrags = msg_len == 0 || frag_bytes == 0
	                    ? 1
	                    : (uint32_t)(((uint64_t)msg_len + frag_bytes - 1) / frag_bytes);
	r->next = 0;
	r->parked = 0;
	r->active = 1;
}

static int reasm_take(ferry__reasm *r, ferry_pkt *pkt, uint8_t *data,
                      uint32_t len)
{
	if (len == 0) {
		ferry__pkt_loan_release(pkt, data);
		return 0;
	}
	return ferry_buf_append_loan(r->dst, data, len, ferry__pkt_loan_release,
	                             pkt);
}

int ferry__reasm_add(ferry__reasm *r, ferry_pkt *pkt, uint32_t frag,
                     uint32_t msg_len, uint32_t frag_bytes, uint8_t *data,
                     uint32_t len)
{
	if (msg_len != r->msg_len || frag_bytes != r->frag_bytes)
		return FERRY_REASM_MISMATCH;
	if (frag < r->next)
		return FERRY_REASM_DUP;
	if (frag - r->next >= FERRY_REASM_WINDOW)
		return FERRY_REASM_AHEAD;
	if (frag != r->next) {
		uint32_t slot = frag % FERRY_REASM_WINDOW;
		if (r->ring[slot].pkt != NULL)
			return FERRY_REASM_DUP;
		r->ring[slot].pkt = pkt;
		r->ring[slot].data = data;
		r->ring[slot].len = len;
		r->parked++;
		return FERRY_REASM_ACCEPTED;
	}
	if (reasm_take(r, pkt, data, len) != 0)
		return FERRY_REASM_NOMEM;
	r->next++;
	/* Drain parked successors. A failed append leaves the fragment parked
	 * and the message incomplete: its deadline reports the failure. */
	while (r->parked > 0) {
		uint32_t slot = r->next % FERRY_REASM_WINDOW;
		if (r->ring[slot].pkt == NULL)
			break;
		if (reasm_take(r, r->ring[slot].pkt, r->ring[slot].data,
		               r->ring[slot].len) != 0)
			break;
		r->ring[slot].pkt = NULL;
		r->parked--;
		r->next++;
	}
	if (r->next == r->nfrags) {
		r->active = 0;
		return FERRY_REASM_COMPLETE;
	}
	return FERRY_REASM_ACCEPTED;
}

void ferry__reasm_abort(ferry__reasm *r)
{
	for (uint32_t i = 0; r->parked > 0 && i < FERRY_REASM_WINDOW; i++) {
		if (r->ring[i].pkt == NULL)
			continue;
		ferry__pkt_loan_release(r->ring[i].pkt, r->ring[i].data);
		r->ring[i].pkt = NULL;
		r->parked--;
	}
	r->active = 0;
}
