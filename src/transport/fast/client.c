/* fast, the client side: sessions opened with a random token (and the
 * server's cookie when it asks for one), requests out through a window,
 * responses reassembled and acked, probes, keepalives and liveness. */
#include <errno.h>
#include <string.h>

#include "base/alloc.h"
#include "base/le.h"
#include "transport/frame.h"
#include "fast.h"
#include "window.h"

static fast_cs *cs_of(ferry_session *s)
{
	return s->tstate;
}

static void cs_open_send(fast_cs *cs)
{
	ferry_wire_hdr h;
	ferry__fast_hdr(&cs->l, &h, FERRY_PKT_SESSION_OPEN, 0, 0, 0);
	h.token = 0;
	h.server_hint = 0;
	uint8_t p[FAST_OPEN_PAYLOAD_BYTES];
	ferry__put64(p, cs->nonce);
	ferry__put16(p + 8, (uint16_t)cs->channels_wanted);
	ferry__put16(p + 10, (uint16_t)cs->s->frag_bytes);
	ferry__put32(p + 12, cs->features);
	ferry__put64(p + 16, cs->cookie);
	ferry__fast_send_ctl(cs->l.port, cs->l.peer, &h, p, sizeof(p));
	ferry__fast_ctx_of(cs->s->ctx)->open_sent++;
}

static void cs_open_timer(ferry__timer *t);

/* (Re)open: a fresh nonce, channels closed until the reply. */
static void cs_open(fast_cs *cs)
{
	ferry_ctx *ctx = cs->s->ctx;
	cs->state = FAST_CS_OPENING;
	cs->nonce = ferry__fast_random64();
	cs->cookie = 0;
	cs->s->nchan = 0;
	cs->open_started_us = ctx->now_us;
	ferry__fast_rto_init(&cs->l.rto, FAST_RTO_MIN_US, FAST_RTO_MAX_US);
	cs_open_send(cs);
	ferry__timer_arm(&ctx->timers, &cs->open_timer, ctx->now_us + cs->l.rto.rto_us);
}

static void cs_open_timer(ferry__timer *t)
{
	fast_cs *cs = ferry_container_of(t, fast_cs, open_timer);
	ferry_ctx *ctx = cs->s->ctx;
	if (cs->state != FAST_CS_OPENING || cs->s->refused != 0)
		return; /* open, or the server speaks another wire version */
	if (ctx->now_us - cs->open_started_us > cs->l.liveness_us) {
		/* Nobody answers: the calls waiting for this session fail, and
		 * the next ones start a fresh liveness interval. */
		fast_ctx *f = ferry__fast_ctx_of(ctx);
		f->calls_peerdead += cs->s->qlen;
		for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++)
			f->calls_peerdead += cs->s->chan[i].call != NULL;
		ferry__log(FERRY_LOG_WARN,
		           "session %u: no answer to SESSION_OPEN for %llu us: "
		           "calls fail with FERRY_EPEERDEAD",
		           cs->s->index, (unsigned long long)cs->l.liveness_us);
		if (!ferry__session_fail(cs->s, FERRY_EPEERDEAD))
			return; /* a callback closed the session: cs is gone */
		cs->open_started_us = ctx->now_us;
	}
	ferry__fast_rto_backoff(&cs->l.rto);
	cs_open_send(cs);
	ferry__timer_arm(&ctx->timers, &cs->open_timer, ctx->now_us + cs->l.rto.rto_us);
}

static void cc_timer(ferry__timer *t);

/* Keepalive (idle sessions): every keepalive_us, a session with no call
 * sends KEEPALIVE when it has heard nothing for that long; silence past the
 * liveness interval reports FERRY_EPEERDEAD to the session's event
 * callback (calls in flight have their own liveness check). */
