/* tcp: the kernel TCP stream driver (and, with zerocopy set, the engine of
 * the splice driver).
 *
 * Connections: non-blocking connect bounded by connect_timeout=, accept4 on
 * listeners, TCP_NODELAY, MSG_NOSIGNAL. Every socket is in one internal
 * epoll set whose fd is the endpoint's fd, so a blocking context sleeps on
 * all of them at once. In spin mode a few connections are read directly on
 * every poll (one recv each, no epoll_wait), and epoll is asked every 16th
 * poll for accepts and connect completions; more connections go through
 * epoll readiness.
 *
 * Send: messages queue per connection (header copied, payload borrowed);
 * flush gathers headers and memory pieces of successive messages into one
 * sendmsg (up to 64 iovecs) and resumes partial writes on the next flush or
 * when epoll reports the socket writable: the context never blocks. File
 * regions are read with pread into scratch memory and sent as bytes (tcp),
 * or go disk -> socket with sendfile (splice).
 *
 * Receive: reads fill pooled 256 KiB blocks; a header is collected (it may
 * straddle reads), the transport names the body's sink, and body bytes in a
 * block are appended to the sink buffer as loans of that block (refcounted,
 * zero-copy past the kernel's). A body bound for an fd is written from the
 * block (tcp), or moved socket -> pipe -> fd with splice (splice) when the
 * transport asked for exact header reads. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/io.h"
#include "buffer/seg.h"
#include "base/log.h"
#include "base/alloc.h"
#include "base/loc.h"
#include "drivers/kit/inet.h"
#include "drivers/kit/sink.h"
#include "drivers/kit/txpay.h"
#include "tcp.h"

#define TCP_BLK_BYTES (256u << 10)  /* receive block */
#define TCP_BLK_MIN_ROOM 4096u      /* a block with less room left is retired */
#define TCP_IOV_MAX 64              /* pieces gathered per sendmsg */
/* Bytes per sendmsg: a longer queue goes out in several calls in a row.
 * One call with all of it (megabytes with a few large replies queued) keeps
 * the socket locked while the kernel copies it, and the receiver's window
 * updates wait in the backlog meanwhile (our reading); 512 KiB calls measured
 * 7-17% more 1 MiB throughput on loopback (docs/drivers/tcp.md). */
#define TCP_SEND_CHUNK (512u << 10)
#define TCP_HDR_MAX 64              /* transport header bytes */
/* Messages up to this size (header + payload) are copied whole into their
 * queue entry: one contiguous piece leaves with send(), which is cheaper
 * than sendmsg's iovec import for a small message. */
#define TCP_INLINE_BYTES 1024
#define TCP_DIRECT_CONNS 4          /* read directly every poll up to this many */
#define TCP_EPOLL_EVERY 16          /* spin mode: epoll every Nth poll */
#define TCP_READS_PER_POLL 16       /* reads per connection per poll */
#define TCP_PIPE_BYTES (1u << 20)   /* splice pipe size asked for */
#define TCP_SCRATCH_BYTES (256u << 10) /* pread bounce for file regions */
#define TCP_BACKLOG_PAUSE_DEFAULT (16ull << 20)

const char *const ferry__tcp_keys[] = {"host",      "port",          "sndbuf",
                                       "rcvbuf",    "connect_timeout", "backlog_pause",
                                       "keepalive", "reuseport",     NULL};
#define TCP_KEEPALIVE_PROBES 3 /* unanswered probes before the kernel resets */

typedef struct tcp_blk {
	ferry_pkt pkt;           /* the loan unit (pkt.ep = endpoint) */
	struct tcp_blk *next_free;
	struct tcp_blk *next_all;
	uint32_t refs;           /* loans out, +1 while a connection reads into it */
	uint8_t *mem;
} tcp_blk;

typedef struct tcp_txm {
	struct tcp_txm *next;
	void *cookie;
	uint8_t hdr[TCP_INLINE_BYTES]; /* header, or the whole small message */
	uint32_t hdr_len, hdr_off;
	ferry__txpay pay;   /* the payload, borrowed or (detached) copied */
} tcp_txm;

enum { TCP_CONNECTING = 1, TCP_UP, TCP_DEAD };

