/* The context: one per thread, run to completion. A poll pass drains the
 * handoff queue, polls every endpoint in batches, fires due timers and
 * flushes what the pass queued for transmission; in block mode an idle pass
 * sleeps in epoll until an endpoint, the handoff eventfd or the next timer
 * needs it. The handoff queue is handoff.c, ports port.c, the metrics the
 * context reports stats.c. */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "core.h"

void ferry__log_drop(ferry_ctx *ctx, const char *fmt, ...)
{
	if (!ferry__log_enabled())
		return;
	if (ctx->log_drop_us != 0 &&
	    ctx->now_us - ctx->log_drop_us < FERRY_LOG_DROP_INTERVAL_US) {
		ctx->log_drop_suppressed++;
		return;
	}
	ctx->log_drop_us = ctx->now_us != 0 ? ctx->now_us : 1;
	char msg[224];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ctx->log_drop_suppressed != 0)
		ferry__log(FERRY_LOG_DEBUG, "%s (%llu similar messages suppressed)", msg,
		           (unsigned long long)ctx->log_drop_suppressed);
	else
		ferry__log(FERRY_LOG_DEBUG, "%s", msg);
	ctx->log_drop_suppressed = 0;
}

const char *ferry_version(void)
{
	return FERRY_VERSION_STRING;
}

static __thread pid_t ctx_tid __attribute__((tls_model("initial-exec")));
static pid_t ctx_pid;
static pthread_once_t ctx_atfork_once = PTHREAD_ONCE_INIT;

pid_t ferry__tid(void)
{
	if (ctx_tid == 0)
		ctx_tid = (pid_t)syscall(SYS_gettid);
	return ctx_tid;
}

pid_t ferry__pid(void)
{
	return ctx_pid;
}

/* In a fork child (its only thread is the one that forked): forget the
 * parent's cached ids, so inherited contexts see a stranger. */
static void ctx_atfork_child(void)
{
	ctx_tid = 0;
	ctx_pid = getpid();
}

static void ctx_atfork_init(void)
{
	ctx_pid = getpid();
	pthread_atfork(NULL, NULL, ctx_atfork_child);
}

void ferry__ctx_tick(ferry_ctx *ctx)
{
	ctx->now_ns = ferry__clock_ns();
	ctx->now_us = ctx->now_ns / 1000u;
}

int ferry__set_errmsg(ferry_ctx *ctx, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx->errmsg, sizeof(ctx->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

const char *ferry_ctx_errmsg(ferry_ctx *ctx)
{
	return ctx->errmsg;
}

uint64_t ferry_ctx_now_us(ferry_ctx *ctx)
{
	return ctx->now_us;
}

int ferry_ctx_create(const ferry_ctx_opts *opts, ferry_ctx **out)
{
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_SPIN, .cpu = -1};
	if (opts != NULL)
		o = *opts;
	if (o.poll_mode != FERRY_POLL_SPIN && o.poll_mode != FERRY_POLL_BLOCK)
		return -EINVAL;
	if (o.cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			return -errno;
	}
	pthread_once(&ctx_atfork_once, ctx_atfork_init);
	ferry_ctx *ctx = ferry__calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return -ENOMEM;
	int rc = -ENOMEM;
	ctx->epfd = ctx->evfd = -1;
	ctx->owner_tid = ferry__tid();
	ctx->owner_pid = ferry__pid();
	ctx->poll_mode = o.poll_mode;
	ferry__ctx_tick(ctx);
	ferry__trace_init(&ctx->trace);
	pthread_mutex_init(&ctx->ho_lock, NULL);
	if (ferry__timers_init(&ctx->timers, FERRY_TIMERS_INITIAL) != 0)
		goto fail;
	ctx->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctx->evfd < 0) {
		rc = -errno;
		goto fail;
	}
	if (ctx->poll_mode == FERRY_POLL_BLOCK) {
		ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (ctx->epfd < 0) {
			rc = -errno;
			goto fail;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->evfd, &ev) != 0) {
			rc = -errno;
			goto fail;
		}
	}
	*out = ctx;
	return 0;
fail:
	if (ctx->epfd >= 0)
		close(ctx->epfd);
	if (ctx->evfd >= 0)
		close(ctx->evfd);
	ferry__timers_fini(&ctx->timers);
	pthread_mutex_destroy(&ctx->ho_lock);
	ferry__free(ctx);
	return rc;
}

void ferry_ctx_destroy(ferry_ctx *ctx)
{
	/* A fork child (or a stranger thread) must not close the owner's
	 * sockets nor run its callbacks: refused, silently (void). */
	if (ctx == NULL || !ferry__on_owner(ctx) || ctx->destroying)
		return;
	/* From here on no session opens; callbacks that run below (every call
	 * in flight completes with FERRY_ECANCELED, exactly once) cannot start
	 * calls on closing sessions either. */
	ctx->destroying = true;
	/* Work other threads handed over still runs (replies are dropped with
	 * their servers below, releases return loans). */
	ferry__handoff_drain(ctx);
	ferry__sessions_close_all(ctx);
	ferry__servers_destroy_all(ctx);
	ferry__handoff_drain(ctx);
	for (ferry__port *p = ctx->ports; p != NULL; p = p->next)
		p->dead = true;
	ferry__ports_sweep(ctx);
	while (ctx->free_calls != NULL) {
		ferry__call *c = ctx->free_calls;
		ctx->free_calls = c->next;
		if (c->sink_buf != NULL) {
			ferry_buf_fini(c->sink_buf);
			ferry__free(c->sink_buf);
		}
		ferry__free(c);
	}
	while (ctx->free_rpcs != NULL) {
		struct ferry_rpc *r = ctx->free_rpcs;
		ctx->free_rpcs = r->next;
		ferry_buf_fini(&r->req);
		ferry_buf_fini(&r->resp);
		ferry__free(r);
	}
	for (int i = 0; ferry__transports[i] != NULL; i++)
		if (ferry__transports[i]->ctx_fini != NULL &&
		    ctx->tp_ctx[ferry__transports[i]->index] != NULL)
			ferry__transports[i]->ctx_fini(ctx);
	ferry__free(ctx->sessions);
	ferry__timers_fini(&ctx->timers);
	if (ctx->epfd >= 0)
		close(ctx->epfd);
	close(ctx->evfd);
	pthread_mutex_destroy(&ctx->ho_lock);
	ferry__free(ctx);
}

