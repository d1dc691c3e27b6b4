/* The allocator hook. The default is libc; ferry_set_allocator() swaps it,
 * which is how tests prove the fast path makes no allocations. */
#include <stdlib.h>
#include <string.h>

#include "ferry/rpc.h"
#include "alloc.h"

static ferry_allocator alloc_hooks = {malloc, realloc, free};

void ferry_set_allocator(const ferry_allocator *a)
{
	if (a == NULL) {
		alloc_hooks = (ferry_allocator){malloc, realloc, free};
		return;
	}
	alloc_hooks = *a;
}

void *ferry__malloc(size_t n) { return alloc_hooks.malloc_fn(n); }

void *ferry__calloc(size_t n, size_t size)
{
	if (size != 0 && n > (size_t)-1 / size)
		return NULL;
	void *p = alloc_hooks.malloc_fn(n * size);
	if (p != NULL)
		memset(p, 0, n * size);
	return p;
}

void *ferry__realloc(void *p, size_t n) { return alloc_hooks.realloc_fn(p, n); }

void ferry__free(void *p)
{
	if (p != NULL)
		alloc_hooks.free_fn(p);
}
