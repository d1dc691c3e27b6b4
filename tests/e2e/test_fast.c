/* fast end to end, server in another process (tests/e2e/e2e_server.c):
 * 16 MiB calls, a server restart (in-flight calls fail with
 * FERRY_ERESTARTED, queued and later ones succeed), idle expiry (transparent
 * reopen), dead peers (FERRY_EPEERDEAD within twice the liveness interval,
 * nothing leaked) and incast (32 sessions reading 1 MiB at once).
 * argv[1]: the e2e_server executable. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/json.h"
#include "../common/testutil.h"

static const char *server_exe;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int fd_count(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	while (d != NULL && readdir(d) != NULL)
		n++;
	if (d != NULL)
		closedir(d);
	return n;
}

static pid_t start_server(const char *listen, char *loc, size_t len)
{
	pid_t pid = tu_spawn_server(server_exe, listen, "spin", loc, len);
	assert_true(pid > 0);
	return pid;
}

/* A server on listen and one client session to it (extra: keys added to
 * the client's locator), for the tests that need no more. */
typedef struct client {
	pid_t pid;
	ferry_ctx *ctx;
	ferry_session *s;
} client;

static void client_open(client *c, const char *listen, const char *extra)
{
	char loc[512], cloc[600];
	c->pid = start_server(listen, loc, sizeof(loc));
	snprintf(cloc, sizeof(cloc), "%s%s", loc, extra);
	assert_int_equal(ferry_ctx_create(NULL, &c->ctx), 0);
	assert_int_equal(ferry_session_open(c->ctx, cloc, &c->s), 0);
}

static void client_close(client *c)
{
	ferry_ctx_destroy(c->ctx);
	assert_int_equal(tu_stop_server(c->pid), 0);
}

static uint64_t metric(ferry_ctx *ctx, const char *name)
{
	uint64_t v = 0;
	assert_int_equal(ferry_metrics_get(ctx, name, &v), 0);
	return v;
}

static void test_16mib(void **st)
{
	(void)st;
	client c;
	client_open(&c, "fast+udp:host=127.0.0.1,port=0", "");
	ferry_session *s = c.s;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	size_t n = 16u << 20;
	for (int i = 0; i < 100; i++) {
		ferry_buf_reset(&req);
		tu_fill(ferry_buf_alloc(&req, n), n, (uint64_t)i + 500);
		int rc = ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 30000000);
		if (rc != 0)
			fail_msg("call %d: %s", i, ferry_err_name(rc));
		assert_int_equal(tu_check(&resp, n, (uint64_t)i + 500), -1);
		ferry_buf_reset(&resp);
	}
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	client_close(&c);
}

struct done {
	int n;
	int status[64];
	int done[64];
};

static void done_cb(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	int *slot = arg;
	*slot = status == 0 ? 1 : status;
}

/* Eight ECHO calls of n bytes in flight on s, each byte-exact. */
static void echo_in_flight(ferry_ctx *ctx, ferry_session *s, size_t n, uint64_t seed)
{
	enum { INFL = 8 };
	ferry_buf rq[INFL], rs[INFL];
	int slot[INFL];
	for (int i = 0; i < INFL; i++) {
		ferry_buf_init(&rq[i]);
		ferry_buf_init(&rs[i]);
		tu_fill(ferry_buf_alloc(&rq[i], n), n, seed + (uint64_t)i);
		slot[i] = 0;
		assert_int_equal(ferry_call(s, TEST_OP_ECHO, &rq[i], &rs[i], 30000000,
		                            done_cb, &slot[i]),
		                 0);
	}
	uint64_t t0 = now_us();
	for (int left = INFL; left > 0 && now_us() - t0 < 30000000;) {
		ferry_ctx_poll(ctx, 1000);
		left = 0;
		for (int i = 0; i < INFL; i++)
			left += slot[i] == 0;
	}
	for (int i = 0; i < INFL; i++) {
		if (slot[i] != 1)
			fail_msg("in flight %d: %s", i,
			         slot[i] == 0 ? "not done" : ferry_err_name(slot[i]));
		assert_int_equal(tu_check(&rs[i], n, seed + (uint64_t)i), -1);
		ferry_buf_fini(&rq[i]);
		ferry_buf_fini(&rs[i]);
	}
}

