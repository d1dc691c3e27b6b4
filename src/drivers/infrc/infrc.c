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
 * whole. docs/drivers/infrc.md has the wire format and the reasoning. */
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

static uint32_t slots_free(const infrc_conn *c)
{
	return INFRC_TX_SLOTS - (c->slot_head - c->slot_tail);
}
static uint32_t ret_threshold(const infrc_conn *c)
{
	return c->grant / 4 ? c->grant / 4 : 1;
}

/* Messages ------------------------------------------------------------------*/
void ferry__infrc_txm_put(infrc_ep *e, infrc_txm *m)
{
	ferry__free(m->pay.own);
	m->pay.own = NULL;
	m->next = e->txm_free;
	e->txm_free = m;
}

static bool txm_done(const infrc_txm *m)
{
	if (m->hdr_off < m->hdr_len || m->err != 0)
		return false;
	if (m->pay.own != NULL)
		return m->pay.own_off == m->pay.own_len;
	return !m->pay.have_seg && m->pay.it.left == 0;
}

/* Copy up to room payload bytes of m into dst (file regions with pread).
 * Returns bytes copied; *err = -EIO when a file region could not be read. */
static size_t txm_copy_payload(infrc_ep *e, infrc_txm *m, uint8_t *dst, size_t room,
                               int *err)
{
	size_t at = 0;
	if (m->pay.own != NULL) {
		size_t k = m->pay.own_len - m->pay.own_off;
		if (k > room)
			k = room;
		memcpy(dst, m->pay.own + m->pay.own_off, k);
		m->pay.own_off += k;
		e->cnt.tx_copy_bytes += k;
		return k;
	}
	while (at < room && ferry__txpay_seg(&m->pay)) {
		size_t k = m->pay.seg.len - m->pay.seg_off;
		if (k > room - at)
			k = room - at;
		if (m->pay.seg.kind == FERRY_CHUNK_FILE) {
			int rc = ferry__pread_full(m->pay.seg.fd, dst + at, k,
			                           m->pay.seg.file_off +
			                                   (off_t)m->pay.seg_off);
			if (rc != 0) {
				*err = rc; /* -EIO: the file shrank under the region */
				return at;
			}
			e->cnt.tx_file_copy_bytes += k;
		} else {
			memcpy(dst + at, m->pay.seg.data + m->pay.seg_off, k);
			e->cnt.tx_copy_bytes += k;
		}
		m->pay.seg_off += k;
		at += k;
		if (m->pay.seg_off == m->pay.seg.len)
			m->pay.have_seg = false;
	}
	return at;
}

/* Pack the rest of m's header and payload into dst (room bytes). */
static size_t txm_pack(infrc_ep *e, infrc_txm *m, uint8_t *dst, size_t room, int *err)
{
	size_t h = m->hdr_len - m->hdr_off;
	if (h > room)
		h = room;
	memcpy(dst, m->hdr + m->hdr_off, h);
	m->hdr_off += (uint32_t)h;
	if (m->hdr_off < m->hdr_len)
		return h;
	return h + txm_copy_payload(e, m, dst + h, room - h, err);
}

/* Large and not started: goes by descriptor and RDMA READ. */
static bool txm_pull(const infrc_ep *e, const infrc_txm *m)
{
	return e->large == INFRC_LARGE_PULL && m->hdr_off == 0 && m->len > 0 &&
	       m->hdr_len + m->len >= e->pull_min;
}

static void txq_pop_to_sent(infrc_conn *c, infrc_txm *m, bool ready)
{
	c->txq = m->next;
	if (c->txq == NULL)
		c->txq_tail = NULL;
	m->next = NULL;
	m->ready = ready;
	if (c->sentq_tail != NULL)
		c->sentq_tail->next = m;
	else
		c->sentq = m;
	c->sentq_tail = m;
}

/* on_sent for the ready messages at the head of sentq. false: the
 * connection died in an upcall. */
static bool deliver_ready(infrc_ep *e, infrc_conn *c)
{
	while (c->sentq != NULL && c->sentq->ready) {
		infrc_txm *m = c->sentq;
		if (m->err != 0 && !m->detach_failed &&
		    e->base.up->on_send_failed != NULL) {
			/* Dropped before any of it was posted (txm_drop). */
			int err = m->err;
			m->err = 0; /* told once, even if the upcall re-enters */
			m->detach_failed = true;
			e->base.up->on_send_failed(e->base.up_arg, &c->base, m->cookie,
			                           err, false);
			if (c->state != INFRC_C_UP)
				return false;
			if (c->sentq != m)
				continue;
		}
		c->sentq = m->next;
		if (c->sentq == NULL)
			c->sentq_tail = NULL;
		void *cookie = m->cookie;
		if (m->stage != NULL)
			ferry__infrc_region_put(e, m->stage);
		m->stage = NULL;
		ferry__infrc_txm_put(e, m);
		e->base.up->on_sent(e->base.up_arg, &c->base, cookie);
		if (c->state != INFRC_C_UP)
			return false;
	}
	return true;
}

