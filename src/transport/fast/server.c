/* fast, the server side: the session table (opens checked with a cookie,
 * BAD_SESSION for unknown sessions, idle expiry), per-channel state with
 * the retained reply that makes execution at-most-once, responses out
 * through a window within the port's credit, cancels and drain. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "base/alloc.h"
#include "base/le.h"
#include "transport/frame.h"
#include "fast.h"
#include "window.h"

static void ss_free(fast_sport *sp, fast_ss *ss);

/* The server port pads datagrams (udp GSO) only while every session's
 * client announced that it takes padding. */
static void sp_pad_update(fast_sport *sp)
{
	ferry__port *port = sp->port;
	port->eps[port->neps - 1]->tx_pad =
	        (sp->features & FAST_FEAT_PAD) != 0 && sp->nopad == 0;
}

static void sc_timer(ferry__timer *t);
static uint32_t ss_resp_cap(fast_ss *ss);
static fast_sport *sp_of(fast_ss *ss);
static void sc_recharge(fast_sport *sp, fast_sch *sc);
static void sp_drain(fast_sport *sp);
static void sp_unwait(fast_sport *sp, fast_sch *sc);

static void sp_sweep(ferry__timer *t)
{
	fast_sport *sp = ferry_container_of(t, fast_sport, sweep);
	ferry_ctx *ctx = sp->port->ctx;
	for (uint32_t i = 0; i < sp->used; i++) {
		fast_ss *ss = sp->table[i];
		if (ss == NULL || ctx->now_us - ss->l.last_rx_us <= sp->expire_us)
			continue;
		bool busy = false;
		for (uint32_t k = 0; k < ss->nchan; k++)
			busy |= ss->ch[k].state == FAST_SCH_RECEIVING ||
			        ss->ch[k].state == FAST_SCH_PROCESSING;
		if (busy)
			continue;
		ferry__fast_ctx_of(ctx)->sessions_expired++;
		ss_free(sp, ss);
	}
	uint32_t every = sp->expire_us / 4 > 1000 ? sp->expire_us / 4 : 1000;
	ferry__timer_arm(&ctx->timers, &sp->sweep, ctx->now_us + every);
}

int ferry__fast_server_port_init(ferry__port *port, const ferry_loc *loc)
{
	ferry_ctx *ctx = port->ctx;
	fast_sport *sp = ferry__calloc(1, sizeof(*sp));
	if (sp == NULL)
		return -ENOMEM;
	int rc = 0;
	sp->expire_us = ferry__fast_loc_u32(loc, "expire", 1000, 3600000000u,
	                                    FAST_EXPIRE_US_DEFAULT, &rc, ctx->errmsg,
	                                    sizeof(ctx->errmsg));
	sp->liveness_us = ferry__fast_loc_u32(loc, "liveness", 1000, 3600000000u,
	                                      FAST_LIVENESS_US_DEFAULT, &rc, ctx->errmsg,
	                                      sizeof(ctx->errmsg));
	sp->sessions_max = ferry__fast_loc_u32(loc, "sessions", 1, FAST_SESSIONS_MAX,
	                                       FAST_SESSIONS_DEFAULT, &rc, ctx->errmsg,
	                                       sizeof(ctx->errmsg));
	/* The default admits at least one message of the port's cap: on a
	 * small-MTU driver (infud: 1 KiB) a 16 MiB request is ~17k fragments. */
	uint32_t frag = ferry__frame_bytes(port);
	uint64_t one_max = frag != 0 ? (port->msg_max + frag - 1) / frag + 1 : 1;
	uint32_t loans_default =
	        one_max > FAST_SESSION_LOANS_DEFAULT
	                ? (uint32_t)(one_max < (1u << 24) ? one_max : (1u << 24))
	                : FAST_SESSION_LOANS_DEFAULT;
	sp->loans_max = ferry__fast_loc_u32(loc, "loans", 1, 1u << 24, loans_default, &rc,
	                                    ctx->errmsg, sizeof(ctx->errmsg));
	sp->features =
	        ferry__fast_loc_features(loc, &rc, ctx->errmsg, sizeof(ctx->errmsg));
	sp->bs_rate = ferry__fast_loc_u32(loc, "bsrate", 1, 1000000,
	                                  FAST_BAD_SESSION_RATE_DEFAULT, &rc, ctx->errmsg,
	                                  sizeof(ctx->errmsg));
	uint32_t inflight = ferry__fast_loc_u32(loc, "inflight", 4096, 1u << 30,
	                                        FAST_PORT_INFLIGHT_BYTES, &rc,
	                                        ctx->errmsg, sizeof(ctx->errmsg));
	if (rc == 0)
		rc = ferry__loc_u64(loc, "reasm", port->msg_max, 1ull << 40,
		                    FAST_REASM_BYTES_DEFAULT > port->msg_max
		                            ? FAST_REASM_BYTES_DEFAULT
		                            : port->msg_max,
		                    &sp->reasm_max, ctx->errmsg, sizeof(ctx->errmsg));
	if (rc != 0) {
		ferry__free(sp);
		return rc;
	}
	while (getrandom(sp->cookie_key, sizeof(sp->cookie_key), 0) !=
	       sizeof(sp->cookie_key))
		;
	sp->bs_credit_us = (uint64_t)FAST_BAD_SESSION_BURST * (1000000u / sp->bs_rate);
	sp->port = port;
	sp->epoch = ferry__fast_random64();
	uint32_t fb = ferry__frame_bytes(port);
	sp->credit = fb > 0 ? inflight / fb : FAST_WINDOW_FRAGS;
	if (sp->credit < FAST_PORT_CREDIT_MIN_FRAGS)
		sp->credit = FAST_PORT_CREDIT_MIN_FRAGS;
	sp->sweep.fn = sp_sweep;
	port->tstate = sp;
	ferry__fast_ctx_of(ctx);
	ferry__ctx_tick(ctx);
	sp->bs_last_us = ctx->now_us;
	ferry__timer_arm(&ctx->timers, &sp->sweep,
	                 ctx->now_us + sp->expire_us / 4 + 1000);
	return 0;
}

