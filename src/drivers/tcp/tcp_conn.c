/* tcp connections: non-blocking connect bounded by connect_timeout=,
 * accept4 on listeners, socket options (TCP_NODELAY, buffer sizes,
 * keepalive), registration in the endpoint's epoll set, and teardown.
 * A connection an upcall tore down is kept on a grave list until the op
 * that was using it returns (ferry__tcp_reap). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "drivers/kit/inet.h"
#include "tcp.h"

static int conn_epoll(tcp_ep *t, tcp_conn *c, int op, bool out)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
	if (epoll_ctl(t->base.fd, op, c->fd, &ev) != 0)
		return -errno;
	if (out != c->epout) {
		t->nepout += out ? 1 : (uint32_t)-1;
		c->epout = out;
	}
	return 0;
}

void ferry__tcp_conn_want_out(tcp_ep *t, tcp_conn *c, bool out)
{
	if (c->epout != out && c->state != TCP_DEAD)
		conn_epoll(t, c, EPOLL_CTL_MOD, out);
}

static tcp_conn *conn_new(tcp_ep *t, int fd, int state)
{
	tcp_conn *c = ferry__calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->base.ep = &t->base;
	c->fd = fd;
	c->state = (uint8_t)state;
	c->pipe_r = c->pipe_w = -1;
	if (conn_epoll(t, c, EPOLL_CTL_ADD, state == TCP_CONNECTING) != 0) {
		ferry__free(c);
		return NULL;
	}
	c->next = t->conns;
	if (t->conns != NULL)
		t->conns->prev = c;
	t->conns = c;
	t->nconns++;
	if (state == TCP_CONNECTING)
		t->nconnecting++;
	return c;
}

static void sock_opts(tcp_ep *t, int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (t->sndbuf != 0) {
		int v = (int)t->sndbuf;
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) != 0)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	}
	if (t->rcvbuf != 0) {
		int v = (int)t->rcvbuf;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	}
	if (t->keepalive_s != 0) {
		/* A silent peer (host gone, path cut) is reset after about
		 * (1 + TCP_KEEPALIVE_PROBES) x keepalive seconds of silence; the
		 * transport then sees the connection lost (FERRY_EPEERDEAD). */
		int v = (int)t->keepalive_s, n = TCP_KEEPALIVE_PROBES;
		unsigned ut =
		        (unsigned)(t->keepalive_s * (1 + TCP_KEEPALIVE_PROBES) * 1000u);
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &n, sizeof(n));
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
	}
}

/* Tear a connection down. With upcalls, queued messages get on_sent and
 * then conn_event(event, err) runs; the conn is freed afterwards. */
void ferry__tcp_conn_destroy(tcp_ep *t, tcp_conn *c, int event, int err, bool upcalls)
{
	const ferry_stream_upcalls *up = t->base.up;
	if (c->state == TCP_DEAD)
		return;
	if (c->state == TCP_CONNECTING)
		t->nconnecting--;
	c->state = TCP_DEAD;
	if (c->epout)
		t->nepout--;
	c->epout = false;
	epoll_ctl(t->base.fd, EPOLL_CTL_DEL, c->fd, NULL);
	while (c->txq != NULL) {
		tcp_txm *m = c->txq;
		c->txq = m->next;
		if (upcalls && up != NULL)
			up->on_sent(t->base.up_arg, &c->base, m->cookie);
		ferry__tcp_txm_put(t, m);
	}
	c->txq_tail = NULL;
	c->backlog = 0;
	if (t->scr_conn == c)
		t->scr_conn = NULL;
	if (event == FERRY_CONN_CLOSED)
		t->cnt.conns_closed++;
	else
		t->cnt.conns_reset++;
	if (upcalls && up != NULL)
		up->conn_event(t->base.up_arg, &c->base, event, err);
	close(c->fd);
	if (c->pipe_r >= 0) {
		close(c->pipe_r);
		close(c->pipe_w);
	}
	if (c->blk != NULL)
		ferry__tcp_blk_put(t, c->blk);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	t->nconns--;
	/* An upcall may have closed the connection whose read or write is in
	 * progress further up the stack: free it when the op returns. */
	c->grave_next = t->grave;
	t->grave = c;
}

