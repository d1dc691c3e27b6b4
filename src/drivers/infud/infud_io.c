/* infud transmit and receive: the registered tx ring posted as one linked
 * work-request list per flush with selective signaling and inline sends, and
 * the registered receive pool loaned up zero-copy and reposted in batches
 * (docs/drivers/infud.md). */
#include "buffer/seg.h"
#include "infud.h"

size_t ferry__infud_round_up(size_t n)
{
	return (n + INFUD_SLOT_ALIGN_BYTES - 1) & ~(size_t)(INFUD_SLOT_ALIGN_BYTES - 1);
}

void *ferry__infud_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
	               0);
	return p == MAP_FAILED ? NULL : p;
}

void ferry__infud_repost_add(infud_ep *u, infud_rx_slot *s)
{
	s->wr.next = NULL;
	if (u->repost_tail != NULL)
		u->repost_tail->wr.next = &s->wr;
	else
		u->repost_head = s;
	u->repost_tail = s;
	u->nrepost++;
}

/* Add a chunk of registered receive buffers to the free list. Open, and
 * the receive path when loans hold nearly the whole pool (a big message
 * being reassembled): a rare, amortised cost, never per packet. */
int ferry__infud_rx_grow(infud_ep *u)
{
	uint32_t n = u->rx_chunk_slots;
	if (u->rx_nchunks == INFUD_RX_CHUNKS_MAX || u->rx_total + n > u->rx_max)
		return -ENOBUFS;
	infud_rx_chunk *c = &u->rx_chunk[u->rx_nchunks];
	c->len = u->rx_stride * n;
	c->mem = ferry__infud_map(c->len);
	c->slot = ferry__calloc(n, sizeof(*c->slot));
	if (c->mem == NULL || c->slot == NULL)
		goto fail;
	c->mr = ibv_reg_mr(u->dev.pd, c->mem, c->len, IBV_ACCESS_LOCAL_WRITE);
	if (c->mr == NULL)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		infud_rx_slot *s = &c->slot[i];
		s->pkt.ep = &u->base;
		s->sge = (struct ibv_sge){
		        .addr = (uintptr_t)(c->mem + i * u->rx_stride),
		        .length = (uint32_t)(INFUD_GRH_BYTES + u->dev.mtu_bytes),
		        .lkey = c->mr->lkey};
		s->wr = (struct ibv_recv_wr){
		        .wr_id = (uintptr_t)s, .sg_list = &s->sge, .num_sge = 1};
		ferry__infud_repost_add(u, s);
	}
	u->rx_nchunks++;
	u->rx_total += n;
	u->cnt.rx_pool_grows++;
	return 0;
fail:;
	int rc = errno != 0 ? -errno : -ENOMEM;
	if (c->mem != NULL)
		munmap(c->mem, c->len);
	ferry__free(c->slot);
	*c = (infud_rx_chunk){0};
	return rc;
}

/* Transmit ------------------------------------------------------------------*/

/* After a send error a UD QP sits in SQE: back to RTS. */
void ferry__infud_qp_recover(infud_ep *u)
{
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;
	if (ibv_query_qp(u->qp, &a, IBV_QP_STATE, &ia) != 0 || a.qp_state != IBV_QPS_SQE)
		return;
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .cur_qp_state = IBV_QPS_SQE};
	if (ibv_modify_qp(u->qp, &a, IBV_QP_STATE | IBV_QP_CUR_STATE) == 0)
		u->cnt.qp_recoveries++;
}

/* Reap send completions in batches. A signaled completion for sequence s
 * means every WR up to s is done (a send queue completes in order). */
void ferry__infud_reap(infud_ep *u)
{
	struct ibv_wc wc[INFUD_TX_REAP_BATCH];
	bool failed = false;
	for (;;) {
		int n = ibv_poll_cq(u->scq, INFUD_TX_REAP_BATCH, wc);
		u->cnt.cq_polls++;
		for (int i = 0; i < n; i++) {
			if (wc[i].status != IBV_WC_SUCCESS) {
				u->cnt.wc_errors++;
				failed = true;
			}
			if (wc[i].wr_id + 1 > u->tx_tail)
				u->tx_tail = wc[i].wr_id + 1;
		}
		if (n < INFUD_TX_REAP_BATCH)
			break;
	}
	if (failed)
		ferry__infud_qp_recover(u);
}

