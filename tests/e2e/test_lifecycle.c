/* Production surface: cancellation, server drain, context destroy with
 * calls in flight, keepalive detection of a dead idle peer, fork.
 *
 * argv[1]: the locator the remote test server listens on (fast+udp or
 * tcp). The server is this program, forked before the client creates its
 * context; it serves the usual test opcodes plus OP_HOLD (kept by the
 * server's loop until canceled or due) and OP_DRAIN (the loop then runs
 * ferry_server_drain and writes "rc elapsed_us" to a pipe). Tests that need
 * no remote server run in one process over fast+loopback or fast+udp. */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/testutil.h"

/* Request: u32 hold_us; the server loop replies when due or canceled */
#define OP_HOLD    300
#define OP_REPORT  301 /* response: u32 handlers that saw ferry_rpc_cancelled */
#define OP_DRAIN   302 /* request: u32 timeout_us; the server loop drains */
#define HOLD_MAX   256
#define RACE_CALLS 10000
#define RACE_BATCH 64

static const char *remote_loc;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t metric(ferry_ctx *ctx, const char *name)
{
	uint64_t v = 0;
	ferry_metrics_get(ctx, name, &v);
	return v;
}

static bool is_stream(const char *loc)
{
	return strncmp(loc, "fast+", 5) != 0;
}

/* The remote server -----------------------------------------------------------*/
static volatile sig_atomic_t srv_stop;
static struct held {
	ferry_rpc *rpc;
	uint64_t due_us;
} held[HOLD_MAX];
static uint32_t cancel_seen;
static uint32_t drain_timeout_us;
static bool drain_req;

static void on_term(int sig)
{
	(void)sig;
	srv_stop = 1;
}

static void hold_handler(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	uint32_t us = 0;
	ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 4, &us);
	for (int i = 0; i < HOLD_MAX; i++)
		if (held[i].rpc == NULL) {
			held[i] = (struct held){rpc, now_us() + us};
			return;
		}
	ferry_rpc_reply(rpc, -EAGAIN);
}

static void report_handler(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_buf_append(ferry_rpc_response(rpc), &cancel_seen, 4);
	ferry_rpc_reply(rpc, 0);
}

static void drain_handler(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 4, &drain_timeout_us);
	drain_req = true;
	ferry_rpc_reply(rpc, 0);
}

static void serve(const char *loc, int loc_fd, int report_fd)
{
	signal(SIGTERM, on_term);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_ctx *ctx;
	ferry_server *srv;
	char bound[512];
	if (ferry_ctx_create(&o, &ctx) != 0 || ferry_server_create(ctx, &srv) != 0)
		_exit(3);
	tu_server_handlers(srv);
	ferry_server_handle(srv, OP_HOLD, hold_handler, NULL);
	ferry_server_handle(srv, OP_REPORT, report_handler, NULL);
	ferry_server_handle(srv, OP_DRAIN, drain_handler, NULL);
	if (ferry_server_listen(srv, loc) != 0)
		_exit(4);
	int n = ferry_server_locator(srv, 0, bound, sizeof(bound));
	if (write(loc_fd, bound, (size_t)n + 1) != n + 1)
		_exit(5);
	while (!srv_stop) {
		ferry_ctx_poll(ctx, 1000);
		uint64_t t = now_us();
		for (int i = 0; i < HOLD_MAX; i++) {
			if (held[i].rpc == NULL)
				continue;
			if (ferry_rpc_cancelled(held[i].rpc)) {
				cancel_seen++;
				ferry_rpc_reply(held[i].rpc, FERRY_ECANCELED);
				held[i].rpc = NULL;
			} else if (t >= held[i].due_us) {
				ferry_rpc_reply(held[i].rpc, 0);
				held[i].rpc = NULL;
			}
		}
		if (drain_req) {
			drain_req = false;
			uint64_t t0 = now_us();
			int rc = ferry_server_drain(srv, drain_timeout_us);
			dprintf(report_fd, "%d %llu\n", rc,
			        (unsigned long long)(now_us() - t0));
		}
	}
	/* Threads of TEST_OP_SLOW may still hold rpcs: no teardown. */
	_exit(0);
}

