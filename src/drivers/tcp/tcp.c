/* tcp: the kernel TCP stream driver (and, with zerocopy set, the engine of
 * the splice driver). This file opens and closes endpoints, runs poll and
 * keeps the ops tables and counters; tcp.h maps the other files.
 *
 * Every socket is in one internal epoll set whose fd is the endpoint's fd,
 * so a blocking context sleeps on all of them at once. In spin mode a few
 * connections are read directly on every poll (one recv each, no
 * epoll_wait), and epoll is asked every 16th poll for accepts and connect
 * completions; more connections go through epoll readiness. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/loc.h"
#include "drivers/kit/inet.h"
#include "tcp.h"

enum {
	TCP_K_SNDBUF,
	TCP_K_RCVBUF,
	TCP_K_CONNECT_TIMEOUT,
	TCP_K_BACKLOG_PAUSE,
	TCP_K_KEEPALIVE,
	TCP_K_REUSEPORT,
	TCP_K_COUNT
};
/* tcp's keys (splice's too); host and port are kit/inet's. sndbuf/rcvbuf 0:
 * the kernel's autotuning; keepalive in seconds (0 off); connect_timeout
 * in ms. */
static const ferry_loc_key tcp_keys[TCP_K_COUNT + 1] = {
        [TCP_K_SNDBUF] = {.name = "sndbuf", .kind = FERRY_LOC_UINT, .max = 1u << 30},
        [TCP_K_RCVBUF] = {.name = "rcvbuf", .kind = FERRY_LOC_UINT, .max = 1u << 30},
        [TCP_K_CONNECT_TIMEOUT] = {.name = "connect_timeout",
                                   .kind = FERRY_LOC_UINT,
                                   .min = 1,
                                   .max = 3600000,
                                   .dflt = 5000},
        [TCP_K_BACKLOG_PAUSE] = {.name = "backlog_pause",
                                 .kind = FERRY_LOC_UINT,
                                 .max = UINT64_MAX / 2,
                                 .dflt = TCP_BACKLOG_PAUSE_DEFAULT},
        [TCP_K_KEEPALIVE] = {.name = "keepalive", .kind = FERRY_LOC_UINT, .max = 32767},
        [TCP_K_REUSEPORT] = {.name = "reuseport", .kind = FERRY_LOC_UINT, .max = 1},
};
const ferry_loc_key *const ferry__tcp_key_tables[] = {tcp_keys, ferry__inet_keys, NULL};