typedef struct tcp_conn {
	ferry_conn base;
	struct tcp_conn *next, *prev;
	struct tcp_conn *grave_next; /* dead, freed at the end of the op */
	int fd;
	uint8_t state;
	bool epout;      /* EPOLLOUT registered */
	bool readable;   /* epoll reported input */
	uint64_t connect_deadline_us;
	/* receive */
	tcp_blk *blk;    /* block being read into: unconsumed bytes [rd, wr) */
	uint32_t rd, wr;
	uint8_t hdr[TCP_HDR_MAX];
	uint32_t hdr_have;
	bool in_body;
	ferry_body_sink sink;
	uint64_t body_left;
	int sink_err;
	bool sink_fallback; /* splice refused by the fd: copy the rest */
	int pipe_r, pipe_w;
	uint32_t pipe_fill;
	/* transmit */
	tcp_txm *txq, *txq_tail;
	uint64_t backlog; /* queued bytes not yet written */
} tcp_conn;

typedef struct tcp_counters {
	uint64_t connects, connect_failures, connect_timeouts, accepts, accept_errors;
	uint64_t conns_closed, conns_reset, conns_up;
	uint64_t sendmsg_calls, sendmsg_bytes, tx_partial, tx_blocked;
	uint64_t recv_calls, recv_bytes, epoll_waits;
	uint64_t rx_blocks, rx_paused;
	uint64_t tx_user_bytes, tx_file_copy_bytes, sendfile_calls, sendfile_bytes;
	uint64_t rx_user_bytes, rx_sink_copy_bytes, splice_calls, splice_bytes, splice_fallbacks;
	uint64_t detach_copy_bytes, readahead_calls, send_calls, tx_inline;
} tcp_counters;

typedef struct tcp_ep {
	ferry_ep base;
	bool zerocopy;   /* splice driver */
	bool listening;
	int lfd;         /* listening socket or -1 */
	struct sockaddr_storage local;
	uint64_t sndbuf, rcvbuf, connect_timeout_us, backlog_pause;
	uint64_t keepalive_s; /* TCP keepalive idle/interval, s; 0 = off */
	tcp_conn *conns;
	tcp_conn *grave; /* dead connections an upcall may still be inside */
	uint32_t nconns, nconnecting, nepout;
	uint32_t polls;
	tcp_blk *blk_free, *blk_all;
	uint32_t nblks;
	tcp_txm *txm_free;
	uint8_t *scratch; /* pread bounce (tcp file regions) ... */
	tcp_conn *scr_conn; /* ... holding [scr_pos, scr_len) of scr_fd at */
	int scr_fd;         /* file offset scr_foff, not yet sent */
	off_t scr_foff;
	size_t scr_pos, scr_len;
	tcp_counters cnt;
} tcp_ep;

static tcp_ep *tcp_of(ferry_ep *ep) { return ferry_container_of(ep, tcp_ep, base); }
static tcp_conn *conn_of(ferry_conn *c) { return ferry_container_of(c, tcp_conn, base); }

_Static_assert(sizeof(tcp_ep) <= FERRY_TCP_EP_BYTES, "FERRY_TCP_EP_BYTES too small");

/* Blocks --------------------------------------------------------------------*/
static tcp_blk *blk_get(tcp_ep *t)
{
	tcp_blk *b = t->blk_free;
	if (b != NULL) {
		t->blk_free = b->next_free;
	} else {
		b = ferry__calloc(1, sizeof(*b));
		if (b == NULL)
			return NULL;
		if ((b->mem = ferry__malloc(TCP_BLK_BYTES)) == NULL) {
			ferry__free(b);
			return NULL;
		}
		b->pkt.ep = &t->base;
		b->next_all = t->blk_all;
		t->blk_all = b;
		t->nblks++;
		t->cnt.rx_blocks++;
	}
	b->refs = 1;
	return b;
}

static void blk_put(tcp_ep *t, tcp_blk *b)
{
	if (--b->refs == 0) {
		b->next_free = t->blk_free;
		t->blk_free = b;
	}
}

static void tcp_release(ferry_ep *ep, ferry_pkt *pkt)
{
	blk_put(tcp_of(ep), ferry_container_of(pkt, tcp_blk, pkt));
}

/* Connections ---------------------------------------------------------------*/
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

static void conn_want_out(tcp_ep *t, tcp_conn *c, bool out)
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
		unsigned ut = (unsigned)(t->keepalive_s * (1 + TCP_KEEPALIVE_PROBES) * 1000u);
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &n, sizeof(n));
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
	}
}

