/* fast: windowed, reliable RPC over datagram drivers (docs/FAST.md).
 *
 * Map: sessions (open handshake with a random token and the server's boot
 * epoch, BAD_SESSION for unknown ones, idle expiry); the client side
 * (requests out through a window, responses reassembled, acks, probes,
 * liveness); the server side (per-channel state with the retained reply
 * that makes execution at-most-once, responses out through a window); the
 * ops table. Framing, reassembly and drop accounting are shared with
 * unreliable (frame.c, reasm.c); windows and timers live in window.c and
 * rto.c. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "base/alloc.h"
#include "base/le.h"
#include "transport/frame.h"
#include "fast.h"
#include "window.h"

static const char *const fast_keys[] = {"maxmsg",   "channels", "liveness", "expire",
                                        "keepalive", "queue",   "sessions", "reasm",
                                        "loans",     "bsrate",  "inflight", "pad",
                                        NULL};

static uint64_t fast_random64(void)
{
	uint64_t v = 0;
	while (getrandom(&v, sizeof(v), 0) != sizeof(v) || v == 0)
		;
	return v;
}

/* A control packet (ack, open, BAD_SESSION): header and its small payload
 * go to the driver as one header block, which drivers copy at once (at
 * most 64 bytes), so nothing is borrowed and batching is undisturbed. */
#define FAST_CTL_MAX_BYTES (FERRY_WIRE_HDR_BYTES + 8 * FAST_ACK_WORDS_MAX)

static void fast_send_ctl(ferry__port *port, const ferry_addr *to, ferry_wire_hdr *h,
                          const uint8_t *payload, size_t len)
{
	uint8_t pkt[FAST_CTL_MAX_BYTES];
	ferry__wire_encode(h, pkt);
	if (len > 0)
		memcpy(pkt + FERRY_WIRE_HDR_BYTES, payload, len);
	if (ferry__ep_send(port->ep, to, pkt, FERRY_WIRE_HDR_BYTES + len, NULL) < 0)
		port->ctx->cnt.tx_dropped++;
}

/* An ack for a message being received: first missing + a bitmap of the
 * fragments after it, in as many 64-bit words as reach the highest one
 * received (at least one; aux says how many). */
/* echo: the fragment whose arrival caused this ack, plus one (0: none);
 * it travels in msg_len, which acks do not otherwise use, and lets the
 * sender time exactly that fragment's round trip. */
static void fast_send_ack(fast_link *l, uint8_t ch, uint32_t rpc_id, const ferry__reasm *r,
                          uint32_t first_missing, uint8_t flags, uint32_t echo)
{
	ferry_wire_hdr h;
	ferry__fast_hdr(l, &h, FERRY_PKT_ACK, ch, rpc_id, 0);
	h.flags |= flags;
	h.frag = first_missing;
	h.msg_len = echo;
	uint8_t p[FAST_ACK_WORDS_MAX * 8];
	uint32_t words = 1;
	memset(p, 0, 8);
	if (r != NULL && r->active && r->high > first_missing + 1) {
		uint32_t span = r->high - first_missing - 1;
		if (span > ferry__reasm_window(r) - 1)
			span = ferry__reasm_window(r) - 1;
		words = (span + 63) / 64;
		for (uint32_t k = 0; k < words; k++) {
			uint64_t bm = 0;
			for (uint32_t i = 0; i < 64; i++) {
				uint32_t f = first_missing + 1 + 64 * k + i;
				if (f - first_missing < ferry__reasm_window(r) && ferry__reasm_has(r, f))
					bm |= 1ull << i;
			}
			ferry__put64(p + 8 * k, bm);
		}
	}
	h.aux = (uint16_t)words;
	fast_send_ctl(l->port, l->peer, &h, p, 8 * (size_t)words);
	fast_ctx *f = ferry__fast_ctx_of(l->port->ctx);
	f->acks_sent++;
	f->ack_words_sent += words;
}

/* Progress acks wait for the end of the receive batch: one ack per
 * channel then says what every fragment of the batch brought (a 64 KiB
 * response in 1500-byte datagrams arrives as two GRO trains, and acking
 * every eighth fragment sent five acks where one did). They leave in the
 * same flush as they would have, so nothing is later. */
