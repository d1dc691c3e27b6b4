/* udp: the kernel UDP driver. Non-blocking socket, IPv4 or IPv6; batched
 * receive with recvmmsg into a pool of slots that are loaned up zero-copy;
 * batched send with sendmmsg from a ring of transmit slots that reference
 * the caller's payload (the kernel does the only copy), so a sender never
 * waits per packet. Max payload comes from the path MTU (on loopback, ~64 KB
 * datagrams) unless the locator sets mtu=. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buffer/seg.h"
#include "base/alloc.h"
#include "base/loc.h"
#include "drivers/kit/inet.h"

#define UDP_TX_SLOTS_DEFAULT 64
/* ... where packets are link-sized (segmentation offload on): a ring that
 * holds a whole window's burst (1,024 x 1,472 B, 1.5 MB), so it leaves in
 * one flush. With 64 slots a 256 KiB response left in three sendmmsg
 * calls from within the transport's burst, and READ of 256 KiB over veth
 * at MTU 1500 took 114-116 us against 92-98 us (1 MiB: 312-321 against
 * 272-274; block mode, paired runs). A slot is ~1.3 KB. */
#define UDP_TX_SLOTS_GSO_DEFAULT 1024
#define UDP_RX_SLOTS_DEFAULT 512
#define UDP_RX_BATCH_MAX 64
#define UDP_IOV_MAX 8             /* payload pieces referenced per packet */
/* Packets up to this size are copied whole into their slot: one contiguous
 * buffer lets a lone packet leave with send() instead of sendmsg/sendmmsg,
 * which import and walk iovecs (about 0.4 us per round trip here). */
#define UDP_INLINE_BYTES 1024
_Static_assert(UDP_INLINE_BYTES >= FERRY_DRIVER_HDR_MAX, "a slot holds any header");
#define UDP_SOCKBUF_DEFAULT_BYTES (8u << 20)
#define UDP_MAX_DGRAM_V4_BYTES 65507u
#define UDP_MAX_DGRAM_V6_BYTES 65527u
#define UDP_FALLBACK_PAYLOAD_BYTES 1472u /* 1500-byte Ethernet, IPv4 */
/* Default cap on loopback-sized paths. The kernel builds a datagram in one
 * buffer with its headers and skb_shared_info; past about 65.2 KB that
 * buffer needs a 128 KiB allocation and a 65507-byte datagram took 2.3x the
 * round trip of a 65160-byte one here (ferry-bench, 127.0.0.1). 63 KiB keeps
 * a margin; mtu= still allows up to the protocol maximum. */
#define UDP_DEFAULT_PAYLOAD_CAP_BYTES 64512u
#define UDP_MIN_PAYLOAD_BYTES 256u
/* Segmentation offload (UDP_SEGMENT): consecutive equal-size packets to one
 * peer leave as one send of up to this many segments and bytes; the kernel
 * (or the NIC) cuts them. Below that size per packet there is a gain. */
#define UDP_GSO_SEGS_MAX 64
#define UDP_GSO_BYTES_MAX 65000u
/* Receive coalescing (UDP_GRO): the kernel hands a train of equal segments
 * from one peer as one datagram of up to 64 KiB; each segment becomes a
 * packet of its own. Slots are then this big, and fewer. */
#define UDP_GRO_SLOT_BYTES 65536u

enum {
	UDP_K_MTU,
	UDP_K_SNDBUF,
	UDP_K_RCVBUF,
	UDP_K_RXSLOTS,
	UDP_K_TXSLOTS,
	UDP_K_REUSEPORT,
	UDP_K_GSO,
	UDP_K_GRO,
	UDP_K_COUNT
};
/* udp's keys (host and port are kit/inet's). mtu's upper bound is the
 * IPv6 one; open narrows it for IPv4. */