static void txm_put(tcp_ep *t, tcp_txm *m)
{
	ferry__free(m->pay.own);
	m->pay.own = NULL;
	m->next = t->txm_free;
	t->txm_free = m;
}

/* Tear a connection down. With upcalls, queued messages get on_sent and
 * then conn_event(event, err) runs; the conn is freed afterwards. */
static void conn_destroy(tcp_ep *t, tcp_conn *c, int event, int err, bool upcalls)
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
		txm_put(t, m);
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
		blk_put(t, c->blk);
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

static void tcp_reap(tcp_ep *t)
{
	while (t->grave != NULL) {
		tcp_conn *c = t->grave;
		t->grave = c->grave_next;
		ferry__free(c);
	}
}

/* Open / close ---------------------------------------------------------------*/
int ferry__tcp_open_mode(ferry_ep *ep, const ferry_loc *loc, unsigned flags, bool zerocopy)
{
	tcp_ep *t = tcp_of(ep);
	char *msg = ep->errmsg;
	t->zerocopy = zerocopy;
	t->lfd = -1;
	t->listening = (flags & FERRY_EP_LISTEN) != 0;
	uint64_t ct_ms, reuseport;
	int rc;
	if ((rc = ferry__loc_u64(loc, "reuseport", 0, 1, 0, &reuseport, msg,
	                         sizeof(ep->errmsg))) != 0 ||
	    (rc = ferry__loc_u64(loc, "sndbuf", 0, 1u << 30, 0, &t->sndbuf, msg,
	                         sizeof(ep->errmsg))) != 0 ||
	    (rc = ferry__loc_u64(loc, "rcvbuf", 0, 1u << 30, 0, &t->rcvbuf, msg,
	                         sizeof(ep->errmsg))) != 0 ||
	    (rc = ferry__loc_u64(loc, "keepalive", 0, 32767, 0, &t->keepalive_s, msg,
	                         sizeof(ep->errmsg))) != 0 ||
	    (rc = ferry__loc_u64(loc, "connect_timeout", 1, 3600000, 5000, &ct_ms, msg,
	                         sizeof(ep->errmsg))) != 0 ||
	    (rc = ferry__loc_u64(loc, "backlog_pause", 0, UINT64_MAX / 2,
	                         TCP_BACKLOG_PAUSE_DEFAULT, &t->backlog_pause, msg,
	                         sizeof(ep->errmsg))) != 0)
		return rc;
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
	if (reuseport && setsockopt(t->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		return -errno;
	if (bind(t->lfd, (struct sockaddr *)&ss, sl) != 0 || listen(t->lfd, 1024) != 0) {
		snprintf(msg, sizeof(ep->errmsg), "bind/listen: %s", strerror(errno));
		return -errno;
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
		conn_destroy(t, t->conns, FERRY_CONN_CLOSED, 0, false);
	tcp_reap(t);
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

static int tcp_connect(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out)
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
		conn_want_out(t, c, true);
	}
	return 0;
}

/* Transmit --------------------------------------------------------------------*/
static int tcp_send_msg(ferry_conn *fc, const void *hdr, size_t hdr_len,
                        ferry_buf_iter *payload, void *cookie)
{
	tcp_conn *c = conn_of(fc);
	tcp_ep *t = tcp_of(fc->ep);
	if (c->state == TCP_DEAD)
		return FERRY_EPEERDEAD;
	if (hdr_len > TCP_HDR_MAX)
		return -EMSGSIZE;
	tcp_txm *m = t->txm_free;
	if (m != NULL)
		t->txm_free = m->next;
	else if ((m = ferry__malloc(sizeof(*m))) == NULL)
		return -ENOMEM;
	m->next = NULL;
	m->cookie = cookie;
	memcpy(m->hdr, hdr, hdr_len);
	m->hdr_len = (uint32_t)hdr_len;
	m->hdr_off = 0;
	if (payload != NULL)
		m->pay.it = *payload;
	else
		memset(&m->pay.it, 0, sizeof(m->pay.it));
	ferry_buf_seg seg;
	if (hdr_len + m->pay.it.left <= TCP_INLINE_BYTES) {
		/* Small: copy it whole (file regions with pread). */
		uint32_t at = (uint32_t)hdr_len;
		while (m->pay.it.left > 0 && ferry_buf_iter_next(&m->pay.it, &seg)) {
			int rc = ferry__seg_copy(m->hdr + at, &seg);
			if (rc != 0) {
				/* Nothing is queued yet: refuse, as a datagram send would. */
				m->next = t->txm_free;
				t->txm_free = m;
				return rc;
			}
			at += (uint32_t)seg.len;
		}
		m->hdr_len = at;
		t->cnt.tx_inline++;
	} else {
		/* File regions: start the disk read now, so the sendfile or
		 * pread at write time finds the pages cached instead of
		 * stalling the context on the disk. */
		ferry_buf_iter peek = m->pay.it;
		while (peek.left > 0 && ferry_buf_iter_next(&peek, &seg))
			if (seg.kind == FERRY_CHUNK_FILE) {
				posix_fadvise(seg.fd, seg.file_off, (off_t)seg.len,
				              POSIX_FADV_WILLNEED);
				t->cnt.readahead_calls++;
			}
	}
	m->pay.have_seg = false;
	m->pay.seg_off = 0;
	m->pay.own = NULL;
	m->pay.own_len = m->pay.own_off = 0;
	if (c->txq_tail != NULL)
		c->txq_tail->next = m;
	else
		c->txq = m;
	c->txq_tail = m;
	c->backlog += m->hdr_len + m->pay.it.left;
	t->base.tx_pending = true;
	return 0;
}

static bool txm_done(const tcp_txm *m)
{
	if (m->hdr_off < m->hdr_len)
		return false;
	if (m->pay.own != NULL)
		return m->pay.own_off == m->pay.own_len;
	return !m->pay.have_seg && m->pay.it.left == 0;
}

/* Load the current payload piece of m (false: none left). */
/* n bytes of m went out: advance. Returns bytes of n it used. */
static size_t txm_advance(tcp_txm *m, size_t n)
{
	size_t used = 0;
	size_t h = m->hdr_len - m->hdr_off;
	if (h > n)
		h = n;
	m->hdr_off += (uint32_t)h;
	used += h;
	if (m->pay.own != NULL) {
		size_t o = m->pay.own_len - m->pay.own_off;
		if (o > n - used)
			o = n - used;
		m->pay.own_off += o;
		return used + o;
	}
	while (used < n && ferry__txpay_seg(&m->pay)) {
		size_t k = m->pay.seg.len - m->pay.seg_off;
		if (k > n - used)
			k = n - used;
		m->pay.seg_off += k;
		used += k;
		if (m->pay.seg_off == m->pay.seg.len)
			m->pay.have_seg = false;
	}
	return used;
}

/* Messages at the head that are fully written leave the queue. */
static void conn_sent(tcp_ep *t, tcp_conn *c)
{
	while (c->txq != NULL && txm_done(c->txq)) {
		tcp_txm *m = c->txq;
		c->txq = m->next;
		if (c->txq == NULL)
			c->txq_tail = NULL;
		void *cookie = m->cookie;
		txm_put(t, m);
		t->base.up->on_sent(t->base.up_arg, &c->base, cookie);
	}
}

/* The connection failed: report it (on_sent for what is queued, then
 * conn_event) and free it. */
static void conn_fail(tcp_ep *t, tcp_conn *c, int err)
{
	conn_destroy(t, c, FERRY_CONN_RESET, err, true);
}

/* The head message's current piece is a file region: send it on its own. */
static ssize_t conn_write_file(tcp_ep *t, tcp_conn *c, tcp_txm *m)
{
	size_t len = m->pay.seg.len - m->pay.seg_off;
	off_t off = m->pay.seg.file_off + (off_t)m->pay.seg_off;
	if (t->zerocopy) {
		ssize_t n = sendfile(c->fd, m->pay.seg.fd, &off, len);
		t->cnt.sendfile_calls++;
		if (n > 0)
			t->cnt.sendfile_bytes += (uint64_t)n;
		if (n == 0 && len > 0) {
			errno = EIO; /* the file is shorter than the region */
			return -1;
		}
		return n;
	}
	if (t->scratch == NULL && (t->scratch = ferry__malloc(TCP_SCRATCH_BYTES)) == NULL)
		return -1;
	/* What an earlier pread left unsent (a full socket) is sent first:
	 * each file byte is read once. */
	if (t->scr_conn != c || t->scr_fd != m->pay.seg.fd || t->scr_foff != off ||
	    t->scr_pos == t->scr_len) {
		if (len > TCP_SCRATCH_BYTES)
			len = TCP_SCRATCH_BYTES;
		ssize_t r = pread(m->pay.seg.fd, t->scratch, len, off);
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		t->cnt.tx_file_copy_bytes += (uint64_t)r;
		t->scr_conn = c;
		t->scr_fd = m->pay.seg.fd;
		t->scr_foff = off;
		t->scr_pos = 0;
		t->scr_len = (size_t)r;
	}
	ssize_t n = send(c->fd, t->scratch + t->scr_pos, t->scr_len - t->scr_pos,
	                 MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n > 0) {
		t->cnt.tx_user_bytes += (uint64_t)n;
		t->scr_pos += (size_t)n;
		t->scr_foff += n;
	}
	return n;
}

/* The piece just gathered ends the call if it reaches TCP_SEND_CHUNK: it is
 * cut there, and true says stop gathering. */
static bool iov_capped(struct iovec *last, size_t *want)
{
	if (*want < TCP_SEND_CHUNK)
		return false;
	last->iov_len -= *want - TCP_SEND_CHUNK;
	*want = TCP_SEND_CHUNK;
	return true;
}

/* Write as much of the queue as the socket takes. Returns bytes written;
 * -1 when the connection failed (it is gone). */
static ssize_t conn_write(tcp_ep *t, tcp_conn *c)
{
	ssize_t total = 0;
	while (c->txq != NULL) {
		struct iovec iov[TCP_IOV_MAX];
		int n = 0;
		size_t want = 0;
		tcp_txm *head = c->txq;
		bool file_first = false;
		for (tcp_txm *m = head; m != NULL && n < TCP_IOV_MAX; m = m->next) {
			if (m->hdr_off < m->hdr_len) {
				iov[n++] = (struct iovec){m->hdr + m->hdr_off, m->hdr_len - m->hdr_off};
				want += m->hdr_len - m->hdr_off;
				if (iov_capped(&iov[n - 1], &want))
					break;
			}
			if (m->pay.own != NULL) {
				if (m->pay.own_off < m->pay.own_len && n < TCP_IOV_MAX) {
					iov[n++] = (struct iovec){m->pay.own + m->pay.own_off, m->pay.own_len - m->pay.own_off};
					want += m->pay.own_len - m->pay.own_off;
					if (iov_capped(&iov[n - 1], &want))
						break;
				}
				continue;
			}
			/* Peek through the payload without consuming it. */
			ferry_buf_iter it = m->pay.it;
			ferry_buf_seg seg = m->pay.seg;
			size_t off = m->pay.seg_off;
			bool have = m->pay.have_seg;
			bool stop = false;
			while (n < TCP_IOV_MAX) {
				if (!have) {
					if (it.left == 0 || !ferry_buf_iter_next(&it, &seg))
						break;
					off = 0;
				}
				have = false;
				if (seg.kind == FERRY_CHUNK_FILE) {
					stop = true;
					if (n == 0 && m == head) {
						ferry__txpay_seg(&m->pay);
						file_first = true;
					}
					break;
				}
				iov[n++] = (struct iovec){(void *)(seg.data + off), seg.len - off};
				want += seg.len - off;
				if ((stop = iov_capped(&iov[n - 1], &want)))
					break;
			}
			if (stop || n == TCP_IOV_MAX)
				break;
		}
		ssize_t w;
		if (file_first) {
			w = conn_write_file(t, c, head);
		} else if (n == 1) {
			w = send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
			t->cnt.send_calls++;
			if (w > 0) {
				t->cnt.sendmsg_bytes += (uint64_t)w;
				t->cnt.tx_user_bytes += (uint64_t)w;
			}
		} else {
			struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
			w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
			t->cnt.sendmsg_calls++;
			if (w > 0) {
				t->cnt.sendmsg_bytes += (uint64_t)w;
				t->cnt.tx_user_bytes += (uint64_t)w;
			}
		}
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				t->cnt.tx_blocked++;
				break;
			}
			conn_fail(t, c, errno == EPIPE || errno == ECONNRESET ? FERRY_EPEERDEAD : -errno);
			return -1;
		}
		if (w == 0)
			break; /* no progress: try again on the next flush */
		size_t left = (size_t)w;
		c->backlog -= (uint64_t)w;
		total += w;
		for (tcp_txm *m = head; m != NULL && left > 0; m = m->next)
			left -= txm_advance(m, left);
		conn_sent(t, c);
		if (c->state == TCP_DEAD)
			return total;
		if (!file_first && (size_t)w < want) {
			t->cnt.tx_partial++;
			break; /* the socket buffer is full */
		}
	}
	conn_want_out(t, c, c->txq != NULL);
	return total;
}

