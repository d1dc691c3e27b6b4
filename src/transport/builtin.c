/* The client side of the built-in services: calls on reserved opcodes
 * (below FERRY_OPCODE_USER_MIN), which ferry_call refuses. The server side
 * of the metrics service is src/metrics/service.c. */
#include <errno.h>
#include <string.h>

#include "core.h"

#define METRICS_CALL_TIMEOUT_US 5000000

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
