/* The stream transport: whole-message RPC over stream drivers (tcp, splice).
 *
 * Same header and semantics as the datagram transports (docs/WIRE.md,
 * "Stream framing"): one message = one header + the whole body, no
 * fragments, no acks, no retransmission: the byte stream is reliable and
 * ordered, so a request is executed at most once per connection by
 * construction. Sessions, channels, deadlines, the call queue and error
 * codes are the core's.
 *
 * Connections: client sessions to the same locator share one port and one
 * connection (opened on the first call, reopened by the first call after
 * it is lost). Losing it fails exactly the calls in flight on it with
 * FERRY_EPEERDEAD; queued calls then start on a new connection. Servers
 * keep a small state per accepted connection that rpcs in their handlers
 * reference; a reply for a connection that died is dropped.
 *
 * Receive is two-phase (driver.h): on_header names the body's sink — the
 * call's response buffer, the call's fd (ferry_call_into_fd), a fresh
 * request buffer, or nowhere (late responses, over-cap messages). */
#include <errno.h>
#include <string.h>

#include "base/alloc.h"
#include "transport/core.h"
#include "transport/frame.h"
#include "transport/wire.h"

static const char *const stream_keys[] = {"maxmsg", NULL};

/* clang-format off */
#define STREAM_COUNTERS(X)                                                               \
	X(conns_up, "stream.conns_up")                                                   \
	X(conns_lost, "stream.conns_lost")                                               \
	X(reconnects, "stream.reconnects")                                               \
	X(calls_peerdead, "stream.calls_peerdead")                                       \
	X(late_responses, "stream.late_responses")                                       \
	X(too_big, "stream.too_big")                                                     \
	X(bad_headers, "stream.bad_headers")                                             \
	X(replies_dropped, "stream.replies_dropped")                                     \
	X(detached, "stream.requests_detached")                                          \
	X(sends_failed, "stream.sends_failed")                                           \
	X(fd_bodies, "stream.fd_bodies")                                                 \
	X(cancels_sent, "stream.cancels_sent")
/* clang-format on */

typedef struct stream_cport stream_cport;

typedef struct stream_ctx {
#define STREAM_CNT_FIELD(f, n) uint64_t f;
	STREAM_COUNTERS(STREAM_CNT_FIELD)
#undef STREAM_CNT_FIELD
	stream_cport *cports; /* client ports, shared by sessions */
} stream_ctx;

/* A client port: one per peer locator, shared by its sessions. */
struct stream_cport {
	stream_cport *next;
	ferry__port *port;
	ferry_loc loc;     /* for reconnecting */
	ferry_conn *conn;  /* NULL: none (connect on the next call) */
	uint32_t refs;     /* sessions using the port */
	uint32_t fd_calls; /* calls in flight that want their body in an fd */
	uint32_t conn_gen; /* bumped per connection; calls remember theirs */
	bool had_conn;
	/* The body being received: its call and the driver's sink. */
	ferry__call *rx_call;
	ferry_body_sink *rx_sink;
	/* A request the driver could not send (on_send_failed) on a connection
	 * that resets next: its call fails with err, not FERRY_EPEERDEAD. */
	ferry__call *failed_call;
	int failed_err;
};

/* A server-side connection. */
typedef struct stream_sconn {
	struct stream_sconn *next; /* the port's list */
	ferry__port *port;
	ferry_conn *conn;  /* NULL once gone */
	uint32_t refs;     /* rpcs that may still reply on it */
	ferry_rpc *rx_rpc; /* request being received */
} stream_sconn;

typedef struct stream_sport {
	stream_sconn *conns;
} stream_sport;

static stream_ctx *sctx(ferry_ctx *ctx)
{
	stream_ctx *x = ctx->tp_ctx[ferry__stream_ops.index];
	if (x == NULL) {
		x = ferry__calloc(1, sizeof(*x));
		ctx->tp_ctx[ferry__stream_ops.index] = x;
	}
	return x;
}

