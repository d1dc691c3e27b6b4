/* Echo over UDP on 127.0.0.1: a server and a client on one context. */
#include <ferry/ferry.h>
#include <stdio.h>

static void echo(void *arg, ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	size_t n = ferry_buf_len(req);
	ferry_buf_append(ferry_rpc_response(rpc), ferry_buf_range(req, 0, n), n);
	ferry_rpc_reply(rpc, 0), (void)arg;
}

int main(void)
{
	ferry_ctx *ctx;
	ferry_server *srv;
	ferry_session *s;
	ferry_buf req, resp;
	char loc[256];
	ferry_ctx_create(NULL, &ctx), ferry_server_create(ctx, &srv);
	ferry_server_handle(srv, 100, echo, NULL);
	ferry_server_listen(srv, "unreliable+udp:host=127.0.0.1,port=0");
	ferry_server_locator(srv, 0, loc, sizeof(loc));
	ferry_session_open(ctx, loc, &s);
	ferry_buf_init(&req), ferry_buf_init(&resp);
	ferry_buf_append(&req, "hello, ferry", 12);
	int rc = ferry_call_sync(s, 100, &req, &resp, 1000000);
	printf("%s: %.12s from %s\n", ferry_err_name(rc),
	       (const char *)ferry_buf_range(&resp, 0, 12), loc);
	ferry_buf_fini(&req), ferry_buf_fini(&resp), ferry_ctx_destroy(ctx);
	return rc;
}
