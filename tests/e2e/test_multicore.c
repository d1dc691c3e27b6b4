/* Multi-core servers and worker offload, in one process.
 *
 * group <locator>: a 4-context server group (SO_REUSEPORT) serves 64
 *   sessions of one client context with byte-exact echoes; every context
 *   serves some sessions, each session's requests all land on one context,
 *   and (fast) each context opened exactly the sessions it served.
 * blocking: a blocking handler sleeps 200 ms on a worker while 1,000 other
 *   calls complete on the same server context; the blocked call's request
 *   goes out once (no data retransmission, only ack probes) and its
 *   handler runs once.
 * overflow: a one-thread pool with a one-slot queue answers FERRY_EAGAIN
 *   past it, and counts it. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/testutil.h"

#define MC_CTX               4
#define MC_SESSIONS          64u
#define MC_SESSIONS_MAX      MC_SESSIONS
#define MC_CALLS_PER_SESSION 6
#define MC_OP_ECHO           300 /* request: u32 session id, then a pattern; echoed */
#define MC_OP_SLOW           301 /* blocking: sleeps, then echoes */
#define MC_SLOW_US           200000
#define MC_OTHER_CALLS       1000
#define MC_DEADLINE_US       20000000ull

static const char *mc_locator;             /* argv */
static int mc_nctx = MC_CTX;               /* argv: contexts in the group */
static uint32_t mc_sessions = MC_SESSIONS; /* argv: client sessions */

static uint64_t mc_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mc_get(ferry_ctx *ctx, const char *name)
{
	uint64_t v = 0;
	ferry_metrics_get(ctx, name, &v);
	return v;
}

static void mc_dump(void *arg, const char *name, uint64_t v)
{
	(void)arg;
	if (v != 0)
		print_message("  %s = %llu\n", name, (unsigned long long)v);
}

/* Server side ------------------------------------------------------------------*/

typedef struct mc_server {
	atomic_int owner[MC_SESSIONS_MAX]; /* context that served the session, -1 */
	atomic_int moved;                  /* a session seen on a second context */
	atomic_uint served[MC_CTX];        /* requests per context */
	uint64_t opened[MC_CTX];           /* fast.sessions_opened, from fini */
	uint64_t bad_session[MC_CTX];      /* fast.bad_session_sent */
	uint64_t workers_jobs, workers_overflow, acks_deferred, probes_answered,
	        dup_request;
	atomic_int slow_runs;
	atomic_bool others_done;
	ferry_workers_opts wopts;
	bool blocking;
} mc_server;

typedef struct mc_member {
	mc_server *sv;
	int index;
} mc_member;
static mc_member mc_members[MC_CTX];

static void mc_echo(ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	size_t n = ferry_buf_len(req);
	void *p = ferry_buf_alloc(ferry_rpc_response(rpc), n);
	if (p == NULL || ferry_buf_copy_out(req, 0, n, p) != (ssize_t)n) {
		ferry_rpc_reply(rpc, -ENOMEM);
		return;
	}
	ferry_rpc_reply(rpc, 0);
}

static void mc_echo_handler(void *arg, ferry_rpc *rpc)
{
	mc_member *m = arg;
	uint32_t sid = UINT32_MAX;
	ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 4, &sid);
	if (sid < MC_SESSIONS) {
		int none = -1;
		if (!atomic_compare_exchange_strong(&m->sv->owner[sid], &none,
		                                    m->index) &&
		    none != m->index)
			atomic_fetch_add(&m->sv->moved, 1);
	}
	atomic_fetch_add(&m->sv->served[m->index], 1);
	mc_echo(rpc);
}

/* On a worker thread: sleep, and keep sleeping until the other calls are
 * done (bounded), so they provably complete while this one works. */
static void mc_slow_handler(void *arg, ferry_rpc *rpc)
{
	mc_member *m = arg;
	atomic_fetch_add(&m->sv->slow_runs, 1);
	usleep(MC_SLOW_US);
	for (int i = 0; i < 500 && !atomic_load(&m->sv->others_done); i++)
		usleep(10000);
	mc_echo(rpc);
}

