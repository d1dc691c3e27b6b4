/* Stream message payload cursor shared by tcp/splice and infrc (txpay.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "txpay.h"

bool ferry__txpay_seg(ferry__txpay *p)
{
	if (!p->have_seg) {
		if (p->it.left == 0 || !ferry_buf_iter_next(&p->it, &p->seg))
			return false;
		p->have_seg = true;
		p->seg_off = 0;
	}
	return true;
}

long ferry__txpay_detach(ferry__txpay *p)
{
	size_t rest = (p->have_seg ? p->seg.len - p->seg_off : 0) + p->it.left;
	uint8_t *own = ferry__malloc(rest ? rest : 1);
	if (own == NULL)
		return -ENOMEM;
	size_t at = 0;
	while (ferry__txpay_seg(p)) {
		size_t k = p->seg.len - p->seg_off;
		if (p->seg.kind == FERRY_CHUNK_FILE) {
			ssize_t r = pread(p->seg.fd, own + at, k, p->seg.file_off + (off_t)p->seg_off);
			if (r != (ssize_t)k)
				memset(own + at, 0, k); /* the stream must stay framed */
		} else {
			memcpy(own + at, p->seg.data + p->seg_off, k);
		}
		at += k;
		p->have_seg = false;
	}
	p->it.left = 0;
	p->own = own;
	p->own_len = rest;
	p->own_off = 0;
	return (long)rest;
}
