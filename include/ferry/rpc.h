/* ferry RPC API: contexts, sessions, calls and servers.
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
 * memory: reset the buffer when done to give them back. */
#ifndef FERRY_RPC_H
#define FERRY_RPC_H

#include <stdint.h>

#include "buf.h"
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_ctx ferry_ctx;
typedef struct ferry_session ferry_session;
typedef struct ferry_server ferry_server;
typedef struct ferry_rpc ferry_rpc;

/* Library version: "MAJOR.MINOR.PATCH". */
FERRY_API const char *ferry_version(void);

/* Allocator hook: every allocation the library makes goes through these.
 * Set before creating any context; NULL restores malloc/realloc/free. */
typedef struct ferry_allocator {
	void *(*malloc_fn)(size_t n);
	void *(*realloc_fn)(void *p, size_t n);
	void (*free_fn)(void *p);
} ferry_allocator;
FERRY_API void ferry_set_allocator(const ferry_allocator *a);

/* Log hook: the library never prints. level: 0 error, 1 warning, 2 info,
 * 3 debug. The message has no trailing newline. */
typedef void (*ferry_log_cb)(void *arg, int level, const char *msg);
FERRY_API void ferry_set_log(ferry_log_cb cb, void *arg);

/* Contexts ------------------------------------------------------------------*/
enum ferry_poll_mode {
	FERRY_POLL_SPIN = 0,  /* poll without sleeping (lowest latency) */
	FERRY_POLL_BLOCK = 1, /* sleep in epoll when idle (eventfd wake-up) */
};
typedef struct ferry_ctx_opts {
	int poll_mode; /* enum ferry_poll_mode; default SPIN */
	int cpu;       /* pin the creating thread to this CPU; -1 = don't */
} ferry_ctx_opts;

/* Create a context owned by the calling thread. opts may be NULL
 * (spin, no pinning). 0 or -errno. */
FERRY_API int ferry_ctx_create(const ferry_ctx_opts *opts, ferry_ctx **out);
/* Destroy: closes servers and sessions (their calls complete with
 * FERRY_ECANCELED first) and endpoints. Owner thread only. Every rpc handed
 * to a handler must have been replied to first: an rpc still held by
 * application code (a worker thread) would outlive the context. */
FERRY_API void ferry_ctx_destroy(ferry_ctx *ctx);
/* One run-to-completion pass: handoff queue, endpoints, timers, flush.
 * In block mode, when the pass found no work, waits up to timeout_us for
 * some (-1 = until the next timer or event). Returns the number of events
 * handled (packets, timers, handoffs) or -errno. */
FERRY_API int ferry_ctx_poll(ferry_ctx *ctx, int64_t timeout_us);
/* Message describing the last error a call on this context returned
 * (locator problems name the bad part). Valid until the next call. */
FERRY_API const char *ferry_ctx_errmsg(ferry_ctx *ctx);
/* Report every counter of the context (transport and each endpoint,
 * drivers included) as name/value pairs. */
typedef void (*ferry_stat_cb)(void *arg, const char *name, uint64_t value);
FERRY_API void ferry_ctx_stats(ferry_ctx *ctx, ferry_stat_cb cb, void *arg);
/* Microseconds on the context's monotonic clock (as of the last poll). */
FERRY_API uint64_t ferry_ctx_now_us(ferry_ctx *ctx);

/* Sessions and calls -------------------------------------------------------*/
/* Open a session to the server at locator (e.g.
 * "unreliable+udp:host=127.0.0.1,port=12242"). The locator is parsed and
 * the address resolved once, here. FERRY_EBADLOC (see ferry_ctx_errmsg),
 * or -errno. */
FERRY_API int ferry_session_open(ferry_ctx *ctx, const char *locator,
                                 ferry_session **out);
/* Close: calls in flight or queued complete with FERRY_ECANCELED. */
FERRY_API void ferry_session_close(ferry_session *s);

/* Completion: status is 0 or a negative code; on success resp holds the
 * response. Runs on the context's thread, exactly once per accepted call. */
typedef void (*ferry_call_cb)(void *arg, int status, ferry_buf *resp);