/* Client ports ---------------------------------------------------------------*/
static int stream_session_port(ferry_session *s, const ferry_loc *loc)
{
	ferry_ctx *ctx = s->ctx;
	stream_ctx *x = sctx(ctx);
	if (x == NULL)
		return -ENOMEM;
	for (stream_cport *cp = x->cports; cp != NULL; cp = cp->next)
		if (strcmp(cp->loc.text, loc->text) == 0) {
			cp->refs++;
			s->port = cp->port;
			return 0;
		}
	stream_cport *cp = ferry__calloc(1, sizeof(*cp));
	if (cp == NULL)
		return -ENOMEM;
	int rc = ferry__port_open(ctx, loc, false, &cp->port);
	if (rc != 0) {
		ferry__free(cp);
		return rc;
	}
	/* loc's pointers point into its own store: rebase them onto ours. */
	ferry__loc_sub(loc, 0, &cp->loc);
	cp->loc.transport = loc->transport;
	cp->refs = 1;
	cp->port->tstate = cp;
	cp->next = x->cports;
	x->cports = cp;
	s->port = cp->port;
	return 0;
}

static void stream_session_port_put(ferry_session *s)
{
	ferry__port *port = s->port;
	stream_cport *cp = port->tstate;
	if (--cp->refs > 0)
		return;
	stream_ctx *x = sctx(s->ctx);
	for (stream_cport **pp = &x->cports; *pp != NULL; pp = &(*pp)->next)
		if (*pp == cp) {
			*pp = cp->next;
			break;
		}
	if (cp->conn != NULL)
		ferry__ep_conn_close(cp->conn); /* upcalls see refs == 0 */
	port->tstate = NULL;
	ferry__port_close(port);
	ferry__free(cp);
}

static int stream_session_init(ferry_session *s)
{
	s->frag_bytes = 0; /* whole messages */
	return 0;
}

static int stream_hdr_send(ferry_conn *conn, const ferry_wire_hdr *h, ferry_buf *body,
                           void *cookie)
{
	uint8_t hdr[FERRY_WIRE_HDR_BYTES];
	ferry__wire_encode(h, hdr);
	ferry_buf_iter it;
	ferry_buf_iter_init(&it, body, 0, ferry_buf_len(body));
	return ferry__ep_send_msg(conn, hdr, sizeof(hdr), &it, cookie);
}

static int stream_call_start(ferry__call *c)
{
	ferry_session *s = c->s;
	ferry__port *port = s->port;
	stream_cport *cp = port->tstate;
	stream_ctx *x = sctx(s->ctx);
	if (cp->conn == NULL) {
		int rc = ferry__ep_connect(port->ep, &cp->loc, &cp->conn);
		if (rc != 0) {
			ferry__set_errmsg(s->ctx, rc, "%s: %s", port->ep->drv->name,
			                  port->ep->errmsg[0] ? port->ep->errmsg
			                                      : ferry_strerror(rc));
			return rc == FERRY_EBADLOC ? rc : FERRY_EPEERDEAD;
		}
		cp->conn->user = cp;
		cp->conn_gen++;
		if (cp->had_conn)
			x->reconnects++;
		cp->had_conn = true;
	}
	c->tp_word = cp->conn_gen;
	if (c->sink != NULL) {
		cp->fd_calls++;
		cp->conn->hdr_exact = true;
	}
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_DATA,
	        .flags = FERRY_FLAG_LAST,
	        .channel = c->chan,
	        .opcode = c->opcode,
	        .client_hint = s->index,
	        .rpc_id = c->rpc_id,
	        .msg_len = (uint32_t)ferry_buf_len(c->req),
	};
	return stream_hdr_send(cp->conn, &h, c->req, c);
}

/* The application canceled c: a header-only CANCEL follows the request on
 * its connection (ordered: the server has the request by then), so a
 * handler still at work sees ferry_rpc_cancelled. */