static int tcp_flush(ferry_ep *ep)
{
	tcp_ep *t = tcp_of(ep);
	int total = 0;
	bool more = false;
	for (tcp_conn *c = t->conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->state != TCP_UP || c->txq == NULL)
			continue;
		ssize_t w = conn_write(t, c);
		if (w > 0)
			total += w > INT32_MAX - total ? 0 : (int)w;
		if (w >= 0 && c->txq != NULL)
			more = true;
	}
	/* Anything left waits for writability: flush again next pass. */
	ep->tx_pending = more;
	tcp_reap(t);
	return total;
}

static int tcp_detach(ferry_conn *fc, void *cookie)
{
	tcp_conn *c = conn_of(fc);
	tcp_ep *t = tcp_of(fc->ep);
	for (tcp_txm *m = c->txq; m != NULL; m = m->next) {
		if (m->cookie != cookie || m->pay.own != NULL)
			continue;
		long copied = ferry__txpay_detach(&m->pay);
		if (copied < 0)
			return (int)copied;
		t->cnt.detach_copy_bytes += (uint64_t)copied;
		return 1;
	}
	return 0;
}

static void tcp_conn_close(ferry_conn *fc)
{
	conn_destroy(tcp_of(fc->ep), conn_of(fc), FERRY_CONN_CLOSED, 0, true);
}

