/* The context: one per thread, run to completion. A poll pass drains the
 * handoff queue, polls every endpoint in batches, fires due timers and
 * flushes what the pass queued for transmission; in block mode an idle pass
 * sleeps in epoll until an endpoint, the handoff eventfd or the next timer
 * needs it.
 *
 * The handoff queue is a mutex-protected intrusive list with an atomic
 * "pending" flag: the owner thread reads only the flag on every pass (no
 * lock, no syscall when nothing was handed off) and takes the lock only to
 * splice the whole list out. Foreign threads pay the lock and, in block
 * mode, one eventfd write. */
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
#include "drivers/core/capture.h"

void ferry__log_drop(ferry_ctx *ctx, const char *fmt, ...)
{
	if (!ferry__log_enabled())
		return;
	if (ctx->log_drop_us != 0 && ctx->now_us - ctx->log_drop_us < FERRY_LOG_DROP_INTERVAL_US) {
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

const char *ferry_version(void) { return FERRY_VERSION_STRING; }

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

void ferry_trace(ferry_ctx *ctx, const char *fmt, uint64_t a, uint64_t b)
{
	ferry__trace_rec(&ctx->trace, fmt, a, b);
}

int ferry_trace_dump(ferry_ctx *ctx, FILE *f) { return ferry__trace_dump(&ctx->trace, f); }

#define ctx_transports ferry__transports

static void ctx_transports_stats(ferry_ctx *ctx, ferry_stat_cb cb, void *arg)
{
	for (int i = 0; ctx_transports[i] != NULL; i++)
		if (ctx_transports[i]->stats != NULL && ctx->tp_ctx[ctx_transports[i]->index] != NULL)
			ctx_transports[i]->stats(ctx, cb, arg);
}

void ferry_ctx_histograms(ferry_ctx *ctx, ferry_hist_cb cb, void *arg)
{
	cb(arg, "rpc.call_ns", &ctx->hist_call);
	cb(arg, "rpc.handler_ns", &ctx->hist_handler);
	for (int i = 0; ctx_transports[i] != NULL; i++)
		if (ctx_transports[i]->hists != NULL && ctx->tp_ctx[ctx_transports[i]->index] != NULL)
			ctx_transports[i]->hists(ctx, cb, arg);
}

int ferry__set_errmsg(ferry_ctx *ctx, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx->errmsg, sizeof(ctx->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

const char *ferry_ctx_errmsg(ferry_ctx *ctx) { return ctx->errmsg; }

uint64_t ferry_ctx_now_us(ferry_ctx *ctx) { return ctx->now_us; }

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

static void ctx_drain_handoff(ferry_ctx *ctx);
static void ctx_sweep_ports(ferry_ctx *ctx);

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
	ctx_drain_handoff(ctx);
	ferry__sessions_close_all(ctx);
	ferry__servers_destroy_all(ctx);
	ctx_drain_handoff(ctx);
	for (ferry__port *p = ctx->ports; p != NULL; p = p->next)
		p->dead = true;
	ctx_sweep_ports(ctx);
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
	for (int i = 0; ctx_transports[i] != NULL; i++)
		if (ctx_transports[i]->ctx_fini != NULL && ctx->tp_ctx[ctx_transports[i]->index] != NULL)
			ctx_transports[i]->ctx_fini(ctx);
	ferry__free(ctx->sessions);
	ferry__timers_fini(&ctx->timers);
	if (ctx->epfd >= 0)
		close(ctx->epfd);
	close(ctx->evfd);
	pthread_mutex_destroy(&ctx->ho_lock);
	ferry__free(ctx);
}

void ferry__handoff_push(ferry_ctx *ctx, ferry__handoff *h)
{
	/* Callers check ferry__forked first: a child must not write the
	 * eventfd it shares with the parent. */
	h->next = NULL;
	pthread_mutex_lock(&ctx->ho_lock);
	if (ctx->ho_tail != NULL)
		ctx->ho_tail->next = h;
	else
		ctx->ho_head = h;
	ctx->ho_tail = h;
	atomic_store_explicit(&ctx->ho_pending, 1, memory_order_release);
	pthread_mutex_unlock(&ctx->ho_lock);
	if (ctx->poll_mode == FERRY_POLL_BLOCK) {
		uint64_t one = 1;
		ssize_t w = write(ctx->evfd, &one, sizeof(one));
		(void)w; /* EAGAIN means the counter is already non-zero */
	}
}

/* Loan release from any thread: on the owner, straight to the driver;
 * elsewhere, queued (the packet itself is the queue node). A stream
 * driver's pkt (a receive block) backs many loans, whose releases may
 * arrive from several threads before the owner drains: the pkt is linked
 * once and core_releases counts them. (Linking it again per release made
 * the list a cycle: the owner spun in ctx_drain_handoff forever.) */
void ferry__pkt_loan_release(void *arg, void *data)
{
	(void)data;
	ferry_pkt *pkt = arg;
	ferry_ctx *ctx = pkt->ep->ctx;
	if (ferry__on_owner(ctx)) {
		ferry__ep_release(pkt);
		return;
	}
	if (ferry__forked(ctx))
		return; /* the child's copy: the parent still owns the real one */
	pthread_mutex_lock(&ctx->ho_lock);
	if (pkt->core_releases++ == 0) {
		pkt->core_next = ctx->ho_pkts;
		ctx->ho_pkts = pkt;
	}
	atomic_store_explicit(&ctx->ho_pending, 1, memory_order_release);
	pthread_mutex_unlock(&ctx->ho_lock);
	if (ctx->poll_mode == FERRY_POLL_BLOCK) {
		uint64_t one = 1;
		ssize_t w = write(ctx->evfd, &one, sizeof(one));
		(void)w;
	}
}

static void ctx_report(ferry_ctx *ctx, int err, const char *msg)
{
	ferry__set_errmsg(ctx, err, "%s", msg);
}

/* How a context's endpoints reach it (drivers/core/ep.h). */
const ferry__ep_host ferry__ctx_ep_host = {
	.loan_release = ferry__pkt_loan_release,
	.report = ctx_report,
};

static void ctx_drain_handoff(ferry_ctx *ctx)
{
	if (atomic_load_explicit(&ctx->ho_pending, memory_order_acquire) == 0)
		return;
	pthread_mutex_lock(&ctx->ho_lock);
	ferry__handoff *h = ctx->ho_head;
	ferry_pkt *pkts = ctx->ho_pkts;
	ctx->ho_head = ctx->ho_tail = NULL;
	ctx->ho_pkts = NULL;
	atomic_store_explicit(&ctx->ho_pending, 0, memory_order_relaxed);
	/* The releases go to the driver under the lock: a pkt's count is
	 * only stable here, and the moment it drops to 0 another thread may
	 * queue the pkt again. Driver release() is short and takes no lock
	 * that a releasing thread holds. */
	while (pkts != NULL) {
		ferry_pkt *next = pkts->core_next;
		uint32_t n = pkts->core_releases;
		pkts->core_next = NULL;
		pkts->core_releases = 0;
		ctx->cnt.loans_released_remote += n;
		while (n-- > 0)
			ferry__ep_release(pkts);
		pkts = next;
	}
	pthread_mutex_unlock(&ctx->ho_lock);
	if (ctx->poll_mode == FERRY_POLL_BLOCK) {
		uint64_t v;
		ssize_t r = read(ctx->evfd, &v, sizeof(v));
		(void)r;
	}
	while (h != NULL) {
		ferry__handoff *next = h->next;
		ctx->cnt.handoffs++;
		h->fn(ctx, h);
		h = next;
	}
}

/* The locator a peer should use to reach this port: the stack as given,
 * the address keys the driver reports (the real port after port=0), then
 * the remaining keys of the original locator. */
static void ctx_port_bound(ferry__port *p, const ferry_loc *loc)
{
	char keys[FERRY_LOC_MAX_BYTES] = "";
	struct ferry_ctl_locator bl = {keys, sizeof(keys)};
	if (ferry__ep_ctl(p->ep, FERRY_CTL_BOUND_LOCATOR, &bl) != 0)
		keys[0] = '\0';
	const char *colon = strchr(loc->text, ':');
	int stack_len = colon != NULL ? (int)(colon - loc->text) : (int)strlen(loc->text);
	size_t n = (size_t)snprintf(p->bound, sizeof(p->bound), "%.*s:%s", stack_len,
	                            loc->text, keys);
	for (int i = 0; i < loc->nkeys && n < sizeof(p->bound); i++) {
		char probe[80];
		snprintf(probe, sizeof(probe), "%s=", loc->kv[i].key);
		bool have = strncmp(keys, probe, strlen(probe)) == 0;
		for (const char *c = strchr(keys, ','); c != NULL && !have; c = strchr(c + 1, ','))
			have = strncmp(c + 1, probe, strlen(probe)) == 0;
		/* Capture is this process's choice, not part of the address a
		 * peer should use. */
		if (strncmp(loc->kv[i].key, "pcap", 4) == 0)
			have = true;
		if (!have)
			n += (size_t)snprintf(p->bound + n, sizeof(p->bound) - n, "%s%s=%s",
			                      keys[0] != '\0' || i > 0 ? "," : "",
			                      loc->kv[i].key, loc->kv[i].val);
	}
}

int ferry__port_open(ferry_ctx *ctx, const ferry_loc *loc, bool server,
                     ferry__port **out)
{
	ferry__port *p = ferry__calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->ctx = ctx;
	p->id = ctx->port_ids++;
	p->tp = loc->transport;
	p->server = server;
	char err[FERRY_ERRMSG_BYTES] = "";
	int rc = ferry__ep_open_stack(ctx, &ferry__ctx_ep_host, ctx->poll_mode == FERRY_POLL_BLOCK, loc, server ? FERRY_EP_LISTEN : 0,
	                              p->tp->upcalls, p, p->eps, &p->neps, err,
	                              sizeof(err));
	if (rc != 0) {
		ferry__free(p);
		return ferry__set_errmsg(ctx, rc, "%s", err);
	}
	p->ep = p->eps[0];
	p->stream = p->ep->drv->kind == FERRY_DRIVER_STREAM;
	ferry__ep_caps(p->ep, &p->caps);
	uint64_t msg_max;
	rc = ferry__loc_u64(loc, "maxmsg", 0, UINT32_MAX,
	                    FERRY_MSG_MAX_BYTES_DEFAULT, &msg_max, ctx->errmsg,
	                    sizeof(ctx->errmsg));
	if (rc != 0)
		goto fail;
	p->msg_max = (uint32_t)msg_max;
	if (ctx->epfd >= 0 && p->ep->fd >= 0) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
		if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, p->ep->fd, &ev) != 0) {
			rc = ferry__set_errmsg(ctx, -errno, "epoll_ctl: %s",
			                       strerror(errno));
			goto fail;
		}
	}
	ctx_port_bound(p, loc);
	p->next = ctx->ports;
	ctx->ports = p;
	*out = p;
	return 0;
fail:
	ferry__ep_close_stack(p->eps, p->neps);
	ferry__free(p);
	return rc;
}