/* A counter of the server at s, from its built-in metrics service. */
static uint64_t server_metric(ferry_session *s, const char *name)
{
	ferry_buf out;
	ferry_buf_init(&out);
	assert_int_equal(ferry_metrics_remote_dump(s, NULL, &out), 0);
	size_t len = ferry_buf_len(&out);
	char *text = malloc(len + 1);
	assert_non_null(text);
	assert_int_equal(ferry_buf_copy_out(&out, 0, len, text), len);
	text[len] = '\0';
	json_object *dump = tu_json_parse(text, len, NULL);
	uint64_t v = 0;
	if (dump == NULL || tu_json_counter(dump, name, &v) != 0)
		fail_msg("server metrics lack %s: %.300s", name, text);
	json_object_put(dump);
	free(text);
	ferry_buf_fini(&out);
	return v;
}

/* Padding is negotiated in the open (docs/WIRE.md "Features"): a side that
 * does not announce it (pad=0, as a peer from before padding) never gets
 * a padded datagram. A server with pad=0: the client does not pad toward
 * it. A client with pad=0: the server's port stops padding, and the client
 * does not pad either. Both exchange eight 512 KiB echoes at once (short
 * last fragments followed by the next call's), byte-exact. */
static void test_pad_negotiation(void **st)
{
	(void)st;
	for (int who = 0; who < 2; who++) {
		client c;
		client_open(&c,
		            who == 0 ? "fast+udp:host=127.0.0.1,port=0,mtu=1472,pad=0"
		                     : "fast+udp:host=127.0.0.1,port=0,mtu=1472",
		            who == 1 ? ",pad=0" : "");
		echo_in_flight(c.ctx, c.s, 512u << 10, 700 + 10 * (uint64_t)who);
		/* segmentation was on, so padding could have happened */
		assert_true(metric(c.ctx, "udp.gso_pkts") > 0);
		assert_int_equal(metric(c.ctx, "udp.gso_padded"), 0);
		assert_true(server_metric(c.s, "udp.gso_pkts") > 0);
		assert_int_equal(server_metric(c.s, "udp.gso_padded"), 0);
		client_close(&c);
	}
}

/* A 1500-byte path (mtu=1472 on both sides over 127.0.0.1, so udp segments
 * and coalesces as on Ethernet) with a client receive pool of 64 packets:
 * before long messages were copied on receipt, a message of more fragments
 * than the pool pinned it with loans and the session died (issue 14). Every
 * size around the loan/copy boundary (64 fragments), up to 16 MiB, and 8
 * calls of 512 KiB in flight at once come back byte-exact; the counters
 * show the kernel coalesced trains, a short fragment was padded into a
 * segmentation run (the server announced it takes padding), and the scarce
 * pool was copied from. */
static void test_small_mtu(void **st)
{
	(void)st;
	client c;
	client_open(&c, "fast+udp:host=127.0.0.1,port=0,mtu=1472", ",rxslots=64");
	ferry_ctx *ctx = c.ctx;
	ferry_session *s = c.s;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	const size_t sizes[] = {1,         1432,          1433,     60000,
	                        64 * 1432, 64 * 1432 + 1, 1u << 20, 16u << 20};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
		for (int i = 0; i < 3; i++) {
			size_t n = sizes[k];
			ferry_buf_reset(&req);
			tu_fill(ferry_buf_alloc(&req, n), n, k * 10 + (uint64_t)i);
			int rc = ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 30000000);
			if (rc != 0)
				fail_msg("%zu B, call %d: %s", n, i, ferry_err_name(rc));
			assert_int_equal(tu_check(&resp, n, k * 10 + (uint64_t)i), -1);
			ferry_buf_reset(&resp);
		}
	/* eight 512 KiB calls in flight (the issue saw the session die) */
	echo_in_flight(ctx, s, 512u << 10, 900);
	/* the server's open reply announced that it takes padding, so a
	 * request's short last fragment was padded into the next's run */
	assert_true(metric(ctx, "udp.gso_padded") > 0);
	uint64_t trains = metric(ctx, "udp.gro_trains"),
	         gso = metric(ctx, "udp.gso_pkts");
	uint64_t scarce = metric(ctx, "rpc.rx_scarce_copies");
	uint64_t payload = metric(ctx, "udp.max_payload");
	printf("# small mtu: payload %llu, gro trains %llu, gso packets %llu, scarce copies %llu\n",
	       (unsigned long long)payload, (unsigned long long)trains,
	       (unsigned long long)gso, (unsigned long long)scarce);
	assert_int_equal(payload, 1472);
	assert_true(trains > 0);
	assert_true(gso > 0);
	assert_true(scarce > 0);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	client_close(&c);
}

