/* ferry-micro: microbenchmarks of the hot paths, in C, run by google
 * benchmark through shim.cc.
 *
 *   ./build/release/bench/micro/ferry-micro --benchmark_min_time=0.2
 *
 * (meson builds it at build/<dir>/bench/micro/ferry-micro when a C++
 * compiler and libbenchmark are found; --benchmark_filter=REGEX picks cases.)
 *
 * Cases: chunked buffers (append, iterate, a range spanning two chunks),
 * the wire header (encode, decode), locator parsing, a full RPC round trip
 * in one process over loopback and over udp, the udp driver alone (one
 * packet per flush and 32 per flush), the event trace and histograms.
 * Cases that create a context report allocs_per_iter: library allocations
 * per iteration once running (0 is the design goal on the fast path). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/ferry.h"
#include "shim.h"
#include "transport/core.h"
#include "transport/locator.h"
#include "transport/wire.h"

#define OP_ECHO64 100
#define SPIN_MAX  10000000L /* polls before a receive is declared lost */

static uint8_t bytes[4096]; /* referenced/copied payload bytes */

/* Counting allocator: installed before any context is created (it forwards
 * to malloc, so memory from before is freed correctly too). */
static uint64_t allocs;
static void *count_malloc(size_t n)
{
	allocs++;
	return malloc(n);
}
static void *count_realloc(void *p, size_t n)
{
	allocs++;
	return realloc(p, n);
}
static void count_allocs_install(void)
{
	static const ferry_allocator a = {count_malloc, count_realloc, free};
	ferry_set_allocator(&a);
}

static void report_allocs(micro_state *s, uint64_t before, uint64_t iters)
{
	if (iters > 0)
		micro_counter(s, "allocs_per_iter",
		              (double)(allocs - before) / (double)iters);
}

/* 1. buffers -----------------------------------------------------------------*/

/* Append N small referenced chunks, then reset. */
static void bm_buf_append(micro_state *s)
{
	int64_t n = micro_arg(s, 0);
	ferry_buf b;
	ferry_buf_init(&b);
	while (micro_keep_running(s)) {
		for (int64_t i = 0; i < n; i++)
			ferry_buf_append_ref(&b, bytes + (i & 255) * 16, 16);
		micro_escape(&b);
		ferry_buf_reset(&b);
	}
	micro_set_items(s, n);
	ferry_buf_fini(&b);
}

/* Iterate a prebuilt buffer of N chunks. */
static void bm_buf_iterate(micro_state *s)
{
	int64_t n = micro_arg(s, 0);
	ferry_buf b;
	ferry_buf_init(&b);
	for (int64_t i = 0; i < n; i++)
		ferry_buf_append_ref(&b, bytes + (i & 255) * 16, 16);
	if (ferry_buf_chunk_count(&b) != (size_t)n) {
		micro_skip(s, "chunks were merged");
		ferry_buf_fini(&b);
		return;
	}
	while (micro_keep_running(s)) {
		ferry_buf_iter it;
		ferry_buf_seg seg;
		size_t total = 0;
		ferry_buf_iter_init(&it, &b, 0, ferry_buf_len(&b));
		while (ferry_buf_iter_next(&it, &seg))
			total += seg.len;
		micro_escape(&total);
	}
	micro_set_items(s, n);
	ferry_buf_fini(&b);
}

/* Baseline for buf_range_span: the same two appends and reset, no range. */
static void bm_buf_range_build(micro_state *s)
{
	ferry_buf b;
	ferry_buf_init(&b);
	while (micro_keep_running(s)) {
		ferry_buf_append_ref(&b, bytes, 64);
		ferry_buf_append_ref(&b, bytes + 1024, 64);
		micro_escape(&b);
		ferry_buf_reset(&b);
	}
	micro_set_items(s, 1);
	ferry_buf_fini(&b);
}

/* A 64-byte range spanning two chunks: copied into aux space, which only a
 * reset gives back, so each iteration builds, ranges and resets. */
