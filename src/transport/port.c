/* Ports: an open endpoint stack with its transport's state, the thing a
 * session or a server's listener talks through. Closed ports linger until
 * the poll pass that may still hold them is over (ferry__ports_sweep). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include "base/alloc.h"
#include "core.h"

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
		for (const char *c = strchr(keys, ','); c != NULL && !have;
		     c = strchr(c + 1, ','))
			have = strncmp(c + 1, probe, strlen(probe)) == 0;
		/* Capture is this process's choice, not part of the address a
		 * peer should use. */
		if (strncmp(loc->kv[i].key, "pcap", 4) == 0)
			have = true;
		if (!have)
			n += (size_t)snprintf(p->bound + n, sizeof(p->bound) - n,
			                      "%s%s=%s",
			                      keys[0] != '\0' || i > 0 ? "," : "",
			                      loc->kv[i].key, loc->kv[i].val);
	}
}

int ferry__port_open(ferry_ctx *ctx, const ferry_loc *loc, bool server, ferry__port **out)
{
	ferry__port *p = ferry__calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->ctx = ctx;
	p->id = ctx->port_ids++;
	p->tp = loc->transport;
	p->server = server;
	char err[FERRY_ERRMSG_BYTES] = "";
	int rc = ferry__ep_open_stack(ctx, &ferry__ctx_ep_host,
	                              ctx->poll_mode == FERRY_POLL_BLOCK, loc,
	                              server ? FERRY_EP_LISTEN : 0, p->tp->upcalls, p,
	                              p->eps, &p->neps, err, sizeof(err));
	if (rc != 0) {
		ferry__free(p);
		return ferry__set_errmsg(ctx, rc, "%s", err);
	}
	p->ep = p->eps[0];
	p->stream = p->ep->drv->kind == FERRY_DRIVER_STREAM;
	ferry__ep_caps(p->ep, &p->caps);
	uint64_t msg_max;
	rc = ferry__loc_u64(loc, "maxmsg", 0, UINT32_MAX, FERRY_MSG_MAX_BYTES_DEFAULT,
	                    &msg_max, ctx->errmsg, sizeof(ctx->errmsg));
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

void ferry__ports_sweep(ferry_ctx *ctx)
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