static int ctx_poll_ports(ferry_ctx *ctx, bool *dead)
{
	ferry_pkt *pkts[FERRY_POLL_BATCH];
	int events = 0;
	for (ferry__port *p = ctx->ports; p != NULL; p = p->next) {
		if (p->dead) {
			*dead = true;
			continue;
		}
		if (p->stream) {
			/* Stream drivers deliver through the transport's upcalls. */
			int n = ferry__ep_stream_poll(p->ep, FERRY_POLL_BATCH);
			events += n > 0 ? n : 0;
			continue;
		}
		/* One batch per port and pass: polling a port again while it
		 * filled whole batches (up to 256 packets) let a burst's acks
		 * leave in one flush, but held a server's replies back until the
		 * whole burst of requests was handled (the cancel race saw half
		 * as many calls complete within a few passes). */
		int n = ferry__ep_poll(p->ep, pkts, FERRY_POLL_BATCH);
		if (n <= 0)
			continue;
		FERRY_TRACE(ctx, "rx batch port=%llu n=%llu", p->id, n);
		events += n;
		/* the pool is the bottom driver's (wrappers forward caps) */
		ctx->rx_scarce = p->caps.rx_pool != 0 &&
		                 p->eps[p->neps - 1]->loans_out > p->caps.rx_pool / 2;
		for (int i = 0; i < n; i++) {
			if (p->dead) /* closed by a callback in this batch */
				ferry__ep_release(pkts[i]);
			else if (p->server)
				p->tp->server_pkt(p, pkts[i]);
			else
				p->tp->client_pkt(p, pkts[i]);
		}
		if (p->tp->rx_batch_end != NULL)
			p->tp->rx_batch_end(p);
		ctx->rx_scarce = false;
	}
	return events;
}

static void ctx_flush_ports(ferry_ctx *ctx, bool *dead)
{
	for (ferry__port *p = ctx->ports; p != NULL; p = p->next) {
		if (p->ep->tx_pending) {
			int n = p->stream ? ferry__ep_stream_flush(p->ep)
			                  : ferry__ep_flush(p->ep);
			FERRY_TRACE(ctx, "flush port=%llu n=%lld", p->id, (int64_t)n);
		}
		/* Replies are borrowed by the driver until the flush: only now
		 * may their buffers go back to the pool. */
		while (p->done != NULL) {
			struct ferry_rpc *r = p->done;
			p->done = r->next;
			ferry__rpc_put(ctx, r);
		}
		if (p->dead)
			*dead = true;
	}
}

/* Earliest time anything needs the pass again: timers and drivers with
 * timed work (wake_at_us). */
static uint64_t ctx_next_wake(ferry_ctx *ctx)
{
	uint64_t next = ferry__timers_next(&ctx->timers);
	for (ferry__port *p = ctx->ports; p != NULL; p = p->next)
		for (int i = 0; i < p->neps; i++)
			if (p->eps[i]->wake_at_us != 0 && p->eps[i]->wake_at_us < next)
				next = p->eps[i]->wake_at_us;
	return next;
}

static void ctx_sleep(ferry_ctx *ctx, int64_t timeout_us)
{
	uint64_t next = ctx_next_wake(ctx);
	int64_t wait_us = timeout_us;
	if (next != UINT64_MAX) {
		int64_t until = next > ctx->now_us ? (int64_t)(next - ctx->now_us) : 0;
		if (wait_us < 0 || until < wait_us)
			wait_us = until;
	}
	if (wait_us == 0)
		return;
	struct epoll_event evs[16];
	if (wait_us < 0) {
		epoll_pwait2(ctx->epfd, evs, 16, NULL, NULL);
		return;
	}
	struct timespec ts = {.tv_sec = wait_us / 1000000,
	                      .tv_nsec = (wait_us % 1000000) * 1000};
	epoll_pwait2(ctx->epfd, evs, 16, &ts, NULL);
}

int ferry_ctx_poll(ferry_ctx *ctx, int64_t timeout_us)
{
	if (!ferry__on_owner(ctx))
		return FERRY_EWRONGTHREAD;
	int events = 0;
	bool dead = false;
	if (atomic_load_explicit(&ctx->ho_pending, memory_order_acquire) != 0) {
		ferry__handoff_drain(ctx);
		events++;
	}
	/* Packets queued outside a pass (ferry_call from application code)
	 * leave before we look for answers: one receive syscall sooner. */
	ctx_flush_ports(ctx, &dead);
	ferry__ctx_tick(ctx);
	events += ctx_poll_ports(ctx, &dead);
	ferry__ctx_tick(ctx);
	events += ferry__timers_run(&ctx->timers, ctx->now_us);
	ctx_flush_ports(ctx, &dead);
	if (dead)
		ferry__ports_sweep(ctx);
	if (events == 0 && ctx->poll_mode == FERRY_POLL_BLOCK && timeout_us != 0)
		ctx_sleep(ctx, timeout_us);
	return events;
}
