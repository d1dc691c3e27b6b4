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
	uint8_t *own;      /* detached: private copy of the unwritten rest */
	size_t own_len, own_off;
} ferry__txpay;

/* Load the next piece into p->seg unless one is loaded; false at the end
 * (or when detached: the rest is in p->own). */
bool ferry__txpay_seg(ferry__txpay *p);

/* Detach: copy the unwritten rest (memory, and file regions read with
 * pread — a region that cannot be read is sent as zeros so the stream stays
 * framed) into p->own, so the caller's buffer is no longer referenced.
 * Returns the bytes copied (>= 0), or -ENOMEM with p unchanged. */
long ferry__txpay_detach(ferry__txpay *p);

#endif
