/* Stream drivers (tcp, splice) end to end, server in another process
 * (tests/e2e/e2e_server.c).
 *
 * argv: server-exe group listen-locator client-mode server-mode
 *   group "core":  byte-exact echo from 0 B to 64 MiB (the default cap,
 *                  whose next byte is refused), a server with a smaller cap,
 *                  sessions sharing one connection with many calls in
 *                  flight, a peer killed mid-call (in-flight calls fail with
 *                  FERRY_EPEERDEAD at once, the session reconnects to a new
 *                  server on the same port) and a slow reader that must not
 *                  stall the server's other sessions.
 *   group "files": a 64 MiB file region sent and received into a file
 *                  (ferry_call_into_fd): spliced on splice, copied and counted
 *                  on tcp; also at an offset, and into an O_APPEND file,
 *                  which splice refuses (it falls back to copying).
 *   group "zerocopy" (splice): the same with server and client under
 *                  strace: together their read(2)-family calls may return
 *                  under 1% of the file.
 * Every test checks that no loans are outstanding or leaked at close, and
 * every server it stops that its own were all returned.
 *
 * Internal mode (re-exec of this binary under strace):
 *   test_stream --file-client locator src dst len */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/json.h"
#include "../common/testutil.h"

#define MIB               (1u << 20)
#define CALL_TIMEOUT_US   60000000ull        /* big transfers under ASan take a while */
#define SLOW_CALL_US      2000000u           /* handler time of the peer-death calls */
#define PEERDEAD_MAX_US   1000000ull         /* in-flight calls must fail within this */
#define FILE_BYTES        (64u * MIB)        /* the file the files group moves */
#define READ_BUDGET_BYTES (FILE_BYTES / 100) /* "under 1% copied" */
#define TRACED_CALLS      "read,readv,recvfrom,recvmsg,recvmmsg,pread64,preadv,preadv2"

static const char *server_exe, *listen_loc, *client_mode, *server_mode;
static char self_exe[4096];
static char driver[32];      /* "tcp" or "splice" */
static char server_loc[512]; /* the shared server of the core group */
static pid_t server_pid = -1;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int poll_mode(const char *mode)
{
	return strcmp(mode, "block") == 0 ? FERRY_POLL_BLOCK : FERRY_POLL_SPIN;
}

static ferry_ctx *ctx_new(const char *mode)
{
	ferry_ctx_opts o = {.poll_mode = poll_mode(mode), .cpu = -1};
	ferry_ctx *ctx = NULL;
	assert_int_equal(ferry_ctx_create(&o, &ctx), 0);
	return ctx;
}

static uint64_t stat_or(ferry_ctx *ctx, const char *name, uint64_t dflt)
{
	uint64_t v;
	return ferry_metrics_get(ctx, name, &v) == 0 ? v : dflt;
}

/* "<driver>.name", in a buffer the caller provides. */
static const char *drv_name(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s.%s", driver, name);
	return out;
}

static uint64_t drv_stat(ferry_ctx *ctx, const char *name)
{
	char full[128];
	drv_name(full, sizeof(full), name);
	uint64_t v = 0;
	if (ferry_metrics_get(ctx, full, &v) != 0)
		fail_msg("no counter %s", full);
	return v;
}

/* Every buffer is reset: no loan of the driver may be out. Then close the
 * sessions; once their ports are gone nothing may have leaked. */
static void close_checked(ferry_ctx *ctx, ferry_session **s, int n)
{
	assert_int_equal(drv_stat(ctx, "loans_out"), 0);
	for (int i = 0; i < n; i++)
		ferry_session_close(s[i]);
	ferry_ctx_poll(ctx, 0); /* sweeps the closed ports */
	uint64_t leaked = 1;
	assert_int_equal(ferry_metrics_get(ctx, "rpc.loans_leaked", &leaked), 0);
	assert_int_equal(leaked, 0);
	ferry_ctx_destroy(ctx);
}

/* "drv:host=H,port=P" of a bound locator, without the extra keys a
 * server's locator carries (maxmsg=, sndbuf=). */
static void base_loc(const char *bound, const char *extra, char *out, size_t len)
{
	const char *port = strstr(bound, "port=");
	assert_non_null(port);
	size_t n = strcspn(port, ",");
	snprintf(out, len, "%.*s%s", (int)(port + n - bound), bound, extra);
}

static int port_of(const char *loc)
{
	const char *p = strstr(loc, "port=");
	assert_non_null(p);
	return atoi(p + 5);
}

