/* Shared between the tcp and splice drivers: splice is tcp with the
 * zero-copy file path switched on (sendfile for file regions, splice for
 * bodies that go to an fd). */
#ifndef FERRY_TCP_H
#define FERRY_TCP_H

#include "ferry/driver.h"

/* Bytes of a tcp endpoint (both drivers' ep_size; checked in tcp.c). */
#define FERRY_TCP_EP_BYTES 1024

extern const char *const ferry__tcp_keys[];
extern const ferry_stream_ops ferry__tcp_stream_ops;
int ferry__tcp_open_mode(ferry_ep *ep, const ferry_loc *loc, unsigned flags, bool zerocopy);

#endif
