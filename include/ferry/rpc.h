/** @file
 * ferry RPC API: contexts, sessions, calls and servers.
 *
 * A ferry_ctx belongs to one thread and runs to completion: ferry_ctx_poll()
 * drives its endpoints, timers and completion callbacks. Sessions, calls and
 * servers created on a context are used on that context's thread. Other
 * threads reach a context only through its handoff queue: ferry_call() and
 * ferry_rpc_reply() called from a foreign thread are queued there and carried
 * out by the owner thread at its next poll (an eventfd wakes a blocked one),
 * and buffer loans released on a foreign thread travel the same way.
 *
 * Ownership: on success ferry owns a call's request buffer until the
 * completion callback runs; on failure the caller keeps it. Response bytes
 * are appended to the caller's response buffer, usually as loans of driver
 * memory: reset the buffer when done to give them back.
 *
 * fork(): a context belongs to the process that created it. In a child,
 * every entry point that takes an inherited context, session, server or
 * rpc returns FERRY_EWRONGTHREAD and changes nothing (ferry_ctx_destroy and
 * the other void functions do nothing): the child shares the parent's
 * sockets, and touching them would corrupt the parent's sessions. The
 * child's copy is reclaimed by exec or exit; it may create contexts of its
 * own. */
#ifndef FERRY_RPC_H
#define FERRY_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A context: one thread's event loop (opaque). */
typedef struct ferry_ctx ferry_ctx;
/** A client session to one server locator (opaque). */
typedef struct ferry_session ferry_session;
/** A server: handlers and the locators it listens on (opaque). */
typedef struct ferry_server ferry_server;
/** One request on the server side, from handler to reply (opaque). */
typedef struct ferry_rpc ferry_rpc;

/** Library version: "MAJOR.MINOR.PATCH". */
FERRY_API const char *ferry_version(void);

/** Allocator hook: every allocation the library makes goes through these.
 * Set before creating any context; NULL restores malloc/realloc/free. */
typedef struct ferry_allocator {
	void *(*malloc_fn)(size_t n);           /**< as malloc(3) */
	void *(*realloc_fn)(void *p, size_t n); /**< as realloc(3) */
	void (*free_fn)(void *p);               /**< as free(3) */
} ferry_allocator;
/** Install the allocator hook (a is copied; NULL: the C library's). */
FERRY_API void ferry_set_allocator(const ferry_allocator *a);

/** Log hook: the library never prints. level: 0 error, 1 warning, 2 info,
 * 3 debug. The message has no trailing newline.
 *
 * What each level carries:
 * - 0 error: the library itself is broken (an invariant failed); unused
 *   today: nothing a peer sends is an error of this process.
 * - 1 warning: something an operator should see: a session open or a
 *   listen that failed (with the errmsg), a stream connection reset, a
 *   fast session whose peer went silent (FERRY_EPEERDEAD), a peer that
 *   refused our wire version (FERRY_EVERSION).
 * - 2 info: lifecycle: a server listening on its bound locator, a server
 *   restart noticed by a fast client.
 * - 3 debug: input dropped as malformed (bad magic, type, length, or a
 *   wire version answered with VERSION_MISMATCH) and orderly connection
 *   closes. Drop messages are rate-limited to one per second per context;
 *   the next one says how many were suppressed. Every drop is also counted
 *   (rpc.drop.*) whether or not it is logged.
 *
 * The hook may be called from any thread that runs a context; it must not
 * call back into ferry. */
typedef void (*ferry_log_cb)(void *arg, int level, const char *msg);
/** Install the log hook (NULL: no logging). Set it before creating
 * contexts; it is process-wide. */
FERRY_API void ferry_set_log(ferry_log_cb cb, void *arg);

/* Contexts ------------------------------------------------------------------*/
/** How ferry_ctx_poll() waits: ferry_ctx_opts.poll_mode. */
enum ferry_poll_mode {
	FERRY_POLL_SPIN = 0,  /**< poll without sleeping (lowest latency) */
	FERRY_POLL_BLOCK = 1, /**< sleep in epoll when idle (eventfd wake-up) */
};
/** Options of ferry_ctx_create(). */
typedef struct ferry_ctx_opts {
	int poll_mode; /**< enum ferry_poll_mode; default SPIN */
	int cpu;       /**< pin the creating thread to this CPU; -1 = don't */
} ferry_ctx_opts;

/** Create a context owned by the calling thread. opts may be NULL
 * (spin, no pinning). 0 or -errno. */
