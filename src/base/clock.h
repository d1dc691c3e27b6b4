/* The monotonic clock every layer reads (CLOCK_MONOTONIC). Contexts cache
 * it once per poll pass (ctx->now_us); drivers read it directly for their
 * own deadlines. */
#ifndef FERRY_BASE_CLOCK_H
#define FERRY_BASE_CLOCK_H
#include <stdint.h>

uint64_t ferry__clock_ns(void);
uint64_t ferry__clock_us(void);

#endif
