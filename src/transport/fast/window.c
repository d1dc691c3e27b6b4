/* The sending side of a message, shared by requests and responses: a
 * sliding window over fragments with selective acknowledgements, the RFC
 * 6298 timer and a loss-based congestion window (docs/FAST.md says why).
 *
 * Window: at most min(cwnd, 64) fragments past the first unacked one are in
 * flight; 64 is what the receiver can park. An ack names the receiver's
 * first missing fragment and a bitmap of the 64 after it. */
#include <string.h>

#include "../../buffer/alloc.h"
#include "../frame.h"
#include "fast.h"
#include "window.h"

fast_ctx *fast_ctx_of(ferry_ctx *ctx)
{
	fast_ctx *f = ctx->tp_ctx[ferry__fast_ops.index];
	if (f == NULL) {
		f = ferry__calloc(1, sizeof(*f));
		ctx->tp_ctx[ferry__fast_ops.index] = f;
	}
	return f;
}

void fast_link_init(fast_link *l, ferry__port *port, ferry_addr *peer, uint8_t dir,
                    uint32_t liveness_us, uint64_t now_us)
{
	l->port = port;
	l->peer = peer;
	l->dir = dir;
	fast_rto_init(&l->rto, FAST_RTO_MIN_US, FAST_RTO_MAX_US);
	l->cwnd = FAST_CWND_INITIAL_FRAGS;
	l->ssthresh = FAST_WINDOW_FRAGS;
	l->cwnd_acc = 0;
	l->last_rx_us = now_us;
	l->liveness_us = liveness_us;
}

void fast_hdr(const fast_link *l, ferry_wire_hdr *h, uint8_t type, uint8_t ch,
              uint32_t rpc_id, uint16_t opcode)
{
	memset(h, 0, sizeof(*h));
	h->type = type;
	h->flags = l->dir;
	h->channel = ch;
	h->opcode = opcode;
	h->token = l->token;
	h->client_hint = l->client_hint;
	h->server_hint = l->server_hint;
	h->rpc_id = rpc_id;
}

void fast_out_start(fast_out *o, ferry_buf *msg, uint32_t cap)
{
	o->msg = msg;
	o->len = (uint32_t)ferry_buf_len(msg);
	o->cap = cap;
	o->nfrags = ferry__wire_nfrags(o->len, cap);
	o->base = o->next = 0;
	o->acked = o->retx = 0;
	o->active = true;
}

static uint64_t out_bit(uint32_t f) { return 1ull << (f % FAST_WINDOW_FRAGS); }

/* One fragment out. flags: FERRY_FLAG_ACK_REQ / RETX (LAST is set here). */
int fast_out_send(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id, uint16_t opcode,
                  uint16_t aux, uint32_t f, uint8_t flags)
{
	ferry_ctx *ctx = l->port->ctx;
	ferry_wire_hdr h;
	fast_hdr(l, &h, FERRY_PKT_DATA, ch, rpc_id, opcode);
	h.flags |= flags;
	h.aux = aux;
	int rc = ferry__frame_send(l->port, l->peer, &h, o->msg, o->cap, f, f);
	o->sent_us[f % FAST_WINDOW_FRAGS] = ctx->now_us;
	if (flags & FERRY_FLAG_RETX)
		o->retx |= out_bit(f);
	fast_ctx_of(ctx)->data_sent++;
	return rc;
}

/* New fragments, as far as the window allows. The last fragment of a burst
 * that leaves fragments unsent asks for an ack (so the window can move);
 * so does the last fragment of a multi-fragment response (so the server
 * learns it can stop). A single-fragment message asks for nothing: the
 * reply (or the next request) is its ack. */
