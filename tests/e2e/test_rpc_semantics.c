/* RPC semantics in one process over the loopback driver: thread rules
 * (sync calls from handlers and foreign threads, foreign-thread calls and
 * loan releases through the handoff queue), message caps, queue limits,
 * session close and context destroy with calls in flight. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../common/testutil.h"

#define OP_NESTED 200 /* handler tries a sync call */

typedef struct env {
	ferry_ctx *ctx;
	ferry_server *srv;
	ferry_session *s;
	char loc[256];
} env;

static int nested_rc;

static void nested_handler(void *arg, ferry_rpc *rpc)
{
	env *e = arg;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	nested_rc = ferry_call_sync(e->s, TEST_OP_ECHO, &req, &resp, 100000);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_rpc_reply(rpc, 0);
}

static void env_open(env *e, const char *server_extra, const char *client_extra)
{
	char l[256];
	assert_int_equal(ferry_ctx_create(NULL, &e->ctx), 0);
	assert_int_equal(ferry_server_create(e->ctx, &e->srv), 0);
	tu_server_handlers(e->srv);
	ferry_server_handle(e->srv, OP_NESTED, nested_handler, e);
	snprintf(l, sizeof(l), "unreliable+loopback%s", server_extra);
	assert_int_equal(ferry_server_listen(e->srv, l), 0);
	assert_true(ferry_server_locator(e->srv, 0, e->loc, sizeof(e->loc)) > 0);
	/* The bound locator carries the server's own keys (maxmsg too): a
	 * client with its own cap names only the port. */
	unsigned port = 0;
	assert_non_null(strstr(e->loc, "port="));
	sscanf(strstr(e->loc, "port="), "port=%u", &port);
	if (client_extra[0] != '\0')
		snprintf(l, sizeof(l), "unreliable+loopback:port=%u%s", port,
		         client_extra);
	else
		snprintf(l, sizeof(l), "%s", e->loc);
	assert_int_equal(ferry_session_open(e->ctx, l, &e->s), 0);
}

static void test_sync_from_handler(void **st)
{
	(void)st;
	env e;
	env_open(&e, "", "");
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	assert_int_equal(ferry_call_sync(e.s, OP_NESTED, &req, &resp, 1000000), 0);
	assert_int_equal(nested_rc, FERRY_EWOULDDEADLOCK);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(e.ctx);
}

struct foreign {
	env *e;
	int sync_rc, call_rc;
	ferry_buf req, resp;
	volatile int done;
	int status;
	ferry_buf *held; /* a response whose loans this thread releases */
};

static void foreign_cb(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	struct foreign *f = arg;
	f->status = status;
	f->done = 1;
}

static void *foreign_thread(void *arg)
{
	struct foreign *f = arg;
	ferry_buf a, b;
	ferry_buf_init(&a);
	ferry_buf_init(&b);
	f->sync_rc = ferry_call_sync(f->e->s, TEST_OP_ECHO, &a, &b, 100000);
	f->call_rc = ferry_call(f->e->s, TEST_OP_ECHO, &f->req, &f->resp, 1000000,
	                        foreign_cb, f);
	if (f->held != NULL)
		ferry_buf_reset(f->held); /* loans go home through the handoff */
	ferry_buf_fini(&a);
	ferry_buf_fini(&b);
	return NULL;
}

static void test_foreign_thread(void **st)
{
	(void)st;
	env e;
	env_open(&e, "", "");
	/* A response held as loans, to be released on the other thread. */
	ferry_buf req, held;
	ferry_buf_init(&req);
	ferry_buf_init(&held);
	tu_fill(ferry_buf_alloc(&req, 40000), 40000, 9);
	assert_int_equal(ferry_call_sync(e.s, TEST_OP_ECHO, &req, &held, 1000000), 0);
	uint64_t before = 0, after = 0;
	ferry_metrics_get(e.ctx, "rpc.loans_released_remote", &before);

	struct foreign f = {.e = &e, .held = &held};
	ferry_buf_init(&f.req);
	ferry_buf_init(&f.resp);
	tu_fill(ferry_buf_alloc(&f.req, 3000), 3000, 5);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, foreign_thread, &f), 0);
	pthread_join(t, NULL);
	assert_int_equal(f.sync_rc, FERRY_EWRONGTHREAD);
	assert_int_equal(f.call_rc, 0);
	for (int i = 0; i < 1000000 && !f.done; i++)
		ferry_ctx_poll(e.ctx, 1000);
	assert_int_equal(f.done, 1);
	assert_int_equal(f.status, 0);
	assert_int_equal(tu_check(&f.resp, 3000, 5), -1);
	ferry_metrics_get(e.ctx, "rpc.loans_released_remote", &after);
	assert_true(after > before);
	uint64_t loans = 1;
	ferry_metrics_get(e.ctx, "loopback.loans_out", &loans);
	ferry_buf_fini(&f.req);
	ferry_buf_fini(&f.resp);
	ferry_buf_fini(&req);
	ferry_buf_fini(&held);
	ferry_ctx_destroy(e.ctx);
}