/* Start a call. Its packets are queued at once; drivers that batch push
 * them out at the latest at the end of the context's next poll pass, with
 * everything else queued in that pass (udp: sendmmsg). Call
 * ferry_ctx_poll() to make progress. opcode >= FERRY_OPCODE_USER_MIN. timeout_us: the deadline is
 * now + timeout_us (0 = the default, FERRY_DEFAULT_TIMEOUT_US). req is owned
 * by ferry until cb runs; resp must be empty and stays the caller's.
 * Returns 0 (cb will run) or negative (cb will not run): FERRY_EAGAIN when
 * the session's queue is full, FERRY_ETOOBIG over the message cap,
 * -EINVAL. From a foreign thread the call is queued to the owner (0). */
FERRY_API int ferry_call(ferry_session *s, uint16_t opcode, ferry_buf *req,
                         ferry_buf *resp, uint64_t timeout_us, ferry_call_cb cb,
                         void *arg);
/* Synchronous wrapper: polls the context until the call completes.
 * Returns the call status. FERRY_EWOULDDEADLOCK from inside a handler or
 * callback, FERRY_EWRONGTHREAD from a foreign thread. */
FERRY_API int ferry_call_sync(ferry_session *s, uint16_t opcode,
                              ferry_buf *req, ferry_buf *resp,
                              uint64_t timeout_us);

/* Receiving a response body into a file descriptor instead of a buffer:
 * what a file download or a FUSE read wants. On the splice driver the
 * bytes go socket -> pipe -> fd with splice(2) and never enter user memory
 * (when the fd allows it: see docs/drivers/splice.md); on every other
 * transport the same call works by copying. */
typedef struct ferry_fd_sink {
	int fd;           /* destination; borrowed until the callback runs */
	int64_t off;      /* write at this offset (pwrite-like), or -1: at the
	                   * fd's current position */
	uint64_t written; /* out, before the callback: body bytes written */
	uint64_t copied;  /* out: of those, bytes that passed through user
	                   * memory on their way to fd */
} ferry_fd_sink;
/* As ferry_call, with the response body written to sink->fd; the callback
 * gets an empty resp. A failed write to the fd fails the call with its
 * -errno (bytes already written stay written). Owner thread only
 * (FERRY_EWRONGTHREAD). sink is borrowed until the callback. */
FERRY_API int ferry_call_into_fd(ferry_session *s, uint16_t opcode, ferry_buf *req,
                                 ferry_fd_sink *sink, uint64_t timeout_us,
                                 ferry_call_cb cb, void *arg);
FERRY_API int ferry_call_into_fd_sync(ferry_session *s, uint16_t opcode,
                                      ferry_buf *req, ferry_fd_sink *sink,
                                      uint64_t timeout_us);

#define FERRY_DEFAULT_TIMEOUT_US 5000000ull
#define FERRY_OPCODE_USER_MIN 16 /* opcodes below are built-in services */
#define FERRY_MSG_MAX_BYTES_DEFAULT (64u << 20) /* payload cap */

/* Servers -------------------------------------------------------------------*/
/* A handler runs on the context's thread with a request it borrows until it
 * replies. It may reply before returning or later, from any thread. */
typedef void (*ferry_handler_cb)(void *arg, ferry_rpc *rpc);

FERRY_API int ferry_server_create(ferry_ctx *ctx, ferry_server **out);
/* Stop listening and destroy; requests not yet replied to are dropped. */
FERRY_API void ferry_server_destroy(ferry_server *srv);
/* Listen on one more locator (up to FERRY_SERVER_LISTEN_MAX = 16, then
 * -EMFILE). port=0 binds an ephemeral port; ferry_server_locator() tells
 * which. */
FERRY_API int ferry_server_listen(ferry_server *srv, const char *locator);
/* The i-th bound locator, written to out. Returns its length or
 * -ERANGE (no such listener / too small). */
FERRY_API int ferry_server_locator(ferry_server *srv, int i, char *out,
                                   size_t len);
/* Register the handler for opcode (replaces an earlier one). Opcodes below
 * FERRY_OPCODE_USER_MIN are reserved for built-in services: -EINVAL. */
FERRY_API int ferry_server_handle(ferry_server *srv, uint16_t opcode,
                                  ferry_handler_cb cb, void *arg);

