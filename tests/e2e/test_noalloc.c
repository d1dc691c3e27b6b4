/* No malloc per call on the fast path: with a counting allocator installed
 * in the library, 10,000 calls of 64 B and of 1 KiB over the locator in
 * argv[1] (unreliable+udp, fast+udp; client and server on one context)
 * make zero allocations after warm-up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../common/testutil.h"

static unsigned long allocs;
static const char *listen_loc = "unreliable+udp:host=127.0.0.1,port=0";

static void *count_malloc(size_t n)
{
	allocs++;
	return malloc(n);
}

static void *count_realloc(void *p, size_t n)
{
	allocs++;
	return realloc(p, n);
}

static void run_calls(ferry_session *s, size_t size, int calls, ferry_buf *req,
                      ferry_buf *resp)
{
	for (int i = 0; i < calls; i++) {
		ferry_buf_reset(req);
		tu_fill(ferry_buf_alloc(req, size), size, (uint64_t)i);
		assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, req, resp, 2000000), 0);
		assert_int_equal(tu_check(resp, size, (uint64_t)i), -1);
		ferry_buf_reset(resp);
	}
}

static void test_no_alloc_after_warmup(void **state)
{
	(void)state;
	ferry_allocator a = {count_malloc, count_realloc, free};
	ferry_set_allocator(&a);
	ferry_ctx *ctx;
	ferry_server *srv;
	ferry_session *s;
	char loc[512];
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	tu_server_handlers(srv);
	assert_int_equal(ferry_server_listen(srv, listen_loc), 0);
	assert_true(ferry_server_locator(srv, 0, loc, sizeof(loc)) > 0);
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	const size_t sizes[] = {64, 1024};
	for (int k = 0; k < 2; k++) {
		run_calls(s, sizes[k], 200, &req, &resp); /* warm-up */
		unsigned long before = allocs;
		run_calls(s, sizes[k], 10000, &req, &resp);
		if (allocs != before)
			fail_msg("%lu allocations in 10000 calls of %zu B",
			         allocs - before, sizes[k]);
	}
	assert_true(allocs > 0); /* the hook really is in the path */
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(ctx);
	ferry_set_allocator(NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		listen_loc = argv[1];
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_no_alloc_after_warmup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
