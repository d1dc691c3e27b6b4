/* Internal transport table: what the RPC core needs from a transport
 * (unreliable now; fast and stream later). The core owns sessions, calls,
 * channels, servers and timers; a transport frames calls into packets on a
 * port and turns packets back into completions and requests. */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include "ferry/driver.h"

struct ferry__port;
struct ferry__call;
struct ferry_session;
struct ferry_rpc;

typedef struct ferry__transport_ops {
	const char *name;
	const char *const *keys; /* locator keys it accepts, NULL-ended */
	/* Session opened on a client port: set up per-session state. */
	int (*session_init)(struct ferry_session *s);
	/* A call has a channel; put it on the wire. 0 or negative: the core
	 * then fails the call with that status. */
	int (*call_start)(struct ferry__call *c);
	/* A call ended early (deadline, close): drop transport state (partial
	 * reassembly) for it. */
	void (*call_abort)(struct ferry__call *c);
	/* A packet arrived on a client port / a server port. The transport
	 * takes the packet (releases it or loans it into a buffer). */
	void (*client_pkt)(struct ferry__port *port, ferry_pkt *pkt);
	void (*server_pkt)(struct ferry__port *port, ferry_pkt *pkt);
	/* Send rpc's response (owner thread). */
	void (*server_reply)(struct ferry_rpc *rpc);
	/* The server port is closing: drop transport state tied to it. */
	void (*server_port_fini)(struct ferry__port *port);
} ferry__transport_ops;

const ferry__transport_ops *ferry__transport_find(const char *name);

extern const ferry__transport_ops ferry__unreliable_ops;

#endif
