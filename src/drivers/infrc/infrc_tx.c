/* infrc transmit: messages queued per connection, packed back to back
 * into registered send slots and posted as SEND with immediate data
 * (credits), or staged for the peer to RDMA-READ in pull mode; on_sent once
 * a message's last byte is posted (push) or acknowledged (pull). */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/io.h"
#include "drivers/kit/txpay.h"
#include "infrc.h"

static uint32_t slots_free(const infrc_conn *c)
{
	return INFRC_TX_SLOTS - (c->slot_head - c->slot_tail);
}
uint32_t ferry__infrc_ret_threshold(const infrc_conn *c)
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
bool ferry__infrc_deliver_ready(infrc_ep *e, infrc_conn *c)
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

int ferry__infrc_send_msg(ferry_conn *fc, const void *hdr, size_t hdr_len,
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
 * the queue as ready with its error, and ferry__infrc_deliver_ready reports it
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
		if (!ferry__infrc_deliver_ready(e, c))
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
	if (c->state != INFRC_C_UP ||
	    (c->done_pending == 0 && c->ret < ferry__infrc_ret_threshold(c)))
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

int ferry__infrc_flush(ferry_ep *ep)
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

int ferry__infrc_detach(ferry_conn *fc, void *cookie)
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

void ferry__infrc_conn_close(ferry_conn *fc)
{
	ferry__infrc_conn_destroy(infrc_of(fc->ep), infrc_conn_of(fc), FERRY_CONN_CLOSED,
	                          0, true);
}