/* A multi-fragment response's completion ack waits for the channel's next
 * request, which implies it (fast.acks_implicit), and goes by itself
 * FAST_FIN_DELAY_US later when no request follows: one ack, and the server
 * never resends the reply's tail for want of it. */
static void test_fin_ack(void **st)
{
	(void)st;
	client c;
	client_open(&c, "fast+udp:host=127.0.0.1,port=0,mtu=1472", "");
	ferry_ctx *ctx = c.ctx;
	ferry_session *s = c.s;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	enum { CALLS = 100 };
	uint32_t n = 10000; /* 7 fragments: no ack before the last (every 8) */
	for (uint64_t i = 0; i < CALLS; i++) {
		ferry_buf_reset(&req);
		ferry_buf_append(&req, &n, 4);
		ferry_buf_append(&req, &i, 8);
		assert_int_equal(ferry_call_sync(s, TEST_OP_SIZED, &req, &resp, 10000000),
		                 0);
		assert_int_equal(tu_check(&resp, n, i), -1);
		ferry_buf_reset(&resp);
	}
	uint64_t implicit = metric(ctx, "fast.acks_implicit");
	uint64_t fin = metric(ctx, "fast.acks_fin_timer");
	uint64_t acks = metric(ctx, "fast.acks_sent");
	/* every call but the first acked the one before it: by the next
	 * request, or (a client slower than FAST_FIN_DELAY_US between calls,
	 * as under a sanitizer on a busy machine) by the timer; never both,
	 * never neither */
	assert_int_equal(implicit + fin, CALLS - 1);
	assert_true(implicit > 0);
	/* (a client descheduled past the server's RTO is asked again) */
	assert_true(acks - fin <= CALLS / 4);
	/* idle: the last response's ack goes by timer */
	uint64_t t0 = now_us();
	while (now_us() - t0 < 20000)
		ferry_ctx_poll(ctx, 1000);
	assert_int_equal(metric(ctx, "fast.acks_fin_timer"), fin + 1);
	assert_true(metric(ctx, "fast.acks_sent") >= acks + 1);
	assert_int_equal(metric(ctx, "fast.acks_implicit"), implicit);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	client_close(&c);
}

