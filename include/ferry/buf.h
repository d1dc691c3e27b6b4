/** @file
 * ferry_buf: a byte string stored as a chain of chunks.
 *
 * A buffer is a singly linked list of chunks with a tail pointer and a read
 * cursor, so appending and reading sequentially are O(1) amortised whatever
 * the chunk count. Small buffers never call malloc: chunk nodes and copied
 * bytes come from an inline arena inside the struct, and a reserved headroom
 * lets protocol headers be prepended without copying the payload.
 *
 * Chunk kinds, visible to iterators:
 *   FERRY_CHUNK_MEM   bytes in memory (copied into the buffer, or referenced
 *                     with ferry_buf_append_ref: the caller keeps them alive);
 *   FERRY_CHUNK_LOAN  external memory with a release callback (typically a
 *                     driver's packet buffer); released exactly once, when the
 *                     chunk leaves the buffer (truncate or reset);
 *   FERRY_CHUNK_FILE  a file region (fd, offset, length). The fd is borrowed:
 *                     the caller keeps it open until the buffer is reset.
 *                     Reads (range, copy-out) use pread.
 *
 * A buffer is not thread-safe; it belongs to one thread at a time. Fields of
 * struct ferry_buf are private: use the functions below. */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of inline arena inside every ferry_buf (nodes + copied data). */
#define FERRY_BUF_INLINE_BYTES 2048
/** Bytes reserved at the front of the first arena chunk for prepends. */
#define FERRY_BUF_HEADROOM_BYTES 128

/** What a chunk (and an iterator segment) holds: see the file comment. */
enum ferry_chunk_kind {
	FERRY_CHUNK_MEM = 0,  /**< bytes in memory */
	FERRY_CHUNK_LOAN = 1, /**< external memory with a release callback */
	FERRY_CHUNK_FILE = 2, /**< a file region (borrowed fd, offset, length) */
};

/** Release callback of a loan: called exactly once with the loaned pointer
 * (as appended) and the argument given at append time. */
typedef void (*ferry_release_cb)(void *arg, void *data);

/** A chunk of a buffer. Private: read buffers through iterators. */
typedef struct ferry_chunk ferry_chunk;
/** A chunk of a buffer (private; see ferry_buf_iter). */
struct ferry_chunk {
	ferry_chunk *next;    /**< next chunk, NULL at the tail */
	size_t len;           /**< logical bytes in this chunk */
	uint8_t kind;         /**< enum ferry_chunk_kind */
	uint8_t owned;        /**< data lives in the buffer's arena (may grow/prepend) */
	uint16_t room_before; /**< owned MEM only: free arena bytes before data */
	union {
		uint8_t *data; /**< MEM, LOAN */
		struct {
			int fd;
			off_t off;
		} file;
	} u;                      /**< where the bytes are, by kind */
	ferry_release_cb release; /**< LOAN, or FILE from append_file_loan */
	void *release_arg;        /**< LOAN, FILE: argument of release */
	void *loan_ptr;           /**< LOAN: pointer handed back to release */
};

typedef struct ferry_buf_block ferry_buf_block; /**< overflow arena block */

/** A byte string as a chain of chunks (see the file comment). Fields are
 * private; a ferry_buf lives in caller memory: ferry_buf_init() it. */
typedef struct ferry_buf {
	ferry_chunk *head;       /**< first chunk */
	ferry_chunk *tail;       /**< last chunk */
	size_t len;              /**< logical length */
	ferry_chunk *cur;        /**< cursor: a chunk ... */
	size_t cur_off;          /**< ... and the logical offset where it starts */
	uint8_t *arena_pos;      /**< free space in the current arena block */
	size_t arena_left;       /**< bytes free at arena_pos */
	ferry_buf_block *blocks; /**< overflow blocks in use (most recent first) */
	ferry_buf_block *spare;  /**< one block kept across resets (no malloc) */
	uint64_t node_visits;    /**< chunk nodes dereferenced (tests prove O(1)) */
	_Alignas(16) uint8_t arena[FERRY_BUF_INLINE_BYTES]; /**< inline arena */
} ferry_buf;

/** One contiguous piece seen by an iterator. */
typedef struct ferry_buf_seg {
	uint8_t kind;        /**< enum ferry_chunk_kind */
	size_t offset;       /**< logical offset of this piece in the buffer */
	size_t len;          /**< bytes in this piece */
	const uint8_t *data; /**< MEM and LOAN; NULL for FILE */
	int fd;              /**< FILE: borrowed fd */
	off_t file_off;      /**< FILE: file offset of the first byte */
} ferry_buf_seg;

/** Iterator over a logical range [off, off+len). The buffer must not change
 * while an iterator is live (appends at the tail are allowed). */
