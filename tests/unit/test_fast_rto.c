/* The fast transport's retransmission timer against RFC 6298 (first
 * sample, updates, granularity, backoff, clamping), and its window: growth
 * above the initial size over a loss-free run, shrinking after losses, and
 * Karn's rule (no RTT sample from a retransmitted fragment). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "transport/fast/rto.h"
#include "transport/fast/window.h"

static void test_first_sample(void **st)
{
	(void)st;
	fast_rto r;
	ferry__fast_rto_init(&r, 1000, 200000);
	assert_int_equal(r.rto_us, FAST_RTO_INITIAL_US); /* before any sample */
	ferry__fast_rto_sample(&r, 10000);
	/* SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4 RTTVAR) */
	assert_int_equal(r.srtt_us, 10000);
	assert_int_equal(r.rttvar_us, 5000);
	assert_int_equal(r.rto_us, 30000);
}

static void test_updates(void **st)
{
	(void)st;
	fast_rto r;
	ferry__fast_rto_init(&r, 1000, 200000);
	ferry__fast_rto_sample(&r, 10000);
	ferry__fast_rto_sample(&r, 18000);
	/* RTTVAR = 3/4 * 5000 + 1/4 * |10000 - 18000| = 5750
	 * SRTT = 7/8 * 10000 + 1/8 * 18000 = 11000 */
	assert_int_equal(r.rttvar_us, 5750);
	assert_int_equal(r.srtt_us, 11000);
	assert_int_equal(r.rto_us, 11000 + 4 * 5750);
	/* Reference computation over a sequence, in doubles. */
	double srtt = 11000, var = 5750;
	const uint32_t samples[] = {9000, 9500, 30000, 8000, 8000, 8000, 12000};
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		double rr = samples[i];
		var = 0.75 * var + 0.25 * (srtt > rr ? srtt - rr : rr - srtt);
		srtt = 0.875 * srtt + 0.125 * rr;
		ferry__fast_rto_sample(&r, samples[i]);
		assert_true(r.srtt_us >= srtt - 3 && r.srtt_us <= srtt + 3);
		assert_true(r.rttvar_us >= var - 3 && r.rttvar_us <= var + 3);
	}
}

static void test_granularity_and_clamp(void **st)
{
	(void)st;
	fast_rto r;
	ferry__fast_rto_init(&r, 1000, 200000);
	/* Tiny, steady RTTs: RTTVAR decays, G and then the minimum take over. */
	for (int i = 0; i < 50; i++)
		ferry__fast_rto_sample(&r, 20);
	assert_int_equal(r.rto_us, 1000); /* clamped to min */
	ferry__fast_rto_init(&r, 10, 200000);
	for (int i = 0; i < 50; i++)
		ferry__fast_rto_sample(&r, 20);
	assert_int_equal(r.rto_us, 20 + FAST_RTO_GRANULARITY_US); /* SRTT + G */
	/* Huge RTT: clamped to max. */
	ferry__fast_rto_init(&r, 1000, 200000);
	ferry__fast_rto_sample(&r, 1000000);
	assert_int_equal(r.rto_us, 200000);
}

static void test_backoff(void **st)
{
	(void)st;
	fast_rto r;
	ferry__fast_rto_init(&r, 1000, 200000);
	ferry__fast_rto_sample(&r, 10000); /* RTO 30000 */
	ferry__fast_rto_backoff(&r);
	assert_int_equal(r.rto_us, 60000);
	ferry__fast_rto_backoff(&r);
	assert_int_equal(r.rto_us, 120000);
	ferry__fast_rto_backoff(&r);
	assert_int_equal(r.rto_us, 200000); /* clamped */
	assert_int_equal(r.backoffs, 3);
	/* A new sample ends the backoff. */
	ferry__fast_rto_sample(&r, 10000);
	assert_int_equal(r.backoffs, 0);
	assert_true(r.rto_us < 60000);
}

/* Window behaviour through a real link on a loopback port pair. */
typedef struct wenv {
	ferry_ctx *ctx;
	ferry__port *a, *b;
	ferry_addr to_b;
	fast_link l;
	ferry_buf msg;
} wenv;

static void wenv_open(wenv *w, uint32_t len)
{
	char err[200];
	ferry_loc la, lb;
	assert_int_equal(ferry_ctx_create(NULL, &w->ctx), 0);
	assert_int_equal(ferry__loc_parse("fast+loopback:mtu=1064,rxslots=4096", &lb, err,
	                                  sizeof(err)),
	                 0);
	assert_int_equal(ferry__port_open(w->ctx, &lb, true, &w->b), 0);
	assert_int_equal(ferry__loc_parse(w->b->bound, &la, err, sizeof(err)), 0);
	assert_int_equal(ferry__port_open(w->ctx, &la, false, &w->a), 0);
	assert_int_equal(w->a->ep->drv->dgram->resolve(w->a->ep, &la, &w->to_b), 0);
	ferry__fast_link_init(&w->l, w->a, &w->to_b, 0, 1000000, 1);
	ferry_buf_init(&w->msg);
	ferry_buf_alloc(&w->msg, len);
}

