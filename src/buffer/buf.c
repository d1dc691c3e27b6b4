/* ferry_buf: a chunked byte string whose nodes and copied bytes are carved
 * from an inline arena, then from geometrically growing overflow blocks.
 * A tail pointer makes appends O(1) and a read cursor makes sequential
 * lookups O(1) amortised, whatever the number of chunks. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "base/io.h"
#include "ferry/buf.h"

/* Allocation hooks, provided by the core module. */
#include "base/alloc.h"

/* Every overflow block is at least this much larger than the request that
 * caused it, so a run of small carves does not allocate once per carve. */
#define BUF_BLOCK_SLACK 1024

/* Largest value an off_t can hold (off_t is a signed integer type). */
#define BUF_OFF_MAX ((off_t)((((uintmax_t)1 << (sizeof(off_t) * 8 - 2)) - 1) * 2 + 1))

struct ferry_buf_block {
	ferry_buf_block *next;
	size_t size; /* usable bytes in data[] */
	size_t want; /* as spare: overflow bytes the last use of the buffer took */
	_Alignas(16) uint8_t data[];
};

/* Returned for zero-length ranges so callers never see NULL on success. */
static const uint8_t buf_empty[1];

/* Pointer-returning calls report failure as NULL plus errno. */
static void *buf_fail(int err)
{
	errno = err;
	return NULL;
}

/* Switch the arena to a new overflow block with room for n bytes. The spare
 * is used only if it is at least as large as everything the previous use
 * of the buffer needed; otherwise one block of that size replaces it, so a
 * buffer reused for similar work settles on a single block and stops
 * calling malloc. */
static int buf_grow(ferry_buf *b, size_t n)
{
	ferry_buf_block *spare = b->spare, *blk = spare, *x;
	size_t total = FERRY_BUF_INLINE_BYTES, size;

	if (n > SIZE_MAX / 4)
		return -ENOMEM;
	if (!spare || spare->size < n || spare->size < spare->want) {
		/* Blocks grow geometrically, so this walk is O(log bytes).
		 * Sizing the new block to the current total doubles the
		 * capacity each time. */
		for (x = b->blocks; x; x = x->next)
			total += x->size;
		size = n + BUF_BLOCK_SLACK;
		if (size < total)
			size = total;
		if (spare && size < spare->want)
			size = spare->want;
		blk = ferry__malloc(sizeof(*blk) + size);
		if (blk) {
			blk->size = size;
			if (spare)
				ferry__free(spare);
		} else if (spare && spare->size >= n) {
			blk = spare; /* a spare that fits beats failing */
		} else {
			return -ENOMEM;
		}
	}
	b->spare = NULL;
	blk->want = 0;
	blk->next = b->blocks;
	b->blocks = blk;
	b->arena_pos = blk->data;
	b->arena_left = blk->size;
	return 0;
}

/* Take n bytes aligned to align (a power of two, at most 16) from the arena,
 * opening an overflow block when the current one is short. */
static void *buf_carve(ferry_buf *b, size_t n, size_t align)
{
	size_t pad = (size_t)(-(uintptr_t)b->arena_pos) & (align - 1);
	uint8_t *p;

	assert(align && align <= 16 && !(align & (align - 1)));
	if (b->arena_left < pad || b->arena_left - pad < n) {
		if (buf_grow(b, n) != 0)
			return NULL;
		pad = 0; /* block data is 16-byte aligned */
	}
	p = b->arena_pos + pad;
	b->arena_pos = p + n;
	b->arena_left -= pad + n;
	return p;
}

static ferry_chunk *buf_new_node(ferry_buf *b, enum ferry_chunk_kind kind, size_t n)
{
	ferry_chunk *c = buf_carve(b, sizeof(*c), _Alignof(ferry_chunk));

	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->kind = (uint8_t)kind;
	c->len = n;
	return c;
}

/* A buffer-owned memory chunk of n bytes with room spare bytes in front of
 * its data. The data is carved after the node so that it ends at arena_pos,
 * which is what lets ferry_buf_alloc grow it in place later. */
static ferry_chunk *buf_new_mem(ferry_buf *b, size_t n, size_t room)
{
	ferry_chunk *c;
	uint8_t *p;

	assert(room <= UINT16_MAX);
	if (n > SIZE_MAX / 4)
		return NULL;
	c = buf_new_node(b, FERRY_CHUNK_MEM, n);
	if (!c)
		return NULL;
	p = buf_carve(b, room + n, 8);
	if (!p)
		return NULL;
	c->owned = 1;
	c->room_before = (uint16_t)room;
	c->u.data = p + room;
	return c;
}

