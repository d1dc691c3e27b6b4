/* The metrics system end to end: a ferry-bench server in another process,
 * START / N application calls / STOP / DUMP from this client. Counters are
 * exact on both sides (N requests and N responses, built-in calls counted
 * apart), the histograms saw N calls, the dump parses and matches the
 * schema of docs/METRICS.md, and the trace ring recorded the calls.
 * argv[1]: the ferry-bench executable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/json.h"
#include "../common/testutil.h"

#define N_CALLS 1000
#define OP_ECHO 18 /* bench/common.h BENCH_OP_ECHO */

static const char *bench_exe;

static pid_t spawn_bench_server(char *loc, size_t len)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl(bench_exe, bench_exe, "server", "--listen",
		      "unreliable+udp:host=127.0.0.1,port=0", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	char ready[64];
	if (fgets(loc, (int)len, f) == NULL || fgets(ready, sizeof(ready), f) == NULL) {
		fclose(f);
		return -1;
	}
	fclose(f);
	loc[strcspn(loc, "\n")] = '\0';
	return pid;
}

static double counter(json_object *dump, const char *name)
{
	uint64_t v = 0;
	return tu_json_counter(dump, name, &v) == 0 ? (double)v : -1;
}

/* The documented schema, checked strictly. Returns the histogram object
 * named hist (or NULL), borrowed from d. */
static json_object *check_schema(json_object *d, const char *hist)
{
	assert_true(json_object_is_type(d, json_type_object));
	assert_int_equal(json_object_object_length(d), 4);
	json_object *ts, *scope, *counters, *hists;
	assert_true(json_object_object_get_ex(d, "ts_ns", &ts));
	assert_true(json_object_is_type(ts, json_type_int));
	/* wall clock in ns: after 2001 */
	assert_true(json_object_get_int64(ts) > 1000000000000000000);
	assert_true(json_object_object_get_ex(d, "scope", &scope));
	assert_true(json_object_is_type(scope, json_type_string));
	assert_true(json_object_object_get_ex(d, "counters", &counters));
	assert_true(json_object_is_type(counters, json_type_object));
	json_object_object_foreach(counters, name, c)
	{
		assert_true(json_object_is_type(c, json_type_int)); /* integers only */
		assert_true(json_object_get_int64(c) >= 0);
		assert_non_null(strchr(name, '.')); /* layer first, dotted */
	}
	assert_true(json_object_object_get_ex(d, "histograms", &hists));
	assert_true(json_object_is_type(hists, json_type_object));
	json_object *want = NULL;
	json_object_object_foreach(hists, hname, h)
	{
		assert_true(json_object_is_type(h, json_type_object));
		json_object *b, *c;
		assert_true(json_object_object_get_ex(h, "bounds", &b));
		assert_true(json_object_object_get_ex(h, "counts", &c));
		assert_true(json_object_is_type(b, json_type_array));
		assert_true(json_object_is_type(c, json_type_array));
		size_t nb = json_object_array_length(b), nc = json_object_array_length(c);
		assert_true(nc == 0 ? nb == 0 : nb == nc + 1);
		for (size_t k = 1; k < nb; k++) {
			json_object *lo = json_object_array_get_idx(b, k - 1);
			json_object *hi = json_object_array_get_idx(b, k);
			assert_true(json_object_get_double(hi) >
			            json_object_get_double(lo));
		}
		if (strcmp(hname, hist) == 0)
			want = h;
	}
	return want;
}

static double hist_total(json_object *h)
{
	double sum = 0;
	json_object *c;
	if (!json_object_object_get_ex(h, "counts", &c))
		return 0;
	for (size_t k = 0; k < json_object_array_length(c); k++)
		sum += json_object_get_double(json_object_array_get_idx(c, k));
	return sum;
}