static int mc_setup(void *arg, int index, ferry_ctx *ctx, ferry_server *srv)
{
	(void)ctx;
	mc_server *sv = arg;
	mc_members[index] = (mc_member){sv, index};
	int rc =
	        ferry_server_handle(srv, MC_OP_ECHO, mc_echo_handler, &mc_members[index]);
	if (rc == 0 && sv->blocking) {
		rc = ferry_server_workers(srv, &sv->wopts);
		if (rc == 0)
			rc = ferry_server_handle_blocking(
			        srv, MC_OP_SLOW, mc_slow_handler, &mc_members[index]);
	}
	return rc;
}

static int mc_fini(void *arg, int index, ferry_ctx *ctx, ferry_server *srv)
{
	(void)srv;
	mc_server *sv = arg;
	if (getenv("MC_DEBUG"))
		ferry_ctx_stats(ctx, mc_dump, NULL);
	sv->opened[index] = mc_get(ctx, "fast.sessions_opened");
	sv->bad_session[index] = mc_get(ctx, "fast.bad_session_sent");
	sv->workers_jobs += mc_get(ctx, "rpc.workers.jobs");
	sv->workers_overflow += mc_get(ctx, "rpc.workers.overflow");
	sv->acks_deferred += mc_get(ctx, "fast.acks_deferred");
	sv->probes_answered += mc_get(ctx, "fast.probes_answered");
	sv->dup_request += mc_get(ctx, "fast.retx.dup_request");
	return 0;
}

static ferry_server_group *mc_start(mc_server *sv, int nctx, const char *loc, char *bound,
                                    size_t len)
{
	for (int i = 0; i < (int)MC_SESSIONS; i++)
		atomic_init(&sv->owner[i], -1);
	const char *locs[] = {loc};
	ferry_server_group_opts o = {.nctx = nctx,
	                             .poll_mode = FERRY_POLL_BLOCK,
	                             .locators = locs,
	                             .nlocators = 1,
	                             .setup = mc_setup,
	                             .fini = mc_fini,
	                             .arg = sv};
	ferry_server_group *g = NULL;
	int rc = ferry_server_group_start(&o, &g);
	if (rc != 0)
		fail_msg("group start %s: %s", loc, ferry_strerror(rc));
	assert_true(ferry_server_group_locator(g, 0, bound, len) > 0);
	return g;
}

/* Client side ------------------------------------------------------------------*/

typedef struct mc_call {
	ferry_session *s;
	uint32_t sid, k, size;
	uint16_t opcode;
	ferry_buf req, resp;
	int status; /* 1 while in flight */
	bool exact;
	uint64_t done_us;
	int *outstanding;
} mc_call;

static uint32_t mc_size(uint32_t sid, uint32_t k)
{
	/* Mostly small, some of several fragments. */
	static const uint32_t sizes[] = {8, 64, 1000, 9000, 70000, 150000};
	return sizes[(sid + k) % (sizeof(sizes) / sizeof(sizes[0]))];
}

static void mc_done(void *arg, int status, ferry_buf *resp)
{
	mc_call *c = arg;
	c->status = status;
	c->done_us = mc_now_us();
	if (status == 0 && ferry_buf_len(resp) == c->size) {
		uint8_t *want = malloc(c->size), *got = malloc(c->size);
		tu_fill(want, c->size, (uint64_t)c->sid * 1000 + c->k);
		memcpy(want, &c->sid, 4);
		ferry_buf_copy_out(resp, 0, c->size, got);
		c->exact = memcmp(want, got, c->size) == 0;
		free(want);
		free(got);
	}
	ferry_buf_reset(resp);
	(*c->outstanding)--;
}

static void mc_issue(mc_call *c, ferry_session *s, uint16_t opcode, uint32_t sid,
                     uint32_t k, uint32_t size, int *outstanding)
{
	c->s = s;
	c->sid = sid;
	c->k = k;
	c->size = size < 4 ? 4 : size;
	c->opcode = opcode;
	c->status = 1;
	c->exact = false;
	c->outstanding = outstanding;
	ferry_buf_init(&c->req);
	ferry_buf_init(&c->resp);
	uint8_t *p = ferry_buf_alloc(&c->req, c->size);
	assert_non_null(p);
	tu_fill(p, c->size, (uint64_t)sid * 1000 + k);
	memcpy(p, &sid, 4);
	int rc = ferry_call(s, opcode, &c->req, &c->resp, MC_DEADLINE_US, mc_done, c);
	if (rc != 0)
		fail_msg("call: %s", ferry_strerror(rc));
	(*outstanding)++;
}

static void mc_fini_call(mc_call *c)
{
	ferry_buf_fini(&c->req);
	ferry_buf_fini(&c->resp);
}

