/* infrc receive: chunks from the shared receive queue reassembled into
 * messages — headers to on_header, bodies loaned zero-copy into the sink's
 * buffer (or written to its fd, or dropped), pulled bodies RDMA-READ into
 * registered landing memory (docs/drivers/infrc.md). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include "base/clock.h"
#include "base/log.h"
#include "base/alloc.h"
#include "base/loc.h"
#include "drivers/kit/inet.h"
#include "drivers/kit/sink.h"
#include "infrc.h"

/* Receive -------------------------------------------------------------------*/
void ferry__infrc_release(ferry_ep *ep, ferry_pkt *pkt)
{
	infrc_ep *e = infrc_of(ep);
	infrc_loan *l = ferry_container_of(pkt, infrc_loan, pkt);
	switch (l->kind) {
	case INFRC_LOAN_RXB:
		e->rx_loaned--;
		ferry__infrc_rxb_put(e, (infrc_rxb *)l);
		break;
	case INFRC_LOAN_BLK:
		ferry__infrc_blk_put(e, (infrc_blk *)l);
		break;
	default:
		ferry__infrc_region_put(e, (infrc_region *)l);
		break;
	}
}

/* n body bytes at p, inside receive buffer b, go to the sink. */
static void body_take(infrc_ep *e, infrc_conn *c, infrc_rxb *b, uint8_t *p, uint32_t n)
{
	e->cnt.rx_user_bytes += n;
	if (c->sink_err != 0)
		return;
	if (c->sink.buf != NULL) {
		if (e->rx_loaned < e->rxbufs / 2) {
			b->refs++;
			if (ferry_buf_append_pkt(c->sink.buf, &b->l.pkt, p, n) != 0) {
				b->refs--;
				c->sink_err = -ENOMEM;
				return;
			}
			e->rx_loaned++;
			e->cnt.rx_loans++;
			return;
		}
		/* Half the pool is loaned out: copy, so the SRQ never runs dry
		 * while a receiver holds big bodies. */
		while (n > 0) {
			uint32_t want =
			        n < INFRC_COPY_BLK_BYTES ? n : INFRC_COPY_BLK_BYTES;
			infrc_blk *k =
			        ferry__infrc_blk_room(e, want < 4096 ? want : 4096);
			if (k == NULL) {
				c->sink_err = -ENOMEM;
				return;
			}
			uint32_t room = INFRC_COPY_BLK_BYTES - e->blk_off;
			uint32_t t = n < room ? n : room;
			memcpy(k->mem + e->blk_off, p, t);
			k->refs++;
			if (ferry_buf_append_pkt(c->sink.buf, &k->l.pkt,
			                         k->mem + e->blk_off, t) != 0) {
				k->refs--;
				c->sink_err = -ENOMEM;
				return;
			}
			e->blk_off += t;
			e->cnt.rx_copy_bytes += t;
			p += t;
			n -= t;
		}
	} else if (c->sink.fd >= 0) {
		c->sink_err =
		        ferry__sink_write(&c->sink, p, n, &e->cnt.rx_sink_copy_bytes);
	}
}

static void body_finish(infrc_ep *e, infrc_conn *c)
{
	c->in_body = false;
	c->hdr_have = 0;
	e->base.up->on_body(e->base.up_arg, &c->base, c->hdr, &c->sink, c->sink_err);
}

/* The header is complete: ask where the body goes. false: the connection
 * is gone (closed by the upcall or reset for a refused header). */
static bool header_done(infrc_ep *e, infrc_conn *c)
{
	c->sink = (ferry_body_sink){.fd = -1, .off = -1};
	c->sink_err = 0;
	int rc = e->base.up->on_header(e->base.up_arg, &c->base, c->hdr, &c->sink);
	if (c->state != INFRC_C_UP)
		return false;
	if (rc != 0) {
		ferry__infrc_conn_fail(e, c, rc);
		return false;
	}
	if (c->sink.buf == NULL && c->sink.fd < 0)
		c->sink.discard = true;
	c->in_body = true;
	c->body_left = c->sink.len;
	return true;
}

/* The READ of a pulled body completed. */
void ferry__infrc_read_done(infrc_ep *e, infrc_conn *c)
{
	infrc_region *r = c->reading;
	c->reading = NULL;
	uint64_t len = c->body_left;
	e->cnt.rdma_reads++;
	e->cnt.rdma_read_bytes += len;
	e->cnt.rx_user_bytes += len;
	if (c->sink_err == 0) {
		if (c->sink.buf != NULL) {
			r->refs++;
			if (ferry_buf_append_pkt(c->sink.buf, &r->l.pkt, r->mem, len) !=
			    0) {
				r->refs--;
				c->sink_err = -ENOMEM;
			}
		} else if (c->sink.fd >= 0) {
			c->sink_err = ferry__sink_write(&c->sink, r->mem, len,
			                                &e->cnt.rx_sink_copy_bytes);
		}
	}
	ferry__infrc_region_put(e, r);
	c->body_left = 0;
	c->done_pending++;
	e->base.tx_pending = true; /* the DONE goes out with the next flush */
	body_finish(e, c);
	/* Chunks that arrived behind the descriptor. */
	while (c->state == INFRC_C_UP && c->reading == NULL && c->held != NULL) {
		infrc_rxb *b = c->held;
		c->held = b->next;
		if (c->held == NULL)
			c->held_tail = NULL;
		ferry__infrc_rx_chunk(e, c, b);
	}
}

