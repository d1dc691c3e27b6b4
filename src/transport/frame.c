/* Fragmenting sends and drop accounting (see frame.h). Consecutive slices
 * of the message are taken with fresh iterators; the buffer's cursor makes
 * each slice O(1) amortised, so an N-fragment message costs O(N). */
#include <string.h>

#include "frame.h"

int ferry__frame_send(ferry__port *port, const ferry_addr *to, ferry_wire_hdr *h,
                      ferry_buf *msg, uint32_t frag_bytes, uint32_t first, uint32_t last)
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
	h->frag = first;
	ferry__wire_encode(h, hdr); /* once; each fragment patches flags and frag */
	for (uint32_t f = first; f <= last; f++) {
		uint64_t off = (uint64_t)f * frag_bytes;
		uint32_t plen = f + 1 == n ? (uint32_t)(len - off) : frag_bytes;
		h->frag = f;
		h->flags = (uint8_t)((h->flags & ~FERRY_FLAG_LAST) |
		                     (f + 1 == n ? FERRY_FLAG_LAST : 0));
		ferry__wire_patch_frag(hdr, h->flags, f);
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
	case FERRY_WIRE_SHORT:
		c->rx_short++;
		break;
	case FERRY_WIRE_BAD_MAGIC:
		c->rx_bad_magic++;
		break;
	case FERRY_WIRE_BAD_VERSION:
		c->rx_bad_version++;
		break;
	case FERRY_WIRE_BAD_TYPE:
		c->rx_bad_type++;
		break;
	case FERRY_WIRE_BAD_LENGTH:
		c->rx_bad_length++;
		break;
	default:
		break;
	}
	port->ep->cnt.rx_dropped++;
	static const char *const why[] = {
	        [FERRY_WIRE_SHORT] = "shorter than the header",
	        [FERRY_WIRE_BAD_MAGIC] = "bad magic",
	        [FERRY_WIRE_BAD_TYPE] = "bad type or flags",
	        [FERRY_WIRE_BAD_LENGTH] = "length inconsistent with its fields",
	};
	if (verdict > 0 && verdict < (int)(sizeof(why) / sizeof(why[0])) &&
	    why[verdict] != NULL)
		ferry__log_drop(port->ctx, "port %u (%s): dropped malformed input: %s",
		                port->id, port->ep->drv->name, why[verdict]);
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

/* Version negotiation on datagram ports (docs/WIRE.md, "Versions"). A server
 * port answers a packet it refused for its version with one 40-byte
 * VERSION_MISMATCH, no bigger than the packet, and keeps no state for it; a
 * client port that hears either a VERSION_MISMATCH or a packet at another
 * version from its session's peer fails the session with FERRY_EVERSION. */
bool ferry__frame_version(ferry__port *port, ferry_pkt *pkt, int verdict,
                          const ferry_wire_hdr *h)
{
	uint8_t lo, hi, refused;
	bool mismatch = ferry__wire_is_mismatch(pkt->data, pkt->len, &lo, &hi, &refused);
	if (verdict != FERRY_WIRE_BAD_VERSION && !mismatch)
		return false;
	ferry_ctx *ctx = port->ctx;
	if (port->server) {
		if (mismatch) {
			/* Never answered, so two peers cannot ping-pong. */
			ferry__frame_drop(port, pkt, FERRY_WIRE_BAD_TYPE);
			return true;
		}
		uint8_t out[FERRY_WIRE_HDR_BYTES];
		ferry__wire_encode_mismatch(h->version, out);
		if (ferry__ep_send(port->ep, &pkt->src, out, sizeof(out), NULL) < 0)
			ctx->cnt.tx_dropped++;
		else
			ctx->cnt.version_mismatch_sent++;
		ferry__log_drop(ctx,
		                "port %u: refused a packet at wire version %u "
		                "(this library speaks %u-%u); answered VERSION_MISMATCH",
		                port->id, h->version, FERRY_WIRE_VERSION_MIN,
		                FERRY_WIRE_VERSION_MAX);
		ferry__frame_drop(port, pkt, FERRY_WIRE_BAD_VERSION);
		return true;
	}
	ferry_session *s = port->session;
	if (s == NULL || s->peer.len != pkt->src.len ||
	    memcmp(s->peer.u.bytes, pkt->src.u.bytes, pkt->src.len) != 0) {
		/* Not from our peer: an ordinary drop. */
		if (mismatch)
			ctx->cnt.rx_unknown_session++;
		ferry__frame_drop(port, pkt,
		                  mismatch ? FERRY_WIRE_OK : FERRY_WIRE_BAD_VERSION);
		return true;
	}
	if (mismatch)
		ferry__ep_release(pkt);
	else
		ferry__frame_drop(port, pkt, FERRY_WIRE_BAD_VERSION);
	if (!mismatch)
		lo = hi = h->version;
	ferry__session_version_refused(s, lo, hi);
	return true;
}
