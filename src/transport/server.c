/* Servers: listening ports, the opcode handler table, and the life of a
 * server-side rpc from dispatch to reply. Replies may come from any thread:
 * a foreign-thread reply travels the context's handoff queue. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "core.h"

int ferry_server_create(ferry_ctx *ctx, ferry_server **out)
{
	if (!ferry__on_owner(ctx))
		return FERRY_EWRONGTHREAD;
	ferry_server *srv = ferry__calloc(1, sizeof(*srv));
	if (srv == NULL)
		return -ENOMEM;
	srv->ctx = ctx;
	int rc = ferry__metrics_svc_create(srv, ctx, ferry__server_handle_builtin,
	                                   &srv->metrics_svc);
	if (rc != 0) {
		for (int i = 0; i < 256; i++)
			ferry__free(srv->handlers[i]);
		ferry__free(srv);
		return rc;
	}
	srv->next = ctx->servers;
	ctx->servers = srv;
	*out = srv;
	return 0;
}

void ferry_server_destroy(ferry_server *srv)
{
	if (srv == NULL || !ferry__on_owner(srv->ctx))
		return;
	ferry_ctx *ctx = srv->ctx;
	/* Blocking handlers first: running ones finish, queued ones are
	 * answered while the ports still exist. */
	ferry__workers_fini(srv);
	for (ferry_server **pp = &ctx->servers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == srv) {
			*pp = srv->next;
			break;
		}
	for (int i = 0; i < srv->nports; i++) {
		/* Partial requests belong to the port; drop them now. */
		if (srv->ports[i]->tp->server_port_fini != NULL)
			srv->ports[i]->tp->server_port_fini(srv->ports[i]);
		ferry__port_close(srv->ports[i]);
	}
	for (int i = 0; i < 256; i++)
		ferry__free(srv->handlers[i]);
	ferry__metrics_svc_destroy(srv->metrics_svc);
	srv->metrics_svc = NULL;
	/* rpcs still with the application are orphaned: their replies are
	 * dropped (the port and server are gone) and they go back to the pool. */
	for (ferry_rpc *r = ctx->rpcs_out; r != NULL; r = r->out_next)
		if (r->srv == srv) {
			r->srv = NULL;
			r->port = NULL;
		}
	ferry__free(srv);
}

void ferry__servers_destroy_all(ferry_ctx *ctx)
{
	while (ctx->servers != NULL)
		ferry_server_destroy(ctx->servers);
}

static int server_listen(ferry_server *srv, const char *locator);

int ferry_server_listen(ferry_server *srv, const char *locator)
{
	int rc = server_listen(srv, locator);
	if (rc != 0 && rc != FERRY_EWRONGTHREAD)
		ferry__log(FERRY_LOG_WARN, "listen on \"%s\" failed: %s (%s)", locator,
		           srv->ctx->errmsg[0] != '\0' ? srv->ctx->errmsg
		                                       : ferry_strerror(rc),
		           ferry_err_name(rc));
	else if (rc == 0)
		ferry__log(FERRY_LOG_INFO, "listening on %s",
		           srv->ports[srv->nports - 1]->bound);
	return rc;
}

static int server_listen(ferry_server *srv, const char *locator)
{
	ferry_ctx *ctx = srv->ctx;
	if (!ferry__on_owner(ctx))
		return FERRY_EWRONGTHREAD;
	ctx->errmsg[0] = '\0';
	if (srv->nports == FERRY_SERVER_LISTEN_MAX)
		return ferry__set_errmsg(ctx, -EMFILE,
		                         "a server listens on at most %d locators",
		                         FERRY_SERVER_LISTEN_MAX);
	ferry_loc loc;
	int rc = ferry__loc_parse(locator, &loc, ctx->errmsg, sizeof(ctx->errmsg));
	if (rc != 0)
		return rc;
	ferry__port *port;
	rc = ferry__port_open(ctx, &loc, true, &port);
	if (rc != 0)
		return rc;
	port->srv = srv;
	if (port->tp->server_port_init != NULL &&
	    (rc = port->tp->server_port_init(port, &loc)) != 0) {
		ferry__port_close(port);
		return rc;
	}
	srv->ports[srv->nports++] = port;
	return 0;
}

int ferry_server_locator(ferry_server *srv, int i, char *out, size_t len)
{
	if (i < 0 || i >= srv->nports)
		return -ERANGE;
	int n = snprintf(out, len, "%s", srv->ports[i]->bound);
	return n < 0 || (size_t)n >= len ? -ERANGE : n;
}