static void buf_link_tail(ferry_buf *b, ferry_chunk *c)
{
	assert(c->len > 0);
	c->next = NULL;
	if (b->tail)
		b->tail->next = c;
	else
		b->head = c;
	b->tail = c;
	b->len += c->len;
}

/* A new non-owned chunk of n > 0 bytes, already linked at the tail. */
static ferry_chunk *buf_push(ferry_buf *b, enum ferry_chunk_kind kind, size_t n)
{
	ferry_chunk *c;

	if (n > SIZE_MAX - b->len)
		return NULL;
	c = buf_new_node(b, kind, n);
	if (c)
		buf_link_tail(b, c);
	return c;
}

/* Hand a loan back to its owner; the chunk is leaving the buffer. A file
 * region with a release callback is a loan of its fd (loan_ptr NULL). */
static void buf_release(ferry_chunk *c)
{
	if ((c->kind == FERRY_CHUNK_LOAN || c->kind == FERRY_CHUNK_FILE) && c->release)
		c->release(c->release_arg, c->loan_ptr);
}

static void buf_release_chain(ferry_chunk *c)
{
	while (c) {
		ferry_chunk *next = c->next;

		buf_release(c);
		c = next;
	}
}

static void buf_clear(ferry_buf *b)
{
	buf_release_chain(b->head);
	b->head = b->tail = b->cur = NULL;
	b->len = 0;
	b->cur_off = 0;
}

/* Drop k bytes from the front of one chunk. A loan keeps loan_ptr, which is
 * what its release callback must receive. */
static void buf_chunk_advance(ferry_chunk *c, size_t k)
{
	assert(k < c->len);
	c->len -= k;
	if (c->kind == FERRY_CHUNK_FILE) {
		c->u.file.off += (off_t)k;
		return;
	}
	c->u.data += k;
	/* The dropped bytes were this chunk's own arena bytes, so they become
	 * headroom; the counter saturates, which only under-reports room. */
	if (c->owned)
		c->room_before =
		        (uint16_t)(c->room_before + k > UINT16_MAX ? UINT16_MAX
		                                                   : c->room_before + k);
}

/* Find the chunk holding logical byte off (off < len), starting from the
 * cursor when it lies at or before off, and leave the cursor there. */
static ferry_chunk *buf_seek(ferry_buf *b, size_t off, size_t *start)
{
	ferry_chunk *c = b->head;
	size_t s = 0;

	assert(off < b->len);
	if (b->cur && b->cur_off <= off) {
		c = b->cur;
		s = b->cur_off;
	}
	for (;;) {
		assert(c);
		b->node_visits++;
		if (off - s < c->len)
			break;
		s += c->len;
		c = c->next;
	}
	b->cur = c;
	b->cur_off = s;
	*start = s;
	return c;
}

/* Copy [off, off+len) to dst, given the chunk c holding off and its start
 * offset s. The cursor follows the walk so the next lookup resumes here. */
static int buf_copy(ferry_buf *b, ferry_chunk *c, size_t s, size_t off, size_t len,
                    uint8_t *dst)
{
	size_t skip = off - s;

	for (;;) {
		size_t take = c->len - skip;
		int err;

		if (take > len)
			take = len;
		b->cur = c;
		b->cur_off = s;
		if (c->kind == FERRY_CHUNK_FILE) {
			err = ferry__pread_full(c->u.file.fd, dst, take,
			                        c->u.file.off + (off_t)skip);
			if (err)
				return err;
		} else {
			memcpy(dst, c->u.data + skip, take);
		}
		dst += take;
		len -= take;
		if (len == 0)
			return 0;
		s += c->len;
		c = c->next;
		skip = 0;
		b->node_visits++;
	}
}

FERRY_API void ferry_buf_init(ferry_buf *b)
{
	b->head = b->tail = b->cur = NULL;
	b->len = b->cur_off = 0;
	b->arena_pos = b->arena;
	b->arena_left = sizeof(b->arena);
	b->blocks = b->spare = NULL;
	b->node_visits = 0;
}

FERRY_API void ferry_buf_reset(ferry_buf *b)
{
	ferry_buf_block *blk, *next, *keep = NULL;
	size_t used = 0;

	buf_clear(b);

	/* Taking a new block always consumes or frees the spare, so a spare
	 * and blocks in use never coexist. */
	assert(!b->blocks || !b->spare);
	for (blk = b->blocks; blk; blk = blk->next) {
		used += blk->size;
		if (!keep || blk->size > keep->size)
			keep = blk;
	}
	for (blk = b->blocks; blk; blk = next) {
		next = blk->next;
		if (blk != keep)
			ferry__free(blk);
	}
	if (keep) {
		keep->next = NULL;
		keep->want = used;
		b->spare = keep;
	}
	b->blocks = NULL;
	b->arena_pos = b->arena;
	b->arena_left = sizeof(b->arena);
}

