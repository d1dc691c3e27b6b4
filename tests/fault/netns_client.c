/* The client half of the kernel-loss test (netns_loss.sh runs it inside a
 * network namespace): N echo calls over the locator given, each with its
 * own id and pattern, byte-exact; then the server reports how many ids ran
 * exactly once. argv: locator calls. Exit 0 only if all of it holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int calls = atoi(argv[2]);
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_ctx *ctx;
	ferry_session *s;
	if (ferry_ctx_create(&o, &ctx) != 0)
		return 1;
	if (ferry_session_open(ctx, argv[1], &s) != 0) {
		fprintf(stderr, "netns_client: %s\n", ferry_ctx_errmsg(ctx));
		return 1;
	}
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	int bad = 0;
	for (int i = 0; i < calls && bad == 0; i++) {
		size_t n = 4 + (size_t)(i * 7919) % (i % 10 == 0 ? 60000 : 2000);
		ferry_buf_reset(&req);
		uint8_t *p = ferry_buf_alloc(&req, n);
		tu_fill(p, n, (uint64_t)i);
		uint32_t id = (uint32_t)i;
		memcpy(p, &id, 4);
		int rc = ferry_call_sync(s, TEST_OP_ONCE, &req, &resp, 30000000);
		size_t got = ferry_buf_len(&resp);
		if (rc != 0 || got != n ||
		    memcmp(ferry_buf_range(&resp, 0, n), p, n) != 0) {
			fprintf(stderr, "call %d (%zu B): %s, %zu bytes back\n", i, n,
			        ferry_err_name(rc), got);
			bad++;
		}
		ferry_buf_reset(&resp);
	}
	ferry_buf_reset(&req);
	uint32_t report[2] = {0, 0};
	if (bad == 0 &&
	    ferry_call_sync(s, TEST_OP_ONCE_REPORT, &req, &resp, 30000000) == 0)
		ferry_buf_copy_out(&resp, 0, 8, report);
	uint64_t retx = 0, v = 0;
	const char *names[] = {"fast.retx.timeout", "fast.retx.fast", "fast.retx.probe"};
	for (int k = 0; k < 3; k++)
		if (ferry_metrics_get(ctx, names[k], &v) == 0)
			retx += v;
	printf("netns_client: %d calls, %u ran once, %u ran more than once, %llu client "
	       "retransmissions\n",
	       calls, report[0], report[1], (unsigned long long)retx);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_ctx_destroy(ctx);
	return bad == 0 && report[0] == (uint32_t)calls && report[1] == 0 && retx > 0 ? 0
	                                                                              : 1;
}