static void cs_ka_timer(ferry__timer *t)
{
	fast_cs *cs = ferry_container_of(t, fast_cs, ka_timer);
	ferry_session *s = cs->s;
	ferry_ctx *ctx = s->ctx;
	bool dead = false;
	if (s->busy_mask == 0 && s->qlen == 0 && cs->state == FAST_CS_OPEN) {
		uint64_t quiet = ctx->now_us - cs->l.last_rx_us;
		if (quiet > cs->l.liveness_us)
			dead = true;
		if (quiet >= cs->keepalive_us) {
			ferry_wire_hdr h;
			ferry__fast_hdr(&cs->l, &h, FERRY_PKT_KEEPALIVE, 0, 0, 0);
			ferry__fast_send_ctl(cs->l.port, cs->l.peer, &h, NULL, 0);
			ferry__fast_ctx_of(ctx)->keepalives_sent++;
		}
	}
	ferry__timer_arm(&ctx->timers, &cs->ka_timer, ctx->now_us + cs->keepalive_us);
	if (dead)
		ferry__session_peer(s,
		                    FERRY_EPEERDEAD); /* last: the callback may close s */
}

int ferry__fast_session_init(ferry_session *s)
{
	ferry_ctx *ctx = s->ctx;
	fast_cs *cs = ferry__calloc(1, sizeof(*cs));
	if (cs == NULL)
		return -ENOMEM;
	s->tstate = cs;
	cs->s = s;
	s->frag_bytes = ferry__frame_bytes(s->port);
	if (s->frag_bytes == 0)
		return ferry__set_errmsg(ctx, -EMSGSIZE,
		                         "driver max payload leaves no room for data");
	ferry__fast_ctx_of(ctx);
	int rc = 0;
	ferry_loc loc;
	char err[FERRY_ERRMSG_BYTES];
	/* The session's locator text is not kept; the port's bound keys are
	 * the locator's (ctx_port_bound), so parse those for our keys. */
	if (ferry__loc_parse(s->port->bound, &loc, err, sizeof(err)) != 0)
		memset(&loc, 0, sizeof(loc));
	cs->channels_wanted = ferry__fast_loc_u32(
	        &loc, "channels", 1, FAST_CHANNELS_GRANT_MAX, FERRY_CHANNELS_DEFAULT, &rc,
	        ctx->errmsg, sizeof(ctx->errmsg));
	uint32_t live = ferry__fast_loc_u32(&loc, "liveness", 1000, 3600000000u,
	                                    FAST_LIVENESS_US_DEFAULT, &rc, ctx->errmsg,
	                                    sizeof(ctx->errmsg));
	cs->keepalive_us = ferry__fast_loc_u32(&loc, "keepalive", 0, 3600000000u,
	                                       FAST_KEEPALIVE_US_DEFAULT, &rc,
	                                       ctx->errmsg, sizeof(ctx->errmsg));
	cs->features =
	        ferry__fast_loc_features(&loc, &rc, ctx->errmsg, sizeof(ctx->errmsg));
	if (rc == 0 && cs->keepalive_us != 0 && cs->keepalive_us < FAST_KEEPALIVE_US_MIN)
		rc = ferry__set_errmsg(ctx, FERRY_EBADLOC,
		                       "keepalive=%u: 0 (off) or at least %u us",
		                       cs->keepalive_us, FAST_KEEPALIVE_US_MIN);
	/* queue=: validated always, used unless the options set max_queued */
	uint32_t queue =
	        ferry__fast_loc_u32(&loc, "queue", 1, 1u << 20, FERRY_SESSION_QUEUE_MAX,
	                            &rc, ctx->errmsg, sizeof(ctx->errmsg));
	if (!s->max_queued_set)
		s->max_queued = queue;
	if (rc != 0)
		return rc;
	ferry__ctx_tick(ctx);
	ferry__fast_link_init(&cs->l, s->port, &s->peer, 0, live, ctx->now_us);
	cs->l.client_hint = s->index;
	cs->open_timer.fn = cs_open_timer;
	cs->ka_timer.fn = cs_ka_timer;
	if (cs->keepalive_us != 0)
		ferry__timer_arm(&ctx->timers, &cs->ka_timer,
		                 ctx->now_us + cs->keepalive_us);
	for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++) {
		cs->ch[i].cs = cs;
		cs->ch[i].idx = (uint8_t)i;
		cs->ch[i].timer.fn = cc_timer;
	}
	cs_open(cs);
	return 0;
}

