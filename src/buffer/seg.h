/* Copying one piece of a buffer (ferry_buf_seg) out: what every driver
 * that bounces payload into its own memory does. */
#ifndef FERRY_BUFFER_SEG_H
#define FERRY_BUFFER_SEG_H

#include "ferry/buf.h"

/* Copy seg's seg->len bytes to dst: memory with memcpy, a file region with
 * ferry__pread_full. 0, or the read's negative error (-EIO: the file ended
 * before the region did); dst's contents are then undefined. */
int ferry__seg_copy(void *dst, const ferry_buf_seg *seg);

#endif