/* Post everything queued as one linked list: one ibv_post_send. */
int ferry__infud_flush(ferry_ep *ep)
{
	infud_ep *u = infud_of(ep);
	if (u->tx_head - u->tx_tail >= INFUD_SIGNAL_EVERY)
		ferry__infud_reap(u);
	if (u->tx_posted == u->tx_head)
		return 0;
	uint32_t n = u->tx_slots;
	for (uint64_t s = u->tx_posted; s < u->tx_head; s++)
		u->tx_wr[s % n].next = s + 1 < u->tx_head ? &u->tx_wr[(s + 1) % n] : NULL;
	struct ibv_send_wr *bad = NULL;
	u->cnt.post_send_calls++;
	if (ibv_post_send(u->qp, &u->tx_wr[u->tx_posted % n], &bad) != 0) {
		/* bad and what follows were not posted: dropped like a full NIC
		 * queue (the transports recover); their slots are reused. */
		uint64_t first = bad != NULL ? bad->wr_id : u->tx_posted;
		u->cnt.tx_post_errors += u->tx_head - first;
		u->tx_head = first;
	}
	int sent = (int)(u->tx_head - u->tx_posted);
	u->tx_posted = u->tx_head;
	return sent;
}

/* A free slot, reaping (and briefly spinning) when the ring is full. Every
 * tx_slots consecutive WRs hold a signaled one, so once everything queued
 * is posted, completions do come. */
static bool infud_tx_room(infud_ep *u)
{
	if (u->tx_head - u->tx_tail < u->tx_slots)
		return true;
	if (u->tx_posted != u->tx_head)
		ferry__infud_flush(&u->base);
	ferry__infud_reap(u);
	if (u->tx_head - u->tx_tail < u->tx_slots)
		return true;
	u->cnt.tx_ring_waits++;
	uint64_t until = ferry__infud_now_us() + INFUD_TX_WAIT_US;
	do {
		ferry__infud_reap(u);
		if (u->tx_head - u->tx_tail < u->tx_slots)
			return true;
	} while (ferry__infud_now_us() < until);
	return false;
}

static void infud_tx_queue(infud_ep *u, struct ibv_ah *ah, uint32_t qpn, uint32_t qkey,
                           uint32_t len)
{
	uint64_t seq = u->tx_head;
	uint32_t slot = (uint32_t)(seq % u->tx_slots);
	struct ibv_send_wr *wr = &u->tx_wr[slot];
	wr->wr_id = seq;
	u->tx_sge[slot].length = len;
	wr->wr.ud.ah = ah;
	wr->wr.ud.remote_qpn = qpn;
	wr->wr.ud.remote_qkey = qkey;
	unsigned fl = 0;
	if (len <= u->dev.max_inline) {
		fl |= IBV_SEND_INLINE;
		u->cnt.tx_inline++;
	}
	/* Selective signaling: every Nth WR, and the ring's last slot so
	 * that a full ring always holds a signaled WR. */
	if (seq % INFUD_SIGNAL_EVERY == INFUD_SIGNAL_EVERY - 1 ||
	    slot == u->tx_slots - 1) {
		fl |= IBV_SEND_SIGNALED;
		u->cnt.tx_signaled++;
	} else {
		u->cnt.tx_unsignaled++;
	}
	wr->send_flags = fl;
	u->tx_head++;
}

/* Wait (bounded) until every send posted so far completed, so that the AHs
 * they name may be destroyed: a signaled zero-byte fence goes to our own QP
 * with a QKey it rejects (the device drops it silently). */
bool ferry__infud_tx_drain(infud_ep *u)
{
	if (!infud_tx_room(u))
		return false;
	if (u->self_ah == NULL) {
		struct ibv_ah_attr attr;
		ferry__ib_ah_attr(&u->dev, &u->self, &attr);
		if ((u->self_ah = ibv_create_ah(u->dev.pd, &attr)) == NULL)
			return false;
	}
	infud_tx_queue(u, u->self_ah, u->self.qpn, ~INFUD_QKEY, 0);
	u->tx_wr[(u->tx_head - 1) % u->tx_slots].send_flags |= IBV_SEND_SIGNALED;
	ferry__infud_flush(&u->base);
	uint64_t until = ferry__infud_now_us() + INFUD_DRAIN_WAIT_US;
	do {
		ferry__infud_reap(u);
		if (u->tx_tail == u->tx_posted)
			return true;
	} while (ferry__infud_now_us() < until);
	return false;
}