static void fast_acks_flush(ferry_ctx *ctx)
{
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	for (uint32_t i = 0; i < f->nowed; i++) {
		const fast_owed *o = &f->owed[i];
		if (o->server) {
			fast_ss *ss = o->owner;
			fast_sch *sc = &ss->ch[o->ch];
			if (!sc->ack.owed)
				continue;
			sc->ack.owed = false;
			if (sc->state == FAST_SCH_RECEIVING && sc->rpc != NULL && !ss->l.port->dead)
				fast_send_ack(&ss->l, sc->idx, sc->rpc_id, &sc->rpc->rx,
				              sc->rpc->rx.next, 0, sc->ack.echo);
		} else {
			fast_cs *cs = o->owner;
			fast_cchan *cc = &cs->ch[o->ch];
			if (!cc->ack.owed)
				continue;
			cc->ack.owed = false;
			ferry__chan *ch = &cs->s->chan[o->ch];
			ferry__call *c = ch->call;
			if (c != NULL && c->state == FERRY_CALL_ACTIVE && ch->rx.active &&
			    !cs->l.port->dead)
				fast_send_ack(&cs->l, cc->idx, c->rpc_id, &ch->rx, ch->rx.next, 0,
				              cc->ack.echo);
		}
	}
	f->nowed = 0;
}

static void fast_owe(ferry_ctx *ctx, void *owner, bool server, uint8_t ch, fast_owed_ack *a,
                     uint32_t echo, bool asked)
{
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	if (a->owed) {
		f->acks_coalesced++;
		if (asked || !a->asked) {
			a->echo = echo;
			a->asked = asked;
		}
		return;
	}
	if (f->nowed == FAST_ACKS_OWED_MAX)
		fast_acks_flush(ctx);
	f->owed[f->nowed++] = (fast_owed){.owner = owner, .server = server, .ch = ch};
	*a = (fast_owed_ack){.owed = true, .asked = asked, .echo = echo};
}

/* A session going away takes its owed acks with it. */
static void fast_owed_forget(ferry_ctx *ctx, const void *owner)
{
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	uint32_t k = 0;
	for (uint32_t i = 0; i < f->nowed; i++)
		if (f->owed[i].owner != owner)
			f->owed[k++] = f->owed[i];
	f->nowed = k;
}

static void fast_rx_batch_end(ferry__port *port)
{
	if (ferry__fast_ctx_of(port->ctx)->nowed != 0)
		fast_acks_flush(port->ctx);
}

/* The bitmap words of an ack (aux of them, as many as came). */
static uint32_t fast_ack_words(const ferry_wire_hdr *h, const uint8_t *p, uint32_t len,
                               uint64_t *words)
{
	uint32_t n = h->aux == 0 ? 1 : h->aux;
	if (n > len / 8)
		n = len / 8;
	if (n > FAST_ACK_WORDS_MAX)
		n = FAST_ACK_WORDS_MAX;
	for (uint32_t k = 0; k < n; k++)
		words[k] = ferry__get64(p + 8 * k);
	return n;
}

/* Does a fragment just offered to r (r's next and high were next0 and
 * high0 before; verdict v) call for an ack? When the sender asked
 * (ACK_REQ: a window-limited burst, ferry__fast_out_pump) and on a refused
 * fragment (the sender is resending); otherwise only on news of loss.
 * Short messages (loan mode): on any gap and while fragments wait parked.
 * Long ones, whose window is wide: when a fragment opens a new hole
 * (beyond the highest seen: the sender resends at once, but not again for
 * every later fragment while the hole lasts; acking every fragment behind
 * a hole sent ~1,400 acks per loss at a 1500-byte MTU), and when a
 * retransmission moved the first missing one while others wait behind it.
 * No ack for mere progress: a sender whose window holds the whole message
 * needs none, and each one woke a blocked sender for nothing (64 KiB READs
 * over a 1500-byte veth: two wakeups per call instead of one). */
static bool fast_ack_due(const ferry__reasm *r, uint32_t next0, uint32_t high0, uint32_t frag,
                         bool req, int v)
{
	if (req || v < 0)
		return true;
	if (!r->copy)
		return frag > next0 || r->parked > 0;
	if (frag > high0)
		return true;
	return r->next != next0 && r->parked > 0;
}

/* A fragment reassembly refused: counted (fast's own counters and the
 * core's rpc.drop.*) and given back. */
static void fast_refused(ferry__port *port, ferry_pkt *pkt, int verdict)
{
	fast_ctx *f = ferry__fast_ctx_of(port->ctx);
	if (verdict == FERRY_REASM_DUP)
		f->frag_dup++;
	else if (verdict == FERRY_REASM_AHEAD)
		f->frag_out_of_window++;
	ferry__frame_refused(port, pkt, verdict);
}