typedef struct remote {
	pid_t pid;
	int report_fd;
	char loc[512];
} remote;

static void remote_start(remote *r, const char *loc)
{
	int lp[2], rp[2];
	assert_int_equal(pipe(lp), 0);
	assert_int_equal(pipe(rp), 0);
	r->pid = fork();
	assert_true(r->pid >= 0);
	if (r->pid == 0) {
		close(lp[0]);
		close(rp[0]);
		serve(loc, lp[1], rp[1]);
	}
	close(lp[1]);
	close(rp[1]);
	r->report_fd = rp[0];
	ssize_t got = 0, k;
	while ((k = read(lp[0], r->loc + got, sizeof(r->loc) - 1 - (size_t)got)) > 0) {
		got += k;
		if (memchr(r->loc, '\0', (size_t)got) != NULL)
			break;
	}
	close(lp[0]);
	assert_true(got > 0);
}

static void remote_stop(remote *r)
{
	kill(r->pid, SIGTERM);
	waitpid(r->pid, NULL, 0);
	close(r->report_fd);
}

/* A line "rc elapsed_us" from the server's drain, within wait_us. */
static bool remote_report(remote *r, ferry_ctx *ctx, uint64_t wait_us, int *rc,
                          uint64_t *el)
{
	char line[64];
	size_t got = 0;
	uint64_t end = now_us() + wait_us;
	while (now_us() < end) {
		ferry_ctx_poll(ctx, 1000); /* our calls progress meanwhile */
		struct pollfd p = {r->report_fd, POLLIN, 0};
		if (poll(&p, 1, 0) != 1)
			continue;
		ssize_t k = read(r->report_fd, line + got, sizeof(line) - 1 - got);
		if (k <= 0)
			return false;
		got += (size_t)k;
		line[got] = '\0';
		unsigned long long e;
		if (strchr(line, '\n') != NULL && sscanf(line, "%d %llu", rc, &e) == 2) {
			*el = e;
			return true;
		}
	}
	return false;
}

static ferry_ctx *client_ctx(void)
{
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(&o, &ctx), 0);
	return ctx;
}

static void poll_for(ferry_ctx *ctx, uint64_t us)
{
	uint64_t end = now_us() + us;
	while (now_us() < end)
		ferry_ctx_poll(ctx, 1000);
}

static int call_u32(ferry_session *s, uint16_t op, uint32_t v, uint32_t *out)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_append(&req, &v, 4);
	int rc = ferry_call_sync(s, op, &req, &resp, 2000000);
	if (rc == 0 && out != NULL)
		ferry_buf_copy_out(&resp, 0, 4, out);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	return rc;
}

/* Cancellation races ----------------------------------------------------------*/
struct rcall {
	ferry_buf req, resp;
	ferry_call_handle h;
	int cbs, status, cancel_rc;
	uint32_t len;
	uint64_t seed;
	bool bad;
};

static void race_cb(void *arg, int status, ferry_buf *resp)
{
	struct rcall *x = arg;
	x->cbs++;
	x->status = status;
	if (status == 0 &&
	    (ferry_buf_len(resp) != x->len || tu_check(resp, x->len, x->seed) != -1))
		x->bad = true;
	if (status != 0 && ferry_buf_len(resp) != 0)
		x->bad = true; /* a failed call never delivers partial data */
	ferry_buf_reset(resp);
}

/* RACE_CALLS echo calls, each canceled after 0-3 poll passes: before it
 * left (queued, or packets not flushed), in flight, with its response in
 * the inbox, or after completion. Every callback runs exactly once; a
 * cancel that returns 0 means FERRY_ECANCELED, -ENOENT means the real
 * result. */
