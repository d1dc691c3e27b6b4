/* Unit tests for ferry_buf: edge cases of every call, loan accounting,
 * headroom and contiguity guarantees, a randomised comparison against a flat
 * reference array, and proofs that iteration and sequential slicing cost
 * O(1) chunk visits per chunk whatever the chunk count. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/buf.h"

#define POOL_BYTES 65536

/* Stable source bytes for append_ref, and the contents of the test file. */
static uint8_t mem_pool[POOL_BYTES];
static uint8_t file_pool[POOL_BYTES];

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic per seed, good enough for test inputs. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static size_t rng_below(size_t n)
{
	return n ? (size_t)(rng() % n) : 0;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng();
}

/* A file holding file_pool, for FILE chunks. */
static int make_file(void)
{
	FILE *f = tmpfile();
	int fd;

	assert_non_null(f);
	fd = dup(fileno(f));
	fclose(f);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, file_pool, POOL_BYTES, 0), POOL_BYTES);
	return fd;
}

struct loan {
	uint8_t *ptr;
	size_t len;
	int released;
};

/* Counts releases and poisons the memory, so a read after release shows up
 * as a mismatch against the reference. */
static void loan_release(void *arg, void *data)
{
	struct loan *l = arg;

	assert_ptr_equal(data, l->ptr);
	l->released++;
	memset(l->ptr, 0xEE, l->len);
}

/* Concatenate what an iterator yields over [off, off+len), checking that
 * segments are non-empty, contiguous and well formed. Returns the count. */
static size_t iter_collect(ferry_buf *b, size_t off, size_t len, uint8_t *out)
{
	ferry_buf_iter it;
	ferry_buf_seg seg;
	size_t got = 0;

	ferry_buf_iter_init(&it, b, off, len);
	while (ferry_buf_iter_next(&it, &seg)) {
		assert_true(seg.len > 0);
		assert_int_equal(seg.offset, off + got);
		if (seg.kind == FERRY_CHUNK_FILE) {
			assert_null(seg.data);
			assert_int_equal(pread(seg.fd, out + got, seg.len, seg.file_off),
			                 (ssize_t)seg.len);
		} else {
			assert_non_null(seg.data);
			memcpy(out + got, seg.data, seg.len);
		}
		got += seg.len;
	}
	assert_false(ferry_buf_iter_next(&it, &seg));
	return got;
}

static void test_empty(void **state)
{
	ferry_buf b;
	ferry_buf_iter it;
	ferry_buf_seg seg;
	uint8_t x = 0;

	(void)state;
	ferry_buf_init(&b);
	assert_int_equal(ferry_buf_len(&b), 0);
	assert_int_equal(ferry_buf_chunk_count(&b), 0);
	assert_non_null(ferry_buf_range(&b, 0, 0));
	errno = 0;
	assert_null(ferry_buf_range(&b, 0, 1));
	assert_int_equal(errno, ERANGE);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 0, &x), 0);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 1, &x), -ERANGE);
	ferry_buf_iter_init(&it, &b, 0, 100);
	assert_false(ferry_buf_iter_next(&it, &seg));
	ferry_buf_iter_init(&it, &b, 5, 0);
	assert_false(ferry_buf_iter_next(&it, &seg));
	ferry_buf_truncate(&b, 0);
	ferry_buf_truncate(&b, 10);
	ferry_buf_truncate_front(&b, 0);
	ferry_buf_truncate_front(&b, 10);
	assert_non_null(ferry_buf_alloc(&b, 0));
	assert_non_null(ferry_buf_prepend(&b, 0));
	assert_int_equal(ferry_buf_append(&b, NULL, 0), 0);
	assert_int_equal(ferry_buf_append_ref(&b, NULL, 0), 0);
	assert_int_equal(ferry_buf_append_file(&b, 0, 0, 0), 0);
	assert_int_equal(ferry_buf_append_file(&b, -1, 0, 10), -EINVAL);
	assert_int_equal(ferry_buf_append_file(&b, 0, -1, 10), -EINVAL);
	assert_int_equal(ferry_buf_len(&b), 0);
	assert_int_equal(ferry_buf_chunk_count(&b), 0);
	ferry_buf_reset(&b);
	ferry_buf_reset(&b);
	assert_int_equal(ferry_buf_len(&b), 0);
	ferry_buf_fini(&b);
	ferry_buf_fini(&b);
}