void ferry__tcp_reap(tcp_ep *t)
{
	while (t->grave != NULL) {
		tcp_conn *c = t->grave;
		t->grave = c->grave_next;
		ferry__free(c);
	}
}

int ferry__tcp_connect(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out)
{
	tcp_ep *t = tcp_of(ep);
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = ferry__inet_resolve(peer, false, SOCK_STREAM, &ss, &sl, ep->errmsg,
	                             sizeof(ep->errmsg));
	if (rc != 0)
		return rc;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sock_opts(t, fd);
	t->cnt.connects++;
	bool now = connect(fd, (struct sockaddr *)&ss, sl) == 0;
	if (!now && errno != EINPROGRESS) {
		rc = -errno;
		snprintf(ep->errmsg, sizeof(ep->errmsg), "connect: %s", strerror(errno));
		t->cnt.connect_failures++;
		close(fd);
		return rc;
	}
	tcp_conn *c = conn_new(t, fd, now ? TCP_UP : TCP_CONNECTING);
	if (c == NULL) {
		close(fd);
		return -ENOMEM;
	}
	memcpy(c->base.peer.u.bytes, &ss, sl);
	c->base.peer.len = sl;
	c->connect_deadline_us = ferry__clock_us() + t->connect_timeout_us;
	if (!now && (ep->wake_at_us == 0 || c->connect_deadline_us < ep->wake_at_us))
		ep->wake_at_us = c->connect_deadline_us;
	*out = &c->base;
	if (now) {
		/* Reported from the next poll, like any other completion. */
		c->state = TCP_CONNECTING;
		t->nconnecting++;
		ferry__tcp_conn_want_out(t, c, true);
	}
	return 0;
}

/* The connection failed: report it (on_sent for what is queued, then
 * conn_event) and free it. */
void ferry__tcp_conn_fail(tcp_ep *t, tcp_conn *c, int err)
{
	ferry__tcp_conn_destroy(t, c, FERRY_CONN_RESET, err, true);
}

void ferry__tcp_conn_close(ferry_conn *fc)
{
	ferry__tcp_conn_destroy(tcp_of(fc->ep), tcp_conn_of(fc), FERRY_CONN_CLOSED, 0,
	                        true);
}

void ferry__tcp_conn_connected(tcp_ep *t, tcp_conn *c)
{
	int err = 0;
	socklen_t el = sizeof(err);
	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err == EINPROGRESS || err == EALREADY)
		return;
	t->nconnecting--;
	c->state = TCP_UP;
	if (err != 0) {
		t->cnt.connect_failures++;
		ferry__tcp_conn_fail(t, c, -err);
		return;
	}
	t->cnt.conns_up++;
	ferry__tcp_conn_want_out(t, c, c->txq != NULL);
	t->base.up->conn_event(t->base.up_arg, &c->base, FERRY_CONN_UP, 0);
	if (c->txq != NULL)
		t->base.tx_pending = true;
}

int ferry__tcp_accept_all(tcp_ep *t)
{
	int n = 0;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(t->lfd, (struct sockaddr *)&ss, &sl,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				t->cnt.accept_errors++;
			return n;
		}
		sock_opts(t, fd);
		tcp_conn *c = conn_new(t, fd, TCP_UP);
		if (c == NULL) {
			close(fd);
			t->cnt.accept_errors++;
			continue;
		}
		memcpy(c->base.peer.u.bytes, &ss,
		       sl < FERRY_ADDR_BYTES ? sl : FERRY_ADDR_BYTES);
		c->base.peer.len = sl;
		t->cnt.accepts++;
		t->cnt.conns_up++;
		t->base.up->conn_event(t->base.up_arg, &c->base, FERRY_CONN_UP, 0);
		n++;
	}
}

void ferry__tcp_check_timeouts(tcp_ep *t)
{
	uint64_t now = ferry__clock_us();
	uint64_t next = 0;
	for (tcp_conn *c = t->conns, *nx; c != NULL; c = nx) {
		nx = c->next;
		if (c->state != TCP_CONNECTING)
			continue;
		if (now >= c->connect_deadline_us) {
			t->cnt.connect_timeouts++;
			ferry__tcp_conn_fail(t, c, FERRY_ETIMEDOUT);
			continue;
		}
		if (next == 0 || c->connect_deadline_us < next)
			next = c->connect_deadline_us;
	}
	t->base.wake_at_us = next;
}