/* Receive ---------------------------------------------------------------------*/
static void body_finish(tcp_ep *t, tcp_conn *c)
{
	c->in_body = false;
	c->hdr_have = 0;
	c->sink_fallback = false;
	t->base.up->on_body(t->base.up_arg, &c->base, c->hdr, &c->sink, c->sink_err);
}

/* Body bytes in the block go to the sink. */
static void body_take(tcp_ep *t, tcp_conn *c)
{
	uint32_t avail = c->wr - c->rd;
	uint32_t n = c->body_left < avail ? (uint32_t)c->body_left : avail;
	if (n == 0)
		return;
	uint8_t *p = c->blk->mem + c->rd;
	t->cnt.rx_user_bytes += n;
	if (c->sink_err == 0) {
		if (c->sink.buf != NULL) {
			c->blk->refs++;
			if (ferry_buf_append_pkt(c->sink.buf, &c->blk->pkt, p, n) != 0) {
				c->blk->refs--;
				c->sink_err = -ENOMEM;
			}
		} else if (c->sink.fd >= 0) {
			c->sink_err = ferry__sink_write(&c->sink, p, n, &t->cnt.rx_sink_copy_bytes);
		}
	}
	c->rd += n;
	c->body_left -= n;
}

/* Move body bytes socket -> pipe -> fd. Returns 1 progress, 0 nothing to
 * read, -1 connection failed (gone), -2 use the copy path from now on. */
