/* ferry_session_open_opts over the loopback driver, in one process: each
 * option's effect (default deadline, calls in flight, queue bound, message
 * cap), options overriding locator keys, and the size field: shorter,
 * longer-with-zero-tail, longer-with-unknown-option and too-small structs. */
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

#define SLOW_US 200000u

typedef struct env {
	ferry_ctx *ctx;
	ferry_server *srv;
	char loc[256]; /* the server's bound locator */
	uint64_t slow; /* slow requests started, to wait for their replies */
} env;

struct stat_find {
	const char *name;
	uint64_t value;
};
static void stat_cb(void *arg, const char *name, uint64_t v)
{
	struct stat_find *f = arg;
	if (strcmp(name, f->name) == 0)
		f->value = v;
}
static uint64_t stat(ferry_ctx *ctx, const char *name)
{
	struct stat_find f = {name, 0};
	ferry_ctx_stats(ctx, stat_cb, &f);
	return f.value;
}

static void env_open(env *e, const char *transport)
{
	char l[128];
	memset(e, 0, sizeof(*e));
	assert_int_equal(ferry_ctx_create(NULL, &e->ctx), 0);
	assert_int_equal(ferry_server_create(e->ctx, &e->srv), 0);
	tu_server_handlers(e->srv);
	snprintf(l, sizeof(l), "%s+loopback", transport);
	assert_int_equal(ferry_server_listen(e->srv, l), 0);
	assert_true(ferry_server_locator(e->srv, 0, e->loc, sizeof(e->loc)) > 0);
}

/* The slow handler replies from a thread: wait for every reply before the
 * context goes. */
static void env_close(env *e)
{
	while (stat(e->ctx, "rpc.responses_sent") < e->slow)
		ferry_ctx_poll(e->ctx, 1000);
	ferry_ctx_destroy(e->ctx);
}

struct done {
	int n;
	int status;
};
static void done_cb(void *arg, int status, ferry_buf *resp)
{
	struct done *d = arg;
	d->n++;
	d->status = status;
	ferry_buf_reset(resp);
}

static int slow_call(env *e, ferry_session *s, ferry_buf *req, ferry_buf *resp,
                     uint64_t timeout_us, struct done *d)
{
	uint32_t us = SLOW_US;
	ferry_buf_reset(req);
	assert_int_equal(ferry_buf_append(req, &us, 4), 0);
	int rc = ferry_call(s, TEST_OP_SLOW, req, resp, timeout_us, done_cb, d);
	e->slow += rc == 0;
	return rc;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* default_timeout_us is the deadline of a call made with timeout_us 0. */
static void test_default_timeout(void **st)
{
	(void)st;
	env e;
	env_open(&e, "unreliable");
	ferry_session_opts o = FERRY_SESSION_OPTS_INIT;
	o.default_timeout_us = 20000;
	ferry_session *s;
	assert_int_equal(ferry_session_open_opts(e.ctx, e.loc, &o, &s), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	struct done d = {0};
	uint64_t t0 = mono_us();
	assert_int_equal(slow_call(&e, s, &req, &resp, 0, &d), 0);
	while (d.n == 0)
		ferry_ctx_poll(e.ctx, 1000);
	assert_int_equal(d.status, FERRY_ETIMEDOUT);
	assert_true(mono_us() - t0 < SLOW_US);
	/* An explicit timeout still wins. */
	assert_int_equal(slow_call(&e, s, &req, &resp, 2 * SLOW_US + 1000000, &d), 0);
	while (d.n == 1)
		ferry_ctx_poll(e.ctx, 1000);
	assert_int_equal(d.status, 0);
	ferry_session_close(s);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	env_close(&e);
}

/* max_inflight calls on the wire, max_queued waiting, then FERRY_EAGAIN.
 * key: a locator key that the options must override (fast: queue=). */
static void inflight_queue(const char *transport, const char *key)
{
	env e;
	env_open(&e, transport);
	ferry_session_opts o = FERRY_SESSION_OPTS_INIT;
	o.max_inflight = 2;
	o.max_queued = 1;
	ferry_session *s;
	char loc[600];
	snprintf(loc, sizeof(loc), "%s%s", e.loc, key);
	assert_int_equal(ferry_session_open_opts(e.ctx, loc, &o, &s), 0);
	ferry_buf b[5], r[5];
	for (int i = 0; i < 5; i++)
		ferry_buf_init(&b[i]), ferry_buf_init(&r[i]);
	/* fast: the open handshake first (calls queue until it is done). */
	assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &b[4], &r[4], 1000000), 0);
	struct done d = {0};
	for (int i = 0; i < 3; i++)
		assert_int_equal(slow_call(&e, s, &b[i], &r[i], 5000000, &d), 0);
	assert_int_equal(slow_call(&e, s, &b[3], &r[3], 5000000, &d), FERRY_EAGAIN);
	uint64_t t0 = mono_us();
	while (d.n < 3)
		ferry_ctx_poll(e.ctx, 1000);
	assert_int_equal(d.status, 0);
	/* Two at a time: the third waited for a channel. */
	assert_true(mono_us() - t0 >= 2 * SLOW_US - 20000);
	ferry_session_close(s);
	for (int i = 0; i < 5; i++)
		ferry_buf_fini(&b[i]), ferry_buf_fini(&r[i]);
	env_close(&e);
}