/* Worker offload ------------------------------------------------------------*/
/* A handler registered as blocking runs on the server's worker pool instead
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
	int threads;   /* worker threads; 0 = FERRY_WORKERS_THREADS_DEFAULT */
	int queue_max; /* requests waiting for a worker; 0 = FERRY_WORKERS_QUEUE_DEFAULT */
} ferry_workers_opts;
#define FERRY_WORKERS_THREADS_DEFAULT 4
#define FERRY_WORKERS_QUEUE_DEFAULT 1024
#define FERRY_WORKERS_THREADS_MAX 256
/* Size the server's pool (owner thread; before its first blocking request,
 * else -EBUSY). opts NULL = the defaults. 0, -EINVAL or -EBUSY. */
FERRY_API int ferry_server_workers(ferry_server *srv, const ferry_workers_opts *opts);
/* As ferry_server_handle, for a handler that runs on the worker pool.
 * ferry_server_destroy() waits for handlers running on workers to return
 * and answers requests still queued with FERRY_ESHUTDOWN. */
FERRY_API int ferry_server_handle_blocking(ferry_server *srv, uint16_t opcode,
                                           ferry_handler_cb cb, void *arg);

/* Server groups (multi-core servers) ------------------------------------------*/
/* N contexts, one thread each, each with its own server and endpoints on
 * the same locators: the first context listens on the locators given, the
 * others on the locators it bound, so port=0 works. For udp and tcp the
 * locators need reuseport=1 (SO_REUSEPORT): the kernel spreads peers over
 * the contexts by a hash of the 4-tuple, so a fast session (open, data,
 * acks) or a tcp connection stays on the context that got its first packet.
 * Every context must listen before clients start: adding a socket to a
 * reuseport group changes the hash's mapping. */
typedef int (*ferry_server_group_cb)(void *arg, int index, ferry_ctx *ctx,
                                     ferry_server *srv);
typedef struct ferry_server_group_opts {
	int nctx;                   /* contexts (threads), 1..FERRY_GROUP_CTX_MAX */
	int poll_mode;              /* enum ferry_poll_mode of every context */
	const int *cpus;            /* NULL, or pin context i to cpus[i] (-1 = don't) */
	const char *const *locators; /* what to listen on */
	int nlocators;
	/* On context index's thread, before listening: register handlers (and
	 * size the worker pool). Non-zero fails the start. May be NULL. */
	ferry_server_group_cb setup;
	/* On context index's thread, after it stopped polling and before its
	 * server and context are destroyed (read its counters here). May be
	 * NULL; its return value is ignored. */
	ferry_server_group_cb fini;
	void *arg;
} ferry_server_group_opts;
#define FERRY_GROUP_CTX_MAX 256
typedef struct ferry_server_group ferry_server_group;
/* Start the threads; returns when every context listens (0) or after the
 * first failure, with everything torn down (its code; a locator problem's
 * message is logged through the log hook). */
FERRY_API int ferry_server_group_start(const ferry_server_group_opts *opts,
                                       ferry_server_group **out);
/* The i-th bound locator of the group (what clients use). Its length or
 * -ERANGE. Any thread. */
FERRY_API int ferry_server_group_locator(ferry_server_group *g, int i, char *out,
                                         size_t len);
/* Stop every context (each finishes its poll pass, runs fini, destroys its
 * server and context), join the threads and free the group. NULL is a
 * no-op. Not from one of the group's threads. */
FERRY_API void ferry_server_group_stop(ferry_server_group *g);

/* The request (borrowed until reply) and the response to fill. */
FERRY_API ferry_buf *ferry_rpc_request(ferry_rpc *rpc);
FERRY_API ferry_buf *ferry_rpc_response(ferry_rpc *rpc);
FERRY_API uint16_t ferry_rpc_opcode(ferry_rpc *rpc);
/* Send the response (status 0) or an error status (negative code, which
 * the caller receives as its call status; the body is then dropped). From
 * any thread; exactly once per rpc. After it, rpc must not be touched. */
FERRY_API int ferry_rpc_reply(ferry_rpc *rpc, int status);

#ifdef __cplusplus
}
#endif
#endif
