/* The handoff queue: how other threads reach a context (replies from
 * workers, loan releases, session and call operations). A mutex-protected
 * intrusive list with an atomic "pending" flag: the owner thread reads only
 * the flag on every pass (no lock, no syscall when nothing was handed off)
 * and takes the lock only to splice the whole list out. Foreign threads
 * pay the lock and, in block mode, one eventfd write. Also the host table
 * through which a context's endpoints reach it (drivers/core/ep.h). */
#include <stdio.h>
#include <unistd.h>

#include "base/alloc.h"
#include "core.h"

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
 * the list a cycle: the owner spun in ferry__handoff_drain forever.) */
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

void ferry__handoff_drain(ferry_ctx *ctx)
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