static void test_alloc_grows_tail(void **state)
{
	ferry_buf b;
	uint8_t *p, *q, out[64];

	(void)state;
	ferry_buf_init(&b);
	p = ferry_buf_alloc(&b, 10);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % 8, 0);
	memset(p, 'a', 10);
	q = ferry_buf_alloc(&b, 7);
	assert_ptr_equal(q, p + 10);
	memset(q, 'b', 7);
	assert_int_equal(ferry_buf_append(&b, "ccc", 3), 0);
	assert_int_equal(ferry_buf_chunk_count(&b), 1);
	assert_int_equal(ferry_buf_len(&b), 20);

	/* A reference at the tail forces the next alloc into a new chunk. */
	assert_int_equal(ferry_buf_append_ref(&b, "REF", 3), 0);
	q = ferry_buf_alloc(&b, 5);
	assert_non_null(q);
	assert_int_equal((uintptr_t)q % 8, 0);
	memcpy(q, "ddddd", 5);
	assert_int_equal(ferry_buf_chunk_count(&b), 3);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 28, out), 28);
	assert_memory_equal(out, "aaaaaaaaaabbbbbbbcccREFddddd", 28);
	ferry_buf_fini(&b);
}

static void test_headroom(void **state)
{
	ferry_buf b;
	uint8_t payload[100], out[400], *h;

	(void)state;
	ferry_buf_init(&b);
	memset(payload, 'p', sizeof(payload));
	assert_int_equal(ferry_buf_append(&b, payload, sizeof(payload)), 0);
	assert_int_equal(ferry_buf_chunk_count(&b), 1);

	/* Two headers that together fill the headroom exactly: no new chunk,
	 * and each lands just before the previous front. */
	h = ferry_buf_prepend(&b, 28);
	assert_non_null(h);
	memset(h, 'x', 28);
	h = ferry_buf_prepend(&b, FERRY_BUF_HEADROOM_BYTES - 28);
	assert_non_null(h);
	memset(h, 'y', FERRY_BUF_HEADROOM_BYTES - 28);
	assert_int_equal(ferry_buf_chunk_count(&b), 1);
	assert_int_equal(ferry_buf_len(&b), 100 + FERRY_BUF_HEADROOM_BYTES);
	assert_int_equal(ferry_buf_copy_out(&b, 0, ferry_buf_len(&b), out),
	                 (ssize_t)ferry_buf_len(&b));
	for (size_t i = 0; i < FERRY_BUF_HEADROOM_BYTES - 28; i++)
		assert_int_equal(out[i], 'y');
	for (size_t i = FERRY_BUF_HEADROOM_BYTES - 28; i < FERRY_BUF_HEADROOM_BYTES; i++)
		assert_int_equal(out[i], 'x');
	assert_memory_equal(out + FERRY_BUF_HEADROOM_BYTES, payload, 100);
	/* The whole thing is still one contiguous chunk. */
	assert_ptr_equal(ferry_buf_range(&b, 0, ferry_buf_len(&b)), h);

	/* Headroom exhausted: the next prepend adds a chunk at the head. */
	h = ferry_buf_prepend(&b, 1);
	assert_non_null(h);
	*h = 'z';
	assert_int_equal(ferry_buf_chunk_count(&b), 2);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 2, out), 2);
	assert_memory_equal(out, "zy", 2);

	/* Truncating the front gives the bytes back as headroom. */
	ferry_buf_reset(&b);
	assert_int_equal(ferry_buf_append(&b, payload, sizeof(payload)), 0);
	ferry_buf_truncate_front(&b, 50);
	h = ferry_buf_prepend(&b, FERRY_BUF_HEADROOM_BYTES + 50);
	assert_non_null(h);
	assert_int_equal(ferry_buf_chunk_count(&b), 1);
	/* ... but not one byte more than that. */
	assert_non_null(ferry_buf_prepend(&b, 1));
	assert_int_equal(ferry_buf_chunk_count(&b), 2);
	ferry_buf_fini(&b);
}

