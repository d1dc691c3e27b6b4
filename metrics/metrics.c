/* Metric dumps: the context's counters as "name value" lines (the format
 * plots/ reads), and lookup of one counter by name. */
#include <errno.h>
#include <string.h>

#include "ferry/metrics.h"

struct metrics_dump {
	FILE *f;
	int err;
};

static void metrics_dump_one(void *arg, const char *name, uint64_t value)
{
	struct metrics_dump *d = arg;
	if (fprintf(d->f, "%s %llu\n", name, (unsigned long long)value) < 0)
		d->err = -EIO;
}

int ferry_metrics_dump(ferry_ctx *ctx, FILE *f)
{
	struct metrics_dump d = {f, 0};
	ferry_ctx_stats(ctx, metrics_dump_one, &d);
	if (fflush(f) != 0)
		d.err = -errno;
	return d.err;
}

struct metrics_find {
	const char *name;
	uint64_t value;
	int found;
};

static void metrics_find_one(void *arg, const char *name, uint64_t value)
{
	struct metrics_find *m = arg;
	if (strcmp(m->name, name) == 0) {
		m->value += value;
		m->found = 1;
	}
}

int ferry_metrics_get(ferry_ctx *ctx, const char *name, uint64_t *value)
{
	struct metrics_find m = {name, 0, 0};
	ferry_ctx_stats(ctx, metrics_find_one, &m);
	if (!m.found)
		return -ENOENT;
	*value = m.value;
	return 0;
}
