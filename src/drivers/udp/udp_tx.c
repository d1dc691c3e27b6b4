/* udp transmit: a ring of slots that reference the caller's payload (the
 * kernel does the only copy), flushed with sendmmsg; runs of equal-size
 * packets to one peer go as one UDP_SEGMENT send, a short packet inside a
 * run padded where the transport allows it (ep->tx_pad). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "buffer/seg.h"
#include "udp.h"

/* One packet: the cheapest syscall that carries it. */
static int udp_flush_one(udp_ep *u, int fd)
{
	struct msghdr *m = &u->tx_msgs[0].msg_hdr;
	ssize_t r;
	do {
		u->cnt.send_calls++;
		if (m->msg_iovlen == 1)
			r = sendto(fd, m->msg_iov[0].iov_base, m->msg_iov[0].iov_len,
			           MSG_DONTWAIT, m->msg_name, m->msg_namelen);
		else
			r = sendmsg(fd, m, MSG_DONTWAIT);
	} while (r < 0 && errno == EINTR);
	u->tx_n = 0;
	if (r >= 0)
		return 1;
	if (errno == EAGAIN || errno == ENOBUFS)
		u->cnt.tx_eagain++;
	else
		u->cnt.tx_send_errors++;
	return 0;
}

/* sendmmsg over msgs[0..n); segs[i] packets in message i (NULL: one).
 * Returns the packets sent; a full socket buffer loses the rest, like a
 * full NIC queue (the payload is not ours to keep). A message the kernel
 * refuses for its segmentation (no GSO here after all) stops the loop with
 * *refused = its index. */