static const ferry_loc_key udp_keys[UDP_K_COUNT + 1] = {
	[UDP_K_MTU] = {.name = "mtu", .kind = FERRY_LOC_UINT, .min = UDP_MIN_PAYLOAD_BYTES,
	               .max = UDP_MAX_DGRAM_V6_BYTES},
	[UDP_K_SNDBUF] = {.name = "sndbuf", .kind = FERRY_LOC_UINT, .min = 4096, .max = 1u << 30,
	                  .dflt = UDP_SOCKBUF_DEFAULT_BYTES},
	[UDP_K_RCVBUF] = {.name = "rcvbuf", .kind = FERRY_LOC_UINT, .min = 4096, .max = 1u << 30,
	                  .dflt = UDP_SOCKBUF_DEFAULT_BYTES},
	[UDP_K_RXSLOTS] = {.name = "rxslots", .kind = FERRY_LOC_UINT, .min = 16, .max = 1u << 20,
	                   .dflt = UDP_RX_SLOTS_DEFAULT},
	[UDP_K_TXSLOTS] = {.name = "txslots", .kind = FERRY_LOC_UINT, .min = 1, .max = 1u << 16,
	                   .dflt = UDP_TX_SLOTS_DEFAULT},
	[UDP_K_REUSEPORT] = {.name = "reuseport", .kind = FERRY_LOC_UINT, .max = 1},
	[UDP_K_GSO] = {.name = "gso", .kind = FERRY_LOC_UINT, .max = 1, .dflt = 1},
	[UDP_K_GRO] = {.name = "gro", .kind = FERRY_LOC_UINT, .max = 1, .dflt = 1},
};
static const ferry_loc_key *const udp_key_tables[] = {udp_keys, ferry__inet_keys, NULL};

typedef struct udp_tx_slot {
	uint8_t hdr[UDP_INLINE_BYTES]; /* header, or the whole small packet */
	struct iovec iov[UDP_IOV_MAX + 2]; /* header, pieces, bounce */
	uint8_t *bounce; /* lazily allocated copy space (files, many pieces) */
	ferry_addr to;
	uint32_t len;    /* header + payload bytes */
} udp_tx_slot;

typedef struct udp_rx_slot {
	ferry_pkt pkt;
	uint8_t *mem;
	/* GRO mode: the datagram is a train of nseg segments of seg bytes;
	 * handed of them are out as packets, refs not yet released. */
	uint32_t len, seg;
	uint16_t nseg, handed, refs;
} udp_rx_slot;

/* GRO mode: one packet cut from a slot's train. */
typedef struct udp_rx_seg {
	ferry_pkt pkt;
	uint32_t slot;
} udp_rx_seg;

typedef struct udp_counters {
	uint64_t sendmmsg_calls, sendmmsg_pkts, recvmmsg_calls, recvmmsg_pkts;
	uint64_t send_calls, recv_calls, tx_inline;
	uint64_t tx_eagain, tx_send_errors, tx_ring_full, tx_bounce_copies, tx_copy_bytes, rx_pool_empty,
		rx_truncated, sockbuf_forced;
	/* offloads: sends carrying several segments and the packets in them;
	 * received trains and their packets; offloads the kernel refused
	 * (then the plain path is used: counted once per socket) */
	uint64_t gso_sends, gso_pkts, gro_trains, gro_pkts, gso_unavailable, gro_unavailable;
	uint64_t gso_padded, gso_pad_bytes;
} udp_counters;

typedef struct udp_ep {
	ferry_ep base;
	int family;
	bool listening;
	bool connected;  /* client socket connected to its one peer */
	ferry_addr peer; /* ... this one: sends to it carry no address */
	uint32_t max_payload;
	uint32_t slot_bytes;
	struct sockaddr_storage local;
	/* transmit ring */
	udp_tx_slot *tx;
	struct mmsghdr *tx_msgs;
	uint32_t tx_slots, tx_n;
	/* receive pool */
	uint8_t *rx_mem;
	size_t rx_mem_len;
	udp_rx_slot *rx;
	uint32_t *rx_free;
	uint32_t rx_slots, rx_nfree;
	/* Posted slots, like a NIC's receive ring: rx_msgs[0..rx_nposted) are
	 * ready for recvmmsg, so an empty poll sets nothing up; positions that
	 * receive are refilled from the free list. */
	struct mmsghdr rx_msgs[UDP_RX_BATCH_MAX];
	struct iovec rx_iov[UDP_RX_BATCH_MAX];
	uint32_t rx_posted[UDP_RX_BATCH_MAX];
	uint32_t rx_nposted;
	/* Receive mode: a quiet socket is polled one datagram at a time with
	 * recv/recvfrom (recvmmsg costs ~1 us more per empty or single-packet
	 * call); a datagram found that way switches the next poll to
	 * recvmmsg, and a recvmmsg that returns fewer than two switches back. */
	bool rx_batch;
	bool gso, gro;
	bool pad; /* ep->tx_pad at this flush: short packets may be padded */
	/* GSO: the flush's messages, each grouping several tx slots */
	struct mmsghdr *gso_msgs;
	struct iovec *gso_iov;
	uint32_t *gso_first, *gso_segs;
	union udp_cmsg {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} *gso_ctl;
	/* GRO: segment packets (free list), slots with segments not yet
	 * handed up (FIFO), and a control buffer per posted slot */
	udp_rx_seg *segs;
	uint32_t *seg_free;
	uint32_t nsegs, seg_nfree;
	uint32_t *pend;
	uint32_t pend_head, pend_len;
	union udp_rcmsg {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} rx_ctl[UDP_RX_BATCH_MAX];
	udp_counters cnt;
} udp_ep;

