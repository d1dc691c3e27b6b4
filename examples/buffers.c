/* ferry_buf: append, reference, prepend a header, read across chunks. */
#include <ferry/ferry.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	static const char tail[] = " world";
	ferry_buf b;
	ferry_buf_init(&b);
	ferry_buf_append(&b, "hello", 5);                 /* copied into the arena */
	ferry_buf_append_ref(&b, tail, sizeof(tail) - 1); /* referenced, not copied */
	memcpy(ferry_buf_prepend(&b, 2), "> ", 2);        /* headroom: no copy */
	const char *all = ferry_buf_range(&b, 0, ferry_buf_len(&b)); /* spans chunks */
	printf("%.*s (%zu bytes, %zu chunks)\n", (int)ferry_buf_len(&b), all,
	       ferry_buf_len(&b), ferry_buf_chunk_count(&b));
	int ok = memcmp(all, "> hello world", 13) == 0;
	ferry_buf_fini(&b);
	return ok ? 0 : 1;
}