static void test_restart(void **st)
{
	(void)st;
	char loc[512], loc2[512];
	pid_t pid = start_server("fast+udp:host=127.0.0.1,port=0", loc, sizeof(loc));
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_buf req[12], resp[12];
	int result[12];
	for (int i = 0; i < 12; i++) {
		ferry_buf_init(&req[i]);
		ferry_buf_init(&resp[i]);
		uint32_t us = 2000000; /* long handlers: in flight when we kill it */
		ferry_buf_append(&req[i], &us, 4);
		result[i] = 0;
	}
	/* one quick call first: the session is open and the epoch known */
	ferry_buf q, r;
	ferry_buf_init(&q);
	ferry_buf_init(&r);
	ferry_buf_append(&q, "x", 1);
	assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &q, &r, 2000000), 0);
	ferry_buf_reset(&r);
	/* 8 calls fill the channels, 4 wait in the queue */
	for (int i = 0; i < 12; i++)
		assert_int_equal(ferry_call(s, TEST_OP_SLOW, &req[i], &resp[i], 20000000,
		                            done_cb, &result[i]),
		                 0);
	uint64_t t0 = now_us();
	while (now_us() - t0 < 200000)
		ferry_ctx_poll(ctx, 1000);
	/* restart: same port, new process, new epoch */
	kill(pid, SIGKILL);
	tu_stop_server(pid);
	char listen[256];
	snprintf(listen, sizeof(listen), "fast+udp:host=127.0.0.1,%s",
	         strstr(loc, "port="));
	pid = start_server(listen, loc2, sizeof(loc2));
	int pending = 12;
	t0 = now_us();
	while (pending > 0 && now_us() - t0 < 15000000) {
		ferry_ctx_poll(ctx, 1000);
		pending = 0;
		for (int i = 0; i < 12; i++)
			pending += result[i] == 0;
	}
	assert_int_equal(pending, 0);
	for (int i = 0; i < 8; i++)
		if (result[i] != FERRY_ERESTARTED)
			fail_msg("in-flight call %d: %s", i, ferry_err_name(result[i]));
	for (int i = 8; i < 12; i++)
		if (result[i] != 1)
			fail_msg("queued call %d: %s", i, ferry_err_name(result[i]));
	/* and later calls work */
	assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &q, &r, 2000000), 0);
	uint64_t v = 0;
	assert_int_equal(ferry_metrics_get(ctx, "fast.calls.restarted", &v), 0);
	assert_int_equal(v, 8);
	for (int i = 0; i < 12; i++) {
		ferry_buf_fini(&req[i]);
		ferry_buf_fini(&resp[i]);
	}
	ferry_buf_fini(&q);
	ferry_buf_fini(&r);
	ferry_ctx_destroy(ctx);
	assert_int_equal(tu_stop_server(pid), 0);
}

static void test_idle_expiry(void **st)
{
	(void)st;
	client c;
	client_open(&c, "fast+udp:host=127.0.0.1,port=0,expire=100000", "");
	ferry_session *s = c.s;
	ferry_buf q, r;
	ferry_buf_init(&q);
	ferry_buf_init(&r);
	for (int round = 0; round < 3; round++) {
		ferry_buf_reset(&q);
		tu_fill(ferry_buf_alloc(&q, 3000), 3000, (uint64_t)round);
		assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &q, &r, 2000000), 0);
		assert_int_equal(tu_check(&r, 3000, (uint64_t)round), -1);
		ferry_buf_reset(&r);
		usleep(400000); /* the server expires the idle session */
	}
	assert_true(metric(c.ctx, "fast.reopens") >= 2);
	ferry_buf_fini(&q);
	ferry_buf_fini(&r);
	client_close(&c);
}

/* Every call fails with EPEERDEAD within twice the liveness interval. */
static void run_dead(ferry_ctx *ctx, ferry_session *s, uint64_t liveness_us)
{
	enum { N = 12 };
	ferry_buf req[N], resp[N];
	int result[N];
	uint64_t started = now_us();
	for (int i = 0; i < N; i++) {
		ferry_buf_init(&req[i]);
		ferry_buf_init(&resp[i]);
		ferry_buf_append(&req[i], "ping", 4);
		result[i] = 0;
		assert_int_equal(ferry_call(s, TEST_OP_ECHO, &req[i], &resp[i], 60000000,
		                            done_cb, &result[i]),
		                 0);
	}
	int pending = N;
	while (pending > 0 && now_us() - started < 10 * liveness_us) {
		ferry_ctx_poll(ctx, 1000);
		pending = 0;
		for (int i = 0; i < N; i++)
			pending += result[i] == 0;
	}
	uint64_t took = now_us() - started;
	assert_int_equal(pending, 0);
	for (int i = 0; i < N; i++)
		if (result[i] != FERRY_EPEERDEAD)
			fail_msg("call %d: %s", i, ferry_err_name(result[i]));
	if (took > 2 * liveness_us)
		fail_msg("took %llu us, liveness %llu us", (unsigned long long)took,
		         (unsigned long long)liveness_us);
	for (int i = 0; i < N; i++) {
		ferry_buf_fini(&req[i]);
		ferry_buf_fini(&resp[i]);
	}
}

