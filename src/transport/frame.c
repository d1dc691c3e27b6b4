/* Fragmenting sends and drop accounting (see frame.h). Consecutive slices
 * of the message are taken with fresh iterators; the buffer's cursor makes
 * each slice O(1) amortised, so an N-fragment message costs O(N). */
#include "frame.h"

int ferry__frame_send(ferry__port *port, const ferry_addr *to,
                      ferry_wire_hdr *h, ferry_buf *msg, uint32_t frag_bytes,
                      uint32_t first, uint32_t last)
{
	uint32_t len = (uint32_t)ferry_buf_len(msg);
	uint32_t n = ferry__wire_nfrags(len, frag_bytes);
	/* Equal fragments, not full ones and a runt: on loopback a big
	 * datagram followed by a small one cost 27 us against 15 us for two
	 * halves (ferry-bench, 32868 B with a 32 KB cap); the kernel's
	 * per-datagram memory accounting seems to be the reason. */
	if (n > 1)
		frag_bytes = (uint32_t)(((uint64_t)len + n - 1) / n);
	if (last >= n)
		last = n - 1;
	h->msg_len = len;
	h->frag_bytes = (uint16_t)frag_bytes;
	uint8_t hdr[FERRY_WIRE_HDR_BYTES];
	int sent = 0;
	for (uint32_t f = first; f <= last; f++) {
		uint64_t off = (uint64_t)f * frag_bytes;
		uint32_t plen = f + 1 == n ? (uint32_t)(len - off) : frag_bytes;
		h->frag = f;
		h->flags = (uint8_t)((h->flags & ~FERRY_FLAG_LAST) |
		                     (f + 1 == n ? FERRY_FLAG_LAST : 0));
		ferry__wire_encode(h, hdr);
		ferry_buf_iter it;
		ferry_buf_iter_init(&it, msg, (size_t)off, plen);
		int rc = ferry__ep_send(port->ep, to, hdr, sizeof(hdr), &it);
		if (rc < 0) {
			port->ctx->cnt.tx_dropped++;
			return rc;
		}
		sent++;
	}
	return sent;
}

void ferry__frame_count_drop(ferry__port *port, int verdict)
{
	ferry__ctx_counters *c = &port->ctx->cnt;
	switch (verdict) {
	case FERRY_WIRE_SHORT: c->rx_short++; break;
	case FERRY_WIRE_BAD_MAGIC: c->rx_bad_magic++; break;
	case FERRY_WIRE_BAD_VERSION: c->rx_bad_version++; break;
	case FERRY_WIRE_BAD_TYPE: c->rx_bad_type++; break;
	case FERRY_WIRE_BAD_LENGTH: c->rx_bad_length++; break;
	default: break;
	}
	port->ep->cnt.rx_dropped++;
}

void ferry__frame_drop(ferry__port *port, ferry_pkt *pkt, int verdict)
{
	ferry__frame_count_drop(port, verdict);
	ferry__ep_release(pkt);
}

void ferry__frame_refused(ferry__port *port, ferry_pkt *pkt, int reasm_verdict)
{
	ferry__ctx_counters *c = &port->ctx->cnt;
	if (reasm_verdict == FERRY_REASM_DUP)
		c->rx_dup_frag++;
	else if (reasm_verdict == FERRY_REASM_AHEAD)
		c->rx_ahead_frag++;
	else if (reasm_verdict == FERRY_REASM_NOMEM)
		c->rx_nomem++;
	else
		c->rx_mismatch++;
	ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
}

uint32_t ferry__frame_bytes(const ferry__port *port)
{
	uint32_t b = port->caps.max_payload > FERRY_WIRE_HDR_BYTES
	                     ? port->caps.max_payload - FERRY_WIRE_HDR_BYTES
	                     : 0;
	return b > UINT16_MAX ? UINT16_MAX : b;
}
