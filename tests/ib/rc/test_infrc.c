/* infrc end to end, sized for Soft-RoCE under TCG emulation: a server in
 * another process (tests/e2e/e2e_server.c) and RPCs through the stream
 * transport.
 *
 * argv: server-exe listen-locator push|pull client-mode server-mode
 *   sizes:  ~900 echo calls from 0 B to 64 KiB (around the receive buffer
 *           size), pipelined calls, a 16 MiB response (TEST_OP_SIZED) and a
 *           16 MiB echo, byte-exact; large=pull moves the big bodies with
 *           RDMA READ (rdma_reads > 0), push never does (== 0).
 *   killed: a server killed with calls in flight: they fail with
 *           FERRY_EPEERDEAD promptly; the next call, to a new server on the
 *           same port, reconnects.
 * Without a verbs device: exit 77 (fail when FERRY_REQUIRE names ibverbs). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../common/testutil.h"

#define MIB             (1u << 20)
#define CALL_TIMEOUT_US 120000000ull /* 16 MiB through TCG-emulated rxe */
#define SLOW_CALL_US    3000000u
#define PEERDEAD_MAX_US 3000000ull /* TCG: generous */

static const char *server_exe, *listen_loc, *client_mode, *server_mode;
static bool pull;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static ferry_ctx *ctx_new(const char *mode)
{
	ferry_ctx_opts o = {.poll_mode = strcmp(mode, "block") == 0 ? FERRY_POLL_BLOCK
	                                                            : FERRY_POLL_SPIN,
	                    .cpu = -1};
	ferry_ctx *ctx = NULL;
	assert_int_equal(ferry_ctx_create(&o, &ctx), 0);
	return ctx;
}

static uint64_t stat_of(ferry_ctx *ctx, const char *name)
{
	uint64_t v = 0;
	if (ferry_metrics_get(ctx, name, &v) != 0)
		fail_msg("no counter %s", name);
	return v;
}

static void close_checked(ferry_ctx *ctx, ferry_session *s)
{
	assert_int_equal(stat_of(ctx, "infrc.loans_out"), 0);
	ferry_session_close(s);
	ferry_ctx_poll(ctx, 0);
	assert_int_equal(stat_of(ctx, "rpc.loans_leaked"), 0);
	ferry_ctx_destroy(ctx);
}

static void echo_n(ferry_session *s, size_t size, int calls, uint64_t seed0)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	for (int i = 0; i < calls; i++) {
		uint64_t seed = seed0 + (uint64_t)size * 1000003u + (uint64_t)i;
		ferry_buf_reset(&req);
		if (size > 0)
			tu_fill(ferry_buf_alloc(&req, size), size, seed);
		int rc = ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, CALL_TIMEOUT_US);
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

struct slot {
	int done, status;
	uint64_t seed;
	size_t len;
	ferry_buf req, resp;
};

static void slot_cb(void *arg, int status, ferry_buf *resp)
{
	struct slot *p = arg;
	p->done++;
	p->status = status;
	if (status == 0 && tu_check(resp, p->len, p->seed) != -1)
		p->status = -EBADMSG;
}

static void test_sizes(void **st)
{
	(void)st;
	char bound[512];
	pid_t pid = tu_spawn_server(server_exe, listen_loc, server_mode, bound,
	                            sizeof(bound));
	assert_true(pid > 0);
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, bound, &s), 0);
	static const size_t sizes[] = {0,         1,
	                               100,       1000,
	                               4096,      (16u << 10) - 64,
	                               16u << 10, (16u << 10) + 1,
	                               64u << 10};
	uint64_t t0 = now_us();
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		echo_n(s, sizes[i], sizes[i] >= (16u << 10) ? 40 : 100, i + 1);
	uint64_t t1 = now_us();

	/* Pipelined: 32 calls in flight on the shared connection. */
	enum { N = 32 };
	struct slot p[N];
	for (int i = 0; i < N; i++) {
		p[i].done = 0;
		p[i].len = (size_t)(i * 997) % (48u << 10);
		p[i].seed = 7000 + (uint64_t)i;
		ferry_buf_init(&p[i].req);
		ferry_buf_init(&p[i].resp);
		if (p[i].len > 0)
			tu_fill(ferry_buf_alloc(&p[i].req, p[i].len), p[i].len,
			        p[i].seed);
		assert_int_equal(ferry_call(s, TEST_OP_ECHO, &p[i].req, &p[i].resp,
		                            CALL_TIMEOUT_US, slot_cb, &p[i]),
		                 0);
	}
	for (int done = 0; done < N;) {
		ferry_ctx_poll(ctx, 1000);
		done = 0;
		for (int i = 0; i < N; i++)
			done += p[i].done;
	}
	for (int i = 0; i < N; i++) {
		if (p[i].status != 0)
			fail_msg("pipelined call %d (%zu B): %s", i, p[i].len,
			         ferry_err_name(p[i].status));
		ferry_buf_fini(&p[i].req);
		ferry_buf_fini(&p[i].resp);
	}

	/* 16 MiB back for a 12-byte request, then a 16 MiB echo. */
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	uint32_t n = 16u * MIB;
	uint64_t seed = 99;
	ferry_buf_append(&req, &n, 4);
	ferry_buf_append(&req, &seed, 8);
	uint64_t t2 = now_us();
	assert_int_equal(ferry_call_sync(s, TEST_OP_SIZED, &req, &resp, CALL_TIMEOUT_US),
	                 0);
	long bad = tu_check(&resp, n, seed);
	if (bad >= 0)
		fail_msg("16 MiB response: len %zu, first bad byte %ld",
		         ferry_buf_len(&resp), bad);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	uint64_t t3 = now_us();
	echo_n(s, 16u * MIB, 1, 1234);
	uint64_t t4 = now_us();
	fprintf(stderr,
	        "infrc %s: small echoes %.1f ms, 16 MiB response %.1f ms, 16 MiB echo %.1f ms\n",
	        pull ? "pull" : "push", (double)(t1 - t0) / 1000,
	        (double)(t3 - t2) / 1000, (double)(t4 - t3) / 1000);
	fprintf(stderr, "client counters:\n");
	ferry_metrics_dump(ctx, "infrc", stderr);
	uint64_t reads = stat_of(ctx, "infrc.rdma_reads");
	if (pull)
		assert_true(reads > 0);
	else
		assert_int_equal(reads, 0);
	assert_int_equal(stat_of(ctx, "stream.calls_peerdead"), 0);
	close_checked(ctx, s);
	assert_int_equal(tu_stop_server(pid), 0);
}