static void sc_release(fast_sch *sc)
{
	ferry_ctx *ctx = sc->ss->l.port->ctx;
	fast_sport *sp = sp_of(sc->ss);
	ferry__timer_cancel(&ctx->timers, &sc->timer);
	sp_unwait(sp, sc);
	ferry__fast_out_stop(&sc->out);
	sc_recharge(sp, sc);
	sp->reasm_bytes -= sc->reasm_bytes;
	sc->ss->loans -= sc->loans;
	sc->reasm_bytes = sc->loans = 0;
	if (sc->rpc == NULL)
		return;
	if (sc->state == FAST_SCH_PROCESSING) {
		/* The handler still has it: its reply will be dropped. */
		sc->rpc->tp = NULL;
	} else if (sc->state == FAST_SCH_RECEIVING) {
		ferry__rpc_put(ctx, sc->rpc);
	} else {
		ferry__rpc_retire(sc->rpc);
	}
	sc->rpc = NULL;
	/* Without its rpc the channel is idle. A caller that starts no new
	 * call after this (ss_data: an over-cap request whose first packet is
	 * not fragment 0) used to leave the old state with rpc NULL, and the
	 * next packet of the old rpc id dereferenced it (found by
	 * fuzz_packet; corpus/packet/regress-fast-overcap-release). */
	sc->state = FAST_SCH_IDLE;
}

static void ss_free(fast_sport *sp, fast_ss *ss)
{
	for (uint32_t k = 0; k < FERRY_CHANNELS_MAX; k++)
		sc_release(&ss->ch[k]);
	sp->table[ss->index] = NULL;
	sp->free[sp->nfree++] = ss->index;
	sp->nopad -= ss->nopad;
	sp_pad_update(sp);
	ferry__fast_owed_forget(sp->port->ctx, ss);
	ferry__free(ss);
}

void ferry__fast_server_port_fini(ferry__port *port)
{
	fast_sport *sp = port->tstate;
	if (sp == NULL)
		return;
	ferry__timer_cancel(&port->ctx->timers, &sp->sweep);
	for (uint32_t i = 0; i < sp->used; i++)
		if (sp->table[i] != NULL)
			ss_free(sp, sp->table[i]);
	ferry__free(sp->table);
	ferry__free(sp->free);
	ferry__free(sp);
	port->tstate = NULL;
}

/* BAD_SESSION replies come out of a token bucket per port (bsrate= per
 * second, FAST_BAD_SESSION_BURST deep): spoofed garbage must not turn the
 * server into a reflector. */
static bool sp_bad_session_allowed(fast_sport *sp)
{
	uint64_t now = sp->port->ctx->now_us;
	uint64_t cost = 1000000u / sp->bs_rate;
	uint64_t depth = (uint64_t)FAST_BAD_SESSION_BURST * cost;
	sp->bs_credit_us += now - sp->bs_last_us;
	sp->bs_last_us = now;
	if (sp->bs_credit_us > depth)
		sp->bs_credit_us = depth;
	if (sp->bs_credit_us < cost)
		return false;
	sp->bs_credit_us -= cost;
	return true;
}

