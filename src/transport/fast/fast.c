/* fast: windowed, reliable RPC over datagram drivers (docs/FAST.md).
 *
 * Map: this file holds what both sides share (control packets, acks owed
 * and sent at the end of a receive batch, locator keys) and the ops table;
 * client.c the client side (sessions opened with a token, requests out
 * through a window, responses reassembled, probes, keepalives, liveness);
 * server.c the server side (the session table with cookies, BAD_SESSION and
 * idle expiry, per-channel state with the retained reply that makes
 * execution at-most-once, responses out through a window). Framing,
 * reassembly and drop accounting are shared with unreliable (frame.c,
 * reasm.c); windows and timers live in window.c and rto.c, open cookies in
 * cookie.c. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "base/alloc.h"
#include "base/le.h"
#include "transport/frame.h"
#include "fast.h"
#include "window.h"

static const char *const fast_keys[] = {
        "maxmsg", "channels", "liveness", "expire",   "keepalive", "queue", "sessions",
        "reasm",  "loans",    "bsrate",   "inflight", "pad",       NULL};

uint64_t ferry__fast_random64(void)
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

void ferry__fast_send_ctl(ferry__port *port, const ferry_addr *to, ferry_wire_hdr *h,
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
void ferry__fast_send_ack(fast_link *l, uint8_t ch, uint32_t rpc_id,
                          const ferry__reasm *r, uint32_t first_missing, uint8_t flags,
                          uint32_t echo)
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
				if (f - first_missing < ferry__reasm_window(r) &&
				    ferry__reasm_has(r, f))
					bm |= 1ull << i;
			}
			ferry__put64(p + 8 * k, bm);
		}
	}
	h.aux = (uint16_t)words;
	ferry__fast_send_ctl(l->port, l->peer, &h, p, 8 * (size_t)words);
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
			if (sc->state == FAST_SCH_RECEIVING && sc->rpc != NULL &&
			    !ss->l.port->dead)
				ferry__fast_send_ack(&ss->l, sc->idx, sc->rpc_id,
				                     &sc->rpc->rx, sc->rpc->rx.next, 0,
				                     sc->ack.echo);
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
				ferry__fast_send_ack(&cs->l, cc->idx, c->rpc_id, &ch->rx,
				                     ch->rx.next, 0, cc->ack.echo);
		}
	}
	f->nowed = 0;
}

void ferry__fast_owe(ferry_ctx *ctx, void *owner, bool server, uint8_t ch,
                     fast_owed_ack *a, uint32_t echo, bool asked)
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
void ferry__fast_owed_forget(ferry_ctx *ctx, const void *owner)
{
	fast_ctx *f = ferry__fast_ctx_of(ctx);
	uint32_t k = 0;
	for (uint32_t i = 0; i < f->nowed; i++)
		if (f->owed[i].owner != owner)
			f->owed[k++] = f->owed[i];
	f->nowed = k;
}

void ferry__fast_rx_batch_end(ferry__port *port)
{
	if (ferry__fast_ctx_of(port->ctx)->nowed != 0)
		fast_acks_flush(port->ctx);
}

/* The bitmap words of an ack (aux of them, as many as came). */
uint32_t ferry__fast_ack_words(const ferry_wire_hdr *h, const uint8_t *p, uint32_t len,
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
bool ferry__fast_ack_due(const ferry__reasm *r, uint32_t next0, uint32_t high0,
                         uint32_t frag, bool req, int v)
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
void ferry__fast_refused(ferry__port *port, ferry_pkt *pkt, int verdict)
{
	fast_ctx *f = ferry__fast_ctx_of(port->ctx);
	if (verdict == FERRY_REASM_DUP)
		f->frag_dup++;
	else if (verdict == FERRY_REASM_AHEAD)
		f->frag_out_of_window++;
	ferry__frame_refused(port, pkt, verdict);
}

uint32_t ferry__fast_loc_u32(const ferry_loc *loc, const char *key, uint64_t min,
                             uint64_t max, uint64_t dflt, int *rc, char *err,
                             size_t err_len)
{
	uint64_t v = dflt;
	if (*rc == 0)
		*rc = ferry__loc_u64(loc, key, min, max, dflt, &v, err, err_len);
	return (uint32_t)v;
}

/* The features a side announces in its open or reply: pad=0 turns
 * padding off (docs/WIRE.md "Features"). */
uint32_t ferry__fast_loc_features(const ferry_loc *loc, int *rc, char *err,
                                  size_t err_len)
{
	return ferry__fast_loc_u32(loc, "pad", 0, 1, 1, rc, err, err_len) != 0
	               ? FAST_FEATURES
	               : 0;
}

/* Metrics and the ops table --------------------------------------------------------*/

static void fast_stats(ferry_ctx *ctx, void (*cb)(void *, const char *, uint64_t),
                       void *arg)
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
        .session_init = ferry__fast_session_init,
        .session_fini = ferry__fast_session_fini,
        .server_port_init = ferry__fast_server_port_init,
        .call_start = ferry__fast_call_start,
        .call_cancel = ferry__fast_call_cancel,
        .call_end = ferry__fast_call_end,
        .client_pkt = ferry__fast_client_pkt,
        .server_pkt = ferry__fast_server_pkt,
        .rx_batch_end = ferry__fast_rx_batch_end,
        .server_reply = ferry__fast_server_reply,
        .server_port_busy = ferry__fast_server_port_busy,
        .server_port_fini = ferry__fast_server_port_fini,
        .stats = fast_stats,
        .hists = fast_hists,
        .ctx_fini = fast_ctx_fini,
};
