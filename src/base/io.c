/* Whole reads and writes (io.h). */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "io.h"

int ferry__pread_full(int fd, void *dst, size_t n, off_t off)
{
	uint8_t *p = dst;
	while (n > 0) {
		ssize_t r = pread(fd, p, n, off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int ferry__write_full(int fd, const void *src, size_t n, off_t off, size_t *done)
{
	const uint8_t *p = src;
	size_t at = 0;
	int rc = 0;
	while (at < n) {
		ssize_t w = off >= 0 ? pwrite(fd, p + at, n - at, off + (off_t)at)
		                     : write(fd, p + at, n - at);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (w ==
		    0) { /* a regular file does not do this; a full pipe would block */
			rc = -EIO;
			break;
		}
		at += (size_t)w;
	}
	if (done != NULL)
		*done = at;
	return rc;
}
