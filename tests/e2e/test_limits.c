/* fast's limits (docs/FAST.md "Limits"), one test per cap, each against a
 * server thread in this process (fast+udp on 127.0.0.1): what happens at
 * the cap is the documented error, and it is counted.
 * - sessions=2: a third session's call fails with FERRY_EAGAIN
 *   (fast.opens_refused on the server, fast.open_refused_received here);
 * - queue=2 (client, channels=1): the fourth call is refused with
 *   FERRY_EAGAIN synchronously (rpc.calls_queue_full);
 * - reasm=1 MiB: of two concurrent 800 KB requests one fails with
 *   FERRY_EAGAIN (fast.limit.reasm_bytes, rpc.drop.reassembly_full);
 * - loans=16: of two concurrent 10-fragment requests one fails with
 *   FERRY_EAGAIN, a 20-fragment one with FERRY_ETOOBIG (fast.limit.loans). */
#include <errno.h>
#include <pthread.h>
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

static const char *const srv_names[] = {"fast.opens_refused", "fast.limit.reasm_bytes",
                                        "rpc.drop.reassembly_full", "fast.limit.loans",
                                        "fast.sessions_opened"};
enum { C_REFUSED, C_REASM, C_REASM_CORE, C_LOANS, C_OPENED, NSRV };

struct srv {
	char listen[256], bound[512];
	volatile int ready, stop;
	uint64_t cnt[NSRV];
	pthread_t th;
};

static void *srv_thread(void *arg)
{
	struct srv *s = arg;
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_ctx *ctx;
	ferry_server *srv;
	if (ferry_ctx_create(&o, &ctx) != 0 || ferry_server_create(ctx, &srv) != 0)
		return NULL;
	tu_server_handlers(srv);
	if (ferry_server_listen(srv, s->listen) != 0) {
		fprintf(stderr, "listen: %s\n", ferry_ctx_errmsg(ctx));
		__atomic_store_n(&s->ready, -1, __ATOMIC_RELEASE);
		return NULL;
	}
	ferry_server_locator(srv, 0, s->bound, sizeof(s->bound));
	__atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
		ferry_ctx_poll(ctx, 10000);
	for (int i = 0; i < NSRV; i++)
		ferry_metrics_get(ctx, srv_names[i], &s->cnt[i]);
	ferry_ctx_destroy(ctx);
	return NULL;
}

static void srv_start(struct srv *s, const char *keys)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->listen, sizeof(s->listen), "fast+udp:host=127.0.0.1,port=0%s", keys);
	assert_int_equal(pthread_create(&s->th, NULL, srv_thread, s), 0);
	while (__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE) == 0) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(s->ready, 1);
}

static void srv_stop(struct srv *s)
{
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	pthread_join(s->th, NULL);
}

static int echo(ferry_session *s, size_t len)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	tu_fill(ferry_buf_alloc(&req, len), len, len);
	int rc = ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 3000000);
	if (rc == 0)
		assert_int_equal(tu_check(&resp, len, len), -1);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	return rc;
}

static uint64_t counter(ferry_ctx *ctx, const char *name)
{
	uint64_t v = 0;
	assert_int_equal(ferry_metrics_get(ctx, name, &v), 0);
	return v;
}

struct pend {
	ferry_buf req, resp;
	int done, status;
};

static void pend_cb(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	struct pend *p = arg;
	p->status = status;
	p->done = 1;
}

/* Start n echo calls of len bytes at once; wait for all; statuses out. */
static void echo_concurrent(ferry_ctx *ctx, ferry_session *s, int n, size_t len,
                            uint16_t op, int *status)
{
	struct pend p[8];
	assert_true(n <= 8);
	for (int i = 0; i < n; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		ferry_buf_init(&p[i].req);
		ferry_buf_init(&p[i].resp);
		if (op == TEST_OP_SLOW) {
			uint32_t us = (uint32_t)len;
			memcpy(ferry_buf_alloc(&p[i].req, 4), &us, 4);
		} else {
			tu_fill(ferry_buf_alloc(&p[i].req, len), len, 7);
		}
		status[i] =
		        ferry_call(s, op, &p[i].req, &p[i].resp, 5000000, pend_cb, &p[i]);
		if (status[i] != 0)
			p[i].done = 1;
	}
	for (int i = 0; i < n; i++) {
		while (!p[i].done)
			ferry_ctx_poll(ctx, 1000);
		if (status[i] == 0)
			status[i] = p[i].status;
		ferry_buf_fini(&p[i].req);
		ferry_buf_fini(&p[i].resp);
	}
}

