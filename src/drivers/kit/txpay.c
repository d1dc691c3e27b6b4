/* Stream message payload cursor shared by tcp/splice and infrc (txpay.h). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "buffer/seg.h"
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

int ferry__txpay_check_files(const ferry__txpay *p)
{
	ferry_buf_iter it = p->it;
	ferry_buf_seg seg;
	while (it.left > 0 && ferry_buf_iter_next(&it, &seg)) {
		if (seg.kind != FERRY_CHUNK_FILE)
			continue;
		struct stat st;
		if (fstat(seg.fd, &st) != 0)
			return -errno;
		if (S_ISREG(st.st_mode) && st.st_size < seg.file_off + (off_t)seg.len)
			return -EIO;
	}
	return 0;
}

long ferry__txpay_detach(ferry__txpay *p)
{
	size_t rest = ferry__txpay_left(p);
	uint8_t *own = ferry__malloc(rest ? rest : 1);
	int rc = own == NULL ? -ENOMEM : 0;
	size_t at = 0;
	while (rc == 0 && ferry__txpay_seg(p)) {
		ferry_buf_seg piece = p->seg;
		piece.len -= p->seg_off;
		if (piece.kind == FERRY_CHUNK_FILE)
			piece.file_off += (off_t)p->seg_off;
		else
			piece.data += p->seg_off;
		rc = ferry__seg_copy(own + at, &piece);
		at += piece.len;
		p->have_seg = false;
	}
	p->it.left = 0;
	p->have_seg = false;
	if (rc != 0) {
		ferry__free(own);
		return rc;
	}
	p->own = own;
	p->own_len = rest;
	p->own_off = 0;
	return (long)rest;
}
