/* Unit tests for reassembly (src/transport/reasm.c) against a stub driver
 * that counts released packets: both modes, their hand-over through the
 * shared ring/bitmap memory, duplicates, and aborts that give back exactly
 * what was held. The first test is the fuzz_packet finding: an aborted long
 * (copy-mode) message left bitmap bits behind, which the next short
 * message's abort read as parked packets and "released" (pointer 0x2). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "transport/core.h"
#include "transport/reasm.h"

#define NPKT 8

static int released[NPKT];
static ferry_pkt pkts[NPKT];
static uint8_t payload[NPKT][1000];

static void stub_release(ferry_ep *ep, ferry_pkt *pkt)
{
	(void)ep;
	ptrdiff_t i = pkt - pkts;
	assert_true(i >= 0 && i < NPKT);
	released[i]++;
}

static const ferry_dgram_ops stub_dgram = {.release = stub_release};
static const ferry_driver_ops stub_drv = {
        .name = "stub", .kind = FERRY_DRIVER_DATAGRAM, .dgram = &stub_dgram};
static ferry_ctx ctx;
static ferry_ep ep;

static int setup(void **st)
{
	(void)st;
	memset(&ctx, 0, sizeof(ctx));
	ctx.owner_tid = ferry__tid();
	memset(&ep, 0, sizeof(ep));
	ep.drv = &stub_drv;
	ep.ctx = &ctx;
	memset(released, 0, sizeof(released));
	for (int i = 0; i < NPKT; i++) {
		memset(&pkts[i], 0, sizeof(pkts[i]));
		pkts[i].ep = &ep;
		pkts[i].data = payload[i];
		pkts[i].len = sizeof(payload[i]);
		memset(payload[i], 'a' + i, sizeof(payload[i]));
		ep.loans_out++; /* as if polled */
	}
	return 0;
}

static int total_released(void)
{
	int n = 0;
	for (int i = 0; i < NPKT; i++)
		n += released[i];
	return n;
}

/* Copy mode aborted with a fragment held in the bitmap, then a short
 * message parks one fragment and is aborted: only that packet returns. */
static void test_copy_abort_then_loan(void **st)
{
	(void)st;
	ferry__reasm r;
	memset(&r, 0, sizeof(r));
	ferry_buf a, b;
	ferry_buf_init(&a);
	ferry_buf_init(&b);

	ferry__reasm_start(&r, &a, 100 * 1000, 1000); /* 100 fragments: copy */
	assert_int_equal(r.copy, 1);
	assert_int_equal(
	        ferry__reasm_add(&r, &pkts[0], 1, 100 * 1000, 1000, payload[0], 1000),
	        FERRY_REASM_ACCEPTED);
	assert_int_equal(released[0], 1); /* copied and given back at once */
	ferry__reasm_abort(&r);

	ferry__reasm_start(&r, &b, 10 * 1000, 1000); /* 10 fragments: loans */
	assert_int_equal(r.copy, 0);
	/* Fragment 1's slot must read empty, not as a duplicate. */
	assert_false(ferry__reasm_has(&r, 1));
	assert_int_equal(
	        ferry__reasm_add(&r, &pkts[1], 1, 10 * 1000, 1000, payload[1], 1000),
	        FERRY_REASM_ACCEPTED);
	assert_int_equal(
	        ferry__reasm_add(&r, &pkts[2], 3, 10 * 1000, 1000, payload[2], 1000),
	        FERRY_REASM_ACCEPTED);
	ferry__reasm_abort(&r);
	assert_int_equal(released[1], 1);
	assert_int_equal(released[2], 1);
	assert_int_equal(total_released(), 3);
	assert_int_equal(ep.loans_out, NPKT - 3);
	ferry_buf_fini(&a);
	ferry_buf_fini(&b);
}

/* A long message completes out of order and byte-exact; duplicates and
 * fragments of the wrong size are refused without taking the packet. */