int ferry__infud_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                      ferry_buf_iter *payload)
{
	infud_ep *u = infud_of(ep);
	size_t plen = payload != NULL ? payload->left : 0;
	if (hdr_len + plen > u->max_payload)
		return -EMSGSIZE;
	ferry_ib_addr peer;
	if (ferry__ib_from_addr(to, &peer) != 0 || peer.roce != u->dev.roce)
		return -EINVAL;
	struct ibv_ah *ah = ferry__infud_ah_get(u, &peer);
	if (ah == NULL)
		return -ENOMEM;
	if (!infud_tx_room(u)) {
		u->cnt.tx_ring_drops++; /* the NIC is stuck: a loss on the wire */
		return 0;
	}
	uint8_t *dst = u->tx_mem + (u->tx_head % u->tx_slots) * u->tx_stride;
	memcpy(dst, hdr, hdr_len);
	uint8_t *p = dst + hdr_len;
	ferry_buf_seg seg;
	while (payload != NULL && ferry_buf_iter_next(payload, &seg)) {
		int rc = ferry__seg_copy(p, &seg);
		if (rc != 0)
			return rc;
		p += seg.len;
	}
	infud_tx_queue(u, ah, peer.qpn, peer.qkey, (uint32_t)(p - dst));
	return 0;
}

/* Receive -------------------------------------------------------------------*/

/* Post free buffers, as many as the receive queue has room for: one
 * ibv_post_recv for the whole list. */
void ferry__infud_repost(infud_ep *u)
{
	uint32_t k = u->rx_slots - u->rx_nposted;
	if (k > u->nrepost)
		k = u->nrepost;
	if (k == 0)
		return;
	/* Cut the free list after k buffers. */
	infud_rx_slot *first = u->repost_head, *last = first;
	for (uint32_t i = 1; i < k; i++)
		last = ferry_container_of(last->wr.next, infud_rx_slot, wr);
	struct ibv_recv_wr *rest = last->wr.next;
	last->wr.next = NULL;
	struct ibv_recv_wr *bad = NULL;
	u->cnt.post_recv_calls++;
	uint32_t done = k;
	if (ibv_post_recv(u->qp, &first->wr, &bad) != 0) {
		/* Those before bad went in; bad and the rest stay free. */
		u->cnt.rx_post_errors++;
		done = 0;
		for (struct ibv_recv_wr *w = &first->wr; w != bad && w != NULL;
		     w = w->next)
			done++;
		last->wr.next = rest;
		rest = bad != NULL ? bad : rest;
	}
	u->cnt.rx_reposted += done;
	u->rx_nposted += done;
	u->nrepost -= done;
	u->repost_head =
	        rest != NULL ? ferry_container_of(rest, infud_rx_slot, wr) : NULL;
	if (u->repost_head == NULL)
		u->repost_tail = NULL;
}

/* Keep the receive queue full: released buffers go back in batches; when
 * loans hold the pool and the queue runs low, the pool grows. */
static void infud_refill(infud_ep *u)
{
	uint32_t room = u->rx_slots - u->rx_nposted;
	if (room == 0)
		return;
	if (u->nrepost < room && u->rx_nposted < u->rx_slots / 4)
		(void)ferry__infud_rx_grow(u);
	if (u->nrepost >= INFUD_RX_REPOST_BATCH || u->rx_nposted < u->rx_slots / 2)
		ferry__infud_repost(u);
}

/* The sender's GID from the 40 bytes before the datagram. RoCEv2 over IPv4
 * puts 20 zero bytes and the IPv4 header there (the GID is then the
 * IPv4-mapped address); otherwise it is a GRH, source GID at byte 8. The
 * test is rdma-core's (ibv_init_ah_from_wc): an IPv4 header with a valid
 * checksum wins. */
