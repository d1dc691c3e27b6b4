/* udp: the kernel UDP driver. Non-blocking socket, IPv4 or IPv6; batched
 * receive with recvmmsg into a pool of slots that are loaned up zero-copy;
 * batched send with sendmmsg from a ring of transmit slots that reference
 * the caller's payload (the kernel does the only copy), so a sender never
 * waits per packet. Max payload comes from the path MTU (on loopback, ~64 KB
 * datagrams) unless the locator sets mtu=. This file: open, close,
 * resolve, caps, ctl and the ops table; transmit is udp_tx.c, receive
 * udp_rx.c, the shared structs udp.h. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/loc.h"
#include "drivers/kit/inet.h"
#include "udp.h"

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
        [UDP_K_MTU] = {.name = "mtu",
                       .kind = FERRY_LOC_UINT,
                       .min = UDP_MIN_PAYLOAD_BYTES,
                       .max = UDP_MAX_DGRAM_V6_BYTES},
        [UDP_K_SNDBUF] = {.name = "sndbuf",
                          .kind = FERRY_LOC_UINT,
                          .min = 4096,
                          .max = 1u << 30,
                          .dflt = UDP_SOCKBUF_DEFAULT_BYTES},
        [UDP_K_RCVBUF] = {.name = "rcvbuf",
                          .kind = FERRY_LOC_UINT,
                          .min = 4096,
                          .max = 1u << 30,
                          .dflt = UDP_SOCKBUF_DEFAULT_BYTES},
        [UDP_K_RXSLOTS] = {.name = "rxslots",
                           .kind = FERRY_LOC_UINT,
                           .min = 16,
                           .max = 1u << 20,
                           .dflt = UDP_RX_SLOTS_DEFAULT},
        [UDP_K_TXSLOTS] = {.name = "txslots",
                           .kind = FERRY_LOC_UINT,
                           .min = 1,
                           .max = 1u << 16,
                           .dflt = UDP_TX_SLOTS_DEFAULT},
        [UDP_K_REUSEPORT] = {.name = "reuseport", .kind = FERRY_LOC_UINT, .max = 1},
        [UDP_K_GSO] = {.name = "gso", .kind = FERRY_LOC_UINT, .max = 1, .dflt = 1},
        [UDP_K_GRO] = {.name = "gro", .kind = FERRY_LOC_UINT, .max = 1, .dflt = 1},
};
static const ferry_loc_key *const udp_key_tables[] = {udp_keys, ferry__inet_keys, NULL};

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
	int rc = ferry__inet_resolve(loc, listen, SOCK_DGRAM, &ss, &sl, msg,
	                             sizeof(ep->errmsg));
	if (rc != 0)
		goto bad;
	ferry_loc_val v[UDP_K_COUNT];
	if ((rc = ferry_loc_read(loc, udp_keys, v, msg, sizeof(ep->errmsg))) != 0)
		goto bad;
	uint64_t sndbuf = v[UDP_K_SNDBUF].u, rcvbuf = v[UDP_K_RCVBUF].u;
	uint64_t rxslots = v[UDP_K_RXSLOTS].u, txslots = v[UDP_K_TXSLOTS].u,
	         mtu = v[UDP_K_MTU].u;
	bool reuseport = v[UDP_K_REUSEPORT].u, gso = v[UDP_K_GSO].u, gro = v[UDP_K_GRO].u;
	if (ss.ss_family != AF_INET6 && mtu > UDP_MAX_DGRAM_V4_BYTES) {
		snprintf(msg, sizeof(ep->errmsg),
		         "key 'mtu': value '%s' out of range [%u, %u]",
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
		if (reuseport &&
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
			return -errno;
		if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
			rc = -errno;
			snprintf(msg, sizeof(ep->errmsg), "bind: %s%s", strerror(errno),
			         rc == -EADDRINUSE && !reuseport
			                 ? " (reuseport=1 shares a port)"
			                 : "");
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
	uint32_t cap =
	        u->family == AF_INET6 ? UDP_MAX_DGRAM_V6_BYTES : UDP_MAX_DGRAM_V4_BYTES;
	if (mtu != 0) {
		u->max_payload = (uint32_t)mtu;
	} else {
		struct sockaddr_storage probe = listen ? u->local : ss;
		if (probe.ss_family == AF_INET &&
		    ((struct sockaddr_in *)&probe)->sin_port == 0)
			((struct sockaddr_in *)&probe)->sin_port = htons(9);
		if (probe.ss_family == AF_INET6 &&
		    ((struct sockaddr_in6 *)&probe)->sin6_port == 0)
			((struct sockaddr_in6 *)&probe)->sin6_port = htons(9);
		unsigned p = ferry__inet_path_payload((struct sockaddr *)&probe, sl);
		/* A listener on a real interface: that interface's MTU (the
		 * route to its own address is lo's 64 KiB). */
		unsigned own =
		        listen ? ferry__inet_if_payload((struct sockaddr *)&u->local) : 0;
		if (own != 0 && (p == 0 || own < p))
			p = own;
		if (cap > UDP_DEFAULT_PAYLOAD_CAP_BYTES)
			cap = UDP_DEFAULT_PAYLOAD_CAP_BYTES;
		u->max_payload = p == 0 ? UDP_FALLBACK_PAYLOAD_BYTES : p > cap ? cap : p;
	}

	if (gso && !v[UDP_K_TXSLOTS].set && u->max_payload * 2 <= UDP_GSO_BYTES_MAX)
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
		return ferry__inet_locator((struct sockaddr *)&u->local, l->out, l->len) <
		                       0
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
		c->cb(c->arg, "rx_free",
		      u->gro ? u->seg_nfree : u->rx_nfree + u->rx_nposted);
		c->cb(c->arg, "gso", u->gso);
		c->cb(c->arg, "gro", u->gro);
		return 0;
	}
	return -ENOTSUP;
}

static const ferry_dgram_ops udp_dgram_ops = {
        .send = ferry__udp_send,
        .flush = ferry__udp_flush,
        .poll = ferry__udp_poll,
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