/* The epoch travels in frag (low half) and msg_len (high half), so the
 * reply is a bare header: never larger than the packet that caused it. */
static void sp_send_bad_session(fast_sport *sp, ferry_pkt *pkt, const ferry_wire_hdr *rh)
{
	fast_ctx *f = ferry__fast_ctx_of(sp->port->ctx);
	if (!sp_bad_session_allowed(sp)) {
		f->bad_session_suppressed++;
		return;
	}
	ferry_wire_hdr h = *rh;
	h.type = FERRY_PKT_BAD_SESSION;
	h.flags = FERRY_FLAG_RESPONSE;
	h.frag_bytes = h.aux = 0;
	h.frag = (uint32_t)sp->epoch;
	h.msg_len = (uint32_t)(sp->epoch >> 32);
	ferry__fast_send_ctl(sp->port, &pkt->src, &h, NULL, 0);
	f->bad_session_sent++;
}

/* First answer to an open: a cookie, and nothing remembered. */
static void sp_send_cookie(fast_sport *sp, ferry_pkt *pkt, const ferry_wire_hdr *rh,
                           uint64_t nonce)
{
	ferry_wire_hdr h;
	memset(&h, 0, sizeof(h));
	h.type = FERRY_PKT_SESSION_COOKIE;
	h.flags = FERRY_FLAG_RESPONSE;
	h.client_hint = rh->client_hint;
	uint8_t p[FAST_COOKIE_PAYLOAD_BYTES];
	ferry__put64(p, nonce);
	ferry__put64(p + 8,
	             ferry__fast_cookie_make(sp->cookie_key, &pkt->src, nonce,
	                                     rh->client_hint, sp->port->ctx->now_us));
	ferry__fast_send_ctl(sp->port, &pkt->src, &h, p, sizeof(p));
	ferry__fast_ctx_of(sp->port->ctx)->cookies_sent++;
}

/* A verified open the table has no room for: a reply with no token and
 * no channels; the client fails what waits with FERRY_EAGAIN. */
static void sp_refuse_open(fast_sport *sp, ferry_pkt *pkt, const ferry_wire_hdr *rh,
                           uint64_t nonce)
{
	ferry_wire_hdr h;
	memset(&h, 0, sizeof(h));
	h.type = FERRY_PKT_SESSION_OPEN_REPLY;
	h.flags = FERRY_FLAG_RESPONSE;
	h.client_hint = rh->client_hint;
	uint8_t p[FAST_OPEN_REPLY_PAYLOAD_BYTES];
	memset(p, 0, sizeof(p));
	ferry__put64(p, nonce);
	ferry__put64(p + 8, sp->epoch);
	ferry__fast_send_ctl(sp->port, &pkt->src, &h, p, sizeof(p));
	ferry__fast_ctx_of(sp->port->ctx)->opens_refused++;
}

static void ss_open_reply(fast_sport *sp, fast_ss *ss)
{
	ferry_wire_hdr h;
	ferry__fast_hdr(&ss->l, &h, FERRY_PKT_SESSION_OPEN_REPLY, 0, 0, 0);
	uint8_t p[FAST_OPEN_REPLY_PAYLOAD_BYTES];
	ferry__put64(p, ss->nonce);
	ferry__put64(p + 8, sp->epoch);
	ferry__put16(p + 16, (uint16_t)ss->nchan);
	ferry__put16(p + 18, (uint16_t)ferry__frame_bytes(sp->port));
	ferry__put32(p + 20, sp->features);
	ferry__fast_send_ctl(sp->port, &ss->peer, &h, p, sizeof(p));
}

