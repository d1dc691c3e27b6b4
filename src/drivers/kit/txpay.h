/* A queued stream message's payload as the stream drivers (tcp, splice,
 * infrc) write it: a cursor over the caller's ferry_buf (borrowed until
 * on_sent), or, once detached, over a private copy of what was unwritten. */
#ifndef FERRY_TXPAY_H
#define FERRY_TXPAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/buf.h"

typedef struct ferry__txpay {
	ferry_buf_iter it; /* payload not yet loaded into seg */
	ferry_buf_seg seg; /* current piece, seg_off bytes of it written */
	bool have_seg;
	size_t seg_off;
	uint8_t *own; /* detached: private copy of the unwritten rest */
	size_t own_len, own_off;
} ferry__txpay;

/* Load the next piece into p->seg unless one is loaded; false at the end
 * (or when detached: the rest is in p->own). */
bool ferry__txpay_seg(ferry__txpay *p);

/* Payload bytes not yet written. */
static inline size_t ferry__txpay_left(const ferry__txpay *p)
{
	if (p->own != NULL)
		return p->own_len - p->own_off;
	return (p->have_seg ? p->seg.len - p->seg_off : 0) + p->it.left;
}

/* Before the first byte of a message goes out: do its file regions still
 * exist? A file truncated while the message waited in a queue fails it
 * here, whole, and its connection carries on (truncation after this point
 * is found by the read itself, with part of the message out). Regular
 * files only (others have no size to compare with). 0, or the error the
 * message fails with: -EIO (a file ends before its region does), -errno
 * (fstat). p must not be started (no piece loaded). */
int ferry__txpay_check_files(const ferry__txpay *p);

/* Detach: copy the unwritten rest (memory, and file regions read with
 * ferry__pread_full) into p->own, so the caller's buffer is no longer
 * referenced. Returns the bytes copied (>= 0), or the error that kept the
 * copy from being made: -ENOMEM, or the read's error (-EIO when a file
 * region ends early, -errno). A region that cannot be read is never sent
 * as anything else: on error p is left empty (nothing of the caller's is
 * referenced, nothing is left to write) and the driver must not send the
 * message as if it were whole (it drops it, or resets the connection when
 * part of it is already out). */
long ferry__txpay_detach(ferry__txpay *p);

#endif
