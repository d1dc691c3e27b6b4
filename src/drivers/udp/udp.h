/* udp's private parts, shared by udp.c (open, close, resolve, caps, ctl,
 * the ops table), udp_tx.c (the transmit ring, UDP_SEGMENT runs, padding)
 * and udp_rx.c (the receive pool, recvmmsg, UDP_GRO trains). */
#ifndef FERRY_DRIVERS_UDP_H
#define FERRY_DRIVERS_UDP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ferry/driver.h"

#define UDP_TX_SLOTS_DEFAULT 64
/* ... where packets are link-sized (segmentation offload on): a ring that
 * holds a whole window's burst (1,024 x 1,472 B, 1.5 MB), so it leaves in
 * one flush. With 64 slots a 256 KiB response left in three sendmmsg
 * calls from within the transport's burst, and READ of 256 KiB over veth
 * at MTU 1500 took 114-116 us against 92-98 us (1 MiB: 312-321 against
 * 272-274; block mode, paired runs). A slot is ~1.3 KB. */
#define UDP_TX_SLOTS_GSO_DEFAULT 1024
#define UDP_RX_SLOTS_DEFAULT     512
#define UDP_RX_BATCH_MAX         64
#define UDP_IOV_MAX              8 /* payload pieces referenced per packet */
/* Packets up to this size are copied whole into their slot: one contiguous
 * buffer lets a lone packet leave with send() instead of sendmsg/sendmmsg,
 * which import and walk iovecs (about 0.4 us per round trip here). */
#define UDP_INLINE_BYTES 1024
_Static_assert(UDP_INLINE_BYTES >= FERRY_DRIVER_HDR_MAX, "a slot holds any header");
#define UDP_SOCKBUF_DEFAULT_BYTES  (8u << 20)
#define UDP_MAX_DGRAM_V4_BYTES     65507u
#define UDP_MAX_DGRAM_V6_BYTES     65527u
#define UDP_FALLBACK_PAYLOAD_BYTES 1472u /* 1500-byte Ethernet, IPv4 */
/* Default cap on loopback-sized paths. The kernel builds a datagram in one
 * buffer with its headers and skb_shared_info; past about 65.2 KB that
 * buffer needs a 128 KiB allocation and a 65507-byte datagram took 2.3x the
 * round trip of a 65160-byte one here (ferry-bench, 127.0.0.1). 63 KiB keeps
 * a margin; mtu= still allows up to the protocol maximum. */
#define UDP_DEFAULT_PAYLOAD_CAP_BYTES 64512u
#define UDP_MIN_PAYLOAD_BYTES         256u
/* Segmentation offload (UDP_SEGMENT): consecutive equal-size packets to one
 * peer leave as one send of up to this many segments and bytes; the kernel
 * (or the NIC) cuts them. Below that size per packet there is a gain. */
#define UDP_GSO_SEGS_MAX  64
#define UDP_GSO_BYTES_MAX 65000u
/* Receive coalescing (UDP_GRO): the kernel hands a train of equal segments
 * from one peer as one datagram of up to 64 KiB; each segment becomes a
 * packet of its own. Slots are then this big, and fewer. */
#define UDP_GRO_SLOT_BYTES 65536u

typedef struct udp_tx_slot {
	uint8_t hdr[UDP_INLINE_BYTES];     /* header, or the whole small packet */
	struct iovec iov[UDP_IOV_MAX + 2]; /* header, pieces, bounce */
	uint8_t *bounce; /* lazily allocated copy space (files, many pieces) */
	ferry_addr to;
	uint32_t len; /* header + payload bytes */
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
	uint64_t tx_eagain, tx_send_errors, tx_ring_full, tx_bounce_copies, tx_copy_bytes,
	        rx_pool_empty, rx_truncated, sockbuf_forced;
	/* offloads: sends carrying several segments and the packets in them;
	 * received trains and their packets; offloads the kernel refused
	 * (then the plain path is used: counted once per socket) */
	uint64_t gso_sends, gso_pkts, gro_trains, gro_pkts, gso_unavailable,
	        gro_unavailable;
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
	} * gso_ctl;
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

static inline udp_ep *udp_of(ferry_ep *ep)
{
	return ferry_container_of(ep, udp_ep, base);
}

/* udp_tx.c */
int ferry__udp_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                    ferry_buf_iter *payload);
int ferry__udp_flush(ferry_ep *ep);
/* udp_rx.c */
int ferry__udp_poll(ferry_ep *ep, ferry_pkt **pkts, int max);

#endif