static udp_ep *udp_of(ferry_ep *ep) { return ferry_container_of(ep, udp_ep, base); }

/* Ask for big socket buffers so a burst of 64 KB datagrams fits. As root
 * the FORCE variants pass net.core.[rw]mem_max; otherwise the kernel caps. */
static void udp_sockbuf(udp_ep *u, int fd, int force_opt, int opt, uint64_t bytes)
{
	int v = bytes > INT32_MAX ? INT32_MAX : (int)bytes;
	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) == 0) {
		u->cnt.sockbuf_forced++;
		return;
	}
	setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
}

/* Offloads are worth it only when several packets fit in 64 KiB (not on
 * loopback's 63 KiB datagrams). A kernel without them refuses the socket
 * option: counted, and the plain path is used. */
static int udp_offloads(udp_ep *u, int fd, bool gso, bool gro)
{
	bool small = u->max_payload * 2 <= UDP_GSO_BYTES_MAX;
	int zero = 0, one = 1;
	if (gso && small) {
		if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof(zero)) == 0)
			u->gso = true;
		else
			u->cnt.gso_unavailable++;
	}
	if (gro && small) {
		if (setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0)
			u->gro = true;
		else
			u->cnt.gro_unavailable++;
	}
	if (!u->gso)
		return 0;
	size_t n = u->tx_slots;
	u->gso_msgs = ferry__calloc(n, sizeof(*u->gso_msgs));
	/* each packet's iovecs, and one more for padding */
	u->gso_iov = ferry__calloc(n * (UDP_IOV_MAX + 3), sizeof(*u->gso_iov));
	u->gso_first = ferry__calloc(n, sizeof(*u->gso_first));
	u->gso_segs = ferry__calloc(n, sizeof(*u->gso_segs));
	u->gso_ctl = ferry__calloc(n, sizeof(*u->gso_ctl));
	if (u->gso_msgs == NULL || u->gso_iov == NULL || u->gso_first == NULL ||
	    u->gso_segs == NULL || u->gso_ctl == NULL)
		return -ENOMEM;
	return 0;
}