FERRY_API int ferry_ctx_create(const ferry_ctx_opts *opts, ferry_ctx **out);
/** Destroy: closes servers and sessions (their calls complete with
 * FERRY_ECANCELED first) and endpoints. Owner thread only. Every rpc handed
 * to a handler must have been replied to first: an rpc still held by
 * application code (a worker thread) would outlive the context. */
FERRY_API void ferry_ctx_destroy(ferry_ctx *ctx);
/** One run-to-completion pass: handoff queue, endpoints, timers, flush.
 * In block mode, when the pass found no work, waits up to timeout_us for
 * some (-1 = until the next timer or event). Returns the number of events
 * handled (packets, timers, handoffs) or -errno. */
FERRY_API int ferry_ctx_poll(ferry_ctx *ctx, int64_t timeout_us);
/** Message describing the last error a call on this context returned
 * (locator problems name the bad part). Valid until the next call. */
FERRY_API const char *ferry_ctx_errmsg(ferry_ctx *ctx);
/** Report every counter of the context (transport and each endpoint,
 * drivers included) as name/value pairs. */
typedef void (*ferry_stat_cb)(void *arg, const char *name, uint64_t value);
/** Call cb once per counter of ctx (see ferry_stat_cb). Owner thread. */
FERRY_API void ferry_ctx_stats(ferry_ctx *ctx, ferry_stat_cb cb, void *arg);
/** Microseconds on the context's monotonic clock (as of the last poll). */
FERRY_API uint64_t ferry_ctx_now_us(ferry_ctx *ctx);

/* Sessions and calls -------------------------------------------------------*/
/** Open a session to the server at locator (e.g.
 * "unreliable+udp:host=127.0.0.1,port=12242"). The locator is parsed and
 * the address resolved once, here. FERRY_EBADLOC (see ferry_ctx_errmsg),
 * or -errno. */
FERRY_API int ferry_session_open(ferry_ctx *ctx, const char *locator,
                                 ferry_session **out);
/** Per-session options, beyond what a locator says. Set size to
 * sizeof(ferry_session_opts) (FERRY_SESSION_OPTS_INIT does) and leave
 * fields you do not use zero: zero always means "the default". The size
 * field makes the struct extensible (docs/ABI.md): a caller compiled
 * against an older, shorter struct gets defaults for the newer fields; a
 * caller compiled against a newer, longer one is accepted when the fields
 * this library does not know are zero, else refused with -E2BIG. */
typedef struct ferry_session_opts {
	size_t size;                 /**< sizeof(ferry_session_opts) */
	uint64_t default_timeout_us; /**< deadline of calls made with timeout_us
	                              * 0; 0 = FERRY_DEFAULT_TIMEOUT_US */
	uint32_t max_inflight;       /**< calls on the wire at once (channels,
	                              * 1-64); 0 = locator key channels (fast)
	                              * or 8. fast: the server may grant fewer */
	uint32_t max_queued;         /**< calls waiting for a channel before
	                              * ferry_call returns FERRY_EAGAIN;
	                              * 0 = 4096 */
	uint32_t maxmsg;             /**< message cap in bytes, both directions
	                              * as seen from this side; 0 = locator
	                              * key maxmsg or
	                              * FERRY_MSG_MAX_BYTES_DEFAULT */
	uint32_t reserved_;          /**< zero */
} ferry_session_opts;
/** Initialiser: size set, every option at its default. */
#define FERRY_SESSION_OPTS_INIT                                                          \
	{                                                                                \
		.size = sizeof(ferry_session_opts)                                       \
	}

/** ferry_session_open with options (opts may be NULL: all defaults).
 * Options that are also locator keys (maxmsg; max_inflight = fast's
 * channels) override the key when non-zero; the locator's other keys apply
 * as usual. Errors as ferry_session_open, plus -EINVAL (size too small,
 * max_inflight over 64) and -E2BIG (unknown non-zero fields). */
FERRY_API int ferry_session_open_opts(ferry_ctx *ctx, const char *locator,
                                      const ferry_session_opts *opts,
                                      ferry_session **out);
/** Close: calls in flight or queued complete with FERRY_ECANCELED. */
FERRY_API void ferry_session_close(ferry_session *s);