static void stream_call_cancel(ferry__call *c)
{
	stream_cport *cp = c->s->port->tstate;
	if (cp == NULL || cp->conn == NULL || c->tp_word != cp->conn_gen)
		return;
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_CANCEL,
	        .flags = FERRY_FLAG_LAST,
	        .channel = c->chan,
	        .opcode = c->opcode,
	        .client_hint = c->s->index,
	        .rpc_id = c->rpc_id,
	};
	ferry_buf empty;
	ferry_buf_init(&empty);
	if (stream_hdr_send(cp->conn, &h, &empty, NULL) == 0)
		sctx(c->s->ctx)->cancels_sent++;
	ferry_buf_fini(&empty);
}

static void stream_call_end(ferry__call *c, int status)
{
	(void)status;
	stream_cport *cp = c->s->port->tstate;
	if (cp == NULL)
		return;
	if (c->sink != NULL && c->tp_word == cp->conn_gen && cp->fd_calls > 0 &&
	    --cp->fd_calls == 0 && cp->conn != NULL)
		cp->conn->hdr_exact = false;
	if (cp->rx_call == c) {
		/* Its body is still arriving: the rest goes nowhere (what was
		 * appended leaves with the core's reset of the response). */
		cp->rx_sink->buf = NULL;
		cp->rx_sink->fd = -1;
		cp->rx_sink->discard = true;
		cp->rx_call = NULL;
	}
	/* The request may still sit in the driver's queue, borrowing the
	 * caller's buffer, which the caller gets back now. */
	if (status != 0 && cp->conn != NULL && ferry__ep_detach(cp->conn, c) == 1)
		sctx(c->s->ctx)->detached++;
}

/* The calls in flight on port's connection fail; queued ones then start on
 * a new connection. */
static void stream_cport_lost(stream_cport *cp)
{
	ferry_ctx *ctx = cp->port->ctx;
	stream_ctx *x = sctx(ctx);
	uint32_t gen = cp->conn_gen;
	ferry__call *failed = cp->failed_call;
	cp->conn = NULL;
	cp->rx_call = NULL;
	cp->rx_sink = NULL;
	cp->fd_calls = 0;
	cp->failed_call = NULL;
	if (cp->refs == 0)
		return;
	for (uint32_t i = 0; i < ctx->nsessions; i++) {
		ferry_session *s = ctx->sessions[i];
		if (s == NULL || s->port != cp->port)
			continue;
		for (uint32_t ch = 0; ch < FERRY_CHANNELS_MAX; ch++) {
			ferry__call *c = s->chan[ch].call;
			/* Completions may start calls, on a new connection:
			 * only those sent on the lost one fail. */
			if (c != NULL && c->state == FERRY_CALL_ACTIVE &&
			    c->tp_word == gen) {
				if (c == failed) {
					ferry__call_complete(c, cp->failed_err);
					continue;
				}
				x->calls_peerdead++;
				ferry__call_complete(c, FERRY_EPEERDEAD);
			}
		}
	}
}

/* Report the peer's state to every session on the port (a lost connection:
 * FERRY_EPEERDEAD, also for idle sessions; a new one: 0). Event callbacks
 * may close sessions, so the table is re-read for each. */
static void stream_cport_peer(stream_cport *cp, int status)
{
	ferry__port *port = cp->port;
	ferry_ctx *ctx = port->ctx;
	if (cp->refs == 0)
		return;
	for (uint32_t i = 0; i < ctx->nsessions; i++) {
		ferry_session *s = ctx->sessions[i];
		if (s != NULL && s->port == port)
			ferry__session_peer(s, status);
	}
}

/* Server ports ---------------------------------------------------------------*/
static int stream_server_port_init(ferry__port *port, const ferry_loc *loc)
{
	(void)loc;
	stream_sport *sp = ferry__calloc(1, sizeof(*sp));
	if (sp == NULL)
		return -ENOMEM;
	port->tstate = sp;
	return sctx(port->ctx) != NULL ? 0 : -ENOMEM;
}

static void sconn_put(stream_sconn *sc)
{
	if (--sc->refs > 0)
		return;
	stream_sport *sp = sc->port->tstate;
	if (sp != NULL)
		for (stream_sconn **pp = &sp->conns; *pp != NULL; pp = &(*pp)->next)
			if (*pp == sc) {
				*pp = sc->next;
				break;
			}
	ferry__free(sc);
}