static int body_splice(tcp_ep *t, tcp_conn *c)
{
	ferry_body_sink *k = &c->sink;
	if (c->pipe_r < 0) {
		int p[2];
		if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
			return -2;
		c->pipe_r = p[0];
		c->pipe_w = p[1];
		fcntl(c->pipe_w, F_SETPIPE_SZ, TCP_PIPE_BYTES);
	}
	int pipe_cap = fcntl(c->pipe_w, F_GETPIPE_SZ);
	if (pipe_cap <= 0)
		pipe_cap = 65536;
	bool progress = false;
	for (int i = 0; i < TCP_READS_PER_POLL && c->body_left > 0; i++) {
		uint64_t room = (uint64_t)pipe_cap - c->pipe_fill;
		uint64_t want = c->body_left - c->pipe_fill;
		if (want > room)
			want = room;
		if (want > 0) {
			ssize_t n = splice(c->fd, NULL, c->pipe_w, NULL, want,
			                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			t->cnt.splice_calls++;
			if (n == 0) {
				conn_fail(t, c, FERRY_EPEERDEAD);
				return -1;
			}
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				if (errno == EINVAL && c->pipe_fill == 0)
					return -2;
				conn_fail(t, c, -errno);
				return -1;
			}
			if (n > 0)
				c->pipe_fill += (uint32_t)n;
		}
		if (c->pipe_fill == 0)
			break;
		loff_t o = k->off;
		ssize_t m = splice(c->pipe_r, NULL, k->fd, k->off >= 0 ? &o : NULL,
		                   c->pipe_fill, SPLICE_F_MOVE);
		t->cnt.splice_calls++;
		if (m < 0 && errno == EINTR)
			continue;
		if (m <= 0) {
			/* The fd refuses splice (O_APPEND, a socket without
			 * support, ...): what sits in the pipe is copied out, the
			 * rest of the body takes the copy path. */
			t->cnt.splice_fallbacks++;
			c->sink_fallback = true;
			uint8_t buf[16384];
			while (c->pipe_fill > 0) {
				ssize_t r = read(c->pipe_r, buf, sizeof(buf));
				if (r <= 0)
					break;
				c->pipe_fill -= (uint32_t)r;
				c->body_left -= (uint64_t)r;
				t->cnt.rx_user_bytes += (uint64_t)r;
				if (c->sink_err == 0)
					c->sink_err = ferry__sink_write(&c->sink, buf, (size_t)r, &t->cnt.rx_sink_copy_bytes);
			}
			return 1;
		}
		if (k->off >= 0)
			k->off = o;
		c->pipe_fill -= (uint32_t)m;
		c->body_left -= (uint64_t)m;
		t->cnt.splice_bytes += (uint64_t)m;
		progress = true;
	}
	return progress ? 1 : 0;
}

