/* The allocator hook. The default is libc; ferry_set_allocator() swaps it,
 * which is how tests prove the fast path makes no allocations.
 *
 * The three functions are one set, published like the log hook: an atomic
 * pointer to one of two slots, installs serialised by a mutex, so a thread
 * allocating while another installs sees the old set or the new one. (Memory
 * must still be freed by the allocator that gave it: install before any
 * context exists, as rpc.h says.) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "ferry/rpc.h"

static const ferry_allocator alloc_libc = {malloc, realloc, free};
static ferry_allocator alloc_slots[2];
static _Atomic(const ferry_allocator *) alloc_cur = &alloc_libc;
static pthread_mutex_t alloc_set_lock = PTHREAD_MUTEX_INITIALIZER;

void ferry_set_allocator(const ferry_allocator *a)
{
	pthread_mutex_lock(&alloc_set_lock);
	const ferry_allocator *next = &alloc_libc;
	if (a != NULL) {
		const ferry_allocator *old =
		        atomic_load_explicit(&alloc_cur, memory_order_relaxed);
		ferry_allocator *slot =
		        old == &alloc_slots[0] ? &alloc_slots[1] : &alloc_slots[0];
		*slot = *a;
		next = slot;
	}
	atomic_store_explicit(&alloc_cur, next, memory_order_release);
	pthread_mutex_unlock(&alloc_set_lock);
}

static const ferry_allocator *alloc_hooks(void)
{
	return atomic_load_explicit(&alloc_cur, memory_order_acquire);
}

void *ferry__malloc(size_t n)
{
	return alloc_hooks()->malloc_fn(n);
}

void *ferry__calloc(size_t n, size_t size)
{
	if (size != 0 && n > (size_t)-1 / size)
		return NULL;
	void *p = alloc_hooks()->malloc_fn(n * size);
	if (p != NULL)
		memset(p, 0, n * size);
	return p;
}

void *ferry__realloc(void *p, size_t n)
{
	return alloc_hooks()->realloc_fn(p, n);
}

void ferry__free(void *p)
{
	if (p != NULL)
		alloc_hooks()->free_fn(p);
}