static int infrc_send_msg(ferry_conn *fc, const void *hdr, size_t hdr_len,
                          ferry_buf_iter *payload, void *cookie)
{
	infrc_conn *c = infrc_conn_of(fc);
	infrc_ep *e = infrc_of(fc->ep);
	if (c->state == INFRC_C_DEAD)
		return FERRY_EPEERDEAD;
	if (hdr_len > INFRC_HDR_MAX)
		return -EMSGSIZE;
	infrc_txm *m = e->txm_free;
	if (m != NULL)
		e->txm_free = m->next;
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
	m->len = m->pay.it.left;
	m->pay.have_seg = false;
	m->pay.seg_off = 0;
	m->pay.own = NULL;
	m->pay.own_len = m->pay.own_off = 0;
	m->stage = NULL;
	m->ready = false;
	m->err = 0;
	m->detach_failed = false;
	if (c->txq_tail != NULL)
		c->txq_tail->next = m;
	else
		c->txq = m;
	c->txq_tail = m;
	c->backlog += m->hdr_len + m->len;
	e->base.tx_pending = true;
	return 0;
}

/* Transmit ------------------------------------------------------------------*/
/* Flags and bookkeeping of one SEND about to be posted as WR seq. */
static void wr_finish(infrc_ep *e, infrc_conn *c, struct ibv_send_wr *wr, uint32_t seq,
                      bool uses_slot)
{
	bool sig = c->unsig_run + 1 >= INFRC_SIGNAL_EVERY || slots_free(c) == 0 ||
	           INFRC_SQ_DEPTH - (seq + 1 - c->done_seq) < INFRC_SIGNAL_EVERY;
	if (sig) {
		wr->send_flags |= IBV_SEND_SIGNALED;
		c->unsig_run = 0;
		e->cnt.signaled++;
	} else {
		c->unsig_run++;
		e->cnt.unsignaled++;
	}
	wr->wr_id = ((uint64_t)c->id << 32) | seq;
	c->wr_slot[seq % INFRC_SQ_DEPTH] = uses_slot;
}

/* Immediate data for a SEND of type t: returns credits and DONEs owed. */
static uint32_t imm_take(infrc_conn *c, int t)
{
	uint32_t done = c->done_pending > INFRC_IMM_DONE_MAX ? INFRC_IMM_DONE_MAX
	                                                     : c->done_pending;
	uint32_t cred = c->ret > INFRC_IMM_CRED_MAX ? INFRC_IMM_CRED_MAX : c->ret;
	c->done_pending -= done;
	c->ret -= cred;
	return htobe32(INFRC_IMM(t, done, cred));
}

/* chunk_build: nothing built, the head failed (txm_drop follows). */
#define INFRC_CHUNK_NONE (-2)

/* 0 when m may start (or has started), else the error it fails with:
 * asked each time its first bytes may be packed. */
static int txm_ready(const infrc_txm *m)
{
	if (m->err != 0)
		return m->err;
	if (m->hdr_off > 0 || m->len == 0 || m->pay.own != NULL)
		return 0;
	return ferry__txpay_check_files(&m->pay);
}

/* The head m cannot be sent whole (err). Nothing of it posted: it leaves
 * the queue as ready with its error, and deliver_ready reports it
 * (on_send_failed, on_sent) in order. Part of it posted: the connection
 * resets (after on_send_failed, unless its detach failed: the call has
 * ended). false: the connection is gone. */
static bool txm_drop(infrc_ep *e, infrc_conn *c, infrc_txm *m, int err)
{
	if (!m->detach_failed && err != -ENOMEM)
		e->cnt.tx_file_read_errors++;
	if (m->hdr_off > 0) {
		if (!m->detach_failed && e->base.up->on_send_failed != NULL)
			e->base.up->on_send_failed(e->base.up_arg, &c->base, m->cookie,
			                           err, true);
		ferry__infrc_conn_fail(e, c, err);
		return false;
	}
	m->err = err;
	c->backlog -= m->hdr_len + m->len;
	txq_pop_to_sent(c, m, true);
	return true;
}

/* Fill the next send slot from the queue head: a descriptor for a pulled
 * message, or the packed bytes of as many pushed messages as fit. Returns
 * the chunk length, or -1 when the connection failed. */
