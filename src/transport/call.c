/* Client side of the RPC core: sessions, channels, the bounded call queue,
 * deadlines, completions and the synchronous wrapper. The transport puts
 * calls on the wire; everything about their lifetime lives here. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/io.h"
#include "core.h"
#include "wire.h"

/* A call submitted from a foreign thread, carried to the owner. It names
 * the session by slot and generation: the session may be closed before the
 * owner gets to it. */
typedef struct call_handoff {
	ferry__handoff ho;
	uint32_t index;
	uint64_t gen;
	ferry_buf *req, *resp;
	uint64_t timeout_us;
	ferry_call_cb cb;
	void *arg;
	uint16_t opcode;
} call_handoff;

static ferry__call *call_get(ferry_ctx *ctx)
{
	ferry__call *c = ctx->free_calls;
	if (c != NULL) {
		ctx->free_calls = c->next;
		return c;
	}
	return ferry__calloc(1, sizeof(*c));
}

static void call_put(ferry_ctx *ctx, ferry__call *c)
{
	c->state = FERRY_CALL_FREE;
	c->next = ctx->free_calls;
	ctx->free_calls = c;
}

static void call_deadline(ferry__timer *t);

static void session_port_put(ferry_session *s)
{
	if (s->tp->session_port_put != NULL)
		s->tp->session_port_put(s);
	else
		ferry__port_close(s->port);
}

/* The caller's options, whatever ferry_session_opts it was compiled with:
 * a shorter struct leaves the newer fields zero (their defaults); a longer
 * one is accepted when the bytes this library does not know are all zero,
 * and refused with -E2BIG otherwise (an option it cannot honour). */
static int session_opts_copy(ferry_ctx *ctx, const ferry_session_opts *in,
                             ferry_session_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (in == NULL)
		return 0;
	size_t have = in->size;
	if (have < sizeof(in->size))
		return ferry__set_errmsg(
		        ctx, -EINVAL, "ferry_session_opts: size %zu is too small", have);
	memcpy(o, in, have < sizeof(*o) ? have : sizeof(*o));
	for (size_t i = sizeof(*o); i < have; i++)
		if (((const uint8_t *)in)[i] != 0)
			return ferry__set_errmsg(
			        ctx, -E2BIG,
			        "ferry_session_opts: byte %zu of %zu is set, but this "
			        "library knows only the first %zu",
			        i, have, sizeof(*o));
	if (o->reserved_ != 0)
		return ferry__set_errmsg(ctx, -EINVAL,
		                         "ferry_session_opts: reserved_ must be zero");
	o->size = sizeof(*o);
	return 0;
}

/* Options that are locator keys override the locator's: rebuild its text
 * with key=val in place of any occurrence. */
static int session_loc_override(ferry_ctx *ctx, ferry_loc *loc, const char *key,
                                uint64_t val)
{
	char text[FERRY_LOC_MAX_BYTES];
	const char *colon = strchr(loc->text, ':');
	int stack_len = colon != NULL ? (int)(colon - loc->text) : (int)strlen(loc->text);
	size_t n = (size_t)snprintf(text, sizeof(text), "%.*s:", stack_len, loc->text);
	for (int i = 0; i < loc->nkeys && n < sizeof(text); i++)
		if (strcmp(loc->kv[i].key, key) != 0)
			n += (size_t)snprintf(text + n, sizeof(text) - n, "%s=%s,",
			                      loc->kv[i].key, loc->kv[i].val);
	if (n < sizeof(text))
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s=%llu", key,
		                      (unsigned long long)val);
	if (n >= sizeof(text))
		return ferry__set_errmsg(ctx, FERRY_EBADLOC,
		                         "locator too long with %s=%llu", key,
		                         (unsigned long long)val);
	return ferry__loc_parse(text, loc, ctx->errmsg, sizeof(ctx->errmsg));
}

int ferry_session_open(ferry_ctx *ctx, const char *locator, ferry_session **out)
{
	return ferry_session_open_opts(ctx, locator, NULL, out);
}

static int session_open(ferry_ctx *ctx, const char *locator,
                        const ferry_session_opts *opts, ferry_session **out);