static void test_peer_dead(void **st)
{
	(void)st;
	int fds0 = fd_count();
	char loc[512], lossy[600];
	pid_t pid = start_server("fast+udp:host=127.0.0.1,port=0", loc, sizeof(loc));
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	/* 100% drop from the start: the session never opens */
	snprintf(lossy, sizeof(lossy), "fast+lossy+%s,drop=1,liveness=200000",
	         strchr(loc, '+') + 1);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, lossy, &s), 0);
	run_dead(ctx, s, 200000);
	ferry_session_close(s);
	/* an open session whose server goes silent (stopped) */
	snprintf(lossy, sizeof(lossy), "%s,liveness=200000", loc);
	assert_int_equal(ferry_session_open(ctx, lossy, &s), 0);
	ferry_buf q, r;
	ferry_buf_init(&q);
	ferry_buf_init(&r);
	ferry_buf_append(&q, "x", 1);
	assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &q, &r, 2000000), 0);
	kill(pid, SIGSTOP);
	run_dead(ctx, s, 200000);
	kill(pid, SIGCONT);
	/* the server is back: the next call works */
	ferry_buf_reset(&r);
	assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &q, &r, 2000000), 0);
	ferry_buf_fini(&q);
	ferry_buf_fini(&r);
	uint64_t loans = 1;
	ferry_metrics_get(ctx, "udp.loans_out", &loans);
	assert_int_equal(loans, 0);
	ferry_ctx_destroy(ctx);
	assert_int_equal(tu_stop_server(pid), 0);
	assert_int_equal(fd_count(), fds0);
}

/* Incast: 32 sessions read 1 MiB each from one server at once. */
#define INCAST 32
static ferry_buf inc_resp[INCAST];
static int inc_done[INCAST];
static size_t inc_seen_at_first[INCAST];
static int inc_first = -1;

static void incast_cb(void *arg, int status, ferry_buf *resp)
{
	int i = (int)(intptr_t)arg;
	(void)resp;
	inc_done[i] = status == 0 ? 1 : status;
	if (inc_first < 0) {
		inc_first = i;
		for (int k = 0; k < INCAST; k++)
			inc_seen_at_first[k] = ferry_buf_len(&inc_resp[k]);
		inc_seen_at_first[i] = 1u << 20;
	}
}