/* Caps: a request over the client's cap fails at once; over the server's
 * cap, the server answers ETOOBIG; a response over the client's cap fails
 * the call with ETOOBIG. Never truncation. */
static void test_too_big(void **st)
{
	(void)st;
	env e;
	env_open(&e, ":maxmsg=100000", ",maxmsg=200000");
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_alloc(&req, 200001);
	assert_int_equal(ferry_call_sync(e.s, TEST_OP_ECHO, &req, &resp, 1000000),
	                 FERRY_ETOOBIG);
	ferry_buf_reset(&req);
	tu_fill(ferry_buf_alloc(&req, 150000), 150000, 1);
	assert_int_equal(ferry_call_sync(e.s, TEST_OP_ECHO, &req, &resp, 1000000),
	                 FERRY_ETOOBIG);
	assert_int_equal(ferry_buf_len(&resp), 0);
	/* A response over the server's cap: the server refuses to send it. */
	ferry_buf_reset(&req);
	uint32_t n = 150000;
	uint64_t seed = 1;
	ferry_buf_append(&req, &n, 4);
	ferry_buf_append(&req, &seed, 8);
	assert_int_equal(ferry_call_sync(e.s, TEST_OP_SIZED, &req, &resp, 1000000),
	                 FERRY_ETOOBIG);
	/* A response under the server's cap but over the client's: the client
	 * notices and fails the call. */
	env big;
	env_open(&big, ":maxmsg=1000000,port=7777", ",maxmsg=200000");
	n = 300000;
	ferry_buf_reset(&req);
	ferry_buf_append(&req, &n, 4);
	ferry_buf_append(&req, &seed, 8);
	assert_int_equal(ferry_call_sync(big.s, TEST_OP_SIZED, &req, &resp, 1000000),
	                 FERRY_ETOOBIG);
	assert_int_equal(ferry_buf_len(&resp), 0);
	ferry_ctx_destroy(big.ctx);
	/* Within the caps all is well. */
	ferry_buf_reset(&req);
	tu_fill(ferry_buf_alloc(&req, 90000), 90000, 2);
	assert_int_equal(ferry_call_sync(e.s, TEST_OP_ECHO, &req, &resp, 1000000), 0);
	assert_int_equal(tu_check(&resp, 90000, 2), -1);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(e.ctx);
}

struct counted {
	int calls;
	int status;
};

static void counted_cb(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	struct counted *c = arg;
	c->calls++;
	c->status = status;
}

/* Closing a session and destroying a context complete every call once,
 * with FERRY_ECANCELED, and free everything (ASan checks the rest). */
static void test_close_and_destroy_complete_calls(void **st)
{
	(void)st;
	enum { N = 40 };
	env e;
	env_open(&e, "", "");
	static struct counted c[N];
	static ferry_buf req[N], resp[N];
	memset(c, 0, sizeof(c));
	for (int i = 0; i < N; i++) {
		ferry_buf_init(&req[i]);
		ferry_buf_init(&resp[i]);
		ferry_buf_append(&req[i], "x", 1);
		assert_int_equal(ferry_call(e.s, TEST_OP_ECHO, &req[i], &resp[i], 1000000,
		                            counted_cb, &c[i]),
		                 0);
	}
	ferry_session_close(e.s);
	for (int i = 0; i < N; i++) {
		assert_int_equal(c[i].calls, 1);
		assert_int_equal(c[i].status, FERRY_ECANCELED);
	}
	/* Calls in flight when the context goes: also completed once. */
	assert_int_equal(ferry_session_open(e.ctx, e.loc, &e.s), 0);
	memset(c, 0, sizeof(c));
	for (int i = 0; i < N; i++)
		assert_int_equal(ferry_call(e.s, TEST_OP_ECHO, &req[i], &resp[i], 1000000,
		                            counted_cb, &c[i]),
		                 0);
	ferry_ctx_destroy(e.ctx);
	for (int i = 0; i < N; i++) {
		assert_int_equal(c[i].calls, 1);
		assert_int_equal(c[i].status, FERRY_ECANCELED);
		ferry_buf_fini(&req[i]);
		ferry_buf_fini(&resp[i]);
	}
}