int ferry_session_open_opts(ferry_ctx *ctx, const char *locator,
                            const ferry_session_opts *opts, ferry_session **out)
{
	int rc = session_open(ctx, locator, opts, out);
	if (rc != 0 && ctx != NULL && rc != FERRY_EWRONGTHREAD)
		ferry__log(FERRY_LOG_WARN, "session open \"%s\" failed: %s (%s)",
		           locator != NULL ? locator : "",
		           ctx->errmsg[0] != '\0' ? ctx->errmsg : ferry_strerror(rc),
		           ferry_err_name(rc));
	return rc;
}

static int session_open(ferry_ctx *ctx, const char *locator,
                        const ferry_session_opts *opts, ferry_session **out)
{
	if (ctx == NULL || out == NULL)
		return -EINVAL;
	if (!ferry__on_owner(ctx))
		return FERRY_EWRONGTHREAD;
	if (ctx->destroying)
		return FERRY_ESHUTDOWN;
	ctx->errmsg[0] = '\0';
	ferry_session_opts o;
	int rc = session_opts_copy(ctx, opts, &o);
	if (rc != 0)
		return rc;
	if (o.max_inflight > FERRY_CHANNELS_MAX)
		return ferry__set_errmsg(ctx, -EINVAL, "max_inflight %u is over %u",
		                         o.max_inflight, FERRY_CHANNELS_MAX);
	ferry_loc loc;
	rc = ferry__loc_parse(locator, &loc, ctx->errmsg, sizeof(ctx->errmsg));
	if (rc == 0 && o.maxmsg != 0)
		rc = session_loc_override(ctx, &loc, "maxmsg", o.maxmsg);
	/* fast asks the server for its channels in the open handshake. */
	if (rc == 0 && o.max_inflight != 0 && loc.transport == &ferry__fast_ops)
		rc = session_loc_override(ctx, &loc, "channels", o.max_inflight);
	if (rc != 0)
		return rc;
	/* A slot in the session table; its index is the client hint. */
	uint32_t idx = 0;
	while (idx < ctx->nsessions && ctx->sessions[idx] != NULL)
		idx++;
	if (idx == ctx->sessions_cap) {
		uint32_t cap = ctx->sessions_cap ? 2 * ctx->sessions_cap : 16;
		ferry_session **t = ferry__realloc(ctx->sessions, cap * sizeof(*t));
		if (t == NULL)
			return -ENOMEM;
		memset(t + ctx->sessions_cap, 0, (cap - ctx->sessions_cap) * sizeof(*t));
		ctx->sessions = t;
		ctx->sessions_cap = cap;
	}
	ferry_session *s = ferry__calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->ctx = ctx;
	s->index = idx;
	s->gen = ++ctx->session_gen;
	s->tp = loc.transport;
	s->nchan = o.max_inflight != 0 ? o.max_inflight : FERRY_CHANNELS_DEFAULT;
	s->default_timeout_us = o.default_timeout_us;
	s->max_queued = o.max_queued != 0 ? o.max_queued : FERRY_SESSION_QUEUE_MAX;
	s->max_queued_set = o.max_queued != 0;
	if (s->tp->session_port != NULL) {
		/* The transport shares ports between sessions to one peer. */
		if ((rc = s->tp->session_port(s, &loc)) != 0)
			goto fail;
	} else {
		rc = ferry__port_open(ctx, &loc, false, &s->port);
		if (rc != 0)
			goto fail;
		s->port->session = s;
		rc = s->port->ep->drv->dgram->resolve(s->port->ep, &loc, &s->peer);
		if (rc != 0) {
			ferry__set_errmsg(ctx, rc, "%s: %s", s->port->ep->drv->name,
			                  s->port->ep->errmsg[0] != '\0'
			                          ? s->port->ep->errmsg
			                          : ferry_strerror(rc));
			goto fail_port;
		}
	}
	rc = s->tp->session_init(s);
	if (rc != 0) {
		if (s->tp->session_fini != NULL)
			s->tp->session_fini(s);
		goto fail_port;
	}
	ctx->sessions[idx] = s;
	if (idx == ctx->nsessions)
		ctx->nsessions++;
	*out = s;
	return 0;
fail_port:
	session_port_put(s);
fail:
	ferry__free(s);
	return rc;
}

