/* The unreliable transport: requests and responses split into packets of
 * the driver's max payload and reassembled, with no acks and no
 * retransmission. It is the baseline that shows what reliability costs: a
 * lost fragment fails the call at its deadline (FERRY_ETIMEDOUT), never a
 * hang and never partial data.
 *
 * Wire: the common header with token and server hint zero; the client hint
 * names the client's session slot and is echoed in the response. The server
 * keeps no session state: single-fragment requests go straight to their
 * handler, multi-fragment ones are reassembled in a bounded table keyed by
 * (peer, client hint, channel, rpc id) whose entries expire. */
#include <errno.h>
#include <string.h>

#include "transport/core.h"
#include "transport/frame.h"

#define UNREL_REASM_MAX       128     /* partial requests per server port */
#define UNREL_REASM_EXPIRE_US 2000000 /* a partial request idle this long goes */

static const char *const unrel_keys[] = {"maxmsg", NULL};

static int unrel_session_init(ferry_session *s)
{
	s->frag_bytes = ferry__frame_bytes(s->port);
	if (s->frag_bytes == 0)
		return ferry__set_errmsg(s->ctx, -EMSGSIZE,
		                         "driver max payload leaves no room for data");
	return 0;
}

static int unrel_call_start(ferry__call *c)
{
	ferry_session *s = c->s;
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_DATA,
	        .channel = c->chan,
	        .opcode = c->opcode,
	        .client_hint = s->index,
	        .rpc_id = c->rpc_id,
	        .aux = (uint16_t)s->frag_bytes, /* our cap, for the response */
	};
	int rc = ferry__frame_send(s->port, &s->peer, &h, c->req, s->frag_bytes, 0,
	                           UINT32_MAX);
	/* A datagram the kernel refused is a loss like any other: the deadline
	 * reports it. Only a request that cannot be sent at all fails now. */
	return rc == -EMSGSIZE || rc == -EINVAL ? rc : 0;
}

