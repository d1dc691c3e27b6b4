/* infrc connections: the TCP side channel that sets an RC QP pair up
 * (hello exchange, INIT -> RTR -> RTS) and then stays open as the
 * connection's liveness signal, and the teardown every path ends in.
 *
 * Client: non-blocking TCP connect -> send HELLO -> read the server's
 * HELLO -> RTR/RTS -> send READY -> UP. Server: accept -> read HELLO ->
 * RTR/RTS -> send HELLO -> UP on READY (or on the first completion from
 * the client's QP, which can overtake READY). The whole setup is bounded
 * by connect_timeout. After UP, EOF on the socket is CLOSED and an error
 * RESET; bytes on it are ignored. */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/alloc.h"
#include "base/loc.h"
#include "drivers/kit/inet.h"
#include "infrc.h"

enum { HELLO_KIND_HELLO = 1, HELLO_KIND_READY = 2 };
#define HELLO_FLAG_ROCE 0x1u
#define HELLO_FLAG_PULL 0x2u
#define INFRC_BACKLOG   1024

typedef struct hello {
	uint8_t kind;
	uint16_t hdr_len;
	uint32_t qpn, psn, credits, bufsize, pull_min;
	uint16_t lid;
	uint8_t mtu, flags;
	uint8_t gid[16];
} hello;

/* Wire form (64 bytes, big-endian): u32 magic "FRYC", u8 version, u8 kind,
 * u16 hdr_len, u32 qpn, u32 psn, u16 lid, u8 mtu (enum ibv_mtu), u8 flags
 * (1 RoCE, 2 pull), u8 gid[16], u32 credits, u32 bufsize, u32 pull_min,
 * zero to the end. */
static void hello_pack(uint8_t *p, const hello *h)
{
	memset(p, 0, INFRC_HELLO_BYTES);
	uint32_t v32 = htobe32(INFRC_HELLO_MAGIC);
	memcpy(p, &v32, 4);
	p[4] = INFRC_HELLO_VERSION;
	p[5] = h->kind;
	uint16_t v16 = htobe16(h->hdr_len);
	memcpy(p + 6, &v16, 2);
	v32 = htobe32(h->qpn);
	memcpy(p + 8, &v32, 4);
	v32 = htobe32(h->psn);
	memcpy(p + 12, &v32, 4);
	v16 = htobe16(h->lid);
	memcpy(p + 16, &v16, 2);
	p[18] = h->mtu;
	p[19] = h->flags;
	memcpy(p + 20, h->gid, 16);
	v32 = htobe32(h->credits);
	memcpy(p + 36, &v32, 4);
	v32 = htobe32(h->bufsize);
	memcpy(p + 40, &v32, 4);
	v32 = htobe32(h->pull_min);
	memcpy(p + 44, &v32, 4);
}

static int hello_unpack(const uint8_t *p, hello *h)
{
	uint32_t v32;
	uint16_t v16;
	memcpy(&v32, p, 4);
	if (be32toh(v32) != INFRC_HELLO_MAGIC || p[4] != INFRC_HELLO_VERSION)
		return -1;
	h->kind = p[5];
	memcpy(&v16, p + 6, 2);
	h->hdr_len = be16toh(v16);
	memcpy(&v32, p + 8, 4);
	h->qpn = be32toh(v32) & 0xffffffu;
	memcpy(&v32, p + 12, 4);
	h->psn = be32toh(v32) & 0xffffffu;
	memcpy(&v16, p + 16, 2);
	h->lid = be16toh(v16);
	h->mtu = p[18];
	h->flags = p[19];
	memcpy(h->gid, p + 20, 16);
	memcpy(&v32, p + 36, 4);
	h->credits = be32toh(v32);
	memcpy(&v32, p + 40, 4);
	h->bufsize = be32toh(v32);
	memcpy(&v32, p + 44, 4);
	h->pull_min = be32toh(v32);
	return 0;
}

/* Lookup ------------------------------------------------------------------*/
static uint32_t qpn_bucket(uint32_t qpn)
{
	return (qpn * 2654435761u) >> 24;
}