static void race(ferry_ctx *ctx, ferry_session *s, uint32_t max_len, bool want_late)
{
	static struct rcall calls[RACE_BATCH];
	uint8_t *tmp = malloc(max_len);
	assert_non_null(tmp);
	srand(12345);
	uint32_t canceled = 0, late = 0, seq = 0;
	for (int i = 0; i < RACE_BATCH; i++) {
		ferry_buf_init(&calls[i].req);
		ferry_buf_init(&calls[i].resp);
	}
	for (uint32_t done = 0; done < RACE_CALLS; done += RACE_BATCH) {
		for (int i = 0; i < RACE_BATCH; i++) {
			struct rcall *x = &calls[i];
			ferry_buf_reset(&x->req);
			x->cbs = 0;
			x->bad = false;
			x->len = (uint32_t)rand() % 8 == 0 ? (uint32_t)rand() % max_len
			                                   : (uint32_t)rand() % 256;
			x->seed = ++seq;
			tu_fill(tmp, x->len, x->seed);
			ferry_buf_append(&x->req, tmp, x->len);
			assert_int_equal(ferry_call_h(s, TEST_OP_ECHO, &x->req, &x->resp,
			                              5000000, race_cb, x, &x->h),
			                 0);
		}
		for (int i = 0; i < RACE_BATCH; i++) {
			struct rcall *x =
			        &calls[(i * 37) % RACE_BATCH]; /* not in order */
			/* Mostly no pass at all (earlier cancels' passes add up). */
			static const int passes[8] = {0, 0, 0, 0, 0, 1, 2, 3};
			for (int p = passes[rand() % 8]; p > 0; p--)
				ferry_ctx_poll(ctx, 0);
			x->cancel_rc = ferry_call_cancel(ctx, x->h);
			assert_int_equal(x->cbs, 1);
			if (x->cancel_rc == 0) {
				assert_int_equal(x->status, FERRY_ECANCELED);
				canceled++;
			} else {
				assert_int_equal(x->cancel_rc, -ENOENT);
				assert_int_not_equal(x->status, FERRY_ECANCELED);
				late++;
			}
			assert_false(x->bad);
			/* A second cancel is always too late. */
			assert_int_equal(ferry_call_cancel(ctx, x->h), -ENOENT);
		}
	}
	poll_for(ctx, 100000); /* late responses arrive and are dropped */
	for (int i = 0; i < RACE_BATCH; i++) {
		assert_int_equal(calls[i].cbs, 1);
		ferry_buf_fini(&calls[i].req);
		ferry_buf_fini(&calls[i].resp);
	}
	free(tmp);
	print_message(
	        "race: %u canceled, %u completed first, %llu late responses dropped\n",
	        canceled, late, (unsigned long long)metric(ctx, "rpc.drop.after_cancel"));
	assert_true(canceled > RACE_CALLS / 20);
	assert_true(late > RACE_CALLS / 100);
	assert_int_equal(metric(ctx, "rpc.calls_canceled"), canceled);
	/* Some were canceled before anything left (no CANCEL on the wire),
	 * some in flight (a CANCEL went out). */
	uint64_t sent =
	        metric(ctx, "fast.cancels_sent") + metric(ctx, "stream.cancels_sent");
	print_message("race: %llu CANCELs sent\n", (unsigned long long)sent);
	assert_true(sent > 0);
	assert_true(sent < canceled);
	if (want_late)
		assert_true(metric(ctx, "rpc.drop.after_cancel") > 0);
	/* The session still works. */
	assert_int_equal(call_u32(s, TEST_OP_ECHO, 7, NULL), 0);
}

static void race_local(const char *listen)
{
	ferry_ctx *ctx = client_ctx();
	ferry_server *srv;
	ferry_session *s;
	char loc[512];
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	tu_server_handlers(srv);
	assert_int_equal(ferry_server_listen(srv, listen), 0);
	assert_true(ferry_server_locator(srv, 0, loc, sizeof(loc)) > 0);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	race(ctx, s, 40000, true);
	assert_true(metric(ctx, "rpc.cancels_received") > 0);
	ferry_session_close(s);
	ferry_server_destroy(srv);
	ferry_ctx_poll(ctx, 0);
	assert_int_equal(metric(ctx, "rpc.loans_leaked"), 0);
	ferry_ctx_destroy(ctx);
}

static void test_cancel_race_fast_loopback(void **st)
{
	(void)st;
	race_local("fast+loopback");
}

static void test_cancel_race_fast_udp(void **st)
{
	(void)st;
	race_local("fast+udp:host=127.0.0.1,port=0");
}