static ssize_t chunk_build(infrc_ep *e, infrc_conn *c, uint8_t *dst, int *type)
{
	infrc_txm *m = c->txq;
	int err = 0;
	if (txm_pull(e, m)) {
		infrc_region *r = ferry__infrc_region_get(e, m->len);
		if (r != NULL) {
			size_t got = txm_copy_payload(e, m, r->mem, m->len, &err);
			if (err != 0 || got != m->len) {
				/* Nothing of it is posted: it is dropped (conn_write). */
				ferry__infrc_region_put(e, r);
				m->err = err != 0 ? err : -EIO;
				return INFRC_CHUNK_NONE;
			}
			memcpy(dst, m->hdr, m->hdr_len);
			uint8_t *d = dst + m->hdr_len;
			uint64_t v64 = htobe64((uint64_t)(uintptr_t)r->mem);
			memcpy(d, &v64, 8);
			uint32_t v32 = htobe32(r->mr->rkey);
			memcpy(d + 8, &v32, 4);
			memset(d + 12, 0, 4);
			v64 = htobe64(m->len);
			memcpy(d + 16, &v64, 8);
			m->hdr_off = m->hdr_len;
			m->stage = r;
			c->backlog -= m->hdr_len + m->len;
			e->cnt.tx_user_bytes += m->hdr_len + m->len;
			e->cnt.pull_msgs++;
			e->cnt.pull_bytes += m->len;
			txq_pop_to_sent(c, m, false);
			*type = INFRC_T_DESC;
			return (ssize_t)(m->hdr_len + INFRC_DESC_BYTES);
		}
		/* No registered memory for it: it is pushed instead. */
	}
	size_t len = 0;
	*type = INFRC_T_DATA;
	while (len < c->slot_bytes && (m = c->txq) != NULL) {
		if (len > 0 && (txm_pull(e, m) || txm_ready(m) != 0))
			break; /* a message that cannot go fails as the head */
		bool fresh = m->hdr_off == 0;
		size_t k = txm_pack(e, m, dst + len, c->slot_bytes - len, &err);
		if (err != 0 && fresh) {
			/* Its bytes in this slot are not posted: dropped. */
			m->err = err;
			m->hdr_off = 0;
			return len > 0 ? (ssize_t)len : INFRC_CHUNK_NONE;
		}
		if (err != 0) {
			/* Part of it is out: the peer is owed bytes that do
			 * not exist. */
			e->cnt.tx_file_read_errors++;
			if (e->base.up->on_send_failed != NULL)
				e->base.up->on_send_failed(e->base.up_arg, &c->base,
				                           m->cookie, err, true);
			ferry__infrc_conn_fail(e, c, err);
			return -1;
		}
		len += k;
		c->backlog -= k;
		e->cnt.tx_user_bytes += k;
		if (!txm_done(m))
			break; /* the slot is full */
		txq_pop_to_sent(c, m, true);
	}
	return (ssize_t)len;
}

/* Post what the queue holds, as far as credits, slots and the send queue
 * allow. Returns bytes posted, or -1 when the connection failed. */
static ssize_t conn_write(infrc_ep *e, infrc_conn *c)
{
	ssize_t total = 0;
	while (c->state == INFRC_C_UP && c->txq != NULL) {
		struct ibv_send_wr wr[INFRC_POST_BATCH], *bad = NULL;
		struct ibv_sge sge[INFRC_POST_BATCH];
		int n = 0;
		bool blocked = false;
		while (n < INFRC_POST_BATCH && c->txq != NULL) {
			if (c->credits < INFRC_CREDIT_DATA_MIN) {
				e->cnt.credits_waits++;
				blocked = true;
				break;
			}
			if (slots_free(c) == 0 ||
			    ferry__infrc_sq_used(c) + (uint32_t)n + 1 >
			            INFRC_SQ_DEPTH - INFRC_SQ_RESERVE) {
				blocked = true;
				break;
			}
			int ferr = txm_ready(c->txq);
			if (ferr != 0) {
				if (!txm_drop(e, c, c->txq, ferr))
					return -1;
				continue;
			}
			uint8_t *dst =
			        c->tx_mem +
			        (size_t)(c->slot_head % INFRC_TX_SLOTS) * e->bufsize;
			int type;
			ssize_t len = chunk_build(e, c, dst, &type);
			if (len == INFRC_CHUNK_NONE)
				continue; /* the head failed: dropped next round */
			if (len < 0)
				return -1;
			memset(&wr[n], 0, sizeof(wr[n]));
			sge[n] = (struct ibv_sge){.addr = (uintptr_t)dst,
			                          .length = (uint32_t)len,
			                          .lkey = c->tx_mr->lkey};
			wr[n].sg_list = &sge[n];
			wr[n].num_sge = len > 0 ? 1 : 0;
			wr[n].opcode = IBV_WR_SEND_WITH_IMM;
			wr[n].imm_data = imm_take(c, type);
			/* An inline send is copied only when the chain is posted:
			 * its slot stays taken like any other until completion. */
			if ((uint32_t)len <= e->max_inline) {
				wr[n].send_flags = IBV_SEND_INLINE;
				e->cnt.send_inline++;
			}
			c->slot_head++;
			wr_finish(e, c, &wr[n], c->post_seq + (uint32_t)n, true);
			if (n > 0)
				wr[n - 1].next = &wr[n];
			c->credits--;
			total += len;
			n++;
		}
		if (n > 0) {
			int rc = ibv_post_send(c->qp, wr, &bad);
			e->cnt.post_calls++;
			if (rc != 0) {
				ferry__infrc_conn_fail(e, c, -rc);
				return -1;
			}
			c->post_seq += (uint32_t)n;
			e->cnt.sends += (uint64_t)n;
		}
		/* Also after drops alone: their upcalls are due. */
		if (!deliver_ready(e, c))
			return total;
		if (blocked) {
			e->cnt.tx_blocked++;
			break;
		}
		if (n == 0)
			break; /* the queue emptied by drops */
	}
	return total;
}

