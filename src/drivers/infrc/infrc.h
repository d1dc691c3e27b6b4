/* infrc internals shared by its files: infrc.c (ops, completions, the
 * message data path), infrc_conn.c (TCP setup exchange, QP state changes,
 * liveness) and infrc_mem.c (registered memory: receive pool, copy blocks,
 * the staging/landing region cache). docs/drivers/infrc.md has the design. */
#ifndef FERRY_INFRC_H
#define FERRY_INFRC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "drivers/kit/ib.h"
#include "drivers/kit/txpay.h"
#include "ferry/driver.h"

#define INFRC_HDR_MAX            64          /* transport header bytes */
#define INFRC_BUF_DEFAULT        (16u << 10) /* receive buffer = largest chunk */
#define INFRC_BUF_MIN            256u
#define INFRC_BUF_MAX            (1u << 20)
#define INFRC_RXBUFS_DEFAULT     256u
#define INFRC_RXBUFS_MIN         16u
#define INFRC_RXBUFS_MAX         65536u
#define INFRC_PULL_MIN_DEFAULT   (64u << 10)
#define INFRC_TX_SLOTS           32u          /* registered send slots per connection */
#define INFRC_SQ_DEPTH           128u         /* send queue WRs per QP */
#define INFRC_SQ_RESERVE         4u           /* WRs data chunks leave for READ/ctrl */
#define INFRC_SIGNAL_EVERY       8u           /* one signaled send per this many */
#define INFRC_POST_BATCH         16           /* WRs chained per ibv_post_send */
#define INFRC_CREDITS_MAX        32u          /* credits granted to each peer at most */
#define INFRC_CREDIT_DATA_MIN    2u           /* a data chunk leaves one for control */
#define INFRC_REPOST_BATCH       16u          /* receive buffers reposted at once */
#define INFRC_CQ_BATCH           32           /* completions reaped per ibv_poll_cq */
#define INFRC_CQ_POLLS_MAX       8            /* ibv_poll_cq rounds per poll() */
#define INFRC_EPOLL_EVERY        16           /* spin mode: sockets every Nth poll */
#define INFRC_CONNS_MAX          64u          /* connections per endpoint (CQ sizing) */
#define INFRC_INLINE_WANT        256u         /* max_inline_data asked of the QP */
#define INFRC_COPY_BLK_BYTES     (256u << 10) /* rx copy fallback block */
#define INFRC_REGION_MIN_SHIFT   16           /* smallest staging/landing class: 64 KiB */
#define INFRC_REGION_CLASSES     16           /* ... up to 2 GiB */
#define INFRC_REGION_CACHE_BYTES (64ull << 20) /* idle registered bytes kept */
#define INFRC_HELLO_BYTES        64
#define INFRC_HELLO_MAGIC        0x46525943u /* "FRYC" */
#define INFRC_HELLO_VERSION      1
#define INFRC_DESC_BYTES         24 /* pull descriptor after the header */
#define INFRC_QP_TIMEOUT         16 /* 4.096 us * 2^16 = 268 ms ack timeout */
#define INFRC_QP_RETRY           7
#define INFRC_QP_RNR_RETRY       7 /* 7 = retry forever on RNR NAK */
#define INFRC_QP_MIN_RNR_TIMER   1 /* 0.01 ms */
#define INFRC_RD_ATOMIC_MAX      16

/* Immediate data of every SEND (big-endian on the wire):
 *   bits 31..28 type, 27..16 pull completions acknowledged (DONE count),
 *   15..0 credits returned. */
enum { INFRC_T_DATA = 1, INFRC_T_DESC = 2, INFRC_T_CTRL = 3 };
#define INFRC_IMM(type, done, cred)                                                      \
	(((uint32_t)(type) << 28) | ((uint32_t)(done) << 16) | (uint32_t)(cred))
#define INFRC_IMM_DONE_MAX 0xfffu
#define INFRC_IMM_CRED_MAX 0xffffu

enum { INFRC_LOAN_RXB = 1, INFRC_LOAN_BLK, INFRC_LOAN_REGION };

/* Every loanable thing starts with this: release() tells them apart. */
typedef struct infrc_loan {
	ferry_pkt pkt;
	uint8_t kind;
} infrc_loan;

/* A receive buffer of the shared pool. */
typedef struct infrc_rxb {
	infrc_loan l;
	struct infrc_rxb *next; /* repost list, or a connection's held queue */
	uint32_t refs;          /* loans out + 1 while the driver reads it */
	uint32_t idx;
	uint32_t len, imm; /* of the completion (held queue) */
} infrc_rxb;

/* Receive copy fallback: plain memory, loaned like the pool. */
typedef struct infrc_blk {
	infrc_loan l;
	struct infrc_blk *next_free, *next_all;
	uint32_t refs;
	uint8_t *mem;
} infrc_blk;

