/* Receive side shared by the stream drivers (tcp, splice, infrc): body
 * bytes already in user memory written to a call's fd sink. */
#ifndef FERRY_SINK_H
#define FERRY_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/driver.h"

/* Write n bytes at p to the sink's fd (pwrite at k->off when it is >= 0,
 * advancing it; else write), retrying short writes and EINTR. k->copied and
 * *counted grow by what was written. 0, or -errno (-EIO for a 0 write). */
int ferry__sink_write(ferry_body_sink *k, const uint8_t *p, size_t n, uint64_t *counted);

#endif
