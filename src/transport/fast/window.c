/* The sending side of a message, shared by requests and responses: a
 * sliding window over fragments with selective acknowledgements, the RFC
 * 6298 timer and a loss-based congestion window (docs/FAST.md says why).
 *
 * Window: at most min(cwnd, 64) fragments past the first unacked one are in
 * flight; 64 is what the receiver can park. An ack names the receiver's
 * first missing fragment and a bitmap of the 64 after it. */
#include <string.h>

#include "base/alloc.h"
#include "transport/frame.h"
#include "fast.h"
#include "window.h"

fast_ctx *ferry__fast_ctx_of(ferry_ctx *ctx)
{
	fast_ctx *f = ctx->tp_ctx[ferry__fast_ops.index];
	if (f == NULL) {
		f = ferry__calloc(1, sizeof(*f));
		ctx->tp_ctx[ferry__fast_ops.index] = f;
	}
	return f;
}

void ferry__fast_link_init(fast_link *l, ferry__port *port, ferry_addr *peer, uint8_t dir,
                           uint32_t liveness_us, uint64_t now_us)
{
	l->port = port;
	l->peer = peer;
	l->dir = dir;
	ferry__fast_rto_init(&l->rto, FAST_RTO_MIN_US, FAST_RTO_MAX_US);
	l->cwnd = FAST_CWND_INITIAL_FRAGS;
	l->cwnd_max = FAST_WINDOW_FRAGS;
	l->ssthresh = FAST_WINDOW_FRAGS;
	l->cwnd_acc = 0;
	l->last_rx_us = now_us;
	l->liveness_us = liveness_us;
}

