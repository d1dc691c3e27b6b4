/* infrc: the InfiniBand/RoCE reliable-connected stream driver.
 *
 * One RC QP per connection, set up over a TCP side channel that then stays
 * open as the liveness signal (infrc_conn.c). All QPs of an endpoint share
 * one CQ (with a completion channel for block mode) and one SRQ of
 * fixed-size registered receive buffers (infrc_mem.c).
 *
 * Transmit: messages (header copied, payload borrowed) queue per
 * connection; flush packs their bytes, back to back, into registered send
 * slots of at most the peer's buffer size and posts them as SEND with
 * immediate data (inline when small), chained, selectively signaled. A
 * message is on_sent once its last byte is in a posted slot. Each SEND
 * spends a credit (one of the peer's receive buffers); credits come back in
 * the immediate data of the peer's SENDs, or in an empty control SEND when
 * the peer has nothing else to say. Large messages in pull mode are copied
 * into a registered staging region instead and announced by a descriptor;
 * the receiver RDMA-READs them and acknowledges with a DONE count, after
 * which on_sent runs.
 *
 * Receive: chunk payloads form one byte stream per connection, parsed as
 * header, on_header, body; body bytes go to the sink as loans of the
 * receive buffer (or of a copy block when half the pool is loaned out), to
 * an fd, or nowhere. A pulled body lands in a registered region, loaned
 * whole. docs/drivers/infrc.md has the wire format and the reasoning.
 *
 * Files: this one holds completions, poll, open/close and the ops table;
 * transmit is infrc_tx.c, receive infrc_rx.c, connections infrc_conn.c,
 * registered memory infrc_mem.c. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/io.h"
#include "base/log.h"
#include "base/alloc.h"
#include "base/loc.h"
#include "drivers/kit/inet.h"
#include "infrc.h"

#define INFRC_EP_BYTES     4096
#define INFRC_CQ_ACK_EVERY 64 /* completion events acknowledged at once */

_Static_assert(sizeof(infrc_ep) <= INFRC_EP_BYTES, "INFRC_EP_BYTES too small");

enum {
	INFRC_K_CONNECT_TIMEOUT,
	INFRC_K_LARGE,
	INFRC_K_PULL_MIN,
	INFRC_K_BUFSIZE,
	INFRC_K_RXBUFS,
	INFRC_K_REUSEPORT,
	INFRC_K_COUNT
};
/* infrc's keys; the verbs keys are kit/ib's, host/port (the connection
 * setup over TCP) kit/inet's. connect_timeout in ms; large: push or pull. */
static const ferry_loc_key infrc_keys[INFRC_K_COUNT + 1] = {
        [INFRC_K_CONNECT_TIMEOUT] = {.name = "connect_timeout",
                                     .kind = FERRY_LOC_UINT,
                                     .min = 1,
                                     .max = 3600000,
                                     .dflt = 5000},
        [INFRC_K_LARGE] = {.name = "large", .kind = FERRY_LOC_STR, .sdflt = "push"},
        [INFRC_K_PULL_MIN] = {.name = "pull_min",
                              .kind = FERRY_LOC_UINT,
                              .min = 1,
                              .max = UINT32_MAX,
                              .dflt = INFRC_PULL_MIN_DEFAULT},
        [INFRC_K_BUFSIZE] = {.name = "bufsize",
                             .kind = FERRY_LOC_UINT,
                             .min = INFRC_BUF_MIN,
                             .max = INFRC_BUF_MAX,
                             .dflt = INFRC_BUF_DEFAULT},
        [INFRC_K_RXBUFS] = {.name = "rxbufs",
                            .kind = FERRY_LOC_UINT,
                            .min = INFRC_RXBUFS_MIN,
                            .max = INFRC_RXBUFS_MAX,
                            .dflt = INFRC_RXBUFS_DEFAULT},
        [INFRC_K_REUSEPORT] = {.name = "reuseport", .kind = FERRY_LOC_UINT, .max = 1},
};
static const ferry_loc_key *const infrc_key_tables[] = {infrc_keys, ferry__ib_keys,
                                                        ferry__inet_keys, NULL};

