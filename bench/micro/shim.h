/* The C side of ferry-micro: benchmarks are plain C functions over this tiny
 * API; shim.cc wraps google benchmark's State behind it and registers every
 * entry of micro_cases[] (defined by micro.c). */
#ifndef FERRY_MICRO_SHIM_H
#define FERRY_MICRO_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct micro_state micro_state;

/* The timing loop: while (micro_keep_running(s)) { one iteration }. */
bool micro_keep_running(micro_state *s);
/* Items / bytes processed PER ITERATION (the shim multiplies by the
 * iteration count, so the report shows items_per_second / bytes_per_second).
 * Call after the loop. */
void micro_set_items(micro_state *s, int64_t per_iter);
void micro_set_bytes(micro_state *s, int64_t per_iter);
/* The i-th argument of this case (micro_case.args[i]). */
int64_t micro_arg(micro_state *s, int i);
/* Mark the run as failed/skipped with a reason; return without (or after
 * leaving) the timing loop. */
void micro_skip(micro_state *s, const char *why);
/* A user counter shown in the report (a plain value, no rate). */
void micro_counter(micro_state *s, const char *name, double v);

/* Keep the compiler from optimising away a value or memory behind p. */
static inline void micro_escape(const void *p)
{
	__asm__ __volatile__("" : : "g"(p) : "memory");
}

typedef void (*micro_fn)(micro_state *s);
struct micro_case {
	const char *name; /* google benchmark appends "/arg..." */
	micro_fn fn;
	int64_t args[4];
	int nargs;
};
extern const struct micro_case micro_cases[];
extern const int micro_ncases;

#ifdef __cplusplus
}
#endif
#endif