void ferry__fast_session_fini(ferry_session *s)
{
	fast_cs *cs = cs_of(s);
	if (cs == NULL)
		return;
	ferry__timer_cancel(&s->ctx->timers, &cs->open_timer);
	ferry__timer_cancel(&s->ctx->timers, &cs->ka_timer);
	ferry__fast_owed_forget(s->ctx, cs);
	for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++) {
		fast_cchan *cc = &cs->ch[i];
		/* a completion ack still waiting goes now: the server frees the
		 * reply at once instead of resending it to a closed port */
		if (cc->fin_owed && cs->state == FAST_CS_OPEN)
			ferry__fast_send_ack(&cs->l, cc->idx, cc->done_rpc_id, NULL,
			                     cc->done_nfrags, 0, cc->fin_echo);
		ferry__timer_cancel(&s->ctx->timers, &cc->timer);
	}
	ferry__free(cs);
	s->tstate = NULL;
}

/* Put a call's request on the wire (from its first fragment). */
static void cc_send_request(fast_cchan *cc, ferry__call *c)
{
	fast_cs *cs = cc->cs;
	ferry_ctx *ctx = cs->s->ctx;
	if (cc->fin_owed) {
		/* this request acks the channel's last response */
		cc->fin_owed = false;
		ferry__fast_ctx_of(ctx)->acks_implicit++;
	}
	cc->req_delivered = false;
	cc->got_response = false;
	cc->probes = 0;
	ferry__fast_out_start(&cs->l, &cc->out, c->req, cs->s->frag_bytes);
	ferry__fast_out_pump(&cs->l, &cc->out, cc->idx, c->rpc_id, c->opcode,
	                     (uint16_t)cs->s->frag_bytes, UINT32_MAX);
	ferry__timer_arm(&ctx->timers, &cc->timer, ctx->now_us + cs->l.rto.rto_us);
}

int ferry__fast_call_start(ferry__call *c)
{
	fast_cs *cs = cs_of(c->s);
	/* A call on an otherwise idle session starts a fresh liveness
	 * interval (its channel's bit is already set). */
	if ((cs->s->busy_mask & ~(1ull << c->chan)) == 0) {
		cs->l.last_rx_us = c->s->ctx->now_us;
		cs->l.unanswered = 0;
	}
	cc_send_request(&cs->ch[c->chan], c);
	return 0;
}

/* Tell the server, once and best effort, that nobody waits for this call:
 * a handler may stop early, a partial request or a retained reply is
 * freed. A lost CANCEL costs only the handler's work. */
void ferry__fast_call_cancel(ferry__call *c)
{
	fast_cs *cs = cs_of(c->s);
	fast_cchan *cc = &cs->ch[c->chan];
	if (cs->state != FAST_CS_OPEN || cc->out.next == 0)
		return; /* nothing reached the wire: nothing to take back */
	ferry_wire_hdr h;
	ferry__fast_hdr(&cs->l, &h, FERRY_PKT_CANCEL, c->chan, c->rpc_id, c->opcode);
	ferry__fast_send_ctl(cs->l.port, cs->l.peer, &h, NULL, 0);
	ferry__fast_ctx_of(c->s->ctx)->cancels_sent++;
}

void ferry__fast_call_end(ferry__call *c, int status)
{
	fast_cs *cs = cs_of(c->s);
	fast_cchan *cc = &cs->ch[c->chan];
	ferry_ctx *ctx = c->s->ctx;
	ferry__fast_out_stop(&cc->out);
	cc->done_rpc_id = c->rpc_id;
	cc->done_nfrags = status == 0 ? c->s->chan[c->chan].rx.nfrags : 0;
	if (status == 0 && cc->fin_owed && cs->state == FAST_CS_OPEN) {
		uint32_t d = cs->l.rto.min_us / 4;
		ferry__timer_arm(&ctx->timers, &cc->timer,
		                 ctx->now_us +
		                         (d < FAST_FIN_DELAY_US ? d : FAST_FIN_DELAY_US));
		return;
	}
	cc->fin_owed = false;
	ferry__timer_cancel(&ctx->timers, &cc->timer);
}