static void test_copy_complete(void **st)
{
	(void)st;
	ferry__reasm r;
	memset(&r, 0, sizeof(r));
	ferry_buf a;
	ferry_buf_init(&a);
	uint32_t n = 70, len = n * 100 - 30; /* short last fragment */
	ferry__reasm_start(&r, &a, len, 100);
	assert_int_equal(r.copy, 1);
	uint8_t src[7000];
	for (uint32_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7 + 3);
	/* Odd fragments first, then even, then the last (short) one. */
	int done = 0, k = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t f = (uint32_t)(1 - pass); f + 1 < n; f += 2) {
			int v = ferry__reasm_add(&r, &pkts[k % NPKT], f, len, 100,
			                         src + f * 100, 100);
			assert_true(v >= 0);
			k++;
			if (pass == 0 && f == 1) {
				/* Same fragment again: a duplicate, not taken. */
				assert_int_equal(ferry__reasm_add(&r, &pkts[0], 1, len,
				                                  100, src + 100, 100),
				                 FERRY_REASM_DUP);
			}
		}
	}
	assert_int_equal(
	        ferry__reasm_add(&r, &pkts[0], n - 1, len, 100, src + (n - 1) * 100, 60),
	        FERRY_REASM_MISMATCH); /* last one is 70 bytes */
	/* Padded to 100 (docs/WIRE.md "Padding"): the 30 after it ignored. */
	done = ferry__reasm_add(&r, &pkts[0], n - 1, len, 100, src + (n - 1) * 100, 100);
	k++;
	assert_int_equal(done, FERRY_REASM_COMPLETE);
	assert_int_equal(total_released(), k);
	assert_int_equal(ferry_buf_len(&a), len);
	uint8_t out[7000];
	assert_int_equal(ferry_buf_copy_out(&a, 0, len, out), len);
	assert_memory_equal(out, src, len);
	/* A completed long message leaves the ring empty for a short one. */
	ferry_buf b;
	ferry_buf_init(&b);
	ferry__reasm_start(&r, &b, 2000, 1000);
	for (uint32_t f = 0; f < FERRY_REASM_WINDOW; f++)
		assert_null(r.u.ring[f].pkt);
	ferry_buf_fini(&a);
	ferry_buf_fini(&b);
}

/* A short (loan-mode) message: a fragment shorter than its place is
 * refused; one with padding after it is taken without the padding (loan
 * mode once appended whatever came, so a padded fragment would have made
 * the message longer than msg_len). */
static void test_loan_padding(void **st)
{
	(void)st;
	ferry__reasm r;
	memset(&r, 0, sizeof(r));
	ferry_buf b;
	ferry_buf_init(&b);
	uint32_t len = 2500; /* 1000 + 1000 + 500 */
	ferry__reasm_start(&r, &b, len, 1000);
	assert_int_equal(r.copy, 0);
	assert_int_equal(ferry__reasm_add(&r, &pkts[0], 0, len, 1000, payload[0], 999),
	                 FERRY_REASM_MISMATCH);
	assert_int_equal(ferry__reasm_add(&r, &pkts[2], 2, len, 1000, payload[2], 1000),
	                 FERRY_REASM_ACCEPTED); /* parked, padded by 500 */
	assert_int_equal(ferry__reasm_add(&r, &pkts[0], 0, len, 1000, payload[0], 1000),
	                 FERRY_REASM_ACCEPTED);
	assert_int_equal(ferry__reasm_add(&r, &pkts[1], 1, len, 1000, payload[1], 1000),
	                 FERRY_REASM_COMPLETE);
	assert_int_equal(ferry_buf_len(&b), len);
	uint8_t out[2500];
	assert_int_equal(ferry_buf_copy_out(&b, 0, len, out), len);
	assert_int_equal(out[999], 'a');
	assert_int_equal(out[1000], 'b');
	assert_int_equal(out[2499], 'c');
	ferry_buf_fini(&b); /* gives the three loans back */
	assert_int_equal(total_released(), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(test_copy_abort_then_loan, setup),
	        cmocka_unit_test_setup(test_copy_complete, setup),
	        cmocka_unit_test_setup(test_loan_padding, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