/* The queue behind the channels is bounded: FERRY_EAGAIN when full, and
 * that call's callback never runs. */
static void test_queue_bound(void **st)
{
	(void)st;
	env e;
	env_open(&e, "", "");
	static ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	static struct counted c;
	int accepted = 0, rc = 0;
	for (int i = 0; i < 10000 && rc == 0; i++) {
		/* The same buffers for every call: none will run before close. */
		rc = ferry_call(e.s, TEST_OP_ECHO, &req, &resp, 1000000, counted_cb, &c);
		accepted += rc == 0;
	}
	assert_int_equal(rc, FERRY_EAGAIN);
	assert_true(accepted > 8);
	int before = c.calls;
	ferry_session_close(e.s);
	assert_int_equal(c.calls - before, accepted);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(e.ctx);
}

/* One server, several locators at once: each answers, and each reports
 * the locator it bound. */
static void test_multi_listen(void **st)
{
	(void)st;
	ferry_ctx *ctx;
	ferry_server *srv;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	tu_server_handlers(srv);
	const char *locs[] = {"unreliable+udp:host=127.0.0.1,port=0",
	                      "unreliable+udp:host=::1,port=0", "unreliable+loopback",
	                      "unreliable+lossy+loopback:seed=3"};
	for (int i = 0; i < 4; i++)
		assert_int_equal(ferry_server_listen(srv, locs[i]), 0);
	char bound[256];
	assert_int_equal(ferry_server_locator(srv, 4, bound, sizeof(bound)), -ERANGE);
	assert_int_equal(ferry_server_locator(srv, 0, bound, 8), -ERANGE);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	for (int i = 0; i < 4; i++) {
		assert_true(ferry_server_locator(srv, i, bound, sizeof(bound)) > 0);
		assert_non_null(strstr(bound, "port="));
		assert_null(strstr(bound, "port=0,"));
		ferry_session *s;
		assert_int_equal(ferry_session_open(ctx, bound, &s), 0);
		ferry_buf_reset(&req);
		tu_fill(ferry_buf_alloc(&req, 5000), 5000, (uint64_t)i);
		assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 1000000),
		                 0);
		assert_int_equal(tu_check(&resp, 5000, (uint64_t)i), -1);
		ferry_buf_reset(&resp);
		ferry_session_close(s);
	}
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(ctx);
}

struct block_server {
	char loc[256];
	volatile int ready, stop;
};

static void *block_server_thread(void *arg)
{
	struct block_server *b = arg;
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_ctx *ctx;
	ferry_server *srv;
	if (ferry_ctx_create(&o, &ctx) != 0 || ferry_server_create(ctx, &srv) != 0)
		return NULL;
	tu_server_handlers(srv);
	if (ferry_server_listen(srv, "unreliable+loopback") != 0)
		return NULL;
	ferry_server_locator(srv, 0, b->loc, sizeof(b->loc));
	__atomic_store_n(&b->ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE))
		ferry_ctx_poll(ctx, -1); /* sleeps in epoll until a packet comes */
	for (int i = 0; i < 10; i++)     /* answer the call that woke us */
		ferry_ctx_poll(ctx, 0);
	ferry_ctx_destroy(ctx);
	return NULL;
}

/* A server context blocked in epoll on another thread is woken by the
 * loopback driver's eventfd for every request. */
static void test_block_mode_cross_thread(void **st)
{
	(void)st;
	static struct block_server b;
	memset(&b, 0, sizeof(b));
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, block_server_thread, &b), 0);
	while (!__atomic_load_n(&b.ready, __ATOMIC_ACQUIRE))
		;
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_session_open(ctx, b.loc, &s), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	for (int i = 0; i < 200; i++) {
		ferry_buf_reset(&req);
		tu_fill(ferry_buf_alloc(&req, 100), 100, (uint64_t)i);
		/* only the driver's eventfd can wake the server in time */
		assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 1000000),
		                 0);
		assert_int_equal(tu_check(&resp, 100, (uint64_t)i), -1);
		ferry_buf_reset(&resp);
	}
	/* One more call wakes the server to see the stop flag. */
	__atomic_store_n(&b.stop, 1, __ATOMIC_RELEASE);
	assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 1000000), 0);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(ctx);
	pthread_join(t, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sync_from_handler),
	        cmocka_unit_test(test_foreign_thread),
	        cmocka_unit_test(test_too_big),
	        cmocka_unit_test(test_close_and_destroy_complete_calls),
	        cmocka_unit_test(test_queue_bound),
	        cmocka_unit_test(test_block_mode_cross_thread),
	        cmocka_unit_test(test_multi_listen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
