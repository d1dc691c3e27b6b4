/* The tcp engine's internals, shared by its files and with the splice
 * driver (splice is tcp with the zero-copy file path switched on: sendfile
 * for file regions, splice for bodies that go to an fd).
 *
 * Files: tcp.c (endpoint open/close, poll, caps, counters, the ops tables),
 * tcp_conn.c (connect, accept, socket options, teardown), tcp_tx.c (the
 * send queue: gather writes, file regions by pread or sendfile, detach),
 * tcp_rx.c (headers, bodies into loans, fds or splice) and tcp_pool.c
 * (receive blocks and queue entries). docs/drivers/tcp.md has the design. */
#ifndef FERRY_TCP_H
#define FERRY_TCP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "drivers/kit/txpay.h"
#include "ferry/driver.h"

/* Bytes of a tcp endpoint (both drivers' ep_size; checked below). */
#define FERRY_TCP_EP_BYTES 1024

#define TCP_BLK_BYTES    (256u << 10) /* receive block */
#define TCP_BLK_MIN_ROOM 4096u        /* a block with less room left is retired */
#define TCP_IOV_MAX      64           /* pieces gathered per sendmsg */
/* Bytes per sendmsg: a longer queue goes out in several calls in a row.
 * One call with all of it (megabytes with a few large replies queued) keeps
 * the socket locked while the kernel copies it, and the receiver's window
 * updates wait in the backlog meanwhile (our reading); 512 KiB calls measured
 * 7-17% more 1 MiB throughput on loopback (docs/drivers/tcp.md). */
#define TCP_SEND_CHUNK (512u << 10)
#define TCP_HDR_MAX    64 /* transport header bytes */
/* Messages up to this size (header + payload) are copied whole into their
 * queue entry: one contiguous piece leaves with send(), which is cheaper
 * than sendmsg's iovec import for a small message. */
#define TCP_INLINE_BYTES          1024
#define TCP_DIRECT_CONNS          4  /* read directly every poll up to this many */
#define TCP_EPOLL_EVERY           16 /* spin mode: epoll every Nth poll */
#define TCP_READS_PER_POLL        16 /* reads per connection per poll */
#define TCP_PIPE_BYTES            (1u << 20)   /* splice pipe size asked for */
#define TCP_SCRATCH_BYTES         (256u << 10) /* pread bounce for file regions */
#define TCP_BACKLOG_PAUSE_DEFAULT (16ull << 20)
#define TCP_KEEPALIVE_PROBES      3 /* unanswered probes before the kernel resets */
/* Block mode, spliced bodies: the socket wakes the context only once this
 * many body bytes (or the rest of the body) are queued, so each wake-up
 * moves a large step socket -> pipe -> fd instead of whatever arrived
 * since the last one (SO_RCVLOWAT; half the pipe, at most). */
#define TCP_SPLICE_LOWAT_BYTES (512u << 10)

/* A receive block: the unit of loans (refcounted). */
typedef struct tcp_blk {
	ferry_pkt pkt; /* the loan unit (pkt.ep = endpoint) */
	struct tcp_blk *next_free;
	struct tcp_blk *next_all;
	uint32_t refs; /* loans out, +1 while a connection reads into it */
	uint8_t *mem;
} tcp_blk;

/* A queued message. */
typedef struct tcp_txm {
	struct tcp_txm *next;
	void *cookie;
	uint8_t hdr[TCP_INLINE_BYTES]; /* header, or the whole small message */
	uint32_t hdr_len, hdr_off;
	ferry__txpay pay; /* the payload, borrowed or (detached) copied */
	/* File-region pieces in the payload: each is checked to still exist
	 * before the message's first byte goes out (tcp_tx.c). */
	uint32_t files;
	/* detach could not copy the payload (the read's error, -ENOMEM): the
	 * message is never sent whole (dropped, or the connection reset). */
	int detach_err;
} tcp_txm;

enum { TCP_CONNECTING = 1, TCP_UP, TCP_DEAD };

typedef struct tcp_conn {
	ferry_conn base;
	struct tcp_conn *next, *prev;
	struct tcp_conn *grave_next; /* dead, freed at the end of the op */
	int fd;
	uint8_t state;
	bool epout;    /* EPOLLOUT registered */
	bool readable; /* epoll reported input */
	uint64_t connect_deadline_us;
	/* receive */
	tcp_blk *blk; /* block being read into: unconsumed bytes [rd, wr) */
	uint32_t rd, wr;
	uint8_t hdr[TCP_HDR_MAX];
	uint32_t hdr_have;
	bool in_body;
	ferry_body_sink sink;
	uint64_t body_left;
	int sink_err;
	bool sink_fallback; /* splice refused by the fd: copy the rest */
	int pipe_r, pipe_w;
	uint32_t pipe_fill;
	uint32_t pipe_cap; /* bytes the pipe holds (F_GETPIPE_SZ, once) */
	uint32_t lowat;    /* SO_RCVLOWAT set while splicing (0: default) */
	/* transmit */
	tcp_txm *txq, *txq_tail;
	uint64_t backlog; /* queued bytes not yet written */
} tcp_conn;