static int udp_open(ferry_ep *ep, const ferry_loc *loc, unsigned flags)
{
	udp_ep *u = udp_of(ep);
	char *msg = ep->errmsg;
	bool listen = (flags & FERRY_EP_LISTEN) != 0;
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = ferry__inet_resolve(loc, listen, SOCK_DGRAM, &ss, &sl, msg, sizeof(ep->errmsg));
	if (rc != 0)
		goto bad;
	ferry_loc_val v[UDP_K_COUNT];
	if ((rc = ferry_loc_read(loc, udp_keys, v, msg, sizeof(ep->errmsg))) != 0)
		goto bad;
	uint64_t sndbuf = v[UDP_K_SNDBUF].u, rcvbuf = v[UDP_K_RCVBUF].u;
	uint64_t rxslots = v[UDP_K_RXSLOTS].u, txslots = v[UDP_K_TXSLOTS].u, mtu = v[UDP_K_MTU].u;
	bool reuseport = v[UDP_K_REUSEPORT].u, gso = v[UDP_K_GSO].u, gro = v[UDP_K_GRO].u;
	if (ss.ss_family != AF_INET6 && mtu > UDP_MAX_DGRAM_V4_BYTES) {
		snprintf(msg, sizeof(ep->errmsg), "key 'mtu': value '%s' out of range [%u, %u]",
		         ferry_loc_get(loc, "mtu"), (unsigned)UDP_MIN_PAYLOAD_BYTES,
		         (unsigned)UDP_MAX_DGRAM_V4_BYTES);
		rc = FERRY_EBADLOC;
		goto bad;
	}
	u->family = ss.ss_family;
	u->listening = listen;
	int fd = socket(u->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ep->fd = fd;
	udp_sockbuf(u, fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf);
	udp_sockbuf(u, fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf);
	if (listen) {
		/* reuseport=1: several contexts (threads) bind the same port and
		 * the kernel spreads peers over them by a hash of the 4-tuple, so
		 * one peer's datagrams keep reaching the same socket. */
		int one = 1;
		if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
			return -errno;
		if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
			rc = -errno;
			snprintf(msg, sizeof(ep->errmsg), "bind: %s%s", strerror(errno),
			         rc == -EADDRINUSE && !reuseport ? " (reuseport=1 shares a port)" : "");
			return rc;
		}
	} else {
		/* A client binds the wildcard of the peer's family, ephemeral. */
		struct sockaddr_storage any = {.ss_family = ss.ss_family};
		socklen_t al = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		                                        : sizeof(struct sockaddr_in);
		if (bind(fd, (struct sockaddr *)&any, al) != 0)
			return -errno;
	}
	socklen_t ll = sizeof(u->local);
	if (getsockname(fd, (struct sockaddr *)&u->local, &ll) != 0)
		return -errno;

	/* Max payload: the locator's mtu=, else the path MTU towards the
	 * named host (a listener probes its own address). */
	uint32_t cap = u->family == AF_INET6 ? UDP_MAX_DGRAM_V6_BYTES : UDP_MAX_DGRAM_V4_BYTES;
	if (mtu != 0) {
		u->max_payload = (uint32_t)mtu;
	} else {
		struct sockaddr_storage probe = listen ? u->local : ss;
		if (probe.ss_family == AF_INET && ((struct sockaddr_in *)&probe)->sin_port == 0)
			((struct sockaddr_in *)&probe)->sin_port = htons(9);
		if (probe.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&probe)->sin6_port == 0)
			((struct sockaddr_in6 *)&probe)->sin6_port = htons(9);
		unsigned p = ferry__inet_path_payload((struct sockaddr *)&probe, sl);
		/* A listener on a real interface: that interface's MTU (the
		 * route to its own address is lo's 64 KiB). */
		unsigned own = listen ? ferry__inet_if_payload((struct sockaddr *)&u->local) : 0;
		if (own != 0 && (p == 0 || own < p))
			p = own;
		if (cap > UDP_DEFAULT_PAYLOAD_CAP_BYTES)
			cap = UDP_DEFAULT_PAYLOAD_CAP_BYTES;
		u->max_payload = p == 0 ? UDP_FALLBACK_PAYLOAD_BYTES : p > cap ? cap : p;
	}

	if (gso && !v[UDP_K_TXSLOTS].set &&
	    u->max_payload * 2 <= UDP_GSO_BYTES_MAX)
		txslots = UDP_TX_SLOTS_GSO_DEFAULT;
	u->tx_slots = (uint32_t)txslots;
	u->tx = ferry__calloc(u->tx_slots, sizeof(*u->tx));
	u->tx_msgs = ferry__calloc(u->tx_slots, sizeof(*u->tx_msgs));
	if (u->tx == NULL || u->tx_msgs == NULL)
		return -ENOMEM;

	rc = udp_offloads(u, fd, gso != 0, gro != 0);
	if (rc != 0)
		return rc;

	/* Receive slots: one mapping, touched lazily, so a big pool costs only
	 * the memory a burst really uses. With GRO, fewer and bigger slots
	 * as many segment packets cut from them. A slot pins its memory while any
	 * of its packets is out, so there are as many slots as packets: a
	 * peer that sends no trains must not run out of slots first (with
	 * fewer, 46 loaned fragments of a 64 KiB message starved the pool).
	 * The mapping is touched lazily and slots are reused most recent
	 * first, so resident memory follows what bursts really used. */
	u->rx_slots = (uint32_t)rxslots;
	u->slot_bytes = (u->max_payload + 63u) & ~63u;
	if (u->gro) {
		u->nsegs = (uint32_t)rxslots;
		u->slot_bytes = UDP_GRO_SLOT_BYTES;
		u->segs = ferry__calloc(u->nsegs, sizeof(*u->segs));
		u->seg_free = ferry__calloc(u->nsegs, sizeof(*u->seg_free));
		u->pend = ferry__calloc(u->rx_slots, sizeof(*u->pend));
		if (u->segs == NULL || u->seg_free == NULL || u->pend == NULL)
			return -ENOMEM;
		for (uint32_t i = 0; i < u->nsegs; i++) {
			u->segs[i].pkt.ep = ep;
			u->seg_free[i] = u->nsegs - 1 - i;
		}
		u->seg_nfree = u->nsegs;
	}
	u->rx_mem_len = (size_t)u->rx_slots * u->slot_bytes;
	u->rx_mem = mmap(NULL, u->rx_mem_len, PROT_READ | PROT_WRITE,
	                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (u->rx_mem == MAP_FAILED) {
		u->rx_mem = NULL;
		return -ENOMEM;
	}
	u->rx = ferry__calloc(u->rx_slots, sizeof(*u->rx));
	u->rx_free = ferry__calloc(u->rx_slots, sizeof(*u->rx_free));
	if (u->rx == NULL || u->rx_free == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < u->rx_slots; i++) {
		u->rx[i].mem = u->rx_mem + (size_t)i * u->slot_bytes;
		u->rx[i].pkt.ep = ep;
		u->rx_free[i] = u->rx_slots - 1 - i;
	}
	u->rx_nfree = u->rx_slots;
	return 0;
bad:
	return rc;
}