/* Start the call on a free channel. */
static void call_launch(ferry_session *s, ferry__call *c)
{
	uint32_t ch = (uint32_t)__builtin_ctzll(~s->busy_mask);
	s->busy_mask |= 1ull << ch;
	s->chan[ch].call = c;
	s->chan[ch].rpc_id++;
	c->chan = (uint8_t)ch;
	c->rpc_id = s->chan[ch].rpc_id;
	c->state = FERRY_CALL_ACTIVE;
	FERRY_TRACE(s->ctx, "call start op=%llu rpc=%llu", c->opcode, c->rpc_id);
	int rc = s->tp->call_start(c);
	if (rc != 0) {
		ferry__call_complete(c, rc);
		return;
	}
	if (c->opcode >= FERRY_OPCODE_USER_MIN)
		s->ctx->cnt.requests_sent++;
}

static bool session_has_free_chan(const ferry_session *s)
{
	uint64_t all = s->nchan >= 64 ? ~0ull : (1ull << s->nchan) - 1;
	return (s->busy_mask & all) != all;
}

static void call_handoff_run(ferry_ctx *ctx, ferry__handoff *h)
{
	call_handoff *ch = (call_handoff *)h;
	ferry_session *s = ch->index < ctx->nsessions ? ctx->sessions[ch->index] : NULL;
	int rc = s != NULL && s->gen == ch->gen
	                 ? ferry__call_any(s, ch->opcode, ch->req, ch->resp,
	                                   ch->timeout_us, ch->cb, ch->arg)
	                 : FERRY_ECANCELED;
	/* The caller was told 0: report a failure here through cb, as any
	 * failed call is reported (counted, empty response, in callback
	 * context). */
	if (rc != 0) {
		ctx->cnt.calls_failed++;
		ferry_buf_reset(ch->resp);
		ctx->depth++;
		ch->cb(ch->arg, rc, ch->resp);
		ctx->depth--;
	}
	ferry__free(ch);
}

int ferry_call(ferry_session *s, uint16_t opcode, ferry_buf *req, ferry_buf *resp,
               uint64_t timeout_us, ferry_call_cb cb, void *arg)
{
	if (opcode < FERRY_OPCODE_USER_MIN)
		return -EINVAL;
	return ferry__call_any(s, opcode, req, resp, timeout_us, cb, arg);
}

static int call_submit(ferry_session *s, uint16_t opcode, ferry_buf *req, ferry_buf *resp,
                       uint64_t timeout_us, ferry_call_cb cb, void *arg,
                       ferry_fd_sink *sink, ferry_call_handle *h);

int ferry_call_h(ferry_session *s, uint16_t opcode, ferry_buf *req, ferry_buf *resp,
                 uint64_t timeout_us, ferry_call_cb cb, void *arg, ferry_call_handle *h)
{
	if (opcode < FERRY_OPCODE_USER_MIN || resp == NULL || h == NULL || s == NULL)
		return -EINVAL;
	if (!ferry__on_owner(s->ctx))
		return FERRY_EWRONGTHREAD;
	return call_submit(s, opcode, req, resp, timeout_us, cb, arg, NULL, h);
}

int ferry__call_any(ferry_session *s, uint16_t opcode, ferry_buf *req, ferry_buf *resp,
                    uint64_t timeout_us, ferry_call_cb cb, void *arg)
{
	if (resp == NULL)
		return -EINVAL;
	return call_submit(s, opcode, req, resp, timeout_us, cb, arg, NULL, NULL);
}

int ferry_call_into_fd(ferry_session *s, uint16_t opcode, ferry_buf *req,
                       ferry_fd_sink *sink, uint64_t timeout_us, ferry_call_cb cb,
                       void *arg)
{
	if (opcode < FERRY_OPCODE_USER_MIN || sink == NULL || sink->fd < 0)
		return -EINVAL;
	return call_submit(s, opcode, req, NULL, timeout_us, cb, arg, sink, NULL);
}

static void version_range(char *out, size_t len, unsigned lo, unsigned hi)
{
	if (lo == hi)
		snprintf(out, len, "%u", lo);
	else
		snprintf(out, len, "%u-%u", lo, hi);
}