static void stream_server_port_fini(ferry__port *port)
{
	stream_sport *sp = port->tstate;
	if (sp == NULL)
		return;
	/* Close every connection (queued replies come back through on_sent),
	 * then free the states rpcs in handlers may still name: those rpcs
	 * are orphaned by the core and never reply through us. */
	for (stream_sconn *sc = sp->conns; sc != NULL; sc = sc->next)
		sc->refs++; /* pinned: closing must not free them under us */
	for (stream_sconn *sc = sp->conns; sc != NULL; sc = sc->next)
		if (sc->conn != NULL)
			ferry__ep_conn_close(sc->conn);
	while (sp->conns != NULL) {
		stream_sconn *sc = sp->conns;
		sp->conns = sc->next;
		ferry__free(sc);
	}
	port->tstate = NULL;
	ferry__free(sp);
}

/* Drain: replies still being written (an rpc holds its connection's state
 * until on_sent). */
static bool stream_server_port_busy(ferry__port *port)
{
	stream_sport *sp = port->tstate;
	for (stream_sconn *sc = sp != NULL ? sp->conns : NULL; sc != NULL; sc = sc->next)
		if (sc->conn != NULL && sc->refs > 1)
			return true;
	return false;
}

static bool stream_server_reply(ferry_rpc *rpc)
{
	stream_sconn *sc = rpc->tp;
	stream_ctx *x = sctx(rpc->ctx);
	if (sc == NULL || sc->conn == NULL) {
		x->replies_dropped++;
		if (sc != NULL)
			sconn_put(sc);
		rpc->tp = NULL;
		return false;
	}
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_DATA,
	        .flags = FERRY_FLAG_RESPONSE | FERRY_FLAG_LAST,
	        .channel = rpc->chan,
	        .opcode = rpc->opcode,
	        .client_hint = rpc->client_hint,
	        .rpc_id = rpc->rpc_id,
	        .msg_len = (uint32_t)ferry_buf_len(&rpc->resp),
	        .aux = ferry__wire_status(rpc->status),
	};
	if (stream_hdr_send(sc->conn, &h, &rpc->resp, rpc) != 0) {
		x->replies_dropped++;
		sconn_put(sc);
		rpc->tp = NULL;
		return false;
	}
	return true; /* ours until on_sent */
}

/* Upcalls from the driver (arg = the port) ------------------------------------*/
static void up_conn_event(void *arg, ferry_conn *conn, int event, int err)
{
	ferry__port *port = arg;
	stream_ctx *x = sctx(port->ctx);
	/* A reset (malformed input, a peer that vanished, a failed connect) is
	 * worth a warning; an orderly close is routine. */
	if (event == FERRY_CONN_RESET)
		ferry__log(FERRY_LOG_WARN, "port %u (%s): connection %s: %s (%s)",
		           port->id, port->ep->drv->name,
		           port->server ? "from a client reset" : "to the server reset",
		           ferry_strerror(err), ferry_err_name(err));
	else if (event == FERRY_CONN_CLOSED)
		ferry__log(FERRY_LOG_DEBUG, "port %u (%s): connection closed by the peer",
		           port->id, port->ep->drv->name);
	if (port->server) {
		stream_sport *sp = port->tstate;
		if (event == FERRY_CONN_UP) {
			stream_sconn *sc = ferry__calloc(1, sizeof(*sc));
			if (sc == NULL || sp == NULL) {
				ferry__free(sc);
				conn->user = NULL;
				return; /* its messages are refused in on_header */
			}
			sc->port = port;
			sc->conn = conn;
			sc->refs = 1;
			sc->next = sp->conns;
			sp->conns = sc;
			conn->user = sc;
			x->conns_up++;
			return;
		}
		stream_sconn *sc = conn->user;
		if (sc == NULL)
			return;
		x->conns_lost++;
		sc->conn = NULL;
		if (sc->rx_rpc != NULL) {
			ferry__rpc_put(port->ctx, sc->rx_rpc);
			sc->rx_rpc = NULL;
			sconn_put(sc);
		}
		sconn_put(sc);
		return;
	}
	stream_cport *cp = conn->user;
	if (cp == NULL)
		return;
	if (event == FERRY_CONN_UP) {
		x->conns_up++;
		stream_cport_peer(cp, 0);
		return;
	}
	x->conns_lost++;
	if (cp->conn == conn) {
		stream_cport_lost(cp);
		stream_cport_peer(cp, FERRY_EPEERDEAD);
	}
}