int ferry__tcp_open_mode(ferry_ep *ep, const ferry_loc *loc, unsigned flags,
                         bool zerocopy)
{
	tcp_ep *t = tcp_of(ep);
	char *msg = ep->errmsg;
	t->zerocopy = zerocopy;
	t->lfd = -1;
	t->listening = (flags & FERRY_EP_LISTEN) != 0;
	ferry_loc_val v[TCP_K_COUNT];
	int rc = ferry_loc_read(loc, tcp_keys, v, msg, sizeof(ep->errmsg));
	if (rc != 0)
		return rc;
	bool reuseport = v[TCP_K_REUSEPORT].u != 0;
	t->sndbuf = v[TCP_K_SNDBUF].u;
	t->rcvbuf = v[TCP_K_RCVBUF].u;
	t->keepalive_s = v[TCP_K_KEEPALIVE].u;
	t->backlog_pause = v[TCP_K_BACKLOG_PAUSE].u;
	uint64_t ct_ms = v[TCP_K_CONNECT_TIMEOUT].u;
	t->connect_timeout_us = ct_ms * 1000;
	if (ep->up == NULL || ep->up->hdr_len == 0 || ep->up->hdr_len > TCP_HDR_MAX) {
		snprintf(msg, sizeof(ep->errmsg), "stream header must be 1-%u bytes",
		         TCP_HDR_MAX);
		return -EINVAL;
	}
	ep->fd = epoll_create1(EPOLL_CLOEXEC);
	if (ep->fd < 0)
		return -errno;
	if (!t->listening)
		return 0;
	struct sockaddr_storage ss;
	socklen_t sl;
	if ((rc = ferry__inet_resolve(loc, true, SOCK_STREAM, &ss, &sl, msg,
	                              sizeof(ep->errmsg))) != 0)
		return rc;
	t->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->lfd < 0)
		return -errno;
	int one = 1;
	setsockopt(t->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* reuseport=1: listeners of several contexts share the port; the
	 * kernel hands each new connection to one of them (4-tuple hash). */
	if (reuseport &&
	    setsockopt(t->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		return -errno;
	if (bind(t->lfd, (struct sockaddr *)&ss, sl) != 0 || listen(t->lfd, 1024) != 0) {
		int e = errno;
		snprintf(msg, sizeof(ep->errmsg), "bind/listen: %s", strerror(e));
		return -e;
	}
	socklen_t ll = sizeof(t->local);
	if (getsockname(t->lfd, (struct sockaddr *)&t->local, &ll) != 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(ep->fd, EPOLL_CTL_ADD, t->lfd, &ev) != 0)
		return -errno;
	return 0;
}

static int tcp_open(ferry_ep *ep, const ferry_loc *loc, unsigned flags)
{
	return ferry__tcp_open_mode(ep, loc, flags, false);
}

static void tcp_close(ferry_ep *ep)
{
	tcp_ep *t = tcp_of(ep);
	while (t->conns != NULL)
		ferry__tcp_conn_destroy(t, t->conns, FERRY_CONN_CLOSED, 0, false);
	ferry__tcp_reap(t);
	if (t->lfd >= 0)
		close(t->lfd);
	if (ep->fd >= 0)
		close(ep->fd);
	while (t->blk_all != NULL) {
		tcp_blk *b = t->blk_all;
		t->blk_all = b->next_all;
		ferry__free(b->mem);
		ferry__free(b);
	}
	while (t->txm_free != NULL) {
		tcp_txm *m = t->txm_free;
		t->txm_free = m->next;
		ferry__free(m);
	}
	ferry__free(t->scratch);
}

static int tcp_poll(ferry_ep *ep, int max)
{
	(void)max;
	tcp_ep *t = tcp_of(ep);
	int events = 0;
	t->polls++;
	bool direct = t->nconns <= TCP_DIRECT_CONNS;
	if (ep->sleeps || !direct || t->nconnecting > 0 || t->nepout > 0 ||
	    t->polls % TCP_EPOLL_EVERY == 0) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep->fd, evs, 64, 0);
		t->cnt.epoll_waits++;
		for (int i = 0; i < n; i++) {
			tcp_conn *c = evs[i].data.ptr;
			if (c == NULL) {
				events += ferry__tcp_accept_all(t);
				continue;
			}
			if (c->state == TCP_CONNECTING) {
				ferry__tcp_conn_connected(t, c);
				events++;
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				c->readable = true;
			if ((evs[i].events & EPOLLOUT) && c->txq != NULL)
				ep->tx_pending = true;
		}
		if (t->nconnecting > 0)
			ferry__tcp_check_timeouts(t);
	}
	/* A connection whose replies are backed up past backlog_pause is not
	 * read until they drain: the peer's sends then stall in TCP. */
	for (tcp_conn *c = t->conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->state != TCP_UP || (!direct && !c->readable))
			continue;
		if (t->backlog_pause != 0 && c->backlog > t->backlog_pause) {
			t->cnt.rx_paused++;
			continue;
		}
		c->readable = false;
		int r = ferry__tcp_conn_read(t, c);
		events += r > 0 ? r : 1 * (r < 0);
	}
	if (ep->tx_pending)
		ferry__tcp_flush(ep);
	ferry__tcp_reap(t);
	return events;
}

/* Control ---------------------------------------------------------------------*/
static void tcp_caps(ferry_ep *ep, ferry_caps *out)
{
	(void)ep;
	*out = (ferry_caps){.max_payload = UINT32_MAX,
	                    .inline_bytes = 0,
	                    .tx_slots = UINT32_MAX,
	                    .rx_batch = TCP_READS_PER_POLL};
}

