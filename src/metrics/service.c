/* The built-in metrics service: START, STOP and DUMP on reserved opcodes,
 * answered by every server (which creates one per server through the
 * registration hook it passes in: service.h), so a client can collect a server's metrics
 * for exactly the interval it measured. The calls are ordinary RPCs, counted under
 * rpc.builtin.* and never as application requests. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/loc.h"
#include "service.h"
#include "snap.h"

struct ferry__metrics_svc {
	ferry_server *srv;
	ferry_ctx *ctx;
	ferry_metrics_snap *m_start, *m_stop; /* the interval START..STOP */
};

static void svc_start(void *arg, ferry_rpc *rpc)
{
	ferry__metrics_svc *svc = arg;
	ferry_metrics_snap_free(svc->m_start);
	ferry_metrics_snap_free(svc->m_stop);
	svc->m_stop = NULL;
	svc->m_start = ferry_metrics_snapshot(svc->ctx);
	ferry_rpc_reply(rpc, svc->m_start != NULL ? 0 : -ENOMEM);
}

static void svc_stop(void *arg, ferry_rpc *rpc)
{
	ferry__metrics_svc *svc = arg;
	ferry_metrics_snap_free(svc->m_stop);
	svc->m_stop = ferry_metrics_snapshot(svc->ctx);
	ferry_rpc_reply(rpc, svc->m_stop != NULL ? 0 : -ENOMEM);
}

static void svc_dump(void *arg, ferry_rpc *rpc)
{
	ferry__metrics_svc *svc = arg;
	ferry_metrics_snap *s = svc->m_stop != NULL ? ferry__metrics_snap_dup(svc->m_stop)
	                                            : ferry_metrics_snapshot(svc->ctx);
	if (s == NULL) {
		ferry_rpc_reply(rpc, -ENOMEM);
		return;
	}
	if (svc->m_start != NULL)
		ferry_metrics_snap_sub(s, svc->m_start);
	/* The caller may name the scope (the request body); default: the
	 * server's first locator. */
	char scope[FERRY_LOC_MAX_BYTES + 8];
	ferry_buf *req = ferry_rpc_request(rpc);
	size_t n = ferry_buf_len(req) < sizeof(scope) - 1 ? ferry_buf_len(req)
	                                                  : sizeof(scope) - 1;
	if (n > 0 && ferry_buf_copy_out(req, 0, n, scope) == (ssize_t)n) {
		scope[n] = '\0';
	} else {
		memcpy(scope, "server:", 7);
		if (ferry_server_locator(svc->srv, 0, scope + 7, sizeof(scope) - 7) < 0)
			scope[7] = '\0';
	}
	int rc = ferry_metrics_snap_json_buf(s, scope, ferry_rpc_response(rpc));
	ferry_metrics_snap_free(s);
	ferry_rpc_reply(rpc, rc < 0 ? rc : 0);
}

int ferry__metrics_svc_create(ferry_server *srv, ferry_ctx *ctx,
                              ferry__builtin_handle_fn handle, ferry__metrics_svc **out)
{
	ferry__metrics_svc *svc = ferry__calloc(1, sizeof(*svc));
	if (svc == NULL)
		return -ENOMEM;
	svc->srv = srv;
	svc->ctx = ctx;
	int rc;
	if ((rc = handle(srv, FERRY_OP_METRICS_START, svc_start, svc)) != 0 ||
	    (rc = handle(srv, FERRY_OP_METRICS_STOP, svc_stop, svc)) != 0 ||
	    (rc = handle(srv, FERRY_OP_METRICS_DUMP, svc_dump, svc)) != 0) {
		ferry__free(svc);
		return rc;
	}
	*out = svc;
	return 0;
}

void ferry__metrics_svc_destroy(ferry__metrics_svc *svc)
{
	if (svc == NULL)
		return;
	ferry_metrics_snap_free(svc->m_start);
	ferry_metrics_snap_free(svc->m_stop);
	ferry__free(svc);
}
