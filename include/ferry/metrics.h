/** @file
 * ferry metrics: counters, log-bucketed histograms and an event trace per
 * context, dumps as JSON lines (docs/METRICS.md), and the built-in metrics
 * service a client drives over an ordinary session.
 *
 * Everything is per context and touched only by its owner thread (the
 * loopback test driver, which delivers across threads under its mutex, is
 * the one exception): no atomics or locks on the fast path. Gauges
 * (…loans_out, …rx_free, …max_payload) are levels: an interval keeps the
 * later value. Readers aggregate on demand. Names are
 * dot-separated, layer first: "rpc.calls_completed", "udp.tx_packets",
 * "udp.sendmmsg_calls", "lossy.dropped". Counters of several endpoints with
 * the same driver are summed under one name. */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "rpc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Histograms ----------------------------------------------------------------
 * Log-linear buckets: values 0..7 exactly, then 8 buckets per power of two
 * (relative bucket width 12.5%), up to 2^64. Recording is O(1): one clz, two
 * adds. Values are whatever unit the name says (…_ns: nanoseconds). */
/** log2 of the buckets per power of two. */
#define FERRY_HIST_SUB_BITS 3
/** Buckets of a histogram. */
#define FERRY_HIST_BUCKETS 496

/** A log-linear histogram (plain data: copy, subtract, compare freely). */
typedef struct ferry_hist {
	uint64_t count;                       /**< values recorded */
	uint64_t sum;                         /**< their sum */
	uint64_t max;                         /**< the largest */
	uint64_t buckets[FERRY_HIST_BUCKETS]; /**< counts by ferry_hist_index() */
} ferry_hist;

/** The bucket that holds v. */
static inline int ferry_hist_index(uint64_t v)
{
	if (v < (1u << FERRY_HIST_SUB_BITS))
		return (int)v;
	int e = 63 - __builtin_clzll(v); /* >= FERRY_HIST_SUB_BITS */
	int sub = (int)(v >> (e - FERRY_HIST_SUB_BITS)) - (1 << FERRY_HIST_SUB_BITS);
	return (1 << FERRY_HIST_SUB_BITS) +
	       ((e - FERRY_HIST_SUB_BITS) << FERRY_HIST_SUB_BITS) + sub;
}

/** Record v in h. O(1). */
static inline void ferry_hist_record(ferry_hist *h, uint64_t v)
{
	h->buckets[ferry_hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

/** Smallest value of bucket i (bucket i holds [lower(i), lower(i+1))). */
FERRY_API uint64_t ferry_hist_lower(int i);
/** Value at quantile q (0..1): the upper edge of the bucket holding it,
 * capped at the largest value recorded. 0 for an empty histogram. */
FERRY_API uint64_t ferry_hist_quantile(const ferry_hist *h, double q);
/** a -= b, bucket by bucket (for interval deltas); max is kept from a. */
FERRY_API void ferry_hist_sub(ferry_hist *a, const ferry_hist *b);

/** Iterate a context's histograms ("rpc.call_ns": client call latency,
 * start to completion; "rpc.handler_ns": server, request complete to reply). */
typedef void (*ferry_hist_cb)(void *arg, const char *name, const ferry_hist *h);
/** Call cb for each of the context's histograms. */
FERRY_API void ferry_ctx_histograms(ferry_ctx *ctx, ferry_hist_cb cb, void *arg);

/* Snapshots and dumps --------------------------------------------------------*/
/** A snapshot of a context's metrics (opaque). */
typedef struct ferry_metrics_snap ferry_metrics_snap;

/** Take a snapshot of every counter (aggregated by name) and histogram, with
 * the process CPU time ("process.cpu_ns") sampled now. Allocates; not for
 * the fast path. NULL on -ENOMEM. */
FERRY_API ferry_metrics_snap *ferry_metrics_snapshot(ferry_ctx *ctx);
/** Free a snapshot (NULL is fine). */
FERRY_API void ferry_metrics_snap_free(ferry_metrics_snap *s);
/** later -= earlier, name by name: the metrics of the interval between. */
FERRY_API void ferry_metrics_snap_sub(ferry_metrics_snap *later,
                                      const ferry_metrics_snap *earlier);
/** Write one JSON line: {"ts_ns":…,"scope":"…","counters":{…},
 * "histograms":{name:{"bounds":[…],"counts":[…]}}} (docs/METRICS.md).
 * Returns bytes written or -errno. */
FERRY_API int ferry_metrics_snap_json(const ferry_metrics_snap *s, const char *scope,
                                      FILE *f);
/** The same line appended to a buffer (the DUMP service's response). */
FERRY_API int ferry_metrics_snap_json_buf(const ferry_metrics_snap *s, const char *scope,
                                          ferry_buf *out);
/** Value of one counter in a snapshot, or -ENOENT. */
FERRY_API int ferry_metrics_snap_get(const ferry_metrics_snap *s, const char *name,
                                     uint64_t *value);

/** Snapshot ctx and write it as one JSON line. 0 or -errno. */
FERRY_API int ferry_metrics_dump(ferry_ctx *ctx, const char *scope, FILE *f);
/** Current value of one counter of ctx (summed over endpoints), or -ENOENT. */
FERRY_API int ferry_metrics_get(ferry_ctx *ctx, const char *name, uint64_t *value);

/* Event trace ------------------------------------------------------------------
 * A ring of the last FERRY_TRACE_ENTRIES events per context: a cycle-counter
 * timestamp, a static format string and two integer arguments. The library
 * records call starts and completions, request dispatch and replies,
 * receive batches and flushes; recording costs one cycle-counter read and
 * four stores (about 11 ns on this project's 2-vCPU VM, bench/micro
 * trace_record), so it stays on. Applications may add their own events. */
/** Events the ring keeps per context. */
#define FERRY_TRACE_ENTRIES 4096
/** fmt must be a string literal (or otherwise outlive the context) with at
 * most two %llu/%lld conversions. Owner thread only. */
FERRY_API void ferry_trace(ferry_ctx *ctx, const char *fmt, uint64_t a, uint64_t b);
/** Write the ring oldest first, one event per line: "<ns since the context
 * was created> <formatted event>". 0 or -errno. */
FERRY_API int ferry_trace_dump(ferry_ctx *ctx, FILE *f);

/* Built-in metrics service ------------------------------------------------------
 * Every server answers these reserved opcodes. START takes a snapshot of the
 * server's context; STOP takes another; DUMP returns the JSON line of the
 * interval (STOP - START, or now - START while running; absolute without a
 * START). They travel as ordinary calls on s but are counted apart from
 * application calls (rpc.builtin.*). Synchronous; owner thread. */
#define FERRY_OP_METRICS_START 1 /**< take the start snapshot */
#define FERRY_OP_METRICS_STOP  2 /**< take the end snapshot */
#define FERRY_OP_METRICS_DUMP  3 /**< return the interval's JSON line */
/** Ask the server at s to take its start snapshot. 0 or the call status. */
FERRY_API int ferry_metrics_remote_start(ferry_session *s);
/** Ask the server at s to take its end snapshot. 0 or the call status. */
FERRY_API int ferry_metrics_remote_stop(ferry_session *s);
/** The JSON line is appended to out (empty on entry). scope names the dump
 * ("scope" field); NULL: "server:<its first locator>". */
FERRY_API int ferry_metrics_remote_dump(ferry_session *s, const char *scope,
                                        ferry_buf *out);

#ifdef __cplusplus
}
#endif
#endif
