/* Internal allocation entry points: everything the library allocates goes
 * through the hook set with ferry_set_allocator(), so tests can count it. */
#ifndef FERRY_ALLOC_H
#define FERRY_ALLOC_H
#include <stddef.h>

void *ferry__malloc(size_t n);
void *ferry__calloc(size_t n, size_t size);
void *ferry__realloc(void *p, size_t n);
void ferry__free(void *p);

#endif
