/* Packet capture (locator key pcap=FILE): a tap that interposes on the
 * bottom endpoint of a stack and writes every datagram it sends or
 * receives, and every whole stream message, to a pcap file with synthetic
 * Ethernet/IP/UDP headers (docs/CAPTURE.md).
 *
 * Costing nothing when off: the tap is a per-endpoint copy of the driver's
 * ops tables whose data-path members point here, installed in ep->drv (and
 * ep->up for streams). An endpoint without capture keeps the driver's own
 * tables, so the wrappers in ep.c do not even test a pointer. */
#ifndef FERRY_DRIVERS_CAPTURE_H
#define FERRY_DRIVERS_CAPTURE_H

#include <stddef.h>

#include "ferry/driver.h"
#include "ferry/rpc.h"

typedef struct ferry__cap_tap ferry__cap_tap;

/* Read the pcap keys of loc. Capture off: *out = NULL and 0. Otherwise
 * opens (or shares) the file's writer and returns a new tap in *out, not
 * yet attached. FERRY_EBADLOC with a message naming the key in err: bad
 * values, pcap_* without pcap, a file that cannot be opened, or a build
 * without libpcap. -ENOMEM. */
int ferry__cap_open(const ferry_loc *loc, ferry__cap_tap **out, char *err,
                    size_t err_len);

/* Attach tap to ep, the open bottom endpoint of a stack (takes the tap;
 * ep's close op releases it). */
void ferry__cap_attach(ferry__cap_tap *tap, ferry_ep *ep);

/* Release a tap that was never attached. NULL is fine. */
void ferry__cap_close(ferry__cap_tap *tap);

/* Report capture.* counters when ep has a tap; nothing otherwise. */
void ferry__cap_stats(ferry_ep *ep, ferry_stat_cb cb, void *arg);

#endif