void ferry__infrc_conn_fail(infrc_ep *e, infrc_conn *c, int err)
{
	ferry__infrc_conn_destroy(e, c, FERRY_CONN_RESET, err, true);
}

/* Completions -----------------------------------------------------------------*/
static int wc_err(enum ibv_wc_status s)
{
	return s == IBV_WC_RETRY_EXC_ERR || s == IBV_WC_RNR_RETRY_EXC_ERR
	               ? FERRY_EPEERDEAD
	               : -EIO;
}

/* The peer acknowledged n pulled bodies: their staging can go. */
static void pull_acked(infrc_conn *c, uint32_t n)
{
	for (infrc_txm *m = c->sentq; m != NULL && n > 0; m = m->next)
		if (m->stage != NULL && !m->ready) {
			m->ready = true;
			n--;
		}
}

static void wc_recv(infrc_ep *e, const struct ibv_wc *wc)
{
	infrc_rxb *b = &e->rxb[wc->wr_id];
	e->posted--;
	infrc_conn *c = ferry__infrc_conn_by_qpn(e, wc->qp_num);
	if (wc->status != IBV_WC_SUCCESS) {
		ferry__infrc_rxb_put(e, b);
		if (c != NULL && wc->status != IBV_WC_WR_FLUSH_ERR) {
			e->cnt.qp_errors++;
			ferry__infrc_conn_fail(e, c, wc_err(wc->status));
		}
		return;
	}
	if (c != NULL && c->state == INFRC_C_READY_WAIT)
		ferry__infrc_conn_up(e, c); /* the data overtook READY */
	if (c == NULL || c->state != INFRC_C_UP || !(wc->wc_flags & IBV_WC_WITH_IMM)) {
		ferry__infrc_rxb_put(e, b);
		if (c != NULL && c->state == INFRC_C_UP)
			ferry__infrc_conn_fail(e, c, FERRY_EPROTO);
		return;
	}
	uint32_t imm = be32toh(wc->imm_data);
	e->cnt.recv_chunks++;
	e->cnt.recv_bytes += wc->byte_len;
	c->credits += imm & INFRC_IMM_CRED_MAX;
	c->ret++;
	uint32_t done = (imm >> 16) & INFRC_IMM_DONE_MAX;
	if (done > 0)
		pull_acked(c, done);
	/* Queued messages may go now; credits owed may be due. */
	if (c->txq != NULL || c->ret >= ferry__infrc_ret_threshold(c))
		e->base.tx_pending = true;
	if ((imm >> 28) == INFRC_T_CTRL) {
		ferry__infrc_rxb_put(e, b);
	} else {
		b->len = wc->byte_len;
		b->imm = imm;
		if (c->reading != NULL || c->held != NULL) {
			b->next = NULL;
			if (c->held_tail != NULL)
				c->held_tail->next = b;
			else
				c->held = b;
			c->held_tail = b;
			e->cnt.rx_held++;
		} else {
			ferry__infrc_rx_chunk(e, c, b);
		}
	}
	if (done > 0 && c->state == INFRC_C_UP)
		ferry__infrc_deliver_ready(e, c);
}

static void wc_send(infrc_ep *e, const struct ibv_wc *wc)
{
	infrc_conn *c = ferry__infrc_conn_by_qpn(e, wc->qp_num);
	if (c == NULL || (uint32_t)(wc->wr_id >> 32) != c->id || c->state != INFRC_C_UP)
		return; /* a connection that is gone */
	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status != IBV_WC_WR_FLUSH_ERR)
			e->cnt.qp_errors++;
		ferry__infrc_conn_fail(e, c, wc_err(wc->status));
		return;
	}
	uint32_t seq = (uint32_t)wc->wr_id;
	/* Everything posted up to seq is complete (one QP completes in order). */
	while ((int32_t)(seq - c->done_seq) >= 0) {
		if (c->wr_slot[c->done_seq % INFRC_SQ_DEPTH])
			c->slot_tail++;
		c->done_seq++;
	}
	if (c->txq != NULL || c->done_pending > 0 ||
	    c->ret >= ferry__infrc_ret_threshold(c))
		e->base.tx_pending = true;
	if (wc->opcode == IBV_WC_RDMA_READ && c->reading != NULL)
		ferry__infrc_read_done(e, c);
}