static void sp_open(fast_sport *sp, ferry_pkt *pkt, const ferry_wire_hdr *h)
{
	ferry_ctx *ctx = sp->port->ctx;
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	const uint8_t *p = pkt->data + FERRY_WIRE_HDR_BYTES;
	if (pkt->len - FERRY_WIRE_HDR_BYTES < FAST_OPEN_PAYLOAD_BYTES) {
		f->opens_dropped++; /* unpadded: a cookie would be a larger reply */
		return;
	}
	uint64_t nonce = ferry__get64(p);
	uint64_t cookie = ferry__get64(p + 16);
	if (!ferry__fast_cookie_check(sp->cookie_key, &pkt->src, nonce, h->client_hint,
	                              ctx->now_us, cookie)) {
		if (cookie != 0)
			f->cookies_failed++; /* forged, or stale: a fresh one */
		sp_send_cookie(sp, pkt, h, nonce);
		return;
	}
	f->cookies_verified++;
	/* A retried open gets the same session back. */
	for (uint32_t i = 0; i < sp->used; i++) {
		fast_ss *ss = sp->table[i];
		if (ss != NULL && ss->nonce == nonce &&
		    ss->l.client_hint == h->client_hint && ss->peer.len == pkt->src.len &&
		    memcmp(ss->peer.u.bytes, pkt->src.u.bytes, pkt->src.len) == 0) {
			ss_open_reply(sp, ss);
			return;
		}
	}
	if (sp->used - sp->nfree >= sp->sessions_max) {
		sp_refuse_open(sp, pkt, h, nonce);
		return;
	}
	uint32_t idx;
	if (sp->nfree > 0) {
		idx = sp->free[--sp->nfree];
	} else {
		if (sp->used == FAST_SESSIONS_MAX)
			return; /* full: the client retries, then gives up */
		if (sp->used == sp->cap) {
			uint32_t cap = sp->cap ? 2 * sp->cap : 64;
			fast_ss **t = ferry__realloc(sp->table, cap * sizeof(*t));
			if (t == NULL)
				return;
			sp->table = t;
			uint32_t *fr = ferry__realloc(sp->free, cap * sizeof(*fr));
			if (fr == NULL)
				return;
			sp->free = fr;
			sp->cap = cap;
		}
		idx = sp->used++;
	}
	fast_ss *ss = ferry__calloc(1, sizeof(*ss));
	if (ss == NULL) {
		sp->free[sp->nfree++] = idx;
		return;
	}
	ss->peer = pkt->src;
	ss->index = idx;
	ss->nonce = nonce;
	uint32_t want = ferry__get16(p + 8);
	ss->nchan = want == 0                        ? FERRY_CHANNELS_DEFAULT
	            : want > FAST_CHANNELS_GRANT_MAX ? FAST_CHANNELS_GRANT_MAX
	                                             : want;
	ss->client_cap = ferry__get16(p + 10);
	ss->nopad = (ferry__get32(p + 12) & FAST_FEAT_PAD) == 0;
	sp->nopad += ss->nopad;
	sp_pad_update(sp);
	ferry__fast_link_init(&ss->l, sp->port, &ss->peer, FERRY_FLAG_RESPONSE,
	                      sp->liveness_us, ctx->now_us);
	ferry__fast_link_set_cap(&ss->l, ss_resp_cap(ss));
	ss->l.token = ferry__fast_random64();
	ss->l.client_hint = h->client_hint;
	ss->l.server_hint = idx;
	for (uint32_t k = 0; k < FERRY_CHANNELS_MAX; k++) {
		ss->ch[k].ss = ss;
		ss->ch[k].idx = (uint8_t)k;
		ss->ch[k].timer.fn = sc_timer;
	}
	sp->table[idx] = ss;
	ferry__fast_ctx_of(ctx)->sessions_opened++;
	ss_open_reply(sp, ss);
}

static fast_sport *sp_of(fast_ss *ss)
{
	return ss->l.port->tstate;
}

/* What a channel's response holds of the port's credit: its fragments in
 * flight, except a one-fragment response once sent. Nothing acks that one
 * (the next request on the channel does, and may never come; a lost one
 * is recovered by the client's probe, not by the server's timer), so
 * charging it would leak a fragment of credit per idle channel. */
static void sc_recharge(fast_sport *sp, fast_sch *sc)
{
	uint32_t now = sc->out.active && sc->out.nfrags > 1
	                       ? ferry__fast_out_inflight(&sc->out)
	                       : 0;
	sp->inflight = sp->inflight - sc->charged + now;
	sc->charged = now;
}

/* Send what a response's window allows within the port's credit; a
 * channel that wanted more waits in the port's FIFO. */
static void sc_pump(fast_sch *sc)
{
	fast_ss *ss = sc->ss;
	fast_sport *sp = sp_of(ss);
	uint32_t credit = sp->credit > sp->inflight ? sp->credit - sp->inflight : 0;
	ferry__fast_out_pump(&ss->l, &sc->out, sc->idx, sc->rpc_id, sc->rpc->opcode,
	                     sc->status, credit);
	sc_recharge(sp, sc);
	bool more = ferry__fast_out_more(&ss->l, &sc->out);
	if (more && !sc->waiting) {
		sc->waiting = true;
		sc->wnext = NULL;
		if (sp->wtail != NULL)
			sp->wtail->wnext = sc;
		else
			sp->whead = sc;
		sp->wtail = sc;
	}
}