static void test_cancel_race_remote(void **st)
{
	(void)st;
	remote r;
	remote_start(&r, remote_loc);
	ferry_ctx *ctx = client_ctx();
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, r.loc, &s), 0);
	race(ctx, s, 200000, false);
	ferry_session_close(s);
	ferry_ctx_poll(ctx, 0);
	assert_int_equal(metric(ctx, "rpc.loans_leaked"), 0);
	ferry_ctx_destroy(ctx);
	remote_stop(&r);
}

/* Cancel reaches the server's handler ------------------------------------------*/
struct one {
	int cbs, status;
};

static void one_cb(void *arg, int status, ferry_buf *resp)
{
	struct one *o = arg;
	o->cbs++;
	o->status = status;
	ferry_buf_reset(resp);
}

static void test_cancel_reaches_handler(void **st)
{
	(void)st;
	remote r;
	remote_start(&r, remote_loc);
	ferry_ctx *ctx = client_ctx();
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, r.loc, &s), 0);
	assert_int_equal(call_u32(s, TEST_OP_ECHO, 1, NULL), 0); /* connected */
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	uint32_t hold = 10000000; /* 10 s: only a cancel ends it early */
	ferry_buf_append(&req, &hold, 4);
	struct one o = {0, 0};
	ferry_call_handle h;
	assert_int_equal(ferry_call_h(s, OP_HOLD, &req, &resp, 20000000, one_cb, &o, &h),
	                 0);
	poll_for(ctx, 100000); /* the handler holds it now */
	assert_int_equal(o.cbs, 0);
	assert_int_equal(ferry_call_cancel(ctx, h), 0);
	assert_int_equal(o.cbs, 1);
	assert_int_equal(o.status, FERRY_ECANCELED);
	/* The handler sees the cancel and replies; the reply is dropped here
	 * and counted. */
	uint64_t t0 = now_us();
	while (metric(ctx, "rpc.drop.after_cancel") == 0 && now_us() - t0 < 2000000)
		ferry_ctx_poll(ctx, 1000);
	assert_int_equal(metric(ctx, "rpc.drop.after_cancel"), 1);
	assert_int_equal(o.cbs, 1);
	uint32_t seen = 0;
	assert_int_equal(call_u32(s, OP_REPORT, 0, &seen), 0);
	assert_int_equal(seen, 1);
	assert_int_equal(metric(ctx, is_stream(remote_loc) ? "stream.cancels_sent"
	                                                   : "fast.cancels_sent"),
	                 1);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(ctx);
	remote_stop(&r);
}

/* Drain -----------------------------------------------------------------------*/
struct slow {
	struct one o;
	ferry_session *s;
	ferry_buf req, resp;
	int chained_status; /* a call started from the callback, during drain */
	struct one chained;
	ferry_buf creq, cresp;
};

static void slow_cb(void *arg, int status, ferry_buf *resp)
{
	struct slow *w = arg;
	one_cb(&w->o, status, resp);
	w->chained_status = ferry_call(w->s, TEST_OP_ECHO, &w->creq, &w->cresp, 2000000,
	                               one_cb, &w->chained);
}

