/* Internal transport table: what the RPC core needs from a transport
 * (unreliable now; fast and stream later). The core owns sessions, calls,
 * channels, servers and timers; a transport frames calls into packets on a
 * port and turns packets back into completions and requests. */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stdbool.h>

#include "ferry/driver.h"
#include "ferry/metrics.h"

struct ferry__port;
struct ferry__call;
struct ferry_session;
struct ferry_rpc;

#define FERRY_TRANSPORTS_MAX 4

typedef struct ferry__transport_ops {
	const char *name;
	int index;               /* slot in ctx->tp_ctx */
	const char *const *keys; /* locator keys it accepts, NULL-ended */
	/* Implied by the driver (stream), never named in a locator. */
	bool implicit;
	/* Stream transports: upcalls their ports' endpoints get (arg = port). */
	const ferry_stream_upcalls *upcalls;
	/* Optional: find or open the client port of session s (ports shared
	 * between sessions to one peer) and resolve the peer. Without it the
	 * core opens one port per session. 0 or negative (errmsg set). */
	int (*session_port)(struct ferry_session *s, const ferry_loc *loc);
	/* Optional, with session_port: s no longer uses its port. */
	void (*session_port_put)(struct ferry_session *s);
	/* Session opened on a client port: set up per-session state. */
	int (*session_init)(struct ferry_session *s);
	/* The session is closing (its calls already completed): free state. */
	void (*session_fini)(struct ferry_session *s);
	/* A server port opened: set up per-port state (may be NULL). */
	int (*server_port_init)(struct ferry__port *port, const ferry_loc *loc);
	/* A call has a channel; put it on the wire. 0 or negative: the core
	 * then fails the call with that status. */
	int (*call_start)(struct ferry__call *c);
	/* Optional: the application cancels c, which is on a channel; tell
	 * the server (best effort). call_end follows with FERRY_ECANCELED. */
	void (*call_cancel)(struct ferry__call *c);
	/* A call ended (any status) while on a channel: stop its timers and
	 * drop transport state for it. */
	void (*call_end)(struct ferry__call *c, int status);
	/* A packet arrived on a client port / a server port. The transport
	 * takes the packet (releases it or loans it into a buffer). */
	void (*client_pkt)(struct ferry__port *port, ferry_pkt *pkt);
	void (*server_pkt)(struct ferry__port *port, ferry_pkt *pkt);
	/* Optional: the batch of packets just given to port's upcalls is
	 * over (before the pass flushes): send what the batch made due. */
	void (*rx_batch_end)(struct ferry__port *port);
	/* Send rpc's response (owner thread). Returns true when the transport
	 * keeps the rpc (a retained reply), false when the core recycles it
	 * after the flush. */
	bool (*server_reply)(struct ferry_rpc *rpc);
	/* Optional: true while the server port still has replies on their
	 * way (ferry_server_drain waits for them). */
	bool (*server_port_busy)(struct ferry__port *port);
	/* The server port is closing: drop transport state tied to it. */
	void (*server_port_fini)(struct ferry__port *port);
	/* Report this transport's counters and histograms for ctx. */
	void (*stats)(ferry_ctx *ctx, void (*cb)(void *, const char *, uint64_t),
	              void *arg);
	void (*hists)(ferry_ctx *ctx, ferry_hist_cb cb, void *arg);
	/* The context is going away: free its per-context state. */
	void (*ctx_fini)(ferry_ctx *ctx);
} ferry__transport_ops;

const ferry__transport_ops *ferry__transport_find(const char *name);
/* Every transport, NULL-terminated; transports[i]->index == i. */
extern const ferry__transport_ops *const ferry__transports[FERRY_TRANSPORTS_MAX + 1];

extern const ferry__transport_ops ferry__unreliable_ops;
extern const ferry__transport_ops ferry__fast_ops;
extern const ferry__transport_ops ferry__stream_ops;

#endif