static pid_t start_server(const char *listen, char *loc, size_t len)
{
	pid_t pid = tu_spawn_server(server_exe, listen, server_mode, loc, len);
	if (pid < 0 && strstr(listen, "::1") != NULL)
		tu_skip_or_fail("ipv6", "no IPv6 loopback here");
	assert_true(pid > 0);
	return pid;
}

static void stop_server(pid_t pid)
{
	assert_int_equal(tu_stop_server(pid), 0); /* 5: it leaked loans */
}

/* One counter of the server's context, over its built-in metrics service. */
static uint64_t remote_stat(ferry_session *s, const char *name)
{
	ferry_buf out;
	ferry_buf_init(&out);
	assert_int_equal(ferry_metrics_remote_dump(s, NULL, &out), 0);
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

/* Core group -----------------------------------------------------------------*/
static int core_setup(void **state)
{
	(void)state;
	server_pid = tu_spawn_server(server_exe, listen_loc, server_mode, server_loc,
	                             sizeof(server_loc));
	if (server_pid < 0 && strstr(listen_loc, "::1") != NULL)
		tu_skip_or_fail("ipv6", "no IPv6 loopback here");
	return server_pid > 0 ? 0 : -1;
}

static int core_teardown(void **state)
{
	(void)state;
	return tu_stop_server(server_pid) == 0 ? 0 : -1;
}

static void test_echo_sizes(void **st)
{
	(void)st;
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, server_loc, &s), 0);
	echo_n(s, 0, 2000, 1);
	echo_n(s, 1, 2000, 2);
	echo_n(s, 4096, 1000, 3);
	/* around the driver's 256 KiB receive block */
	echo_n(s, (256u << 10) - 1, 8, 4);
	echo_n(s, 256u << 10, 8, 5);
	echo_n(s, (256u << 10) + 1, 8, 6);
	echo_n(s, MIB, 64, 7);
	close_checked(ctx, &s, 1);
}

static void not_called_cb(void *arg, int status, ferry_buf *resp)
{
	(void)status;
	(void)resp;
	*(int *)arg = 1;
}

/* 16 MiB a few times, then exactly the default cap; one byte more is
 * refused by ferry_call itself (no callback, the caller keeps req). A
 * response over the cap is refused by the server. */
static void test_echo_large(void **st)
{
	(void)st;
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, server_loc, &s), 0);
	echo_n(s, 16u * MIB, 3, 100);
	echo_n(s, FERRY_MSG_MAX_BYTES_DEFAULT, 1, 200);

	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	size_t over = (size_t)FERRY_MSG_MAX_BYTES_DEFAULT + 1;
	memset(ferry_buf_alloc(&req, over), 0x5a, over);
	int called = 0;
	assert_int_equal(ferry_call(s, TEST_OP_ECHO, &req, &resp, CALL_TIMEOUT_US,
	                            not_called_cb, &called),
	                 FERRY_ETOOBIG);
	ferry_ctx_poll(ctx, 0);
	assert_int_equal(called, 0);
	assert_int_equal(ferry_buf_len(&req), over);

	/* A 12-byte request asking for cap + 1 bytes back. */
	ferry_buf_reset(&req);
	uint32_t n = (uint32_t)over;
	uint64_t seed = 9;
	ferry_buf_append(&req, &n, 4);
	ferry_buf_append(&req, &seed, 8);
	assert_int_equal(ferry_call_sync(s, TEST_OP_SIZED, &req, &resp, CALL_TIMEOUT_US),
	                 FERRY_ETOOBIG);
	assert_int_equal(ferry_buf_len(&resp), 0);
	/* The connection survives both. */
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	echo_n(s, 1000, 3, 300);
	close_checked(ctx, &s, 1);
}

/* A server capped at 1000 bytes answers a 2000-byte request with
 * FERRY_ETOOBIG (the client's own cap is the default) and keeps serving. */
static void test_server_maxmsg(void **st)
{
	(void)st;
	char listen[512], bound[512], loc[512];
	snprintf(listen, sizeof(listen), "%s,maxmsg=1000", listen_loc);
	pid_t pid = start_server(listen, bound, sizeof(bound));
	base_loc(bound, "", loc, sizeof(loc));
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	for (int round = 0; round < 3; round++) {
		ferry_buf_reset(&req);
		tu_fill(ferry_buf_alloc(&req, 2000), 2000, 42);
		assert_int_equal(
		        ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, CALL_TIMEOUT_US),
		        FERRY_ETOOBIG);
		assert_int_equal(ferry_buf_len(&resp), 0);
		echo_n(s, 1000, 2, 43); /* exactly the cap passes */
	}
	assert_int_equal(stat_or(ctx, "stream.calls_peerdead", 1), 0);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	close_checked(ctx, &s, 1);
	stop_server(pid);
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

