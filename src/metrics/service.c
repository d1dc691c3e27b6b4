/* The built-in metrics service: START, STOP and DUMP on reserved opcodes,
 * answered by every server, so a client can collect a server's metrics for
 * exactly the interval it measured. The calls are ordinary RPCs, counted
 * under rpc.builtin.* and never as application requests. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "transport/core.h"
#include "snap.h"

#define METRICS_CALL_TIMEOUT_US 5000000

static void svc_start(void *arg, ferry_rpc *rpc)
{
	ferry_server *srv = arg;
	ferry_metrics_snap_free(srv->m_start);
	ferry_metrics_snap_free(srv->m_stop);
	srv->m_stop = NULL;
	srv->m_start = ferry_metrics_snapshot(srv->ctx);
	ferry_rpc_reply(rpc, srv->m_start != NULL ? 0 : -ENOMEM);
}

static void svc_stop(void *arg, ferry_rpc *rpc)
{
	ferry_server *srv = arg;
	ferry_metrics_snap_free(srv->m_stop);
	srv->m_stop = ferry_metrics_snapshot(srv->ctx);
	ferry_rpc_reply(rpc, srv->m_stop != NULL ? 0 : -ENOMEM);
}

static void svc_dump(void *arg, ferry_rpc *rpc)
{
	ferry_server *srv = arg;
	ferry_metrics_snap *s = srv->m_stop != NULL ? ferry__metrics_snap_dup(srv->m_stop)
	                                            : ferry_metrics_snapshot(srv->ctx);
	if (s == NULL) {
		ferry_rpc_reply(rpc, -ENOMEM);
		return;
	}
	if (srv->m_start != NULL)
		ferry_metrics_snap_sub(s, srv->m_start);
	/* The caller may name the scope (the request body); default: the
	 * server's first locator. */
	char scope[FERRY_LOC_MAX_BYTES + 8];
	ferry_buf *req = ferry_rpc_request(rpc);
	size_t n = ferry_buf_len(req) < sizeof(scope) - 1 ? ferry_buf_len(req) : sizeof(scope) - 1;
	if (n > 0 && ferry_buf_copy_out(req, 0, n, scope) == (ssize_t)n)
		scope[n] = '\0';
	else
		snprintf(scope, sizeof(scope), "server:%s",
		         srv->nports > 0 ? srv->ports[0]->bound : "");
	int rc = ferry_metrics_snap_json_buf(s, scope, ferry_rpc_response(rpc));
	ferry_metrics_snap_free(s);
	ferry_rpc_reply(rpc, rc < 0 ? rc : 0);
}

int ferry__metrics_service_register(ferry_server *srv)
{
	int rc;
	if ((rc = ferry__server_handle_builtin(srv, FERRY_OP_METRICS_START, svc_start, srv)) != 0 ||
	    (rc = ferry__server_handle_builtin(srv, FERRY_OP_METRICS_STOP, svc_stop, srv)) != 0 ||
	    (rc = ferry__server_handle_builtin(srv, FERRY_OP_METRICS_DUMP, svc_dump, srv)) != 0)
		return rc;
	return 0;
}

void ferry__metrics_service_fini(ferry_server *srv)
{
	ferry_metrics_snap_free(srv->m_start);
	ferry_metrics_snap_free(srv->m_stop);
	srv->m_start = srv->m_stop = NULL;
}

static int svc_call(ferry_session *s, uint16_t op, const char *arg, ferry_buf *out)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	if (arg != NULL && ferry_buf_append(&req, arg, strlen(arg)) != 0) {
		ferry_buf_fini(&req);
		return -ENOMEM;
	}
	int rc = ferry__call_sync_any(s, op, &req, out != NULL ? out : &resp,
	                              METRICS_CALL_TIMEOUT_US);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	return rc;
}

int ferry_metrics_remote_start(ferry_session *s)
{
	return svc_call(s, FERRY_OP_METRICS_START, NULL, NULL);
}

int ferry_metrics_remote_stop(ferry_session *s)
{
	return svc_call(s, FERRY_OP_METRICS_STOP, NULL, NULL);
}

int ferry_metrics_remote_dump(ferry_session *s, const char *scope, ferry_buf *out)
{
	return svc_call(s, FERRY_OP_METRICS_DUMP, scope, out);
}
