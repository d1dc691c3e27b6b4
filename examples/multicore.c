/* A multi-core server: 2 contexts (threads) share one UDP port through
 * reuseport=1, echo inline and run a "slow" opcode on the worker pool;
 * a client on the main thread calls both through 8 sessions. */
#include <ferry/ferry.h>
#include <stdio.h>
#include <unistd.h>

enum { OP_ECHO = 100, OP_SLOW = 101, CONTEXTS = 2, SESSIONS = 8 };

static void echo(void *arg, ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	size_t n = ferry_buf_len(req);
	ferry_buf_append(ferry_rpc_response(rpc), ferry_buf_range(req, 0, n), n);
	ferry_rpc_reply(rpc, 0), (void)arg;
}

static void slow(void *arg, ferry_rpc *rpc) /* on a worker thread */
{
	usleep(20000);
	echo(arg, rpc);
}

static int setup(void *arg, int index, ferry_ctx *ctx, ferry_server *srv)
{
	(void)arg, (void)index, (void)ctx;
	ferry_workers_opts w = {.threads = 2, .queue_max = 64};
	int rc = ferry_server_handle(srv, OP_ECHO, echo, NULL);
	if (rc == 0)
		rc = ferry_server_workers(srv, &w);
	if (rc == 0)
		rc = ferry_server_handle_blocking(srv, OP_SLOW, slow, NULL);
	return rc;
}

int main(void)
{
	const char *listen[] = {"fast+udp:host=127.0.0.1,port=0,reuseport=1"};
	ferry_server_group_opts o = {.nctx = CONTEXTS,
	                             .poll_mode = FERRY_POLL_BLOCK,
	                             .locators = listen,
	                             .nlocators = 1,
	                             .setup = setup};
	ferry_server_group *g;
	char loc[256];
	int rc = ferry_server_group_start(&o, &g);
	if (rc != 0)
		return fprintf(stderr, "group: %s\n", ferry_strerror(rc)), 1;
	ferry_server_group_locator(g, 0, loc, sizeof(loc));
	ferry_ctx *ctx;
	ferry_ctx_create(&(ferry_ctx_opts){.poll_mode = FERRY_POLL_BLOCK, .cpu = -1},
	                 &ctx);
	int ok = 0;
	for (int i = 0; i < SESSIONS && rc == 0; i++) {
		ferry_session *s;
		ferry_buf req, resp;
		if ((rc = ferry_session_open(ctx, loc, &s)) != 0)
			break;
		ferry_buf_init(&req), ferry_buf_init(&resp);
		ferry_buf_append(&req, "hello", 5);
		rc = ferry_call_sync(s, i % 2 ? OP_SLOW : OP_ECHO, &req, &resp, 1000000);
		ok += rc == 0 && ferry_buf_len(&resp) == 5;
		ferry_buf_fini(&req), ferry_buf_fini(&resp);
	}
	ferry_ctx_destroy(ctx);
	ferry_server_group_stop(g);
	printf("%s: %d of %d calls echoed by %d contexts on %s\n", ferry_err_name(rc), ok,
	       SESSIONS, CONTEXTS, loc);
	return rc == 0 && ok == SESSIONS ? 0 : 1;
}