static void test_incast(void **st)
{
	(void)st;
	char loc[512];
	pid_t pid = start_server("fast+udp:host=127.0.0.1,port=0", loc, sizeof(loc));
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	ferry_session *s[INCAST];
	ferry_buf req[INCAST];
	for (int i = 0; i < INCAST; i++) {
		assert_int_equal(ferry_session_open(ctx, loc, &s[i]), 0);
		ferry_buf_init(&req[i]);
		ferry_buf_init(&inc_resp[i]);
		uint32_t size = 1u << 20;
		uint64_t seed = (uint64_t)i;
		ferry_buf_append(&req[i], &size, 4);
		ferry_buf_append(&req[i], &seed, 8);
	}
	/* open every session first, so the reads start together */
	ferry_buf q, r;
	ferry_buf_init(&q);
	ferry_buf_init(&r);
	ferry_buf_append(&q, "x", 1);
	for (int i = 0; i < INCAST; i++) {
		assert_int_equal(ferry_call_sync(s[i], TEST_OP_ECHO, &q, &r, 2000000), 0);
		ferry_buf_reset(&r);
	}
	assert_int_equal(ferry_metrics_remote_start(s[0]), 0);
	uint64_t t0 = now_us();
	for (int i = 0; i < INCAST; i++)
		assert_int_equal(ferry_call(s[i], TEST_OP_SIZED, &req[i], &inc_resp[i],
		                            20000000, incast_cb, (void *)(intptr_t)i),
		                 0);
	int pending = INCAST;
	while (pending > 0 && now_us() - t0 < 20000000) {
		ferry_ctx_poll(ctx, 1000);
		pending = 0;
		for (int i = 0; i < INCAST; i++)
			pending += inc_done[i] == 0;
	}
	uint64_t took = now_us() - t0;
	assert_int_equal(pending, 0);
	for (int i = 0; i < INCAST; i++) {
		assert_int_equal(inc_done[i], 1);
		assert_int_equal(tu_check(&inc_resp[i], 1u << 20, (uint64_t)i), -1);
	}
	double mean = 0;
	for (int i = 0; i < INCAST; i++)
		mean += (double)inc_seen_at_first[i] / INCAST;
	/* A starved session sits near 0 bytes. The bound is a fifth of the
	 * mean, not a third: under ASan on a loaded 2-core machine the session
	 * whose call went out first once had 61,681 B against a 65,536 B third. */
	for (int i = 0; i < INCAST; i++)
		if ((double)inc_seen_at_first[i] < mean / 5)
			fail_msg(
			        "session %d had %zu bytes when the first finished (mean %.0f)",
			        i, inc_seen_at_first[i], mean);
	assert_int_equal(ferry_metrics_remote_stop(s[0]), 0);
	ferry_buf dump;
	ferry_buf_init(&dump);
	assert_int_equal(ferry_metrics_remote_dump(s[0], NULL, &dump), 0);
	size_t dl = ferry_buf_len(&dump);
	char *text = strndup(ferry_buf_range(&dump, 0, dl), dl);
	double sent = 0, retx = 0;
	const char *keys[] = {"fast.retx.timeout", "fast.retx.fast", "fast.retx.probe",
	                      "fast.retx.dup_request"};
	json_object *jd = tu_json_parse(text, dl, NULL);
	uint64_t v = 0;
	assert_non_null(jd);
	assert_int_equal(tu_json_counter(jd, "fast.data_sent", &v), 0);
	sent = (double)v;
	for (int k = 0; k < 4; k++)
		if (tu_json_counter(jd, keys[k], &v) == 0)
			retx += (double)v;
	json_object_put(jd);
	if (getenv("FERRY_TEST_DUMP") != NULL)
		fprintf(stderr, "%s\n", text);
	printf("# incast: %d x 1 MiB in %.1f ms (%.0f MB/s aggregate), server data packets %.0f, "
	       "retransmitted %.0f (%.2f%%)\n",
	       INCAST, took / 1e3, INCAST * 1048576.0 / took, sent, retx,
	       100 * retx / sent);
	/* No retransmission storm: the port's credit keeps the burst inside
	 * what the receivers hold, so what is resent is the odd early RTO.
	 * Slowed builds (sanitizers: FERRY_TIMEOUT_MULT > 1) see more of
	 * those (10.5% once under ASan on an idle machine), so the bound
	 * scales with the slowdown, up to a third. */
	const char *mult = getenv("FERRY_TIMEOUT_MULT");
	double bound = 0.1 * (mult != NULL && atof(mult) > 1 ? atof(mult) : 1);
	bound = bound < 0.34 ? bound : 0.34;
	free(text);
	if (retx >= bound * sent)
		fail_msg("incast: %.0f of %.0f data packets retransmitted (bound %.0f%%)",
		         retx, sent, 100 * bound);
	ferry_buf_fini(&dump);
	for (int i = 0; i < INCAST; i++) {
		ferry_buf_fini(&req[i]);
		ferry_buf_fini(&inc_resp[i]);
	}
	ferry_buf_fini(&q);
	ferry_buf_fini(&r);
	ferry_ctx_destroy(ctx);
	assert_int_equal(tu_stop_server(pid), 0);
}

/* Port credit: a one-fragment reply is never acked by itself (the next
 * request on its channel does that), so it must not keep holding the
 * server port's credit. 96 sessions, each left idle after one small echo,
 * are three times the credit of a udp port (2 MiB of 64 KiB fragments);
 * then 1 MiB reads, alone and all at once, must still be served. */
#define IDLE_SESSIONS 96
static int idle_done[IDLE_SESSIONS];

static void idle_cb(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	idle_done[(intptr_t)arg] = status == 0 ? 1 : status;
}