static int session_refused_msg(ferry_session *s)
{
	char peer[16], mine[16];
	version_range(peer, sizeof(peer), s->peer_vmin, s->peer_vmax);
	version_range(mine, sizeof(mine), FERRY_WIRE_VERSION_MIN, FERRY_WIRE_VERSION_MAX);
	return ferry__set_errmsg(s->ctx, s->refused,
	                         "the peer speaks wire version %s, this library %s: "
	                         "no version in common (FERRY_EVERSION)",
	                         peer, mine);
}

void ferry__session_version_refused(ferry_session *s, unsigned vmin, unsigned vmax)
{
	ferry_ctx *ctx = s->ctx;
	ctx->cnt.version_refused++;
	bool first = s->refused == 0;
	s->refused = FERRY_EVERSION;
	s->peer_vmin = (uint8_t)vmin;
	s->peer_vmax = (uint8_t)vmax;
	session_refused_msg(s);
	if (first)
		ferry__log(FERRY_LOG_WARN, "session %u: %s", s->index, ctx->errmsg);
	(void)ferry__session_fail(s, FERRY_EVERSION); /* s may be gone: nothing follows */
}

static int call_submit(ferry_session *s, uint16_t opcode, ferry_buf *req, ferry_buf *resp,
                       uint64_t timeout_us, ferry_call_cb cb, void *arg,
                       ferry_fd_sink *sink, ferry_call_handle *h)
{
	if (s == NULL || req == NULL || cb == NULL)
		return -EINVAL;
	ferry_ctx *ctx = s->ctx;
	if (ferry__forked(ctx))
		return FERRY_EWRONGTHREAD;
	if (!ferry__on_owner(ctx) && sink != NULL)
		return FERRY_EWRONGTHREAD;
	if (!ferry__on_owner(ctx)) {
		/* Documented slow path: one allocation per foreign-thread call.
		 * Only fields fixed at open (ctx, index, gen) are read here; the
		 * owner checks closing and refusal when it runs the handoff. */
		call_handoff *ch = ferry__calloc(1, sizeof(*ch));
		if (ch == NULL)
			return -ENOMEM;
		*ch = (call_handoff){.ho.fn = call_handoff_run,
		                     .index = s->index,
		                     .gen = s->gen,
		                     .req = req,
		                     .resp = resp,
		                     .timeout_us = timeout_us,
		                     .cb = cb,
		                     .arg = arg,
		                     .opcode = opcode};
		ferry__handoff_push(ctx, &ch->ho);
		return 0;
	}
	if (s->closing)
		return FERRY_ECANCELED;
	if (s->refused != 0)
		return session_refused_msg(s);
	if (ferry_buf_len(req) > s->port->msg_max)
		return FERRY_ETOOBIG;
	if (resp != NULL && ferry_buf_len(resp) != 0)
		return -EINVAL;
	bool free_chan = session_has_free_chan(s);
	if (!free_chan && s->qlen >= s->max_queued) {
		ctx->cnt.calls_queue_full++;
		return FERRY_EAGAIN;
	}
	ferry__call *c = call_get(ctx);
	if (c == NULL)
		return -ENOMEM;
	if (sink != NULL) {
		if (c->sink_buf == NULL) {
			if ((c->sink_buf = ferry__malloc(sizeof(*c->sink_buf))) == NULL) {
				call_put(ctx, c);
				return -ENOMEM;
			}
			ferry_buf_init(c->sink_buf);
		}
		resp = c->sink_buf;
		sink->written = sink->copied = 0;
	}
	c->s = s;
	c->opcode = opcode;
	c->req = req;
	c->resp = resp;
	c->cb = cb;
	c->arg = arg;
	c->timeout_us = timeout_us              ? timeout_us
	                : s->default_timeout_us ? s->default_timeout_us
	                                        : FERRY_DEFAULT_TIMEOUT_US;
	c->next = NULL;
	c->sink = sink;
	c->sink_done = false;
	c->id = ++ctx->call_ids;
	c->timer.fn = call_deadline;
	ferry__ctx_tick(ctx);
	c->start_ns = ctx->now_ns;
	if (ferry__timer_arm(&ctx->timers, &c->timer, ctx->now_us + c->timeout_us) != 0) {
		call_put(ctx, c);
		return -ENOMEM;
	}
	if (opcode >= FERRY_OPCODE_USER_MIN)
		ctx->cnt.calls_started++;
	else
		ctx->cnt.builtin_calls++;
	if (h != NULL)
		*h = (ferry_call_handle){.call = c, .id = c->id};
	if (free_chan) {
		call_launch(s, c);
		return 0;
	}
	c->state = FERRY_CALL_QUEUED;
	if (s->q_tail != NULL)
		s->q_tail->next = c;
	else
		s->q_head = c;
	s->q_tail = c;
	s->qlen++;
	return 0;
}