/* Liveness: silence past the interval fails every call of the session. */
static bool cs_check_alive(fast_cs *cs)
{
	ferry_ctx *ctx = cs->s->ctx;
	uint64_t quiet = ctx->now_us - cs->l.last_rx_us;
	if (quiet <= cs->l.liveness_us || (cs->l.unanswered < FAST_LIVENESS_PROBES &&
	                                   quiet <= cs->l.liveness_us * 3 / 2))
		return true;
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++)
		f->calls_peerdead += cs->s->chan[i].call != NULL;
	f->calls_peerdead += cs->s->qlen;
	ferry__log(FERRY_LOG_WARN,
	           "session %u: peer silent for %llu us: calls fail with "
	           "FERRY_EPEERDEAD",
	           cs->s->index, (unsigned long long)cs->l.liveness_us);
	(void)ferry__session_fail(cs->s, FERRY_EPEERDEAD); /* may free cs: callers stop */
	return false;
}

/* A client channel's timer: resend the oldest unacked request fragment,
 * or probe for a response that has not (fully) come. */
static void cc_timer(ferry__timer *t)
{
	fast_cchan *cc = ferry_container_of(t, fast_cchan, timer);
	fast_cs *cs = cc->cs;
	ferry_session *s = cs->s;
	ferry_ctx *ctx = s->ctx;
	ferry__call *c = s->chan[cc->idx].call;
	if (cc->fin_owed) {
		/* no request followed the response in time: ack it now */
		cc->fin_owed = false;
		if (cs->state == FAST_CS_OPEN) {
			ferry__fast_ctx_of(ctx)->acks_fin_timer++;
			ferry__fast_send_ack(&cs->l, cc->idx, cc->done_rpc_id, NULL,
			                     cc->done_nfrags, 0, cc->fin_echo);
		}
	}
	if (c == NULL || c->state != FERRY_CALL_ACTIVE || cs->state != FAST_CS_OPEN)
		return;
	if (!cs_check_alive(cs))
		return;
	cs->l.unanswered++;
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	/* A channel's timer firing while the server is heard from (its other
	 * channels' packets keep coming) is a busy server, not a lost link:
	 * resend or probe, but neither back the session's RTO off nor drop
	 * its window. With 64 calls in flight, one timeout per channel
	 * doubled the RTO 64 times and kept the window at 2 fragments. */
	bool heard = ctx->now_us - cs->l.last_rx_us < cs->l.rto.rto_us;
	if (!heard) {
		ferry__fast_rto_backoff(&cs->l.rto);
		f->rto_backoffs++;
	}
	ferry__chan *ch = &s->chan[cc->idx];
	if (!cc->req_delivered && !ferry__fast_out_done(&cc->out) &&
	    cc->out.base < cc->out.next) {
		f->retx_timeout++;
		if (!heard)
			ferry__fast_link_loss(&cs->l, true);
		ferry__fast_out_send(&cs->l, &cc->out, cc->idx, c->rpc_id, c->opcode,
		                     (uint16_t)s->frag_bytes, cc->out.base,
		                     FERRY_FLAG_RETX | FERRY_FLAG_ACK_REQ);
	} else if (!cc->got_response && !cc->req_delivered) {
		/* Every fragment went out and none is known to have arrived whole:
		 * ask where the request stands by resending its last fragment. */
		f->retx_probe++;
		ferry__fast_out_send(&cs->l, &cc->out, cc->idx, c->rpc_id, c->opcode,
		                     (uint16_t)s->frag_bytes, cc->out.nfrags - 1,
		                     FERRY_FLAG_RETX | FERRY_FLAG_ACK_REQ);
	} else if (!cc->got_response) {
		/* The server acked the whole request: its handler is working.
		 * Probe with an ACK_REQ (no response fragment yet), never with
		 * request data; the server answers with an ack while it works and
		 * with the retained reply after. */
		f->retx_probe++;
		ferry__fast_send_ack(&cs->l, cc->idx, c->rpc_id, NULL, 0,
		                     FERRY_FLAG_ACK_REQ, 0);
	} else {
		/* Part of the response is here: tell the server what is missing. */
		f->retx_probe++;
		ferry__fast_send_ack(&cs->l, cc->idx, c->rpc_id, &ch->rx, ch->rx.next,
		                     FERRY_FLAG_ACK_REQ, 0);
	}
	/* A server known to be working on it is probed less often. Never
	 * less than FAST_LIVENESS_PROBES times a liveness interval, though:
	 * a live peer is told from a dead one by unanswered probes. */
	uint32_t wait = cs->l.rto.rto_us;
	if (cc->req_delivered && !cc->got_response && cc->probes++ > 0)
		wait = FAST_RTO_MAX_US;
	if (wait > cs->l.liveness_us / FAST_LIVENESS_PROBES)
		wait = cs->l.liveness_us / FAST_LIVENESS_PROBES;
	ferry__timer_arm(&ctx->timers, &cc->timer, ctx->now_us + wait);
}