/* Room to read into: a fresh block when the current one is spent. */
static int conn_room(tcp_ep *t, tcp_conn *c)
{
	if (c->blk != NULL && c->rd == c->wr && c->blk->refs == 1)
		c->rd = c->wr = 0; /* nobody else holds it: reuse in place */
	if (c->blk == NULL || TCP_BLK_BYTES - c->wr < TCP_BLK_MIN_ROOM) {
		/* Every byte is consumed before a read (headers are copied out,
		 * bodies taken), so nothing moves. */
		if (c->blk != NULL)
			blk_put(t, c->blk);
		c->blk = blk_get(t);
		c->rd = c->wr = 0;
		if (c->blk == NULL)
			return -ENOMEM;
	}
	return 0;
}

/* Read and parse what this connection has. Returns messages completed, or
 * -1 when the connection went away. */
static int conn_read(tcp_ep *t, tcp_conn *c)
{
	const ferry_stream_upcalls *up = t->base.up;
	size_t hl = up->hdr_len;
	int done = 0;
	for (int reads = 0;;) {
		/* Consume what the block holds. */
		while (c->rd < c->wr || (c->in_body && c->body_left == 0)) {
			if (!c->in_body) {
				uint32_t k = (uint32_t)(hl - c->hdr_have);
				if (k > c->wr - c->rd)
					k = c->wr - c->rd;
				memcpy(c->hdr + c->hdr_have, c->blk->mem + c->rd, k);
				c->hdr_have += k;
				c->rd += k;
				if (c->hdr_have < hl)
					break;
				goto header;
			}
			body_take(t, c);
			if (c->body_left == 0) {
				body_finish(t, c);
				done++;
				if (c->state == TCP_DEAD)
					return done; /* closed by the upcall */
			}
		}
		if (c->state != TCP_UP)
			return -1;
		if (c->in_body && c->sink.fd >= 0 && t->zerocopy && !c->sink_fallback &&
		    c->sink_err == 0) {
			int r = body_splice(t, c);
			if (r == -1)
				return -1;
			if (r == -2) {
				t->cnt.splice_fallbacks++;
				c->sink_fallback = true;
				continue;
			}
			if (c->body_left == 0) {
				body_finish(t, c);
				done++;
				if (c->state == TCP_DEAD)
					return done;
				continue;
			}
			if (r == 0)
				return done;
			continue;
		}
		if (reads++ >= TCP_READS_PER_POLL)
			return done;
		/* Read. With exact headers asked for, never past the header or
		 * the body in progress. */
		if (conn_room(t, c) != 0)
			return done;
		size_t room = TCP_BLK_BYTES - c->wr;
		if (c->base.hdr_exact) {
			uint64_t lim = c->in_body ? c->body_left : hl - c->hdr_have;
			if (lim < room)
				room = (size_t)lim;
		}
		ssize_t n = recv(c->fd, c->blk->mem + c->wr, room, MSG_DONTWAIT);
		t->cnt.recv_calls++;
		if (n > 0) {
			c->wr += (uint32_t)n;
			t->cnt.recv_bytes += (uint64_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return done;
		if (n == 0 && !c->in_body && c->hdr_have == 0) {
			conn_destroy(t, c, FERRY_CONN_CLOSED, FERRY_EPEERDEAD, true);
			return -1;
		}
		conn_fail(t, c, n == 0 || errno == ECONNRESET ? FERRY_EPEERDEAD : -errno);
		return -1;
	header:
		c->sink = (ferry_body_sink){.fd = -1, .off = -1};
		c->sink_err = 0;
		c->sink_fallback = false;
		int rc = up->on_header(t->base.up_arg, &c->base, c->hdr, &c->sink);
		if (c->state == TCP_DEAD)
			return done;
		if (rc != 0) {
			conn_fail(t, c, rc);
			return -1;
		}
		if (c->sink.buf == NULL && c->sink.fd < 0)
			c->sink.discard = true;
		c->in_body = true;
		c->body_left = c->sink.len;
	}
}

static void conn_connected(tcp_ep *t, tcp_conn *c)
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
		conn_fail(t, c, -err);
		return;
	}
	t->cnt.conns_up++;
	conn_want_out(t, c, c->txq != NULL);
	t->base.up->conn_event(t->base.up_arg, &c->base, FERRY_CONN_UP, 0);
	if (c->txq != NULL)
		t->base.tx_pending = true;
}

