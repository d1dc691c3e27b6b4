/* ferry metrics: counters of a context, as name/value pairs and as a dump.
 *
 * Counters are kept per context (no sharing between threads, no atomics on
 * the fast path). Names are dotted paths: "transport.calls_started",
 * "ep.3.udp.tx_pkts", "ep.3.udp.sendmmsg_calls", where 3 is the port's
 * number in its context (assigned at open, in order, never reused). The
 * dump format is one
 * "name value" line per counter, in a stable order, which the plot scripts
 * read. The remote START/STOP/DUMP service arrives with ferry-bench. */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "rpc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Write every counter of ctx to f in the dump format. 0 or -errno. */
FERRY_API int ferry_metrics_dump(ferry_ctx *ctx, FILE *f);
/* Value of one counter by name, or -ENOENT. */
FERRY_API int ferry_metrics_get(ferry_ctx *ctx, const char *name,
                                uint64_t *value);

#ifdef __cplusplus
}
#endif
#endif