static void test_prepend_before_ref(void **state)
{
	ferry_buf b;
	uint8_t out[16], *h;

	(void)state;
	ferry_buf_init(&b);
	assert_int_equal(ferry_buf_append_ref(&b, "payload", 7), 0);
	h = ferry_buf_prepend(&b, 2);
	memcpy(h, "H2", 2);
	h = ferry_buf_prepend(&b, 2);
	memcpy(h, "H1", 2);
	assert_int_equal(ferry_buf_chunk_count(&b), 2);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 11, out), 11);
	assert_memory_equal(out, "H1H2payload", 11);
	ferry_buf_fini(&b);
}

static void test_range_contiguity(void **state)
{
	ferry_buf b;
	const uint8_t *r;
	uint8_t *a;

	(void)state;
	ferry_buf_init(&b);
	assert_int_equal(ferry_buf_append_ref(&b, mem_pool, 100), 0);
	assert_int_equal(ferry_buf_append_ref(&b, mem_pool + 1000, 50), 0);
	a = ferry_buf_alloc(&b, 30);
	memcpy(a, mem_pool + 2000, 30);

	/* Ranges inside one chunk point straight into it. */
	assert_ptr_equal(ferry_buf_range(&b, 0, 100), mem_pool);
	assert_ptr_equal(ferry_buf_range(&b, 10, 20), mem_pool + 10);
	assert_ptr_equal(ferry_buf_range(&b, 100, 50), mem_pool + 1000);
	assert_ptr_equal(ferry_buf_range(&b, 149, 1), mem_pool + 1049);
	assert_ptr_equal(ferry_buf_range(&b, 150, 30), a);
	assert_ptr_equal(ferry_buf_range(&b, 165, 15), a + 15);
	/* Going backwards from the cursor still finds the right chunk. */
	assert_ptr_equal(ferry_buf_range(&b, 5, 1), mem_pool + 5);

	/* Spanning ranges are copied; the copy is correct and separate. */
	r = ferry_buf_range(&b, 90, 80);
	assert_non_null(r);
	assert_ptr_not_equal(r, mem_pool + 90);
	assert_memory_equal(r, mem_pool + 90, 10);
	assert_memory_equal(r + 10, mem_pool + 1000, 50);
	assert_memory_equal(r + 60, mem_pool + 2000, 20);
	/* Aux space is not logical data. */
	assert_int_equal(ferry_buf_len(&b), 180);
	assert_int_equal(ferry_buf_chunk_count(&b), 3);
	r = ferry_buf_range(&b, 0, 180);
	assert_non_null(r);
	assert_memory_equal(r, mem_pool, 100);
	ferry_buf_fini(&b);
}

static void test_erange(void **state)
{
	ferry_buf b;
	uint8_t out[16];

	(void)state;
	ferry_buf_init(&b);
	assert_int_equal(ferry_buf_append(&b, "0123456789", 10), 0);
	assert_non_null(ferry_buf_range(&b, 10, 0));
	assert_non_null(ferry_buf_range(&b, 0, 10));
	errno = 0;
	assert_null(ferry_buf_range(&b, 10, 1));
	assert_int_equal(errno, ERANGE);
	errno = 0;
	assert_null(ferry_buf_range(&b, 11, 0));
	assert_int_equal(errno, ERANGE);
	errno = 0;
	assert_null(ferry_buf_range(&b, 5, SIZE_MAX));
	assert_int_equal(errno, ERANGE);
	errno = 0;
	assert_null(ferry_buf_range(&b, SIZE_MAX, 2));
	assert_int_equal(errno, ERANGE);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 11, out), -ERANGE);
	assert_int_equal(ferry_buf_copy_out(&b, 9, 2, out), -ERANGE);
	assert_int_equal(ferry_buf_copy_out(&b, SIZE_MAX, 1, out), -ERANGE);
	assert_int_equal(ferry_buf_copy_out(&b, 10, 0, out), 0);
	assert_int_equal(ferry_buf_copy_out(&b, 3, 4, out), 4);
	assert_memory_equal(out, "3456", 4);
	ferry_buf_fini(&b);
}