/* Registered region: pull staging (sender) or landing (receiver). */
typedef struct infrc_region {
	infrc_loan l;
	struct infrc_region *next;
	struct ibv_mr *mr;
	uint8_t *mem;
	size_t size;
	int cls;
	uint32_t refs;
} infrc_region;

/* A queued message. */
typedef struct infrc_txm {
	struct infrc_txm *next;
	void *cookie;
	uint8_t hdr[INFRC_HDR_MAX];
	uint32_t hdr_len, hdr_off;
	uint64_t len;        /* payload bytes */
	ferry__txpay pay;    /* the payload, borrowed or (detached) copied */
	infrc_region *stage; /* pull: the exposed copy, until DONE */
	bool ready;          /* left the queue: written (push) or DONE (pull) */
	/* Its payload could not be read (err: the read's error): never sent
	 * whole; dropped if nothing of it was posted, else the connection
	 * resets. detach_failed: found by detach (its call has ended: no
	 * on_send_failed). */
	int err;
	bool detach_failed;
} infrc_txm;

enum {
	INFRC_C_CONNECTING = 1, /* client: TCP connect in progress */
	INFRC_C_HELLO,          /* waiting for the peer's hello */
	INFRC_C_READY_WAIT,     /* server: hello sent, waiting for READY */
	INFRC_C_UP,
	INFRC_C_DEAD,
};

typedef struct infrc_conn {
	ferry_conn base;
	struct infrc_conn *next, *prev;
	struct infrc_conn *grave_next;
	struct infrc_conn *hnext; /* qpn hash chain */
	uint32_t id;
	uint8_t state;
	bool accepted;
	bool reported; /* the transport knows it (connect or UP) */
	bool in_hash;
	int fd;               /* setup and liveness socket */
	uint64_t deadline_us; /* setup bound */
	uint8_t hbuf[INFRC_HELLO_BYTES];
	uint32_t hhave;
	/* verbs */
	struct ibv_qp *qp;
	uint32_t qpn, psn;
	struct ibv_mr *tx_mr;
	uint8_t *tx_mem;               /* INFRC_TX_SLOTS * slot bytes */
	uint32_t slot_bytes;           /* chunk bytes: min(our slot, peer's buffer) */
	uint32_t slot_head, slot_tail; /* allocated [tail, head) */
	uint32_t post_seq, done_seq;   /* WRs posted / known complete */
	uint32_t unsig_run;
	uint8_t wr_slot[INFRC_SQ_DEPTH]; /* WR seq % depth used a slot */
	uint32_t credits;                /* peer buffers we may fill */
	uint32_t ret;                    /* credits to give back */
	uint32_t grant;                  /* credits granted to the peer at setup */
	uint32_t done_pending;           /* pull bodies read, DONE not sent */
	bool peer_pull;
	/* receive */
	uint8_t hdr[INFRC_HDR_MAX];
	uint32_t hdr_have;
	bool in_body;
	ferry_body_sink sink;
	uint64_t body_left;
	int sink_err;
	infrc_region *reading;       /* pull body being RDMA-read */
	infrc_rxb *held, *held_tail; /* chunks waiting behind that read */
	/* transmit */
	infrc_txm *txq, *txq_tail;
	/* Left txq, in order: on_sent runs for the ready ones at the head, so
	 * a pushed message never overtakes a pulled one still being read. */
	infrc_txm *sentq, *sentq_tail;
	uint64_t backlog;
} infrc_conn;

/* clang-format off */
#define INFRC_COUNTERS(X)                                                      \
	X(connects) X(connect_failures) X(connect_timeouts) X(accepts)         \
	X(accept_errors) X(setup_errors) X(conns_up) X(conns_closed)           \
	X(conns_reset) X(qp_errors) X(sends) X(send_inline) X(signaled)        \
	X(unsignaled) X(post_calls) X(ctrl_msgs) X(credits_waits)              \
	X(tx_blocked) X(tx_user_bytes) X(tx_copy_bytes) X(tx_file_copy_bytes)  \
	X(detach_copy_bytes) X(pull_msgs) X(pull_bytes) X(rdma_reads)          \
	X(rdma_read_bytes) X(rdma_writes) X(recv_chunks) X(recv_bytes)         \
	X(rx_user_bytes) X(rx_loans) X(rx_copy_bytes) X(rx_sink_copy_bytes)    \
	X(rx_reposted) X(repost_calls) X(rx_held) X(mr_registrations)          \
	X(mr_deregistrations) X(cq_polls) X(cq_events) X(cq_arms)              \
	X(epoll_waits) X(tx_file_read_errors)
/* clang-format on */

typedef struct infrc_counters {
#define INFRC_CNT_FIELD(f) uint64_t f;
	INFRC_COUNTERS(INFRC_CNT_FIELD)
#undef INFRC_CNT_FIELD
} infrc_counters;