/* After a reopen, calls still on channels go again from their first byte. */
static void cs_resend_inflight(fast_cs *cs)
{
	for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++) {
		ferry__call *c = cs->s->chan[i].call;
		if (c == NULL || c->state != FERRY_CALL_ACTIVE)
			continue;
		if (cs->s->chan[i].rx.active)
			ferry__reasm_abort(&cs->s->chan[i].rx);
		ferry_buf_reset(c->resp);
		cc_send_request(&cs->ch[i], c);
	}
}

static void cs_open_reply(fast_cs *cs, const ferry_wire_hdr *h, const uint8_t *p,
                          uint32_t len)
{
	ferry_session *s = cs->s;
	if (cs->state != FAST_CS_OPENING || len < FAST_OPEN_REPLY_MIN_BYTES ||
	    ferry__get64(p) != cs->nonce)
		return; /* a late duplicate, or not ours */
	uint64_t epoch = ferry__get64(p + 8);
	uint32_t granted = ferry__get16(p + 16);
	uint32_t cap = ferry__get16(p + 18);
	if (h->token == 0 && granted == 0) {
		/* Refused: the server's session table is full. What waits for
		 * this session fails; the open goes on being retried. */
		fast_ctx *f = ferry__fast_ctx_of(s->ctx);
		f->open_refused_received++;
		cs->open_started_us = s->ctx->now_us;
		(void)ferry__session_fail(s, FERRY_EAGAIN); /* may free s and cs */
		return;
	}
	if (h->token == 0 || granted == 0 || granted > FERRY_CHANNELS_MAX)
		return;
	ferry__timer_cancel(&s->ctx->timers, &cs->open_timer);
	cs->l.last_rx_us = s->ctx->now_us; /* heard: keepalive counts from here */
	cs->l.unanswered = 0;
	cs->l.token = h->token;
	cs->l.server_hint = h->server_hint;
	bool restarted = cs->have_epoch && epoch != cs->epoch;
	if (restarted)
		ferry__log(FERRY_LOG_INFO,
		           "session %u: the server restarted (new epoch); calls in "
		           "flight fail with FERRY_ERESTARTED",
		           s->index);
	cs->epoch = epoch;
	cs->have_epoch = true;
	cs->state = FAST_CS_OPEN;
	if (cap != 0 && cap < s->frag_bytes)
		s->frag_bytes = cap;
	/* Pad toward this server only if it takes padding (every session of
	 * a client port has the same server). */
	uint32_t feat = len >= FAST_OPEN_REPLY_PAYLOAD_BYTES ? ferry__get32(p + 20) : 0;
	s->port->eps[s->port->neps - 1]->tx_pad =
	        (feat & cs->features & FAST_FEAT_PAD) != 0;
	ferry__fast_link_set_cap(&cs->l, s->frag_bytes);
	s->nchan = granted;
	ferry__fast_ctx_of(s->ctx)->sessions_opened++;
	if (restarted) {
		/* A new server instance: what it had in flight may or may not
		 * have run. Those calls fail; queued ones go to the new one. */
		fast_ctx *f = ferry__fast_ctx_of(s->ctx);
		for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++)
			if (s->chan[i].call != NULL &&
			    s->chan[i].call->state == FERRY_CALL_ACTIVE) {
				f->calls_restarted++;
				ferry__call_complete(s->chan[i].call, FERRY_ERESTARTED);
			}
	} else {
		cs_resend_inflight(cs);
	}
	ferry__session_kick(s);
}

/* The server wants proof that we receive at our address: repeat the open
 * with its cookie, at once (a cookie we already have waits for the timer). */