static void bm_buf_range_span(micro_state *s)
{
	ferry_buf b;
	ferry_buf_init(&b);
	while (micro_keep_running(s)) {
		ferry_buf_append_ref(&b, bytes, 64);
		ferry_buf_append_ref(&b, bytes + 1024, 64);
		const void *p = ferry_buf_range(&b, 32, 64);
		if (p == NULL) {
			micro_skip(s, "ferry_buf_range failed");
			break;
		}
		micro_escape(p);
		ferry_buf_reset(&b);
	}
	micro_set_items(s, 1);
	micro_set_bytes(s, 64);
	ferry_buf_fini(&b);
}

/* 2. wire header ---------------------------------------------------------------*/

static void bm_wire_encode(micro_state *s)
{
	ferry_wire_hdr h = {.type = FERRY_PKT_DATA,
	                    .flags = FERRY_FLAG_LAST,
	                    .channel = 3,
	                    .opcode = OP_ECHO64,
	                    .client_hint = 1,
	                    .msg_len = 64,
	                    .frag_bytes = 1400};
	uint8_t out[FERRY_WIRE_HDR_BYTES];
	uint32_t i = 0;
	while (micro_keep_running(s)) {
		h.rpc_id = i++;
		ferry__wire_encode(&h, out);
		micro_escape(out);
	}
	micro_set_items(s, 1);
}

static void bm_wire_decode(micro_state *s)
{
	ferry_wire_hdr h = {.type = FERRY_PKT_DATA,
	                    .flags = FERRY_FLAG_LAST,
	                    .channel = 3,
	                    .opcode = OP_ECHO64,
	                    .client_hint = 1,
	                    .rpc_id = 77,
	                    .msg_len = 64,
	                    .frag_bytes = 1400};
	uint8_t pkt[FERRY_WIRE_HDR_BYTES + 64] = {0};
	ferry__wire_encode(&h, pkt);
	while (micro_keep_running(s)) {
		ferry_wire_hdr d;
		micro_escape(pkt);
		if (ferry__wire_decode(pkt, sizeof(pkt), &d) != FERRY_WIRE_OK) {
			micro_skip(s, "decode refused the packet");
			break;
		}
		micro_escape(&d);
	}
	micro_set_items(s, 1);
}

/* 3. locators ------------------------------------------------------------------*/

static void bm_locator_parse(micro_state *s)
{
	static const char text[] =
	        "unreliable+lossy+udp:drop=0.05,seed=7,host=127.0.0.1,port=12242";
	ferry_loc loc;
	char err[FERRY_LOC_ERR_BYTES];
	while (micro_keep_running(s)) {
		if (ferry__loc_parse(text, &loc, err, sizeof(err)) != 0) {
			micro_skip(s, err);
			break;
		}
		micro_escape(&loc);
	}
	micro_set_items(s, 1);
}

/* 4. RPC round trips -------------------------------------------------------------*/

static void echo64(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	int rc = ferry_buf_append(ferry_rpc_response(rpc), bytes + 512, 64);
	ferry_rpc_reply(rpc, rc);
}

/* One process: server and session on one context; ferry_call_sync polls it,
 * which drives both sides. Set up once per run of the case. */