static uint32_t fast_loc_u32(const ferry_loc *loc, const char *key, uint64_t min, uint64_t max,
                             uint64_t dflt, int *rc, char *err, size_t err_len)
{
	uint64_t v = dflt;
	if (*rc == 0)
		*rc = ferry__loc_u64(loc, key, min, max, dflt, &v, err, err_len);
	return (uint32_t)v;
}

/* The features a side announces in its open or reply: pad=0 turns
 * padding off (docs/WIRE.md "Features"). */
static uint32_t fast_loc_features(const ferry_loc *loc, int *rc, char *err, size_t err_len)
{
	return fast_loc_u32(loc, "pad", 0, 1, 1, rc, err, err_len) != 0 ? FAST_FEATURES : 0;
}

/* Client side ------------------------------------------------------------------*/

static fast_cs *cs_of(ferry_session *s) { return s->tstate; }

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
	fast_send_ctl(cs->l.port, cs->l.peer, &h, p, sizeof(p));
	ferry__fast_ctx_of(cs->s->ctx)->open_sent++;
}

static void cs_open_timer(ferry__timer *t);

/* (Re)open: a fresh nonce, channels closed until the reply. */
static void cs_open(fast_cs *cs)
{
	ferry_ctx *ctx = cs->s->ctx;
	cs->state = FAST_CS_OPENING;
	cs->nonce = fast_random64();
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
		ferry__log(FERRY_LOG_WARN, "session %u: no answer to SESSION_OPEN for %llu us: "
		           "calls fail with FERRY_EPEERDEAD", cs->s->index,
		           (unsigned long long)cs->l.liveness_us);
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
			fast_send_ctl(cs->l.port, cs->l.peer, &h, NULL, 0);
			ferry__fast_ctx_of(ctx)->keepalives_sent++;
		}
	}
	ferry__timer_arm(&ctx->timers, &cs->ka_timer, ctx->now_us + cs->keepalive_us);
	if (dead)
		ferry__session_peer(s, FERRY_EPEERDEAD); /* last: the callback may close s */
}

static int fast_session_init(ferry_session *s)
{
	ferry_ctx *ctx = s->ctx;
	fast_cs *cs = ferry__calloc(1, sizeof(*cs));
	if (cs == NULL)
		return -ENOMEM;
	s->tstate = cs;
	cs->s = s;
	s->frag_bytes = ferry__frame_bytes(s->port);
	if (s->frag_bytes == 0)
		return ferry__set_errmsg(ctx, -EMSGSIZE, "driver max payload leaves no room for data");
	ferry__fast_ctx_of(ctx);
	int rc = 0;
	ferry_loc loc;
	char err[FERRY_ERRMSG_BYTES];
	/* The session's locator text is not kept; the port's bound keys are
	 * the locator's (ctx_port_bound), so parse those for our keys. */
	if (ferry__loc_parse(s->port->bound, &loc, err, sizeof(err)) != 0)
		memset(&loc, 0, sizeof(loc));
	cs->channels_wanted = fast_loc_u32(&loc, "channels", 1, FAST_CHANNELS_GRANT_MAX,
	                                   FERRY_CHANNELS_DEFAULT, &rc, ctx->errmsg,
	                                   sizeof(ctx->errmsg));
	uint32_t live = fast_loc_u32(&loc, "liveness", 1000, 3600000000u, FAST_LIVENESS_US_DEFAULT,
	                             &rc, ctx->errmsg, sizeof(ctx->errmsg));
	cs->keepalive_us = fast_loc_u32(&loc, "keepalive", 0, 3600000000u,
	                                FAST_KEEPALIVE_US_DEFAULT, &rc, ctx->errmsg,
	                                sizeof(ctx->errmsg));
	cs->features = fast_loc_features(&loc, &rc, ctx->errmsg, sizeof(ctx->errmsg));
	if (rc == 0 && cs->keepalive_us != 0 && cs->keepalive_us < FAST_KEEPALIVE_US_MIN)
		rc = ferry__set_errmsg(ctx, FERRY_EBADLOC, "keepalive=%u: 0 (off) or at least %u us",
		                       cs->keepalive_us, FAST_KEEPALIVE_US_MIN);
	/* queue=: validated always, used unless the options set max_queued */
	uint32_t queue = fast_loc_u32(&loc, "queue", 1, 1u << 20, FERRY_SESSION_QUEUE_MAX, &rc,
	                              ctx->errmsg, sizeof(ctx->errmsg));
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
		ferry__timer_arm(&ctx->timers, &cs->ka_timer, ctx->now_us + cs->keepalive_us);
	for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++) {
		cs->ch[i].cs = cs;
		cs->ch[i].idx = (uint8_t)i;
		cs->ch[i].timer.fn = cc_timer;
	}
	cs_open(cs);
	return 0;
}