int ferry__server_handle_builtin(ferry_server *srv, uint16_t opcode, ferry_handler_cb cb,
                                 void *arg)
{
	if (cb == NULL)
		return -EINVAL;
	ferry__handler **block = &srv->handlers[opcode >> 8];
	if (*block == NULL) {
		*block = ferry__calloc(256, sizeof(**block));
		if (*block == NULL)
			return -ENOMEM;
	}
	(*block)[opcode & 0xff] = (ferry__handler){.cb = cb, .arg = arg};
	return 0;
}

int ferry_server_handle(ferry_server *srv, uint16_t opcode, ferry_handler_cb cb,
                        void *arg)
{
	/* Opcodes below FERRY_OPCODE_USER_MIN belong to built-in services. */
	if (opcode < FERRY_OPCODE_USER_MIN)
		return -EINVAL;
	return ferry__server_handle_builtin(srv, opcode, cb, arg);
}

struct ferry_rpc *ferry__rpc_get(ferry_ctx *ctx)
{
	struct ferry_rpc *r = ctx->free_rpcs;
	if (r != NULL) {
		ctx->free_rpcs = r->next;
	} else {
		r = ferry__calloc(1, sizeof(*r));
		if (r == NULL)
			return NULL;
		ferry_buf_init(&r->req);
		ferry_buf_init(&r->resp);
	}
	r->ctx = ctx;
	r->next = NULL;
	r->status = 0;
	r->ho.fn = NULL;
	r->tp = NULL;
	atomic_store_explicit(&r->cancelled, false, memory_order_relaxed);
	return r;
}

void ferry__rpc_put(ferry_ctx *ctx, struct ferry_rpc *r)
{
	ferry__timer_cancel(&ctx->timers, &r->timer);
	if (r->rx.active)
		ferry__reasm_abort(&r->rx);
	ferry_buf_reset(&r->req);
	ferry_buf_reset(&r->resp);
	r->state = FERRY_RPC_FREE;
	r->srv = NULL;
	r->port = NULL;
	r->next = ctx->free_rpcs;
	ctx->free_rpcs = r;
}

/* A whole request is in rpc->req: hand it to its handler, or answer
 * FERRY_ENOHANDLER. */
void ferry__server_dispatch(struct ferry_rpc *rpc)
{
	ferry_server *srv = rpc->srv;
	ferry_ctx *ctx = srv->ctx;
	ferry__handler *block = srv->handlers[rpc->opcode >> 8];
	ferry__handler *h = block != NULL ? &block[rpc->opcode & 0xff] : NULL;
	rpc->state = FERRY_RPC_HANDLER;
	rpc->start_ns = ferry__clock_ns(); /* vDSO, no syscall */
	if (rpc->opcode < FERRY_OPCODE_USER_MIN)
		ctx->cnt.builtin_requests++;
	else
		ctx->cnt.requests_received++;
	FERRY_TRACE(ctx, "dispatch op=%llu rpc=%llu", rpc->opcode, rpc->rpc_id);
	if (srv->draining && rpc->opcode >= FERRY_OPCODE_USER_MIN) {
		/* Draining: new work is refused; built-in services still answer. */
		ctx->cnt.drain_refused++;
		ferry_rpc_reply(rpc, FERRY_ESHUTDOWN);
		return;
	}
	if (atomic_load_explicit(&rpc->cancelled, memory_order_relaxed)) {
		/* Canceled before its handler started (stream: the CANCEL came
		 * while the body was arriving): the client no longer waits. */
		ferry_rpc_reply(rpc, FERRY_ECANCELED);
		return;
	}
	if (h == NULL || h->cb == NULL) {
		ctx->cnt.no_handler++;
		ferry_rpc_reply(rpc, FERRY_ENOHANDLER);
		return;
	}
	srv->rpcs_out++;
	rpc->out_prev = NULL;
	rpc->out_next = ctx->rpcs_out;
	if (ctx->rpcs_out != NULL)
		ctx->rpcs_out->out_prev = rpc;
	ctx->rpcs_out = rpc;
	if (h->blocking) {
		ferry__workers_submit(srv, h, rpc);
		return;
	}
	ctx->depth++;
	h->cb(h->arg, rpc);
	ctx->depth--;
	/* A handler may take a while: timers armed and packets stamped after it
	 * must not use the clock of the pass's start. */
	ferry__ctx_tick(ctx);
}

ferry_buf *ferry_rpc_request(ferry_rpc *rpc)
{
	return &rpc->req;
}
ferry_buf *ferry_rpc_response(ferry_rpc *rpc)
{
	return &rpc->resp;
}
uint16_t ferry_rpc_opcode(ferry_rpc *rpc)
{
	return rpc->opcode;
}