static void drain_case(uint32_t slow_us, uint32_t timeout_us, int want_rc,
                       uint64_t min_us, uint64_t max_us)
{
	remote r;
	remote_start(&r, remote_loc);
	ferry_ctx *ctx = client_ctx();
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, r.loc, &s), 0);
	assert_int_equal(call_u32(s, TEST_OP_ECHO, 1, NULL), 0);
	enum { N = 4 };
	struct slow w[N];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < N; i++) {
		w[i].s = s;
		ferry_buf_init(&w[i].req);
		ferry_buf_init(&w[i].resp);
		ferry_buf_init(&w[i].creq);
		ferry_buf_init(&w[i].cresp);
		ferry_buf_append(&w[i].req, &slow_us, 4);
		assert_int_equal(ferry_call(s, TEST_OP_SLOW, &w[i].req, &w[i].resp,
		                            10000000, slow_cb, &w[i]),
		                 0);
	}
	poll_for(ctx, 50000); /* with their handlers */
	assert_int_equal(call_u32(s, OP_DRAIN, timeout_us, NULL), 0);
	/* Draining: new calls are refused. */
	assert_int_equal(call_u32(s, TEST_OP_ECHO, 2, NULL), FERRY_ESHUTDOWN);
	int rc = 1;
	uint64_t el = 0;
	assert_true(remote_report(&r, ctx, 5000000, &rc, &el));
	print_message("drain: %s after %llu us\n", ferry_err_name(rc),
	              (unsigned long long)el);
	assert_int_equal(rc, want_rc);
	assert_true(el >= min_us);
	assert_true(el <= max_us);
	/* In-flight calls finish (after a timed-out drain too); the calls their
	 * callbacks started were refused. */
	uint64_t t0 = now_us();
	int done = 0;
	while (done < N && now_us() - t0 < 5000000) {
		ferry_ctx_poll(ctx, 1000);
		done = 0;
		for (int i = 0; i < N; i++)
			done += w[i].o.cbs == 1 && w[i].chained.cbs == 1;
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(w[i].o.cbs, 1);
		assert_int_equal(w[i].o.status, 0);
		assert_int_equal(w[i].chained_status, 0);
		assert_int_equal(w[i].chained.status, FERRY_ESHUTDOWN);
		ferry_buf_fini(&w[i].req);
		ferry_buf_fini(&w[i].resp);
		ferry_buf_fini(&w[i].creq);
		ferry_buf_fini(&w[i].cresp);
	}
	ferry_ctx_destroy(ctx);
	remote_stop(&r);
}

static void test_drain_completes(void **st)
{
	(void)st;
	/* Handlers that take 300 ms: the drain ends when they have replied. */
	drain_case(300000, 3000000, 0, 150000, 2500000);
}

static void test_drain_timeout(void **st)
{
	(void)st;
	/* Handlers that take 1.5 s, a drain of 200 ms: FERRY_ETIMEDOUT. */
	drain_case(1500000, 200000, FERRY_ETIMEDOUT, 200000, 700000);
}

/* Context destroy with calls in flight ---------------------------------------*/
struct dcall {
	int cbs, status, call_rc, open_rc;
	ferry_session *s;
	ferry_ctx *ctx;
	const char *loc;
	ferry_buf req, resp, req2, resp2;
};

static void destroy_cb(void *arg, int status, ferry_buf *resp)
{
	struct dcall *d = arg;
	d->cbs++;
	d->status = status;
	ferry_buf_reset(resp);
	/* Nothing new may start while the context goes away. */
	d->call_rc = ferry_call(d->s, TEST_OP_ECHO, &d->req2, &d->resp2, 1000000, one_cb,
	                        NULL);
	ferry_session *s2;
	d->open_rc = ferry_session_open(d->ctx, d->loc, &s2);
}

static void test_destroy_with_calls_in_flight(void **st)
{
	(void)st;
	remote r;
	remote_start(&r, remote_loc);
	ferry_ctx *ctx = client_ctx();
	ferry_session *s;
	char loc[600];
	snprintf(loc, sizeof(loc), "%s%s", r.loc,
	         is_stream(remote_loc) ? "" : ",channels=64");
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	enum { N = 100 };
	static struct dcall d[N];
	uint32_t us = 3000000;
	for (int i = 0; i < N; i++) {
		d[i] = (struct dcall){.s = s, .ctx = ctx, .loc = loc, .cbs = 0};
		ferry_buf_init(&d[i].req);
		ferry_buf_init(&d[i].resp);
		ferry_buf_init(&d[i].req2);
		ferry_buf_init(&d[i].resp2);
		ferry_buf_append(&d[i].req, &us, 4);
		assert_int_equal(ferry_call(s, TEST_OP_SLOW, &d[i].req, &d[i].resp,
		                            10000000, destroy_cb, &d[i]),
		                 0);
	}
	poll_for(ctx, 100000); /* some in flight, the rest queued */
	for (int i = 0; i < N; i++)
		assert_int_equal(d[i].cbs, 0);
	ferry_ctx_destroy(ctx);
	for (int i = 0; i < N; i++) {
		assert_int_equal(d[i].cbs, 1);
		assert_int_equal(d[i].status, FERRY_ECANCELED);
		assert_int_equal(d[i].call_rc, FERRY_ECANCELED);
		assert_int_equal(d[i].open_rc, FERRY_ESHUTDOWN);
		ferry_buf_fini(&d[i].req);
		ferry_buf_fini(&d[i].resp);
		ferry_buf_fini(&d[i].req2);
		ferry_buf_fini(&d[i].resp2);
	}
	remote_stop(&r);
}