static void rpc_round_trip(micro_state *s, const char *listen)
{
	static char why[FERRY_ERRMSG_BYTES + 64];
	ferry_ctx *ctx;
	ferry_server *srv;
	ferry_session *sess;
	char loc[FERRY_LOC_MAX_BYTES];
	int rc;

	count_allocs_install();
	if ((rc = ferry_ctx_create(NULL, &ctx)) != 0) {
		micro_skip(s, ferry_strerror(rc));
		return;
	}
	if ((rc = ferry_server_create(ctx, &srv)) != 0 ||
	    (rc = ferry_server_handle(srv, OP_ECHO64, echo64, NULL)) != 0 ||
	    (rc = ferry_server_listen(srv, listen)) != 0 ||
	    (rc = ferry_server_locator(srv, 0, loc, sizeof(loc))) < 0 ||
	    (rc = ferry_session_open(ctx, loc, &sess)) != 0) {
		snprintf(why, sizeof(why), "setup: %s (%s)", ferry_strerror(rc),
		         ferry_ctx_errmsg(ctx));
		micro_skip(s, why);
		ferry_ctx_destroy(ctx);
		return;
	}
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	/* warm-up: pools, buffers' spare blocks */
	for (int i = 0; i < 16; i++) {
		ferry_buf_append(&req, bytes, 64);
		ferry_call_sync(sess, OP_ECHO64, &req, &resp, 0);
		ferry_buf_reset(&req);
		ferry_buf_reset(&resp);
	}
	uint64_t a0 = allocs, iters = 0;
	while (micro_keep_running(s)) {
		ferry_buf_append(&req, bytes, 64);
		rc = ferry_call_sync(sess, OP_ECHO64, &req, &resp, 0);
		if (rc != 0 || ferry_buf_len(&resp) != 64) {
			snprintf(why, sizeof(why), "call: %s, %zu response bytes",
			         ferry_strerror(rc), ferry_buf_len(&resp));
			micro_skip(s, why);
			break;
		}
		ferry_buf_reset(&req);
		ferry_buf_reset(&resp);
		iters++;
	}
	report_allocs(s, a0, iters);
	micro_set_items(s, 1);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(ctx);
}

static void bm_loopback_rpc(micro_state *s)
{
	rpc_round_trip(s, "unreliable+loopback");
}

static void bm_udp_rpc(micro_state *s)
{
	rpc_round_trip(s, "unreliable+udp:host=127.0.0.1,port=0");
}

/* 5. udp driver alone --------------------------------------------------------------
 * Two endpoints opened through the core (as tests/drivers/test_conformance.c
 * does): a 40-byte header plus a 24-byte payload (64 bytes on the wire),
 * batch packets per flush, polled until all arrived, then released. */
static void udp_send_recv(micro_state *s, int batch)
{
	static char why[FERRY_LOC_ERR_BYTES + 64];
	ferry_ctx *ctx;
	ferry__port *srv, *cli;
	ferry_loc loc, cloc;
	ferry_addr to;
	char err[FERRY_LOC_ERR_BYTES] = "";
	int rc;

	count_allocs_install();
	if ((rc = ferry_ctx_create(NULL, &ctx)) != 0) {
		micro_skip(s, ferry_strerror(rc));
		return;
	}
	if ((rc = ferry__loc_parse("unreliable+udp:host=127.0.0.1,port=0", &loc, err,
	                           sizeof(err))) != 0 ||
	    (rc = ferry__port_open(ctx, &loc, true, &srv)) != 0 ||
	    (rc = ferry__loc_parse(srv->bound, &cloc, err, sizeof(err))) != 0 ||
	    (rc = ferry__port_open(ctx, &cloc, false, &cli)) != 0 ||
	    (rc = cli->ep->drv->dgram->resolve(cli->ep, &cloc, &to)) != 0) {
		snprintf(why, sizeof(why), "setup: %s %s", ferry_strerror(rc), err);
		micro_skip(s, why);
		ferry_ctx_destroy(ctx);
		return;
	}
	uint8_t hdr[FERRY_WIRE_HDR_BYTES];
	memset(hdr, 0xab, sizeof(hdr));
	ferry_buf payload;
	ferry_buf_init(&payload);
	ferry_buf_append(&payload, bytes, 24);
	ferry_pkt *pkts[64];
	uint64_t a0 = allocs, iters = 0, polls = 0;
	while (micro_keep_running(s)) {
		for (int i = 0; i < batch; i++) {
			ferry_buf_iter it;
			ferry_buf_iter_init(&it, &payload, 0, 24);
			ferry__ep_send(cli->ep, &to, hdr, sizeof(hdr), &it);
		}
		ferry__ep_flush(cli->ep);
		int got = 0;
		long spins = 0;
		while (got < batch && spins++ < SPIN_MAX) {
			int k = ferry__ep_poll(srv->ep, pkts + got, batch - got);
			if (k < 0)
				break;
			got += k;
		}
		polls += (uint64_t)spins;
		for (int i = 0; i < got; i++) {
			if (pkts[i]->len != 64)
				got = -1;
			ferry__ep_release(pkts[i]);
		}
		if (got != batch) {
			snprintf(why, sizeof(why), "received %d of %d packets", got,
			         batch);
			micro_skip(s, why);
			break;
		}
		iters++;
	}
	report_allocs(s, a0, iters);
	if (iters > 0)
		micro_counter(s, "polls_per_iter", (double)polls / (double)iters);
	micro_set_items(s, batch);
	micro_set_bytes(s, 64 * (int64_t)batch);
	ferry_buf_fini(&payload);
	ferry_ctx_destroy(ctx);
}