static void test_loans(void **state)
{
	ferry_buf b;
	struct loan l[4];
	uint8_t mem[4][32], out[128];

	(void)state;
	for (int i = 0; i < 4; i++) {
		memset(mem[i], 'A' + i, sizeof(mem[i]));
		l[i] = (struct loan){mem[i], sizeof(mem[i]), 0};
	}
	ferry_buf_init(&b);

	/* A zero-length loan is released at once and adds nothing. */
	assert_int_equal(ferry_buf_append_loan(&b, mem[3], 0, loan_release, &l[3]), 0);
	assert_int_equal(l[3].released, 1);
	assert_int_equal(ferry_buf_chunk_count(&b), 0);

	for (int i = 0; i < 3; i++)
		assert_int_equal(
		        ferry_buf_append_loan(&b, mem[i], 32, loan_release, &l[i]), 0);
	assert_int_equal(ferry_buf_len(&b), 96);

	/* Partial truncation at either end releases nothing. */
	ferry_buf_truncate_front(&b, 10);
	ferry_buf_truncate(&b, 80);
	for (int i = 0; i < 3; i++)
		assert_int_equal(l[i].released, 0);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 80, out), 80);
	for (int i = 0; i < 22; i++)
		assert_int_equal(out[i], 'A');
	for (int i = 22; i < 54; i++)
		assert_int_equal(out[i], 'B');
	for (int i = 54; i < 80; i++)
		assert_int_equal(out[i], 'C');

	/* Removing the rest of the first loan releases it with the pointer it
	 * was appended with, not the advanced one. */
	ferry_buf_truncate_front(&b, 22);
	assert_int_equal(l[0].released, 1);
	assert_int_equal(l[1].released, 0);
	/* Removing the last loan wholly from the back releases it. */
	ferry_buf_truncate(&b, 32);
	assert_int_equal(l[2].released, 1);
	assert_int_equal(l[1].released, 0);
	ferry_buf_truncate(&b, 32);
	ferry_buf_truncate_front(&b, 0);
	assert_int_equal(l[1].released, 0);

	/* Reset releases what is left, exactly once. */
	ferry_buf_reset(&b);
	ferry_buf_reset(&b);
	for (int i = 0; i < 4; i++)
		assert_int_equal(l[i].released, 1);

	/* Truncating to zero and fini release too. */
	for (int i = 0; i < 2; i++) {
		l[i] = (struct loan){mem[i], sizeof(mem[i]), 0};
		assert_int_equal(
		        ferry_buf_append_loan(&b, mem[i], 32, loan_release, &l[i]), 0);
	}
	ferry_buf_truncate(&b, 0);
	assert_int_equal(l[0].released, 1);
	assert_int_equal(l[1].released, 1);
	l[0] = (struct loan){mem[0], sizeof(mem[0]), 0};
	assert_int_equal(ferry_buf_append_loan(&b, mem[0], 32, loan_release, &l[0]), 0);
	ferry_buf_fini(&b);
	assert_int_equal(l[0].released, 1);
}