static int cq_drain(infrc_ep *e)
{
	int events = 0;
	for (int round = 0; round < INFRC_CQ_POLLS_MAX; round++) {
		struct ibv_wc wc[INFRC_CQ_BATCH];
		int n = ibv_poll_cq(e->cq, INFRC_CQ_BATCH, wc);
		e->cnt.cq_polls++;
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++) {
			if (wc[i].opcode & IBV_WC_RECV)
				wc_recv(e, &wc[i]);
			else
				wc_send(e, &wc[i]);
		}
		events += n;
		if (n < INFRC_CQ_BATCH)
			break;
	}
	return events;
}

/* Block mode: consume the channel's events; ask for the next one. */
static void cq_events(infrc_ep *e)
{
	struct ibv_cq *cq;
	void *ctx;
	while (ibv_get_cq_event(e->chan, &cq, &ctx) == 0) {
		e->cnt.cq_events++;
		e->armed = false;
		if (++e->unacked_events >= INFRC_CQ_ACK_EVERY) {
			ibv_ack_cq_events(e->cq, e->unacked_events);
			e->unacked_events = 0;
		}
	}
}

static int infrc_poll(ferry_ep *ep, int max)
{
	(void)max;
	infrc_ep *e = infrc_of(ep);
	int events = 0;
	e->polls++;
	/* Completions before sockets: data a peer sent before it closed is
	 * delivered before its EOF. */
	events += cq_drain(e);
	if (ep->sleeps || e->nsetup > 0 || e->polls % INFRC_EPOLL_EVERY == 0) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep->fd, evs, 64, 0);
		e->cnt.epoll_waits++;
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &e->lfd) {
				events += ferry__infrc_accept_all(e);
			} else if (p == &e->chan) {
				cq_events(e);
				events += cq_drain(e);
			} else {
				infrc_conn *c = p;
				if (c->state != INFRC_C_DEAD) {
					ferry__infrc_sock_event(e, c, evs[i].events);
					events++;
				}
			}
		}
		if (e->nsetup > 0)
			ferry__infrc_check_timeouts(e);
		else
			ep->wake_at_us = 0;
	}
	ferry__infrc_repost(e, e->posted < e->rxbufs / 4);
	if (ep->tx_pending)
		ferry__infrc_flush(ep);
	if (ep->sleeps && !e->armed) {
		/* Arm, then look once more: a completion that arrived before the
		 * arming raises no event, so it must be seen now. */
		if (ibv_req_notify_cq(e->cq, 0) == 0) {
			e->armed = true;
			e->cnt.cq_arms++;
		}
		int k = cq_drain(e);
		if (k > 0) {
			events += k;
			if (ep->tx_pending)
				ferry__infrc_flush(ep);
		}
	}
	ferry__infrc_reap(e);
	return events;
}

/* Open / close ----------------------------------------------------------------*/
static int infrc_probe(char *why, size_t why_len)
{
	return ferry__ib_probe(why, why_len);
}