static int tcp_ctl(ferry_ep *ep, int op, void *arg)
{
	tcp_ep *t = tcp_of(ep);
	if (op == FERRY_CTL_LOCAL_ADDR) {
		struct ferry_ctl_addr *a = arg;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = a->conn != NULL ? tcp_conn_of(a->conn)->fd : t->lfd;
		if (fd < 0)
			return -ENOTSUP;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
			return -errno;
		if (sl > FERRY_ADDR_BYTES)
			return -ERANGE;
		memset(&a->addr, 0, sizeof(a->addr));
		memcpy(a->addr.u.bytes, &ss, sl);
		a->addr.len = sl;
		return 0;
	}
	if (op == FERRY_CTL_BOUND_LOCATOR) {
		struct ferry_ctl_locator *l = arg;
		if (!t->listening)
			return -ENOTSUP;
		return ferry__inet_locator((struct sockaddr *)&t->local, l->out, l->len) <
		                       0
		               ? -ERANGE
		               : 0;
	}
	if (op == FERRY_CTL_COUNTERS) {
		struct ferry_ctl_counters *c = arg;
#define TCP_CNT(f) c->cb(c->arg, #f, t->cnt.f)
		TCP_CNT(connects);
		TCP_CNT(connect_failures);
		TCP_CNT(connect_timeouts);
		TCP_CNT(accepts);
		TCP_CNT(accept_errors);
		TCP_CNT(conns_up);
		TCP_CNT(conns_closed);
		TCP_CNT(conns_reset);
		TCP_CNT(sendmsg_calls);
		TCP_CNT(sendmsg_bytes);
		TCP_CNT(tx_partial);
		TCP_CNT(tx_blocked);
		TCP_CNT(recv_calls);
		TCP_CNT(recv_bytes);
		TCP_CNT(epoll_waits);
		TCP_CNT(rx_blocks);
		TCP_CNT(rx_paused);
		TCP_CNT(tx_user_bytes);
		TCP_CNT(tx_file_copy_bytes);
		TCP_CNT(sendfile_calls);
		TCP_CNT(sendfile_bytes);
		TCP_CNT(rx_user_bytes);
		TCP_CNT(rx_sink_copy_bytes);
		TCP_CNT(splice_calls);
		TCP_CNT(splice_bytes);
		TCP_CNT(splice_fallbacks);
		TCP_CNT(detach_copy_bytes);
		TCP_CNT(readahead_calls);
		TCP_CNT(send_calls);
		TCP_CNT(tx_inline);
		TCP_CNT(tx_file_read_errors);
#undef TCP_CNT
		c->cb(c->arg, "conns", t->nconns);
		uint64_t backlog = 0;
		for (tcp_conn *k = t->conns; k != NULL; k = k->next)
			backlog += k->backlog;
		c->cb(c->arg, "tx_backlog_bytes", backlog);
		return 0;
	}
	return -ENOTSUP;
}

const ferry_stream_ops ferry__tcp_stream_ops = {
        .connect = ferry__tcp_connect,
        .send_msg = ferry__tcp_send_msg,
        .flush = ferry__tcp_flush,
        .poll = tcp_poll,
        .release = ferry__tcp_release,
        .detach = ferry__tcp_detach,
        .conn_close = ferry__tcp_conn_close,
        .caps = tcp_caps,
        .ctl = tcp_ctl,
        .close = tcp_close,
};

const ferry_driver_ops ferry__tcp_driver = {
        .name = "tcp",
        .kind = FERRY_DRIVER_STREAM,
        .wrapper = false,
        .ep_size = FERRY_TCP_EP_BYTES,
        .key_tables = ferry__tcp_key_tables,
        .probe = NULL,
        .open = tcp_open,
        .stream = &ferry__tcp_stream_ops,
};