static bool infud_ipv4_hdr(const uint8_t *ip)
{
	if (ip[0] != 0x45)
		return false;
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)ip[i] << 8 | ip[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

static void infud_src_gid(const infud_ep *u, const uint8_t *grh, uint8_t gid[16])
{
	const uint8_t *ip4 = grh + 20;
	if (u->dev.roce && ((grh[0] >> 4) != 6 || infud_ipv4_hdr(ip4))) {
		memset(gid, 0, 10);
		gid[10] = gid[11] = 0xff;
		memcpy(gid + 12, ip4 + 12, 4);
		return;
	}
	memcpy(gid, grh + 8, 16);
}

static int infud_rx_poll(infud_ep *u, ferry_pkt **pkts, int max)
{
	struct ibv_wc wc[INFUD_RX_BATCH_MAX];
	if (max > INFUD_RX_BATCH_MAX)
		max = INFUD_RX_BATCH_MAX;
	int n = ibv_poll_cq(u->rcq, max, wc);
	u->cnt.cq_polls++;
	if (n <= 0)
		return n < 0 ? -EIO : 0;
	int out = 0;
	for (int i = 0; i < n; i++) {
		infud_rx_slot *s = (infud_rx_slot *)(uintptr_t)wc[i].wr_id;
		u->rx_nposted--;
		if (wc[i].status != IBV_WC_SUCCESS || wc[i].byte_len < INFUD_GRH_BYTES) {
			if (wc[i].status != IBV_WC_SUCCESS)
				u->cnt.wc_errors++;
			else
				u->cnt.rx_short++;
			ferry__infud_repost_add(u, s);
			continue;
		}
		uint8_t *mem = (uint8_t *)(uintptr_t)s->sge.addr;
		ferry_ib_addr src;
		memset(&src, 0, sizeof(src));
		if (wc[i].wc_flags & IBV_WC_GRH)
			infud_src_gid(u, mem, src.gid);
		else /* same IB subnet, no GRH: our prefix routes on the LID */
			memcpy(src.gid, u->dev.gid.raw, 8);
		src.qpn = wc[i].src_qp;
		src.qkey = INFUD_QKEY;
		src.lid = u->dev.roce ? 0 : wc[i].slid;
		src.roce = u->dev.roce;
		s->pkt.src.len = sizeof(src);
		memcpy(s->pkt.src.u.bytes, &src, sizeof(src));
		s->pkt.data = mem + INFUD_GRH_BYTES;
		s->pkt.len = wc[i].byte_len - INFUD_GRH_BYTES;
		pkts[out++] = &s->pkt;
	}
	return out;
}

void ferry__infud_boot_serve(infud_ep *u)
{
	u->cnt.boot_answers += (uint64_t)ferry__ib_boot_serve(
	        u->boot_fd, &u->self, u->max_payload, &u->cnt.boot_bad);
}

/* Block mode, nothing received: consume the channel's events, re-arm the
 * CQ, and poll once more (a completion that landed before the arm raised
 * no event). */
static int infud_idle(infud_ep *u, ferry_pkt **pkts, int max)
{
	if (u->boot_fd >= 0)
		ferry__infud_boot_serve(u);
	ferry__infud_repost(u);
	if (u->armed) {
		struct ibv_cq *cq;
		void *cq_ctx;
		while (ibv_get_cq_event(u->chan, &cq, &cq_ctx) == 0) {
			u->cnt.cq_events++;
			u->unacked_events++;
			u->armed = false;
		}
		if (u->unacked_events >= INFUD_CQ_ACK_BATCH) {
			ibv_ack_cq_events(u->rcq, u->unacked_events);
			u->unacked_events = 0;
		}
	}
	if (u->armed)
		return 0;
	if (ibv_req_notify_cq(u->rcq, 0) != 0)
		return -errno;
	u->armed = true;
	u->cnt.cq_arms++;
	return infud_rx_poll(u, pkts, max);
}

int ferry__infud_poll(ferry_ep *ep, ferry_pkt **pkts, int max)
{
	infud_ep *u = infud_of(ep);
	if (u->boot_fd >= 0 && ++u->boot_tick % INFUD_BOOT_EVERY == 0)
		ferry__infud_boot_serve(u);
	infud_refill(u);
	int n = infud_rx_poll(u, pkts, max);
	if (n != 0 || !ep->sleeps)
		return n;
	return infud_idle(u, pkts, max);
}

void ferry__infud_release(ferry_ep *ep, ferry_pkt *pkt)
{
	infud_ep *u = infud_of(ep);
	ferry__infud_repost_add(u, ferry_container_of(pkt, infud_rx_slot, pkt));
	if (u->nrepost >= INFUD_RX_REPOST_BATCH &&
	    u->rx_slots - u->rx_nposted >= INFUD_RX_REPOST_BATCH)
		ferry__infud_repost(u);
}