typedef struct ferry_buf_iter {
	ferry_buf *buf;     /**< the buffer iterated */
	ferry_chunk *chunk; /**< next chunk to yield */
	size_t chunk_skip;  /**< bytes to skip inside it */
	size_t pos;         /**< logical offset of the next byte */
	size_t left;        /**< bytes still to yield */
} ferry_buf_iter;

/** Initialise an empty buffer in caller memory. Never fails. */
FERRY_API void ferry_buf_init(ferry_buf *b);
/** Reset, and free every overflow block (including the spare). */
FERRY_API void ferry_buf_fini(ferry_buf *b);
/** Back to empty: every loan is released exactly once, overflow blocks are
 * freed except one spare kept for reuse (so a reused buffer stops calling
 * malloc after warm-up). */
FERRY_API void ferry_buf_reset(ferry_buf *b);

/** Logical length of b in bytes. */
static inline size_t ferry_buf_len(const ferry_buf *b)
{
	return b->len;
}

/** Append n bytes of buffer-owned memory and return a pointer to them
 * (contiguous, 8-byte aligned when a new chunk starts). NULL only if malloc
 * fails. */
FERRY_API void *ferry_buf_alloc(ferry_buf *b, size_t n);
/** Copy n bytes in. 0 or -ENOMEM. */
FERRY_API int ferry_buf_append(ferry_buf *b, const void *data, size_t n);
/** Reference n bytes without copying; borrowed: the caller keeps them alive
 * and unchanged until the buffer is reset. 0 or -ENOMEM. */
FERRY_API int ferry_buf_append_ref(ferry_buf *b, const void *data, size_t n);
/** Take a loan: the buffer calls release(arg, data) exactly once, when the
 * chunk leaves the buffer. On failure (-ENOMEM) the loan is NOT taken and the
 * caller keeps it. A zero-length loan is released at once. */
FERRY_API int ferry_buf_append_loan(ferry_buf *b, void *data, size_t n,
                                    ferry_release_cb release, void *arg);
/** Append a file region; fd is borrowed. 0, -EINVAL (bad fd/offset) or -ENOMEM. */
FERRY_API int ferry_buf_append_file(ferry_buf *b, int fd, off_t off, size_t n);
/** As ferry_buf_append_file, and say when the region has left the buffer:
 * release(arg, NULL) runs exactly once, when the chunk is dropped (reset,
 * truncation, fini; for a response, once it has been sent), after which
 * fd may be closed. A server that opens a file per download closes it
 * there. On failure the callback does not run and fd stays the caller's;
 * n == 0 releases at once. 0, -EINVAL or -ENOMEM. */
FERRY_API int ferry_buf_append_file_loan(ferry_buf *b, int fd, off_t off, size_t n,
                                         ferry_release_cb release, void *arg);
/** Logically prepend n bytes and return a pointer to them. Uses headroom in
 * the first chunk when it has room, else a new chunk. NULL on -ENOMEM. */
FERRY_API void *ferry_buf_prepend(ferry_buf *b, size_t n);

/** Pointer to bytes [off, off+len): direct when the range lies in one memory
 * chunk, else copied into buffer-owned aux space (valid until reset; file
 * regions are read with pread). len 0 returns a non-NULL pointer.
 *
 * Errors: NULL with errno set to the positive code (ERANGE out of range,
 * EIO a file region shorter than promised, another pread errno, ENOMEM).
 * This and ferry_buf_prepend are the library's pointer-returning calls, and
 * the only ones that report through errno rather than a negative return:
 * a pointer has no room for a code. Read errno right after the call. */
FERRY_API const void *ferry_buf_range(ferry_buf *b, size_t off, size_t len);
/** Copy [off, off+len) to dst. Returns len, or -ERANGE / -errno. */
FERRY_API ssize_t ferry_buf_copy_out(ferry_buf *b, size_t off, size_t len, void *dst);

/** Drop n bytes from the front / keep only the first len bytes. Loans wholly
 * removed are released. Out-of-range n/len clamps to the buffer. */
FERRY_API void ferry_buf_truncate_front(ferry_buf *b, size_t n);
/** Keep only the first len bytes (see ferry_buf_truncate_front). */
FERRY_API void ferry_buf_truncate(ferry_buf *b, size_t len);

/** Iterate [off, off+len) (clamped to the buffer). Starting at or after the
 * cursor is O(1) amortised, so slicing a buffer sequentially (fragmenting)
 * costs O(chunks) in total. */
FERRY_API void ferry_buf_iter_init(ferry_buf_iter *it, ferry_buf *b, size_t off,
                                   size_t len);
/** Next piece; false at the end. */
FERRY_API bool ferry_buf_iter_next(ferry_buf_iter *it, ferry_buf_seg *seg);

/** Number of chunks (walks the list: O(chunks), for tests and debugging). */
FERRY_API size_t ferry_buf_chunk_count(const ferry_buf *b);

#ifdef __cplusplus
}
#endif
#endif