static int infrc_open(ferry_ep *ep, const ferry_loc *loc, unsigned flags)
{
	infrc_ep *e = infrc_of(ep);
	char *msg = ep->errmsg;
	size_t msz = sizeof(ep->errmsg);
	e->lfd = -1;
	e->max_inline = UINT32_MAX;
	e->listening = (flags & FERRY_EP_LISTEN) != 0;
	ferry_loc_val v[INFRC_K_COUNT];
	int rc = ferry_loc_read(loc, infrc_keys, v, msg, msz);
	if (rc != 0)
		return rc;
	e->connect_timeout_us = v[INFRC_K_CONNECT_TIMEOUT].u * 1000;
	e->bufsize = (uint32_t)v[INFRC_K_BUFSIZE].u;
	e->rxbufs = (uint32_t)v[INFRC_K_RXBUFS].u;
	e->pull_min = (uint32_t)v[INFRC_K_PULL_MIN].u;
	const char *large = v[INFRC_K_LARGE].s;
	if (strcmp(large, "push") == 0) {
		e->large = INFRC_LARGE_PUSH;
	} else if (strcmp(large, "pull") == 0) {
		e->large = INFRC_LARGE_PULL;
	} else {
		snprintf(msg, msz, "large '%s': want push or pull", large);
		return FERRY_EBADLOC;
	}
	if (ep->up == NULL || ep->up->hdr_len == 0 || ep->up->hdr_len > INFRC_HDR_MAX ||
	    ep->up->hdr_len + INFRC_DESC_BYTES > e->bufsize) {
		snprintf(msg, msz, "stream header must be 1-%u bytes", INFRC_HDR_MAX);
		return -EINVAL;
	}
	ep->fd = epoll_create1(EPOLL_CLOEXEC);
	if (ep->fd < 0)
		return -errno;
	if ((rc = ferry__ib_dev_open(&e->dev, loc, msg, msz)) != 0)
		return rc;
	if (e->rxbufs > (uint32_t)e->dev.dattr.max_srq_wr) {
		snprintf(msg, msz, "rxbufs '%u': dev '%s' takes at most %d", e->rxbufs,
		         e->dev.name, e->dev.dattr.max_srq_wr);
		return FERRY_EBADLOC;
	}
	e->chan = ibv_create_comp_channel(e->dev.ctx);
	if (e->chan == NULL) {
		rc = errno ? -errno : -ENOMEM;
		snprintf(msg, msz, "ibv_create_comp_channel: %s", strerror(-rc));
		return rc;
	}
	int fl = fcntl(e->chan->fd, F_GETFL);
	if (fl < 0 || fcntl(e->chan->fd, F_SETFL, fl | O_NONBLOCK) != 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &e->chan};
	if (epoll_ctl(ep->fd, EPOLL_CTL_ADD, e->chan->fd, &ev) != 0)
		return -errno;
	uint64_t cqe = (uint64_t)e->rxbufs + (uint64_t)INFRC_CONNS_MAX * INFRC_SQ_DEPTH;
	if (cqe > (uint64_t)e->dev.dattr.max_cqe)
		cqe = (uint64_t)e->dev.dattr.max_cqe;
	if (cqe < e->rxbufs + INFRC_SQ_DEPTH) {
		snprintf(msg, msz, "rxbufs '%u': more than dev '%s' CQs hold", e->rxbufs,
		         e->dev.name);
		return FERRY_EBADLOC;
	}
	e->conns_max = (uint32_t)((cqe - e->rxbufs) / INFRC_SQ_DEPTH);
	e->cq = ibv_create_cq(e->dev.ctx, (int)cqe, NULL, e->chan, 0);
	if (e->cq == NULL) {
		rc = errno ? -errno : -ENOMEM;
		snprintf(msg, msz, "ibv_create_cq(%llu): %s", (unsigned long long)cqe,
		         strerror(-rc));
		return rc;
	}
	e->cqe = (int)cqe;
	e->grant = e->rxbufs / 2 < INFRC_CREDITS_MAX ? e->rxbufs / 2 : INFRC_CREDITS_MAX;
	if ((rc = ferry__infrc_rx_open(e)) != 0)
		return rc;
	if (e->listening && (rc = ferry__infrc_listen(e, loc)) != 0)
		return rc;
	return 0;
}

