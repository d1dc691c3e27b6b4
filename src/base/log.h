/* The log hook (ferry_set_log): the library never prints, it hands each
 * message to the hook the application installed, from whichever thread
 * runs the context that logs. */
#ifndef FERRY_BASE_LOG_H
#define FERRY_BASE_LOG_H
#include <stdbool.h>

/* Levels of ferry_set_log (include/ferry/rpc.h). */
enum { FERRY_LOG_ERROR = 0, FERRY_LOG_WARN = 1, FERRY_LOG_INFO = 2, FERRY_LOG_DEBUG = 3 };

/* Format and hand one message to the hook; nothing when none is set. */
void ferry__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when a hook is set: callers that build costly messages check it. */
bool ferry__log_enabled(void);

#endif