static void session_unqueue(ferry_session *s, ferry__call *c)
{
	ferry__call **pp = &s->q_head, *prev = NULL;
	while (*pp != NULL && *pp != c)
		prev = *pp, pp = &(*pp)->next;
	if (*pp == NULL)
		return;
	*pp = c->next;
	if (s->q_tail == c)
		s->q_tail = prev;
	s->qlen--;
}

/* Write all of b to fd at *off (advanced; -1 = the fd's position). */
static int sink_write_buf(ferry_buf *b, int fd, int64_t *off, uint64_t *done)
{
	ferry_buf_iter it;
	ferry_buf_seg seg;
	ferry_buf_iter_init(&it, b, 0, ferry_buf_len(b));
	uint8_t bounce[16384];
	while (ferry_buf_iter_next(&it, &seg)) {
		size_t at = 0;
		while (at < seg.len) {
			const void *src = (const uint8_t *)seg.data + at;
			size_t n = seg.len - at;
			if (seg.kind == FERRY_CHUNK_FILE) {
				n = n < sizeof(bounce) ? n : sizeof(bounce);
				int rc = ferry__pread_full(seg.fd, bounce, n,
				                           seg.file_off + (off_t)at);
				if (rc != 0)
					return rc;
				src = bounce;
			}
			size_t w = 0;
			int rc = ferry__write_full(fd, src, n, *off, &w);
			at += w;
			*done += w;
			if (*off >= 0)
				*off += (int64_t)w;
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* A call into an fd completes: unless the transport wrote the body there
 * itself, copy the response buffer to the fd now. */
static int call_sink_finish(ferry__call *c, int status)
{
	ferry_ctx *ctx = c->s->ctx;
	ferry_fd_sink *k = c->sink;
	ctx->cnt.sink_calls++;
	if (status == 0 && !c->sink_done) {
		int64_t off = k->off;
		uint64_t before = k->written;
		status = sink_write_buf(c->resp, k->fd, &off, &k->written);
		k->copied += k->written - before;
	}
	ctx->cnt.sink_bytes += k->written;
	ctx->cnt.sink_copied += k->copied;
	ferry_buf_reset(c->resp);
	c->sink = NULL;
	return status;
}

/* Finish a call: free its channel (launching the next queued call), run the
 * callback exactly once. On failure the response buffer is emptied, so a
 * failed call never delivers partial data. */
void ferry__call_complete(ferry__call *c, int status)
{
	ferry_session *s = c->s;
	ferry_ctx *ctx = s->ctx;
	ferry__timer_cancel(&ctx->timers, &c->timer);
	if (c->state == FERRY_CALL_ACTIVE) {
		ferry__chan *ch = &s->chan[c->chan];
		if (ch->rx.active)
			ferry__reasm_abort(&ch->rx);
		if (s->tp->call_end != NULL)
			s->tp->call_end(c, status);
		ch->call = NULL;
		s->busy_mask &= ~(1ull << c->chan);
	} else if (c->state == FERRY_CALL_QUEUED) {
		session_unqueue(s, c);
	}
	if (c->opcode >= FERRY_OPCODE_USER_MIN) {
		if (status == 0) {
			ctx->cnt.calls_completed++;
			/* ns clock of this pass: no extra clock read per call */
			ferry_hist_record(&ctx->hist_call, ctx->now_ns - c->start_ns);
		} else {
			ctx->cnt.calls_failed++;
		}
		if (status == FERRY_ETIMEDOUT)
			ctx->cnt.calls_timedout++;
	}
	if (c->sink != NULL)
		status = call_sink_finish(c, status);
	FERRY_TRACE(ctx, "call done rpc=%llu status=%lld", c->rpc_id, (int64_t)status);
	if (status != 0)
		ferry_buf_reset(c->resp);
	ferry_call_cb cb = c->cb;
	void *arg = c->arg;
	ferry_buf *resp = c->resp;
	call_put(ctx, c);
	/* Start the next queued call before the callback, so a callback that
	 * issues a call queues behind the ones already waiting. */
	ferry__session_kick(s);
	ctx->depth++;
	cb(arg, status, resp);
	ctx->depth--;
}

void ferry__call_response(ferry__call *c, int status)
{
	if (c->opcode >= FERRY_OPCODE_USER_MIN)
		c->s->ctx->cnt.responses_received++;
	ferry__call_complete(c, status);
}

static void call_deadline(ferry__timer *t)
{
	ferry__call *c = ferry_container_of(t, ferry__call, timer);
	ferry__call_complete(c, FERRY_ETIMEDOUT);
}

int ferry_call_cancel(ferry_ctx *ctx, ferry_call_handle h)
{
	if (ctx == NULL || h.call == NULL || h.id == 0)
		return -EINVAL;
	if (!ferry__on_owner(ctx))
		return FERRY_EWRONGTHREAD;
	/* Call records live in the context's pool until it is destroyed, so
	 * the pointer stays readable; the id tells whether it is still ours. */
	ferry__call *c = h.call;
	if (c->state == FERRY_CALL_FREE || c->id != h.id || c->s->ctx != ctx) {
		ctx->cnt.cancels_too_late++;
		return -ENOENT;
	}
	ferry_session *s = c->s;
	if (c->state == FERRY_CALL_ACTIVE) {
		ferry__chan *ch = &s->chan[c->chan];
		ch->canceled_rpc_id = c->rpc_id;
		ch->canceled = true;
		if (s->tp->call_cancel != NULL)
			s->tp->call_cancel(c);
	}
	ctx->cnt.calls_canceled++;
	FERRY_TRACE(ctx, "call cancel rpc=%llu id=%llu", c->rpc_id, c->id);
	ferry__call_complete(c, FERRY_ECANCELED);
	return 0;
}

void ferry__call_stale(ferry_session *s, uint32_t chan, uint32_t rpc_id)
{
	ferry_ctx *ctx = s->ctx;
	ctx->cnt.rx_stale++;
	if (chan < FERRY_CHANNELS_MAX && s->chan[chan].canceled &&
	    s->chan[chan].canceled_rpc_id == rpc_id)
		ctx->cnt.late_after_cancel++;
}

void ferry__session_peer(ferry_session *s, int status)
{
	if (s->peer_status == status || s->closing)
		return;
	s->peer_status = status;
	FERRY_TRACE(s->ctx, "session peer idx=%llu status=%lld", s->index,
	            (int64_t)status);
	if (status == 0)
		return; /* heard again: cleared silently (no callback) */
	s->ctx->cnt.peer_dead_events++;
	if (s->ev_cb != NULL) {
		s->ctx->depth++;
		s->ev_cb(s->ev_arg, s, status);
		s->ctx->depth--;
	}
}

void ferry_session_set_event_cb(ferry_session *s, ferry_session_event_cb cb, void *arg)
{
	if (s == NULL || !ferry__on_owner(s->ctx))
		return;
	s->ev_cb = cb;
	s->ev_arg = arg;
}

int ferry_session_status(ferry_session *s)
{
	if (s == NULL)
		return -EINVAL;
	if (ferry__forked(s->ctx))
		return FERRY_EWRONGTHREAD;
	return s->peer_status;
}

void ferry__session_kick(ferry_session *s)
{
	while (!s->closing && !s->failing && s->q_head != NULL &&
	       session_has_free_chan(s)) {
		ferry__call *next = s->q_head;
		s->q_head = next->next;
		if (s->q_head == NULL)
			s->q_tail = NULL;
		s->qlen--;
		call_launch(s, next);
	}
}

/* Fail the calls present now; calls that callbacks start meanwhile are
 * left alone (bounded: no loop even if every callback retries). */
static void session_fail_calls(ferry_session *s, int status)
{
	for (uint32_t ch = 0; ch < FERRY_CHANNELS_MAX; ch++)
		if (s->chan[ch].call != NULL &&
		    s->chan[ch].call->state == FERRY_CALL_ACTIVE)
			ferry__call_complete(s->chan[ch].call, status);
	uint32_t n = s->qlen;
	while (n-- > 0 && s->q_head != NULL)
		ferry__call_complete(s->q_head, status);
}

void ferry_session_close(ferry_session *s)
{
	if (s == NULL || s->closing || !ferry__on_owner(s->ctx))
		return;
	ferry_ctx *ctx = s->ctx;
	/* Callbacks that run below cannot start calls on s (ferry_call says
	 * FERRY_ECANCELED) nor close it again. */
	s->closing = true;
	ctx->sessions[s->index] = NULL;
	session_fail_calls(s, FERRY_ECANCELED);
	if (s->tp->session_fini != NULL)
		s->tp->session_fini(s);
	session_port_put(s);
	if (s->failing) {
		/* A callback run by ferry__session_fail closed s: that function
		 * still walks s, and frees it when it is done. */
		s->close_deferred = true;
		return;
	}
	ferry__free(s);
}

bool ferry__session_fail(ferry_session *s, int status)
{
	/* Completions must not relaunch queued calls we are failing. */
	s->failing = true;
	session_fail_calls(s, status);
	s->failing = false;
	if (s->close_deferred) {
		ferry__free(s);
		return false;
	}
	return true;
}

void ferry__sessions_close_all(ferry_ctx *ctx)
{
	for (uint32_t i = 0; i < ctx->nsessions; i++)
		if (ctx->sessions[i] != NULL)
			ferry_session_close(ctx->sessions[i]);
}

struct call_sync {
	bool done;
	int status;
};

static void call_sync_cb(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	struct call_sync *cs = arg;
	cs->done = true;
	cs->status = status;
}

int ferry_call_sync(ferry_session *s, uint16_t opcode, ferry_buf *req, ferry_buf *resp,
                    uint64_t timeout_us)
{
	if (opcode < FERRY_OPCODE_USER_MIN)
		return -EINVAL;
	return ferry__call_sync_any(s, opcode, req, resp, timeout_us);
}

static int call_sync_wait(ferry_ctx *ctx, struct call_sync *cs)
{
	while (!cs->done) {
		int rc = ferry_ctx_poll(ctx, -1);
		if (rc < 0)
			return rc;
	}
	return cs->status;
}

/* Both synchronous wrappers: submit (resp or sink), then poll until done. */
static int call_sync(ferry_session *s, uint16_t opcode, ferry_buf *req, ferry_buf *resp,
                     ferry_fd_sink *sink, uint64_t timeout_us)
{
	if (s == NULL)
		return -EINVAL;
	ferry_ctx *ctx = s->ctx;
	if (!ferry__on_owner(ctx))
		return FERRY_EWRONGTHREAD;
	if (ctx->depth > 0)
		return FERRY_EWOULDDEADLOCK;
	struct call_sync cs = {false, 0};
	int rc = sink != NULL ? ferry_call_into_fd(s, opcode, req, sink, timeout_us,
	                                           call_sync_cb, &cs)
	                      : ferry__call_any(s, opcode, req, resp, timeout_us,
	                                        call_sync_cb, &cs);
	return rc != 0 ? rc : call_sync_wait(ctx, &cs);
}

int ferry_call_into_fd_sync(ferry_session *s, uint16_t opcode, ferry_buf *req,
                            ferry_fd_sink *sink, uint64_t timeout_us)
{
	if (sink == NULL)
		return -EINVAL;
	return call_sync(s, opcode, req, NULL, sink, timeout_us);
}

int ferry__call_sync_any(ferry_session *s, uint16_t opcode, ferry_buf *req,
                         ferry_buf *resp, uint64_t timeout_us)
{
	return call_sync(s, opcode, req, resp, NULL, timeout_us);
}