FERRY_API void ferry_buf_fini(ferry_buf *b)
{
	ferry_buf_reset(b);
	if (b->spare)
		ferry__free(b->spare);
	b->spare = NULL;
}

FERRY_API void *ferry_buf_alloc(ferry_buf *b, size_t n)
{
	ferry_chunk *t = b->tail, *c;
	uint8_t *p;

	if (n == 0)
		return b->arena_pos;
	if (n > SIZE_MAX - b->len)
		return buf_fail(ENOMEM);
	/* Consecutive small appends land in one chunk when the tail's bytes
	 * are the last thing carved from the arena. */
	if (t && t->kind == FERRY_CHUNK_MEM && t->owned &&
	    t->u.data + t->len == b->arena_pos && b->arena_left >= n) {
		p = b->arena_pos;
		b->arena_pos += n;
		b->arena_left -= n;
		t->len += n;
		b->len += n;
		return p;
	}
	c = buf_new_mem(b, n, b->head ? 0 : FERRY_BUF_HEADROOM_BYTES);
	if (!c)
		return buf_fail(ENOMEM);
	buf_link_tail(b, c);
	return c->u.data;
}

FERRY_API int ferry_buf_append(ferry_buf *b, const void *data, size_t n)
{
	void *p;

	if (n == 0)
		return 0;
	p = ferry_buf_alloc(b, n);
	if (!p)
		return -ENOMEM;
	memcpy(p, data, n);
	return 0;
}

FERRY_API int ferry_buf_append_ref(ferry_buf *b, const void *data, size_t n)
{
	ferry_chunk *c;

	if (n == 0)
		return 0;
	c = buf_push(b, FERRY_CHUNK_MEM, n);
	if (!c)
		return -ENOMEM;
	c->u.data = (uint8_t *)(uintptr_t)data;
	return 0;
}

FERRY_API int ferry_buf_append_loan(ferry_buf *b, void *data, size_t n,
                                    ferry_release_cb release, void *arg)
{
	ferry_chunk *c;

	if (n == 0) {
		if (release)
			release(arg, data);
		return 0;
	}
	c = buf_push(b, FERRY_CHUNK_LOAN, n);
	if (!c)
		return -ENOMEM;
	c->u.data = data;
	c->loan_ptr = data;
	c->release = release;
	c->release_arg = arg;
	return 0;
}

FERRY_API int ferry_buf_append_file(ferry_buf *b, int fd, off_t off, size_t n)
{
	ferry_chunk *c;

	if (fd < 0 || off < 0)
		return -EINVAL;
	/* The region's end must be representable as a file offset. */
	if ((uintmax_t)n > (uintmax_t)(BUF_OFF_MAX - off))
		return -EINVAL;
	if (n == 0)
		return 0;
	c = buf_push(b, FERRY_CHUNK_FILE, n);
	if (!c)
		return -ENOMEM;
	c->u.file.fd = fd;
	c->u.file.off = off;
	return 0;
}

FERRY_API int ferry_buf_append_file_loan(ferry_buf *b, int fd, off_t off, size_t n,
                                         ferry_release_cb release, void *arg)
{
	if (n == 0 && fd >= 0 && off >= 0) {
		if (release)
			release(arg, NULL);
		return 0;
	}
	int rc = ferry_buf_append_file(b, fd, off, n);
	if (rc == 0) {
		b->tail->release = release;
		b->tail->release_arg = arg;
	}
	return rc;
}

FERRY_API void *ferry_buf_prepend(ferry_buf *b, size_t n)
{
	ferry_chunk *h = b->head, *c;

	if (n == 0)
		return b->arena_pos;
	if (n > SIZE_MAX - b->len)
		return buf_fail(ENOMEM);
	/* Every logical offset shifts by n; the cursor chunk keeps starting
	 * at 0 only if it is the head extended in place. */
	if (h && h->kind == FERRY_CHUNK_MEM && h->owned && h->room_before >= n) {
		h->u.data -= n;
		h->room_before = (uint16_t)(h->room_before - n);
		h->len += n;
		b->len += n;
		if (b->cur && b->cur != h)
			b->cur_off += n;
		return h->u.data;
	}
	/* A new head gets headroom too: protocol layers prepend repeatedly. */
	c = buf_new_mem(b, n, FERRY_BUF_HEADROOM_BYTES);
	if (!c)
		return buf_fail(ENOMEM);
	c->next = h;
	b->head = c;
	if (!b->tail)
		b->tail = c;
	b->len += n;
	if (b->cur)
		b->cur_off += n;
	return c->u.data;
}

