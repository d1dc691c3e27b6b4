/* End to end: a server in another process (tests/e2e/e2e_server.c), this
 * process as the client. argv: server-exe listen-locator server-mode
 * client-mode. Byte-exact echo at the sizes the core issue names, every
 * call with its own pattern; deadlines; no partial data under loss; no
 * handler; pipelined calls; replies from a foreign thread. */
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

#include "../common/testutil.h"

static const char *server_exe, *listen_loc, *server_mode, *client_mode;
static char server_loc[512];
static pid_t server_pid;
static ferry_ctx *ctx;
static ferry_session *sess;

static int setup(void **state)
{
	(void)state;
	server_pid = tu_spawn_server(server_exe, listen_loc, server_mode, server_loc,
	                             sizeof(server_loc));
	if (server_pid < 0) {
		if (strstr(listen_loc, "::1") != NULL)
			tu_skip_or_fail("ipv6", "no IPv6 loopback here");
		return -1;
	}
	ferry_ctx_opts o = {.poll_mode = strcmp(client_mode, "block") == 0
	                                         ? FERRY_POLL_BLOCK
	                                         : FERRY_POLL_SPIN,
	                    .cpu = -1};
	if (ferry_ctx_create(&o, &ctx) != 0)
		return -1;
	int rc = ferry_session_open(ctx, server_loc, &sess);
	if (rc != 0) {
		fprintf(stderr, "session_open %s: %s\n", server_loc,
		        ferry_ctx_errmsg(ctx));
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ferry_session_close(sess);
	uint64_t loans = 1;
	ferry_ctx_destroy(ctx);
	(void)loans;
	return tu_stop_server(server_pid) == 0 ? 0 : -1;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void echo_n(size_t size, int calls)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	for (int i = 0; i < calls; i++) {
		uint64_t seed = (uint64_t)size * 1000003u + (uint64_t)i;
		ferry_buf_reset(&req);
		if (size > 0)
			tu_fill(ferry_buf_alloc(&req, size), size, seed);
		int rc = ferry_call_sync(sess, TEST_OP_ECHO, &req, &resp, 2000000);
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

static void test_echo_0(void **s)
{
	(void)s;
	echo_n(0, 10000);
}
static void test_echo_1(void **s)
{
	(void)s;
	echo_n(1, 10000);
}
static void test_echo_1k(void **s)
{
	(void)s;
	echo_n(1024, 10000);
}
static void test_echo_64k(void **s)
{
	(void)s;
	echo_n(65536, 1000);
}
static void test_echo_1m(void **s)
{
	(void)s;
	echo_n(1048576, 100);
}

/* Small request, large generated response. */
static void test_sized_responses(void **s)
{
	(void)s;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	const uint32_t sizes[] = {0, 1, 1000, 64471, 64472, 64473, 200000, 1048576};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (uint64_t seed = 1; seed <= 5; seed++) {
			ferry_buf_reset(&req);
			ferry_buf_append(&req, &sizes[k], 4);
			ferry_buf_append(&req, &seed, 8);
			assert_int_equal(ferry_call_sync(sess, TEST_OP_SIZED, &req, &resp,
			                                 2000000),
			                 0);
			assert_int_equal(tu_check(&resp, sizes[k], seed), -1);
			ferry_buf_reset(&resp);
		}
	}
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
}

static void test_no_handler(void **s)
{
	(void)s;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_append(&req, "x", 1);
	assert_int_equal(ferry_call_sync(sess, 999, &req, &resp, 2000000),
	                 FERRY_ENOHANDLER);
	assert_int_equal(ferry_buf_len(&resp), 0);
	/* Reserved opcodes are refused before anything is sent. */
	assert_int_equal(ferry_call_sync(sess, 3, &req, &resp, 2000000), -EINVAL);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
}

/* A locator whose every packet is dropped: the call fails at its deadline,
 * not before, not much after, and delivers nothing. */
static void test_deadline(void **s)
{
	(void)s;
	if (strchr(server_loc, '+') == NULL)
		return; /* lossy wraps datagrams only; test_stream covers streams */
	char loc[600];
	const char *colon = strchr(server_loc, ':');
	snprintf(loc, sizeof(loc), "unreliable+lossy+%s,drop=1",
	         strchr(server_loc, '+') + 1);
	(void)colon;
	ferry_session *lossy;
	assert_int_equal(ferry_session_open(ctx, loc, &lossy), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_append(&req, "ping", 4);
	uint64_t t0 = now_us();
	assert_int_equal(ferry_call_sync(lossy, TEST_OP_ECHO, &req, &resp, 50000),
	                 FERRY_ETIMEDOUT);
	uint64_t dt = now_us() - t0;
	assert_true(dt >= 50000);
	assert_true(dt < 2000000);
	assert_int_equal(ferry_buf_len(&resp), 0);
	ferry_session_close(lossy);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
}

/* Under loss every call either succeeds byte-exact or times out with an
 * empty response: never partial data, never another status. */
static void test_loss_never_partial(void **s)
{
	(void)s;
	if (strchr(server_loc, '+') == NULL)
		return; /* datagram drivers only */
	char loc[600];
	snprintf(loc, sizeof(loc), "unreliable+lossy+%s,drop=0.05,seed=11",
	         strchr(server_loc, '+') + 1);
	ferry_session *lossy;
	assert_int_equal(ferry_session_open(ctx, loc, &lossy), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	int ok = 0, timedout = 0;
	for (int i = 0; i < 100; i++) {
		size_t n = 4 * 64472 + 100; /* five request fragments */
		ferry_buf_reset(&req);
		tu_fill(ferry_buf_alloc(&req, n), n, (uint64_t)i);
		int rc = ferry_call_sync(lossy, TEST_OP_ECHO, &req, &resp, 50000);
		if (rc == 0) {
			assert_int_equal(tu_check(&resp, n, (uint64_t)i), -1);
			ok++;
		} else {
			assert_int_equal(rc, FERRY_ETIMEDOUT);
			assert_int_equal(ferry_buf_len(&resp), 0);
			timedout++;
		}
		ferry_buf_reset(&resp);
	}
	assert_true(ok > 0);
	assert_true(timedout > 0);
	ferry_session_close(lossy);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
}

struct pipelined {
	int done, bad;
	uint64_t seed;
	ferry_buf req, resp;
};

static void pipelined_cb(void *arg, int status, ferry_buf *resp)
{
	struct pipelined *p = arg;
	p->done++;
	if (status != 0 || tu_check(resp, ferry_buf_len(&p->req), p->seed) != -1)
		p->bad++;
}

/* More calls than channels: the queue holds the rest; all complete. */
static void test_pipelined(void **s)
{
	(void)s;
	enum { N = 64 };
	struct pipelined *p = calloc(N, sizeof(*p));
	for (int i = 0; i < N; i++) {
		ferry_buf_init(&p[i].req);
		ferry_buf_init(&p[i].resp);
		p[i].seed = 777 + (uint64_t)i;
		size_t n = (size_t)(i * 997) % 70000;
		if (n > 0)
			tu_fill(ferry_buf_alloc(&p[i].req, n), n, p[i].seed);
		assert_int_equal(ferry_call(sess, TEST_OP_ECHO, &p[i].req, &p[i].resp,
		                            2000000, pipelined_cb, &p[i]),
		                 0);
	}
	int done = 0;
	for (int spins = 0; done < N && spins < 10000000; spins++) {
		ferry_ctx_poll(ctx, 1000);
		done = 0;
		for (int i = 0; i < N; i++)
			done += p[i].done;
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(p[i].done, 1);
		assert_int_equal(p[i].bad, 0);
		ferry_buf_fini(&p[i].req);
		ferry_buf_fini(&p[i].resp);
	}
	free(p);
}

/* The server replies from another thread, through its handoff queue. */
static void test_foreign_thread_reply(void **s)
{
	(void)s;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	for (uint32_t us = 0; us < 30000; us += 10000) {
		ferry_buf_reset(&req);
		ferry_buf_append(&req, &us, 4);
		assert_int_equal(
		        ferry_call_sync(sess, TEST_OP_SLOW, &req, &resp, 2000000), 0);
		uint32_t back = 0;
		assert_int_equal(ferry_buf_copy_out(&resp, 0, 4, &back), 4);
		assert_int_equal(back, us);
		ferry_buf_reset(&resp);
	}
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s server-exe locator server-mode client-mode\n",
		        argv[0]);
		return 2;
	}
	server_exe = argv[1];
	listen_loc = argv[2];
	server_mode = argv[3];
	client_mode = argv[4];
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_echo_0),
	        cmocka_unit_test(test_echo_1),
	        cmocka_unit_test(test_echo_1k),
	        cmocka_unit_test(test_echo_64k),
	        cmocka_unit_test(test_echo_1m),
	        cmocka_unit_test(test_sized_responses),
	        cmocka_unit_test(test_no_handler),
	        cmocka_unit_test(test_deadline),
	        cmocka_unit_test(test_loss_never_partial),
	        cmocka_unit_test(test_pipelined),
	        cmocka_unit_test(test_foreign_thread_reply),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