static void test_file_chunks(void **state)
{
	ferry_buf b;
	const uint8_t *r;
	uint8_t out[300];
	int fd = make_file();

	(void)state;
	ferry_buf_init(&b);
	assert_int_equal(ferry_buf_append(&b, mem_pool, 50), 0);
	assert_int_equal(ferry_buf_append_file(&b, fd, 1000, 100), 0);
	assert_int_equal(ferry_buf_append(&b, mem_pool + 50, 50), 0);
	assert_int_equal(ferry_buf_chunk_count(&b), 3);

	/* A range inside a file chunk is never direct: it is read. */
	r = ferry_buf_range(&b, 60, 20);
	assert_non_null(r);
	assert_memory_equal(r, file_pool + 1010, 20);
	r = ferry_buf_range(&b, 40, 120);
	assert_non_null(r);
	assert_memory_equal(r, mem_pool + 40, 10);
	assert_memory_equal(r + 10, file_pool + 1000, 100);
	assert_memory_equal(r + 110, mem_pool + 50, 10);
	ferry_buf_truncate_front(&b, 70);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 80, out), 80);
	assert_memory_equal(out, file_pool + 1020, 80);

	/* A region past end of file is an I/O error when read. */
	ferry_buf_reset(&b);
	assert_int_equal(ferry_buf_append_file(&b, fd, POOL_BYTES - 10, 20), 0);
	errno = 0;
	assert_null(ferry_buf_range(&b, 0, 20));
	assert_int_equal(errno, EIO);
	assert_int_equal(ferry_buf_copy_out(&b, 5, 10, out), -EIO);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 10, out), 10);
	assert_memory_equal(out, file_pool + POOL_BYTES - 10, 10);
	ferry_buf_fini(&b);
	close(fd);
}

static void test_large_and_reuse(void **state)
{
	ferry_buf b;
	uint8_t *big = malloc(300000), *out = malloc(300000);
	ferry_buf_block *spare = NULL;

	(void)state;
	assert_non_null(big);
	assert_non_null(out);
	fill_random(big, 300000);
	ferry_buf_init(&b);
	for (int round = 0; round < 5; round++) {
		size_t off = 0;

		/* The same workload every round, as a reused buffer would see. */
		rng_state = 0x1234567ULL;

		/* Mixed sizes overflow the inline arena several times over. */
		while (off < 300000) {
			size_t n = 1 + rng_below(9000);

			if (n > 300000 - off)
				n = 300000 - off;
			assert_int_equal(ferry_buf_append(&b, big + off, n), 0);
			off += n;
		}
		assert_int_equal(ferry_buf_len(&b), 300000);
		assert_int_equal(ferry_buf_copy_out(&b, 0, 300000, out), 300000);
		assert_memory_equal(out, big, 300000);
		/* After one warm-up round the spare alone holds the workload:
		 * the spare is only ever taken as the first block, so finding
		 * it as the most recent block means no other was needed. */
		if (round > 1)
			assert_ptr_equal(b.blocks, spare);
		ferry_buf_reset(&b);
		assert_int_equal(ferry_buf_len(&b), 0);
		assert_null(b.blocks);
		assert_non_null(b.spare);
		spare = b.spare;
	}
	ferry_buf_fini(&b);
	assert_null(b.spare);
	free(big);
	free(out);
}

static void count_release(void *arg, void *data)
{
	assert_null(data);
	(*(int *)arg)++;
}

/* A file region with a release callback: released exactly once, when the
 * chunk leaves (partial front truncation keeps it; a cut through it or a
 * reset drops it), at once for n == 0, never on failure. */
static void test_file_loan(void **state)
{
	(void)state;
	ferry_buf b;
	int a = 0, c = 0, z = 0, bad = 0;
	ferry_buf_init(&b);
	assert_int_equal(ferry_buf_append(&b, "hdr", 3), 0);
	assert_int_equal(ferry_buf_append_file_loan(&b, 0, 100, 50, count_release, &a),
	                 0);
	assert_int_equal(ferry_buf_append_file_loan(&b, 0, 0, 0, count_release, &z), 0);
	assert_int_equal(z, 1);
	assert_int_equal(ferry_buf_append_file_loan(&b, -1, 0, 10, count_release, &bad),
	                 -EINVAL);
	assert_int_equal(bad, 0);
	assert_int_equal(ferry_buf_append_file_loan(&b, 0, 200, 20, count_release, &c),
	                 0);
	assert_int_equal(ferry_buf_len(&b), 73);
	ferry_buf_truncate_front(&b, 13); /* into the first region: it stays */
	assert_int_equal(a, 0);
	ferry_buf_truncate(&b, 40); /* drops the second region only */
	assert_int_equal(c, 1);
	assert_int_equal(a, 0);
	ferry_buf_reset(&b);
	assert_int_equal(a, 1);
	assert_int_equal(c, 1);
	ferry_buf_fini(&b);
	assert_int_equal(a, 1);
}

