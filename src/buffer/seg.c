/* Copying a buffer piece out (seg.h). */
#include <string.h>

#include "base/io.h"
#include "seg.h"

int ferry__seg_copy(void *dst, const ferry_buf_seg *seg)
{
	if (seg->kind != FERRY_CHUNK_FILE) {
		memcpy(dst, seg->data, seg->len);
		return 0;
	}
	return ferry__pread_full(seg->fd, dst, seg->len, seg->file_off);
}