static void cs_cookie(fast_cs *cs, const uint8_t *p, uint32_t len)
{
	if (cs->state != FAST_CS_OPENING || len < FAST_COOKIE_PAYLOAD_BYTES ||
	    ferry__get64(p) != cs->nonce)
		return;
	uint64_t cookie = ferry__get64(p + 8);
	if (cookie == 0 || cookie == cs->cookie)
		return;
	cs->cookie = cookie;
	ferry__fast_ctx_of(cs->s->ctx)->cookies_received++;
	cs_open_send(cs);
}

static void cs_bad_session(fast_cs *cs, const ferry_wire_hdr *h)
{
	/* Only a reply to our own packet counts: it echoes our token. */
	if (cs->state != FAST_CS_OPEN || h->token != cs->l.token)
		return;
	ferry__fast_ctx_of(cs->s->ctx)->bad_session_received++;
	ferry__fast_ctx_of(cs->s->ctx)->reopens++;
	uint64_t epoch =
	        (uint64_t)h->msg_len << 32 | h->frag; /* no payload: see WIRE.md */
	if (epoch != cs->epoch) {
		/* Restarted: fail what is in flight now, before reopening. */
		ferry_session *s = cs->s;
		fast_ctx *f = ferry__fast_ctx_of(s->ctx);
		for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++)
			if (s->chan[i].call != NULL &&
			    s->chan[i].call->state == FERRY_CALL_ACTIVE) {
				f->calls_restarted++;
				ferry__call_complete(s->chan[i].call, FERRY_ERESTARTED);
			}
		cs->epoch = epoch;
	}
	/* Same epoch: the server expired an idle session; reopen and resend. */
	cs_open(cs);
}

static void cs_ack(fast_cs *cs, const ferry_wire_hdr *h, const uint8_t *p, uint32_t len)
{
	ferry_session *s = cs->s;
	if (h->channel >= s->nchan || len < FAST_ACK_PAYLOAD_BYTES)
		return;
	ferry__call *c = s->chan[h->channel].call;
	fast_cchan *cc = &cs->ch[h->channel];
	ferry__fast_ctx_of(s->ctx)->acks_received++;
	if (c == NULL || c->rpc_id != h->rpc_id || c->state != FERRY_CALL_ACTIVE)
		return;
	uint64_t words[FAST_ACK_WORDS_MAX];
	uint32_t nw = ferry__fast_ack_words(h, p, len, words);
	ferry__fast_out_ack(&cs->l, &cc->out, h->frag, words, nw, h->msg_len);
	if (h->frag >= cc->out.nfrags)
		cc->req_delivered = true;
	ferry__fast_ctx_of(s->ctx)->retx_fast += ferry__fast_out_recover(
	        &cs->l, &cc->out, cc->idx, c->rpc_id, c->opcode, (uint16_t)s->frag_bytes);
	ferry__fast_out_pump(&cs->l, &cc->out, cc->idx, c->rpc_id, c->opcode,
	                     (uint16_t)s->frag_bytes, UINT32_MAX);
	ferry__timer_push(&s->ctx->timers, &cc->timer, s->ctx->now_us + cs->l.rto.rto_us);
}