static void udp_close(ferry_ep *ep)
{
	udp_ep *u = udp_of(ep);
	if (ep->fd >= 0)
		close(ep->fd);
	ep->fd = -1;
	if (u->tx != NULL)
		for (uint32_t i = 0; i < u->tx_slots; i++)
			ferry__free(u->tx[i].bounce);
	ferry__free(u->tx);
	ferry__free(u->tx_msgs);
	if (u->rx_mem != NULL)
		munmap(u->rx_mem, u->rx_mem_len);
	ferry__free(u->rx);
	ferry__free(u->rx_free);
	ferry__free(u->gso_msgs);
	ferry__free(u->gso_iov);
	ferry__free(u->gso_first);
	ferry__free(u->gso_segs);
	ferry__free(u->gso_ctl);
	ferry__free(u->segs);
	ferry__free(u->seg_free);
	ferry__free(u->pend);
}

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
	       (a->msg_namelen == 0 || memcmp(a->msg_name, b->msg_name, a->msg_namelen) == 0);
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
	if (!u->pad || len * 2 < seg || seg - len > sizeof(udp_zeros) || i + 1 >= u->tx_n ||
	    u->tx[i + 1].len != seg || total + 2 * seg > UDP_GSO_BYTES_MAX)
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
		*out = (struct msghdr){.msg_name = m->msg_name, .msg_namelen = m->msg_namelen,
		                       .msg_iov = u->gso_iov + iov};
		for (uint32_t j = 0; j < k; j++, i++) {
			struct msghdr *p = &u->tx_msgs[i].msg_hdr;
			memcpy(u->gso_iov + iov, p->msg_iov, p->msg_iovlen * sizeof(struct iovec));
			iov += (uint32_t)p->msg_iovlen;
			out->msg_iovlen += p->msg_iovlen;
			if (u->tx[i].len < seg && j + 1 < k) { /* padded */
				size_t pad = seg - u->tx[i].len;
				u->gso_iov[iov++] = (struct iovec){.iov_base = udp_zeros, .iov_len = pad};
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

static int udp_flush(ferry_ep *ep)
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

static int udp_send(ferry_ep *ep, const ferry_addr *to, const void *hdr,
                    size_t hdr_len, ferry_buf_iter *payload)
{
	udp_ep *u = udp_of(ep);
	size_t plen = payload != NULL ? payload->left : 0;
	if (hdr_len > FERRY_DRIVER_HDR_MAX || hdr_len + plen > u->max_payload)
		return -EMSGSIZE;
	if (to->len == 0 || to->len > FERRY_ADDR_BYTES)
		return -EINVAL;
	if (u->tx_n == u->tx_slots) {
		u->cnt.tx_ring_full++;
		udp_flush(ep);
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
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR((struct msghdr *)m, c)) {
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

static int udp_poll(ferry_ep *ep, ferry_pkt **pkts, int max)
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

static void udp_release(ferry_ep *ep, ferry_pkt *pkt)
{
	udp_ep *u = udp_of(ep);
	if (u->gro) {
		udp_rx_seg *g = ferry_container_of(pkt, udp_rx_seg, pkt);
		udp_rx_slot *s = &u->rx[g->slot];
		u->seg_free[u->seg_nfree++] = (uint32_t)(g - u->segs);
		if (--s->refs == 0 && s->handed == s->nseg)
			u->rx_free[u->rx_nfree++] = g->slot;
		return;
	}
	udp_rx_slot *s = ferry_container_of(pkt, udp_rx_slot, pkt);
	u->rx_free[u->rx_nfree++] = (uint32_t)(s - u->rx);
}

static int udp_resolve(ferry_ep *ep, const ferry_loc *peer, ferry_addr *out)
{
	udp_ep *u = udp_of(ep);
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = ferry__inet_resolve(peer, false, SOCK_DGRAM, &ss, &sl, ep->errmsg,
	                             sizeof(ep->errmsg));
	if (rc != 0)
		return rc;
	if (ss.ss_family != u->family || sl > FERRY_ADDR_BYTES) {
		snprintf(ep->errmsg, sizeof(ep->errmsg),
		         "host '%s' is not of this endpoint's address family",
		         ferry_loc_get(peer, "host"));
		return FERRY_EBADLOC;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out->u.bytes, &ss, sl);
	out->len = sl;
	/* A client endpoint talks to one server: connecting it caches the
	 * route (no lookup per sendmmsg), filters what it receives to that
	 * peer, and surfaces ICMP errors. */
	if (!u->listening && !u->connected &&
	    connect(ep->fd, (struct sockaddr *)&ss, sl) == 0) {
		u->connected = true;
		u->peer = *out;
	}
	return 0;
}

static void udp_caps(ferry_ep *ep, ferry_caps *out)
{
	udp_ep *u = udp_of(ep);
	*out = (ferry_caps){.max_payload = u->max_payload,
	                    .inline_bytes = u->max_payload,
	                    .tx_slots = u->tx_slots,
	                    .rx_batch = UDP_RX_BATCH_MAX,
	                    .rx_pool = u->gro ? u->nsegs : u->rx_slots};
}

static int udp_ctl(ferry_ep *ep, int op, void *arg)
{
	udp_ep *u = udp_of(ep);
	if (op == FERRY_CTL_LOCAL_ADDR) {
		/* Asked afresh: once connect() has picked a route, the socket
		 * has a real source address instead of the wildcard. */
		struct ferry_ctl_addr *a = arg;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (a->conn != NULL)
			return -EINVAL;
		if (getsockname(ep->fd, (struct sockaddr *)&ss, &sl) != 0)
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
		return ferry__inet_locator((struct sockaddr *)&u->local, l->out, l->len) < 0
		               ? -ERANGE
		               : 0;
	}
	if (op == FERRY_CTL_COUNTERS) {
		struct ferry_ctl_counters *c = arg;
#define UDP_CNT(f) c->cb(c->arg, #f, u->cnt.f)
		UDP_CNT(sendmmsg_calls);
		UDP_CNT(sendmmsg_pkts);
		UDP_CNT(recvmmsg_calls);
		UDP_CNT(recvmmsg_pkts);
		UDP_CNT(send_calls);
		UDP_CNT(recv_calls);
		UDP_CNT(tx_inline);
		UDP_CNT(tx_eagain);
		UDP_CNT(tx_send_errors);
		UDP_CNT(tx_ring_full);
		UDP_CNT(tx_bounce_copies);
		UDP_CNT(tx_copy_bytes);
		UDP_CNT(rx_pool_empty);
		UDP_CNT(rx_truncated);
		UDP_CNT(sockbuf_forced);
		UDP_CNT(gso_sends);
		UDP_CNT(gso_padded);
		UDP_CNT(gso_pad_bytes);
		UDP_CNT(gso_pkts);
		UDP_CNT(gro_trains);
		UDP_CNT(gro_pkts);
		UDP_CNT(gso_unavailable);
		UDP_CNT(gro_unavailable);
#undef UDP_CNT
		c->cb(c->arg, "max_payload", u->max_payload);
		c->cb(c->arg, "rx_free", u->gro ? u->seg_nfree : u->rx_nfree + u->rx_nposted);
		c->cb(c->arg, "gso", u->gso);
		c->cb(c->arg, "gro", u->gro);
		return 0;
	}
	return -ENOTSUP;
}

static const ferry_dgram_ops udp_dgram_ops = {
	.send = udp_send,
	.flush = udp_flush,
	.poll = udp_poll,
	.release = udp_release,
	.resolve = udp_resolve,
	.caps = udp_caps,
	.ctl = udp_ctl,
	.close = udp_close,
};

const ferry_driver_ops ferry__udp_driver = {
	.name = "udp",
	.kind = FERRY_DRIVER_DATAGRAM,
	.wrapper = false,
	.ep_size = sizeof(udp_ep),
	.key_tables = udp_key_tables,
	.probe = NULL,
	.open = udp_open,
	.dgram = &udp_dgram_ops,
};
