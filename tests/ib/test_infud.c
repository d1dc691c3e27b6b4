/* infud end to end, sized for the Soft-RoCE VM (tests/ib runs there): a
 * server process (tests/e2e/e2e_server.c) and this process as the client,
 * over fast+infud, unreliable+infud and fast+lossy+infud, every call
 * byte-exact; then the driver's own counters on both sides (one address
 * handle per destination, cache hits, inline and unsignaled sends).
 * argv: server-exe "dev=...,host=...,port=0" (the keys after the stack). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../common/json.h"
#include "../common/testutil.h"

#define CALL_DEADLINE_US     20000000  /* TCG: generous */
#define BIG_CALL_DEADLINE_US 240000000 /* a 16 MiB call: 16k packets each way */
#define BIG_BYTES            (16u << 20)

static const char *server_exe, *keys;

typedef struct run {
	pid_t pid;
	ferry_ctx *ctx;
	ferry_session *sess;
	char loc[512];
} run;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void run_start(run *r, const char *stack, const char *extra, const char *srv_mode,
                      const char *cli_mode)
{
	char listen[512];
	snprintf(listen, sizeof(listen), "%s:%s%s", stack, keys, extra);
	r->pid = tu_spawn_server(server_exe, listen, srv_mode, r->loc, sizeof(r->loc));
	if (r->pid < 0)
		fail_msg("server did not start on %s", listen);
	ferry_ctx_opts o = {.poll_mode = strcmp(cli_mode, "block") == 0 ? FERRY_POLL_BLOCK
	                                                                : FERRY_POLL_SPIN,
	                    .cpu = -1};
	assert_int_equal(ferry_ctx_create(&o, &r->ctx), 0);
	int rc = ferry_session_open(r->ctx, r->loc, &r->sess);
	if (rc != 0)
		fail_msg("session_open %s: %s", r->loc, ferry_ctx_errmsg(r->ctx));
}

static void run_stop(run *r)
{
	ferry_session_close(r->sess);
	uint64_t leaked = 1;
	ferry_ctx_poll(r->ctx, 0);
	assert_int_equal(ferry_metrics_get(r->ctx, "rpc.loans_leaked", &leaked), 0);
	assert_int_equal(leaked, 0);
	ferry_ctx_destroy(r->ctx);
	assert_int_equal(tu_stop_server(r->pid), 0);
}

/* calls echo calls, sizes cycling through sizes[], each with its own
 * pattern. */
static void echo_sizes(run *r, const uint32_t *sizes, size_t nsizes, int calls,
                       int64_t deadline_us, uint64_t seed0)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	for (int i = 0; i < calls; i++) {
		size_t size = sizes[(size_t)i % nsizes];
		uint64_t seed = seed0 + (uint64_t)i;
		ferry_buf_reset(&req);
		if (size > 0)
			tu_fill(ferry_buf_alloc(&req, size), size, seed);
		int rc = ferry_call_sync(r->sess, TEST_OP_ECHO, &req, &resp, deadline_us);
		if (rc != 0)
			fail_msg("echo %zu B call %d: %s", size, i, ferry_err_name(rc));
		long bad = tu_check(&resp, size, seed);
		if (bad >= 0)
			fail_msg("echo %zu B call %d: len %zu, first bad byte %ld", size,
			         i, ferry_buf_len(&resp), bad);
		ferry_buf_reset(&resp);
	}
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
}

static uint64_t server_counter(run *r, const char *name)
{
	ferry_buf out;
	ferry_buf_init(&out);
	assert_int_equal(ferry_metrics_remote_dump(r->sess, NULL, &out), 0);
	size_t n = ferry_buf_len(&out);
	char *text = malloc(n + 1);
	assert_int_equal(ferry_buf_copy_out(&out, 0, n, text), (ssize_t)n);
	ferry_buf_fini(&out);
	json_object *j = tu_json_parse(text, n, NULL);
	assert_non_null(j);
	uint64_t value = 0;
	if (tu_json_counter(j, name, &value) != 0)
		fail_msg("server has no counter %s", name);
	json_object_put(j);
	free(text);
	return value;
}

static uint64_t client_counter(run *r, const char *name)
{
	uint64_t v = 0;
	if (ferry_metrics_get(r->ctx, name, &v) != 0)
		fail_msg("client has no counter %s", name);
	return v;
}

/* fast+infud: 1,000 calls up to 64 KiB, then two 16 MiB calls; one AH per
 * destination on both sides, and the fast paths really taken. */