/* Keepalive: a killed idle peer -------------------------------------------------*/
static int ev_count, ev_last;
static uint64_t ev_at;

static void ev_cb(void *arg, ferry_session *s, int event)
{
	(void)arg;
	(void)s;
	ev_count++;
	ev_last = event;
	ev_at = now_us();
}

#define KA_US          50000u
#define KA_LIVENESS_US 400000u

static void test_keepalive_dead_idle_peer(void **st)
{
	(void)st;
	remote r;
	remote_start(&r, remote_loc);
	ferry_ctx *ctx = client_ctx();
	ferry_session *s;
	char loc[600];
	bool stream = is_stream(remote_loc);
	if (stream) /* the kernel's keepalive too (a killed peer is seen at once) */
		snprintf(loc, sizeof(loc), "%s,keepalive=1", r.loc);
	else
		snprintf(loc, sizeof(loc), "%s,keepalive=%u,liveness=%u", r.loc, KA_US,
		         KA_LIVENESS_US);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_session_set_event_cb(s, ev_cb, NULL);
	ev_count = 0;
	assert_int_equal(call_u32(s, TEST_OP_ECHO, 1, NULL), 0);
	/* Idle for three liveness intervals: keepalives keep it alive. */
	poll_for(ctx, 3 * KA_LIVENESS_US);
	assert_int_equal(ev_count, 0);
	assert_int_equal(ferry_session_status(s), 0);
	if (!stream) {
		assert_true(metric(ctx, "fast.keepalives_sent") >= 5);
		assert_true(metric(ctx, "fast.keepalives_answered") >= 5);
	}
	kill(r.pid, SIGKILL);
	waitpid(r.pid, NULL, 0);
	uint64_t t0 = now_us();
	while (ev_count == 0 && now_us() - t0 < 5000000)
		ferry_ctx_poll(ctx, 1000);
	print_message("dead idle peer reported after %llu us\n",
	              (unsigned long long)(ev_at - t0));
	assert_int_equal(ev_count, 1);
	assert_int_equal(ev_last, FERRY_EPEERDEAD);
	assert_int_equal(ferry_session_status(s), FERRY_EPEERDEAD);
	/* fast: within liveness + two keepalive periods; stream: at once. */
	assert_true(ev_at - t0 <=
	            (stream ? 500000u : KA_LIVENESS_US + 2 * KA_US + 100000u));
	/* Reported once, and the next call fails too. */
	poll_for(ctx, 200000);
	assert_int_equal(ev_count, 1);
	int rc = call_u32(s, TEST_OP_ECHO, 2, NULL);
	assert_int_equal(rc, FERRY_EPEERDEAD);
	ferry_ctx_destroy(ctx);
	close(r.report_fd);
}

/* Without keepalives, fast says nothing about an idle session. */
static void test_no_keepalive_by_default(void **st)
{
	(void)st;
	if (is_stream(remote_loc))
		skip();
	remote r;
	remote_start(&r, remote_loc);
	ferry_ctx *ctx = client_ctx();
	ferry_session *s;
	char loc[600];
	snprintf(loc, sizeof(loc), "%s,liveness=%u", r.loc, KA_LIVENESS_US);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_session_set_event_cb(s, ev_cb, NULL);
	ev_count = 0;
	assert_int_equal(call_u32(s, TEST_OP_ECHO, 1, NULL), 0);
	poll_for(ctx, 2 * KA_LIVENESS_US);
	assert_int_equal(metric(ctx, "fast.keepalives_sent"), 0);
	assert_int_equal(ev_count, 0);
	ferry_ctx_destroy(ctx);
	remote_stop(&r);
}