void fast_out_pump(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id, uint16_t opcode,
                   uint16_t aux)
{
	if (!o->active)
		return;
	uint32_t win = l->cwnd < FAST_WINDOW_FRAGS ? l->cwnd : FAST_WINDOW_FRAGS;
	if (o->next < o->nfrags && o->next - o->base < win)
		ferry_hist_record(&fast_ctx_of(l->port->ctx)->hist_cwnd, l->cwnd);
	while (o->next < o->nfrags && o->next - o->base < win) {
		uint32_t f = o->next++;
		bool burst_end = o->next < o->nfrags && o->next - o->base >= win;
		bool last_of_response = o->nfrags > 1 && f + 1 == o->nfrags &&
		                        (l->dir & FERRY_FLAG_RESPONSE);
		fast_out_send(l, o, ch, rpc_id, opcode, aux, f,
		              burst_end || last_of_response ? FERRY_FLAG_ACK_REQ : 0);
	}
}

/* Congestion: slow start below ssthresh (one fragment per fragment acked,
 * doubling per round trip), then one fragment per window acked. */
static void link_grow(fast_link *l, uint32_t newly)
{
	while (newly-- > 0 && l->cwnd < FAST_WINDOW_FRAGS) {
		if (l->cwnd < l->ssthresh) {
			l->cwnd++;
		} else if (++l->cwnd_acc >= l->cwnd) {
			l->cwnd_acc = 0;
			l->cwnd++;
		}
	}
}

void fast_link_loss(fast_link *l, bool timeout)
{
	l->ssthresh = l->cwnd / 2 > FAST_CWND_MIN_FRAGS ? l->cwnd / 2 : FAST_CWND_MIN_FRAGS;
	l->cwnd = timeout ? FAST_CWND_MIN_FRAGS : l->ssthresh;
	l->cwnd_acc = 0;
}

void fast_link_sample(fast_link *l, uint64_t sent_us)
{
	ferry_ctx *ctx = l->port->ctx;
	if (sent_us == 0 || ctx->now_us < sent_us)
		return;
	uint32_t rtt = (uint32_t)(ctx->now_us - sent_us);
	fast_rto_sample(&l->rto, rtt);
	ferry_hist_record(&fast_ctx_of(ctx)->hist_rtt, rtt);
}

/* Apply an ack. Returns fragments newly acked; *hole is set when the ack
 * shows later fragments received while first_missing (sent, not resent) is
 * not: a loss, resent at once (fast retransmit). */
uint32_t fast_out_ack(fast_link *l, fast_out *o, uint32_t first_missing, uint64_t bitmap,
                      bool *hole)
{
	*hole = false;
	/* An ack naming a fragment never sent is bogus; one below base is old
	 * but its bitmap may still be news. */
	if (!o->active || first_missing > o->next)
		return 0;
	uint32_t newly = 0;
	uint64_t sample_sent = 0;
	for (uint32_t f = o->base; f < first_missing && f < o->next; f++) {
		if (o->acked & out_bit(f))
			continue;
		o->acked |= out_bit(f);
		newly++;
		if (!(o->retx & out_bit(f)))
			sample_sent = o->sent_us[f % FAST_WINDOW_FRAGS];
	}
	for (uint32_t i = 0; i < 64 && bitmap != 0; i++) {
		if (!(bitmap & (1ull << i)))
			continue;
		uint32_t f = first_missing + 1 + i;
		if (f < o->base || f >= o->next || f - o->base >= FAST_WINDOW_FRAGS)
			continue;
		if (o->acked & out_bit(f))
			continue;
		o->acked |= out_bit(f);
		newly++;
		if (!(o->retx & out_bit(f)))
			sample_sent = o->sent_us[f % FAST_WINDOW_FRAGS];
	}
	while (o->base < o->next && (o->acked & out_bit(o->base))) {
		o->acked &= ~out_bit(o->base);
		o->retx &= ~out_bit(o->base);
		o->base++;
	}
	if (sample_sent != 0)
		fast_link_sample(l, sample_sent);
	link_grow(l, newly);
	if (bitmap != 0 && first_missing == o->base && first_missing < o->next &&
	    !(o->retx & out_bit(first_missing)))
		*hole = true;
	return newly;
}

bool fast_out_done(const fast_out *o) { return o->base >= o->nfrags; }