static void unrel_client_pkt(ferry__port *port, ferry_pkt *pkt)
{
	ferry_ctx *ctx = port->ctx;
	ferry_wire_hdr h;
	int v = ferry__wire_decode(pkt->data, pkt->len, &h);
	if (ferry__frame_is_version(v, &h) && ferry__frame_version(port, pkt, v, &h))
		return;
	if (v != FERRY_WIRE_OK)
		return ferry__frame_drop(port, pkt, v);
	ferry_session *s = port->session;
	if (h.type != FERRY_PKT_DATA || (h.flags & FERRY_FLAG_RESPONSE) == 0 ||
	    s == NULL || h.client_hint != s->index) {
		ctx->cnt.rx_unknown_session++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	ferry__chan *ch = h.channel < s->nchan ? &s->chan[h.channel] : NULL;
	ferry__call *c = ch != NULL ? ch->call : NULL;
	if (c == NULL || c->rpc_id != h.rpc_id) {
		ferry__call_stale(s, h.channel, h.rpc_id);
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	if (h.aux != 0) {
		ferry__ep_release(pkt);
		ferry__call_response(c, ferry__wire_unstatus(h.aux));
		return;
	}
	if (h.msg_len > port->msg_max) {
		ctx->cnt.rx_too_big++;
		ferry__ep_release(pkt);
		ferry__call_complete(c, FERRY_ETOOBIG);
		return;
	}
	if (!ch->rx.active)
		ferry__reasm_start(&ch->rx, c->resp, h.msg_len, h.frag_bytes);
	int r = ferry__reasm_add(&ch->rx, pkt, h.frag, h.msg_len, h.frag_bytes,
	                         pkt->data + FERRY_WIRE_HDR_BYTES,
	                         pkt->len - FERRY_WIRE_HDR_BYTES);
	if (r == FERRY_REASM_COMPLETE) {
		ferry__call_response(c, 0);
		return;
	}
	if (r < 0)
		ferry__frame_refused(port, pkt, r);
}

/* The response (or an error status) back to the client. */
static bool unrel_server_reply(ferry_rpc *rpc)
{
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_DATA,
	        .flags = FERRY_FLAG_RESPONSE,
	        .channel = rpc->chan,
	        .opcode = rpc->opcode,
	        .client_hint = rpc->client_hint,
	        .rpc_id = rpc->rpc_id,
	        .aux = ferry__wire_status(rpc->status),
	};
	ferry__frame_send(rpc->port, &rpc->peer, &h, &rpc->resp, rpc->frag_bytes, 0,
	                  UINT32_MAX);
	return false; /* no retained reply: recycled after the flush */
}

static bool unrel_same_call(const ferry_rpc *r, const ferry_pkt *pkt,
                            const ferry_wire_hdr *h)
{
	return r->client_hint == h->client_hint && r->chan == h->channel &&
	       r->peer.len == pkt->src.len &&
	       memcmp(r->peer.u.bytes, pkt->src.u.bytes, pkt->src.len) == 0;
}

static void unrel_reasm_unlink(ferry__port *port, ferry_rpc *rpc)
{
	for (ferry_rpc **pp = &port->reasm; *pp != NULL; pp = &(*pp)->next)
		if (*pp == rpc) {
			*pp = rpc->next;
			port->nreasm--;
			return;
		}
}

static void unrel_reasm_expire(ferry__timer *t)
{
	ferry_rpc *rpc = ferry_container_of(t, ferry_rpc, timer);
	unrel_reasm_unlink(rpc->port, rpc);
	ferry__rpc_put(rpc->ctx, rpc);
}

static void unrel_server_port_fini(ferry__port *port)
{
	while (port->reasm != NULL) {
		ferry_rpc *rpc = port->reasm;
		port->reasm = rpc->next;
		ferry__rpc_put(port->ctx, rpc);
	}
	port->nreasm = 0;
}

static ferry_rpc *unrel_rpc_new(ferry__port *port, ferry_pkt *pkt,
                                const ferry_wire_hdr *h)
{
	ferry_rpc *rpc = ferry__rpc_get(port->ctx);
	if (rpc == NULL)
		return NULL;
	rpc->srv = port->srv;
	rpc->port = port;
	rpc->peer = pkt->src;
	rpc->client_hint = h->client_hint;
	rpc->rpc_id = h->rpc_id;
	rpc->chan = h->channel;
	rpc->opcode = h->opcode;
	/* Answer in fragments no larger than the client sends: its path MTU
	 * governs, whatever this side could do. */
	uint32_t mine = ferry__frame_bytes(port);
	uint32_t theirs = h->aux != 0 ? h->aux : h->frag_bytes;
	rpc->frag_bytes = theirs != 0 && theirs < mine ? theirs : mine;
	rpc->state = FERRY_RPC_RECEIVING;
	return rpc;
}

static void unrel_server_pkt(ferry__port *port, ferry_pkt *pkt)
{
	ferry_ctx *ctx = port->ctx;
	ferry_wire_hdr h;
	int v = ferry__wire_decode(pkt->data, pkt->len, &h);
	if (ferry__frame_is_version(v, &h) && ferry__frame_version(port, pkt, v, &h))
		return;
	if (v != FERRY_WIRE_OK)
		return ferry__frame_drop(port, pkt, v);
	if (h.type != FERRY_PKT_DATA || (h.flags & FERRY_FLAG_RESPONSE) != 0 ||
	    port->srv == NULL) {
		ctx->cnt.rx_bad_type++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	uint8_t *payload = pkt->data + FERRY_WIRE_HDR_BYTES;
	uint32_t plen = pkt->len - FERRY_WIRE_HDR_BYTES;
	if (h.msg_len > port->msg_max) {
		/* Refuse once, on the first fragment, so the caller learns why. */
		ctx->cnt.rx_too_big++;
		if (h.frag == 0) {
			ferry_rpc *rpc = unrel_rpc_new(port, pkt, &h);
			if (rpc != NULL) {
				rpc->state = FERRY_RPC_HANDLER;
				ferry_rpc_reply(rpc, FERRY_ETOOBIG);
			}
		}
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	if (ferry__wire_nfrags(h.msg_len, h.frag_bytes) == 1) {
		ferry_rpc *rpc = unrel_rpc_new(port, pkt, &h);
		if (rpc == NULL) {
			ctx->cnt.rx_reasm_full++;
			return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
		}
		if (plen == 0)
			ferry__ep_release(pkt);
		else if (ferry_buf_append_loan(&rpc->req, payload, plen,
		                               ferry__pkt_loan_release, pkt) != 0) {
			ferry__rpc_put(ctx, rpc);
			return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
		}
		ferry__server_dispatch(rpc);
		return;
	}
	/* Multi-fragment: find its partial request, or start one. A newer rpc
	 * id on the same channel supersedes an unfinished older one. */
	ferry_rpc *rpc = port->reasm;
	while (rpc != NULL && !unrel_same_call(rpc, pkt, &h))
		rpc = rpc->next;
	if (rpc != NULL && rpc->rpc_id != h.rpc_id) {
		if ((int32_t)(h.rpc_id - rpc->rpc_id) < 0) {
			ctx->cnt.rx_stale++;
			return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
		}
		unrel_reasm_unlink(port, rpc);
		ferry__rpc_put(ctx, rpc);
		rpc = NULL;
	}
	if (rpc == NULL) {
		if (port->nreasm >= UNREL_REASM_MAX ||
		    (rpc = unrel_rpc_new(port, pkt, &h)) == NULL) {
			ctx->cnt.rx_reasm_full++;
			return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
		}
		ferry__reasm_start(&rpc->rx, &rpc->req, h.msg_len, h.frag_bytes);
		rpc->timer.fn = unrel_reasm_expire;
		rpc->next = port->reasm;
		port->reasm = rpc;
		port->nreasm++;
	}
	ferry__timer_arm(&ctx->timers, &rpc->timer, ctx->now_us + UNREL_REASM_EXPIRE_US);
	int r = ferry__reasm_add(&rpc->rx, pkt, h.frag, h.msg_len, h.frag_bytes, payload,
	                         plen);
	if (r == FERRY_REASM_COMPLETE) {
		ferry__timer_cancel(&ctx->timers, &rpc->timer);
		unrel_reasm_unlink(port, rpc);
		rpc->next = NULL;
		ferry__server_dispatch(rpc);
		return;
	}
	if (r < 0)
		ferry__frame_refused(port, pkt, r);
}

const ferry__transport_ops ferry__unreliable_ops = {
        .name = "unreliable",
        .index = 0,
        .keys = unrel_keys,
        .session_init = unrel_session_init,
        .call_start = unrel_call_start,
        .client_pkt = unrel_client_pkt,
        .server_pkt = unrel_server_pkt,
        .server_reply = unrel_server_reply,
        .server_port_fini = unrel_server_port_fini,
};