/* Credit came back: let waiting channels send, oldest first. */
static void sp_drain(fast_sport *sp)
{
	uint32_t rounds = sp->credit; /* bounded: each pass sends or stops */
	while (sp->whead != NULL && sp->inflight < sp->credit && rounds-- > 0) {
		fast_sch *sc = sp->whead;
		sp->whead = sc->wnext;
		if (sp->whead == NULL)
			sp->wtail = NULL;
		sc->waiting = false;
		if (sc->state == FAST_SCH_REPLIED && sc->out.active)
			sc_pump(sc);
	}
}

static void sp_unwait(fast_sport *sp, fast_sch *sc)
{
	if (!sc->waiting)
		return;
	for (fast_sch **pp = &sp->whead, *prev = NULL; *pp != NULL;
	     prev = *pp, pp = &(*pp)->wnext)
		if (*pp == sc) {
			*pp = sc->wnext;
			if (sp->wtail == sc)
				sp->wtail = prev;
			break;
		}
	sc->waiting = false;
}

static uint32_t ss_resp_cap(fast_ss *ss)
{
	uint32_t mine = ferry__frame_bytes(ss->l.port);
	return ss->client_cap != 0 && ss->client_cap < mine ? ss->client_cap : mine;
}

/* A server channel's timer: resend the oldest unacked response fragment. */
static void sc_timer(ferry__timer *t)
{
	fast_sch *sc = ferry_container_of(t, fast_sch, timer);
	fast_ss *ss = sc->ss;
	ferry_ctx *ctx = ss->l.port->ctx;
	if (sc->state != FAST_SCH_REPLIED || !sc->out.active ||
	    ferry__fast_out_done(&sc->out))
		return;
	if (sc->out.base >= sc->out.next) {
		/* nothing in flight: waiting for port credit, not for an ack.
		 * Credit freed without an ack (a session released) wakes no
		 * one, so look again now. */
		sp_drain(sp_of(ss));
		ferry__timer_arm(&ctx->timers, &sc->timer,
		                 ctx->now_us + ss->l.rto.rto_us);
		return;
	}
	/* A silent client: stop pushing; the reply stays for a probe. */
	if (ctx->now_us - ss->l.last_rx_us > ss->l.liveness_us)
		return;
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	f->retx_timeout++;
	/* as on the client (cc_timer): a client still heard from is busy */
	if (ctx->now_us - ss->l.last_rx_us >= ss->l.rto.rto_us) {
		f->rto_backoffs++;
		ferry__fast_rto_backoff(&ss->l.rto);
		ferry__fast_link_loss(&ss->l, true);
	}
	ferry__fast_out_send(&ss->l, &sc->out, sc->idx, sc->rpc_id, sc->rpc->opcode,
	                     sc->status, sc->out.base,
	                     FERRY_FLAG_RETX | FERRY_FLAG_ACK_REQ);
	ferry__timer_arm(&ctx->timers, &sc->timer, ctx->now_us + ss->l.rto.rto_us);
}

bool ferry__fast_server_reply(ferry_rpc *rpc)
{
	fast_sch *sc = rpc->tp;
	if (sc == NULL || sc->rpc != rpc)
		return false; /* the client moved on: nobody wants this reply */
	fast_ss *ss = sc->ss;
	ferry_ctx *ctx = ss->l.port->ctx;
	sc->state = FAST_SCH_REPLIED;
	sc->status = ferry__wire_status(rpc->status);
	ferry__fast_out_start(&ss->l, &sc->out, &rpc->resp, ss_resp_cap(ss));
	sc_pump(sc);
	/* Single-fragment replies are recovered by the client's probe; longer
	 * ones need the server's own timer for their tail. */
	if (sc->out.nfrags > 1)
		ferry__timer_arm(&ctx->timers, &sc->timer,
		                 ctx->now_us + ss->l.rto.rto_us);
	return true; /* retained until the next request on the channel */
}

/* Answer a request with an error status and no body, without running a
 * handler; the reply is retained like any other (duplicates get it again). */
