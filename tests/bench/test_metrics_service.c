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

static double counter(const json *dump, const char *name)
{
	const json *c = json_get(json_get(dump, "counters"), name);
	return c != NULL && c->type == JSON_NUM ? c->num : -1;
}

/* The documented schema, checked strictly. Returns the histogram object
 * named hist (or NULL). */
static const json *check_schema(const json *d, const char *hist)
{
	assert_int_equal(d->type, JSON_OBJ);
	assert_int_equal(d->n, 4);
	const json *ts = json_get(d, "ts_ns"), *scope = json_get(d, "scope"),
		   *counters = json_get(d, "counters"), *hists = json_get(d, "histograms");
	assert_non_null(ts);
	assert_int_equal(ts->type, JSON_NUM);
	assert_true(ts->num > 1e18); /* wall clock in ns: after 2001 */
	assert_non_null(scope);
	assert_int_equal(scope->type, JSON_STR);
	assert_non_null(counters);
	assert_int_equal(counters->type, JSON_OBJ);
	for (size_t i = 0; i < counters->n; i++) {
		const json *c = counters->kids[i];
		assert_int_equal(c->type, JSON_NUM);
		assert_true(c->num >= 0 && c->num == (double)(uint64_t)c->num);
		assert_non_null(strchr(c->key, '.')); /* layer first, dotted */
	}
	assert_non_null(hists);
	assert_int_equal(hists->type, JSON_OBJ);
	const json *want = NULL;
	for (size_t i = 0; i < hists->n; i++) {
		const json *h = hists->kids[i];
		assert_int_equal(h->type, JSON_OBJ);
		const json *b = json_get(h, "bounds"), *c = json_get(h, "counts");
		assert_non_null(b);
		assert_non_null(c);
		assert_int_equal(b->type, JSON_ARR);
		assert_int_equal(c->type, JSON_ARR);
		assert_true(c->n == 0 ? b->n == 0 : b->n == c->n + 1);
		for (size_t k = 1; k < b->n; k++)
			assert_true(b->kids[k]->num > b->kids[k - 1]->num);
		if (strcmp(h->key, hist) == 0)
			want = h;
	}
	return want;
}

static double hist_total(const json *h)
{
	double sum = 0;
	const json *c = json_get(h, "counts");
	for (size_t k = 0; c != NULL && k < c->n; k++)
		sum += c->kids[k]->num;
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
	json *d = json_parse(text, len, &err);
	if (d == NULL)
		fail_msg("dump does not parse at byte %zu: %.*s", err, (int)len, text);
	const json *h = check_schema(d, "rpc.handler_ns");
	assert_string_equal(json_get(d, "scope")->str, "test-scope");
	assert_true(counter(d, "rpc.requests_received") == N_CALLS);
	assert_true(counter(d, "rpc.responses_sent") == N_CALLS);
	assert_true(counter(d, "rpc.builtin.requests_received") == 1); /* STOP */
	assert_true(counter(d, "udp.rx_packets") >= N_CALLS);
	assert_true(counter(d, "process.cpu_ns") > 0);
	assert_non_null(h);
	assert_true(hist_total(h) == N_CALLS);
	json_free(d);

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
	assert_int_equal(ferry_metrics_snap_get(local1, "rpc.builtin.calls_started", &v), 0);
	assert_int_equal(v, 3);
	char *buf = NULL;
	size_t blen = 0;
	FILE *mf = open_memstream(&buf, &blen);
	assert_true(ferry_metrics_snap_json(local1, "client", mf) > 0);
	fclose(mf);
	d = json_parse(buf, blen, &err);
	assert_non_null(d);
	h = check_schema(d, "rpc.call_ns");
	assert_non_null(h);
	assert_true(hist_total(h) == N_CALLS + 20);
	json_free(d);
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

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	bench_exe = argv[1];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_stop_dump_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