static void test_cursor_after_truncation(void **state)
{
	ferry_buf b;
	uint8_t out[8];

	(void)state;
	ferry_buf_init(&b);
	for (int i = 0; i < 10; i++)
		assert_int_equal(ferry_buf_append_ref(&b, mem_pool + 10 * i, 10), 0);
	/* Park the cursor on chunk 7, then cut it away from either side. */
	assert_ptr_equal(ferry_buf_range(&b, 75, 2), mem_pool + 75);
	ferry_buf_truncate_front(&b, 80);
	assert_ptr_equal(ferry_buf_range(&b, 0, 10), mem_pool + 80);
	assert_ptr_equal(ferry_buf_range(&b, 15, 5), mem_pool + 95);
	ferry_buf_truncate(&b, 12);
	assert_int_equal(ferry_buf_copy_out(&b, 8, 4, out), 4);
	assert_memory_equal(out, mem_pool + 88, 4);
	/* Park the cursor beyond a prepend, which shifts every offset. */
	assert_ptr_equal(ferry_buf_range(&b, 11, 1), mem_pool + 91);
	memset(ferry_buf_prepend(&b, 3), 'h', 3);
	assert_ptr_equal(ferry_buf_range(&b, 13, 2), mem_pool + 90);
	assert_int_equal(ferry_buf_copy_out(&b, 0, 5, out), 5);
	assert_memory_equal(out, "hhh", 3);
	assert_memory_equal(out + 3, mem_pool + 80, 2);
	ferry_buf_fini(&b);
}

