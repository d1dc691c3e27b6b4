/* Internal structures of the RPC core: context, ports, sessions, calls,
 * servers and server-side rpcs. Transports see these; applications do not. */
#ifndef FERRY_CORE_H
#define FERRY_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry/driver.h"
#include "ferry/metrics.h"
#include "ferry/rpc.h"
#include "base/clock.h"
#include "drivers/core/ep.h"
#include "base/log.h"
#include "metrics/service.h"
#include "metrics/trace.h"
#include "locator.h"
#include "reasm.h"
#include "timer.h"
#include "transport.h"

#define FERRY_CHANNELS_DEFAULT  8 /* calls in flight per session */
#define FERRY_CHANNELS_MAX      64
#define FERRY_SESSION_QUEUE_MAX 4096 /* calls waiting for a channel */
#define FERRY_POLL_BATCH        32   /* packets taken from an endpoint per poll */
#define FERRY_SERVER_LISTEN_MAX 16   /* locators per server */
#define FERRY_ERRMSG_BYTES      256
#define FERRY_TIMERS_INITIAL    256

/* Handoff queue node: work another thread hands to the owner thread. */
typedef struct ferry__handoff ferry__handoff;
struct ferry__handoff {
	ferry__handoff *next;
	void (*fn)(ferry_ctx *ctx, ferry__handoff *h);
};

/* A port is an open endpoint stack plus its transport and its owner (a
 * client session or a server). */
typedef struct ferry__port {
	ferry_ctx *ctx;
	uint32_t id;                         /* stable port number (trace events) */
	struct ferry__port *next;            /* ctx->ports */
	ferry_ep *ep;                        /* outermost endpoint */
	ferry_ep *eps[FERRY_LOC_MAX_LAYERS]; /* outermost first */
	int neps;
	const ferry__transport_ops *tp;
	bool server;
	bool stream;            /* bottom driver is a stream driver */
	bool dead;              /* closed; freed after the current poll pass */
	ferry_session *session; /* client port */
	ferry_server *srv;      /* server port */
	ferry_caps caps;
	uint32_t msg_max;        /* payload cap (bytes) */
	struct ferry_rpc *done;  /* rpcs replied this pass, freed after flush */
	struct ferry_rpc *reasm; /* server: requests being reassembled */
	uint32_t nreasm;
	void *tstate; /* transport's per-port state */
	char bound[FERRY_LOC_MAX_BYTES];
} ferry__port;

enum ferry__call_state {
	FERRY_CALL_FREE = 0,
	FERRY_CALL_QUEUED,
	FERRY_CALL_ACTIVE,
};

typedef struct ferry__call {
	ferry_session *s;
	struct ferry__call *next; /* session queue or free list */
	ferry_buf *req, *resp;
	ferry_call_cb cb;
	void *arg;
	uint64_t timeout_us;
	uint64_t start_ns;  /* for rpc.call_ns */
	ferry__timer timer; /* deadline */
	/* ferry_call_into_fd: the response body goes to sink->fd. A stream
	 * transport that writes it there itself sets sink_done; otherwise the
	 * core copies resp (then sink_buf, allocated once per call object) to
	 * the fd at completion. */
	ferry_fd_sink *sink;
	ferry_buf *sink_buf;
	bool sink_done;
	uint32_t tp_word; /* transport's use (stream: connection generation) */
	uint64_t id;      /* per-context call number: ferry_call_handle.id */
	uint32_t rpc_id;
	uint16_t opcode;
	uint8_t chan;
	uint8_t state;
} ferry__call;

typedef struct ferry__chan {
	ferry__call *call;        /* NULL = idle */
	uint32_t rpc_id;          /* last id used on this channel */
	uint32_t canceled_rpc_id; /* last call canceled here (late responses) */
	bool canceled;            /* canceled_rpc_id is valid */
	ferry__reasm rx;          /* response reassembly */
} ferry__chan;