static void ss_refuse(fast_ss *ss, fast_sch *sc, const ferry_wire_hdr *h, int status)
{
	ferry__port *port = ss->l.port;
	ferry_rpc *rpc = ferry__rpc_get(port->ctx);
	if (rpc == NULL)
		return;
	rpc->srv = port->srv;
	rpc->port = port;
	rpc->peer = ss->peer;
	rpc->opcode = h->opcode;
	rpc->rpc_id = h->rpc_id;
	rpc->chan = h->channel;
	rpc->tp = sc;
	sc->rpc = rpc;
	sc->rpc_id = h->rpc_id;
	rpc->state = FERRY_RPC_HANDLER;
	ferry_rpc_reply(rpc, status);
}

/* A client that has no response fragment asks for the reply (a duplicate
 * request fragment or an ACK_REQ probe): answer from the retained one,
 * never by running the handler again (at-most-once). */
static void sc_answer_probe(fast_sch *sc)
{
	fast_ss *ss = sc->ss;
	ferry_ctx *ctx = ss->l.port->ctx;
	if (ferry__fast_out_done(&sc->out) && sc->out.nfrags != 1)
		return;
	/* ... and not what is still on its way: a client probing while a long
	 * response streams (incast) would otherwise make us resend its head
	 * again and again. */
	uint32_t f = ferry__fast_out_done(&sc->out) ? sc->out.nfrags - 1 : sc->out.base;
	uint64_t age = ctx->now_us - ferry__fast_out_sent_at(&sc->out, f, ctx->now_us);
	uint64_t guard =
	        ss->l.rto.have_sample ? 2ull * ss->l.rto.srtt_us : ss->l.rto.rto_us / 2;
	if (sc->out.nfrags == 1 || age >= guard) {
		ferry__fast_ctx_of(ctx)->retx_dup_request++;
		ferry__fast_out_send(&ss->l, &sc->out, sc->idx, sc->rpc_id,
		                     sc->rpc->opcode, sc->status, f, FERRY_FLAG_RETX);
	}
}