/** Peer liveness, also of an idle session. A peer found dead is reported,
 * once, as event FERRY_EPEERDEAD to the session's event callback, and
 * ferry_session_status() says FERRY_EPEERDEAD until the peer is heard from
 * again (then it says 0; no event). fast notices an idle peer only with
 * keepalives on (locator key keepalive=US: a probe after US of silence,
 * dead after the liveness interval); stream when the connection is lost
 * (a closed or reset TCP connection at once; a silent one needs the
 * kernel's keepalive). Calls are not refused meanwhile: the next call tries
 * the peer again (fast: fails with FERRY_EPEERDEAD within the liveness
 * interval if it is still dead; stream: reconnects). Owner thread; cb runs
 * on it in callback context and may close s. */
typedef void (*ferry_session_event_cb)(void *arg, ferry_session *s, int event);
/** Set (or clear, cb NULL) s's event callback: see ferry_session_event_cb. */
FERRY_API void ferry_session_set_event_cb(ferry_session *s, ferry_session_event_cb cb,
                                          void *arg);
/** 0, or FERRY_EPEERDEAD while the peer is considered dead. */
FERRY_API int ferry_session_status(ferry_session *s);

/** Completion: status is 0 or a negative code; on success resp holds the
 * response. Runs on the context's thread, exactly once per accepted call. */
typedef void (*ferry_call_cb)(void *arg, int status, ferry_buf *resp);

/** Start a call. Its packets are queued at once; drivers that batch push
 * them out at the latest at the end of the context's next poll pass, with
 * everything else queued in that pass (udp: sendmmsg). Call
 * ferry_ctx_poll() to make progress. opcode >= FERRY_OPCODE_USER_MIN. timeout_us: the
 * deadline is now + timeout_us (0 = the default, FERRY_DEFAULT_TIMEOUT_US). req is owned
 * by ferry until cb runs; resp must be empty and stays the caller's.
 * Returns 0 (cb will run) or negative (cb will not run): FERRY_EAGAIN when
 * the session's queue is full, FERRY_ETOOBIG over the message cap,
 * -EINVAL, FERRY_ECANCELED on a closing session. From a foreign thread the
 * call is queued to the owner (0); every check, and any failure, reaches cb
 * there. */
FERRY_API int ferry_call(ferry_session *s, uint16_t opcode, ferry_buf *req,
                         ferry_buf *resp, uint64_t timeout_us, ferry_call_cb cb,
                         void *arg);
/** A call that can be canceled. Valid while the context lives; a handle
 * whose call has completed is recognised as such (ids are never reused). */
typedef struct ferry_call_handle {
	void *call;  /**< the library's call record (opaque) */
	uint64_t id; /**< the call's number; a completed call's no longer matches */
} ferry_call_handle;
/** As ferry_call, and on success (0) *h names the call. Owner thread only
 * (FERRY_EWRONGTHREAD: a foreign-thread call is not yet a call when this
 * returns, so it has nothing to name). */
FERRY_API int ferry_call_h(ferry_session *s, uint16_t opcode, ferry_buf *req,
                           ferry_buf *resp, uint64_t timeout_us, ferry_call_cb cb,
                           void *arg, ferry_call_handle *h);
/** Cancel: if the call has not completed, its callback runs with
 * FERRY_ECANCELED before this returns (0), its loans are given back, and on
 * fast and stream the server is told (best effort: a handler may poll
 * ferry_rpc_cancelled). A response arriving later is dropped and counted
 * (rpc.drop.after_cancel). -ENOENT: the call already completed (its
 * callback ran, or runs, with the real result) — the callback runs exactly
 * once either way. Owner thread only: FERRY_EWRONGTHREAD elsewhere. May be
 * called from callbacks and handlers. */
FERRY_API int ferry_call_cancel(ferry_ctx *ctx, ferry_call_handle h);

/** Synchronous wrapper: polls the context until the call completes.
 * Returns the call status. FERRY_EWOULDDEADLOCK from inside a handler or
 * callback, FERRY_EWRONGTHREAD from a foreign thread. */
FERRY_API int ferry_call_sync(ferry_session *s, uint16_t opcode, ferry_buf *req,
                              ferry_buf *resp, uint64_t timeout_us);

/** Receiving a response body into a file descriptor instead of a buffer:
 * what a file download or a FUSE read wants. On the splice driver the
 * bytes go socket -> pipe -> fd with splice(2) and never enter user memory
 * (when the fd allows it: see docs/drivers/splice.md); on every other
 * transport the same call works by copying. */