static void wenv_drain(wenv *w)
{
	ferry_pkt *pkts[64];
	int n;
	ferry__ep_flush(w->a->ep);
	while ((n = ferry__ep_poll(w->b->ep, pkts, 64)) > 0)
		for (int i = 0; i < n; i++)
			ferry__ep_release(pkts[i]);
}

static void wenv_close(wenv *w)
{
	wenv_drain(w);
	ferry_buf_fini(&w->msg);
	ferry_ctx_destroy(w->ctx);
}

static void test_window_grows_without_loss(void **st)
{
	(void)st;
	wenv w;
	wenv_open(&w, 1000 * 1024); /* 1000 fragments of 1024 */
	fast_out o;
	memset(&o, 0, sizeof(o));
	ferry__fast_out_start(&w.l, &o, &w.msg, 1024);
	assert_int_equal(o.nfrags, 1000);
	uint32_t initial = w.l.cwnd;
	assert_int_equal(initial, FAST_CWND_INITIAL_FRAGS);
	w.ctx->now_us = 1000;
	while (!ferry__fast_out_done(&o)) {
		ferry__fast_out_pump(&w.l, &o, 0, 1, 100, 0, UINT32_MAX);
		wenv_drain(&w);
		w.ctx->now_us += 20;
		/* the receiver got everything sent so far */
		ferry__fast_out_ack(&w.l, &o, o.next, (uint64_t[]){0}, 1, o.next);
	}
	assert_true(w.l.cwnd > initial);
	assert_int_equal(w.l.cwnd, FAST_WINDOW_FRAGS);
	assert_true(w.l.rto.have_sample);
	wenv_close(&w);
}

static void test_window_shrinks_after_loss(void **st)
{
	(void)st;
	wenv w;
	wenv_open(&w, 1000 * 1024);
	fast_out o;
	memset(&o, 0, sizeof(o));
	ferry__fast_out_start(&w.l, &o, &w.msg, 1024);
	w.ctx->now_us = 1000;
	/* grow first (three rounds of slow start: 8 + 16 + 32 fragments) */
	for (int i = 0; i < 3; i++) {
		ferry__fast_out_pump(&w.l, &o, 0, 1, 100, 0, UINT32_MAX);
		wenv_drain(&w);
		w.ctx->now_us += 20;
		ferry__fast_out_ack(&w.l, &o, o.next, (uint64_t[]){0}, 1, o.next);
	}
	uint32_t grown = w.l.cwnd;
	assert_true(grown > FAST_CWND_INITIAL_FRAGS);
	/* base lost, later fragments arrived: a hole, and the window halves */
	ferry__fast_out_pump(&w.l, &o, 0, 1, 100, 0, UINT32_MAX);
	wenv_drain(&w);
	assert_true(o.next > o.base + 2);
	w.ctx->now_us += 100000; /* long after: the base is presumed lost */
	ferry__fast_out_ack(&w.l, &o, o.base, (uint64_t[]){0x3}, 1, 0);
	assert_int_equal(ferry__fast_out_recover(&w.l, &o, 0, 1, 100, 0), 1);
	wenv_drain(&w);
	assert_true(w.l.cwnd <= grown / 2 + 1);
	uint32_t halved = w.l.cwnd;
	/* a timeout drops it to the minimum */
	ferry__fast_link_loss(&w.l, true);
	assert_int_equal(w.l.cwnd, FAST_CWND_MIN_FRAGS);
	assert_true(w.l.cwnd < halved);
	wenv_close(&w);
}

/* Karn: an ack covering only a retransmitted fragment yields no sample. */
static void test_karn(void **st)
{
	(void)st;
	wenv w;
	wenv_open(&w, 1024);
	fast_out o;
	memset(&o, 0, sizeof(o));
	ferry__fast_out_start(&w.l, &o, &w.msg, 1024);
	w.ctx->now_us = 1000;
	ferry__fast_out_pump(&w.l, &o, 0, 1, 100, 0, UINT32_MAX);
	w.ctx->now_us = 5000;
	ferry__fast_out_send(&w.l, &o, 0, 1, 100, 0, 0, FERRY_FLAG_RETX);
	wenv_drain(&w);
	w.ctx->now_us = 5100;
	assert_int_equal(ferry__fast_out_ack(&w.l, &o, 1, (uint64_t[]){0}, 1, 1), 1);
	assert_false(w.l.rto.have_sample);
	assert_true(ferry__fast_out_done(&o));
	wenv_close(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_first_sample),
	        cmocka_unit_test(test_updates),
	        cmocka_unit_test(test_granularity_and_clamp),
	        cmocka_unit_test(test_backoff),
	        cmocka_unit_test(test_window_grows_without_loss),
	        cmocka_unit_test(test_window_shrinks_after_loss),
	        cmocka_unit_test(test_karn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