/* An empty SEND carrying credits and DONEs, when they are owed and nothing
 * else is going out to carry them. */
static void conn_ctrl(infrc_ep *e, infrc_conn *c)
{
	if (c->state != INFRC_C_UP || (c->done_pending == 0 && c->ret < ret_threshold(c)))
		return;
	if (c->credits < 1 || ferry__infrc_sq_used(c) + 2 > INFRC_SQ_DEPTH)
		return; /* retried when credits or completions come in */
	struct ibv_send_wr wr = {.opcode = IBV_WR_SEND_WITH_IMM,
	                         .num_sge = 0,
	                         .send_flags = IBV_SEND_INLINE};
	struct ibv_send_wr *bad = NULL;
	wr.imm_data = imm_take(c, INFRC_T_CTRL);
	wr_finish(e, c, &wr, c->post_seq, false);
	int rc = ibv_post_send(c->qp, &wr, &bad);
	e->cnt.post_calls++;
	if (rc != 0) {
		ferry__infrc_conn_fail(e, c, -rc);
		return;
	}
	c->post_seq++;
	c->credits--;
	e->cnt.sends++;
	e->cnt.ctrl_msgs++;
}

static int infrc_flush(ferry_ep *ep)
{
	infrc_ep *e = infrc_of(ep);
	int total = 0;
	ep->tx_pending = false; /* completions set it again when they free room */
	for (infrc_conn *c = e->conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->state != INFRC_C_UP)
			continue;
		if (c->txq != NULL) {
			ssize_t w = conn_write(e, c);
			if (w > 0)
				total += w > INT32_MAX - total ? 0 : (int)w;
		}
		conn_ctrl(e, c);
	}
	ferry__infrc_reap(e);
	return total;
}

static int infrc_detach(ferry_conn *fc, void *cookie)
{
	infrc_conn *c = infrc_conn_of(fc);
	infrc_ep *e = infrc_of(fc->ep);
	for (infrc_txm *m = c->txq; m != NULL; m = m->next) {
		if (m->cookie != cookie || m->pay.own != NULL || m->err != 0)
			continue;
		long copied = ferry__txpay_detach(&m->pay);
		if (copied < 0) {
			/* Never sent as anything but what it was: dropped, or
			 * the connection reset, at the next flush. */
			m->err = (int)copied;
			m->detach_failed = true;
			e->cnt.tx_file_read_errors += copied != -ENOMEM;
			e->base.tx_pending = true;
			return (int)copied;
		}
		e->cnt.detach_copy_bytes += (uint64_t)copied;
		return 1;
	}
	return 0;
}

static void infrc_conn_close(ferry_conn *fc)
{
	ferry__infrc_conn_destroy(infrc_of(fc->ep), infrc_conn_of(fc), FERRY_CONN_CLOSED,
	                          0, true);
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
	if (c->txq != NULL || c->ret >= ret_threshold(c))
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
		deliver_ready(e, c);
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
	if (c->txq != NULL || c->done_pending > 0 || c->ret >= ret_threshold(c))
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
		infrc_flush(ep);
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
				infrc_flush(ep);
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
        .send_msg = infrc_send_msg,
        .flush = infrc_flush,
        .poll = infrc_poll,
        .release = ferry__infrc_release,
        .detach = infrc_detach,
        .conn_close = infrc_conn_close,
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