static void test_idle_credit(void **st)
{
	(void)st;
	char loc[512];
	pid_t pid = start_server("fast+udp:host=127.0.0.1,port=0", loc, sizeof(loc));
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	static ferry_session *s[IDLE_SESSIONS];
	static ferry_buf resp[IDLE_SESSIONS];
	ferry_buf q, r, big;
	ferry_buf_init(&q);
	ferry_buf_init(&r);
	ferry_buf_init(&big);
	ferry_buf_append(&q, "x", 1);
	uint32_t size = 1u << 20;
	uint64_t seed = 7;
	ferry_buf_append(&big, &size, 4);
	ferry_buf_append(&big, &seed, 8);
	for (int i = 0; i < IDLE_SESSIONS; i++) {
		assert_int_equal(ferry_session_open(ctx, loc, &s[i]), 0);
		assert_int_equal(ferry_call_sync(s[i], TEST_OP_ECHO, &q, &r, 2000000), 0);
		assert_int_equal(ferry_buf_len(&r), 1);
		ferry_buf_reset(&r);
		ferry_buf_init(&resp[i]);
	}
	/* every channel idle after a one-fragment reply: one 1 MiB read */
	assert_int_equal(ferry_call_sync(s[0], TEST_OP_SIZED, &big, &r, 3000000), 0);
	assert_int_equal(tu_check(&r, 1u << 20, 7), -1);
	ferry_buf_reset(&r);
	/* and every session reading 1 MiB at once, twice */
	for (int round = 0; round < 2; round++) {
		memset(idle_done, 0, sizeof(idle_done));
		for (int i = 0; i < IDLE_SESSIONS; i++)
			assert_int_equal(ferry_call(s[i], TEST_OP_SIZED, &big, &resp[i],
			                            20000000, idle_cb,
			                            (void *)(intptr_t)i),
			                 0);
		int pending = IDLE_SESSIONS;
		uint64_t t0 = now_us();
		while (pending > 0 && now_us() - t0 < 25000000) {
			ferry_ctx_poll(ctx, 1000);
			pending = 0;
			for (int i = 0; i < IDLE_SESSIONS; i++)
				pending += idle_done[i] == 0;
		}
		for (int i = 0; i < IDLE_SESSIONS; i++) {
			if (idle_done[i] != 1)
				fail_msg("round %d session %d: %s", round, i,
				         idle_done[i] == 0
				                 ? "no answer"
				                 : ferry_err_name(idle_done[i]));
			assert_int_equal(tu_check(&resp[i], 1u << 20, 7), -1);
			ferry_buf_reset(&resp[i]);
		}
		/* small echoes again: one-fragment replies on every channel */
		for (int i = 0; i < IDLE_SESSIONS; i++) {
			assert_int_equal(
			        ferry_call_sync(s[i], TEST_OP_ECHO, &q, &r, 2000000), 0);
			ferry_buf_reset(&r);
		}
	}
	assert_int_equal(
	        ferry_call_sync(s[IDLE_SESSIONS - 1], TEST_OP_SIZED, &big, &r, 3000000),
	        0);
	assert_int_equal(tu_check(&r, 1u << 20, 7), -1);
	for (int i = 0; i < IDLE_SESSIONS; i++) {
		ferry_buf_fini(&resp[i]);
		ferry_session_close(s[i]);
	}
	ferry_buf_fini(&q);
	ferry_buf_fini(&r);
	ferry_buf_fini(&big);
	ferry_ctx_destroy(ctx);
	assert_int_equal(tu_stop_server(pid), 0);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	server_exe = argv[1];
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_16mib),
	        cmocka_unit_test(test_restart),
	        cmocka_unit_test(test_idle_expiry),
	        cmocka_unit_test(test_peer_dead),
	        cmocka_unit_test(test_incast),
	        cmocka_unit_test(test_idle_credit),
	        cmocka_unit_test(test_small_mtu),
	        cmocka_unit_test(test_pad_negotiation),
	        cmocka_unit_test(test_fin_ack),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
