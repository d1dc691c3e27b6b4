/* The copy path into a call's fd sink, shared by the stream drivers. */
#include "base/io.h"
#include "sink.h"

int ferry__sink_write(ferry_body_sink *k, const uint8_t *p, size_t n, uint64_t *counted)
{
	size_t done = 0;
	int rc = ferry__write_full(k->fd, p, n, k->off, &done);
	if (k->off >= 0)
		k->off += (int64_t)done;
	k->copied += done;
	*counted += done;
	return rc;
}
