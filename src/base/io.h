/* Whole reads and writes on file descriptors, with the one EINTR policy
 * every layer uses: an interrupted call is retried, a short transfer is
 * continued, anything else is returned. */
#ifndef FERRY_BASE_IO_H
#define FERRY_BASE_IO_H

#include <stddef.h>
#include <sys/types.h>

/* Read exactly n bytes at off into dst. 0; -errno from pread; -EIO when
 * the file ends first (the caller promised the region exists: a file
 * truncated under it is an I/O error, never zeros). */
int ferry__pread_full(int fd, void *dst, size_t n, off_t off);

/* Write all n bytes of src at off (pwrite), or at the file position when
 * off < 0 (write). 0 or -errno (-EAGAIN from a non-blocking fd included:
 * *done says how much went before it). done may be NULL. */
int ferry__write_full(int fd, const void *src, size_t n, off_t off, size_t *done);

#endif