FERRY_API const void *ferry_buf_range(ferry_buf *b, size_t off, size_t len)
{
	ferry_chunk *c;
	uint8_t *aux;
	size_t s;
	int err;

	if (off > b->len || len > b->len - off)
		return buf_fail(ERANGE);
	if (len == 0)
		return buf_empty;
	c = buf_seek(b, off, &s);
	if (c->kind != FERRY_CHUNK_FILE && len <= c->len - (off - s))
		return c->u.data + (off - s);
	/* Aux space is arena memory outside any chunk: it lives until reset
	 * and is never part of the logical bytes. */
	aux = buf_carve(b, len, 8);
	if (!aux)
		return buf_fail(ENOMEM);
	err = buf_copy(b, c, s, off, len, aux);
	return err ? buf_fail(-err) : aux;
}

FERRY_API ssize_t ferry_buf_copy_out(ferry_buf *b, size_t off, size_t len, void *dst)
{
	ferry_chunk *c;
	size_t s;
	int err;

	if (off > b->len || len > b->len - off || len > SSIZE_MAX)
		return -ERANGE;
	if (len == 0)
		return 0;
	c = buf_seek(b, off, &s);
	err = buf_copy(b, c, s, off, len, dst);
	return err ? err : (ssize_t)len;
}

FERRY_API void ferry_buf_truncate_front(ferry_buf *b, size_t n)
{
	ferry_chunk *c;
	size_t cut;
	bool lost = false;

	if (n > b->len)
		n = b->len;
	cut = n;
	while (n > 0 && b->head->len <= n) {
		c = b->head;
		n -= c->len;
		b->len -= c->len;
		b->head = c->next;
		if (c == b->cur)
			lost = true;
		buf_release(c);
	}
	if (n > 0) {
		buf_chunk_advance(b->head, n);
		b->len -= n;
	}
	if (!b->head)
		b->tail = NULL;
	/* A surviving cursor chunk starts at or after the cut bytes unless it
	 * is the partially cut head, which now starts at 0. */
	if (lost || !b->cur) {
		b->cur = b->head;
		b->cur_off = 0;
	} else {
		b->cur_off = b->cur_off >= cut ? b->cur_off - cut : 0;
	}
}

FERRY_API void ferry_buf_truncate(ferry_buf *b, size_t len)
{
	ferry_chunk *c;
	size_t s;

	if (len >= b->len)
		return;
	if (len == 0) {
		buf_clear(b);
		return;
	}
	/* The seek leaves the cursor on the new tail, which survives. */
	c = buf_seek(b, len - 1, &s);
	buf_release_chain(c->next);
	c->next = NULL;
	c->len = len - s;
	b->tail = c;
	b->len = len;
}

FERRY_API void ferry_buf_iter_init(ferry_buf_iter *it, ferry_buf *b, size_t off,
                                   size_t len)
{
	size_t s;

	if (off > b->len)
		off = b->len;
	if (len > b->len - off)
		len = b->len - off;
	it->buf = b;
	it->chunk = NULL;
	it->chunk_skip = 0;
	it->pos = off;
	it->left = len;
	if (len == 0)
		return;
	it->chunk = buf_seek(b, off, &s);
	it->chunk_skip = off - s;
}

FERRY_API bool ferry_buf_iter_next(ferry_buf_iter *it, ferry_buf_seg *seg)
{
	ferry_buf *b = it->buf;
	ferry_chunk *c = it->chunk;
	size_t take;

	if (it->left == 0)
		return false;
	assert(c && it->chunk_skip < c->len);
	b->node_visits++;
	take = c->len - it->chunk_skip;
	if (take > it->left)
		take = it->left;
	seg->kind = c->kind;
	seg->offset = it->pos;
	seg->len = take;
	if (c->kind == FERRY_CHUNK_FILE) {
		seg->data = NULL;
		seg->fd = c->u.file.fd;
		seg->file_off = c->u.file.off + (off_t)it->chunk_skip;
	} else {
		seg->data = c->u.data + it->chunk_skip;
		seg->fd = -1;
		seg->file_off = 0;
	}
	/* Leave the cursor on this chunk so the next slice starts here. */
	b->cur = c;
	b->cur_off = it->pos - it->chunk_skip;
	it->pos += take;
	it->left -= take;
	it->chunk = c->next;
	it->chunk_skip = 0;
	return true;
}

FERRY_API size_t ferry_buf_chunk_count(const ferry_buf *b)
{
	const ferry_chunk *c;
	size_t n = 0;

	for (c = b->head; c; c = c->next)
		n++;
	return n;
}