/* Locator for client session i: tcp/infrc sessions to the same text share one
 * connection (one context); a distinct connect_timeout gives each its own. */
static void mc_client_loc(char *out, size_t len, const char *bound, int i)
{
	if (strncmp(bound, "tcp:", 4) == 0 || strncmp(bound, "infrc:", 6) == 0)
		snprintf(out, len, "%s,connect_timeout=%d", bound, 5000 + i);
	else
		snprintf(out, len, "%s", bound);
}

static void test_group(void **st)
{
	(void)st;
	static mc_server sv;
	memset(&sv, 0, sizeof(sv));
	char bound[512];
	int nctx = mc_nctx;
	ferry_server_group *g = mc_start(&sv, nctx, mc_locator, bound, sizeof(bound));
	print_message("group of %d on %s, %u sessions\n", nctx, bound, mc_sessions);
	if (nctx > 1)
		assert_non_null(strstr(bound, "reuseport=1"));
	assert_null(strstr(bound, "port=0,"));

	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(&(ferry_ctx_opts){.poll_mode = FERRY_POLL_BLOCK,
	                                                    .cpu = -1},
	                                  &ctx),
	                 0);
	ferry_session *s[MC_SESSIONS_MAX];
	for (int i = 0; i < (int)mc_sessions; i++) {
		char loc[600];
		mc_client_loc(loc, sizeof(loc), bound, i);
		int rc = ferry_session_open(ctx, loc, &s[i]);
		if (rc != 0)
			fail_msg("open %s: %s", loc, ferry_ctx_errmsg(ctx));
	}
	static mc_call calls[MC_SESSIONS_MAX][MC_CALLS_PER_SESSION];
	/* Every call of every session at once: several calls in flight per
	 * session, so each server port has many channels ending on
	 * one-fragment replies (which must not keep port credit). */
	int outstanding = 0;
	uint64_t until = mc_now_us() + MC_DEADLINE_US + 1000000;
	for (uint32_t k = 0; k < MC_CALLS_PER_SESSION; k++)
		for (uint32_t i = 0; i < mc_sessions; i++)
			mc_issue(&calls[i][k], s[i], MC_OP_ECHO, i, k, mc_size(i, k),
			         &outstanding);
	while (outstanding > 0 && mc_now_us() < until)
		ferry_ctx_poll(ctx, 1000);
	assert_int_equal(outstanding, 0);
	int bad = 0;
	for (int i = 0; i < (int)mc_sessions; i++)
		for (int k = 0; k < MC_CALLS_PER_SESSION; k++) {
			if (calls[i][k].status != 0 || !calls[i][k].exact) {
				if (bad++ < 5)
					print_message(
					        "session %d call %d (%u bytes): %s%s\n",
					        i, k, calls[i][k].size,
					        ferry_strerror(calls[i][k].status),
					        calls[i][k].exact ? ""
					                          : ", not byte-exact");
			}
			mc_fini_call(&calls[i][k]);
		}
	uint64_t reopens = mc_get(ctx, "fast.reopens");
	if (getenv("MC_DEBUG"))
		ferry_ctx_stats(ctx, mc_dump, NULL);
	print_message("client: %llu timeout retx, %llu probes, %llu peer-dead calls\n",
	              (unsigned long long)mc_get(ctx, "fast.retx.timeout"),
	              (unsigned long long)mc_get(ctx, "fast.retx.probe"),
	              (unsigned long long)mc_get(ctx, "fast.calls.peerdead"));
	ferry_ctx_destroy(ctx);
	ferry_server_group_stop(g);

	int sessions_on[MC_CTX] = {0};
	for (int i = 0; i < (int)mc_sessions; i++) {
		int o = atomic_load(&sv.owner[i]);
		assert_true(o >= 0 && o < nctx);
		sessions_on[o]++;
	}
	for (int c = 0; c < nctx; c++)
		print_message("context %d: %u requests, %d sessions served, %llu opened, "
		              "%llu BAD_SESSION\n",
		              c, atomic_load(&sv.served[c]), sessions_on[c],
		              (unsigned long long)sv.opened[c],
		              (unsigned long long)sv.bad_session[c]);
	assert_int_equal(bad, 0);
	assert_int_equal(atomic_load(&sv.moved), 0);
	assert_int_equal(reopens, 0);
	for (int c = 0; c < nctx; c++) {
		assert_true(sessions_on[c] > 0);
		assert_true(atomic_load(&sv.served[c]) > 0);
		if (strncmp(bound, "fast+", 5) == 0) {
			/* The open and the data of a session reached the same context. */
			assert_int_equal(sv.opened[c], (uint64_t)sessions_on[c]);
			assert_int_equal(sv.bad_session[c], 0);
		}
	}
}

