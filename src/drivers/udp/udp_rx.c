/* udp receive: a pool of slots posted to recvmmsg and loaned up
 * zero-copy; with UDP_GRO a slot holds a train of segments that are handed
 * up one packet each. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "udp.h"

/* Post slot idx at position i of the receive array. */
static void udp_post(udp_ep *u, uint32_t i, uint32_t idx)
{
	udp_rx_slot *s = &u->rx[idx];
	u->rx_posted[i] = idx;
	u->rx_iov[i] = (struct iovec){s->mem, u->slot_bytes};
	u->rx_msgs[i].msg_hdr = (struct msghdr){
	        .msg_name = s->pkt.src.u.bytes,
	        .msg_namelen = FERRY_ADDR_BYTES,
	        .msg_iov = &u->rx_iov[i],
	        .msg_iovlen = 1,
	};
	if (u->gro) {
		u->rx_msgs[i].msg_hdr.msg_control = u->rx_ctl[i].buf;
		u->rx_msgs[i].msg_hdr.msg_controllen = sizeof(u->rx_ctl[i].buf);
	}
}

/* Keep the posted array contiguous and as full as the free list allows:
 * holes left by received packets (positions < hole_end) are refilled, and
 * when slots run short the array shrinks from its tail. */
static void udp_refill(udp_ep *u, uint32_t hole_end)
{
	uint32_t i = 0;
	for (; i < hole_end && u->rx_nfree > 0; i++)
		udp_post(u, i, u->rx_free[--u->rx_nfree]);
	if (i < hole_end) {
		/* Out of slots: close the gap with the tail of the array. */
		uint32_t keep = u->rx_nposted - hole_end;
		for (uint32_t k = 0; k < keep; k++)
			udp_post(u, i + k, u->rx_posted[hole_end + k]);
		u->rx_nposted = i + keep;
		return;
	}
	while (u->rx_nposted < UDP_RX_BATCH_MAX && u->rx_nfree > 0) {
		udp_post(u, u->rx_nposted, u->rx_free[--u->rx_nfree]);
		u->rx_nposted++;
	}
}

/* One datagram into the first posted slot. A connected socket only
 * receives from its peer, so it skips the source address. MSG_TRUNC makes
 * the return value the datagram's real length. */
static int udp_poll_one(udp_ep *u, int fd, ferry_pkt **pkts)
{
	udp_rx_slot *s = &u->rx[u->rx_posted[0]];
	ssize_t r;
	socklen_t sl = FERRY_ADDR_BYTES;
	if (u->connected)
		r = recv(fd, s->mem, u->slot_bytes, MSG_DONTWAIT | MSG_TRUNC);
	else
		r = recvfrom(fd, s->mem, u->slot_bytes, MSG_DONTWAIT | MSG_TRUNC,
		             (struct sockaddr *)s->pkt.src.u.bytes, &sl);
	if (r < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	u->cnt.recv_calls++;
	u->rx_batch = true;
	if ((size_t)r > u->slot_bytes) {
		u->cnt.rx_truncated++;
		return 0; /* the slot stays posted */
	}
	if (u->connected) {
		s->pkt.src.len = u->peer.len;
		memcpy(s->pkt.src.u.bytes, u->peer.u.bytes, u->peer.len);
	} else
		s->pkt.src.len = sl;
	s->pkt.data = s->mem;
	s->pkt.len = (uint32_t)r;
	pkts[0] = &s->pkt;
	udp_refill(u, 1);
	return 1;
}

/* GRO mode: hand up the segments of pending trains as packets, as far as
 * max and the segment packets allow; a train not fully handed up stays at
 * the head of the queue. */
static int udp_gro_hand(udp_ep *u, ferry_pkt **pkts, int max)
{
	int out = 0;
	while (out < max && u->pend_len > 0) {
		uint32_t idx = u->pend[u->pend_head];
		udp_rx_slot *s = &u->rx[idx];
		while (s->handed < s->nseg && out < max && u->seg_nfree > 0) {
			udp_rx_seg *g = &u->segs[u->seg_free[--u->seg_nfree]];
			uint32_t off = (uint32_t)s->handed * s->seg;
			g->slot = idx;
			g->pkt.data = s->mem + off;
			g->pkt.len = s->len - off < s->seg ? s->len - off : s->seg;
			g->pkt.src = s->pkt.src;
			s->handed++;
			s->refs++;
			pkts[out++] = &g->pkt;
		}
		if (s->handed < s->nseg)
			break;
		u->pend_head = (u->pend_head + 1) % u->rx_slots;
		u->pend_len--;
	}
	return out;
}

/* A received datagram in slot idx: one packet, or a train of segments
 * whose size the kernel says in a UDP_GRO control message. */
static void udp_gro_take(udp_ep *u, uint32_t idx, const struct msghdr *m, uint32_t len)
{
	udp_rx_slot *s = &u->rx[idx];
	s->len = len;
	s->seg = len;
	s->pkt.src.len = m->msg_namelen;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL;
	     c = CMSG_NXTHDR((struct msghdr *)m, c)) {
		int gs;
		if (c->cmsg_level != SOL_UDP || c->cmsg_type != UDP_GRO)
			continue;
		memcpy(&gs, CMSG_DATA(c), sizeof(gs));
		if (gs > 0 && (uint32_t)gs < len)
			s->seg = (uint32_t)gs;
	}
	if (s->seg == 0)
		s->seg = 1; /* an empty datagram: one empty packet */
	s->nseg = (uint16_t)((len + s->seg - 1) / s->seg);
	if (s->nseg == 0)
		s->nseg = 1;
	s->handed = s->refs = 0;
	if (s->nseg > 1) {
		u->cnt.gro_trains++;
		u->cnt.gro_pkts += s->nseg;
	}
	u->pend[(u->pend_head + u->pend_len) % u->rx_slots] = idx;
	u->pend_len++;
}

