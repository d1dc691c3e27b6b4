/* infud internals shared by infud.c (open/close, address handles, resolve,
 * ctl) and infud_io.c (transmit and receive). */
#ifndef FERRY_INFUD_H
#define FERRY_INFUD_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "base/alloc.h"
#include "base/loc.h"
#include "drivers/kit/ib.h"
#include "drivers/kit/inet.h"

#define INFUD_QKEY 0x46525955u /* "FRYU"; high bit clear: not a controlled QKey */
/* GRH (or 20 zero bytes + IPv4 header) before each datagram */
#define INFUD_GRH_BYTES        40u
#define INFUD_MIN_MTU_BYTES    256u
#define INFUD_TX_SLOTS_DEFAULT 128
#define INFUD_RX_SLOTS_DEFAULT 512
#define INFUD_RX_SLOTS_MIN     16
/* Loans are held until the transport is done with a message, so a 16 MiB
 * request holds ~17k buffers: the pool grows in chunks (registered as they
 * are added) up to rxmax buffers. */
#define INFUD_RX_MAX_DEFAULT          32768
#define INFUD_RX_CHUNKS_MAX           64
#define INFUD_SIGNAL_EVERY            16  /* one signaled send WR per this many */
#define INFUD_TX_REAP_BATCH           32  /* send completions per ibv_poll_cq */
#define INFUD_RX_BATCH_MAX            64  /* receive completions per ibv_poll_cq */
#define INFUD_RX_REPOST_BATCH         32  /* released buffers per ibv_post_recv */
#define INFUD_INLINE_WANT_BYTES       256 /* max_inline_data asked of the QP */
#define INFUD_AH_SLOTS                256 /* AH cache table size (power of two) */
#define INFUD_AH_MAX                  192 /* entries before the cache is emptied */
#define INFUD_BOOT_EVERY              64 /* spin mode: serve the bootstrap socket every Nth poll */
#define INFUD_BOOT_TIMEOUT_DEFAULT_MS 5000
#define INFUD_TX_WAIT_US              5000 /* full ring: spin this long for completions */
#define INFUD_DRAIN_WAIT_US           200000 /* AH eviction: wait this long for sends in flight */
#define INFUD_CQ_ACK_BATCH            64 /* CQ events acknowledged per ibv_ack_cq_events */
#define INFUD_SLOT_ALIGN_BYTES        64

typedef struct infud_ah {
	uint8_t gid[16];
	uint16_t lid;
	bool used;
	struct ibv_ah *ah;
} infud_ah;

typedef struct infud_rx_slot {
	ferry_pkt pkt;
	struct ibv_recv_wr wr;
	struct ibv_sge sge;
} infud_rx_slot;

typedef struct infud_rx_chunk {
	uint8_t *mem;
	size_t len;
	struct ibv_mr *mr;
	infud_rx_slot *slot;
} infud_rx_chunk;

typedef struct infud_counters {
	uint64_t ah_created, ah_cache_hits, ah_evictions, ah_create_errors;
	uint64_t tx_inline, tx_signaled, tx_unsignaled, tx_ring_waits, tx_ring_drops;
	uint64_t tx_post_errors, post_send_calls, post_recv_calls, rx_reposted,
	        rx_post_errors;
	uint64_t cq_polls, wc_errors, rx_short, qp_recoveries, rx_pool_grows;
	uint64_t cq_arms, cq_events, boot_answers, boot_bad, boot_local;
} infud_counters;

typedef struct infud_ep infud_ep;
struct infud_ep {
	ferry_ep base;
	ferry_ib_dev dev;
	bool listening;
	uint32_t max_payload;
	unsigned boot_timeout_ms;
	ferry_ib_addr self;
	struct ibv_comp_channel *chan;
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *qp;
	/* transmit ring: sequence numbers, slot = seq % tx_slots; [tx_tail,
	 * tx_posted) posted and not known complete, [tx_posted, tx_head) queued */
	uint8_t *tx_mem;
	size_t tx_mem_len, tx_stride;
	struct ibv_mr *tx_mr;
	struct ibv_send_wr *tx_wr;
	struct ibv_sge *tx_sge;
	uint32_t tx_slots;
	uint64_t tx_head, tx_posted, tx_tail;
	/* receive pool: rx_slots buffers posted at most (the receive queue's
	 * depth), rx_total in the pool, the others loaned out or free */
	infud_rx_chunk rx_chunk[INFUD_RX_CHUNKS_MAX];
	uint32_t rx_nchunks, rx_chunk_slots;
	size_t rx_stride;
	uint32_t rx_slots, rx_nposted, rx_total, rx_max;
	infud_rx_slot *repost_head, *repost_tail; /* free list, linked through wr.next */
	uint32_t nrepost;
	/* block mode */
	bool armed;
	uint32_t unacked_events;
	/* address handles (open addressing, linear probing) */
	infud_ah ah[INFUD_AH_SLOTS];
	uint32_t nah;
	infud_ah *ah_last;
	struct ibv_ah *self_ah; /* fence target (infud_tx_drain) */
	/* bootstrap (listener) */
	int boot_fd;
	struct sockaddr_storage boot_addr;
	uint32_t boot_tick;
	infud_ep *local_next; /* process-wide list of listeners */
	bool local_listed;
	infud_counters cnt;
};

static inline infud_ep *infud_of(ferry_ep *ep)
{
	return ferry_container_of(ep, infud_ep, base);
}

static inline uint64_t ferry__infud_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* infud.c */
struct ibv_ah *ferry__infud_ah_get(infud_ep *u, const ferry_ib_addr *peer);
/* infud_io.c */
size_t ferry__infud_round_up(size_t n);
void *ferry__infud_map(size_t len);
void ferry__infud_repost_add(infud_ep *u, infud_rx_slot *s);
int ferry__infud_rx_grow(infud_ep *u);
void ferry__infud_repost(infud_ep *u);
void ferry__infud_reap(infud_ep *u);
bool ferry__infud_tx_drain(infud_ep *u);
void ferry__infud_qp_recover(infud_ep *u);
void ferry__infud_boot_serve(infud_ep *u);
int ferry__infud_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                      ferry_buf_iter *payload);
int ferry__infud_flush(ferry_ep *ep);
int ferry__infud_poll(ferry_ep *ep, ferry_pkt **pkts, int max);
void ferry__infud_release(ferry_ep *ep, ferry_pkt *pkt);

#endif