typedef struct tcp_counters {
	uint64_t connects, connect_failures, connect_timeouts, accepts, accept_errors;
	uint64_t conns_closed, conns_reset, conns_up;
	uint64_t sendmsg_calls, sendmsg_bytes, tx_partial, tx_blocked;
	uint64_t recv_calls, recv_bytes, epoll_waits;
	uint64_t rx_blocks, rx_paused;
	uint64_t tx_user_bytes, tx_file_copy_bytes, sendfile_calls, sendfile_bytes;
	uint64_t rx_user_bytes, rx_sink_copy_bytes, splice_calls, splice_bytes,
	        splice_fallbacks;
	uint64_t detach_copy_bytes, readahead_calls, send_calls, tx_inline;
	uint64_t tx_file_read_errors;
} tcp_counters;

typedef struct tcp_ep {
	ferry_ep base;
	bool zerocopy; /* splice driver */
	bool listening;
	int lfd; /* listening socket or -1 */
	struct sockaddr_storage local;
	uint64_t sndbuf, rcvbuf, connect_timeout_us, backlog_pause;
	uint64_t keepalive_s; /* TCP keepalive idle/interval, s; 0 = off */
	tcp_conn *conns;
	tcp_conn *grave; /* dead connections an upcall may still be inside */
	uint32_t nconns, nconnecting, nepout;
	uint32_t polls;
	tcp_blk *blk_free, *blk_all;
	uint32_t nblks;
	tcp_txm *txm_free;
	uint8_t *scratch;   /* pread bounce (tcp file regions) ... */
	tcp_conn *scr_conn; /* ... holding [scr_pos, scr_len) of scr_fd at */
	int scr_fd;         /* file offset scr_foff, not yet sent */
	off_t scr_foff;
	size_t scr_pos, scr_len;
	tcp_counters cnt;
} tcp_ep;

_Static_assert(sizeof(tcp_ep) <= FERRY_TCP_EP_BYTES, "FERRY_TCP_EP_BYTES too small");

static inline tcp_ep *tcp_of(ferry_ep *ep)
{
	return ferry_container_of(ep, tcp_ep, base);
}
static inline tcp_conn *tcp_conn_of(ferry_conn *c)
{
	return ferry_container_of(c, tcp_conn, base);
}

/* tcp.c: what the splice driver shares. */
extern const ferry_loc_key *const ferry__tcp_key_tables[];
extern const ferry_stream_ops ferry__tcp_stream_ops;
int ferry__tcp_open_mode(ferry_ep *ep, const ferry_loc *loc, unsigned flags,
                         bool zerocopy);

/* tcp_pool.c */
/* A receive block with one reference (the caller's), or NULL. */
tcp_blk *ferry__tcp_blk_get(tcp_ep *t);
/* Drop one reference; the last one returns the block to the free list. */
void ferry__tcp_blk_put(tcp_ep *t, tcp_blk *b);
/* The release op: a loan of a block comes back. */
void ferry__tcp_release(ferry_ep *ep, ferry_pkt *pkt);
/* A queue entry goes back to the free list (with its detached copy freed). */
void ferry__tcp_txm_put(tcp_ep *t, tcp_txm *m);

/* tcp_conn.c */
int ferry__tcp_connect(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out);
int ferry__tcp_accept_all(tcp_ep *t);
/* epoll reported a connecting socket: finish (UP) or fail it. */
void ferry__tcp_conn_connected(tcp_ep *t, tcp_conn *c);
void ferry__tcp_check_timeouts(tcp_ep *t);
/* Register interest in writability (EPOLLOUT) or drop it. */
void ferry__tcp_conn_want_out(tcp_ep *t, tcp_conn *c, bool out);
/* Tear a connection down. With upcalls, queued messages get on_sent and
 * then conn_event(event, err) runs; the conn is freed by ferry__tcp_reap. */
void ferry__tcp_conn_destroy(tcp_ep *t, tcp_conn *c, int event, int err, bool upcalls);
/* The connection failed: conn_event RESET with err (after on_sent). */
void ferry__tcp_conn_fail(tcp_ep *t, tcp_conn *c, int err);
/* Free the connections destroyed during the op that is returning. */
void ferry__tcp_reap(tcp_ep *t);
void ferry__tcp_conn_close(ferry_conn *fc);

/* tcp_tx.c */
int ferry__tcp_send_msg(ferry_conn *fc, const void *hdr, size_t hdr_len,
                        ferry_buf_iter *payload, void *cookie);
int ferry__tcp_flush(ferry_ep *ep);
int ferry__tcp_detach(ferry_conn *fc, void *cookie);

/* tcp_rx.c */
/* Read and parse what c has. Returns messages completed, or -1 when the
 * connection went away. */
int ferry__tcp_conn_read(tcp_ep *t, tcp_conn *c);

#endif
