/* The core side of the driver contract: opening and closing whole
 * endpoint stacks, and the thin wrappers through which the layers above
 * reach every driver (they validate and count in one place). */
#ifndef FERRY_DRIVERS_CORE_EP_H
#define FERRY_DRIVERS_CORE_EP_H

#include <stdbool.h>
#include <stddef.h>

#include "base/loc.h"
#include "ferry/driver.h"
#include "ferry/rpc.h"

/* What the layer that owns endpoints (the transport's context) lends the
 * drivers: their only way up. One static table per owner kind. */
typedef struct ferry__ep_host {
	/* A loaned packet's chunk left its buffer, on any thread: give pkt
	 * back to its driver through ferry__ep_release on the owner's thread.
	 * The signature of a buffer loan's release (arg = the ferry_pkt). */
	void (*loan_release)(void *pkt, void *data);
	/* A failure the application should read (ferry_ctx_errmsg); msg is
	 * complete, the host copies it. */
	void (*report)(ferry_ctx *ctx, int err, const char *msg);
} ferry__ep_host;

/* Open the stack loc names, bottom-up (each wrapper finds its inner
 * endpoint open), owned by ctx through host; sleeps: the owner waits on
 * the endpoints' fds (block mode). eps[0..*neps) outermost first. On
 * failure everything opened is closed and err names the bad part. */
int ferry__ep_open_stack(ferry_ctx *ctx, const ferry__ep_host *host, bool sleeps,
                         const ferry_loc *loc, unsigned flags,
                         const ferry_stream_upcalls *up, void *up_arg, ferry_ep **eps,
                         int *neps, char *err, size_t err_len);
void ferry__ep_close_stack(ferry_ep **eps, int neps);
void ferry__ep_close(ferry_ep *ep);
void ferry__ep_caps(ferry_ep *ep, ferry_caps *out);
int ferry__ep_ctl(ferry_ep *ep, int op, void *arg);
int ferry__ep_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                   ferry_buf_iter *payload);
int ferry__ep_flush(ferry_ep *ep);
int ferry__ep_poll(ferry_ep *ep, ferry_pkt **pkts, int max);
void ferry__ep_release(ferry_pkt *pkt);
int ferry__ep_connect(ferry_ep *ep, const ferry_loc *peer, ferry_conn **out);
int ferry__ep_send_msg(ferry_conn *c, const void *hdr, size_t hdr_len,
                       ferry_buf_iter *payload, void *cookie);
int ferry__ep_detach(ferry_conn *c, void *cookie);
void ferry__ep_conn_close(ferry_conn *c);
int ferry__ep_stream_poll(ferry_ep *ep, int max);
int ferry__ep_stream_flush(ferry_ep *ep);

#endif