static void test_sessions_cap(void **st)
{
	(void)st;
	struct srv sv;
	srv_start(&sv, ",sessions=2");
	ferry_ctx *ctx;
	ferry_session *s[3];
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(ferry_session_open(ctx, sv.bound, &s[i]), 0);
		assert_int_equal(echo(s[i], 100), 0);
	}
	assert_int_equal(ferry_session_open(ctx, sv.bound, &s[2]), 0);
	assert_int_equal(echo(s[2], 100), FERRY_EAGAIN);
	assert_true(counter(ctx, "fast.open_refused_received") >= 1);
	/* The session keeps retrying its open; while the table is full
	 * (sessions expire after expire=, 60 s), calls keep failing. */
	assert_int_equal(echo(s[2], 100), FERRY_EAGAIN);
	assert_int_equal(echo(s[0], 100), 0);
	ferry_ctx_destroy(ctx);
	srv_stop(&sv);
	assert_int_equal(sv.cnt[C_OPENED], 2);
	assert_true(sv.cnt[C_REFUSED] >= 2);
}

static void test_queue_cap(void **st)
{
	(void)st;
	struct srv sv;
	srv_start(&sv, "");
	ferry_ctx *ctx;
	ferry_session *s;
	char loc[600];
	snprintf(loc, sizeof(loc), "%s,channels=1,queue=2", sv.bound);
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	assert_int_equal(echo(s, 10), 0);
	int status[4];
	/* One in flight (20 ms in the handler), two queued, the fourth refused. */
	echo_concurrent(ctx, s, 4, 20000, TEST_OP_SLOW, status);
	assert_int_equal(status[0], 0);
	assert_int_equal(status[1], 0);
	assert_int_equal(status[2], 0);
	assert_int_equal(status[3], FERRY_EAGAIN);
	assert_int_equal(counter(ctx, "rpc.calls_queue_full"), 1);
	ferry_ctx_destroy(ctx);
	srv_stop(&sv);
}

static void test_reasm_cap(void **st)
{
	(void)st;
	struct srv sv;
	srv_start(&sv, ",maxmsg=1048576,reasm=1048576");
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_session_open(ctx, sv.bound, &s), 0);
	int status[2];
	/* Both start in the first window (8 of their 13 fragments, a fresh
	 * session's): the second is over the cap. */
	echo_concurrent(ctx, s, 2, 800000, TEST_OP_ECHO, status);
	assert_int_equal(status[0], 0);
	assert_int_equal(status[1], FERRY_EAGAIN);
	assert_int_equal(echo(s, 800000), 0); /* the charge was given back */
	ferry_ctx_destroy(ctx);
	srv_stop(&sv);
	assert_int_equal(sv.cnt[C_REASM], 1);
	assert_int_equal(sv.cnt[C_REASM_CORE], 1);
}

static void test_loans_cap(void **st)
{
	(void)st;
	struct srv sv;
	srv_start(&sv, ",loans=16");
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_session_open(ctx, sv.bound, &s), 0);
	assert_int_equal(echo(s, 10), 0);
	/* 10 fragments at udp's loopback fragment size (65467 bytes). */
	size_t ten = 10 * 65000;
	assert_int_equal(echo(s, ten), 0);
	int status[2];
	echo_concurrent(ctx, s, 2, ten, TEST_OP_ECHO, status);
	/* The first call's retained request still holds its 10 loans (until
	 * the next request on its channel), the second would need 20. */
	assert_int_equal(status[0], 0);
	assert_int_equal(status[1], FERRY_EAGAIN);
	assert_int_equal(echo(s, 20 * 65000), FERRY_ETOOBIG); /* can never fit */
	ferry_ctx_destroy(ctx);
	srv_stop(&sv);
	assert_int_equal(sv.cnt[C_LOANS], 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sessions_cap),
	        cmocka_unit_test(test_queue_cap),
	        cmocka_unit_test(test_reasm_cap),
	        cmocka_unit_test(test_loans_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
