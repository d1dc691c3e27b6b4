/* Core side of the driver contract: open/close whole endpoint stacks and
 * the thin wrappers through which the core reaches every driver. Generic
 * packet, byte, error and loan counts are kept here, in one place. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "capture.h"
#include "ep.h"

/* Stream endpoints: the core's upcalls in front of the transport's, so
 * received messages are counted here as a datagram driver's packets are in
 * ferry__ep_poll: one packet per message, header and body bytes. */
static void ep_up_conn_event(void *arg, ferry_conn *c, int event, int err)
{
	ferry_ep *ep = arg;
	ep->up_next->conn_event(ep->up_next_arg, c, event, err);
}

static int ep_up_on_header(void *arg, ferry_conn *c, const uint8_t *hdr,
                           ferry_body_sink *sink)
{
	ferry_ep *ep = arg;
	return ep->up_next->on_header(ep->up_next_arg, c, hdr, sink);
}

static void ep_up_on_body(void *arg, ferry_conn *c, const uint8_t *hdr,
                          ferry_body_sink *sink, int status)
{
	ferry_ep *ep = arg;
	ep->cnt.rx_pkts++;
	ep->cnt.rx_bytes += ep->up_next->hdr_len + sink->len;
	ep->up_next->on_body(ep->up_next_arg, c, hdr, sink, status);
}

static void ep_up_on_sent(void *arg, ferry_conn *c, void *cookie)
{
	ferry_ep *ep = arg;
	ep->up_next->on_sent(ep->up_next_arg, c, cookie);
}

/* A message that could not be sent (its payload unreadable): counted as a
 * transmit error; its earlier tx_pkts stays (the message was queued). */
static void ep_up_on_send_failed(void *arg, ferry_conn *c, void *cookie, int err,
                                 bool reset)
{
	ferry_ep *ep = arg;
	ep->cnt.tx_errors++;
	if (ep->up_next->on_send_failed != NULL)
		ep->up_next->on_send_failed(ep->up_next_arg, c, cookie, err, reset);
}

static void ep_counting_upcalls(ferry_ep *ep, const ferry_stream_upcalls *up,
                                void *up_arg)
{
	ep->up_next = up;
	ep->up_next_arg = up_arg;
	ep->up_count = (ferry_stream_upcalls){
	        .hdr_len = up->hdr_len,
	        .conn_event = ep_up_conn_event,
	        .on_header = ep_up_on_header,
	        .on_body = ep_up_on_body,
	        .on_sent = ep_up_on_sent,
	        .on_send_failed = ep_up_on_send_failed,
	};
	ep->up = &ep->up_count;
	ep->up_arg = ep;
}

/* Open the stack bottom-up: each wrapper finds its inner endpoint already
 * open. On failure everything opened so far is closed, outermost first. */
int ferry__ep_open_stack(ferry_ctx *ctx, const ferry__ep_host *host, bool sleeps,
                         const ferry_loc *loc, unsigned flags,
                         const ferry_stream_upcalls *up, void *up_arg, ferry_ep **eps,
                         int *neps, char *err, size_t err_len)
{
	int n = loc->ndrv;
	int rc = 0;
	*neps = 0;
	/* Capture (pcap=) taps the bottom endpoint: what really goes on the
	 * wire, below any wrapper's faults. Off, nothing is installed. */
	ferry__cap_tap *tap = NULL;
	rc = ferry__cap_open(loc, &tap, err, err_len);
	if (rc != 0)
		return rc;
	for (int i = n - 1; i >= 0; i--) {
		const ferry_driver_ops *d = loc->drv[i];
		char why[128] = "";
		if (d->probe != NULL && (rc = d->probe(why, sizeof(why))) != 0) {
			snprintf(err, err_len, "driver '%s' cannot run here: %s", d->name,
			         why);
			goto fail;
		}
		ferry_ep *ep = ferry__calloc(1, d->ep_size);
		if (ep == NULL) {
			rc = -ENOMEM;
			snprintf(err, err_len, "out of memory opening '%s'", d->name);
			goto fail;
		}
		ep->drv = d;
		ep->ctx = ctx;
		ep->fd = -1;
		ep->host = host;
		ep->sleeps = sleeps;
		ep->inner = i + 1 < n ? eps[i + 1] : NULL;
		if (d->kind == FERRY_DRIVER_STREAM && up != NULL)
			ep_counting_upcalls(ep, up, up_arg);
		else
			ep->up = up, ep->up_arg = up_arg;
		ferry_loc sub;
		ferry__loc_sub(loc, i, &sub);
		rc = d->open(ep, &sub, flags);
		if (rc != 0) {
			snprintf(err, err_len, "%s: %s", d->name,
			         ep->errmsg[0] != '\0' ? ep->errmsg : ferry_strerror(rc));
			ferry__ep_close(ep);
			ferry__free(ep);
			goto fail;
		}
		if (tap != NULL) {
			ferry__cap_attach(tap, ep); /* ep's close releases it */
			tap = NULL;
		}
		eps[i] = ep;
		(*neps)++;
	}
	return 0;
fail:
	ferry__cap_close(tap);
	/* eps[i+1 .. n-1] are open. */
	for (int j = n - *neps; j < n; j++) {
		ferry__ep_close(eps[j]);
		ferry__free(eps[j]);
	}
	*neps = 0;
	return rc;
}