/* Random operation sequences checked byte for byte against a flat array. */
static void run_random(uint64_t seed, int steps)
{
	enum { REF_CAP = 1 << 20, MAX_LOANS = 4096 };
	uint8_t *ref = malloc(REF_CAP), *tmp = malloc(REF_CAP);
	struct loan *loans = calloc(MAX_LOANS, sizeof(*loans));
	size_t ref_len = 0, nloans = 0;
	ferry_buf b;
	int fd = make_file();

	assert_non_null(ref);
	assert_non_null(tmp);
	assert_non_null(loans);
	rng_state = seed;
	ferry_buf_init(&b);
	for (int step = 0; step < steps; step++) {
		unsigned op = (unsigned)rng_below(100);
		size_t n, off;

		/* Keep the reference bounded by trimming big buffers often, and
		 * reset rarely so buffers grow to many chunks in between. */
		if (ref_len > 200000)
			op = 60;
		else if (rng_below(400) == 0)
			op = 100;
		if (op < 12) {
			n = rng_below(8) ? rng_below(300) : rng_below(5000);
			fill_random(tmp, n);
			assert_int_equal(ferry_buf_append(&b, tmp, n), 0);
			memcpy(ref + ref_len, tmp, n);
			ref_len += n;
		} else if (op < 22) {
			n = rng_below(400);
			off = rng_below(POOL_BYTES - n);
			assert_int_equal(ferry_buf_append_ref(&b, mem_pool + off, n), 0);
			memcpy(ref + ref_len, mem_pool + off, n);
			ref_len += n;
		} else if (op < 30 && nloans < MAX_LOANS) {
			struct loan *l = &loans[nloans++];

			n = rng_below(400);
			l->ptr = malloc(n ? n : 1);
			l->len = n;
			assert_non_null(l->ptr);
			fill_random(l->ptr, n);
			memcpy(ref + ref_len, l->ptr, n);
			assert_int_equal(
			        ferry_buf_append_loan(&b, l->ptr, n, loan_release, l), 0);
			assert_int_equal(l->released, n == 0);
			ref_len += n;
		} else if (op < 36) {
			n = rng_below(600);
			off = rng_below(POOL_BYTES - n);
			assert_int_equal(ferry_buf_append_file(&b, fd, (off_t)off, n), 0);
			memcpy(ref + ref_len, file_pool + off, n);
			ref_len += n;
		} else if (op < 44) {
			uint8_t *p;

			n = rng_below(4) ? rng_below(64) : rng_below(400);
			p = ferry_buf_prepend(&b, n);
			assert_non_null(p);
			fill_random(p, n);
			memmove(ref + n, ref, ref_len);
			memcpy(ref, p, n);
			ref_len += n;
		} else if (op < 54) {
			uint8_t *p;

			n = rng_below(8) ? rng_below(200) : rng_below(4000);
			p = ferry_buf_alloc(&b, n);
			assert_non_null(p);
			fill_random(p, n);
			memcpy(ref + ref_len, p, n);
			ref_len += n;
		} else if (op < 62) {
			n = rng_below(8) ? rng_below(300) : rng_below(ref_len + 20);
			ferry_buf_truncate_front(&b, n);
			if (n > ref_len)
				n = ref_len;
			memmove(ref, ref + n, ref_len - n);
			ref_len -= n;
		} else if (op < 67) {
			n = ref_len - rng_below(300);
			if (n > ref_len || rng_below(8) == 0)
				n = rng_below(ref_len + 1);
			ferry_buf_truncate(&b, n);
			ref_len = n;
		} else if (op < 78) {
			const uint8_t *r;

			off = rng_below(ref_len + 2);
			n = rng_below(rng_below(4) ? 64 : ref_len + 2);
			errno = 0;
			r = ferry_buf_range(&b, off, n);
			if (off + n > ref_len) {
				assert_null(r);
				assert_int_equal(errno, ERANGE);
			} else {
				assert_non_null(r);
				if (n)
					assert_memory_equal(r, ref + off, n);
			}
		} else if (op < 86) {
			ssize_t got;

			off = rng_below(ref_len + 2);
			n = rng_below(ref_len + 2);
			got = ferry_buf_copy_out(&b, off, n, tmp);
			if (off + n > ref_len) {
				assert_int_equal(got, -ERANGE);
			} else {
				assert_int_equal(got, (ssize_t)n);
				if (n)
					assert_memory_equal(tmp, ref + off, n);
			}
		} else if (op < 100) {
			size_t got, want;

			off = rng_below(ref_len + 3);
			n = rng_below(ref_len + 3);
			want = off > ref_len ? 0
			                     : (n > ref_len - off ? ref_len - off : n);
			got = iter_collect(&b, off, n, tmp);
			assert_int_equal(got, want);
			if (want)
				assert_memory_equal(tmp, ref + off, want);
		} else {
			ferry_buf_reset(&b);
			ref_len = 0;
			for (size_t i = 0; i < nloans; i++)
				assert_int_equal(loans[i].released, 1);
		}
		assert_int_equal(ferry_buf_len(&b), ref_len);
		for (size_t i = 0; i < nloans; i++)
			assert_true(loans[i].released <= 1);
	}
	/* Everything still held must match, then reset settles every loan. */
	assert_int_equal(iter_collect(&b, 0, SIZE_MAX, tmp), ref_len);
	if (ref_len)
		assert_memory_equal(tmp, ref, ref_len);
	ferry_buf_fini(&b);
	for (size_t i = 0; i < nloans; i++) {
		assert_int_equal(loans[i].released, 1);
		free(loans[i].ptr);
	}
	close(fd);
	free(loans);
	free(ref);
	free(tmp);
}

static void test_random_vs_reference(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 8; seed++)
		run_random(seed * 0x9E3779B97F4A7C15ULL, 2000);
}

struct o1_cost {
	double build_iter; /* visits per chunk: appending + one full iteration */
	double slicing;    /* visits per chunk: sequential 1000-byte slices */
	double copying;    /* visits per chunk: sequential 1000-byte copy_out */
};