/* fork: the child cannot touch the parent's context ---------------------------*/
static void test_fork_child_refused(void **st)
{
	(void)st;
	ferry_ctx *ctx = client_ctx();
	ferry_server *srv;
	ferry_session *s;
	char loc[512];
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	tu_server_handlers(srv);
	assert_int_equal(ferry_server_listen(srv, "fast+udp:host=127.0.0.1,port=0"), 0);
	assert_true(ferry_server_locator(srv, 0, loc, sizeof(loc)) > 0);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	assert_int_equal(call_u32(s, TEST_OP_ECHO, 1, NULL), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	struct one o = {0, 0};
	ferry_call_handle h;
	assert_int_equal(
	        ferry_call_h(s, TEST_OP_ECHO, &req, &resp, 1000000, one_cb, &o, &h), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int bad = 0;
		ferry_session *s2;
		ferry_server *srv2;
		bad |= (ferry_call(s, TEST_OP_ECHO, &req, &resp, 0, one_cb, &o) !=
		        FERRY_EWRONGTHREAD)
		       << 0;
		bad |= (ferry_call_h(s, TEST_OP_ECHO, &req, &resp, 0, one_cb, &o, &h) !=
		        FERRY_EWRONGTHREAD)
		       << 1;
		bad |= (ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 0) !=
		        FERRY_EWRONGTHREAD)
		       << 2;
		bad |= (ferry_ctx_poll(ctx, 0) != FERRY_EWRONGTHREAD) << 3;
		bad |= (ferry_session_open(ctx, loc, &s2) != FERRY_EWRONGTHREAD) << 4;
		bad |= (ferry_call_cancel(ctx, h) != FERRY_EWRONGTHREAD) << 5;
		bad |= (ferry_server_drain(srv, 0) != FERRY_EWRONGTHREAD) << 6;
		bad |= (ferry_server_create(ctx, &srv2) != FERRY_EWRONGTHREAD) << 7;
		bad |= (ferry_session_status(s) != FERRY_EWRONGTHREAD) << 8;
		ferry_session_close(s); /* refused: nothing happens */
		ferry_server_destroy(srv);
		ferry_ctx_destroy(ctx);
		bad |= (o.cbs != 0) << 9; /* no callback ran in the child */
		/* A context of its own works. */
		ferry_ctx *mine;
		bad |= (ferry_ctx_create(NULL, &mine) != 0) << 10;
		if ((bad & (1 << 10)) == 0)
			ferry_ctx_destroy(mine);
		_exit(bad);
	}
	int stt = -1;
	assert_int_equal(waitpid(pid, &stt, 0), pid);
	assert_true(WIFEXITED(stt));
	assert_int_equal(WEXITSTATUS(stt), 0);
	/* The parent's context is intact: the pending call completes, more work. */
	uint64_t t0 = now_us();
	while (o.cbs == 0 && now_us() - t0 < 2000000)
		ferry_ctx_poll(ctx, 1000);
	assert_int_equal(o.cbs, 1);
	assert_int_equal(o.status, 0);
	assert_int_equal(call_u32(s, TEST_OP_ECHO, 2, NULL), 0);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(ctx);
}

/* Foreign threads: a handle is owner-thread business. */
static ferry_ctx *ft_ctx;
static ferry_session *ft_s;
static int ft_rc_cancel, ft_rc_call_h;

static void *ft_thread(void *arg)
{
	ferry_call_handle *h = arg;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_call_handle h2;
	ft_rc_cancel = ferry_call_cancel(ft_ctx, *h);
	ft_rc_call_h =
	        ferry_call_h(ft_s, TEST_OP_ECHO, &req, &resp, 0, one_cb, NULL, &h2);
	return NULL;
}

static void test_cancel_foreign_thread(void **st)
{
	(void)st;
	ferry_ctx *ctx = client_ctx();
	ferry_server *srv;
	ferry_session *s;
	char loc[512];
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	tu_server_handlers(srv);
	assert_int_equal(ferry_server_listen(srv, "fast+loopback"), 0);
	assert_true(ferry_server_locator(srv, 0, loc, sizeof(loc)) > 0);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	struct one o = {0, 0};
	ferry_call_handle h;
	assert_int_equal(
	        ferry_call_h(s, TEST_OP_ECHO, &req, &resp, 1000000, one_cb, &o, &h), 0);
	ft_ctx = ctx;
	ft_s = s;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, ft_thread, &h), 0);
	pthread_join(t, NULL);
	assert_int_equal(ft_rc_cancel, FERRY_EWRONGTHREAD);
	assert_int_equal(ft_rc_call_h, FERRY_EWRONGTHREAD);
	assert_int_equal(o.cbs, 0);
	assert_int_equal(ferry_call_cancel(ctx, h), 0);
	assert_int_equal(o.cbs, 1);
	assert_int_equal(o.status, FERRY_ECANCELED);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(ctx);
}