static void test_inflight_unreliable(void **st)
{
	(void)st;
	inflight_queue("unreliable", "");
}

static void test_inflight_fast(void **st)
{
	(void)st;
	inflight_queue("fast", "");
	inflight_queue("fast", ",queue=100");
}

static int echo_len(ferry_session *s, size_t n)
{
	static uint8_t data[4096];
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	assert_int_equal(ferry_buf_append(&req, data, n), 0);
	int rc = ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 1000000);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	return rc;
}

/* maxmsg overrides the locator's key; without it the key applies. */
static void test_maxmsg_overrides_locator(void **st)
{
	(void)st;
	env e;
	env_open(&e, "unreliable");
	char l[300];
	snprintf(l, sizeof(l), "%s,maxmsg=100", e.loc);
	ferry_session *s;
	assert_int_equal(ferry_session_open_opts(e.ctx, l, NULL, &s), 0);
	assert_int_equal(echo_len(s, 1000), FERRY_ETOOBIG);
	ferry_session_close(s);
	ferry_session_opts o = FERRY_SESSION_OPTS_INIT;
	o.maxmsg = 2000;
	assert_int_equal(ferry_session_open_opts(e.ctx, l, &o, &s), 0);
	assert_int_equal(echo_len(s, 1000), 0);
	assert_int_equal(echo_len(s, 3000), FERRY_ETOOBIG);
	ferry_session_close(s);
	env_close(&e);
}

/* The size field: older (shorter) and newer (longer) callers. */
static void test_size_field(void **st)
{
	(void)st;
	env e;
	env_open(&e, "unreliable");
	ferry_session *s;
	struct {
		ferry_session_opts o;
		uint64_t newer[2]; /* fields a later ferry might add */
	} big;
	/* Too small to hold even the size. */
	memset(&big, 0, sizeof(big));
	big.o.size = 4;
	assert_int_equal(ferry_session_open_opts(e.ctx, e.loc, &big.o, &s), -EINVAL);
	/* Shorter: fields past size are not read (maxmsg garbage ignored). */
	memset(&big, 0, sizeof(big));
	big.o.size = offsetof(ferry_session_opts, maxmsg);
	big.o.maxmsg = 1;
	assert_int_equal(ferry_session_open_opts(e.ctx, e.loc, &big.o, &s), 0);
	assert_int_equal(echo_len(s, 1000), 0);
	ferry_session_close(s);
	/* Longer with the unknown tail zero: accepted. */
	memset(&big, 0, sizeof(big));
	big.o.size = sizeof(big);
	big.o.maxmsg = 500;
	assert_int_equal(ferry_session_open_opts(e.ctx, e.loc, &big.o, &s), 0);
	assert_int_equal(echo_len(s, 1000), FERRY_ETOOBIG);
	ferry_session_close(s);
	/* Longer with an option this library does not know: refused. */
	big.newer[1] = 7;
	assert_int_equal(ferry_session_open_opts(e.ctx, e.loc, &big.o, &s), -E2BIG);
	assert_non_null(strstr(ferry_ctx_errmsg(e.ctx), "knows only"));
	/* Out-of-range values. */
	ferry_session_opts o = FERRY_SESSION_OPTS_INIT;
	o.max_inflight = 65;
	assert_int_equal(ferry_session_open_opts(e.ctx, e.loc, &o, &s), -EINVAL);
	/* NULL opts: plain ferry_session_open. */
	assert_int_equal(ferry_session_open_opts(e.ctx, e.loc, NULL, &s), 0);
	assert_int_equal(echo_len(s, 1000), 0);
	ferry_session_close(s);
	env_close(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_default_timeout),
	        cmocka_unit_test(test_inflight_unreliable),
	        cmocka_unit_test(test_inflight_fast),
	        cmocka_unit_test(test_maxmsg_overrides_locator),
	        cmocka_unit_test(test_size_field),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