/* Build n one-byte reference chunks, then measure chunk-node visits per
 * chunk for a full iteration and for slicing with fresh iterators. */
static struct o1_cost measure_o1(ferry_buf *b, size_t n)
{
	struct o1_cost cost;
	ferry_buf_iter it;
	ferry_buf_seg seg;
	uint64_t v0, v1;
	size_t seen = 0;

	ferry_buf_reset(b);
	v0 = b->node_visits;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ferry_buf_append_ref(b, mem_pool + i % POOL_BYTES, 1),
		                 0);
	/* Appends go through the tail pointer: no walking at all. */
	assert_int_equal(b->node_visits, v0);
	assert_int_equal(ferry_buf_len(b), n);
	ferry_buf_iter_init(&it, b, 0, n);
	while (ferry_buf_iter_next(&it, &seg)) {
		assert_int_equal(seg.len, 1);
		assert_ptr_equal(seg.data, mem_pool + seen % POOL_BYTES);
		seen++;
	}
	assert_int_equal(seen, n);
	v1 = b->node_visits;
	cost.build_iter = (double)(v1 - v0) / (double)n;

	/* Fragmentation-style slicing: a fresh iterator per slice. */
	seen = 0;
	for (size_t off = 0; off < n; off += 1000) {
		ferry_buf_iter_init(&it, b, off, 1000);
		while (ferry_buf_iter_next(&it, &seg)) {
			assert_int_equal(seg.offset, seen);
			seen++;
		}
	}
	assert_int_equal(seen, n);
	v0 = b->node_visits;
	cost.slicing = (double)(v0 - v1) / (double)n;

	/* The same slicing through copy_out, which must move the cursor too. */
	for (size_t off = 0; off < n; off += 1000) {
		uint8_t out[1000];
		size_t len = n - off < 1000 ? n - off : 1000;

		assert_int_equal(ferry_buf_copy_out(b, off, len, out), (ssize_t)len);
		assert_int_equal(out[0], mem_pool[off % POOL_BYTES]);
	}
	cost.copying = (double)(b->node_visits - v0) / (double)n;
	return cost;
}

static void assert_within_10pct(double a, double b)
{
	double lo = b * 0.9, hi = b * 1.1;

	if (a < lo || a > hi)
		fail_msg("per-chunk visits %.4f vs %.4f differ by more than 10%%", a, b);
}

static void test_o1_amortised(void **state)
{
	enum { N = 100000 };
	ferry_buf *b = malloc(sizeof(*b));
	struct o1_cost small, large;

	(void)state;
	assert_non_null(b);
	ferry_buf_init(b);
	small = measure_o1(b, N);
	large = measure_o1(b, 8 * N);
	/* Equal per-chunk cost at N and 8N is what O(1) amortised means; the
	 * absolute bound also rules out a constant but large factor. */
	assert_within_10pct(large.build_iter, small.build_iter);
	assert_within_10pct(large.slicing, small.slicing);
	assert_within_10pct(large.copying, small.copying);
	assert_true(small.build_iter < 1.1);
	assert_true(small.slicing < 1.1);
	assert_true(small.copying < 1.1);
	ferry_buf_fini(b);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_empty),
	        cmocka_unit_test(test_alloc_grows_tail),
	        cmocka_unit_test(test_headroom),
	        cmocka_unit_test(test_prepend_before_ref),
	        cmocka_unit_test(test_range_contiguity),
	        cmocka_unit_test(test_erange),
	        cmocka_unit_test(test_loans),
	        cmocka_unit_test(test_file_chunks),
	        cmocka_unit_test(test_large_and_reuse),
	        cmocka_unit_test(test_file_loan),
	        cmocka_unit_test(test_cursor_after_truncation),
	        cmocka_unit_test(test_random_vs_reference),
	        cmocka_unit_test(test_o1_amortised),
	};

	rng_state = 0x2545F4914F6CDD1DULL;
	fill_random(mem_pool, sizeof(mem_pool));
	fill_random(file_pool, sizeof(file_pool));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