static int port_of(const char *loc)
{
	const char *p = strstr(loc, "port=");
	assert_non_null(p);
	return atoi(p + 5);
}

static void test_killed(void **st)
{
	(void)st;
	enum { N = 4 };
	char bound[512], again[512];
	pid_t pid = tu_spawn_server(server_exe, listen_loc, server_mode, bound,
	                            sizeof(bound));
	assert_true(pid > 0);
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, bound, &s), 0);
	echo_n(s, 10, 1, 1);
	struct slot p[N];
	uint32_t us = SLOW_CALL_US;
	for (int i = 0; i < N; i++) {
		ferry_buf_init(&p[i].req);
		ferry_buf_init(&p[i].resp);
		p[i].done = 0;
		ferry_buf_append(&p[i].req, &us, 4);
		assert_int_equal(ferry_call(s, TEST_OP_SLOW, &p[i].req, &p[i].resp,
		                            10 * (uint64_t)SLOW_CALL_US, slot_cb, &p[i]),
		                 0);
	}
	for (uint64_t t = now_us() + 300000; now_us() < t;)
		ferry_ctx_poll(ctx, 1000);
	for (int i = 0; i < N; i++)
		assert_int_equal(p[i].done, 0);
	uint64_t t0 = now_us();
	assert_int_equal(kill(pid, SIGKILL), 0);
	int done = 0;
	while (done < N && now_us() - t0 < 5 * (uint64_t)SLOW_CALL_US) {
		ferry_ctx_poll(ctx, 1000);
		done = 0;
		for (int i = 0; i < N; i++)
			done += p[i].done;
	}
	uint64_t dt = now_us() - t0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(p[i].done, 1);
		if (p[i].status != FERRY_EPEERDEAD)
			fail_msg("in-flight call %d: %s, want FERRY_EPEERDEAD", i,
			         ferry_err_name(p[i].status));
		ferry_buf_fini(&p[i].req);
		ferry_buf_fini(&p[i].resp);
	}
	fprintf(stderr, "in-flight calls failed %llu us after the kill\n",
	        (unsigned long long)dt);
	if (dt >= PEERDEAD_MAX_US)
		fail_msg("in-flight calls took %llu us to fail", (unsigned long long)dt);
	int stk = 0;
	assert_int_equal(waitpid(pid, &stk, 0), pid);

	/* Nobody listens: a call fails, it does not hang. */
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_append(&req, "x", 1);
	assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, CALL_TIMEOUT_US),
	                 FERRY_EPEERDEAD);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);

	/* A new server on the same port: the next calls reconnect. */
	char listen[512];
	const char *p0 = strstr(listen_loc, "port=") + 5;
	snprintf(listen, sizeof(listen), "%.*s%d%s", (int)(p0 - listen_loc), listen_loc,
	         port_of(bound), p0 + strcspn(p0, ","));
	pid = -1;
	for (int tries = 0; tries < 40 && pid < 0; tries++) {
		pid = tu_spawn_server(server_exe, listen, server_mode, again,
		                      sizeof(again));
		if (pid < 0)
			usleep(50000);
	}
	assert_true(pid > 0);
	echo_n(s, 10, 5, 2);
	echo_n(s, MIB, 2, 3);
	assert_true(stat_of(ctx, "stream.reconnects") >= 1);
	close_checked(ctx, s);
	assert_int_equal(tu_stop_server(pid), 0);
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr,
		        "usage: %s server-exe listen-locator push|pull client-mode "
		        "server-mode\n",
		        argv[0]);
		return 2;
	}
	server_exe = argv[1];
	listen_loc = argv[2];
	pull = strcmp(argv[3], "pull") == 0;
	client_mode = argv[4];
	server_mode = argv[5];
	const ferry_driver_ops *d = ferry_driver_find("infrc");
	if (d == NULL)
		tu_skip_or_fail("ibverbs", "the infrc driver is not built");
	char why[160] = "";
	if (d->probe != NULL && d->probe(why, sizeof(why)) != 0)
		tu_skip_or_fail("ibverbs", why);
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sizes),
	        cmocka_unit_test(test_killed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