void ferry__fast_hdr(const fast_link *l, ferry_wire_hdr *h, uint8_t type, uint8_t ch,
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

/* Fragments a long message may have in flight with fragments of cap
 * bytes: FAST_WINDOW_BYTES worth, within [FAST_WINDOW_FRAGS, MAX]. */
uint32_t ferry__fast_win_frags(uint32_t cap)
{
	uint32_t w = cap > 0 ? FAST_WINDOW_BYTES / cap : FAST_WINDOW_FRAGS;
	if (w < FAST_WINDOW_FRAGS)
		return FAST_WINDOW_FRAGS;
	return w > FAST_WINDOW_MAX_FRAGS ? FAST_WINDOW_MAX_FRAGS : w;
}

static void out_small(fast_out *o)
{
	o->wmask = FAST_WINDOW_FRAGS - 1;
	o->acked = &o->acked1;
	o->retx = &o->retx1;
	o->sent_us = o->sent1;
}

/* Give a long message's window back to the pool (the message is acked or
 * abandoned); later sends of it (probes) use the inline slots. */
static void out_unbig(fast_out *o)
{
	if (o->big == NULL)
		return;
	o->big->next = o->pool->win_free;
	o->pool->win_free = o->big;
	o->pool->wins_out--;
	o->big = NULL;
	out_small(o);
}

void ferry__fast_out_stop(fast_out *o)
{
	out_unbig(o);
	o->active = false;
}

void ferry__fast_out_start(fast_link *l, fast_out *o, ferry_buf *msg, uint32_t cap)
{
	out_unbig(o);
	out_small(o);
	o->msg = msg;
	o->len = (uint32_t)ferry_buf_len(msg);
	o->cap = cap;
	o->nfrags = ferry__wire_nfrags(o->len, cap);
	o->base = o->next = 0;
	o->acked1 = o->retx1 = 0;
	o->nacked = 0;
	o->high = o->recover_until = 0;
	o->sample_sent_us = 0;
	o->areq1 = 0;
	o->wlimit = FAST_WINDOW_FRAGS;
	o->active = true;
	if (o->nfrags <= FAST_WINDOW_FRAGS || l->cwnd_max <= FAST_WINDOW_FRAGS)
		return;
	/* Long: the receiver copies it and accepts a wider window. */
	fast_ctx *f = ferry__fast_ctx_of(l->port->ctx);
	fast_win *w = f->win_free;
	if (w != NULL) {
		f->win_free = w->next;
	} else if ((w = ferry__malloc(sizeof(*w))) != NULL) {
		f->wins_allocated++;
	} else {
		return; /* the short window still works */
	}
	f->wins_out++;
	memset(w->acked, 0, sizeof(w->acked));
	memset(w->retx, 0, sizeof(w->retx));
	o->big = w;
	o->pool = f;
	o->wmask = FAST_WINDOW_MAX_FRAGS - 1;
	o->acked = w->acked;
	o->retx = w->retx;
	o->sent_us = w->sent_us;
	o->wlimit = l->cwnd_max;
}

void ferry__fast_win_pool_fini(fast_ctx *f)
{
	while (f->win_free != NULL) {
		fast_win *w = f->win_free;
		f->win_free = w->next;
		ferry__free(w);
	}
}

static inline bool out_test(const uint64_t *bits, const fast_out *o, uint32_t f)
{
	uint32_t b = f & o->wmask;
	return (bits[b / 64] >> (b % 64)) & 1;
}
static inline void out_set(uint64_t *bits, const fast_out *o, uint32_t f)
{
	uint32_t b = f & o->wmask;
	bits[b / 64] |= 1ull << (b % 64);
}
static inline void out_clear(uint64_t *bits, const fast_out *o, uint32_t f)
{
	uint32_t b = f & o->wmask;
	bits[b / 64] &= ~(1ull << (b % 64));
}

uint64_t ferry__fast_out_sent_at(const fast_out *o, uint32_t f, uint64_t now_us)
{
	/* 32 bits of microseconds: exact for any age under 71 minutes */
	return now_us - (uint32_t)((uint32_t)now_us - o->sent_us[f & o->wmask]);
}

/* One fragment out. flags: FERRY_FLAG_ACK_REQ / RETX (LAST is set here). */
int ferry__fast_out_send(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id,
                         uint16_t opcode, uint16_t aux, uint32_t f, uint8_t flags)
{
	ferry_ctx *ctx = l->port->ctx;
	ferry_wire_hdr h;
	ferry__fast_hdr(l, &h, FERRY_PKT_DATA, ch, rpc_id, opcode);
	h.flags |= flags;
	h.aux = aux;
	int rc = ferry__frame_send(l->port, l->peer, &h, o->msg, o->cap, f, f);
	o->sent_us[f & o->wmask] = (uint32_t)ctx->now_us;
	if (flags & FERRY_FLAG_RETX) {
		out_set(o->retx, o, f);
		if (o->sample_sent_us != 0 && o->sample_frag == f)
			o->sample_sent_us =
			        0; /* Karn: no sample from a resent fragment */
	} else if (flags & FERRY_FLAG_ACK_REQ) {
		/* The ack this asks for times the round trip: no other
		 * fragment's ack does, since acks may be late or lost. */
		o->sample_frag = f;
		o->sample_sent_us = ctx->now_us;
	}
	ferry__fast_ctx_of(ctx)->data_sent++;
	return rc;
}

/* Fragments [first, end) out in one framing call, no flags. */
static void out_run(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id,
                    uint16_t opcode, uint16_t aux, uint32_t first, uint32_t end)
{
	if (first >= end)
		return;
	ferry_ctx *ctx = l->port->ctx;
	ferry_wire_hdr h;
	ferry__fast_hdr(l, &h, FERRY_PKT_DATA, ch, rpc_id, opcode);
	h.aux = aux;
	ferry__frame_send(l->port, l->peer, &h, o->msg, o->cap, first, end - 1);
	for (uint32_t f = first; f < end; f++)
		o->sent_us[f & o->wmask] = (uint32_t)ctx->now_us;
	ferry__fast_ctx_of(ctx)->data_sent += end - first;
}

static uint32_t out_win(const fast_link *l, const fast_out *o)
{
	return l->cwnd < o->wlimit ? l->cwnd : o->wlimit;
}

/* New fragments, as far as the window (and max_new) allow; returns how
 * many went out. The last fragment of a burst
 * that leaves fragments unsent asks for an ack (so the window can move);
 * so does the last fragment of a multi-fragment response (so the server
 * learns it can stop). A single-fragment message asks for nothing: the
 * reply (or the next request) is its ack. */
uint32_t ferry__fast_out_pump(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id,
                              uint16_t opcode, uint16_t aux, uint32_t max_new)
{
	if (!o->active || o->next >= o->nfrags)
		return 0;
	uint32_t win = out_win(l, o), flight = o->next - o->base;
	uint32_t n = win > flight ? win - flight : 0;
	if (n > o->nfrags - o->next)
		n = o->nfrags - o->next;
	if (n > max_new)
		n = max_new;
	if (n == 0)
		return 0;
	ferry_ctx *ctx = l->port->ctx;
	ferry_hist_record(&ferry__fast_ctx_of(ctx)->hist_cwnd, l->cwnd);
	uint32_t first = o->next, last = first + n - 1;
	o->next += n;
	/* Only the last fragment of the burst may ask for an ack. */
	bool burst_end = o->next < o->nfrags;
	bool last_of_response =
	        o->nfrags > 1 && last + 1 == o->nfrags && (l->dir & FERRY_FLAG_RESPONSE);
	/* A long message's full window asks for an ack only if no request of
	 * ours is pending or a few fragments passed since: the pending one's
	 * ack moves the window, and asking on every (short) burst of a wide
	 * window made the receiver ack nearly every fragment. Credit-limited
	 * bursts always ask: the ack returns the credit (incast). */
	if (burst_end && o->big != NULL && n != max_new && o->areq1 > o->base &&
	    last + 1 - o->areq1 < FAST_ACK_EVERY_FRAGS)
		burst_end = false;
	if (burst_end || last_of_response)
		o->areq1 = last + 1;
	/* Receivers ack only when asked or on loss: a long window-limited
	 * burst also asks halfway, so its first half's ack refills the window
	 * while the second half is still arriving. */
	if (burst_end && n >= 2 * FAST_ACK_EVERY_FRAGS) {
		uint32_t mid = first + n / 2 - 1;
		out_run(l, o, ch, rpc_id, opcode, aux, first, mid);
		ferry__fast_out_send(l, o, ch, rpc_id, opcode, aux, mid,
		                     FERRY_FLAG_ACK_REQ);
		first = mid + 1;
	}
	out_run(l, o, ch, rpc_id, opcode, aux, first, last);
	ferry__fast_out_send(l, o, ch, rpc_id, opcode, aux, last,
	                     burst_end || last_of_response ? FERRY_FLAG_ACK_REQ : 0);
	return n;
}

/* Would the window let another fragment go? */
bool ferry__fast_out_more(const fast_link *l, const fast_out *o)
{
	return o->active && o->next < o->nfrags && o->next - o->base < out_win(l, o);
}

/* Fragments sent and not yet acked (in flight). */
uint32_t ferry__fast_out_inflight(const fast_out *o)
{
	if (!o->active || o->next <= o->base)
		return 0;
	return o->next - o->base - o->nacked;
}

/* Congestion: slow start below ssthresh (one fragment per fragment acked,
 * doubling per round trip), then one fragment per window acked. */
static void link_grow(fast_link *l, uint32_t newly)
{
	while (newly-- > 0 && l->cwnd < l->cwnd_max) {
		if (l->cwnd < l->ssthresh) {
			l->cwnd++;
		} else if (++l->cwnd_acc >= l->cwnd) {
			l->cwnd_acc = 0;
			l->cwnd++;
		}
	}
}

void ferry__fast_link_loss(fast_link *l, bool timeout)
{
	l->ssthresh =
	        l->cwnd / 2 > FAST_CWND_MIN_FRAGS ? l->cwnd / 2 : FAST_CWND_MIN_FRAGS;
	l->cwnd = timeout ? FAST_CWND_MIN_FRAGS : l->ssthresh;
	l->cwnd_acc = 0;
}

void ferry__fast_link_sample(fast_link *l, uint64_t sent_us)
{
	ferry_ctx *ctx = l->port->ctx;
	if (sent_us == 0 || ctx->now_us < sent_us)
		return;
	uint32_t rtt = (uint32_t)(ctx->now_us - sent_us);
	ferry__fast_rto_sample(&l->rto, rtt);
	ferry_hist_record(&ferry__fast_ctx_of(ctx)->hist_rtt, rtt);
}

/* The link's fragment size is known (open reply, or the client's cap):
 * long messages may use the window that size allows. */
void ferry__fast_link_set_cap(fast_link *l, uint32_t cap)
{
	l->cwnd_max = ferry__fast_win_frags(cap);
	if (l->ssthresh < l->cwnd_max)
		l->ssthresh = l->cwnd_max;
}

static void out_mark(fast_out *o, uint32_t f, uint32_t *newly, bool *sampled)
{
	if (out_test(o->acked, o, f))
		return;
	out_set(o->acked, o, f);
	o->nacked++;
	(*newly)++;
	*sampled |= o->sample_sent_us != 0 && f == o->sample_frag;
}

/* Apply an ack: fragments below first_missing and those in the bitmap
 * (nwords 64-bit words, bit i of word k = fragment first_missing + 1 +
 * 64k + i); echo names the fragment that caused it, plus one. Returns how
 * many were newly acked. */
uint32_t ferry__fast_out_ack(fast_link *l, fast_out *o, uint32_t first_missing,
                             const uint64_t *words, uint32_t nwords, uint32_t echo)
{
	/* An ack naming a fragment never sent is bogus; one below base is old
	 * but its bitmap may still be news. */
	if (!o->active || first_missing > o->next)
		return 0;
	uint32_t newly = 0;
	bool sampled = false;
	if (o->nacked == 0 && first_missing > o->base) {
		/* In order, nothing acked selectively: slide at once. */
		newly = first_missing - o->base;
		sampled = o->sample_sent_us != 0 && o->sample_frag >= o->base &&
		          o->sample_frag < first_missing;
		for (uint32_t f = o->base; f < first_missing; f++)
			out_clear(o->retx, o, f);
		o->base = first_missing;
	}
	for (uint32_t f = o->base; f < first_missing; f++)
		out_mark(o, f, &newly, &sampled);
	if (first_missing > o->high)
		o->high = first_missing;
	uint32_t slots = o->wmask + 1;
	for (uint32_t k = 0; k < nwords; k++) {
		for (uint64_t bm = words[k]; bm != 0; bm &= bm - 1) {
			uint32_t f = first_missing + 1 + 64 * k +
			             (uint32_t)__builtin_ctzll(bm);
			if (f < o->base || f >= o->next || f - o->base >= slots)
				continue;
			if (f + 1 > o->high)
				o->high = f + 1;
			out_mark(o, f, &newly, &sampled);
		}
	}
	while (o->base < o->next && out_test(o->acked, o, o->base)) {
		out_clear(o->acked, o, o->base);
		out_clear(o->retx, o, o->base);
		o->nacked--;
		o->base++;
	}
	/* Time the round trip only from the ack the sample fragment itself
	 * caused: a late ack that merely covers it (its own ack was lost)
	 * would add the loss-recovery delay to the estimate. */
	if (sampled && echo == o->sample_frag + 1)
		ferry__fast_link_sample(l, o->sample_sent_us);
	if (sampled)
		o->sample_sent_us = 0;
	if (newly > 0)
		ferry__fast_rto_progress(&l->rto);
	link_grow(l, newly);
	if (ferry__fast_out_done(o))
		out_unbig(o);
	return newly;
}

/* Selective recovery: every fragment below the highest one acked that is
 * still missing and was last sent more than a smoothed round trip ago is
 * presumed lost and sent again (at most a window's worth per ack). The
 * window halves once per loss episode, not once per lost fragment. Returns
 * the number resent. */
uint32_t ferry__fast_out_recover(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id,
                                 uint16_t opcode, uint16_t aux)
{
	ferry_ctx *ctx = l->port->ctx;
	uint64_t guard = l->rto.have_sample ? l->rto.srtt_us : l->rto.rto_us / 2;
	uint32_t limit = l->cwnd, sent = 0;
	uint32_t end = o->high < o->next ? o->high : o->next;
	for (uint32_t f = o->base; f < end && sent < limit; f++) {
		uint32_t b = f & o->wmask;
		if (b % 64 == 0 && o->acked[b / 64] == ~0ull) {
			f += 63; /* a wide window's whole word arrived: skip it */
			continue;
		}
		if (out_test(o->acked, o, f))
			continue;
		if ((uint32_t)((uint32_t)ctx->now_us - o->sent_us[f & o->wmask]) < guard)
			continue;
		if (sent == 0 && o->base >= o->recover_until) {
			ferry__fast_link_loss(l, false);
			o->recover_until = o->next;
		}
		ferry__fast_out_send(l, o, ch, rpc_id, opcode, aux, f, FERRY_FLAG_RETX);
		sent++;
	}
	return sent;
}

bool ferry__fast_out_done(const fast_out *o)
{
	return o->base >= o->nfrags;
}