static void fast_session_fini(ferry_session *s)
{
	fast_cs *cs = cs_of(s);
	if (cs == NULL)
		return;
	ferry__timer_cancel(&s->ctx->timers, &cs->open_timer);
	ferry__timer_cancel(&s->ctx->timers, &cs->ka_timer);
	fast_owed_forget(s->ctx, cs);
	for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++) {
		fast_cchan *cc = &cs->ch[i];
		/* a completion ack still waiting goes now: the server frees the
		 * reply at once instead of resending it to a closed port */
		if (cc->fin_owed && cs->state == FAST_CS_OPEN)
			fast_send_ack(&cs->l, cc->idx, cc->done_rpc_id, NULL, cc->done_nfrags, 0,
			              cc->fin_echo);
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
	ferry__fast_out_pump(&cs->l, &cc->out, cc->idx, c->rpc_id, c->opcode, (uint16_t)cs->s->frag_bytes,
	              UINT32_MAX);
	ferry__timer_arm(&ctx->timers, &cc->timer, ctx->now_us + cs->l.rto.rto_us);
}

static int fast_call_start(ferry__call *c)
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
static void fast_call_cancel(ferry__call *c)
{
	fast_cs *cs = cs_of(c->s);
	fast_cchan *cc = &cs->ch[c->chan];
	if (cs->state != FAST_CS_OPEN || cc->out.next == 0)
		return; /* nothing reached the wire: nothing to take back */
	ferry_wire_hdr h;
	ferry__fast_hdr(&cs->l, &h, FERRY_PKT_CANCEL, c->chan, c->rpc_id, c->opcode);
	fast_send_ctl(cs->l.port, cs->l.peer, &h, NULL, 0);
	ferry__fast_ctx_of(c->s->ctx)->cancels_sent++;
}