static void test_blocking(void **st)
{
	(void)st;
	static mc_server sv;
	memset(&sv, 0, sizeof(sv));
	sv.blocking = true;
	sv.wopts = (ferry_workers_opts){.threads = 2, .queue_max = 16};
	char bound[512];
	ferry_server_group *g =
	        mc_start(&sv, 1, "fast+udp:host=127.0.0.1,port=0", bound, sizeof(bound));
	ferry_ctx_opts co = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_ctx *slow_ctx, *ctx;
	assert_int_equal(ferry_ctx_create(&co, &slow_ctx), 0);
	assert_int_equal(ferry_ctx_create(&co, &ctx), 0);
	ferry_session *slow_s, *s[4];
	assert_int_equal(ferry_session_open(slow_ctx, bound, &slow_s), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ferry_session_open(ctx, bound, &s[i]), 0);

	/* The blocked call, alone on its context, so that context's fast
	 * counters are its own. */
	int slow_out = 0, out = 0;
	static mc_call slow;
	uint64_t t0 = mc_now_us();
	mc_issue(&slow, slow_s, MC_OP_SLOW, 0, 0, 3000, &slow_out);
	static mc_call calls[MC_OTHER_CALLS];
	uint32_t issued = 0;
	uint64_t others_done_us = 0;
	uint64_t until = t0 + MC_DEADLINE_US;
	while ((slow_out > 0 || out > 0 || issued < MC_OTHER_CALLS) &&
	       mc_now_us() < until) {
		while (issued < MC_OTHER_CALLS && out < 32) {
			uint32_t i = issued++;
			mc_issue(&calls[i], s[i % 4], MC_OP_ECHO, i % 4, i, 16 + i % 512,
			         &out);
		}
		ferry_ctx_poll(slow_ctx, 0);
		ferry_ctx_poll(ctx, 200);
		if (issued == MC_OTHER_CALLS && out == 0 && others_done_us == 0) {
			others_done_us = mc_now_us();
			atomic_store(&sv.others_done, true);
		}
	}
	assert_int_equal(slow_out, 0);
	assert_int_equal(out, 0);
	int bad = 0;
	for (int i = 0; i < MC_OTHER_CALLS; i++) {
		bad += calls[i].status != 0 || !calls[i].exact;
		mc_fini_call(&calls[i]);
	}
	uint64_t retx_timeout = mc_get(slow_ctx, "fast.retx.timeout");
	uint64_t retx_fast = mc_get(slow_ctx, "fast.retx.fast");
	uint64_t probes = mc_get(slow_ctx, "fast.retx.probe");
	uint64_t data_sent = mc_get(slow_ctx, "fast.data_sent");
	print_message(
	        "blocked call: %llu us; others done after %llu us; client data packets %llu, "
	        "timeout retx %llu, fast retx %llu, ack probes %llu\n",
	        (unsigned long long)(slow.done_us - t0),
	        (unsigned long long)(others_done_us - t0), (unsigned long long)data_sent,
	        (unsigned long long)retx_timeout, (unsigned long long)retx_fast,
	        (unsigned long long)probes);
	assert_int_equal(slow.status, 0);
	assert_true(slow.exact);
	mc_fini_call(&slow);
	ferry_ctx_destroy(slow_ctx);
	ferry_ctx_destroy(ctx);
	ferry_server_group_stop(g);
	print_message(
	        "server: handler runs %d, worker jobs %llu, deferred acks %llu, probes "
	        "answered %llu, dup-request resends %llu\n",
	        atomic_load(&sv.slow_runs), (unsigned long long)sv.workers_jobs,
	        (unsigned long long)sv.acks_deferred,
	        (unsigned long long)sv.probes_answered,
	        (unsigned long long)sv.dup_request);
	assert_int_equal(bad, 0);
	/* The poll loop kept serving while the handler worked. */
	assert_true(others_done_us != 0 && others_done_us < slow.done_us);
	assert_true(slow.done_us - t0 >= MC_SLOW_US);
	/* The request went out once; the client only probed, with acks. */
	assert_int_equal(data_sent, 1); /* 3000 bytes: one fragment on loopback */
	assert_int_equal(retx_timeout, 0);
	assert_int_equal(retx_fast, 0);
	assert_true(probes >= 1);
	/* (fast.retx.dup_request on the server counts every session's; the
	 * blocked call's client counters above are its own.) */
	/* ... and the handler ran once. */
	assert_int_equal(atomic_load(&sv.slow_runs), 1);
	assert_int_equal(sv.workers_jobs, 1);
	assert_int_equal(sv.workers_overflow, 0);
	assert_true(sv.acks_deferred >= 1);
	assert_true(sv.probes_answered >= 1);
}