struct ferry_session {
	ferry_ctx *ctx;
	uint32_t index; /* slot in ctx->sessions: the client hint */
	uint64_t gen;   /* unique per context: foreign-thread calls find the
	                 * session by (index, gen), never by a stale pointer */
	ferry__port *port;
	ferry_addr peer;
	const ferry__transport_ops *tp;
	uint32_t frag_bytes; /* payload bytes per fragment we send */
	uint32_t nchan;
	bool closing;        /* ferry_session_close() under way */
	bool failing;        /* ferry__session_fail() under way: no relaunch */
	bool close_deferred; /* closed by a callback while failing: free at its end */
	/* Sticky: FERRY_EVERSION once the peer refused our wire version (or
	 * answered at one we do not speak); new calls then fail at once. */
	int refused;
	uint8_t peer_vmin, peer_vmax; /* the versions the peer said it speaks */
	uint64_t default_timeout_us;  /* ferry_session_opts; 0 = library default */
	uint32_t max_queued;          /* calls waiting for a channel, at most */
	bool max_queued_set;          /* by ferry_session_opts: wins over queue= */
	uint64_t busy_mask;           /* channels with a call */
	ferry__call *q_head, *q_tail;
	uint32_t qlen;
	void *tstate;                 /* transport's per-session state */
	ferry_session_event_cb ev_cb; /* peer events (FERRY_EPEERDEAD, 0) */
	void *ev_arg;
	int peer_status; /* 0, or FERRY_EPEERDEAD until the peer is heard */
	ferry__chan chan[FERRY_CHANNELS_MAX];
};

/* Server-side request handle. */
enum ferry__rpc_state {
	FERRY_RPC_FREE = 0,
	FERRY_RPC_RECEIVING,
	FERRY_RPC_HANDLER, /* handed to the application */
	FERRY_RPC_DONE,    /* replied; waiting for the flush */
};

struct ferry_rpc {
	ferry_ctx *ctx;
	ferry_server *srv;                     /* NULL once orphaned (server destroyed) */
	struct ferry_rpc *out_prev, *out_next; /* ctx->rpcs_out while in a handler */
	ferry__port *port;
	struct ferry_rpc *next; /* free list, port->done or port->reasm */
	ferry__handoff ho;      /* foreign-thread reply */
	void *tp;               /* transport's link (fast: the server channel) */
	ferry_addr peer;
	uint32_t client_hint, rpc_id;
	uint32_t frag_bytes; /* response payload bytes per fragment */
	uint16_t opcode;
	uint8_t chan;
	uint8_t state;
	int status;
	atomic_bool cancelled; /* the client canceled: ferry_rpc_cancelled() */
	uint64_t start_ns;     /* request complete, for rpc.handler_ns */
	ferry__timer timer;    /* reassembly expiry */
	ferry__reasm rx;
	ferry_buf req, resp;
};

typedef struct ferry__handler {
	ferry_handler_cb cb;
	void *arg;
	bool blocking; /* runs on the server's worker pool (workers.c) */
} ferry__handler;

typedef struct ferry__workers ferry__workers;

struct ferry_server {
	ferry_ctx *ctx;
	struct ferry_server *next; /* ctx->servers */
	ferry__port *ports[FERRY_SERVER_LISTEN_MAX];
	int nports;
	ferry__handler *handlers[256];   /* by opcode >> 8, lazily allocated */
	uint32_t rpcs_out;               /* rpcs handed out and not replied */
	bool draining;                   /* ferry_server_drain: new requests get
	                                  * FERRY_ESHUTDOWN */
	ferry__metrics_svc *metrics_svc; /* the built-in metrics service */
	ferry__workers *workers;         /* blocking handlers' pool, lazily */
};

/* Counters of a context: X(field, "dotted.name"). Plain integers touched
 * only by the owner thread; ferry_ctx_stats() reads them on demand. Requests
 * and responses count application calls only; built-in services (opcodes
 * below 16) are counted apart. */