/* Ports die in two steps: marked dead now (the pass in progress may still
 * hold packets for them), freed by the sweep at the end of the pass. */
void ferry__port_close(ferry__port *port)
{
	port->dead = true;
	port->session = NULL;
	port->srv = NULL;
}

static void ctx_port_free(ferry_ctx *ctx, ferry__port *p)
{
	if (p->tp->server_port_fini != NULL && p->server)
		p->tp->server_port_fini(p);
	if (p->ep->tx_pending && !p->stream)
		ferry__ep_flush(p->ep);
	while (p->done != NULL) {
		struct ferry_rpc *r = p->done;
		p->done = r->next;
		ferry__rpc_put(ctx, r);
	}
	if (ctx->epfd >= 0 && p->ep->fd >= 0)
		epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, p->ep->fd, NULL);
	/* Loans still out when an endpoint closes are a bug somewhere: count
	 * them where tests can see it (rpc.loans_leaked). */
	for (int i = 0; i < p->neps; i++)
		ctx->cnt.loans_leaked += p->eps[i]->loans_out;
	ferry__ep_close_stack(p->eps, p->neps);
	ferry__free(p);
}

static void ctx_sweep_ports(ferry_ctx *ctx)
{
	for (ferry__port **pp = &ctx->ports; *pp != NULL;) {
		ferry__port *p = *pp;
		if (!p->dead) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		ctx_port_free(ctx, p);
	}
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
			int n = p->stream ? ferry__ep_stream_flush(p->ep) : ferry__ep_flush(p->ep);
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
		ctx_drain_handoff(ctx);
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
		ctx_sweep_ports(ctx);
	if (events == 0 && ctx->poll_mode == FERRY_POLL_BLOCK && timeout_us != 0)
		ctx_sleep(ctx, timeout_us);
	return events;
}