/* Version negotiation on a stream (docs/WIRE.md, "Versions"): a server that
 * reads a header at another version writes one VERSION_MISMATCH header and
 * resets the connection; a client that reads a VERSION_MISMATCH, or a header
 * at another version, fails the sessions on this connection with
 * FERRY_EVERSION. True when hdr was one of those. */
static bool stream_version(ferry__port *port, ferry_conn *conn, const uint8_t *hdr, int v,
                           const ferry_wire_hdr *h)
{
	uint8_t lo, hi;
	bool mismatch =
	        ferry__wire_is_mismatch(hdr, FERRY_WIRE_HDR_BYTES, &lo, &hi, NULL);
	if (v != FERRY_WIRE_BAD_VERSION && !mismatch)
		return false;
	ferry_ctx *ctx = port->ctx;
	sctx(ctx)->bad_headers++;
	if (port->server) {
		ferry__frame_count_drop(port, mismatch ? FERRY_WIRE_BAD_TYPE
		                                       : FERRY_WIRE_BAD_VERSION);
		if (mismatch)
			return true; /* never answered */
		uint8_t out[FERRY_WIRE_HDR_BYTES];
		ferry__wire_encode_mismatch(h->version, out);
		/* Written now, before the reset: the kernel delivers what was
		 * written ahead of the close. */
		if (ferry__ep_send_msg(conn, out, sizeof(out), NULL, NULL) == 0 &&
		    ferry__ep_stream_flush(port->ep) >= 0)
			ctx->cnt.version_mismatch_sent++;
		else
			ctx->cnt.tx_dropped++;
		ferry__log_drop(
		        ctx,
		        "port %u: a connection spoke wire version %u (this library "
		        "%u-%u); answered VERSION_MISMATCH and closed it",
		        port->id, h->version, FERRY_WIRE_VERSION_MIN,
		        FERRY_WIRE_VERSION_MAX);
		return true;
	}
	if (!mismatch) {
		ferry__frame_count_drop(port, FERRY_WIRE_BAD_VERSION);
		lo = hi = h->version;
	}
	for (uint32_t i = 0; i < ctx->nsessions; i++) {
		ferry_session *s = ctx->sessions[i];
		if (s != NULL && s->port == port && !s->closing)
			ferry__session_version_refused(s, lo, hi);
	}
	return true;
}