static void fast_call_end(ferry__call *c, int status)
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
		                 ctx->now_us + (d < FAST_FIN_DELAY_US ? d : FAST_FIN_DELAY_US));
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
	if (quiet <= cs->l.liveness_us ||
	    (cs->l.unanswered < FAST_LIVENESS_PROBES && quiet <= cs->l.liveness_us * 3 / 2))
		return true;
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++)
		f->calls_peerdead += cs->s->chan[i].call != NULL;
	f->calls_peerdead += cs->s->qlen;
	ferry__log(FERRY_LOG_WARN, "session %u: peer silent for %llu us: calls fail with "
	           "FERRY_EPEERDEAD", cs->s->index, (unsigned long long)cs->l.liveness_us);
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
		if (cs->state == FAST_CS_OPEN)
			fast_send_ack(&cs->l, cc->idx, cc->done_rpc_id, NULL, cc->done_nfrags, 0,
			              cc->fin_echo);
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
	if (!cc->req_delivered && !ferry__fast_out_done(&cc->out) && cc->out.base < cc->out.next) {
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
		fast_send_ack(&cs->l, cc->idx, c->rpc_id, NULL, 0, FERRY_FLAG_ACK_REQ, 0);
	} else {
		/* Part of the response is here: tell the server what is missing. */
		f->retx_probe++;
		fast_send_ack(&cs->l, cc->idx, c->rpc_id, &ch->rx, ch->rx.next, FERRY_FLAG_ACK_REQ, 0);
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

static void cs_open_reply(fast_cs *cs, const ferry_wire_hdr *h, const uint8_t *p, uint32_t len)
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
		ferry__log(FERRY_LOG_INFO, "session %u: the server restarted (new epoch); calls in "
		           "flight fail with FERRY_ERESTARTED", s->index);
	cs->epoch = epoch;
	cs->have_epoch = true;
	cs->state = FAST_CS_OPEN;
	if (cap != 0 && cap < s->frag_bytes)
		s->frag_bytes = cap;
	/* Pad toward this server only if it takes padding (every session of
	 * a client port has the same server). */
	uint32_t feat = len >= FAST_OPEN_REPLY_PAYLOAD_BYTES ? ferry__get32(p + 20) : 0;
	s->port->eps[s->port->neps - 1]->tx_pad = (feat & cs->features & FAST_FEAT_PAD) != 0;
	ferry__fast_link_set_cap(&cs->l, s->frag_bytes);
	s->nchan = granted;
	ferry__fast_ctx_of(s->ctx)->sessions_opened++;
	if (restarted) {
		/* A new server instance: what it had in flight may or may not
		 * have run. Those calls fail; queued ones go to the new one. */
		fast_ctx *f = ferry__fast_ctx_of(s->ctx);
		for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++)
			if (s->chan[i].call != NULL && s->chan[i].call->state == FERRY_CALL_ACTIVE) {
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
	uint64_t epoch = (uint64_t)h->msg_len << 32 | h->frag; /* no payload: see WIRE.md */
	if (epoch != cs->epoch) {
		/* Restarted: fail what is in flight now, before reopening. */
		ferry_session *s = cs->s;
		fast_ctx *f = ferry__fast_ctx_of(s->ctx);
		for (uint32_t i = 0; i < FERRY_CHANNELS_MAX; i++)
			if (s->chan[i].call != NULL && s->chan[i].call->state == FERRY_CALL_ACTIVE) {
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
	uint32_t nw = fast_ack_words(h, p, len, words);
	ferry__fast_out_ack(&cs->l, &cc->out, h->frag, words, nw, h->msg_len);
	if (h->frag >= cc->out.nfrags)
		cc->req_delivered = true;
	ferry__fast_ctx_of(s->ctx)->retx_fast += ferry__fast_out_recover(&cs->l, &cc->out, cc->idx, c->rpc_id,
	                                                   c->opcode, (uint16_t)s->frag_bytes);
	ferry__fast_out_pump(&cs->l, &cc->out, cc->idx, c->rpc_id, c->opcode, (uint16_t)s->frag_bytes,
	              UINT32_MAX);
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
			fast_send_ack(&cs->l, h->channel, h->rpc_id, NULL,
			              cc->done_nfrags ? cc->done_nfrags : h->frag + 1, 0, 0);
		ferry__call_stale(s, h->channel, h->rpc_id);
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	/* Any response packet acks the whole request (implicitly). */
	if (!cc->got_response) {
		cc->got_response = true;
		cc->req_delivered = true;
		if (cc->out.nfrags == 1 && !(*cc->out.retx & 1))
			ferry__fast_link_sample(&cs->l, ferry__fast_out_sent_at(&cc->out, 0, ctx->now_us));
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
	                         pkt->data + FERRY_WIRE_HDR_BYTES, pkt->len - FERRY_WIRE_HDR_BYTES);
	if (r == FERRY_REASM_COMPLETE) {
		/* A multi-fragment response: the server must hear that it all
		 * came (single-fragment ones need no ack). That ack waits for
		 * the channel's next request, which implies it: fast_call_end
		 * arms the timer that sends it if none comes (cc_timer). */
		cc->fin_owed = ch->rx.nfrags > 1;
		cc->fin_echo = h->frag + 1;
		ferry__call_response(c, 0);
		return;
	}
	if (r < 0) {
		fast_refused(port, pkt, r);
		ack_req = true; /* the server is resending: tell it where we are */
	}
	if (fast_ack_due(&ch->rx, before, high, h->frag, ack_req, r))
		fast_owe(ctx, cs, false, h->channel, &cc->ack, h->frag + 1,
		         ack_req);
	ferry__timer_push(&ctx->timers, &cc->timer, ctx->now_us + cs->l.rto.rto_us);
}

static void fast_client_pkt(ferry__port *port, ferry_pkt *pkt)
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
	if (cs == NULL || (h.flags & FERRY_FLAG_RESPONSE) == 0 || h.client_hint != s->index) {
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

/* Server side ------------------------------------------------------------------*/

static void ss_free(fast_sport *sp, fast_ss *ss);

/* The server port pads datagrams (udp GSO) only while every session's
 * client announced that it takes padding. */
static void sp_pad_update(fast_sport *sp)
{
	ferry__port *port = sp->port;
	port->eps[port->neps - 1]->tx_pad = (sp->features & FAST_FEAT_PAD) != 0 && sp->nopad == 0;
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

static int fast_server_port_init(ferry__port *port, const ferry_loc *loc)
{
	ferry_ctx *ctx = port->ctx;
	fast_sport *sp = ferry__calloc(1, sizeof(*sp));
	if (sp == NULL)
		return -ENOMEM;
	int rc = 0;
	sp->expire_us = fast_loc_u32(loc, "expire", 1000, 3600000000u, FAST_EXPIRE_US_DEFAULT, &rc,
	                             ctx->errmsg, sizeof(ctx->errmsg));
	sp->liveness_us = fast_loc_u32(loc, "liveness", 1000, 3600000000u,
	                               FAST_LIVENESS_US_DEFAULT, &rc, ctx->errmsg,
	                               sizeof(ctx->errmsg));
	sp->sessions_max = fast_loc_u32(loc, "sessions", 1, FAST_SESSIONS_MAX, FAST_SESSIONS_DEFAULT,
	                                &rc, ctx->errmsg, sizeof(ctx->errmsg));
	/* The default admits at least one message of the port's cap: on a
	 * small-MTU driver (infud: 1 KiB) a 16 MiB request is ~17k fragments. */
	uint32_t frag = ferry__frame_bytes(port);
	uint64_t one_max = frag != 0 ? (port->msg_max + frag - 1) / frag + 1 : 1;
	uint32_t loans_default = one_max > FAST_SESSION_LOANS_DEFAULT
	                                 ? (uint32_t)(one_max < (1u << 24) ? one_max : (1u << 24))
	                                 : FAST_SESSION_LOANS_DEFAULT;
	sp->loans_max = fast_loc_u32(loc, "loans", 1, 1u << 24, loans_default, &rc,
	                             ctx->errmsg, sizeof(ctx->errmsg));
	sp->features = fast_loc_features(loc, &rc, ctx->errmsg, sizeof(ctx->errmsg));
	sp->bs_rate = fast_loc_u32(loc, "bsrate", 1, 1000000, FAST_BAD_SESSION_RATE_DEFAULT, &rc,
	                           ctx->errmsg, sizeof(ctx->errmsg));
	uint32_t inflight = fast_loc_u32(loc, "inflight", 4096, 1u << 30, FAST_PORT_INFLIGHT_BYTES,
	                                 &rc, ctx->errmsg, sizeof(ctx->errmsg));
	if (rc == 0)
		rc = ferry__loc_u64(loc, "reasm", port->msg_max, 1ull << 40,
		                    FAST_REASM_BYTES_DEFAULT > port->msg_max ? FAST_REASM_BYTES_DEFAULT
		                                                             : port->msg_max,
		                    &sp->reasm_max, ctx->errmsg, sizeof(ctx->errmsg));
	if (rc != 0) {
		ferry__free(sp);
		return rc;
	}
	while (getrandom(sp->cookie_key, sizeof(sp->cookie_key), 0) != sizeof(sp->cookie_key))
		;
	sp->bs_credit_us = (uint64_t)FAST_BAD_SESSION_BURST * (1000000u / sp->bs_rate);
	sp->port = port;
	sp->epoch = fast_random64();
	uint32_t fb = ferry__frame_bytes(port);
	sp->credit = fb > 0 ? inflight / fb : FAST_WINDOW_FRAGS;
	if (sp->credit < FAST_PORT_CREDIT_MIN_FRAGS)
		sp->credit = FAST_PORT_CREDIT_MIN_FRAGS;
	sp->sweep.fn = sp_sweep;
	port->tstate = sp;
	ferry__fast_ctx_of(ctx);
	ferry__ctx_tick(ctx);
	sp->bs_last_us = ctx->now_us;
	ferry__timer_arm(&ctx->timers, &sp->sweep, ctx->now_us + sp->expire_us / 4 + 1000);
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
	fast_owed_forget(sp->port->ctx, ss);
	ferry__free(ss);
}

static void fast_server_port_fini(ferry__port *port)
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
	fast_send_ctl(sp->port, &pkt->src, &h, NULL, 0);
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
	ferry__put64(p + 8, ferry__fast_cookie_make(sp->cookie_key, &pkt->src, nonce, rh->client_hint,
	                              sp->port->ctx->now_us));
	fast_send_ctl(sp->port, &pkt->src, &h, p, sizeof(p));
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
	fast_send_ctl(sp->port, &pkt->src, &h, p, sizeof(p));
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
	fast_send_ctl(sp->port, &ss->peer, &h, p, sizeof(p));
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
	if (!ferry__fast_cookie_check(sp->cookie_key, &pkt->src, nonce, h->client_hint, ctx->now_us,
	                       cookie)) {
		if (cookie != 0)
			f->cookies_failed++; /* forged, or stale: a fresh one */
		sp_send_cookie(sp, pkt, h, nonce);
		return;
	}
	f->cookies_verified++;
	/* A retried open gets the same session back. */
	for (uint32_t i = 0; i < sp->used; i++) {
		fast_ss *ss = sp->table[i];
		if (ss != NULL && ss->nonce == nonce && ss->l.client_hint == h->client_hint &&
		    ss->peer.len == pkt->src.len &&
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
	ss->nchan = want == 0 ? FERRY_CHANNELS_DEFAULT
	                      : want > FAST_CHANNELS_GRANT_MAX ? FAST_CHANNELS_GRANT_MAX : want;
	ss->client_cap = ferry__get16(p + 10);
	ss->nopad = (ferry__get32(p + 12) & FAST_FEAT_PAD) == 0;
	sp->nopad += ss->nopad;
	sp_pad_update(sp);
	ferry__fast_link_init(&ss->l, sp->port, &ss->peer, FERRY_FLAG_RESPONSE, sp->liveness_us,
	               ctx->now_us);
	ferry__fast_link_set_cap(&ss->l, ss_resp_cap(ss));
	ss->l.token = fast_random64();
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

static fast_sport *sp_of(fast_ss *ss) { return ss->l.port->tstate; }

/* What a channel's response holds of the port's credit: its fragments in
 * flight, except a one-fragment response once sent. Nothing acks that one
 * (the next request on the channel does, and may never come; a lost one
 * is recovered by the client's probe, not by the server's timer), so
 * charging it would leak a fragment of credit per idle channel. */
static void sc_recharge(fast_sport *sp, fast_sch *sc)
{
	uint32_t now = sc->out.active && sc->out.nfrags > 1 ? ferry__fast_out_inflight(&sc->out) : 0;
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
	ferry__fast_out_pump(&ss->l, &sc->out, sc->idx, sc->rpc_id, sc->rpc->opcode, sc->status, credit);
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
	for (fast_sch **pp = &sp->whead, *prev = NULL; *pp != NULL; prev = *pp, pp = &(*pp)->wnext)
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
	if (sc->state != FAST_SCH_REPLIED || !sc->out.active || ferry__fast_out_done(&sc->out))
		return;
	if (sc->out.base >= sc->out.next) {
		/* nothing in flight: waiting for port credit, not for an ack.
		 * Credit freed without an ack (a session released) wakes no
		 * one, so look again now. */
		sp_drain(sp_of(ss));
		ferry__timer_arm(&ctx->timers, &sc->timer, ctx->now_us + ss->l.rto.rto_us);
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
	ferry__fast_out_send(&ss->l, &sc->out, sc->idx, sc->rpc_id, sc->rpc->opcode, sc->status,
	              sc->out.base, FERRY_FLAG_RETX | FERRY_FLAG_ACK_REQ);
	ferry__timer_arm(&ctx->timers, &sc->timer, ctx->now_us + ss->l.rto.rto_us);
}

static bool fast_server_reply(ferry_rpc *rpc)
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
		ferry__timer_arm(&ctx->timers, &sc->timer, ctx->now_us + ss->l.rto.rto_us);
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
	uint64_t guard = ss->l.rto.have_sample ? 2ull * ss->l.rto.srtt_us : ss->l.rto.rto_us / 2;
	if (sc->out.nfrags == 1 || age >= guard) {
		ferry__fast_ctx_of(ctx)->retx_dup_request++;
		ferry__fast_out_send(&ss->l, &sc->out, sc->idx, sc->rpc_id, sc->rpc->opcode, sc->status, f,
		              FERRY_FLAG_RETX);
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
		uint32_t nfrags = h->frag_bytes == 0 ? 1 : (h->msg_len + h->frag_bytes - 1) / h->frag_bytes;
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
		int r = ferry__reasm_add(&rpc->rx, pkt, h->frag, h->msg_len, h->frag_bytes,
		                         pkt->data + FERRY_WIRE_HDR_BYTES,
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
				fast_send_ack(&ss->l, h->channel, h->rpc_id, NULL, rpc->rx.nfrags, 0,
				              h->frag + 1);
			}
			return;
		}
		if (r < 0) {
			fast_refused(port, pkt, r);
			ack_req = true;
		}
		if (fast_ack_due(&rpc->rx, before, high, h->frag, ack_req, r))
			fast_owe(ctx, ss, true, h->channel, &sc->ack, h->frag + 1,
			         ack_req);
		return;
	}
	case FAST_SCH_PROCESSING:
		/* A duplicate while the handler works: the request is all here. */
		ferry__fast_ctx_of(ctx)->frag_dup++;
		if (ack_req)
			fast_send_ack(&ss->l, h->channel, h->rpc_id, NULL, sc->rpc->rx.nfrags, 0, h->frag + 1);
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
	bool probe = (h->flags & FERRY_FLAG_ACK_REQ) != 0 && h->frag == 0 && ferry__get64(p) == 0;
	if (probe && sc->rpc_id == h->rpc_id && sc->state == FAST_SCH_PROCESSING) {
		/* A client probing while the handler works: the request is all
		 * here (the handler is not run again). */
		f->probes_answered++;
		fast_send_ack(&ss->l, h->channel, h->rpc_id, NULL, sc->rpc->rx.nfrags, 0, 0);
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
	uint32_t nw = fast_ack_words(h, p, len, words);
	uint32_t newly = ferry__fast_out_ack(&ss->l, &sc->out, h->frag, words, nw, h->msg_len);
	sc_recharge(sp, sc);
	if (ferry__fast_out_done(&sc->out)) {
		ferry__timer_cancel(&ctx->timers, &sc->timer);
		sp_drain(sp);
		return;
	}
	uint32_t resent = ferry__fast_out_recover(&ss->l, &sc->out, sc->idx, sc->rpc_id, sc->rpc->opcode,
	                                   sc->status);
	f->retx_fast += resent;
	if (resent == 0 && newly == 0 && (h->flags & FERRY_FLAG_ACK_REQ)) {
		/* A probe from a client that lacks the oldest fragment. */
		f->retx_probe++;
		ferry__fast_out_send(&ss->l, &sc->out, sc->idx, sc->rpc_id, sc->rpc->opcode, sc->status,
		              sc->out.base, FERRY_FLAG_RETX);
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
static bool fast_server_port_busy(ferry__port *port)
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
			if (sc->state == FAST_SCH_REPLIED && sc->out.active && sc->out.nfrags > 1 &&
			    !ferry__fast_out_done(&sc->out))
				return true;
		}
	}
	return false;
}

static void fast_server_pkt(ferry__port *port, ferry_pkt *pkt)
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
		ss_ack(ss, &h, pkt->data + FERRY_WIRE_HDR_BYTES, pkt->len - FERRY_WIRE_HDR_BYTES);
		return ferry__ep_release(pkt);
	}
	if (h.type == FERRY_PKT_CANCEL) {
		ss_cancel(ss, &h);
		return ferry__ep_release(pkt);
	}
	if (h.type == FERRY_PKT_KEEPALIVE) {
		ferry_wire_hdr r;
		ferry__fast_hdr(&ss->l, &r, FERRY_PKT_KEEPALIVE, 0, 0, 0);
		fast_send_ctl(port, &ss->peer, &r, NULL, 0);
		ferry__fast_ctx_of(ctx)->keepalives_received++;
		return ferry__ep_release(pkt);
	}
	if (h.type != FERRY_PKT_DATA) {
		ctx->cnt.rx_bad_type++;
		return ferry__frame_drop(port, pkt, FERRY_WIRE_OK);
	}
	ss_data(sp, ss, pkt, &h);
}

/* Metrics and the ops table --------------------------------------------------------*/

static void fast_stats(ferry_ctx *ctx, void (*cb)(void *, const char *, uint64_t), void *arg)
{
	fast_ctx *f = ctx->tp_ctx[ferry__fast_ops.index];
#define FAST_STAT_(field, name) cb(arg, name, f->field);
	FAST_COUNTERS(FAST_STAT_)
#undef FAST_STAT_
}

static void fast_hists(ferry_ctx *ctx, ferry_hist_cb cb, void *arg)
{
	fast_ctx *f = ctx->tp_ctx[ferry__fast_ops.index];
	cb(arg, "fast.cwnd_frags", &f->hist_cwnd);
	cb(arg, "fast.rtt_us", &f->hist_rtt);
}

static void fast_ctx_fini(ferry_ctx *ctx)
{
	fast_ctx *f = ctx->tp_ctx[ferry__fast_ops.index];
	if (f != NULL)
		ferry__fast_win_pool_fini(f);
	ferry__free(ctx->tp_ctx[ferry__fast_ops.index]);
	ctx->tp_ctx[ferry__fast_ops.index] = NULL;
}

const ferry__transport_ops ferry__fast_ops = {
	.name = "fast",
	.index = 1,
	.keys = fast_keys,
	.session_init = fast_session_init,
	.session_fini = fast_session_fini,
	.server_port_init = fast_server_port_init,
	.call_start = fast_call_start,
	.call_cancel = fast_call_cancel,
	.call_end = fast_call_end,
	.client_pkt = fast_client_pkt,
	.server_pkt = fast_server_pkt,
	.rx_batch_end = fast_rx_batch_end,
	.server_reply = fast_server_reply,
	.server_port_busy = fast_server_port_busy,
	.server_port_fini = fast_server_port_fini,
	.stats = fast_stats,
	.hists = fast_hists,
	.ctx_fini = fast_ctx_fini,
};