static void ctx_stat_ep(ferry_stat_cb cb, void *arg, ferry_ep *ep)
{
	char name[128];
	const char *d = ep->drv->name;
#define CTX_EP_STAT(field, label)                                               \
	snprintf(name, sizeof(name), "%s.%s", d, label);                       \
	cb(arg, name, ep->cnt.field)
	CTX_EP_STAT(tx_pkts, "tx_packets");
	CTX_EP_STAT(tx_bytes, "tx_bytes");
	CTX_EP_STAT(tx_errors, "tx_errors");
	CTX_EP_STAT(rx_pkts, "rx_packets");
	CTX_EP_STAT(rx_bytes, "rx_bytes");
	CTX_EP_STAT(rx_dropped, "rx_dropped");
	CTX_EP_STAT(polls, "polls");
	CTX_EP_STAT(polls_nonempty, "polls_nonempty");
#undef CTX_EP_STAT
	snprintf(name, sizeof(name), "%s.loans_out", d);
	cb(arg, name, ep->loans_out);
}

struct ctx_prefixed {
	ferry_stat_cb cb;
	void *arg;
	const char *prefix;
};

static void ctx_prefixed_cb(void *arg, const char *name, uint64_t value)
{
	struct ctx_prefixed *p = arg;
	char full[160];
	snprintf(full, sizeof(full), "%s.%s", p->prefix, name);
	p->cb(p->arg, full, value);
}

/* Layer-first names: "rpc.*" from the context, "<driver>.*" from every
 * endpoint (several endpoints of one driver report the same names; readers
 * sum them). */
void ferry_ctx_stats(ferry_ctx *ctx, ferry_stat_cb cb, void *arg)
{
#define CTX_STAT_(field, name) cb(arg, name, ctx->cnt.field);
	FERRY_RPC_COUNTERS(CTX_STAT_)
#undef CTX_STAT_
	ferry__workers_stats(ctx, cb, arg);
	ctx_transports_stats(ctx, cb, arg);
	for (ferry__port *p = ctx->ports; p != NULL; p = p->next) {
		if (p->dead)
			continue;
		for (int j = 0; j < p->neps; j++) {
			ferry_ep *ep = p->eps[j];
			ctx_stat_ep(cb, arg, ep);
			struct ctx_prefixed pre = {cb, arg, ep->drv->name};
			struct ferry_ctl_counters cc = {ctx_prefixed_cb, &pre};
			ferry__ep_ctl(ep, FERRY_CTL_COUNTERS, &cc);
			ferry__cap_stats(ep, cb, arg);
		}
	}
}
