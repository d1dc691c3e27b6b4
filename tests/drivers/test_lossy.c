/* The lossy wrapper does what its rates say, counts it, and replays
 * exactly from a seed. Packets go lossy+loopback -> loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "transport/core.h"

#define N 2000

typedef struct run {
	int got;         /* packets received */
	int seq[3 * N];  /* their sequence numbers, in arrival order */
	int damaged;     /* packets whose bytes differ from what was sent */
	uint64_t cnt[8]; /* seen dropped duplicated reordered delayed corrupted */
} run;

static const char *const cnt_names[] = {"seen",      "dropped", "duplicated",
                                        "reordered", "delayed", "corrupted"};

static void cnt_cb(void *arg, const char *name, uint64_t v)
{
	run *r = arg;
	for (int i = 0; i < 6; i++)
		if (strcmp(name, cnt_names[i]) == 0)
			r->cnt[i] = v;
}

static void fill(uint8_t *b, int seq)
{
	/* seq and its complement: no single bit flip keeps them consistent. */
	for (int i = 0; i < 64; i++)
		b[i] = (uint8_t)((unsigned)seq * 31u + (unsigned)i);
	int inv = ~seq;
	memcpy(b, &seq, sizeof(seq));
	memcpy(b + sizeof(seq), &inv, sizeof(inv));
}

static void drain(ferry_ep *ep, run *r)
{
	ferry_pkt *pkts[32];
	int n;
	while ((n = ferry__ep_poll(ep, pkts, 32)) > 0)
		for (int i = 0; i < n; i++) {
			int seq;
			memcpy(&seq, pkts[i]->data, sizeof(seq));
			uint8_t want[64];
			fill(want, seq);
			if (pkts[i]->len != 64 || memcmp(want, pkts[i]->data, 64) != 0 ||
			    seq < 0 || seq >= N)
				r->damaged++;
			else
				r->seq[r->got] = seq;
			r->got++;
			ferry__ep_release(pkts[i]);
		}
}

static void do_run(const char *rates, run *r)
{
	memset(r, 0, sizeof(*r));
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	ferry_loc sl, cl;
	char err[200], text[300];
	ferry__port *srv, *cli;
	assert_int_equal(ferry__loc_parse("unreliable+loopback", &sl, err, sizeof(err)),
	                 0);
	assert_int_equal(ferry__port_open(ctx, &sl, true, &srv), 0);
	snprintf(text, sizeof(text), "unreliable+lossy+%s,%s",
	         srv->bound + strlen("unreliable+"), rates);
	assert_int_equal(ferry__loc_parse(text, &cl, err, sizeof(err)), 0);
	assert_int_equal(ferry__port_open(ctx, &cl, false, &cli), 0);
	ferry_addr to;
	assert_int_equal(cli->ep->drv->dgram->resolve(cli->ep, &cl, &to), 0);
	uint8_t b[64];
	for (int seq = 0; seq < N; seq++) {
		fill(b, seq);
		assert_int_equal(ferry__ep_send(cli->ep, &to, b, sizeof(b), NULL), 0);
		ferry__ep_flush(cli->ep);
		if (seq % 128 == 127) /* stay well inside the receive pool */
			drain(srv->ep, r);
	}
	drain(srv->ep, r);
	/* Delayed packets leave once due, when the wrapper is polled. */
	for (int spins = 0; spins < 200 && cli->ep->wake_at_us != 0; spins++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		ferry_pkt *none[1];
		ferry__ep_poll(cli->ep, none, 1);
		ferry__ep_flush(cli->ep);
	}
	drain(srv->ep, r);
	struct ferry_ctl_counters cc = {cnt_cb, r};
	cli->ep->drv->dgram->ctl(cli->ep, FERRY_CTL_COUNTERS, &cc);
	ferry_ctx_destroy(ctx);
	assert_int_equal(r->cnt[0], N);
}

static void test_drop_replays(void **s)
{
	(void)s;
	static run a, b;
	do_run("drop=0.25,seed=7", &a);
	assert_int_equal(a.got, N - (int)a.cnt[1]);
	assert_true(a.cnt[1] > N / 5 && a.cnt[1] < N * 3 / 10);
	do_run("drop=0.25,seed=7", &b);
	assert_int_equal(a.got, b.got);
	assert_memory_equal(a.seq, b.seq, sizeof(int) * (size_t)a.got);
	do_run("drop=0.25,seed=8", &b);
	assert_true(a.got != b.got ||
	            memcmp(a.seq, b.seq, sizeof(int) * (size_t)a.got) != 0);
}

static void test_dup(void **s)
{
	(void)s;
	static run r;
	do_run("dup=0.1,seed=3", &r);
	assert_true(r.cnt[2] > 0);
	assert_int_equal(r.got, N + (int)r.cnt[2]);
	assert_int_equal(r.damaged, 0);
}

static void test_reorder(void **s)
{
	(void)s;
	static run r;
	do_run("reorder=0.1,seed=4", &r);
	assert_true(r.cnt[3] > 0);
	assert_int_equal(r.got, N);
	int inversions = 0;
	for (int i = 1; i < r.got; i++)
		inversions += r.seq[i] < r.seq[i - 1];
	assert_true(inversions > 0);
	static uint8_t seen[N];
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < r.got; i++)
		seen[r.seq[i]]++;
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], 1);
}

static void test_delay(void **s)
{
	(void)s;
	static run r;
	do_run("delay=0.1,delay_us=2000,seed=5", &r);
	assert_true(r.cnt[4] > 0);
	assert_int_equal(r.got, N);
	/* Delayed packets arrive after every undelayed one sent before them. */
	int late = 0;
	for (int i = 1; i < r.got; i++)
		late += r.seq[i] < r.seq[i - 1];
	assert_true(late > 0);
}

static void test_corrupt(void **s)
{
	(void)s;
	static run r;
	do_run("corrupt=0.1,seed=6", &r);
	assert_true(r.cnt[5] > 0);
	assert_int_equal(r.got, N);
	assert_int_equal(r.damaged, (int)r.cnt[5]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_drop_replays), cmocka_unit_test(test_dup),
	        cmocka_unit_test(test_reorder),      cmocka_unit_test(test_delay),
	        cmocka_unit_test(test_corrupt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
