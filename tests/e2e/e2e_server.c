/* Test server process: listens on argv[1] (spin or block per argv[2]),
 * prints the bound locator on stdout, serves the test opcodes until
 * SIGTERM (or its parent dies), then checks it leaked no loans. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "../common/testutil.h"

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void print_stat(void *arg, const char *name, uint64_t v)
{
	(void)arg;
	if (v != 0)
		fprintf(stderr, "e2e_server: %s=%llu\n", name, (unsigned long long)v);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	signal(SIGTERM, on_term);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	ferry_ctx_opts o = {.poll_mode = argc > 2 && strcmp(argv[2], "block") == 0
	                                         ? FERRY_POLL_BLOCK
	                                         : FERRY_POLL_SPIN,
	                    .cpu = -1};
	ferry_ctx *ctx;
	ferry_server *srv;
	char loc[512];
	if (ferry_ctx_create(&o, &ctx) != 0 || ferry_server_create(ctx, &srv) != 0)
		return 3;
	tu_server_handlers(srv);
	int rc = ferry_server_listen(srv, argv[1]);
	if (rc != 0) {
		fprintf(stderr, "listen %s: %s (%s)\n", argv[1], ferry_err_name(rc),
		        ferry_ctx_errmsg(ctx));
		return 4;
	}
	ferry_server_locator(srv, 0, loc, sizeof(loc));
	printf("%s\n", loc);
	fflush(stdout);
	while (!stop)
		ferry_ctx_poll(ctx, 100000);
	if (getenv("FERRY_E2E_STATS") != NULL)
		ferry_ctx_stats(ctx, print_stat, NULL); /* debugging aid */
	/* Close the server (retained replies go back) and check that every
	 * endpoint got all its loans back before closing. */
	ferry_server_destroy(srv);
	ferry_ctx_poll(ctx, 0);
	uint64_t leaked = 1;
	ferry_metrics_get(ctx, "rpc.loans_leaked", &leaked);
	ferry_ctx_destroy(ctx);
	if (leaked != 0)
		fprintf(stderr, "e2e_server: %llu loans leaked\n",
		        (unsigned long long)leaked);
	return leaked == 0 ? 0 : 5;
}
