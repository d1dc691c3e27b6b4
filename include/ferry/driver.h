/* The driver contract: how the transport core talks to a driver.
 *
 * This header is documentation first. A driver is two const tables: a driver
 * ops table (name, kind, endpoint size, probe, open) and an endpoint ops table
 * whose members depend on the kind (datagram or stream). The core allocates
 * every endpoint (ep_size bytes, zeroed) and the driver's own struct embeds
 * struct ferry_ep as its first member, so the driver recovers it with
 * ferry_container_of(). The core reaches drivers only through thin wrappers
 * that validate arguments and count generic packets, bytes and errors in one
 * place; drivers count only what they alone know.
 *
 * Threads: every endpoint belongs to one ferry_ctx, and every op below is
 * called on that context's thread unless stated otherwise. No op takes a
 * lock on the fast path; no op may block unless stated.
 *
 * Errors: ops return 0 or a count on success, negative on failure: -errno
 * for OS failures, FERRY_E* for library conditions. */
#ifndef FERRY_DRIVER_H
#define FERRY_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ferry_container_of(ptr, type, member)                                  \
	((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct ferry_ep ferry_ep;
typedef struct ferry_ctx ferry_ctx;
typedef struct ferry_loc ferry_loc;

enum ferry_driver_kind {
	FERRY_DRIVER_DATAGRAM = 1,
	FERRY_DRIVER_STREAM = 2,
};

/* open() flags. */
#define FERRY_EP_LISTEN 0x1u /* bind to the locator's address (a server) */

/* Opaque peer address. Big enough for a sockaddr_in6 or an IB address
 * handle reference; resolve() fills it, the transport copies it freely
 * (it is plain bytes, no pointers that need freeing). */
#define FERRY_ADDR_BYTES 48
typedef struct ferry_addr {
	uint32_t len; /* bytes used in u.bytes; 0 = unset */
	union {
		uint8_t bytes[FERRY_ADDR_BYTES];
		uint64_t align_;
	} u;
} ferry_addr;

/* A received datagram, loaned by the driver until release(). */
typedef struct ferry_pkt {
	uint8_t *data;    /* first byte of the packet (transport header) */
	uint32_t len;     /* bytes at data */
	ferry_addr src;   /* sender, usable as a send() destination */
	ferry_ep *ep;     /* endpoint that owns the memory (for release) */
	struct ferry_pkt *core_next; /* core use only (handoff list) */
} ferry_pkt;

/* What an endpoint can do; caps() fills it, values are fixed after open. */
typedef struct ferry_caps {
	uint32_t max_payload;  /* bytes per datagram: transport header + data */
	uint32_t inline_bytes; /* sends up to this size cost no extra copy/DMA */
	uint32_t tx_slots;     /* packets send() accepts before a flush */
	uint32_t rx_batch;     /* packets one poll() returns at most */
} ferry_caps;

/* Generic counters kept by the core wrappers (one set per endpoint). */
typedef struct ferry_ep_counters {
	uint64_t tx_pkts, tx_bytes, tx_errors;
	uint64_t rx_pkts, rx_bytes;
	uint64_t rx_dropped;  /* malformed or unwanted input, dropped by the transport */
	uint64_t polls, polls_nonempty;
} ferry_ep_counters;

/* A named driver-specific counter, reported by ctl(FERRY_CTL_COUNTERS). */
typedef void (*ferry_counter_cb)(void *arg, const char *name, uint64_t value);

/* ctl() operations. Drivers return -ENOTSUP for those they do not know. */
enum ferry_ctl_op {
	/* arg: struct ferry_ctl_locator *. The locator this endpoint is bound
	 * to, with the real port after port=0. */
	FERRY_CTL_BOUND_LOCATOR = 1,
	/* arg: struct ferry_ctl_counters *. Report driver-specific counters. */
	FERRY_CTL_COUNTERS = 2,
};
struct ferry_ctl_locator {
	char *out;
	size_t len;
};
struct ferry_ctl_counters {
	ferry_counter_cb cb;
	void *arg;
};

/* Datagram endpoint ops ----------------------------------------------------*/
typedef struct ferry_dgram_ops {
	/* Queue one datagram: hdr (hdr_len bytes, copied before return) followed
	 * by the bytes payload yields (may be NULL: header only). Gathers; file
	 * regions are read with pread into driver memory. The driver owns a ring
	 * of transmit slots and never makes the caller wait per packet: it may
	 * return before the bytes leave (loopback delivers at once). Payload
	 * memory is borrowed until the next flush() on this endpoint returns
	 * (the driver may reference rather than copy it); the core flushes
	 * every endpoint once per poll iteration. When the ring is full the
	 * driver flushes itself. Packets the kernel/NIC refuses at flush time
	 * (a full socket buffer) are dropped and counted by the driver, like a
	 * loss on the wire: datagram transports recover or time out.
	 * Errors: -EMSGSIZE (over max_payload), -EINVAL (bad address),
	 * -ENOMEM, -errno (file read). Never blocks. */
	int (*send)(ferry_ep *ep, const ferry_addr *to, const void *hdr,
	            size_t hdr_len, ferry_buf_iter *payload);

	/* Push queued datagrams out, batched (sendmmsg / a post list). Returns
	 * packets handed to the kernel/NIC or -errno. Never blocks. */
	int (*flush)(ferry_ep *ep);

	/* Receive up to max datagrams into pkts[], batched (recvmmsg, one CQ
	 * poll). Zero-copy: each packet is a loan of driver memory, owned by
	 * the caller until release(). Returns the count (0 = nothing waiting)
	 * or -errno. Never blocks: block mode waits on ep->fd instead. */
	int (*poll)(ferry_ep *ep, ferry_pkt **pkts, int max);

	/* Give a packet from poll() back. Exactly once per packet. May be
	 * called on the context's thread only; other threads go through the
	 * context's handoff queue (the core does this for buffer loans). */
	void (*release)(ferry_ep *ep, ferry_pkt *pkt);

	/* Turn a peer locator into an address for send(). May block (name
	 * resolution); the core calls it once per session and caches the
	 * result. Errors: FERRY_EBADLOC (unresolvable/unsuitable), -errno. */
	int (*resolve)(ferry_ep *ep, const ferry_loc *peer, ferry_addr *out);

	/* Capabilities; never fails, fixed after open. */
	void (*caps)(ferry_ep *ep, ferry_caps *out);

	/* Control: bound locator, counters (enum ferry_ctl_op). */
	int (*ctl)(ferry_ep *ep, int op, void *arg);

	/* Release everything. Safe after a failed open (whatever open left
	 * half-built), called once; tolerates outstanding loans only by
	 * reporting them (ep->loans_out stays non-zero and tests fail). */
	void (*close)(ferry_ep *ep);
} ferry_dgram_ops;

/* Stream endpoint ops (tcp, infrc, splice) ----------------------------------
 * Declared here so the contract is complete; the stream transport and its
 * drivers fill these in. Connection events reach the transport through
 * conn_cb; a message is a fixed-size header plus a body. Receive has two
 * phases: the driver reads the header and calls on_header(), which names
 * where the body goes (pooled memory by default, or an fd sink for a call
 * that asked to receive into a file); then the driver fills it. */
typedef struct ferry_conn ferry_conn;
enum ferry_conn_event {
	FERRY_CONN_UP = 1,
	FERRY_CONN_CLOSED = 2,
	FERRY_CONN_RESET = 3,
};
typedef void (*ferry_conn_cb)(void *arg, ferry_conn *conn, int event);
typedef struct ferry_body_sink {
	ferry_buf *buf; /* body bytes appended here (pooled loans) ... */
	int fd;         /* ... or written to this fd (>= 0) */
} ferry_body_sink;
typedef int (*ferry_on_header_cb)(void *arg, ferry_conn *conn, const void *hdr,
                                  size_t hdr_len, size_t body_len,
                                  ferry_body_sink *sink);
typedef struct ferry_stream_ops {
	/* Start connecting to peer; the connection is usable once conn_cb
	 * reports FERRY_CONN_UP. Never blocks (the handshake completes in
	 * poll). Errors: FERRY_EBADLOC, -errno. Owner thread. */
	int (*connect)(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out);
	/* Take one pending inbound connection (listening endpoints), or
	 * -EAGAIN. Never blocks. */
	int (*accept)(ferry_ep *ep, ferry_conn **out);
	/* Queue one message: hdr (copied) then the payload (borrowed until the
	 * message is fully written; the transport keeps the buffer until then).
	 * Gathers; partial writes resume in poll, never blocking the context;
	 * file regions go out natively where the driver can (splice:
	 * sendfile). Errors: FERRY_EPEERDEAD (connection gone), -EAGAIN
	 * (backpressure: the per-connection queue is full), -errno. */
	int (*send_msg)(ferry_conn *conn, const void *hdr, size_t hdr_len,
	                ferry_buf_iter *payload);
	/* Make progress on every connection: resume writes, read headers (then
	 * on_header names the body's sink), fill bodies, report connection
	 * events. Returns events handled or -errno. Never blocks. */
	int (*poll)(ferry_ep *ep, int max);
	/* Give back a pooled body loan. Exactly once; owner thread. */
	void (*release)(ferry_ep *ep, void *loan);
	void (*caps)(ferry_ep *ep, ferry_caps *out);
	int (*ctl)(ferry_ep *ep, int op, void *arg);
	/* Close every connection (pending calls are the transport's to fail)
	 * and the endpoint. Safe after a failed open. */
	void (*close)(ferry_ep *ep);
} ferry_stream_ops;

/* Driver ops ---------------------------------------------------------------*/
typedef struct ferry_driver_ops {
	const char *name;    /* locator stack name: "udp", "loopback", ... */
	int kind;            /* enum ferry_driver_kind */
	bool wrapper;        /* wraps the next driver in the stack (lossy) */
	size_t ep_size;      /* bytes the core allocates; ferry_ep first */
	const char *const *keys; /* locator keys this driver accepts, NULL-ended */

	/* Can this machine run the driver? 0, or negative with a reason
	 * written to why. Called from any thread, may block briefly. */
	int (*probe)(char *why, size_t why_len);

	/* Open the endpoint in ep (zeroed, base fields set by the core; for a
	 * wrapper ep->inner is already open). Reads its keys from loc. May
	 * block (bind, device open). On failure returns negative, and the
	 * core then calls close() on the half-built endpoint. */
	int (*open)(ferry_ep *ep, const ferry_loc *loc, unsigned flags);

	const ferry_dgram_ops *dgram;   /* kind == DATAGRAM */
	const ferry_stream_ops *stream; /* kind == STREAM */
} ferry_driver_ops;

/* Base endpoint: every driver's endpoint struct starts with this. */
struct ferry_ep {
	const ferry_driver_ops *drv;
	ferry_ctx *ctx;       /* owning context (set by the core) */
	ferry_ep *inner;      /* wrapped endpoint (wrappers only) */
	int fd;               /* readable when poll() may return work, or -1;
	                       * block mode waits on it (set by open) */
	bool sleeps;          /* set by the core before open: the context sleeps
	                       * on fd (block mode), so readiness must be
	                       * signalled; in spin mode a driver may skip it */
	uint32_t loans_out;   /* packets loaned and not yet released */
	bool tx_pending;      /* send() queued packets that flush() must push */
	uint64_t wake_at_us;  /* a driver with timed work (lossy delays) sets
	                       * this to the ctx clock time by which poll() must
	                       * run again; 0 = no timed work. Block mode honours
	                       * it. */
	ferry_ep_counters cnt;
	char errmsg[160];     /* why open()/resolve() failed, naming the bad
	                       * key or value (the core reports it) */
};

/* Registry: every driver meson built, in one static array. */
FERRY_API const ferry_driver_ops *ferry_driver_find(const char *name);
/* Number of registered drivers and the i-th (for listing and tests). */
FERRY_API int ferry_driver_count(void);
FERRY_API const ferry_driver_ops *ferry_driver_at(int i);

/* Locator access for drivers: the value of key, or NULL when absent. */
FERRY_API const char *ferry_loc_get(const ferry_loc *loc, const char *key);

#ifdef __cplusplus
}
#endif
#endif