static void test_overflow(void **st)
{
	(void)st;
	static mc_server sv;
	memset(&sv, 0, sizeof(sv));
	sv.blocking = true;
	sv.wopts = (ferry_workers_opts){.threads = 1, .queue_max = 1};
	atomic_store(&sv.others_done, true); /* the slow handler sleeps 200 ms only */
	char bound[512];
	ferry_server_group *g =
	        mc_start(&sv, 1, "fast+udp:host=127.0.0.1,port=0", bound, sizeof(bound));
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(&(ferry_ctx_opts){.poll_mode = FERRY_POLL_BLOCK,
	                                                    .cpu = -1},
	                                  &ctx),
	                 0);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, bound, &s), 0);
	enum { N = 5 };
	static mc_call calls[N];
	int out = 0;
	for (uint32_t i = 0; i < N; i++)
		mc_issue(&calls[i], s, MC_OP_SLOW, 0, i, 64, &out);
	uint64_t until = mc_now_us() + MC_DEADLINE_US;
	while (out > 0 && mc_now_us() < until)
		ferry_ctx_poll(ctx, 1000);
	assert_int_equal(out, 0);
	int ok = 0, eagain = 0;
	for (int i = 0; i < N; i++) {
		if (calls[i].status == 0 && calls[i].exact)
			ok++;
		else if (calls[i].status == FERRY_EAGAIN)
			eagain++;
		mc_fini_call(&calls[i]);
	}
	ferry_ctx_destroy(ctx);
	ferry_server_group_stop(g);
	print_message("%d served, %d FERRY_EAGAIN, overflow counter %llu\n", ok, eagain,
	              (unsigned long long)sv.workers_overflow);
	/* One running and one queued at most; the rest overflowed. */
	assert_int_equal(ok + eagain, N);
	assert_true(ok >= 1 && ok <= 2);
	assert_int_equal((uint64_t)eagain, sv.workers_overflow);
	assert_int_equal(atomic_load(&sv.slow_runs), ok);
	assert_int_equal(sv.workers_jobs, (uint64_t)ok);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr,
		        "usage: %s group|blocking|overflow [locator [contexts [sessions]]]\n",
		        argv[0]);
		return 2;
	}
	mc_locator = argc > 2 ? argv[2] : "fast+udp:host=127.0.0.1,port=0,reuseport=1";
	if (argc > 3)
		mc_nctx = atoi(argv[3]);
	if (argc > 4)
		mc_sessions = (uint32_t)atoi(argv[4]);
	if (mc_nctx < 1 || mc_nctx > MC_CTX || mc_sessions < 1 ||
	    mc_sessions > MC_SESSIONS_MAX) {
		fprintf(stderr, "contexts 1..%d, sessions 1..%u\n", MC_CTX,
		        MC_SESSIONS_MAX);
		return 2;
	}
	/* The InfiniBand drivers need a verbs device (suite ib, in the VM). */
	const char *ibs[] = {"infud", "infrc"};
	for (int i = 0; i < 2; i++) {
		const ferry_driver_ops *d = ferry_driver_find(ibs[i]);
		char why[160];
		snprintf(why, sizeof(why), "%s driver not built", ibs[i]);
		if (strstr(mc_locator, ibs[i]) != NULL &&
		    (d == NULL || (d->probe != NULL && d->probe(why, sizeof(why)) != 0)))
			tu_skip_or_fail("ibverbs", why);
	}
	if (strcmp(argv[1], "group") == 0) {
		const struct CMUnitTest t[] = {cmocka_unit_test(test_group)};
		return cmocka_run_group_tests(t, NULL, NULL);
	}
	const struct CMUnitTest t[] = {
	        cmocka_unit_test(test_blocking),
	        cmocka_unit_test(test_overflow),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
