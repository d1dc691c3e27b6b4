/** @file
 * The driver contract: how the transport core talks to a driver.
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

/** The struct of type that embeds member at ptr (drivers embed ferry_ep
 * first in their endpoint struct). */
#define ferry_container_of(ptr, type, member)                                            \
	((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct ferry_ep ferry_ep;
/** A context (include/ferry/rpc.h). */
typedef struct ferry_ctx ferry_ctx;
/** A parsed locator ("STACK:key=value,..."), opaque to applications. */
typedef struct ferry_loc ferry_loc;

/** What a driver moves: datagrams or a byte stream. */
enum ferry_driver_kind {
	FERRY_DRIVER_DATAGRAM = 1, /**< packets (udp, loopback, lossy, infud) */
	FERRY_DRIVER_STREAM = 2,   /**< connections (tcp, splice, infrc) */
};

/** open() flags. */
#define FERRY_EP_LISTEN 0x1u /**< bind to the locator's address (a server) */

/** Opaque peer address. Big enough for a sockaddr_in6 or an IB address
 * handle reference; resolve() fills it, the transport copies it freely
 * (it is plain bytes, no pointers that need freeing). */
#define FERRY_ADDR_BYTES 48
/** The longest header (hdr_len) every datagram driver's send() takes. */
#define FERRY_DRIVER_HDR_MAX 1024
/** An opaque peer address (FERRY_ADDR_BYTES of plain bytes). */
typedef struct ferry_addr {
	uint32_t len; /**< bytes used in u.bytes; 0 = unset */
	union {
		uint8_t bytes[FERRY_ADDR_BYTES];
		uint64_t align_;
	} u; /**< the address bytes */
} ferry_addr;

/** A received datagram, loaned by the driver until release(). */
typedef struct ferry_pkt {
	uint8_t *data;  /**< first byte of the packet (transport header) */
	uint32_t len;   /**< bytes at data */
	ferry_addr src; /**< sender, usable as a send() destination */
	ferry_ep *ep;   /**< endpoint that owns the memory (for release) */
	/** Core use only: loans released on other threads wait on the
	 * context's handoff list. A stream driver loans one pkt many times
	 * (one per ferry_buf_append_pkt), so a pkt is linked once and
	 * core_releases counts its queued releases. Drivers zero the whole
	 * struct once (calloc) and never touch these. */
	struct ferry_pkt *core_next;
	uint32_t core_releases; /**< core use only: releases queued for this pkt */
} ferry_pkt;

/** What an endpoint can do; caps() fills it, values are fixed after open. */
typedef struct ferry_caps {
	uint32_t max_payload;  /**< bytes per datagram: transport header + data */
	uint32_t inline_bytes; /**< sends up to this size cost no extra copy/DMA */
	uint32_t tx_slots;     /**< packets send() accepts before a flush */
	uint32_t rx_batch;     /**< packets one poll() returns at most */
	uint32_t rx_pool;      /**< packets poll() can have loaned out at once; 0 =
	                        * unbounded. Past half of it the core copies
	                        * fragments instead of keeping loans, so a long
	                        * message cannot starve the receive path. */
} ferry_caps;

/** Generic counters kept by the core wrappers (one set per endpoint). */
typedef struct ferry_ep_counters {
	uint64_t tx_pkts;    /**< packets (messages) sent */
	uint64_t tx_bytes;   /**< bytes sent */
	uint64_t tx_errors;  /**< sends that failed */
	uint64_t rx_pkts;    /**< packets (messages) received */
	uint64_t rx_bytes;   /**< bytes received */
	uint64_t rx_dropped; /**< malformed or unwanted input, dropped by the transport */
	uint64_t polls;      /**< poll() calls */
	uint64_t polls_nonempty; /**< poll() calls that found work */
} ferry_ep_counters;

/** A named driver-specific counter, reported by ctl(FERRY_CTL_COUNTERS). */
typedef void (*ferry_counter_cb)(void *arg, const char *name, uint64_t value);

/** ctl() operations. Drivers return -ENOTSUP for those they do not know. */
enum ferry_ctl_op {
	/** arg: struct ferry_ctl_locator *. The locator this endpoint is bound
	 * to, with the real port after port=0. */
	FERRY_CTL_BOUND_LOCATOR = 1,
	/** arg: struct ferry_ctl_counters *. Report driver-specific counters. */
	FERRY_CTL_COUNTERS = 2,
	/* arg: struct ferry_ctl_addr *. This endpoint's own address (conn
	 * NULL), or the local address of one stream connection, in the form
	 * resolve() produces (udp/tcp: sockaddr bytes). Used by packet capture
	 * to label records; not on any fast path (it may make a syscall).
	 * Wrappers forward it. -ENOTSUP: capture uses a synthetic address. */
	FERRY_CTL_LOCAL_ADDR = 3,
};
/** Argument of FERRY_CTL_BOUND_LOCATOR. */
struct ferry_ctl_locator {
	char *out;  /**< the locator keys are written here */
	size_t len; /**< bytes at out */
};
/** Argument of FERRY_CTL_COUNTERS. */
struct ferry_ctl_counters {
	ferry_counter_cb cb; /**< called once per counter */
	void *arg;           /**< cb's first argument */
};
/** FERRY_CTL_LOCAL_ADDR's argument: the local address of an endpoint or of
 * one of its connections. */
struct ferry_ctl_addr {
	struct ferry_conn *conn; /**< in: the connection, or NULL = the endpoint */
	struct ferry_addr addr;  /**< out: the local address (driver's format) */
};

/* Datagram endpoint ops ----------------------------------------------------*/
/** Endpoint ops of a datagram driver. */
typedef struct ferry_dgram_ops {
	/** Queue one datagram: hdr (hdr_len bytes, copied before return) followed
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
	 * Every driver takes a header of up to FERRY_DRIVER_HDR_MAX bytes
	 * (within max_payload): transports send control packets (fast's
	 * multi-word acks, up to 552 bytes) as header only.
	 * Errors: -EMSGSIZE (over max_payload; or a longer header, which a
	 * driver may refuse),
	 * -EINVAL (bad address), -ENOMEM, -errno (file read). Never blocks. */
	int (*send)(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
	            ferry_buf_iter *payload);

	/** Push queued datagrams out, batched (sendmmsg / a post list). Returns
	 * packets handed to the kernel/NIC or -errno. Never blocks. */
	int (*flush)(ferry_ep *ep);

	/** Receive up to max datagrams into pkts[], batched (recvmmsg, one CQ
	 * poll). Zero-copy: each packet is a loan of driver memory, owned by
	 * the caller until release(). Returns the count (0 = nothing waiting)
	 * or -errno. Never blocks: block mode waits on ep->fd instead. */
	int (*poll)(ferry_ep *ep, ferry_pkt **pkts, int max);

	/** Give a packet from poll() back. Exactly once per packet. May be
	 * called on the context's thread only; other threads go through the
	 * context's handoff queue (the core does this for buffer loans). */
	void (*release)(ferry_ep *ep, ferry_pkt *pkt);

	/** Turn a peer locator into an address for send(). May block (name
	 * resolution); the core calls it once per session and caches the
	 * result. Errors: FERRY_EBADLOC (unresolvable/unsuitable), -errno. */
	int (*resolve)(ferry_ep *ep, const ferry_loc *peer, ferry_addr *out);

	/** Capabilities; never fails, fixed after open. */
	void (*caps)(ferry_ep *ep, ferry_caps *out);

	/** Control: bound locator, counters (enum ferry_ctl_op). */
	int (*ctl)(ferry_ep *ep, int op, void *arg);

	/** Release everything. Safe after a failed open (whatever open left
	 * half-built), called once; tolerates outstanding loans only by
	 * reporting them (ep->loans_out stays non-zero and tests fail). */
	void (*close)(ferry_ep *ep);
} ferry_dgram_ops;

/* Stream endpoint ops (tcp, splice, infrc) ---------------------------------
 * A stream endpoint carries whole messages over connections: a fixed-size
 * header (hdr_len bytes, the transport's) followed by a body whose length
 * the transport reads from the header. The driver frames nothing itself.
 *
 * Upcalls: the core sets ep->up and ep->up_arg before open(); the driver
 * calls them from poll() and flush() (never from inside another op), on the
 * owner thread.
 *
 * Receive has two phases: the driver collects a header and calls
 * on_header(), which names where the body goes (ferry_body_sink: a buffer
 * that receives pooled loans, an fd, or nowhere); the driver then fills it
 * and calls on_body(). Pooled loans are ferry_pkt-backed memory appended
 * with ferry_buf_append_pkt() and returned through release().
 *
 * Connections: connect() returns at once; messages queued before the
 * handshake completes are written once it does. conn_event() reports
 * FERRY_CONN_UP, and FERRY_CONN_CLOSED (orderly EOF) or FERRY_CONN_RESET
 * (error, reset, connect failure or timeout; err says which) exactly once,
 * after on_sent() has run for every message still queued on it. The
 * ferry_conn is freed when conn_event(CLOSED/RESET) returns: the transport
 * keeps no pointer to it past that. */
typedef struct ferry_conn ferry_conn;
/** A stream connection (see above). */
struct ferry_conn {
	ferry_ep *ep;    /**< the endpoint that owns it */
	void *user;      /**< the transport's per-connection state */
	ferry_addr peer; /**< remote address (sockaddr bytes) */
	/** Set by the transport while a body may go to an fd: the driver then
	 * reads headers exactly (no read-ahead into the body), so a spliced
	 * body never passes through user memory. */
	bool hdr_exact;
};
/** conn_event() events. */
enum ferry_conn_event {
	FERRY_CONN_UP = 1,     /**< connected or accepted */
	FERRY_CONN_CLOSED = 2, /**< orderly close */
	FERRY_CONN_RESET = 3,  /**< failed: err says why */
};
/** Where on_header() sends a message body. */
typedef struct ferry_body_sink {
	uint64_t len;   /**< body bytes (the transport sets it from the header) */
	ferry_buf *buf; /**< body appended here as pooled loans, or ... */
	int fd;         /**< ... >= 0: body written to this fd ... */
	int64_t off;    /**< ... at this offset (advanced), or -1: at the fd's
	                 * position */
	bool discard;   /**< ... or read and dropped (buf NULL, fd -1) */
	/** Set by the driver when the body is complete: bytes of it that went
	 * to fd by way of user memory (copy fallback or read-ahead). */
	uint64_t copied;
} ferry_body_sink;
/** What a stream driver calls in the transport (set before open). */
typedef struct ferry_stream_upcalls {
	size_t hdr_len; /**< header bytes read before on_header (tcp: 1-64) */
	/** A connection came up, closed or reset (enum ferry_conn_event). */
	void (*conn_event)(void *arg, ferry_conn *c, int event, int err);
	/** A header arrived: fill sink. Non-zero = malformed: the driver resets
	 * the connection (conn_event RESET with that error). */
	int (*on_header)(void *arg, ferry_conn *c, const uint8_t *hdr,
	                 ferry_body_sink *sink);
	/** The body is in the sink (status 0), or writing it to the fd failed
	 * (-errno; the rest of the body was read and dropped). hdr is the
	 * header on_header saw. */
	void (*on_body)(void *arg, ferry_conn *c, const uint8_t *hdr,
	                ferry_body_sink *sink, int status);
	/** A message from send_msg is written out, or dropped with its
	 * connection: its payload is no longer referenced. */
	void (*on_sent)(void *arg, ferry_conn *c, void *cookie);
	/** The message for cookie cannot be sent whole: reading its payload
	 * failed (err: the read's error, -EIO when a file region ended before
	 * the region did, a file truncated under a queued send). Its bytes are
	 * never replaced by others: with reset false no byte of it was written,
	 * it is dropped and the connection carries on; with reset true part of
	 * it is out, and the driver resets the connection right after
	 * (on_sent for every queued message, then conn_event RESET with err).
	 * Runs before the message's own on_sent; never for a message whose
	 * payload detach() failed to copy (its call has ended). NULL: not
	 * wanted (the message is still dropped, or the connection reset). */
	void (*on_send_failed)(void *arg, ferry_conn *c, void *cookie, int err,
	                       bool reset);
} ferry_stream_upcalls;

/** Endpoint ops of a stream driver. */
typedef struct ferry_stream_ops {
	/** Start connecting to peer (host/port keys). Never blocks past name
	 * resolution; the handshake completes in poll(), bounded by the
	 * driver's connect timeout. Errors: FERRY_EBADLOC, -errno. */
	int (*connect)(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out);
	/** Queue one message: hdr (copied) then the payload (borrowed until
	 * on_sent for cookie). Gathers; partial writes resume in flush/poll and
	 * never block the context; file regions go out natively where the
	 * driver can (splice: sendfile), else read with pread. Errors:
	 * FERRY_EPEERDEAD (connection closing), -ENOMEM, -EIO (a file region
	 * that had to be read now could not be). A file region that cannot be
	 * read later fails its message through on_send_failed (the bytes it
	 * promised are never made up). Backpressure is the driver's:
	 * it stops reading a connection whose replies are backed up. */
	int (*send_msg)(ferry_conn *c, const void *hdr, size_t hdr_len,
	                ferry_buf_iter *payload, void *cookie);
	/** Write what is queued, as far as the sockets take it. Never blocks.
	 * Returns bytes written or -errno. */
	int (*flush)(ferry_ep *ep);
	/** Accept, finish connects, read, resume writes, report events through
	 * the upcalls. Returns events handled (0 = nothing) or -errno. */
	int (*poll)(ferry_ep *ep, int max);
	/** Give back a pooled loan (ferry_buf_append_pkt). Owner thread. */
	void (*release)(ferry_ep *ep, ferry_pkt *loan);
	/** The payload of cookie's message must not be referenced any more
	 * (its call ended early): copy what is still unwritten. on_sent still
	 * follows. 1 (copied), 0 (no queued message for cookie), or the error
	 * that kept the copy from being made: -ENOMEM, or the read's error
	 * (-EIO: a file region ended early). On error the payload is not
	 * referenced either: the message is dropped, or, if part of it was
	 * written, the connection is reset (conn_event RESET with that error),
	 * never sent with bytes that were not read. */
	int (*detach)(ferry_conn *c, void *cookie);
	/** Close one connection now: queued messages get on_sent, then
	 * conn_event(CLOSED) runs from inside this call. */
	void (*conn_close)(ferry_conn *c);
	/** Report the endpoint's capabilities. */
	void (*caps)(ferry_ep *ep, ferry_caps *out);
	/** enum ferry_ctl_op; -ENOTSUP for the others. */
	int (*ctl)(ferry_ep *ep, int op, void *arg);
	/** Close every connection (no upcalls) and the endpoint. Safe after a
	 * failed open. */
	void (*close)(ferry_ep *ep);
} ferry_stream_ops;

/* Locator keys ------------------------------------------------------------*/
/** What a locator key's value is. */
typedef enum ferry_loc_kind {
	FERRY_LOC_STR = 0, /**< any text */
	FERRY_LOC_UINT,    /**< unsigned integer; k/m/g suffixes multiply by 1024 */
	FERRY_LOC_REAL,    /**< a finite real number */
} ferry_loc_kind;

/** One locator key a layer accepts, declared once in the layer's table
 * (ending with a NULL name): the locator parser checks every value against
 * it, naming key and value when one is out of range, and the layer's open
 * reads the values with ferry_loc_read. */
typedef struct ferry_loc_key {
	const char *name;    /**< key as written in the locator */
	ferry_loc_kind kind; /**< value type */
	uint64_t min;        /**< FERRY_LOC_UINT: smallest value accepted */
	uint64_t max;        /**< FERRY_LOC_UINT: largest value accepted */
	uint64_t dflt;       /**< FERRY_LOC_UINT: value when absent */
	double rmin;         /**< FERRY_LOC_REAL: smallest value accepted */
	double rmax;         /**< FERRY_LOC_REAL: largest value accepted */
	double rdflt;        /**< FERRY_LOC_REAL: value when absent */
	const char *sdflt;   /**< FERRY_LOC_STR: value when absent (may be NULL) */
} ferry_loc_key;

/** A key's value as ferry_loc_read gives it (the member of its kind). */
typedef struct ferry_loc_val {
	bool set;      /**< the locator named the key (else the default) */
	uint64_t u;    /**< FERRY_LOC_UINT */
	double r;      /**< FERRY_LOC_REAL */
	const char *s; /**< FERRY_LOC_STR: points into the locator (or sdflt) */
} ferry_loc_val;

/** Read every key of table (NULL-name ended) from loc into vals, index for
 * index. 0, or FERRY_EBADLOC with a message naming the key and value in err
 * (a malformed number, or one out of the key's range). */
FERRY_API int ferry_loc_read(const ferry_loc *loc, const ferry_loc_key *table,
                             ferry_loc_val *vals, char *err, size_t err_len);

/* Driver ops ---------------------------------------------------------------*/
/** A driver: its name, kind and how to open an endpoint. */
typedef struct ferry_driver_ops {
	const char *name;        /**< locator stack name: "udp", "loopback", ... */
	int kind;                /**< enum ferry_driver_kind */
	bool wrapper;            /**< wraps the next driver in the stack (lossy) */
	size_t ep_size;          /**< bytes the core allocates; ferry_ep first */
	const char *const *keys; /**< locator keys this driver accepts, NULL-ended */

	/** Can this machine run the driver? 0, or negative with a reason
	 * written to why. Called from any thread, may block briefly. */
	int (*probe)(char *why, size_t why_len);

	/** Open the endpoint in ep (zeroed, base fields set by the core; for a
	 * wrapper ep->inner is already open). Reads its keys from loc. May
	 * block (bind, device open). On failure returns negative, and the
	 * core then calls close() on the half-built endpoint. */
	int (*open)(ferry_ep *ep, const ferry_loc *loc, unsigned flags);

	const ferry_dgram_ops *dgram;   /**< kind == DATAGRAM */
	const ferry_stream_ops *stream; /**< kind == STREAM */
	/** The key tables of this driver (its own, then shared ones such as
	 * the inet or verbs keys), NULL-ended: the locator accepts and
	 * range-checks these keys. keys (names only) is the older form; a
	 * driver may give either or both. */
	const ferry_loc_key *const *key_tables;
} ferry_driver_ops;

/** Base endpoint: every driver's endpoint struct starts with this. */
struct ferry_ep {
	const ferry_driver_ops *drv; /**< the driver */
	ferry_ctx *ctx;              /**< owning context (set by the core) */
	ferry_ep *inner;             /**< wrapped endpoint (wrappers only) */
	int fd;                      /**< readable when poll() may return work, or -1;
	                              * block mode waits on it (set by open) */
	bool sleeps;                 /**< set by the core before open: the context sleeps
	                              * on fd (block mode), so readiness must be
	                              * signalled; in spin mode a driver may skip it */
	uint32_t loans_out;          /**< packets loaned and not yet released */
	bool tx_pending;             /**< send() queued packets that flush() must push */
	uint64_t wake_at_us;         /**< a driver with timed work (lossy delays) sets
	                              * this to the ctx clock time by which poll() must
	                              * run again; 0 = no timed work. Block mode honours
	                              * it. */
	/** Stream endpoints: the transport's upcalls (set by the core before
	 * open). */
	const ferry_stream_upcalls *up;
	void *up_arg;          /**< the upcalls' first argument */
	ferry_ep_counters cnt; /**< kept by the core wrappers */
	char errmsg[160];      /**< why open()/resolve() failed, naming the bad
	                        * key or value (the core reports it) */
	/** Set by the transport while every peer of this endpoint ignores
	 * bytes after a datagram's content (its header says how long the
	 * content is; docs/WIRE.md "Padding"): a driver that coalesces
	 * datagrams (udp's UDP_SEGMENT) may then pad one with zeros to the size
	 * of the datagrams around it, so that they leave as one send. Read at
	 * flush time; false = never pad. */
	bool tx_pad;
	/** The core's way up to the context that owns this endpoint (where a
	 * loaned packet goes back from any thread, where a failure is
	 * reported). Set by the core before open; drivers never touch it. */
	const struct ferry__ep_host *host;
	/** Stream endpoints: the core's counting upcalls (ep->up points at
	 * them from before open) and the transport's own, which they forward
	 * to. Core-private, like host. */
	ferry_stream_upcalls up_count;
	const ferry_stream_upcalls
	        *up_next;  /**< the transport's upcalls (core-private) */
	void *up_next_arg; /**< their first argument (core-private) */
};

/** Registry: every driver meson built, in one static array. */
FERRY_API const ferry_driver_ops *ferry_driver_find(const char *name);
/** Number of registered drivers and the i-th (for listing and tests). */
FERRY_API int ferry_driver_count(void);
/** The i-th registered driver (0 <= i < ferry_driver_count()), else NULL. */
FERRY_API const ferry_driver_ops *ferry_driver_at(int i);

/** Append n bytes at data, inside the loaned packet pkt, to b as a loan:
 * pkt is released (ferry's release op, on its context's thread, through
 * the handoff queue from other threads) when the chunk leaves b. One call
 * per loan; counts ep->loans_out. 0 or -ENOMEM (nothing taken). */
FERRY_API int ferry_buf_append_pkt(ferry_buf *b, ferry_pkt *pkt, void *data, size_t n);

/** Locator access for drivers: the value of key, or NULL when absent. */
FERRY_API const char *ferry_loc_get(const ferry_loc *loc, const char *key);

#ifdef __cplusplus
}
#endif
#endif