/* Sessions to one locator share one connection; with many calls in flight
 * on each, every response still reaches its own call, byte-exact. */
static void test_pipelined_sessions(void **st)
{
	(void)st;
	enum { SESSIONS = 4, CALLS = 96 };
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s[SESSIONS];
	for (int i = 0; i < SESSIONS; i++)
		assert_int_equal(ferry_session_open(ctx, server_loc, &s[i]), 0);
	struct slot *p = calloc(SESSIONS * CALLS, sizeof(*p));
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < SESSIONS * CALLS; i++) {
			ferry_buf_init(&p[i].req);
			ferry_buf_init(&p[i].resp);
			p[i].done = 0;
			p[i].seed = 5000 + (uint64_t)round * 1000 + (uint64_t)i;
			p[i].len = (size_t)(i * 7919 + round * 31) % 300000;
			if (i % 10 == 0)
				p[i].len = 0;
			if (p[i].len > 0)
				tu_fill(ferry_buf_alloc(&p[i].req, p[i].len), p[i].len,
				        p[i].seed);
			/* interleave the sessions call by call */
			assert_int_equal(ferry_call(s[i % SESSIONS], TEST_OP_ECHO,
			                            &p[i].req, &p[i].resp,
			                            CALL_TIMEOUT_US, slot_cb, &p[i]),
			                 0);
		}
		uint64_t t_end = now_us() + 30000000;
		int done = 0;
		while (done < SESSIONS * CALLS && now_us() < t_end) {
			ferry_ctx_poll(ctx, 1000);
			done = 0;
			for (int i = 0; i < SESSIONS * CALLS; i++)
				done += p[i].done;
		}
		for (int i = 0; i < SESSIONS * CALLS; i++) {
			if (p[i].done != 1 || p[i].status != 0)
				fail_msg("round %d call %d (%zu B): done %d, %s", round,
				         i, p[i].len, p[i].done,
				         ferry_err_name(p[i].status));
			ferry_buf_fini(&p[i].req);
			ferry_buf_fini(&p[i].resp);
		}
	}
	free(p);
	assert_int_equal(drv_stat(ctx, "connects"), 1);
	assert_int_equal(stat_or(ctx, "stream.conns_up", 0), 1);
	close_checked(ctx, s, SESSIONS);
}

/* SIGKILL the server with calls in flight: each fails with FERRY_EPEERDEAD
 * at once (not at its deadline); a server started again on the same port
 * serves the same session (reconnect). */
static void test_peer_killed(void **st)
{
	(void)st;
	enum { N = 6 };
	char bound[512], again[512];
	pid_t pid = start_server(listen_loc, bound, sizeof(bound));
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, bound, &s), 0);
	echo_n(s, 10, 1, 1); /* connected */

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
	/* Let the requests reach the handlers. */
	for (uint64_t t = now_us() + 200000; now_us() < t;)
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
		assert_int_equal(ferry_buf_len(&p[i].resp), 0);
		ferry_buf_fini(&p[i].req);
		ferry_buf_fini(&p[i].resp);
	}
	if (dt >= PEERDEAD_MAX_US)
		fail_msg("in-flight calls took %llu us to fail", (unsigned long long)dt);
	assert_true(stat_or(ctx, "stream.calls_peerdead", 0) >= N);
	int st_kill = 0;
	assert_int_equal(waitpid(pid, &st_kill, 0), pid);
	assert_true(WIFSIGNALED(st_kill));

	/* Nobody listens: a call fails, it does not hang. */
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_append(&req, "x", 1);
	int rc = ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, CALL_TIMEOUT_US);
	assert_int_equal(rc, FERRY_EPEERDEAD);

	/* A new server on the same port (the old socket may linger briefly). */
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
	assert_int_equal(port_of(again), port_of(bound));
	echo_n(s, 10, 5, 2);
	echo_n(s, MIB, 2, 3);
	assert_true(stat_or(ctx, "stream.reconnects", 0) >= 1);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	close_checked(ctx, &s, 1);
	stop_server(pid);
}