static void bm_udp_send_recv(micro_state *s)
{
	udp_send_recv(s, 1);
}
static void bm_udp_send_recv_batch32(micro_state *s)
{
	udp_send_recv(s, 32);
}

/* 6. metrics -----------------------------------------------------------------------*/

/* The public entry point (an out-of-line call into the library). */
static void bm_trace_record(micro_state *s)
{
	ferry_ctx *ctx;
	int rc = ferry_ctx_create(NULL, &ctx);
	if (rc != 0) {
		micro_skip(s, ferry_strerror(rc));
		return;
	}
	uint64_t i = 0;
	while (micro_keep_running(s)) {
		ferry_trace(ctx, "bench %llu %llu", i, i);
		i++;
	}
	micro_set_items(s, 1);
	ferry_ctx_destroy(ctx);
}

/* What the library's own trace points pay: the inline FERRY_TRACE. */
static void bm_trace_record_inline(micro_state *s)
{
	ferry_ctx *ctx;
	int rc = ferry_ctx_create(NULL, &ctx);
	if (rc != 0) {
		micro_skip(s, ferry_strerror(rc));
		return;
	}
	uint64_t i = 0;
	while (micro_keep_running(s)) {
		FERRY_TRACE(ctx, "bench %llu %llu", i, i);
		i++;
	}
	micro_set_items(s, 1);
	ferry_ctx_destroy(ctx);
}

static void bm_hist_record(micro_state *s)
{
	static ferry_hist h;
	static uint64_t vals[1024];
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 1024; i++) { /* xorshift64, spread over magnitudes */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		vals[i] = x >> (x % 60);
	}
	memset(&h, 0, sizeof(h));
	micro_escape(&h);
	unsigned i = 0;
	while (micro_keep_running(s)) {
		ferry_hist_record(&h, vals[i++ & 1023]);
		micro_escape(&h);
	}
	micro_set_items(s, 1);
}

/* Registration ----------------------------------------------------------------------*/
const struct micro_case micro_cases[] = {
        {"buf_append", bm_buf_append, {16}, 1},
        {"buf_append", bm_buf_append, {1024}, 1},
        {"buf_iterate", bm_buf_iterate, {16}, 1},
        {"buf_iterate", bm_buf_iterate, {1024}, 1},
        {"buf_range_build", bm_buf_range_build, {0}, 0},
        {"buf_range_span", bm_buf_range_span, {0}, 0},
        {"wire_encode", bm_wire_encode, {0}, 0},
        {"wire_decode", bm_wire_decode, {0}, 0},
        {"locator_parse", bm_locator_parse, {0}, 0},
        {"loopback_rpc", bm_loopback_rpc, {0}, 0},
        {"udp_rpc", bm_udp_rpc, {0}, 0},
        {"udp_send_recv", bm_udp_send_recv, {0}, 0},
        {"udp_send_recv_batch32", bm_udp_send_recv_batch32, {0}, 0},
        {"trace_record", bm_trace_record, {0}, 0},
        {"trace_record_inline", bm_trace_record_inline, {0}, 0},
        {"hist_record", bm_hist_record, {0}, 0},
};
const int micro_ncases = (int)(sizeof(micro_cases) / sizeof(micro_cases[0]));
