/* The server side of the built-in metrics service (START/STOP/DUMP). A
 * server creates one and passes the hook through which the service
 * registers its handlers on reserved opcodes; the service never reads
 * server internals. */
#ifndef FERRY_METRICS_SERVICE_H
#define FERRY_METRICS_SERVICE_H

#include <stdint.h>

#include "ferry/rpc.h"

typedef struct ferry__metrics_svc ferry__metrics_svc;

/* Register a built-in handler on srv (opcode below FERRY_OPCODE_USER_MIN):
 * 0 or a negative code. */
typedef int (*ferry__builtin_handle_fn)(ferry_server *srv, uint16_t opcode,
                                        ferry_handler_cb cb, void *arg);

/* Create the service for srv (whose context is ctx) and register its
 * handlers through handle. 0 or a negative code (nothing left behind). */
int ferry__metrics_svc_create(ferry_server *srv, ferry_ctx *ctx,
                              ferry__builtin_handle_fn handle, ferry__metrics_svc **out);
/* Free the service's state (the server drops its handlers). NULL is fine. */
void ferry__metrics_svc_destroy(ferry__metrics_svc *svc);

#endif