/* Backpressure -----------------------------------------------------------------
 * The server sends through 4 KiB socket buffers to a child that reads
 * slowly (4 KiB receive buffer, 1 ms nap between polls) and asks for
 * several big responses: they back up in the server, which must keep
 * serving this process's small calls meanwhile. */
#define BP_CALLS 3
static const uint32_t bp_sizes[BP_CALLS] = {8u * MIB, 8u * MIB + 4097, 9u * MIB + 1};

static int bp_child(const char *loc, int report)
{
	ferry_ctx *ctx;
	ferry_session *s;
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_SPIN, .cpu = -1};
	if (ferry_ctx_create(&o, &ctx) != 0 || ferry_session_open(ctx, loc, &s) != 0)
		return 1;
	struct slot p[BP_CALLS];
	for (int i = 0; i < BP_CALLS; i++) {
		ferry_buf_init(&p[i].req);
		ferry_buf_init(&p[i].resp);
		p[i].done = 0;
		p[i].seed = 7000 + (uint64_t)i;
		p[i].len = bp_sizes[i];
		uint32_t n = bp_sizes[i];
		ferry_buf_append(&p[i].req, &n, 4);
		ferry_buf_append(&p[i].req, &p[i].seed, 8);
		if (ferry_call(s, TEST_OP_SIZED, &p[i].req, &p[i].resp, 120000000,
		               slot_cb, &p[i]) != 0)
			return 1;
	}
	bool started = false;
	int done = 0;
	char k, recv_bytes[64];
	drv_name(recv_bytes, sizeof(recv_bytes), "recv_bytes");
	uint64_t polls = 0;
	while (done < BP_CALLS) {
		ferry_ctx_poll(ctx, 0);
		polls++;
		usleep(1000);
		if (!started && stat_or(ctx, recv_bytes, 0) > MIB) {
			started = true;
			k = 'S';
			if (write(report, &k, 1) != 1)
				return 1;
		}
		done = 0;
		for (int i = 0; i < BP_CALLS; i++)
			done += p[i].done;
	}
	int bad = 0;
	for (int i = 0; i < BP_CALLS; i++) {
		if (p[i].status != 0) {
			fprintf(stderr, "slow reader: call %d (%zu B): %s\n", i, p[i].len,
			        ferry_err_name(p[i].status));
			bad = 1;
		}
		ferry_buf_fini(&p[i].req);
		ferry_buf_fini(&p[i].resp);
	}
	char name[64];
	uint64_t loans = stat_or(ctx, drv_name(name, sizeof(name), "loans_out"), 1);
	uint64_t leaked = 1;
	ferry_session_close(s);
	ferry_ctx_poll(ctx, 0);
	ferry_metrics_get(ctx, "rpc.loans_leaked", &leaked);
	ferry_ctx_destroy(ctx);
	if (loans != 0 || leaked != 0) {
		fprintf(stderr, "slow reader: loans out %llu, leaked %llu\n",
		        (unsigned long long)loans, (unsigned long long)leaked);
		bad = 1;
	}
	fprintf(stderr, "slow reader: done after %llu polls\n",
	        (unsigned long long)polls);
	k = 'D';
	if (write(report, &k, 1) != 1)
		bad = 1;
	return bad;
}

/* Wait up to timeout_ms for a byte on fd; 0 if none came. */
static char wait_byte(int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char k = 0;
	if (poll(&pfd, 1, timeout_ms) == 1 && read(fd, &k, 1) != 1)
		k = 0;
	return k;
}