static int udp_poll_gro(udp_ep *u, int fd, ferry_pkt **pkts, int max)
{
	int out = udp_gro_hand(u, pkts, max);
	if (out == max || u->pend_len > 0) {
		if (out == 0)
			u->cnt.rx_pool_empty++; /* trains wait for packets given back */
		return out;
	}
	if (u->rx_nposted < UDP_RX_BATCH_MAX && u->rx_nfree > 0)
		udp_refill(u, 0);
	uint32_t n = u->rx_nposted;
	if (n == 0) {
		u->cnt.rx_pool_empty++;
		return out;
	}
	int r;
	if (!u->rx_batch || n == 1) {
		/* quiet socket: one recvmsg, as cheap as it gets with control */
		struct msghdr *m = &u->rx_msgs[0].msg_hdr;
		ssize_t got = recvmsg(fd, m, MSG_DONTWAIT);
		r = got < 0 ? -1 : 1;
		if (got >= 0) {
			u->rx_msgs[0].msg_len = (unsigned)got;
			u->cnt.recv_calls++;
			u->rx_batch = true;
		}
	} else {
		r = recvmmsg(fd, u->rx_msgs, n, MSG_DONTWAIT, NULL);
		if (r >= 0) {
			u->cnt.recvmmsg_calls++;
			u->cnt.recvmmsg_pkts += (uint64_t)r;
			u->rx_batch = r > 1;
		}
	}
	if (r < 0) {
		u->rx_batch = false;
		if (out > 0 || errno == EAGAIN || errno == EINTR)
			return out;
		return -errno;
	}
	for (int i = 0; i < r; i++) {
		const struct msghdr *m = &u->rx_msgs[i].msg_hdr;
		if (m->msg_flags & MSG_TRUNC) {
			u->cnt.rx_truncated++;
			u->rx_free[u->rx_nfree++] = u->rx_posted[i];
			continue;
		}
		udp_gro_take(u, u->rx_posted[i], m, u->rx_msgs[i].msg_len);
	}
	udp_refill(u, (uint32_t)r);
	return out + udp_gro_hand(u, pkts + out, max - out);
}

int ferry__udp_poll(ferry_ep *ep, ferry_pkt **pkts, int max)
{
	udp_ep *u = udp_of(ep);
	if (u->gro)
		return udp_poll_gro(u, ep->fd, pkts, max);
	if (u->rx_nposted < UDP_RX_BATCH_MAX && u->rx_nfree > 0)
		udp_refill(u, 0);
	uint32_t n = (uint32_t)max;
	if (n > u->rx_nposted)
		n = u->rx_nposted;
	if (n == 0) {
		u->cnt.rx_pool_empty++;
		return 0;
	}
	if (!u->rx_batch || n == 1)
		return udp_poll_one(u, ep->fd, pkts);
	int r = recvmmsg(ep->fd, u->rx_msgs, n, MSG_DONTWAIT, NULL);
	if (r < 0) {
		u->rx_batch = false;
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	}
	u->cnt.recvmmsg_calls++;
	u->cnt.recvmmsg_pkts += (uint64_t)r;
	u->rx_batch = r > 1;
	/* Hand up the filled slots; a truncated datagram's slot goes back to
	 * the free list and is posted again by the refill. */
	int out = 0;
	for (int i = 0; i < r; i++) {
		udp_rx_slot *s = &u->rx[u->rx_posted[i]];
		if (u->rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
			u->cnt.rx_truncated++;
			u->rx_free[u->rx_nfree++] = u->rx_posted[i];
			continue;
		}
		s->pkt.data = s->mem;
		s->pkt.len = u->rx_msgs[i].msg_len;
		s->pkt.src.len = u->rx_msgs[i].msg_hdr.msg_namelen;
		pkts[out++] = &s->pkt;
	}
	udp_refill(u, (uint32_t)r);
	return out;
}