typedef struct ferry_fd_sink {
	int fd;           /**< destination; borrowed until the callback runs */
	int64_t off;      /**< write at this offset (pwrite-like), or -1: at the
	                   * fd's current position */
	uint64_t written; /**< out, before the callback: body bytes written */
	uint64_t copied;  /**< out: of those, bytes that passed through user
	                   * memory on their way to fd */
} ferry_fd_sink;
/** As ferry_call, with the response body written to sink->fd; the callback
 * gets an empty resp. A failed write to the fd fails the call with its
 * -errno (bytes already written stay written). Owner thread only
 * (FERRY_EWRONGTHREAD). sink is borrowed until the callback. */
FERRY_API int ferry_call_into_fd(ferry_session *s, uint16_t opcode, ferry_buf *req,
                                 ferry_fd_sink *sink, uint64_t timeout_us,
                                 ferry_call_cb cb, void *arg);
/** Synchronous ferry_call_into_fd: polls until the call completes and
 * returns its status (as ferry_call_sync). */
FERRY_API int ferry_call_into_fd_sync(ferry_session *s, uint16_t opcode, ferry_buf *req,
                                      ferry_fd_sink *sink, uint64_t timeout_us);

/** The deadline of a call made with timeout_us 0 (and no session default). */
#define FERRY_DEFAULT_TIMEOUT_US    5000000ull
#define FERRY_OPCODE_USER_MIN       16 /**< opcodes below are built-in services */
#define FERRY_MSG_MAX_BYTES_DEFAULT (64u << 20) /**< payload cap */

/* Servers -------------------------------------------------------------------*/
/** A handler runs on the context's thread with a request it borrows until it
 * replies. It may reply before returning or later, from any thread. */
typedef void (*ferry_handler_cb)(void *arg, ferry_rpc *rpc);

/** Create a server on ctx (listening nowhere yet). 0 or -ENOMEM. */
FERRY_API int ferry_server_create(ferry_ctx *ctx, ferry_server **out);
/** Stop listening and destroy; requests not yet replied to are dropped. */
FERRY_API void ferry_server_destroy(ferry_server *srv);
/** Drain: from now on new requests are answered FERRY_ESHUTDOWN (their
 * handlers never run); requests already with handlers finish. Polls the
 * context (owner thread, not from a handler or callback:
 * FERRY_EWOULDDEADLOCK) until every handler has replied and the replies
 * are out, or timeout_us passes (FERRY_ETIMEDOUT; the server keeps
 * draining). The server keeps refusing until it is destroyed. */
FERRY_API int ferry_server_drain(ferry_server *srv, uint64_t timeout_us);
/** Listen on one more locator (up to FERRY_SERVER_LISTEN_MAX = 16, then
 * -EMFILE). port=0 binds an ephemeral port; ferry_server_locator() tells
 * which. */
FERRY_API int ferry_server_listen(ferry_server *srv, const char *locator);
/** The i-th bound locator, written to out. Returns its length or
 * -ERANGE (no such listener / too small). */
FERRY_API int ferry_server_locator(ferry_server *srv, int i, char *out, size_t len);
/** Register the handler for opcode (replaces an earlier one). Opcodes below
 * FERRY_OPCODE_USER_MIN are reserved for built-in services: -EINVAL. */
FERRY_API int ferry_server_handle(ferry_server *srv, uint16_t opcode, ferry_handler_cb cb,
                                  void *arg);

/* Worker offload ------------------------------------------------------------*/
/** A handler registered as blocking runs on the server's worker pool instead
 * of the context's thread, so the poll loop keeps serving other calls while
 * it works (disk, locks, long computations). It gets the same rpc and
 * replies with ferry_rpc_reply() from the worker (the reply travels the
 * context's handoff queue). The pool's threads start at the first blocking
 * request. A request that finds the queue full is answered at once with
 * FERRY_EAGAIN (counted in rpc.workers.overflow); the poll loop never
 * waits for the pool. On fast, a request whose handler has not replied when
 * dispatch returns is acknowledged at once: the client then only probes
 * (no data retransmission) and the handler runs once. */
typedef struct ferry_workers_opts {
	int threads;   /**< worker threads; 0 = FERRY_WORKERS_THREADS_DEFAULT */
	int queue_max; /**< requests waiting; 0 = FERRY_WORKERS_QUEUE_DEFAULT */
} ferry_workers_opts;
#define FERRY_WORKERS_THREADS_DEFAULT 4    /**< worker threads when opts say 0 */
#define FERRY_WORKERS_QUEUE_DEFAULT   1024 /**< queued requests when opts say 0 */
#define FERRY_WORKERS_THREADS_MAX     256  /**< most worker threads per server */
/** Size the server's pool (owner thread; before its first blocking request,
 * else -EBUSY). opts NULL = the defaults. 0, -EINVAL or -EBUSY. */