/* A descriptor: header, then {addr, rkey, len} of the body to READ. */
static void rx_desc(infrc_ep *e, infrc_conn *c, const uint8_t *p, uint32_t len)
{
	size_t hl = e->base.up->hdr_len;
	if (c->in_body || c->hdr_have != 0 || len != hl + INFRC_DESC_BYTES) {
		ferry__infrc_conn_fail(e, c, FERRY_EPROTO);
		return;
	}
	memcpy(c->hdr, p, hl);
	uint64_t addr, blen;
	uint32_t rkey;
	memcpy(&addr, p + hl, 8);
	memcpy(&rkey, p + hl + 8, 4);
	memcpy(&blen, p + hl + 16, 8);
	addr = be64toh(addr);
	rkey = be32toh(rkey);
	blen = be64toh(blen);
	c->hdr_have = (uint32_t)hl;
	if (!header_done(e, c))
		return;
	if (c->sink.len != blen) {
		ferry__infrc_conn_fail(e, c, FERRY_EPROTO);
		return;
	}
	infrc_region *r = NULL;
	if (!c->sink.discard && blen > 0) {
		r = ferry__infrc_region_get(e, blen);
		if (r == NULL)
			c->sink_err = -ENOMEM;
	}
	if (r == NULL) {
		/* Nothing to read into: acknowledge at once, the sender frees. */
		c->body_left = 0;
		c->done_pending++;
		e->base.tx_pending = true;
		body_finish(e, c);
		return;
	}
	struct ibv_sge sge = {
	        .addr = (uintptr_t)r->mem, .length = (uint32_t)blen, .lkey = r->mr->lkey};
	struct ibv_send_wr wr = {.sg_list = &sge,
	                         .num_sge = 1,
	                         .opcode = IBV_WR_RDMA_READ,
	                         .send_flags = IBV_SEND_SIGNALED};
	struct ibv_send_wr *bad = NULL;
	wr.wr.rdma.remote_addr = addr;
	wr.wr.rdma.rkey = rkey;
	wr.wr_id = ((uint64_t)c->id << 32) | c->post_seq;
	c->wr_slot[c->post_seq % INFRC_SQ_DEPTH] = 0;
	c->unsig_run = 0;
	int rc = blen > UINT32_MAX || ferry__infrc_sq_used(c) >= INFRC_SQ_DEPTH
	                 ? ENOSPC
	                 : ibv_post_send(c->qp, &wr, &bad);
	e->cnt.post_calls++;
	if (rc != 0) {
		ferry__infrc_region_put(e, r);
		ferry__infrc_conn_fail(e, c, -rc);
		return;
	}
	c->post_seq++;
	e->cnt.signaled++;
	c->reading = r;
}

/* One received chunk of c's stream (its reference is consumed). */
void ferry__infrc_rx_chunk(infrc_ep *e, infrc_conn *c, infrc_rxb *b)
{
	uint32_t type = b->imm >> 28;
	uint8_t *p = b->l.pkt.data;
	uint32_t len = b->len, off = 0;
	size_t hl = e->base.up->hdr_len;
	if (type == INFRC_T_DESC) {
		rx_desc(e, c, p, len);
		ferry__infrc_rxb_put(e, b);
		return;
	}
	if (type != INFRC_T_DATA) {
		ferry__infrc_rxb_put(e, b);
		ferry__infrc_conn_fail(e, c, FERRY_EPROTO);
		return;
	}
	while (c->state == INFRC_C_UP &&
	       (off < len || (c->in_body && c->body_left == 0))) {
		if (!c->in_body) {
			uint32_t k = (uint32_t)(hl - c->hdr_have);
			if (k > len - off)
				k = len - off;
			memcpy(c->hdr + c->hdr_have, p + off, k);
			c->hdr_have += k;
			off += k;
			if (c->hdr_have < hl)
				break;
			if (!header_done(e, c))
				break;
			continue;
		}
		uint32_t k =
		        c->body_left < len - off ? (uint32_t)c->body_left : len - off;
		if (k > 0)
			body_take(e, c, b, p + off, k);
		off += k;
		c->body_left -= k;
		if (c->body_left == 0)
			body_finish(e, c);
	}
	ferry__infrc_rxb_put(e, b);
}
