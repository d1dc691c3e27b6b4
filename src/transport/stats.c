/* A context's metrics as the public API reports them: counters (the
 * context's, each endpoint's generic and driver counters, each transport's),
 * histograms and the trace ring. */
#include <stdio.h>

#include "base/alloc.h"
#include "core.h"
#include "drivers/core/capture.h"

void ferry_trace(ferry_ctx *ctx, const char *fmt, uint64_t a, uint64_t b)
{
	ferry__trace_rec(&ctx->trace, fmt, a, b);
}

int ferry_trace_dump(ferry_ctx *ctx, FILE *f)
{
	return ferry__trace_dump(&ctx->trace, f);
}

static void ctx_transports_stats(ferry_ctx *ctx, ferry_stat_cb cb, void *arg)
{
	for (int i = 0; ferry__transports[i] != NULL; i++)
		if (ferry__transports[i]->stats != NULL &&
		    ctx->tp_ctx[ferry__transports[i]->index] != NULL)
			ferry__transports[i]->stats(ctx, cb, arg);
}

void ferry_ctx_histograms(ferry_ctx *ctx, ferry_hist_cb cb, void *arg)
{
	cb(arg, "rpc.call_ns", &ctx->hist_call);
	cb(arg, "rpc.handler_ns", &ctx->hist_handler);
	for (int i = 0; ferry__transports[i] != NULL; i++)
		if (ferry__transports[i]->hists != NULL &&
		    ctx->tp_ctx[ferry__transports[i]->index] != NULL)
			ferry__transports[i]->hists(ctx, cb, arg);
}

static void ctx_stat_ep(ferry_stat_cb cb, void *arg, ferry_ep *ep)
{
	char name[128];
	const char *d = ep->drv->name;
#define CTX_EP_STAT(field, label)                                                        \
	snprintf(name, sizeof(name), "%s.%s", d, label);                                 \
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