static void test_backpressure(void **st)
{
	(void)st;
	enum { ECHOS = 2000 };
	char listen[512], bound[512], loc[512], slow_loc[512];
	snprintf(listen, sizeof(listen), "%s,sndbuf=4096", listen_loc);
	pid_t pid = start_server(listen, bound, sizeof(bound));
	base_loc(bound, "", loc, sizeof(loc));
	base_loc(bound, ",rcvbuf=4096", slow_loc, sizeof(slow_loc));
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	/* Fork before this process has a context: the child makes its own. */
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(fds[0]);
		_exit(bp_child(slow_loc, fds[1]));
	}
	close(fds[1]);
	char k = wait_byte(fds[0], 60000);
	if (k != 'S') {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		fail_msg("slow reader never started receiving (%c)", k ? k : '-');
	}
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	uint64_t t0 = now_us();
	echo_n(s, 100, ECHOS, 11);
	/* Larger than the server's socket buffer: several writes each (and
	 * delayed acks: ~40 ms per call). */
	echo_n(s, 64u << 10, 5, 12);
	uint64_t dt = now_us() - t0;
	/* All of them while the slow reader is still at it. */
	k = wait_byte(fds[0], 0);
	char name[64];
	uint64_t blocked = remote_stat(s, drv_name(name, sizeof(name), "tx_blocked"));
	uint64_t backlog =
	        remote_stat(s, drv_name(name, sizeof(name), "tx_backlog_bytes"));
	fprintf(stderr,
	        "backpressure: %d echos in %llu us, server tx_blocked %llu, "
	        "backlog %llu B\n",
	        ECHOS + 5, (unsigned long long)dt, (unsigned long long)blocked,
	        (unsigned long long)backlog);
	close_checked(ctx, &s, 1);
	int status = -1;
	if (k == 'D') {
		waitpid(child, &status, 0);
		fail_msg("the slow reader finished before the fast calls did (%llu us)",
		         (unsigned long long)dt);
	}
	assert_true(blocked > 0);
	assert_true(backlog > MIB);
	k = wait_byte(fds[0], 120000);
	close(fds[0]);
	if (k != 'D')
		kill(child, SIGKILL);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(k, 'D');
	stop_server(pid);
}

/* Files group --------------------------------------------------------------------*/
static char src_path[256], dst_path[256];

static void file_request(ferry_buf *req, uint64_t off, uint64_t len, const char *path)
{
	ferry_buf_append(req, &off, 8);
	ferry_buf_append(req, &len, 8);
	ferry_buf_append(req, path, strlen(path));
}

/* Compare path's first len bytes with the pattern of the source file. */
static long file_check(const char *path, off_t at, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	if ((uint64_t)st.st_size != (uint64_t)at + len) {
		close(fd);
		fail_msg("%s: %lld bytes, want %llu", path, (long long)st.st_size,
		         (unsigned long long)at + len);
	}
	uint8_t *got = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(got != MAP_FAILED);
	uint8_t *want = malloc(len);
	tu_fill(want, len, FILE_BYTES);
	long bad = -1;
	if (memcmp(got + at, want, len) != 0)
		for (size_t i = 0; i < len; i++)
			if (got[at + i] != want[i]) {
				bad = (long)i;
				break;
			}
	for (off_t i = 0; bad < 0 && i < at; i++)
		if (got[i] != 0xee)
			bad = -2; /* the bytes before the offset were touched */
	munmap(got, (size_t)st.st_size);
	free(want);
	close(fd);
	return bad;
}

static int files_setup(void **state)
{
	(void)state;
	snprintf(src_path, sizeof(src_path), "/dev/shm/ferry_stream_src.%d",
	         (int)getpid());
	snprintf(dst_path, sizeof(dst_path), "/dev/shm/ferry_stream_dst.%d",
	         (int)getpid());
	int fd = open(src_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		tu_skip_or_fail("shm", "cannot create a file in /dev/shm");
	uint8_t *p = malloc(FILE_BYTES);
	tu_fill(p, FILE_BYTES, FILE_BYTES);
	ssize_t w = write(fd, p, FILE_BYTES);
	free(p);
	close(fd);
	return w == (ssize_t)FILE_BYTES ? 0 : -1;
}

static int files_teardown(void **state)
{
	(void)state;
	unlink(src_path);
	unlink(dst_path);
	return 0;
}

/* Sum of the (positive) results of the calls in an strace log. */
static uint64_t strace_read_bytes(const char *path, int *lines)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[8192];
	uint64_t sum = 0;
	*lines = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "<unfinished ...>") != NULL ||
		    strstr(line, "+++ ") != NULL || strstr(line, "--- ") != NULL)
			continue;
		char *eq = NULL;
		for (char *q = strstr(line, ") = "); q != NULL; q = strstr(q + 1, ") = "))
			eq = q;
		if (eq == NULL)
			continue;
		long long r = strtoll(eq + 4, NULL, 10);
		(*lines)++;
		if (r > 0)
			sum += (uint64_t)r;
	}
	fclose(f);
	return sum;
}