infrc_conn *ferry__infrc_conn_by_qpn(infrc_ep *e, uint32_t qpn)
{
	for (infrc_conn *c = e->qpn_hash[qpn_bucket(qpn)]; c != NULL; c = c->hnext)
		if (c->qpn == qpn)
			return c;
	return NULL;
}

static void hash_del(infrc_ep *e, infrc_conn *c)
{
	if (!c->in_hash)
		return;
	for (infrc_conn **pp = &e->qpn_hash[qpn_bucket(c->qpn)]; *pp != NULL;
	     pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	c->in_hash = false;
}

/* Connections ---------------------------------------------------------------*/
static int conn_epoll(infrc_ep *e, infrc_conn *c, int op, bool out)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
	return epoll_ctl(e->base.fd, op, c->fd, &ev) == 0 ? 0 : -errno;
}

static uint32_t random_psn(infrc_ep *e, infrc_conn *c)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint32_t x =
	        (uint32_t)ts.tv_nsec ^ (c->id * 2654435761u) ^ (uint32_t)(uintptr_t)e;
	return x & 0xffffffu;
}

/* The QP (in INIT) and its registered send ring. */
static int conn_qp_open(infrc_ep *e, infrc_conn *c)
{
	size_t txb = (size_t)INFRC_TX_SLOTS * e->bufsize;
	void *m = mmap(NULL, txb, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
	               0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	c->tx_mem = m;
	c->tx_mr = ibv_reg_mr(e->dev.pd, c->tx_mem, txb, IBV_ACCESS_LOCAL_WRITE);
	if (c->tx_mr == NULL)
		return errno ? -errno : -ENOMEM;
	e->cnt.mr_registrations++;
	struct ibv_qp_init_attr ia = {
	        .send_cq = e->cq,
	        .recv_cq = e->cq,
	        .srq = e->srq,
	        .cap = {.max_send_wr = INFRC_SQ_DEPTH,
	                .max_recv_wr = 1,
	                .max_send_sge = 1,
	                .max_recv_sge = 1,
	                .max_inline_data = INFRC_INLINE_WANT},
	        .qp_type = IBV_QPT_RC,
	        .sq_sig_all = 0,
	};
	c->qp = ibv_create_qp(e->dev.pd, &ia);
	if (c->qp == NULL) {
		ia.cap.max_inline_data = 0; /* a device without inline sends */
		c->qp = ibv_create_qp(e->dev.pd, &ia);
	}
	if (c->qp == NULL)
		return errno ? -errno : -ENOMEM;
	if (e->max_inline == UINT32_MAX || ia.cap.max_inline_data < e->max_inline)
		e->max_inline = ia.cap.max_inline_data;
	c->qpn = c->qp->qp_num;
	c->psn = random_psn(e, c);
	struct ibv_qp_attr a = {
	        .qp_state = IBV_QPS_INIT,
	        .pkey_index = 0,
	        .port_num = e->dev.port,
	        .qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
	                           IBV_ACCESS_REMOTE_WRITE,
	};
	int rc = ibv_modify_qp(c->qp, &a,
	                       IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
	                               IBV_QP_ACCESS_FLAGS);
	if (rc != 0)
		return -rc;
	c->hnext = e->qpn_hash[qpn_bucket(c->qpn)];
	e->qpn_hash[qpn_bucket(c->qpn)] = c;
	c->in_hash = true;
	return 0;
}

/* RTR then RTS towards the peer of hello h. */
static int conn_qp_connect(infrc_ep *e, infrc_conn *c, const hello *h)
{
	ferry_ib_addr pa;
	memset(&pa, 0, sizeof(pa));
	memcpy(pa.gid, h->gid, 16);
	pa.qpn = h->qpn;
	pa.lid = h->lid;
	pa.roce = (h->flags & HELLO_FLAG_ROCE) != 0;
	uint8_t rd = e->dev.dattr.max_qp_rd_atom < INFRC_RD_ATOMIC_MAX
	                     ? (uint8_t)e->dev.dattr.max_qp_rd_atom
	                     : INFRC_RD_ATOMIC_MAX;
	uint8_t ird = e->dev.dattr.max_qp_init_rd_atom < INFRC_RD_ATOMIC_MAX
	                      ? (uint8_t)e->dev.dattr.max_qp_init_rd_atom
	                      : INFRC_RD_ATOMIC_MAX;
	struct ibv_qp_attr a = {
	        .qp_state = IBV_QPS_RTR,
	        .path_mtu =
	                h->mtu < (uint8_t)e->dev.mtu ? (enum ibv_mtu)h->mtu : e->dev.mtu,
	        .dest_qp_num = h->qpn,
	        .rq_psn = h->psn,
	        .max_dest_rd_atomic = rd,
	        .min_rnr_timer = INFRC_QP_MIN_RNR_TIMER,
	};
	ferry__ib_ah_attr(&e->dev, &pa, &a.ah_attr);
	int rc = ibv_modify_qp(c->qp, &a,
	                       IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
	                               IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
	                               IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
	if (rc != 0)
		return -rc;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = INFRC_QP_TIMEOUT;
	a.retry_cnt = INFRC_QP_RETRY;
	a.rnr_retry = INFRC_QP_RNR_RETRY;
	a.sq_psn = c->psn;
	a.max_rd_atomic = ird;
	rc = ibv_modify_qp(c->qp, &a,
	                   IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
	                           IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
	                           IBV_QP_MAX_QP_RD_ATOMIC);
	if (rc != 0)
		return -rc;
	/* Chunks never exceed the peer's receive buffers nor our slots. */
	c->slot_bytes = h->bufsize < e->bufsize ? h->bufsize : e->bufsize;
	c->credits = h->credits;
	c->peer_pull = (h->flags & HELLO_FLAG_PULL) != 0;
	return 0;
}

static infrc_conn *conn_new(infrc_ep *e, int fd, int state, bool accepted)
{
	infrc_conn *c = ferry__calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->base.ep = &e->base;
	c->fd = fd;
	c->state = (uint8_t)state;
	c->accepted = accepted;
	c->reported = !accepted;
	c->id = ++e->next_id;
	c->grant = e->grant;
	if (conn_epoll(e, c, EPOLL_CTL_ADD, state == INFRC_C_CONNECTING) != 0) {
		ferry__free(c);
		return NULL;
	}
	c->next = e->conns;
	if (e->conns != NULL)
		e->conns->prev = c;
	e->conns = c;
	e->nconns++;
	e->nsetup++;
	c->deadline_us = ferry__clock_us() + e->connect_timeout_us;
	if (e->base.wake_at_us == 0 || c->deadline_us < e->base.wake_at_us)
		e->base.wake_at_us = c->deadline_us;
	return c;
}

static void sock_opts(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void deliver_sent(infrc_ep *e, infrc_conn *c, infrc_txm *m, bool upcalls)
{
	const ferry_stream_upcalls *up = e->base.up;
	void *cookie = m->cookie;
	if (m->stage != NULL)
		ferry__infrc_region_put(e, m->stage);
	m->stage = NULL;
	ferry__infrc_txm_put(e, m);
	if (upcalls && up != NULL)
		up->on_sent(e->base.up_arg, &c->base, cookie);
}

void ferry__infrc_conn_destroy(infrc_ep *e, infrc_conn *c, int event, int err,
                               bool upcalls)
{
	if (c->state == INFRC_C_DEAD)
		return;
	if (c->state != INFRC_C_UP)
		e->nsetup--;
	c->state = INFRC_C_DEAD;
	upcalls = upcalls && c->reported;
	epoll_ctl(e->base.fd, EPOLL_CTL_DEL, c->fd, NULL);
	hash_del(e, c);
	/* The QP first: no DMA into or out of what is freed below. */
	if (c->qp != NULL)
		(void)ibv_destroy_qp(c->qp);
	c->qp = NULL;
	while (c->sentq != NULL) {
		infrc_txm *m = c->sentq;
		c->sentq = m->next;
		deliver_sent(e, c, m, upcalls);
	}
	c->sentq_tail = NULL;
	while (c->txq != NULL) {
		infrc_txm *m = c->txq;
		c->txq = m->next;
		deliver_sent(e, c, m, upcalls);
	}
	c->txq_tail = NULL;
	c->backlog = 0;
	while (c->held != NULL) {
		infrc_rxb *b = c->held;
		c->held = b->next;
		ferry__infrc_rxb_put(e, b);
	}
	c->held_tail = NULL;
	if (c->reading != NULL)
		ferry__infrc_region_put(e, c->reading);
	c->reading = NULL;
	if (c->reported) {
		if (event == FERRY_CONN_CLOSED)
			e->cnt.conns_closed++;
		else
			e->cnt.conns_reset++;
	}
	if (upcalls && e->base.up != NULL)
		e->base.up->conn_event(e->base.up_arg, &c->base, event, err);
	close(c->fd);
	c->fd = -1;
	if (c->tx_mr != NULL) {
		(void)ibv_dereg_mr(c->tx_mr);
		e->cnt.mr_deregistrations++;
	}
	c->tx_mr = NULL;
	if (c->tx_mem != NULL)
		munmap(c->tx_mem, (size_t)INFRC_TX_SLOTS * e->bufsize);
	c->tx_mem = NULL;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		e->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	e->nconns--;
	/* An upcall may have closed the connection whose input or output is
	 * being handled further up the stack: freed when the op returns. */
	c->grave_next = e->grave;
	e->grave = c;
}

void ferry__infrc_reap(infrc_ep *e)
{
	while (e->grave != NULL) {
		infrc_conn *c = e->grave;
		e->grave = c->grave_next;
		ferry__free(c);
	}
}

static void conn_fail(infrc_ep *e, infrc_conn *c, int err)
{
	if (c->state != INFRC_C_UP && c->accepted)
		e->cnt.setup_errors++;
	ferry__infrc_conn_destroy(e, c, FERRY_CONN_RESET, err, true);
}

void ferry__infrc_conn_up(infrc_ep *e, infrc_conn *c)
{
	if (c->state == INFRC_C_UP || c->state == INFRC_C_DEAD)
		return;
	c->state = INFRC_C_UP;
	c->reported = true;
	e->nsetup--;
	e->cnt.conns_up++;
	e->base.up->conn_event(e->base.up_arg, &c->base, FERRY_CONN_UP, 0);
	if (c->state == INFRC_C_UP && c->txq != NULL)
		e->base.tx_pending = true;
}

/* Listen / connect / accept -------------------------------------------------*/
int ferry__infrc_listen(infrc_ep *e, const ferry_loc *loc)
{
	char *msg = e->base.errmsg;
	size_t msz = sizeof(e->base.errmsg);
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = ferry__inet_resolve(loc, true, SOCK_STREAM, &ss, &sl, msg, msz);
	uint64_t reuseport = 0;
	if (rc == 0)
		rc = ferry__loc_u64(loc, "reuseport", 0, 1, 0, &reuseport, msg, msz);
	if (rc != 0)
		return rc;
	e->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (e->lfd < 0)
		return -errno;
	int one = 1;
	setsockopt(e->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* reuseport=1: setup listeners of several contexts (a server group)
	 * share the port; a connection and its QP live where it was accepted. */
	if (reuseport &&
	    setsockopt(e->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
		rc = -errno;
		snprintf(msg, msz, "reuseport: %s", strerror(errno));
		return rc;
	}
	if (bind(e->lfd, (struct sockaddr *)&ss, sl) != 0 ||
	    listen(e->lfd, INFRC_BACKLOG) != 0) {
		rc = -errno;
		snprintf(msg, msz, "bind/listen (host/port): %s", strerror(errno));
		return rc;
	}
	socklen_t ll = sizeof(e->local);
	if (getsockname(e->lfd, (struct sockaddr *)&e->local, &ll) != 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &e->lfd};
	if (epoll_ctl(e->base.fd, EPOLL_CTL_ADD, e->lfd, &ev) != 0)
		return -errno;
	return 0;
}

int ferry__infrc_connect(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out)
{
	infrc_ep *e = infrc_of(ep);
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = ferry__inet_resolve(peer, false, SOCK_STREAM, &ss, &sl, ep->errmsg,
	                             sizeof(ep->errmsg));
	if (rc != 0)
		return rc;
	if (e->nconns >= e->conns_max) {
		snprintf(ep->errmsg, sizeof(ep->errmsg),
		         "%u connections: the CQ is sized for no more", e->nconns);
		return -EMFILE;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sock_opts(fd);
	e->cnt.connects++;
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
		rc = -errno;
		snprintf(ep->errmsg, sizeof(ep->errmsg), "connect: %s", strerror(errno));
		e->cnt.connect_failures++;
		close(fd);
		return rc;
	}
	infrc_conn *c = conn_new(e, fd, INFRC_C_CONNECTING, false);
	if (c == NULL) {
		close(fd);
		return -ENOMEM;
	}
	memcpy(c->base.peer.u.bytes, &ss, sl);
	c->base.peer.len = sl;
	if ((rc = conn_qp_open(e, c)) != 0) {
		snprintf(ep->errmsg, sizeof(ep->errmsg), "creating the RC QP: %s",
		         strerror(-rc));
		ferry__infrc_conn_destroy(e, c, FERRY_CONN_RESET, rc, false);
		ferry__infrc_reap(e);
		return rc;
	}
	*out = &c->base;
	return 0;
}

int ferry__infrc_accept_all(infrc_ep *e)
{
	int n = 0;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(e->lfd, (struct sockaddr *)&ss, &sl,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				e->cnt.accept_errors++;
			return n;
		}
		if (e->nconns >= e->conns_max) {
			e->cnt.accept_errors++; /* the peer sees EOF: RESET */
			close(fd);
			continue;
		}
		sock_opts(fd);
		infrc_conn *c = conn_new(e, fd, INFRC_C_HELLO, true);
		if (c == NULL) {
			close(fd);
			e->cnt.accept_errors++;
			continue;
		}
		memcpy(c->base.peer.u.bytes, &ss,
		       sl < FERRY_ADDR_BYTES ? sl : FERRY_ADDR_BYTES);
		c->base.peer.len = sl;
		e->cnt.accepts++;
		if (conn_qp_open(e, c) != 0) {
			e->cnt.accept_errors++;
			ferry__infrc_conn_destroy(e, c, FERRY_CONN_RESET, -EIO, false);
			continue;
		}
		n++;
	}
}

/* Socket events ---------------------------------------------------------------*/
static int hello_send(infrc_ep *e, infrc_conn *c, int kind)
{
	hello h = {
	        .kind = (uint8_t)kind,
	        .hdr_len = (uint16_t)e->base.up->hdr_len,
	        .qpn = c->qpn,
	        .psn = c->psn,
	        .credits = c->grant,
	        .bufsize = e->bufsize,
	        .pull_min = e->pull_min,
	        .lid = e->dev.lid,
	        .mtu = (uint8_t)e->dev.mtu,
	        .flags = (uint8_t)((e->dev.roce ? HELLO_FLAG_ROCE : 0) |
	                           (e->large == INFRC_LARGE_PULL ? HELLO_FLAG_PULL : 0)),
	};
	memcpy(h.gid, e->dev.gid.raw, 16);
	uint8_t p[INFRC_HELLO_BYTES];
	hello_pack(p, &h);
	/* 64 bytes into a fresh socket's empty buffer: all or an error. */
	ssize_t w = send(c->fd, p, sizeof(p), MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w == (ssize_t)sizeof(p))
		return 0;
	return w < 0 ? -errno : -EIO;
}

/* Read what is left of a 64-byte setup message: 1 complete, 0 not yet,
 * negative: EOF (FERRY_EPEERDEAD) or -errno. */
static int hello_read(infrc_conn *c)
{
	while (c->hhave < INFRC_HELLO_BYTES) {
		ssize_t n = recv(c->fd, c->hbuf + c->hhave, INFRC_HELLO_BYTES - c->hhave,
		                 MSG_DONTWAIT);
		if (n > 0) {
			c->hhave += (uint32_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n == 0 || errno == ECONNRESET)
			return FERRY_EPEERDEAD;
		return -errno;
	}
	c->hhave = 0;
	return 1;
}

static void on_hello(infrc_ep *e, infrc_conn *c)
{
	hello h;
	if (hello_unpack(c->hbuf, &h) != 0 || h.kind != HELLO_KIND_HELLO) {
		conn_fail(e, c, FERRY_EPROTO);
		return;
	}
	if (h.hdr_len != e->base.up->hdr_len || h.bufsize < INFRC_BUF_MIN ||
	    h.credits < 2) {
		conn_fail(e, c, FERRY_EPROTO); /* the transports or limits disagree */
		return;
	}
	int rc = conn_qp_connect(e, c, &h);
	if (rc == 0)
		rc = hello_send(e, c, c->accepted ? HELLO_KIND_HELLO : HELLO_KIND_READY);
	if (rc != 0) {
		conn_fail(e, c, rc);
		return;
	}
	if (c->accepted)
		c->state = INFRC_C_READY_WAIT;
	else
		ferry__infrc_conn_up(e, c);
}

void ferry__infrc_sock_event(infrc_ep *e, infrc_conn *c, uint32_t events)
{
	if (c->state == INFRC_C_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err == EINPROGRESS || err == EALREADY)
			return;
		if (err == 0 && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (err != 0) {
			e->cnt.connect_failures++;
			conn_fail(e, c, -err);
			return;
		}
		int rc = hello_send(e, c, HELLO_KIND_HELLO);
		if (rc == 0)
			rc = conn_epoll(e, c, EPOLL_CTL_MOD, false);
		if (rc != 0) {
			e->cnt.connect_failures++;
			conn_fail(e, c, rc);
			return;
		}
		c->state = INFRC_C_HELLO;
		events = EPOLLIN; /* the answer may already be there */
	}
	if (c->state == INFRC_C_HELLO || c->state == INFRC_C_READY_WAIT) {
		int rc = hello_read(c);
		if (rc < 0) {
			if (!c->accepted)
				e->cnt.connect_failures++;
			conn_fail(e, c, rc);
			return;
		}
		if (rc == 0)
			return;
		if (c->state == INFRC_C_HELLO) {
			on_hello(e, c);
			return;
		}
		hello h;
		if (hello_unpack(c->hbuf, &h) != 0 || h.kind != HELLO_KIND_READY) {
			conn_fail(e, c, FERRY_EPROTO);
			return;
		}
		ferry__infrc_conn_up(e, c);
		if (c->state != INFRC_C_UP)
			return;
	}
	if (c->state != INFRC_C_UP)
		return;
	/* Liveness: the peer says nothing on the socket after setup. */
	for (int i = 0; i < 4; i++) {
		uint8_t junk[64];
		ssize_t n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n == 0) {
			ferry__infrc_conn_destroy(e, c, FERRY_CONN_CLOSED,
			                          FERRY_EPEERDEAD, true);
			return;
		}
		conn_fail(e, c, errno == ECONNRESET ? FERRY_EPEERDEAD : -errno);
		return;
	}
}

void ferry__infrc_check_timeouts(infrc_ep *e)
{
	uint64_t now = ferry__clock_us();
	uint64_t next = 0;
	for (infrc_conn *c = e->conns, *nx; c != NULL; c = nx) {
		nx = c->next;
		if (c->state == INFRC_C_UP || c->state == INFRC_C_DEAD)
			continue;
		if (now >= c->deadline_us) {
			if (!c->accepted)
				e->cnt.connect_timeouts++;
			conn_fail(e, c, FERRY_ETIMEDOUT);
			continue;
		}
		if (next == 0 || c->deadline_us < next)
			next = c->deadline_us;
	}
	e->base.wake_at_us = next;
}