static void cs_data(fast_cs *cs, ferry_pkt *pkt, const ferry_wire_hdr *h)
{
	ferry_session *s = cs->s;
	ferry__port *port = s->port;
	ferry_ctx *ctx = s->ctx;
	if (h->channel >= s->nchan)
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	fast_cchan *cc = &cs->ch[h->channel];
	ferry__chan *ch = &s->chan[h->channel];
	ferry__call *c = ch->call;
	if (c == NULL || c->rpc_id != h->rpc_id || c->state != FERRY_CALL_ACTIVE) {
		/* A retransmitted tail of a response we already completed: the
		 * server wants to hear that it arrived. */
		if (h->rpc_id == cc->done_rpc_id && (h->flags & FERRY_FLAG_ACK_REQ))
			ferry__fast_send_ack(
			        &cs->l, h->channel, h->rpc_id, NULL,
			        cc->done_nfrags ? cc->done_nfrags : h->frag + 1, 0, 0);
		ferry__call_stale(s, h->channel, h->rpc_id);
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	/* Any response packet acks the whole request (implicitly). */
	if (!cc->got_response) {
		cc->got_response = true;
		cc->req_delivered = true;
		if (cc->out.nfrags == 1 && !(*cc->out.retx & 1))
			ferry__fast_link_sample(
			        &cs->l,
			        ferry__fast_out_sent_at(&cc->out, 0, ctx->now_us));
		ferry__fast_out_stop(&cc->out);
	}
	if (h->aux != 0) {
		ferry__ep_release(pkt);
		ferry__call_response(c, ferry__wire_unstatus(h->aux));
		return;
	}
	if (h->msg_len > port->msg_max) {
		ctx->cnt.rx_too_big++;
		ferry__ep_release(pkt);
		ferry__call_complete(c, FERRY_ETOOBIG);
		return;
	}
	if (!ch->rx.active)
		ferry__reasm_start(&ch->rx, c->resp, h->msg_len, h->frag_bytes);
	uint32_t before = ch->rx.next, high = ch->rx.high;
	bool ack_req = (h->flags & FERRY_FLAG_ACK_REQ) != 0;
	int r = ferry__reasm_add(&ch->rx, pkt, h->frag, h->msg_len, h->frag_bytes,
	                         pkt->data + FERRY_WIRE_HDR_BYTES,
	                         pkt->len - FERRY_WIRE_HDR_BYTES);
	if (r == FERRY_REASM_COMPLETE) {
		/* A multi-fragment response: the server must hear that it all
		 * came (single-fragment ones need no ack). That ack waits for
		 * the channel's next request, which implies it: ferry__fast_call_end
		 * arms the timer that sends it if none comes (cc_timer). */
		cc->fin_owed = ch->rx.nfrags > 1;
		cc->fin_echo = h->frag + 1;
		ferry__call_response(c, 0);
		return;
	}
	if (r < 0) {
		ferry__fast_refused(port, pkt, r);
		ack_req = true; /* the server is resending: tell it where we are */
	}
	if (ferry__fast_ack_due(&ch->rx, before, high, h->frag, ack_req, r))
		ferry__fast_owe(ctx, cs, false, h->channel, &cc->ack, h->frag + 1,
		                ack_req);
	ferry__timer_push(&ctx->timers, &cc->timer, ctx->now_us + cs->l.rto.rto_us);
}

void ferry__fast_client_pkt(ferry__port *port, ferry_pkt *pkt)
{
	ferry_ctx *ctx = port->ctx;
	ferry_wire_hdr h;
	int v = ferry__wire_decode(pkt->data, pkt->len, &h);
	if (ferry__frame_is_version(v, &h) && ferry__frame_version(port, pkt, v, &h))
		return;
	if (v != FERRY_WIRE_OK)
		return ferry__frame_drop(port, pkt, v);
	ferry_session *s = port->session;
	fast_cs *cs = s != NULL ? cs_of(s) : NULL;
	if (cs == NULL || (h.flags & FERRY_FLAG_RESPONSE) == 0 ||
	    h.client_hint != s->index) {
		ctx->cnt.rx_unknown_session++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	const uint8_t *p = pkt->data + FERRY_WIRE_HDR_BYTES;
	uint32_t len = pkt->len - FERRY_WIRE_HDR_BYTES;
	if (h.type == FERRY_PKT_SESSION_OPEN_REPLY) {
		cs_open_reply(cs, &h, p, len);
		return ferry__ep_release(pkt);
	}
	if (h.type == FERRY_PKT_SESSION_COOKIE) {
		cs_cookie(cs, p, len);
		return ferry__ep_release(pkt);
	}
	if (h.type == FERRY_PKT_BAD_SESSION) {
		cs_bad_session(cs, &h);
		return ferry__ep_release(pkt);
	}
	if (cs->state != FAST_CS_OPEN || h.token != cs->l.token) {
		ctx->cnt.rx_unknown_session++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	cs->l.last_rx_us = ctx->now_us;
	cs->l.unanswered = 0;
	ferry__session_peer(s, 0); /* heard (again) */
	if (h.type == FERRY_PKT_KEEPALIVE) {
		ferry__fast_ctx_of(ctx)->keepalives_answered++;
		return ferry__ep_release(pkt);
	}
	if (h.type == FERRY_PKT_ACK) {
		cs_ack(cs, &h, p, len);
		return ferry__ep_release(pkt);
	}
	if (h.type != FERRY_PKT_DATA) {
		ctx->cnt.rx_bad_type++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	cs_data(cs, pkt, &h);
}