static void ss_data(fast_sport *sp, fast_ss *ss, ferry_pkt *pkt, const ferry_wire_hdr *h)
{
	ferry__port *port = sp->port;
	ferry_ctx *ctx = port->ctx;
	if (h->channel >= ss->nchan)
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	fast_sch *sc = &ss->ch[h->channel];
	int32_t age = (int32_t)(h->rpc_id - sc->rpc_id);
	bool ack_req = (h->flags & FERRY_FLAG_ACK_REQ) != 0;
	if (age < 0 || (age == 0 && sc->state == FAST_SCH_IDLE)) {
		ctx->cnt.rx_stale++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	if (age > 0) {
		/* A new call on the channel: it acks the previous reply. */
		sc_release(sc);
		if (h->msg_len > port->msg_max) {
			ctx->cnt.rx_too_big++;
			/* Refuse with a status, like unreliable, once. */
			if (h->frag == 0)
				ss_refuse(ss, sc, h, FERRY_ETOOBIG);
			return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
		}
		/* Limits: a partial request is charged its whole length to the
		 * port and its fragments (driver loans) to the session. */
		uint32_t nfrags = h->frag_bytes == 0 ? 1
		                                     : (h->msg_len + h->frag_bytes - 1) /
		                                               h->frag_bytes;
		if (nfrags == 0)
			nfrags = 1;
		/* Only a short request keeps its packets (loans); a long one is
		 * copied as it comes and holds none (reasm.h). */
		if (nfrags > FERRY_REASM_WINDOW)
			nfrags = 0;
		int limit = 0;
		if (sp->reasm_bytes + h->msg_len > sp->reasm_max) {
			ferry__fast_ctx_of(ctx)->limit_reasm++;
			ctx->cnt.rx_reasm_full++;
			limit = FERRY_EAGAIN;
		} else if (ss->loans + nfrags > sp->loans_max) {
			ferry__fast_ctx_of(ctx)->limit_loans++;
			limit = nfrags > sp->loans_max ? FERRY_ETOOBIG : FERRY_EAGAIN;
		}
		if (limit != 0) {
			ss_refuse(ss, sc, h, limit);
			return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
		}
		ferry_rpc *rpc = ferry__rpc_get(ctx);
		if (rpc == NULL)
			return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
		sc->reasm_bytes = h->msg_len;
		sc->loans = nfrags;
		sp->reasm_bytes += h->msg_len;
		ss->loans += nfrags;
		rpc->srv = port->srv;
		rpc->port = port;
		rpc->peer = ss->peer;
		rpc->client_hint = h->client_hint;
		rpc->rpc_id = h->rpc_id;
		rpc->chan = h->channel;
		rpc->opcode = h->opcode;
		rpc->frag_bytes = ss_resp_cap(ss);
		rpc->state = FERRY_RPC_RECEIVING;
		rpc->tp = sc;
		ferry__reasm_start(&rpc->rx, &rpc->req, h->msg_len, h->frag_bytes);
		sc->rpc = rpc;
		sc->rpc_id = h->rpc_id;
		sc->state = FAST_SCH_RECEIVING;
	}
	switch (sc->state) {
	case FAST_SCH_RECEIVING: {
		ferry_rpc *rpc = sc->rpc;
		uint32_t before = rpc->rx.next, high = rpc->rx.high;
		int r = ferry__reasm_add(&rpc->rx, pkt, h->frag, h->msg_len,
		                         h->frag_bytes, pkt->data + FERRY_WIRE_HDR_BYTES,
		                         pkt->len - FERRY_WIRE_HDR_BYTES);
		if (r == FERRY_REASM_COMPLETE) {
			sc->state = FAST_SCH_PROCESSING;
			sp->reasm_bytes -= sc->reasm_bytes; /* no longer partial */
			sc->reasm_bytes = 0;
			ferry__server_dispatch(rpc);
			/* The handler returned without replying (a deferred reply, a
			 * worker thread): ack the whole request now, so the client
			 * probes with acks while it waits and never resends data. */
			if (sc->state == FAST_SCH_PROCESSING && sc->rpc == rpc) {
				ferry__fast_ctx_of(ctx)->acks_deferred++;
				ferry__fast_send_ack(&ss->l, h->channel, h->rpc_id, NULL,
				                     rpc->rx.nfrags, 0, h->frag + 1);
			}
			return;
		}
		if (r < 0) {
			ferry__fast_refused(port, pkt, r);
			ack_req = true;
		}
		if (ferry__fast_ack_due(&rpc->rx, before, high, h->frag, ack_req, r))
			ferry__fast_owe(ctx, ss, true, h->channel, &sc->ack, h->frag + 1,
			                ack_req);
		return;
	}
	case FAST_SCH_PROCESSING:
		/* A duplicate while the handler works: the request is all here. */
		ferry__fast_ctx_of(ctx)->frag_dup++;
		if (ack_req)
			ferry__fast_send_ack(&ss->l, h->channel, h->rpc_id, NULL,
			                     sc->rpc->rx.nfrags, 0, h->frag + 1);
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	case FAST_SCH_REPLIED:
		sc_answer_probe(sc);
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	default:
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
}

static void ss_ack(fast_ss *ss, const ferry_wire_hdr *h, const uint8_t *p, uint32_t len)
{
	ferry_ctx *ctx = ss->l.port->ctx;
	if (h->channel >= ss->nchan || len < FAST_ACK_PAYLOAD_BYTES)
		return;
	fast_sch *sc = &ss->ch[h->channel];
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	f->acks_received++;
	bool probe = (h->flags & FERRY_FLAG_ACK_REQ) != 0 && h->frag == 0 &&
	             ferry__get64(p) == 0;
	if (probe && sc->rpc_id == h->rpc_id && sc->state == FAST_SCH_PROCESSING) {
		/* A client probing while the handler works: the request is all
		 * here (the handler is not run again). */
		f->probes_answered++;
		ferry__fast_send_ack(&ss->l, h->channel, h->rpc_id, NULL,
		                     sc->rpc->rx.nfrags, 0, 0);
		return;
	}
	if (sc->state != FAST_SCH_REPLIED || sc->rpc_id != h->rpc_id || !sc->out.active)
		return;
	if (probe) {
		/* A probe from a client with no response fragment: the reply. */
		f->probes_answered++;
		sc_answer_probe(sc);
		return;
	}
	fast_sport *sp = sp_of(ss);
	uint64_t words[FAST_ACK_WORDS_MAX];
	uint32_t nw = ferry__fast_ack_words(h, p, len, words);
	uint32_t newly =
	        ferry__fast_out_ack(&ss->l, &sc->out, h->frag, words, nw, h->msg_len);
	sc_recharge(sp, sc);
	if (ferry__fast_out_done(&sc->out)) {
		ferry__timer_cancel(&ctx->timers, &sc->timer);
		sp_drain(sp);
		return;
	}
	uint32_t resent = ferry__fast_out_recover(&ss->l, &sc->out, sc->idx, sc->rpc_id,
	                                          sc->rpc->opcode, sc->status);
	f->retx_fast += resent;
	if (resent == 0 && newly == 0 && (h->flags & FERRY_FLAG_ACK_REQ)) {
		/* A probe from a client that lacks the oldest fragment. */
		f->retx_probe++;
		ferry__fast_out_send(&ss->l, &sc->out, sc->idx, sc->rpc_id,
		                     sc->rpc->opcode, sc->status, sc->out.base,
		                     FERRY_FLAG_RETX);
	}
	sc_pump(sc);
	sp_drain(sp);
	ferry__timer_push(&ctx->timers, &sc->timer, ctx->now_us + ss->l.rto.rto_us);
}

/* The client canceled a call: a handler at work sees ferry_rpc_cancelled;
 * a request still arriving, or a reply kept for retransmission, is freed
 * (the channel goes idle: what else comes for that call is stale). */
static void ss_cancel(fast_ss *ss, const ferry_wire_hdr *h)
{
	ferry_ctx *ctx = ss->l.port->ctx;
	ctx->cnt.cancels_received++;
	if (h->channel >= ss->nchan)
		return;
	fast_sch *sc = &ss->ch[h->channel];
	if (sc->rpc_id != h->rpc_id || sc->rpc == NULL)
		return;
	ctx->cnt.cancels_matched++;
	if (sc->state == FAST_SCH_PROCESSING) {
		atomic_store_explicit(&sc->rpc->cancelled, true, memory_order_relaxed);
		return;
	}
	if (sc->state == FAST_SCH_RECEIVING || sc->state == FAST_SCH_REPLIED) {
		sc_release(sc);
		sc->state = FAST_SCH_IDLE;
	}
}

/* Drain: a multi-fragment reply still being pushed to a live client. */
bool ferry__fast_server_port_busy(ferry__port *port)
{
	fast_sport *sp = port->tstate;
	if (sp == NULL)
		return false;
	ferry_ctx *ctx = port->ctx;
	for (uint32_t i = 0; i < sp->used; i++) {
		fast_ss *ss = sp->table[i];
		if (ss == NULL || ctx->now_us - ss->l.last_rx_us > ss->l.liveness_us)
			continue;
		for (uint32_t k = 0; k < ss->nchan; k++) {
			fast_sch *sc = &ss->ch[k];
			if (sc->state == FAST_SCH_REPLIED && sc->out.active &&
			    sc->out.nfrags > 1 && !ferry__fast_out_done(&sc->out))
				return true;
		}
	}
	return false;
}

void ferry__fast_server_pkt(ferry__port *port, ferry_pkt *pkt)
{
	ferry_ctx *ctx = port->ctx;
	fast_sport *sp = port->tstate;
	ferry_wire_hdr h;
	int v = ferry__wire_decode(pkt->data, pkt->len, &h);
	if (ferry__frame_is_version(v, &h) && ferry__frame_version(port, pkt, v, &h))
		return;
	if (v != FERRY_WIRE_OK)
		return ferry__frame_drop(port, pkt, v);
	if ((h.flags & FERRY_FLAG_RESPONSE) != 0 || sp == NULL || port->srv == NULL) {
		ctx->cnt.rx_bad_type++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	if (h.type == FERRY_PKT_SESSION_OPEN) {
		sp_open(sp, pkt, &h);
		return ferry__ep_release(pkt);
	}
	fast_ss *ss = h.server_hint < sp->used ? sp->table[h.server_hint] : NULL;
	if (ss == NULL || ss->l.token != h.token || h.token == 0) {
		ctx->cnt.rx_unknown_session++;
		sp_send_bad_session(sp, pkt, &h);
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	ss->l.last_rx_us = ctx->now_us;
	if (h.type == FERRY_PKT_ACK) {
		ss_ack(ss, &h, pkt->data + FERRY_WIRE_HDR_BYTES,
		       pkt->len - FERRY_WIRE_HDR_BYTES);
		return ferry__ep_release(pkt);
	}
	if (h.type == FERRY_PKT_CANCEL) {
		ss_cancel(ss, &h);
		return ferry__ep_release(pkt);
	}
	if (h.type == FERRY_PKT_KEEPALIVE) {
		ferry_wire_hdr r;
		ferry__fast_hdr(&ss->l, &r, FERRY_PKT_KEEPALIVE, 0, 0, 0);
		ferry__fast_send_ctl(port, &ss->peer, &r, NULL, 0);
		ferry__fast_ctx_of(ctx)->keepalives_received++;
		return ferry__ep_release(pkt);
	}
	if (h.type != FERRY_PKT_DATA) {
		ctx->cnt.rx_bad_type++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	ss_data(sp, ss, pkt, &h);
}