static uint32_t udp_sendmmsg(udp_ep *u, int fd, struct mmsghdr *msgs, uint32_t n,
                             const uint32_t *segs, uint32_t *refused)
{
	uint32_t done = 0, pkts = 0;
	while (done < n) {
		int k = sendmmsg(fd, msgs + done, n - done, MSG_DONTWAIT);
		u->cnt.sendmmsg_calls++;
		if (k > 0) {
			for (int i = 0; i < k; i++)
				pkts += segs != NULL ? segs[done + (uint32_t)i] : 1;
			done += (uint32_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		uint32_t left = 0;
		for (uint32_t i = done; i < n; i++)
			left += segs != NULL ? segs[i] : 1;
		if (k < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
			u->cnt.tx_eagain += left;
			break;
		}
		if (segs != NULL && segs[done] > 1 &&
		    (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP)) {
			*refused = done;
			break;
		}
		/* A per-destination error: skip that message, send the rest. */
		u->cnt.tx_send_errors++;
		done++;
	}
	u->cnt.sendmmsg_pkts += pkts;
	return pkts;
}

/* Same destination: both connected, or the same address bytes (not the
 * caller's pointer: a received packet's source, say, may be reused for
 * another peer within one flush). */
static bool udp_same_peer(const struct msghdr *a, const struct msghdr *b)
{
	return a->msg_namelen == b->msg_namelen &&
	       (a->msg_namelen == 0 ||
	        memcmp(a->msg_name, b->msg_name, a->msg_namelen) == 0);
}

/* Zeros that pad a short packet (the kernel only reads them). */
static uint8_t udp_zeros[UDP_GSO_BYTES_MAX / 2];

/* May packet i, shorter than seg, be padded to seg so that the run of
 * seg-size packets it sits in stays one send? Only where the transport
 * allows it (ep->tx_pad), for at most half a segment of zeros (a
 * 4 KiB message's last fragment, not a 40-byte ack), and only if a
 * seg-size packet to the same peer follows to continue the run. */
static bool udp_pad_ok(const udp_ep *u, uint32_t i, size_t seg, size_t total)
{
	size_t len = u->tx[i].len;
	if (!u->pad || len * 2 < seg || seg - len > sizeof(udp_zeros) ||
	    i + 1 >= u->tx_n || u->tx[i + 1].len != seg ||
	    total + 2 * seg > UDP_GSO_BYTES_MAX)
		return false;
	return udp_same_peer(&u->tx_msgs[i].msg_hdr, &u->tx_msgs[i + 1].msg_hdr);
}

/* Group the queued packets: a run of equal-size packets to one peer (the
 * last may be shorter) becomes one message with UDP_SEGMENT; a short one
 * inside a run may be padded (udp_pad_ok). Returns the number of messages
 * in gso_msgs. */
static uint32_t udp_gso_group(udp_ep *u, uint32_t from)
{
	uint32_t g = 0, iov = 0;
	for (uint32_t i = from; i < u->tx_n; g++) {
		struct msghdr *m = &u->tx_msgs[i].msg_hdr;
		size_t seg = u->tx[i].len, total = seg;
		uint32_t k = 1;
		while (i + k < u->tx_n && k < UDP_GSO_SEGS_MAX) {
			struct msghdr *n = &u->tx_msgs[i + k].msg_hdr;
			size_t len = u->tx[i + k].len;
			if (len > seg || len == 0 || total + len > UDP_GSO_BYTES_MAX ||
			    !udp_same_peer(m, n))
				break;
			if (len < seg && udp_pad_ok(u, i + k, seg, total)) {
				/* padded to seg: the run goes on */
				k++;
				total += seg;
				continue;
			}
			k++;
			total += len;
			if (len < seg)
				break; /* only the last segment may be short */
		}
		u->gso_first[g] = i;
		u->gso_segs[g] = k;
		struct msghdr *out = &u->gso_msgs[g].msg_hdr;
		if (k == 1) {
			*out = *m;
			i++;
			continue;
		}
		*out = (struct msghdr){.msg_name = m->msg_name,
		                       .msg_namelen = m->msg_namelen,
		                       .msg_iov = u->gso_iov + iov};
		for (uint32_t j = 0; j < k; j++, i++) {
			struct msghdr *p = &u->tx_msgs[i].msg_hdr;
			memcpy(u->gso_iov + iov, p->msg_iov,
			       p->msg_iovlen * sizeof(struct iovec));
			iov += (uint32_t)p->msg_iovlen;
			out->msg_iovlen += p->msg_iovlen;
			if (u->tx[i].len < seg && j + 1 < k) { /* padded */
				size_t pad = seg - u->tx[i].len;
				u->gso_iov[iov++] = (struct iovec){.iov_base = udp_zeros,
				                                   .iov_len = pad};
				out->msg_iovlen++;
				u->cnt.gso_padded++;
				u->cnt.gso_pad_bytes += pad;
			}
		}
		struct cmsghdr *c = &u->gso_ctl[g].align;
		out->msg_control = u->gso_ctl[g].buf;
		out->msg_controllen = sizeof(u->gso_ctl[g].buf);
		c->cmsg_level = SOL_UDP;
		c->cmsg_type = UDP_SEGMENT;
		c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
		uint16_t gs = (uint16_t)seg;
		memcpy(CMSG_DATA(c), &gs, sizeof(gs));
		u->cnt.gso_sends++;
		u->cnt.gso_pkts += k;
	}
	return g;
}

int ferry__udp_flush(ferry_ep *ep)
{
	udp_ep *u = udp_of(ep);
	if (u->tx_n == 1)
		return udp_flush_one(u, ep->fd);
	uint32_t from = 0, sent = 0;
	if (u->gso && u->tx_n > 1) {
		u->pad = ep->tx_pad;
		uint32_t g = udp_gso_group(u, 0), refused = UINT32_MAX;
		sent = udp_sendmmsg(u, ep->fd, u->gso_msgs, g, u->gso_segs, &refused);
		if (refused == UINT32_MAX) {
			u->tx_n = 0;
			return (int)sent;
		}
		/* The kernel took the option but cannot segment on this path:
		 * plain sends from here on, counted. */
		u->gso = false;
		u->cnt.gso_unavailable++;
		from = u->gso_first[refused];
	}
	uint32_t unused = 0;
	sent += udp_sendmmsg(u, ep->fd, u->tx_msgs + from, u->tx_n - from, NULL, &unused);
	u->tx_n = 0;
	return (int)sent;
}

static int udp_copy_payload(uint8_t *dst, ferry_buf_iter *payload)
{
	ferry_buf_seg seg;
	while (payload != NULL && ferry_buf_iter_next(payload, &seg)) {
		int rc = ferry__seg_copy(dst, &seg);
		if (rc != 0)
			return rc;
		dst += seg.len;
	}
	return 0;
}

int ferry__udp_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                    ferry_buf_iter *payload)
{
	udp_ep *u = udp_of(ep);
	size_t plen = payload != NULL ? payload->left : 0;
	if (hdr_len > FERRY_DRIVER_HDR_MAX || hdr_len + plen > u->max_payload)
		return -EMSGSIZE;
	if (to->len == 0 || to->len > FERRY_ADDR_BYTES)
		return -EINVAL;
	if (u->tx_n == u->tx_slots) {
		u->cnt.tx_ring_full++;
		ferry__udp_flush(ep);
	}
	udp_tx_slot *s = &u->tx[u->tx_n];
	memcpy(s->hdr, hdr, hdr_len);
	s->iov[0] = (struct iovec){s->hdr, hdr_len};
	int niov = 1;
	size_t bounced = 0;
	ferry_buf_seg seg;
	if (hdr_len + plen <= UDP_INLINE_BYTES) {
		int rc = udp_copy_payload(s->hdr + hdr_len, payload);
		if (rc != 0)
			return rc;
		s->iov[0].iov_len = hdr_len + plen;
		u->cnt.tx_inline++;
		payload = NULL;
	}
	while (payload != NULL && ferry_buf_iter_next(payload, &seg)) {
		if (seg.kind != FERRY_CHUNK_FILE && niov <= UDP_IOV_MAX && bounced == 0) {
			s->iov[niov++] = (struct iovec){(void *)seg.data, seg.len};
			continue;
		}
		/* File regions and pieces past the iovec budget are copied. */
		if (s->bounce == NULL &&
		    (s->bounce = ferry__malloc(u->max_payload)) == NULL)
			return -ENOMEM;
		int rc = ferry__seg_copy(s->bounce + bounced, &seg);
		if (rc != 0)
			return rc;
		bounced += seg.len;
		u->cnt.tx_bounce_copies++;
		u->cnt.tx_copy_bytes += seg.len;
	}
	if (bounced > 0)
		s->iov[niov++] = (struct iovec){s->bounce, bounced};
	struct msghdr *m = &u->tx_msgs[u->tx_n].msg_hdr;
	*m = (struct msghdr){.msg_iov = s->iov, .msg_iovlen = (size_t)niov};
	s->len = (uint32_t)(hdr_len + plen);
	if (!u->connected || to->len != u->peer.len ||
	    memcmp(to->u.bytes, u->peer.u.bytes, to->len) != 0) {
		s->to = *to;
		m->msg_name = s->to.u.bytes;
		m->msg_namelen = s->to.len;
	}
	u->tx_n++;
	return 0;
}