/* A callback that closes its session while the session's calls are being
 * failed (fast: nobody answers the open within the liveness interval). The
 * close must wait until the failing is done (ASan catches a use after
 * free), every callback runs once and nothing more arrives later. */
struct close_in_cb {
	ferry_session *s;
	int cbs, closed, status;
};

static void close_in_cb(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	struct close_in_cb *o = arg;
	o->cbs++;
	o->status = status;
	if (o->s != NULL) {
		ferry_session *s = o->s;
		o->s = NULL; /* the close runs the other callbacks (ECANCELED) */
		o->closed++;
		ferry_session_close(s);
	}
}

static void test_close_from_fail_callback(void **st)
{
	(void)st;
	/* A bound UDP socket that never answers: the open goes unanswered. */
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	char loc[160];
	snprintf(loc, sizeof(loc), "fast+udp:host=127.0.0.1,port=%u,liveness=100000",
	         (unsigned)ntohs(a.sin_port));
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	struct close_in_cb o = {0};
	assert_int_equal(ferry_session_open(ctx, loc, &o.s), 0);
	enum { CALLS = 6 };
	ferry_buf req[CALLS], resp[CALLS];
	for (int i = 0; i < CALLS; i++) { /* some in flight, some queued */
		ferry_buf_init(&req[i]);
		ferry_buf_init(&resp[i]);
		ferry_buf_append(&req[i], "x", 1);
		assert_int_equal(ferry_call(o.s, TEST_OP_ECHO, &req[i], &resp[i], 5000000,
		                            close_in_cb, &o),
		                 0);
	}
	uint64_t t0 = ferry_ctx_now_us(ctx);
	while (o.cbs < CALLS &&
	       ferry_ctx_now_us(ctx) - t0 < 3000000) /* liveness is 0.1 s */
		ferry_ctx_poll(ctx, 5000);
	assert_int_equal(o.closed, 1);
	assert_int_equal(o.cbs,
	                 CALLS); /* the first failed, the close canceled the rest */
	t0 = ferry_ctx_now_us(ctx);
	while (ferry_ctx_now_us(ctx) - t0 <
	       300000) /* nothing runs on the freed session */
		ferry_ctx_poll(ctx, 5000);
	assert_int_equal(o.cbs, CALLS);
	for (int i = 0; i < CALLS; i++) {
		ferry_buf_fini(&req[i]);
		ferry_buf_fini(&resp[i]);
	}
	ferry_ctx_destroy(ctx);
	close(fd);
}

int main(int argc, char **argv)
{
	remote_loc = argc > 1 ? argv[1] : "fast+udp:host=127.0.0.1,port=0";
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest local[] = {
	        cmocka_unit_test(test_cancel_race_fast_loopback),
	        cmocka_unit_test(test_cancel_race_fast_udp),
	        cmocka_unit_test(test_cancel_foreign_thread),
	        cmocka_unit_test(test_fork_child_refused),
	        cmocka_unit_test(test_close_from_fail_callback),
	};
	const struct CMUnitTest remote_tests[] = {
	        cmocka_unit_test(test_cancel_race_remote),
	        cmocka_unit_test(test_cancel_reaches_handler),
	        cmocka_unit_test(test_drain_completes),
	        cmocka_unit_test(test_drain_timeout),
	        cmocka_unit_test(test_destroy_with_calls_in_flight),
	        cmocka_unit_test(test_keepalive_dead_idle_peer),
	        cmocka_unit_test(test_no_keepalive_by_default),
	};
	int rc = 0;
	if (argc > 2 && strcmp(argv[2], "local") == 0)
		rc = cmocka_run_group_tests_name("lifecycle_local", local, NULL, NULL);
	else
		rc = cmocka_run_group_tests_name("lifecycle_remote", remote_tests, NULL,
		                                 NULL);
	return rc;
}