static void test_fast(void **s)
{
	(void)s;
	run r;
	run_start(&r, "fast+infud", "", "spin", "spin");
	static const uint32_t sizes[] = {0, 1, 100, 984, 985, 4000, 20000, 65536};
	uint64_t t0 = now_us();
	echo_sizes(&r, sizes, sizeof(sizes) / sizeof(sizes[0]), 1000, CALL_DEADLINE_US,
	           1);
	uint64_t t1 = now_us();
	static const uint32_t big[] = {BIG_BYTES};
	echo_sizes(&r, big, 1, 2, BIG_CALL_DEADLINE_US, 5000);
	uint64_t t2 = now_us();
	uint64_t s_ah = server_counter(&r, "infud.ah_created");
	uint64_t s_hits = server_counter(&r, "infud.ah_cache_hits");
	uint64_t s_inline = server_counter(&r, "infud.tx_inline");
	uint64_t s_unsig = server_counter(&r, "infud.tx_unsignaled");
	uint64_t s_sig = server_counter(&r, "infud.tx_signaled");
	uint64_t s_boot = server_counter(&r, "infud.boot_answers");
	uint64_t s_waits = server_counter(&r, "infud.tx_ring_waits");
	uint64_t s_errs = server_counter(&r, "infud.wc_errors");
	uint64_t c_ah = client_counter(&r, "infud.ah_created");
	uint64_t c_hits = client_counter(&r, "infud.ah_cache_hits");
	uint64_t c_inline = client_counter(&r, "infud.tx_inline");
	uint64_t c_unsig = client_counter(&r, "infud.tx_unsignaled");
	uint64_t c_posts = client_counter(&r, "infud.post_send_calls");
	uint64_t c_pkts = client_counter(&r, "infud.tx_packets");
	uint64_t c_reposts = client_counter(&r, "infud.post_recv_calls");
	uint64_t c_rx = client_counter(&r, "infud.rx_reposted");
	printf("# fast+infud: 1000 calls <= 64 KiB in %.1f s, 2 x 16 MiB in %.1f s\n",
	       (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
	printf("# server: ah_created %llu, ah_cache_hits %llu, tx_inline %llu, tx_unsignaled %llu, "
	       "tx_signaled %llu, boot_answers %llu, tx_ring_waits %llu, wc_errors %llu\n",
	       (unsigned long long)s_ah, (unsigned long long)s_hits,
	       (unsigned long long)s_inline, (unsigned long long)s_unsig,
	       (unsigned long long)s_sig, (unsigned long long)s_boot,
	       (unsigned long long)s_waits, (unsigned long long)s_errs);
	printf("# client: ah_created %llu, ah_cache_hits %llu, tx_inline %llu, tx_unsignaled %llu, "
	       "tx_packets %llu in %llu post_send calls, rx reposted %llu in %llu post_recv calls\n",
	       (unsigned long long)c_ah, (unsigned long long)c_hits,
	       (unsigned long long)c_inline, (unsigned long long)c_unsig,
	       (unsigned long long)c_pkts, (unsigned long long)c_posts,
	       (unsigned long long)c_rx, (unsigned long long)c_reposts);
	assert_int_equal(s_ah, 1);
	assert_int_equal(c_ah, 1);
	assert_true(s_hits > 0 && c_hits > 0);
	assert_true(s_inline > 0 && c_inline > 0);
	assert_true(s_unsig > 0 && c_unsig > 0);
	assert_true(s_boot >= 1);
	run_stop(&r);
}

/* unreliable+infud, both sides in block mode (completion channel): calls up
 * to 1 MiB. No retransmit, so the receive pool is sized for a whole 1 MiB
 * message in flight. */
static void test_unreliable_block(void **s)
{
	(void)s;
	run r;
	run_start(&r, "unreliable+infud", ",rxslots=2048", "block", "block");
	static const uint32_t sizes[] = {0, 1, 1000, 65536, 300000, 1048576};
	uint64_t t0 = now_us();
	echo_sizes(&r, sizes, sizeof(sizes) / sizeof(sizes[0]), 60, CALL_DEADLINE_US,
	           100);
	printf("# unreliable+infud (block/block): 60 calls <= 1 MiB in %.1f s, client cq_events "
	       "%llu, cq_arms %llu\n",
	       (double)(now_us() - t0) / 1e6,
	       (unsigned long long)client_counter(&r, "infud.cq_events"),
	       (unsigned long long)client_counter(&r, "infud.cq_arms"));
	assert_true(client_counter(&r, "infud.cq_events") > 0);
	run_stop(&r);
}

/* fast+lossy+infud: drop, duplicate and reorder on both sides; every call
 * still byte-exact. */
static void test_lossy(void **s)
{
	(void)s;
	run r;
	run_start(&r, "fast+lossy+infud", ",drop=0.03,dup=0.03,reorder=0.03,seed=11",
	          "spin", "spin");
	static const uint32_t sizes[] = {0, 1, 984, 5000, 30000, 65536};
	uint64_t t0 = now_us();
	echo_sizes(&r, sizes, sizeof(sizes) / sizeof(sizes[0]), 120, CALL_DEADLINE_US,
	           900);
	printf("# fast+lossy+infud: 120 calls <= 64 KiB in %.1f s, lossy dropped %llu\n",
	       (double)(now_us() - t0) / 1e6,
	       (unsigned long long)client_counter(&r, "lossy.dropped"));
	run_stop(&r);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s server-exe keys\n", argv[0]);
		return 2;
	}
	server_exe = argv[1];
	keys = argv[2];
	const ferry_driver_ops *d = ferry_driver_find("infud");
	char why[160] = "infud driver not built";
	if (d == NULL || (d->probe != NULL && d->probe(why, sizeof(why)) != 0))
		tu_skip_or_fail("ibverbs", why);
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_fast),
	        cmocka_unit_test(test_unreliable_block),
	        cmocka_unit_test(test_lossy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