enum { INFRC_LARGE_PUSH = 0, INFRC_LARGE_PULL = 1 };

typedef struct infrc_ep {
	ferry_ep base;
	ferry_ib_dev dev;
	bool listening;
	int lfd;
	struct sockaddr_storage local;
	uint64_t connect_timeout_us;
	uint32_t bufsize, rxbufs, pull_min, grant;
	int large;
	uint32_t max_inline;
	uint32_t conns_max;
	/* completions */
	struct ibv_comp_channel *chan;
	struct ibv_cq *cq;
	int cqe;
	bool armed;
	uint32_t unacked_events;
	/* receive pool */
	struct ibv_srq *srq;
	struct ibv_mr *rx_mr;
	uint8_t *rx_mem;
	size_t rx_mem_bytes;
	infrc_rxb *rxb; /* rxbufs entries */
	infrc_rxb *repost, *repost_tail;
	uint32_t nrepost, posted; /* waiting to be posted / in the SRQ */
	uint32_t rx_loaned;       /* pool buffers with loans out */
	infrc_blk *blk_all, *blk_free, *blk_cur;
	uint32_t blk_off;
	/* staging/landing regions */
	infrc_region *regions[INFRC_REGION_CLASSES];
	uint64_t region_idle_bytes;
	/* connections */
	infrc_conn *conns, *grave;
	infrc_conn *qpn_hash[256];
	uint32_t nconns, nsetup, next_id;
	uint32_t polls;
	infrc_txm *txm_free;
	infrc_counters cnt;
} infrc_ep;

static inline infrc_ep *infrc_of(ferry_ep *ep)
{
	return ferry_container_of(ep, infrc_ep, base);
}
static inline infrc_conn *infrc_conn_of(ferry_conn *c)
{
	return ferry_container_of(c, infrc_conn, base);
}

/* infrc_mem.c */
int ferry__infrc_rx_open(infrc_ep *e);
void ferry__infrc_rx_close(infrc_ep *e);
void ferry__infrc_rxb_put(infrc_ep *e, infrc_rxb *b);
int ferry__infrc_repost(infrc_ep *e, bool all);
infrc_blk *ferry__infrc_blk_room(infrc_ep *e, uint32_t need);
void ferry__infrc_blk_put(infrc_ep *e, infrc_blk *b);
infrc_region *ferry__infrc_region_get(infrc_ep *e, size_t len);
void ferry__infrc_region_put(infrc_ep *e, infrc_region *r);
void ferry__infrc_regions_close(infrc_ep *e);

/* infrc_conn.c */
int ferry__infrc_listen(infrc_ep *e, const ferry_loc *loc);
int ferry__infrc_connect(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out);
int ferry__infrc_accept_all(infrc_ep *e);
/* The setup/liveness socket of c is readable (or failed). */
void ferry__infrc_sock_event(infrc_ep *e, infrc_conn *c, uint32_t events);
void ferry__infrc_check_timeouts(infrc_ep *e);
infrc_conn *ferry__infrc_conn_by_qpn(infrc_ep *e, uint32_t qpn);
/* Tear c down: with upcalls, on_sent for every message then conn_event. */
void ferry__infrc_conn_destroy(infrc_ep *e, infrc_conn *c, int event, int err,
                               bool upcalls);
void ferry__infrc_reap(infrc_ep *e);
/* Setup done on our side: report UP (server side: on READY or first data). */
void ferry__infrc_conn_up(infrc_ep *e, infrc_conn *c);

/* Send-queue entries posted and not yet known complete. */
static inline uint32_t ferry__infrc_sq_used(const infrc_conn *c)
{
	return c->post_seq - c->done_seq;
}

/* infrc.c */
void ferry__infrc_txm_put(infrc_ep *e, infrc_txm *m);
/* Reset c (conn_event RESET with err). */
void ferry__infrc_conn_fail(infrc_ep *e, infrc_conn *c, int err);

/* infrc_rx.c */
void ferry__infrc_release(ferry_ep *ep, ferry_pkt *pkt);
/* A received DATA/descriptor chunk in b: feed the connection's stream. */
void ferry__infrc_rx_chunk(infrc_ep *e, infrc_conn *c, infrc_rxb *b);
/* The RDMA READ of a pulled body completed. */
void ferry__infrc_read_done(infrc_ep *e, infrc_conn *c);

/* infrc_tx.c: messages and transmit */
int ferry__infrc_flush(ferry_ep *ep);
int ferry__infrc_detach(ferry_conn *fc, void *cookie);
bool ferry__infrc_deliver_ready(infrc_ep *e, infrc_conn *c);
int ferry__infrc_send_msg(ferry_conn *fc, const void *hdr, size_t hdr_len,
                          ferry_buf_iter *payload, void *cookie);
void ferry__infrc_conn_close(ferry_conn *fc);
uint32_t ferry__infrc_ret_threshold(const infrc_conn *c);

#endif