static void infrc_close(ferry_ep *ep)
{
	infrc_ep *e = infrc_of(ep);
	/* Reverse order of open: QPs and their send rings, regions, the
	 * receive pool and SRQ, the CQ and its channel, the device, sockets. */
	while (e->conns != NULL)
		ferry__infrc_conn_destroy(e, e->conns, FERRY_CONN_CLOSED, 0, false);
	ferry__infrc_reap(e);
	ferry__infrc_regions_close(e);
	ferry__infrc_rx_close(e);
	if (e->cq != NULL) {
		if (e->unacked_events > 0)
			ibv_ack_cq_events(e->cq, e->unacked_events);
		(void)ibv_destroy_cq(e->cq);
	}
	e->cq = NULL;
	if (e->chan != NULL)
		(void)ibv_destroy_comp_channel(e->chan);
	e->chan = NULL;
	ferry__ib_dev_close(&e->dev);
	if (e->lfd >= 0)
		close(e->lfd);
	e->lfd = -1;
	if (ep->fd >= 0)
		close(ep->fd);
	ep->fd = -1;
	while (e->txm_free != NULL) {
		infrc_txm *m = e->txm_free;
		e->txm_free = m->next;
		ferry__free(m);
	}
}

/* Control ---------------------------------------------------------------------*/
static void infrc_caps(ferry_ep *ep, ferry_caps *out)
{
	infrc_ep *e = infrc_of(ep);
	*out = (ferry_caps){.max_payload = UINT32_MAX,
	                    .inline_bytes =
	                            e->max_inline == UINT32_MAX ? 0 : e->max_inline,
	                    .tx_slots = UINT32_MAX,
	                    .rx_batch = INFRC_CQ_BATCH};
}

static int infrc_ctl(ferry_ep *ep, int op, void *arg)
{
	infrc_ep *e = infrc_of(ep);
	if (op == FERRY_CTL_BOUND_LOCATOR) {
		struct ferry_ctl_locator *l = arg;
		if (!e->listening)
			return -ENOTSUP;
		int n = ferry__inet_locator((struct sockaddr *)&e->local, l->out, l->len);
		return n < 0 || (size_t)n >= l->len ? -ERANGE : 0;
	}
	if (op == FERRY_CTL_COUNTERS) {
		struct ferry_ctl_counters *k = arg;
#define INFRC_CNT_REPORT(f) k->cb(k->arg, #f, e->cnt.f);
		INFRC_COUNTERS(INFRC_CNT_REPORT)
#undef INFRC_CNT_REPORT
		uint64_t backlog = 0, credits = 0;
		for (infrc_conn *c = e->conns; c != NULL; c = c->next) {
			backlog += c->backlog;
			credits += c->credits;
		}
		k->cb(k->arg, "conns", e->nconns);
		k->cb(k->arg, "tx_backlog_bytes", backlog);
		k->cb(k->arg, "tx_credits", credits);
		k->cb(k->arg, "rx_posted", e->posted);
		k->cb(k->arg, "rx_loaned", e->rx_loaned);
		k->cb(k->arg, "max_inline",
		      e->max_inline == UINT32_MAX ? 0 : e->max_inline);
		return 0;
	}
	return -ENOTSUP;
}

static const ferry_stream_ops infrc_stream_ops = {
        .connect = ferry__infrc_connect,
        .send_msg = ferry__infrc_send_msg,
        .flush = ferry__infrc_flush,
        .poll = infrc_poll,
        .release = ferry__infrc_release,
        .detach = ferry__infrc_detach,
        .conn_close = ferry__infrc_conn_close,
        .caps = infrc_caps,
        .ctl = infrc_ctl,
        .close = infrc_close,
};

const ferry_driver_ops ferry__infrc_driver = {
        .name = "infrc",
        .kind = FERRY_DRIVER_STREAM,
        .wrapper = false,
        .ep_size = INFRC_EP_BYTES,
        .key_tables = infrc_key_tables,
        .probe = infrc_probe,
        .open = infrc_open,
        .stream = &infrc_stream_ops,
};