/* strace is there and may trace here (ptrace can be forbidden). */
static bool strace_works(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execlp("strace", "strace", "-f", "-qq", "-e", "trace=read", "-o",
		       "/dev/null", "true", (char *)NULL);
		_exit(127);
	}
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return false;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* strace and LeakSanitizer both want ptrace: no leak check under strace. */
static void no_lsan(void)
{
	const char *old = getenv("ASAN_OPTIONS");
	char opts[1024];
	snprintf(opts, sizeof(opts), "%s%sdetect_leaks=0", old ? old : "",
	         old ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
}

/* The pid of parent's only child (the traced server under strace). */
static pid_t child_of(pid_t parent)
{
	DIR *d = opendir("/proc");
	pid_t found = -1;
	struct dirent *e;
	while (d != NULL && found < 0 && (e = readdir(d)) != NULL) {
		char path[300], buf[512];
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		/* "pid (comm) state ppid ...": comm may hold anything */
		char *rp = fgets(buf, sizeof(buf), f) != NULL ? strrchr(buf, ')') : NULL;
		fclose(f);
		int ppid = 0;
		if (rp != NULL && sscanf(rp + 1, " %*c %d", &ppid) == 1 &&
		    ppid == (int)parent)
			found = (pid_t)atoi(e->d_name);
	}
	if (d != NULL)
		closedir(d);
	return found;
}

/* Without strace there is nothing to measure with: skip before any file
 * is made (the skip exits). */
static int zerocopy_setup(void **state)
{
	if (!strace_works())
		tu_skip_or_fail("strace", "no strace, or it cannot trace here: "
		                          "cannot count the bytes read");
	return files_setup(state);
}

/* The client half of the zero-copy test, run as its own traced process:
 * fetch the file into dst with ferry_call_into_fd; exit 0 when every byte
 * went through splice and nothing leaked. Verification of the bytes is the
 * parent's (reading them here would count as reads). */
static int file_client(const char *loc, const char *src, const char *dst, uint64_t len)
{
	ferry_ctx *ctx;
	ferry_session *s;
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	if (ferry_ctx_create(&o, &ctx) != 0 || ferry_session_open(ctx, loc, &s) != 0)
		return 2;
	int fd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return 3;
	ferry_buf req;
	ferry_buf_init(&req);
	ferry_buf_append(&req, &(uint64_t){0}, 8);
	ferry_buf_append(&req, &len, 8);
	ferry_buf_append(&req, src, strlen(src));
	ferry_fd_sink sink = {.fd = fd, .off = 0};
	int rc = ferry_call_into_fd_sync(s, TEST_OP_FILE, &req, &sink, CALL_TIMEOUT_US);
	ferry_buf_fini(&req);
	close(fd);
	uint64_t fallbacks = stat_or(ctx, "splice.splice_fallbacks", 1);
	uint64_t sink_copy = stat_or(ctx, "splice.rx_sink_copy_bytes", 1);
	uint64_t spliced = stat_or(ctx, "splice.splice_bytes", 0);
	uint64_t loans = stat_or(ctx, "splice.loans_out", 1);
	ferry_session_close(s);
	ferry_ctx_poll(ctx, 0);
	uint64_t leaked = stat_or(ctx, "rpc.loans_leaked", 1);
	ferry_ctx_destroy(ctx);
	fprintf(stderr,
	        "file client: %s, written %llu, copied %llu, spliced %llu, fallbacks "
	        "%llu, "
	        "sink copies %llu, loans out %llu, leaked %llu\n",
	        ferry_err_name(rc), (unsigned long long)sink.written,
	        (unsigned long long)sink.copied, (unsigned long long)spliced,
	        (unsigned long long)fallbacks, (unsigned long long)sink_copy,
	        (unsigned long long)loans, (unsigned long long)leaked);
	return rc == 0 && sink.written == len && sink.copied == 0 && spliced >= len &&
	                       fallbacks == 0 && sink_copy == 0 && loans == 0 &&
	                       leaked == 0
	               ? 0
	               : 1;
}

/* 64 MiB from a tmpfs file to a tmpfs file: the server sends it with
 * sendfile, the client splices it into place. Both run under strace; what
 * the read(2) family returned in both must stay under 1% of the file. */
static void test_splice_zero_copy(void **st)
{
	(void)st;
	if (strcmp(driver, "splice") != 0)
		skip();
	char slog[300], clog[300], bound[512], loc[512], len_s[32];
	snprintf(slog, sizeof(slog), "/dev/shm/ferry_stream_strace_srv.%d",
	         (int)getpid());
	snprintf(clog, sizeof(clog), "/dev/shm/ferry_stream_strace_cli.%d",
	         (int)getpid());
	snprintf(len_s, sizeof(len_s), "%u", FILE_BYTES);
	no_lsan();
	char *sargv[] = {"strace",
	                 "-f",
	                 "-qq",
	                 "-e",
	                 "trace=" TRACED_CALLS,
	                 "-o",
	                 slog,
	                 (char *)server_exe,
	                 (char *)listen_loc,
	                 "block",
	                 NULL};
	pid_t tracer = tu_spawn_argv(sargv, bound, sizeof(bound));
	assert_true(tracer > 0);
	base_loc(bound, "", loc, sizeof(loc));

	pid_t cpid = fork();
	assert_true(cpid >= 0);
	if (cpid == 0) {
		char *cargv[] = {"strace",
		                 "-f",
		                 "-qq",
		                 "-e",
		                 "trace=" TRACED_CALLS,
		                 "-o",
		                 clog,
		                 self_exe,
		                 "--file-client",
		                 loc,
		                 src_path,
		                 dst_path,
		                 len_s,
		                 NULL};
		execvp(cargv[0], cargv);
		_exit(127);
	}
	int cst = -1;
	assert_int_equal(waitpid(cpid, &cst, 0), cpid);
	assert_true(WIFEXITED(cst));
	assert_int_equal(WEXITSTATUS(cst), 0);

	/* The server's side of the story, from an untraced client. */
	ferry_ctx *ctx = ctx_new("block");
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	uint64_t sent = remote_stat(s, "splice.sendfile_bytes");
	uint64_t copied = remote_stat(s, "splice.tx_file_copy_bytes");
	assert_true(sent >= FILE_BYTES);
	assert_int_equal(copied, 0);
	close_checked(ctx, &s, 1);

	pid_t srv = child_of(tracer);
	assert_true(srv > 0);
	kill(srv, SIGTERM);
	int sst = -1;
	assert_int_equal(waitpid(tracer, &sst, 0), tracer);
	assert_true(WIFEXITED(sst));
	assert_int_equal(WEXITSTATUS(sst), 0); /* strace passes on the server's */

	int slines, clines;
	uint64_t sread = strace_read_bytes(slog, &slines);
	uint64_t cread = strace_read_bytes(clog, &clines);
	fprintf(stderr,
	        "zero copy: server read %llu B in %d calls, client %llu B in %d calls\n",
	        (unsigned long long)sread, slines, (unsigned long long)cread, clines);
	unlink(slog);
	unlink(clog);
	assert_true(slines > 0 && clines > 0); /* the requests were seen: tracing works */
	assert_true(sread + cread < READ_BUDGET_BYTES);
	long bad = file_check(dst_path, 0, FILE_BYTES);
	if (bad != -1)
		fail_msg("%s differs from the source at %ld", dst_path, bad);
}

/* The same file into an fd by this process: on tcp every body byte is
 * copied (and said so); on splice the bytes are spliced. Also at an offset
 * (pwrite-like), and into an O_APPEND file at its position, which splice
 * refuses: the driver falls back to copying and counts it. */
static void fetch_into(ferry_session *s, int fd, int64_t off, uint64_t len,
                       ferry_fd_sink *sink)
{
	ferry_buf req;
	ferry_buf_init(&req);
	file_request(&req, 0, len, src_path);
	*sink = (ferry_fd_sink){.fd = fd, .off = off};
	int rc = ferry_call_into_fd_sync(s, TEST_OP_FILE, &req, sink, CALL_TIMEOUT_US);
	if (rc != 0)
		fail_msg("into fd: %s", ferry_err_name(rc));
	assert_int_equal(sink->written, len);
	ferry_buf_fini(&req);
}

static void test_file_into_fd(void **st)
{
	(void)st;
	char bound[512];
	pid_t pid = start_server(listen_loc, bound, sizeof(bound));
	ferry_ctx *ctx = ctx_new(client_mode);
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, bound, &s), 0);
	bool zc = strcmp(driver, "splice") == 0;
	ferry_fd_sink sink;

	int fd = open(dst_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fetch_into(s, fd, 0, FILE_BYTES, &sink);
	close(fd);
	assert_int_equal(file_check(dst_path, 0, FILE_BYTES), -1);
	uint64_t copied = stat_or(ctx, "rpc.sink.copied_bytes", 0);
	if (zc) {
		assert_int_equal(sink.copied, 0);
		assert_int_equal(copied, 0);
		assert_true(drv_stat(ctx, "splice_bytes") >= FILE_BYTES);
		assert_true(remote_stat(s, "splice.sendfile_bytes") >= FILE_BYTES);
		assert_int_equal(remote_stat(s, "splice.tx_file_copy_bytes"), 0);
	} else {
		assert_int_equal(sink.copied, FILE_BYTES);
		assert_int_equal(copied, FILE_BYTES);
		assert_true(drv_stat(ctx, "rx_sink_copy_bytes") >= FILE_BYTES);
		assert_true(remote_stat(s, "tcp.tx_file_copy_bytes") >= FILE_BYTES);
		assert_int_equal(remote_stat(s, "tcp.sendfile_bytes"), 0);
	}

	/* At an offset: the bytes before it stay as they were. */
	fd = open(dst_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	uint8_t pre[4096];
	memset(pre, 0xee, sizeof(pre));
	assert_int_equal(write(fd, pre, sizeof(pre)), sizeof(pre));
	fetch_into(s, fd, sizeof(pre), 3 * MIB + 17, &sink);
	close(fd);
	assert_int_equal(file_check(dst_path, sizeof(pre), 3 * MIB + 17), -1);

	/* O_APPEND, at the fd's position. */
	uint64_t fallbacks0 = drv_stat(ctx, "splice_fallbacks");
	fd = open(dst_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	assert_true(fd >= 0);
	fetch_into(s, fd, -1, 16u * MIB, &sink);
	close(fd);
	assert_int_equal(file_check(dst_path, 0, 16u * MIB), -1);
	assert_true(sink.copied > 0);
	if (zc)
		assert_true(drv_stat(ctx, "splice_fallbacks") > fallbacks0);
	else
		assert_int_equal(sink.copied, 16u * MIB);

	/* A sink that takes no bytes (/dev/full: ENOSPC, on both paths: splice
	 * into it falls back to the copy) fails the call with that error: a
	 * short write never passes as status 0 with bytes missing. */
	fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ferry_buf req;
		ferry_buf_init(&req);
		file_request(&req, 0, MIB, src_path);
		sink = (ferry_fd_sink){.fd = fd, .off = -1};
		int rc = ferry_call_into_fd_sync(s, TEST_OP_FILE, &req, &sink,
		                                 CALL_TIMEOUT_US);
		ferry_buf_fini(&req);
		close(fd);
		if (rc != -ENOSPC)
			fail_msg("into /dev/full: %s, want ENOSPC", ferry_err_name(rc));
	}

	/* The connection is still in step afterwards. */
	echo_n(s, 4096, 10, 77);
	close_checked(ctx, &s, 1);
	stop_server(pid);
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "--file-client") == 0)
		return file_client(argv[2], argv[3], argv[4],
		                   strtoull(argv[5], NULL, 10));
	if (argc < 6) {
		fprintf(stderr,
		        "usage: %s server-exe core|files|zerocopy listen-locator "
		        "client-mode server-mode\n",
		        argv[0]);
		return 2;
	}
	server_exe = argv[1];
	listen_loc = argv[3];
	client_mode = argv[4];
	server_mode = argv[5];
	snprintf(driver, sizeof(driver), "%.*s", (int)strcspn(listen_loc, ":"),
	         listen_loc);
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		return 2;
	self_exe[n] = '\0';
	/* The kill test and a dying slow reader must not take us with them. */
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[2], "core") == 0) {
		const struct CMUnitTest tests[] = {
		        cmocka_unit_test(test_echo_sizes),
		        cmocka_unit_test(test_echo_large),
		        cmocka_unit_test(test_server_maxmsg),
		        cmocka_unit_test(test_pipelined_sessions),
		        cmocka_unit_test(test_peer_killed),
		        cmocka_unit_test(test_backpressure),
		};
		return cmocka_run_group_tests(tests, core_setup, core_teardown);
	}
	if (strcmp(argv[2], "files") == 0) {
		const struct CMUnitTest tests[] = {
		        cmocka_unit_test(test_file_into_fd),
		};
		return cmocka_run_group_tests(tests, files_setup, files_teardown);
	}
	if (strcmp(argv[2], "zerocopy") == 0) {
		/* its own group: without strace the whole program skips */
		const struct CMUnitTest tests[] = {
		        cmocka_unit_test(test_splice_zero_copy),
		};
		return cmocka_run_group_tests(tests, zerocopy_setup, files_teardown);
	}
	fprintf(stderr, "unknown group %s\n", argv[2]);
	return 2;
}