static int up_on_header(void *arg, ferry_conn *conn, const uint8_t *hdr,
                        ferry_body_sink *sink)
{
	ferry__port *port = arg;
	ferry_ctx *ctx = port->ctx;
	stream_ctx *x = sctx(ctx);
	ferry_wire_hdr h;
	int v = ferry__wire_decode_stream(hdr, &h);
	if (stream_version(port, conn, hdr, v, &h))
		return FERRY_EPROTO; /* the connection is useless: reset it */
	bool response = (h.flags & FERRY_FLAG_RESPONSE) != 0;
	if (v != FERRY_WIRE_OK || response == port->server || conn->user == NULL) {
		x->bad_headers++;
		ferry__frame_count_drop(port,
		                        v != FERRY_WIRE_OK ? v : FERRY_WIRE_BAD_TYPE);
		return FERRY_EPROTO; /* a stream cannot resynchronise */
	}
	sink->len = h.msg_len;
	if (h.type == FERRY_PKT_CANCEL) {
		/* Header only; the request precedes it on the connection, so its
		 * rpc is with a handler, or already answered. */
		stream_sconn *sc = conn->user;
		ctx->cnt.cancels_received++;
		for (ferry_rpc *r = ctx->rpcs_out; r != NULL; r = r->out_next)
			if (r->tp == sc && r->client_hint == h.client_hint &&
			    r->chan == h.channel && r->rpc_id == h.rpc_id) {
				atomic_store_explicit(&r->cancelled, true,
				                      memory_order_relaxed);
				ctx->cnt.cancels_matched++;
				break;
			}
		sink->discard = true;
		return 0;
	}
	if (port->server) {
		stream_sconn *sc = conn->user;
		ferry_rpc *rpc = ferry__rpc_get(ctx);
		if (rpc == NULL)
			return -ENOMEM;
		rpc->srv = port->srv;
		rpc->port = port;
		rpc->peer = conn->peer;
		rpc->client_hint = h.client_hint;
		rpc->rpc_id = h.rpc_id;
		rpc->chan = h.channel;
		rpc->opcode = h.opcode;
		rpc->state = FERRY_RPC_RECEIVING;
		rpc->tp = sc;
		sc->refs++;
		sc->rx_rpc = rpc;
		if (h.msg_len > port->msg_max || port->srv == NULL) {
			ctx->cnt.rx_too_big += h.msg_len > port->msg_max;
			x->too_big += h.msg_len > port->msg_max;
			sink->discard = true;
			rpc->status = h.msg_len > port->msg_max ? FERRY_ETOOBIG
			                                        : FERRY_ESHUTDOWN;
		} else {
			sink->buf = &rpc->req;
		}
		return 0;
	}
	stream_cport *cp = conn->user;
	ferry_session *s =
	        h.client_hint < ctx->nsessions ? ctx->sessions[h.client_hint] : NULL;
	ferry__call *c = NULL;
	if (s != NULL && s->port == port && h.channel < FERRY_CHANNELS_MAX)
		c = s->chan[h.channel].call;
	if (c == NULL || c->state != FERRY_CALL_ACTIVE || c->rpc_id != h.rpc_id) {
		/* The call timed out or was closed: read the body and drop it. */
		x->late_responses++;
		if (s != NULL && s->port == port)
			ferry__call_stale(s, h.channel, h.rpc_id);
		else
			ctx->cnt.rx_stale++;
		sink->discard = true;
		return 0;
	}
	cp->rx_call = c;
	cp->rx_sink = sink;
	if (h.aux != 0 || h.msg_len > port->msg_max) {
		sink->discard = true;
	} else if (c->sink != NULL) {
		sink->fd = c->sink->fd;
		sink->off = c->sink->off;
		x->fd_bodies++;
	} else {
		sink->buf = c->resp;
	}
	return 0;
}

static void up_on_body(void *arg, ferry_conn *conn, const uint8_t *hdr,
                       ferry_body_sink *sink, int status)
{
	ferry__port *port = arg;
	ferry_ctx *ctx = port->ctx;
	ferry_wire_hdr h;
	ferry__wire_decode_stream(hdr, &h); /* checked in on_header */
	if (port->server) {
		stream_sconn *sc = conn->user;
		ferry_rpc *rpc = sc->rx_rpc;
		sc->rx_rpc = NULL;
		if (rpc == NULL)
			return;
		if (status != 0 || rpc->status != 0) {
			/* Refused (over the cap, no memory): answer with the reason. */
			ferry_buf_reset(&rpc->req);
			rpc->state = FERRY_RPC_HANDLER;
			ferry_rpc_reply(rpc, rpc->status != 0 ? rpc->status : status);
			return;
		}
		ferry__server_dispatch(rpc);
		return;
	}
	stream_cport *cp = conn->user;
	ferry__call *c = cp != NULL ? cp->rx_call : NULL;
	if (c == NULL)
		return; /* discarded */
	cp->rx_call = NULL;
	cp->rx_sink = NULL;
	ferry__session_peer(c->s, 0); /* heard (again) */
	if (c->sink != NULL && h.aux == 0 && h.msg_len <= port->msg_max) {
		c->sink->written = sink->len;
		c->sink->copied = sink->copied;
		c->sink_done = true;
	}
	if (h.aux != 0)
		ferry__call_response(c, ferry__wire_unstatus(h.aux));
	else if (h.msg_len > port->msg_max)
		ctx->cnt.rx_too_big++, ferry__call_complete(c, FERRY_ETOOBIG);
	else
		ferry__call_response(c, status);
}