FERRY_API int ferry_server_workers(ferry_server *srv, const ferry_workers_opts *opts);
/** As ferry_server_handle, for a handler that runs on the worker pool.
 * ferry_server_destroy() waits for handlers running on workers to return
 * and answers requests still queued with FERRY_ESHUTDOWN. */
FERRY_API int ferry_server_handle_blocking(ferry_server *srv, uint16_t opcode,
                                           ferry_handler_cb cb, void *arg);

/* Server groups (multi-core servers) ------------------------------------------*/
/** N contexts, one thread each, each with its own server and endpoints on
 * the same locators: the first context listens on the locators given, the
 * others on the locators it bound, so port=0 works. For udp and tcp the
 * locators need reuseport=1 (SO_REUSEPORT): the kernel spreads peers over
 * the contexts by a hash of the 4-tuple, so a fast session (open, data,
 * acks) or a tcp connection stays on the context that got its first packet.
 * infud and infrc take reuseport=1 on their bootstrap / setup listener: each
 * context has its own QP set, and a peer is pinned to the context whose
 * listener answered it.
 * Every context must listen before clients start: adding a socket to a
 * reuseport group changes the hash's mapping. */
/** A group hook, run on context index's own thread (see setup, fini). */
typedef int (*ferry_server_group_cb)(void *arg, int index, ferry_ctx *ctx,
                                     ferry_server *srv);
/** What ferry_server_group_start() builds. */
typedef struct ferry_server_group_opts {
	int nctx;        /**< contexts (threads), 1..FERRY_GROUP_CTX_MAX */
	int poll_mode;   /**< enum ferry_poll_mode of every context */
	const int *cpus; /**< NULL, or pin context i to cpus[i] (-1 = don't) */
	const char *const *locators; /**< what to listen on */
	int nlocators;               /**< entries in locators */
	/** On context index's thread, before listening: register handlers (and
	 * size the worker pool). Non-zero fails the start. May be NULL. */
	ferry_server_group_cb setup;
	/** On context index's thread, after it stopped polling and before its
	 * server and context are destroyed (read its counters here). May be
	 * NULL; its return value is ignored. */
	ferry_server_group_cb fini;
	void *arg; /**< the hooks' first argument */
} ferry_server_group_opts;
#define FERRY_GROUP_CTX_MAX 256 /**< most contexts in a group */
/** A running server group (opaque). */
typedef struct ferry_server_group ferry_server_group;
/** Start the threads; returns when every context listens (0) or after the
 * first failure, with everything torn down (its code; a locator problem's
 * message is logged through the log hook). */
FERRY_API int ferry_server_group_start(const ferry_server_group_opts *opts,
                                       ferry_server_group **out);
/** The i-th bound locator of the group (what clients use). Its length or
 * -ERANGE. Any thread. */
FERRY_API int ferry_server_group_locator(ferry_server_group *g, int i, char *out,
                                         size_t len);
/** Stop every context (each finishes its poll pass, runs fini, destroys its
 * server and context), join the threads and free the group. NULL is a
 * no-op. Not from one of the group's threads. */
FERRY_API void ferry_server_group_stop(ferry_server_group *g);

/** The request (borrowed until reply) and the response to fill. */
/** The request (borrowed until reply) and the response to fill. */
FERRY_API ferry_buf *ferry_rpc_request(ferry_rpc *rpc);
/** The response buffer to fill before ferry_rpc_reply(). */
FERRY_API ferry_buf *ferry_rpc_response(ferry_rpc *rpc);
/** The request's opcode. */
FERRY_API uint16_t ferry_rpc_opcode(ferry_rpc *rpc);
/** 1 once the client canceled this call (a CANCEL reached the server), else
 * 0. From any thread, until the reply: a long handler polls it and may
 * reply early (the client no longer waits for the answer). */
FERRY_API int ferry_rpc_cancelled(ferry_rpc *rpc);
/** Send the response (status 0) or an error status (negative code, which
 * the caller receives as its call status; the body is then dropped). From
 * any thread; exactly once per rpc. After it, rpc must not be touched. */
FERRY_API int ferry_rpc_reply(ferry_rpc *rpc, int status);

#ifdef __cplusplus
}
#endif
#endif