/* clang-format off */
#define FERRY_RPC_COUNTERS(X)                                                  \
	X(calls_started, "rpc.calls_started")                                  \
	X(calls_completed, "rpc.calls_completed")                              \
	X(calls_failed, "rpc.calls_failed")                                    \
	X(calls_timedout, "rpc.calls_timedout")                                \
	X(calls_queue_full, "rpc.calls_queue_full")                            \
	X(requests_sent, "rpc.requests_sent")                                  \
	X(responses_received, "rpc.responses_received")                        \
	X(requests_received, "rpc.requests_received")                          \
	X(responses_sent, "rpc.responses_sent")                                \
	X(builtin_calls, "rpc.builtin.calls_started")                          \
	X(builtin_requests, "rpc.builtin.requests_received")                   \
	X(builtin_responses, "rpc.builtin.responses_sent")                     \
	X(no_handler, "rpc.no_handler")                                        \
	X(handoffs, "rpc.handoffs")                                            \
	X(loans_released_remote, "rpc.loans_released_remote")                  \
	X(loans_leaked, "rpc.loans_leaked")                                    \
	X(tx_dropped, "rpc.tx_dropped")                                        \
	X(rx_short, "rpc.drop.short")                                          \
	X(rx_bad_magic, "rpc.drop.bad_magic")                                  \
	X(rx_bad_version, "rpc.drop.bad_version")                              \
	X(rx_bad_type, "rpc.drop.bad_type")                                    \
	X(rx_bad_length, "rpc.drop.bad_length")                                \
	X(rx_unknown_session, "rpc.drop.unknown_session")                      \
	X(rx_stale, "rpc.drop.stale")                                          \
	X(rx_dup_frag, "rpc.drop.dup_fragment")                                \
	X(rx_ahead_frag, "rpc.drop.ahead_fragment")                            \
	X(rx_mismatch, "rpc.drop.mismatch")                                    \
	X(rx_nomem, "rpc.drop.nomem")                                          \
	X(rx_scarce_copies, "rpc.rx_scarce_copies")                            \
	X(rx_too_big, "rpc.drop.too_big")                                      \
	X(rx_reasm_full, "rpc.drop.reassembly_full")                          \
	X(version_mismatch_sent, "rpc.version.mismatch_sent")                  \
	X(version_refused, "rpc.version.refused_by_peer")                      \
	X(sink_calls, "rpc.sink.calls")                                        \
	X(sink_bytes, "rpc.sink.bytes")                                        \
	X(sink_copied, "rpc.sink.copied_bytes")                                \
	X(calls_canceled, "rpc.calls_canceled")                                \
	X(cancels_too_late, "rpc.cancels_too_late")                            \
	X(late_after_cancel, "rpc.drop.after_cancel")                          \
	X(cancels_received, "rpc.cancels_received")                            \
	X(cancels_matched, "rpc.cancels_matched")                              \
	X(drain_refused, "rpc.drain_refused")                                  \
	X(peer_dead_events, "rpc.peer_dead_events")
/* clang-format on */

typedef struct ferry__ctx_counters {
#define FERRY_CNT_FIELD_(field, name) uint64_t field;
	FERRY_RPC_COUNTERS(FERRY_CNT_FIELD_)
#undef FERRY_CNT_FIELD_
} ferry__ctx_counters;

struct ferry_ctx {
	pid_t owner_tid;
	pid_t owner_pid;   /* the creating process: a fork child is refused */
	bool destroying;   /* ferry_ctx_destroy under way */
	uint64_t call_ids; /* last ferry__call.id handed out */
	int poll_mode;
	/* Set while a batch from a port whose driver pool is more than half
	 * loaned out is dispatched: reassembly copies instead of loaning. */
	bool rx_scarce;
	int epfd, evfd;
	int depth; /* >0 while running a handler or callback */
	uint64_t now_us;
	uint64_t now_ns; /* the same instant, in ns */
	ferry__timers timers;
	ferry__port *ports;
	ferry_server *servers;
	ferry_session **sessions;
	uint32_t nsessions, sessions_cap;
	uint64_t session_gen;
	uint32_t port_ids; /* stable port numbers for metric names */
	ferry__call *free_calls;
	struct ferry_rpc *free_rpcs;
	struct ferry_rpc *rpcs_out; /* with handlers, not yet replied */
	pthread_mutex_t ho_lock;
	ferry__handoff *ho_head, *ho_tail;
	ferry_pkt *ho_pkts; /* loans released on other threads */
	atomic_int ho_pending;
	ferry__ctx_counters cnt;
	ferry_hist hist_call, hist_handler;
	char errmsg[FERRY_ERRMSG_BYTES];
	uint64_t log_drop_us;               /* last rate-limited drop message */
	uint64_t log_drop_suppressed;       /* drop messages not logged since */
	void *tp_ctx[FERRY_TRANSPORTS_MAX]; /* transports' per-context state */
	ferry__trace trace;
};

/* Trace points of the core: static format strings, two arguments. */
#define FERRY_TRACE(ctx, fmt, a, b)                                                      \
	ferry__trace_rec(&(ctx)->trace, fmt, (uint64_t)(a), (uint64_t)(b))

/* ctx.c */
pid_t ferry__tid(void);
/* This process's pid, cached (refreshed in a fork child by an atfork
 * handler, which also forgets the cached thread id). */
pid_t ferry__pid(void);
/* ctx was inherited across fork(): nothing may touch it here. */
static inline bool ferry__forked(const ferry_ctx *ctx)
{
	return ferry__pid() != ctx->owner_pid;
}
/* The owner thread of the owner process (a fork child's thread has a tid
 * of its own, so it never passes). */