static void test_start_stop_dump_exact(void **state)
{
	(void)state;
	char loc[512];
	pid_t pid = spawn_bench_server(loc, sizeof(loc));
	assert_true(pid > 0);
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_buf req, resp, dump;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_init(&dump);
	/* Traffic before START must not show in the interval. */
	for (int i = 0; i < 50; i++) {
		ferry_buf_reset(&req);
		ferry_buf_append(&req, "warm", 4);
		assert_int_equal(ferry_call_sync(s, OP_ECHO, &req, &resp, 1000000), 0);
		ferry_buf_reset(&resp);
	}
	ferry_metrics_snap *local0 = ferry_metrics_snapshot(ctx);
	assert_int_equal(ferry_metrics_remote_start(s), 0);
	for (int i = 0; i < N_CALLS; i++) {
		ferry_buf_reset(&req);
		tu_fill(ferry_buf_alloc(&req, 100), 100, (uint64_t)i);
		assert_int_equal(ferry_call_sync(s, OP_ECHO, &req, &resp, 1000000), 0);
		assert_int_equal(tu_check(&resp, 100, (uint64_t)i), -1);
		ferry_buf_reset(&resp);
	}
	assert_int_equal(ferry_metrics_remote_stop(s), 0);
	/* After STOP, more calls: the dump still covers START..STOP only. */
	for (int i = 0; i < 20; i++) {
		ferry_buf_reset(&req);
		assert_int_equal(ferry_call_sync(s, OP_ECHO, &req, &resp, 1000000), 0);
		ferry_buf_reset(&resp);
	}
	assert_int_equal(ferry_metrics_remote_dump(s, "test-scope", &dump), 0);
	size_t len = ferry_buf_len(&dump);
	const char *text = ferry_buf_range(&dump, 0, len);
	assert_true(len > 0 && text[len - 1] == '\n'); /* one line */
	assert_null(memchr(text, '\n', len - 1));
	size_t err = 0;
	json_object *d = tu_json_parse(text, len, &err);
	if (d == NULL)
		fail_msg("dump does not parse at byte %zu: %.*s", err, (int)len, text);
	json_object *h = check_schema(d, "rpc.handler_ns"), *scope;
	assert_true(json_object_object_get_ex(d, "scope", &scope));
	assert_string_equal(json_object_get_string(scope), "test-scope");
	assert_true(counter(d, "rpc.requests_received") == N_CALLS);
	assert_true(counter(d, "rpc.responses_sent") == N_CALLS);
	assert_true(counter(d, "rpc.builtin.requests_received") == 1); /* STOP */
	assert_true(counter(d, "udp.rx_packets") >= N_CALLS);
	assert_true(counter(d, "process.cpu_ns") > 0);
	assert_non_null(h);
	assert_true(hist_total(h) == N_CALLS);
	json_object_put(d);

	/* This side, over the same interval (built-ins excluded). */
	ferry_metrics_snap *local1 = ferry_metrics_snapshot(ctx);
	ferry_metrics_snap_sub(local1, local0);
	uint64_t v = 0;
	assert_int_equal(ferry_metrics_snap_get(local1, "rpc.requests_sent", &v), 0);
	assert_int_equal(v, N_CALLS + 20);
	assert_int_equal(ferry_metrics_snap_get(local1, "rpc.responses_received", &v), 0);
	assert_int_equal(v, N_CALLS + 20);
	assert_int_equal(ferry_metrics_snap_get(local1, "rpc.calls_completed", &v), 0);
	assert_int_equal(v, N_CALLS + 20);
	assert_int_equal(ferry_metrics_snap_get(local1, "rpc.builtin.calls_started", &v),
	                 0);
	assert_int_equal(v, 3);
	char *buf = NULL;
	size_t blen = 0;
	FILE *mf = open_memstream(&buf, &blen);
	assert_true(ferry_metrics_snap_json(local1, "client", mf) > 0);
	fclose(mf);
	d = tu_json_parse(buf, blen, &err);
	assert_non_null(d);
	h = check_schema(d, "rpc.call_ns");
	assert_non_null(h);
	assert_true(hist_total(h) == N_CALLS + 20);
	json_object_put(d);
	free(buf);
	ferry_metrics_snap_free(local0);
	ferry_metrics_snap_free(local1);

	/* The trace ring saw the calls. */
	buf = NULL;
	mf = open_memstream(&buf, &blen);
	assert_int_equal(ferry_trace_dump(ctx, mf), 0);
	fclose(mf);
	assert_non_null(strstr(buf, "call start op=18"));
	assert_non_null(strstr(buf, "call done"));
	free(buf);

	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_buf_fini(&dump);
	ferry_ctx_destroy(ctx);
	assert_int_equal(tu_stop_server(pid), 0);
}

static void gauge_echo(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_rpc_reply(rpc, 0);
}

static uint64_t snap_value(const ferry_metrics_snap *snap, const char *name)
{
	uint64_t v = 0;
	assert_int_equal(ferry_metrics_snap_get(snap, name, &v), 0);
	return v;
}

/* A gauge is a level: over an interval in which a tcp connection went
 * away, tcp.conns is the later level, not a difference (it once read
 * 18446744073709551615). A counter in the same interval is a difference. */
static void test_interval_keeps_gauge_levels(void **state)
{
	(void)state;
	ferry_ctx *ctx;
	ferry_server *srv;
	ferry_session *s;
	char loc[256];
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	assert_int_equal(ferry_server_handle(srv, 200, gauge_echo, NULL), 0);
	assert_int_equal(ferry_server_listen(srv, "tcp:host=127.0.0.1,port=0"), 0);
	assert_true(ferry_server_locator(srv, 0, loc, sizeof(loc)) > 0);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	assert_int_equal(ferry_call_sync(s, 200, &req, &resp, 2000000), 0);
	ferry_metrics_snap *up = ferry_metrics_snapshot(ctx);
	assert_non_null(up);
	assert_int_equal(snap_value(up, "tcp.conns"), 2); /* client's and server's */
	ferry_session_close(s);
	ferry_metrics_snap *down = NULL;
	for (int i = 0; i < 2000; i++) { /* bounded: 2 s */
		ferry_ctx_poll(ctx, 1000);
		ferry_metrics_snap_free(down);
		down = ferry_metrics_snapshot(ctx);
		assert_non_null(down);
		if (snap_value(down, "tcp.conns") == 0)
			break;
	}
	assert_int_equal(snap_value(down, "tcp.conns"), 0);
	uint64_t sent_up = snap_value(up, "tcp.tx_packets");
	uint64_t sent_down = snap_value(down, "tcp.tx_packets");
	ferry_metrics_snap_sub(down, up);
	assert_int_equal(snap_value(down, "tcp.conns"), 0);
	assert_int_equal(snap_value(down, "tcp.tx_backlog_bytes"), 0);
	assert_int_equal(snap_value(down, "tcp.tx_packets"), sent_down - sent_up);
	ferry_metrics_snap_free(up);
	ferry_metrics_snap_free(down);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_server_destroy(srv);
	ferry_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	bench_exe = argv[1];
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_start_stop_dump_exact),
	        cmocka_unit_test(test_interval_keeps_gauge_levels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