static int tcp_accept_all(tcp_ep *t)
{
	int n = 0;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(t->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
		memcpy(c->base.peer.u.bytes, &ss, sl < FERRY_ADDR_BYTES ? sl : FERRY_ADDR_BYTES);
		c->base.peer.len = sl;
		t->cnt.accepts++;
		t->cnt.conns_up++;
		t->base.up->conn_event(t->base.up_arg, &c->base, FERRY_CONN_UP, 0);
		n++;
	}
}

static void tcp_check_timeouts(tcp_ep *t)
{
	uint64_t now = ferry__clock_us();
	uint64_t next = 0;
	for (tcp_conn *c = t->conns, *nx; c != NULL; c = nx) {
		nx = c->next;
		if (c->state != TCP_CONNECTING)
			continue;
		if (now >= c->connect_deadline_us) {
			t->cnt.connect_timeouts++;
			conn_fail(t, c, FERRY_ETIMEDOUT);
			continue;
		}
		if (next == 0 || c->connect_deadline_us < next)
			next = c->connect_deadline_us;
	}
	t->base.wake_at_us = next;
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
				events += tcp_accept_all(t);
				continue;
			}
			if (c->state == TCP_CONNECTING) {
				conn_connected(t, c);
				events++;
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				c->readable = true;
			if ((evs[i].events & EPOLLOUT) && c->txq != NULL)
				ep->tx_pending = true;
		}
		if (t->nconnecting > 0)
			tcp_check_timeouts(t);
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
		int r = conn_read(t, c);
		events += r > 0 ? r : 1 * (r < 0);
	}
	if (ep->tx_pending)
		tcp_flush(ep);
	tcp_reap(t);
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
		int fd = a->conn != NULL ? conn_of(a->conn)->fd : t->lfd;
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
		return ferry__inet_locator((struct sockaddr *)&t->local, l->out, l->len) < 0
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
	.connect = tcp_connect,
	.send_msg = tcp_send_msg,
	.flush = tcp_flush,
	.poll = tcp_poll,
	.release = tcp_release,
	.detach = tcp_detach,
	.conn_close = tcp_conn_close,
	.caps = tcp_caps,
	.ctl = tcp_ctl,
	.close = tcp_close,
};

const ferry_driver_ops ferry__tcp_driver = {
	.name = "tcp",
	.kind = FERRY_DRIVER_STREAM,
	.wrapper = false,
	.ep_size = FERRY_TCP_EP_BYTES,
	.keys = ferry__tcp_keys,
	.probe = NULL,
	.open = tcp_open,
	.stream = &ferry__tcp_stream_ops,
};
