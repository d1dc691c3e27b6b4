/* What in-tree drivers borrow from the core besides the contract: the
 * monotonic clock the context uses and the log hook. */
#ifndef FERRY_DRIVER_UTIL_H
#define FERRY_DRIVER_UTIL_H
#include <stdint.h>

uint64_t ferry__clock_us(void);
void ferry__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