int ferry_rpc_cancelled(ferry_rpc *rpc)
{
	return rpc != NULL && atomic_load_explicit(&rpc->cancelled, memory_order_relaxed);
}

static bool server_busy(ferry_server *srv)
{
	if (srv->rpcs_out > 0)
		return true;
	for (int i = 0; i < srv->nports; i++) {
		ferry__port *p = srv->ports[i];
		if (p->done != NULL || p->ep->tx_pending)
			return true;
		if (p->tp->server_port_busy != NULL && p->tp->server_port_busy(p))
			return true;
	}
	return false;
}

int ferry_server_drain(ferry_server *srv, uint64_t timeout_us)
{
	if (srv == NULL)
		return -EINVAL;
	ferry_ctx *ctx = srv->ctx;
	if (!ferry__on_owner(ctx))
		return FERRY_EWRONGTHREAD;
	if (ctx->depth > 0)
		return FERRY_EWOULDDEADLOCK;
	srv->draining = true;
	ferry__ctx_tick(ctx);
	uint64_t until = ctx->now_us + timeout_us;
	for (;;) {
		/* Poll first: replies queued just now leave in this pass. */
		int rc = ferry_ctx_poll(ctx, 0);
		if (rc < 0)
			return rc;
		if (!server_busy(srv))
			return 0;
		if (ctx->now_us >= until)
			return FERRY_ETIMEDOUT;
		if (ctx->poll_mode == FERRY_POLL_BLOCK) {
			uint64_t left = until - ctx->now_us;
			ferry_ctx_poll(ctx, (int64_t)(left < 1000 ? left : 1000));
		}
	}
}

static void rpc_reply_owner(ferry_rpc *rpc)
{
	ferry_ctx *ctx = rpc->ctx;
	if (rpc->out_prev != NULL || ctx->rpcs_out == rpc) {
		/* Leave the outstanding list (no-handler replies never joined). */
		if (rpc->out_prev != NULL)
			rpc->out_prev->out_next = rpc->out_next;
		else
			ctx->rpcs_out = rpc->out_next;
		if (rpc->out_next != NULL)
			rpc->out_next->out_prev = rpc->out_prev;
		rpc->out_prev = rpc->out_next = NULL;
		if (rpc->srv != NULL)
			rpc->srv->rpcs_out--;
	}
	if (rpc->srv == NULL || rpc->port == NULL || rpc->port->dead) {
		/* The server went away while the handler worked. */
		ferry__rpc_put(ctx, rpc);
		return;
	}
	if (rpc->status != 0)
		ferry_buf_reset(&rpc->resp);
	if (ferry_buf_len(&rpc->resp) > rpc->port->msg_max) {
		ferry_buf_reset(&rpc->resp);
		rpc->status = FERRY_ETOOBIG;
	}
	/* The request stays until the flush too (with the rpc): a response
	 * may reference request bytes (zero-copy echo). */
	if (rpc->ho.fn != NULL)
		ferry__ctx_tick(ctx); /* a deferred reply: the pass clock may be old */
	bool kept = rpc->port->tp->server_reply(rpc);
	if (rpc->opcode >= FERRY_OPCODE_USER_MIN) {
		ctx->cnt.responses_sent++;
		ferry_hist_record(&ctx->hist_handler, ferry__clock_ns() - rpc->start_ns);
	} else {
		ctx->cnt.builtin_responses++;
	}
	FERRY_TRACE(ctx, "reply rpc=%llu status=%lld", rpc->rpc_id, (int64_t)rpc->status);
	rpc->state = FERRY_RPC_DONE;
	if (!kept)
		ferry__rpc_retire(rpc);
}

void ferry__rpc_retire(ferry_rpc *rpc)
{
	rpc->next = rpc->port->done;
	rpc->port->done = rpc;
}

static void rpc_reply_handoff(ferry_ctx *ctx, ferry__handoff *h)
{
	(void)ctx;
	rpc_reply_owner(ferry_container_of(h, ferry_rpc, ho));
}

int ferry_rpc_reply(ferry_rpc *rpc, int status)
{
	if (rpc == NULL || rpc->state != FERRY_RPC_HANDLER)
		return -EINVAL;
	ferry_ctx *ctx = rpc->ctx;
	if (ferry__forked(ctx))
		return FERRY_EWRONGTHREAD;
	rpc->status = status > 0 ? 0 : status;
	if (!ferry__on_owner(ctx)) {
		rpc->ho.fn = rpc_reply_handoff;
		ferry__handoff_push(ctx, &rpc->ho);
		return 0;
	}
	rpc_reply_owner(rpc);
	return 0;
}