void ferry__ep_close_stack(ferry_ep **eps, int neps)
{
	for (int i = 0; i < neps; i++) {
		ferry__ep_close(eps[i]);
		ferry__free(eps[i]);
		eps[i] = NULL;
	}
}

/* What every send wrapper counts: a packet (a stream message) of bytes
 * accepted, or a transmit error. Returns rc. */
static int ep_count_tx(ferry_ep *ep, int rc, size_t bytes)
{
	if (rc < 0) {
		ep->cnt.tx_errors++;
		return rc;
	}
	ep->cnt.tx_pkts++;
	ep->cnt.tx_bytes += bytes;
	ep->tx_pending = true;
	return rc;
}

int ferry__ep_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                   ferry_buf_iter *payload)
{
	size_t bytes = hdr_len + (payload != NULL ? payload->left : 0);
	return ep_count_tx(ep, ep->drv->dgram->send(ep, to, hdr, hdr_len, payload),
	                   bytes);
}

int ferry__ep_flush(ferry_ep *ep)
{
	ep->tx_pending = false;
	int rc = ep->drv->dgram->flush(ep);
	if (rc < 0)
		ep->cnt.tx_errors++;
	return rc;
}

int ferry__ep_poll(ferry_ep *ep, ferry_pkt **pkts, int max)
{
	int n = ep->drv->dgram->poll(ep, pkts, max);
	ep->cnt.polls++;
	if (n <= 0)
		return n;
	ep->cnt.polls_nonempty++;
	ep->cnt.rx_pkts += (uint64_t)n;
	for (int i = 0; i < n; i++) {
		ep->cnt.rx_bytes += pkts[i]->len;
		pkts[i]->ep->loans_out++;
	}
	return n;
}

void ferry__ep_release(ferry_pkt *pkt)
{
	ferry_ep *ep = pkt->ep;
	ep->loans_out--;
	if (ep->drv->kind == FERRY_DRIVER_STREAM)
		ep->drv->stream->release(ep, pkt);
	else
		ep->drv->dgram->release(ep, pkt);
}

/* Ops both kinds have, whichever table holds them. */
void ferry__ep_close(ferry_ep *ep)
{
	if (ep->drv->kind == FERRY_DRIVER_STREAM)
		ep->drv->stream->close(ep);
	else
		ep->drv->dgram->close(ep);
}

void ferry__ep_caps(ferry_ep *ep, ferry_caps *out)
{
	if (ep->drv->kind == FERRY_DRIVER_STREAM)
		ep->drv->stream->caps(ep, out);
	else
		ep->drv->dgram->caps(ep, out);
}

int ferry__ep_ctl(ferry_ep *ep, int op, void *arg)
{
	return ep->drv->kind == FERRY_DRIVER_STREAM ? ep->drv->stream->ctl(ep, op, arg)
	                                            : ep->drv->dgram->ctl(ep, op, arg);
}

/* Stream endpoints: the same counts as a datagram endpoint's, a message
 * being one packet (received ones are counted by the core's upcalls). */
int ferry__ep_connect(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out)
{
	return ep->drv->stream->connect(ep, peer, out);
}

int ferry__ep_send_msg(ferry_conn *c, const void *hdr, size_t hdr_len,
                       ferry_buf_iter *payload, void *cookie)
{
	ferry_ep *ep = c->ep;
	size_t bytes = hdr_len + (payload != NULL ? payload->left : 0);
	return ep_count_tx(
	        ep, ep->drv->stream->send_msg(c, hdr, hdr_len, payload, cookie), bytes);
}

int ferry__ep_detach(ferry_conn *c, void *cookie)
{
	return c->ep->drv->stream->detach(c, cookie);
}

void ferry__ep_conn_close(ferry_conn *c)
{
	c->ep->drv->stream->conn_close(c);
}

int ferry__ep_stream_poll(ferry_ep *ep, int max)
{
	int n = ep->drv->stream->poll(ep, max);
	ep->cnt.polls++;
	if (n > 0)
		ep->cnt.polls_nonempty++;
	return n;
}

int ferry__ep_stream_flush(ferry_ep *ep)
{
	ep->tx_pending = false;
	int rc = ep->drv->stream->flush(ep);
	if (rc < 0)
		ep->cnt.tx_errors++;
	return rc;
}

int ferry_buf_append_pkt(ferry_buf *b, ferry_pkt *pkt, void *data, size_t n)
{
	pkt->ep->loans_out++;
	int rc = ferry_buf_append_loan(b, data, n, pkt->ep->host->loan_release, pkt);
	if (rc != 0)
		pkt->ep->loans_out--;
	return rc;
}