static inline bool ferry__on_owner(const ferry_ctx *ctx)
{
	return ferry__tid() == ctx->owner_tid;
}
void ferry__handoff_push(ferry_ctx *ctx, ferry__handoff *h);
/* Owner thread: run what other threads handed off (handoff.c). */
void ferry__handoff_drain(ferry_ctx *ctx);
/* Owner thread, between passes: free the ports closed meanwhile (port.c). */
void ferry__ports_sweep(ferry_ctx *ctx);
/* How a context's endpoints reach it: loan releases, failure reports. */
extern const ferry__ep_host ferry__ctx_ep_host;
int ferry__set_errmsg(ferry_ctx *ctx, int err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Dropped input from the network: FERRY_LOG_DEBUG, at most one message per
 * FERRY_LOG_DROP_INTERVAL_US per context (the next one says how many were
 * suppressed), so a flood of garbage cannot flood the log. */
#define FERRY_LOG_DROP_INTERVAL_US 1000000
void ferry__log_drop(ferry_ctx *ctx, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Read the clock into ctx->now_ns / now_us. */
void ferry__ctx_tick(ferry_ctx *ctx);
int ferry__port_open(ferry_ctx *ctx, const ferry_loc *loc, bool server,
                     ferry__port **out);
void ferry__port_close(ferry__port *port);

/* workers.c: the pool behind ferry_server_handle_blocking */
/* Owner thread: queue rpc for h on a worker, or answer FERRY_EAGAIN. */
void ferry__workers_submit(ferry_server *srv, const ferry__handler *h,
                           struct ferry_rpc *rpc);
/* Owner thread, server being destroyed: join the workers (handlers
 * running finish), answer queued requests FERRY_ESHUTDOWN, free. */
void ferry__workers_fini(ferry_server *srv);
/* rpc.workers.* summed over the context's servers. */
void ferry__workers_stats(ferry_ctx *ctx, ferry_stat_cb cb, void *arg);

/* call.c: client side */
void ferry__call_complete(ferry__call *c, int status);
/* A response (or the server's error status) arrived for c: count it, then
 * complete. */
void ferry__call_response(ferry__call *c, int status);
/* Channels became available (a session opened): launch queued calls. */
void ferry__session_kick(ferry_session *s);
/* The peer of s refused our wire version, or speaks only [vmin, vmax]:
 * fail every call with FERRY_EVERSION, set the context's errmsg naming both
 * versions, and fail later calls at once (the session stays refused). */
void ferry__session_version_refused(ferry_session *s, unsigned vmin, unsigned vmax);
/* Fail every call of s, in flight and queued, with status. */
/* Fail every call of s (in flight and queued) with status. A callback may
 * close s: then s (and the transport's session state) is gone when this
 * returns false, and the caller must not touch either. */
bool ferry__session_fail(ferry_session *s, int status);
/* The peer of s was found dead (status FERRY_EPEERDEAD: reported once to
 * the session's event callback, which may close s) or heard again (0:
 * cleared silently, so safe anywhere). */
void ferry__session_peer(ferry_session *s, int status);
/* A client port dropped a response nobody waits for: count it (stale, and
 * after_cancel when it answers a call canceled on that channel). */
void ferry__call_stale(ferry_session *s, uint32_t chan, uint32_t rpc_id);
/* ferry_call / ferry_call_sync without the reserved-opcode check: the
 * built-in services' client side. */
int ferry__call_any(ferry_session *s, uint16_t opcode, ferry_buf *req, ferry_buf *resp,
                    uint64_t timeout_us, ferry_call_cb cb, void *arg);
int ferry__call_sync_any(ferry_session *s, uint16_t opcode, ferry_buf *req,
                         ferry_buf *resp, uint64_t timeout_us);
void ferry__sessions_close_all(ferry_ctx *ctx);

/* server.c */
struct ferry_rpc *ferry__rpc_get(ferry_ctx *ctx);
void ferry__rpc_put(ferry_ctx *ctx, struct ferry_rpc *rpc);
/* Recycle rpc after the current pass's flush (its buffers may still be
 * referenced by queued packets). */
void ferry__rpc_retire(struct ferry_rpc *rpc);
void ferry__server_dispatch(struct ferry_rpc *rpc);
void ferry__servers_destroy_all(ferry_ctx *ctx);
int ferry__server_handle_builtin(ferry_server *srv, uint16_t opcode, ferry_handler_cb cb,
                                 void *arg);

#endif
