/* The copy path into a call's fd sink, shared by the stream drivers. */
#include <errno.h>
#include <unistd.h>

#include "sink.h"

int ferry__sink_write(ferry_body_sink *k, const uint8_t *p, size_t n, uint64_t *counted)
{
	while (n > 0) {
		ssize_t w = k->off >= 0 ? pwrite(k->fd, p, n, k->off) : write(k->fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		if (k->off >= 0)
			k->off += w;
		k->copied += (uint64_t)w;
		*counted += (uint64_t)w;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}