static void up_on_sent(void *arg, ferry_conn *conn, void *cookie)
{
	ferry__port *port = arg;
	if (!port->server || cookie == NULL)
		return; /* requests: the call owns its buffer; NULL: VERSION_MISMATCH */
	ferry_rpc *rpc = cookie;
	stream_sconn *sc = conn->user;
	rpc->tp = NULL;
	ferry__rpc_put(port->ctx, rpc);
	if (sc != NULL)
		sconn_put(sc);
}

/* The driver could not read the payload of a message (a file truncated
 * under a queued send): the bytes it promised never go out. A request's
 * call fails with the read's error (now, or when the reset that follows
 * fails the connection's other calls with FERRY_EPEERDEAD). A reply of
 * which nothing was written is replaced by a header-only reply carrying
 * the error, so the client's call sees it too; one cut short by a reset
 * reaches the client as the reset (FERRY_EPEERDEAD). */
static void up_on_send_failed(void *arg, ferry_conn *conn, void *cookie, int err,
                              bool reset)
{
	ferry__port *port = arg;
	stream_ctx *x = sctx(port->ctx);
	if (cookie == NULL)
		return; /* header-only messages have nothing to read */
	x->sends_failed++;
	if (!port->server) {
		ferry__call *c = cookie;
		stream_cport *cp = conn->user;
		if (cp == NULL || cp->conn != conn || c->state != FERRY_CALL_ACTIVE ||
		    c->tp_word != cp->conn_gen)
			return;
		if (reset) {
			cp->failed_call = c;
			cp->failed_err = err;
		} else {
			ferry__call_complete(c, err);
		}
		return;
	}
	ferry_rpc *rpc = cookie;
	if (reset || conn->user == NULL)
		return;
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_DATA,
	        .flags = FERRY_FLAG_RESPONSE | FERRY_FLAG_LAST,
	        .channel = rpc->chan,
	        .opcode = rpc->opcode,
	        .client_hint = rpc->client_hint,
	        .rpc_id = rpc->rpc_id,
	        .msg_len = 0,
	        .aux = ferry__wire_status(err),
	};
	ferry_buf empty;
	ferry_buf_init(&empty);
	if (stream_hdr_send(conn, &h, &empty, NULL) != 0)
		x->replies_dropped++;
	ferry_buf_fini(&empty);
}

static const ferry_stream_upcalls stream_upcalls = {
        .hdr_len = FERRY_WIRE_HDR_BYTES,
        .conn_event = up_conn_event,
        .on_header = up_on_header,
        .on_body = up_on_body,
        .on_sent = up_on_sent,
        .on_send_failed = up_on_send_failed,
};

/* Metrics ---------------------------------------------------------------------*/
static void stream_stats(ferry_ctx *ctx, void (*cb)(void *, const char *, uint64_t),
                         void *arg)
{
	stream_ctx *x = ctx->tp_ctx[ferry__stream_ops.index];
#define STREAM_STAT(f, n) cb(arg, n, x->f);
	STREAM_COUNTERS(STREAM_STAT)
#undef STREAM_STAT
}

static void stream_ctx_fini(ferry_ctx *ctx)
{
	ferry__free(ctx->tp_ctx[ferry__stream_ops.index]);
	ctx->tp_ctx[ferry__stream_ops.index] = NULL;
}

const ferry__transport_ops ferry__stream_ops = {
        .name = "stream",
        .index = 2,
        .keys = stream_keys,
        .implicit = true,
        .upcalls = &stream_upcalls,
        .session_port = stream_session_port,
        .session_port_put = stream_session_port_put,
        .session_init = stream_session_init,
        .server_port_init = stream_server_port_init,
        .call_start = stream_call_start,
        .call_cancel = stream_call_cancel,
        .call_end = stream_call_end,
        .server_reply = stream_server_reply,
        .server_port_busy = stream_server_port_busy,
        .server_port_fini = stream_server_port_fini,
        .stats = stream_stats,
        .ctx_fini = stream_ctx_fini,
};
