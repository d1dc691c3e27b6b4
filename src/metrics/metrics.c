/* Histogram helpers, snapshots (counters aggregated by name, histograms,
 * process CPU time), interval deltas and the JSON-lines dump format of
 * docs/METRICS.md. Everything here runs on demand, off the fast path. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "ferry/metrics.h"
#include "snap.h"

uint64_t ferry_hist_lower(int i)
{
	const int sub = 1 << FERRY_HIST_SUB_BITS;
	if (i < sub)
		return (uint64_t)i;
	if (i >= FERRY_HIST_BUCKETS)
		return UINT64_MAX;
	int e = (i - sub) / sub + FERRY_HIST_SUB_BITS;
	uint64_t s = (uint64_t)((i - sub) % sub);
	return ((uint64_t)sub + s) << (e - FERRY_HIST_SUB_BITS);
}

uint64_t ferry_hist_quantile(const ferry_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	uint64_t want = (uint64_t)(q * (double)h->count);
	if (want >= h->count)
		want = h->count - 1;
	uint64_t seen = 0;
	for (int i = 0; i < FERRY_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen > want) {
			uint64_t upper = ferry_hist_lower(i + 1) - 1;
			return upper < h->max ? upper : h->max;
		}
	}
	return h->max;
}

void ferry_hist_sub(ferry_hist *a, const ferry_hist *b)
{
	a->count -= b->count;
	a->sum -= b->sum;
	for (int i = 0; i < FERRY_HIST_BUCKETS; i++)
		a->buckets[i] -= b->buckets[i];
}

static uint64_t metrics_clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void snap_add(ferry_metrics_snap *s, const char *name, uint64_t v)
{
	for (int i = 0; i < s->ncounters; i++)
		if (strcmp(s->c[i].name, name) == 0) {
			s->c[i].value += v;
			return;
		}
	if (s->ncounters == SNAP_COUNTERS_MAX)
		return;
	snprintf(s->c[s->ncounters].name, SNAP_NAME_BYTES, "%s", name);
	s->c[s->ncounters++].value = v;
}

static void snap_counter_cb(void *arg, const char *name, uint64_t v)
{
	snap_add(arg, name, v);
}

static void snap_hist_cb(void *arg, const char *name, const ferry_hist *h)
{
	ferry_metrics_snap *s = arg;
	if (s->nhists == SNAP_HISTS_MAX)
		return;
	snprintf(s->h[s->nhists].name, SNAP_NAME_BYTES, "%s", name);
	s->h[s->nhists++].h = *h;
}

ferry_metrics_snap *ferry_metrics_snapshot(ferry_ctx *ctx)
{
	ferry_metrics_snap *s = ferry__calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->ts_ns = metrics_clock_ns(CLOCK_REALTIME);
	ferry_ctx_stats(ctx, snap_counter_cb, s);
	snap_add(s, "process.cpu_ns", metrics_clock_ns(CLOCK_PROCESS_CPUTIME_ID));
	ferry_ctx_histograms(ctx, snap_hist_cb, s);
	return s;
}

void ferry_metrics_snap_free(ferry_metrics_snap *s)
{
	ferry__free(s);
}

ferry_metrics_snap *ferry__metrics_snap_dup(const ferry_metrics_snap *s)
{
	ferry_metrics_snap *d = ferry__malloc(sizeof(*d));
	if (d != NULL)
		*d = *s;
	return d;
}

/* Gauges are levels, not counts: an interval keeps the later value. */
static bool metrics_is_gauge(const char *name)
{
	static const char *const gauges[] = {".loans_out",          ".rx_free",
	                                     ".max_payload",        ".conns",
	                                     ".tx_backlog_bytes",   "workers.threads",
	                                     "workers.queue_depth", "workers.busy"};
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
		size_t k = strlen(gauges[i]);
		if (n >= k && strcmp(name + n - k, gauges[i]) == 0)
			return true;
	}
	return false;
}

void ferry_metrics_snap_sub(ferry_metrics_snap *later, const ferry_metrics_snap *earlier)
{
	for (int i = 0; i < later->ncounters; i++)
		for (int j = 0;
		     j < earlier->ncounters && !metrics_is_gauge(later->c[i].name); j++)
			if (strcmp(later->c[i].name, earlier->c[j].name) == 0) {
				later->c[i].value -= earlier->c[j].value;
				break;
			}
	for (int i = 0; i < later->nhists; i++)
		for (int j = 0; j < earlier->nhists; j++)
			if (strcmp(later->h[i].name, earlier->h[j].name) == 0) {
				ferry_hist_sub(&later->h[i].h, &earlier->h[j].h);
				break;
			}
}

int ferry_metrics_snap_get(const ferry_metrics_snap *s, const char *name, uint64_t *value)
{
	for (int i = 0; i < s->ncounters; i++)
		if (strcmp(s->c[i].name, name) == 0) {
			*value = s->c[i].value;
			return 0;
		}
	return -ENOENT;
}

/* A growable text buffer for one JSON line. */
typedef struct jbuf {
	char *p;
	size_t len, cap;
	int err;
} jbuf;

static void jb_printf(jbuf *j, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void jb_printf(jbuf *j, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(j->p + j->len, j->cap - j->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			j->err = -EINVAL;
			return;
		}
		if ((size_t)n < j->cap - j->len) {
			j->len += (size_t)n;
			return;
		}
		size_t cap = j->cap * 2 + (size_t)n;
		char *np = ferry__realloc(j->p, cap);
		if (np == NULL) {
			j->err = -ENOMEM;
			return;
		}
		j->p = np;
		j->cap = cap;
	}
}

/* Names and scopes are ours ([a-z0-9_.:+=,-]), but escape anyway. */
static void jb_string(jbuf *j, const char *s)
{
	jb_printf(j, "\"");
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			jb_printf(j, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			jb_printf(j, "\\u%04x", (unsigned char)*s);
		else
			jb_printf(j, "%c", *s);
	}
	jb_printf(j, "\"");
}

static int snap_render(const ferry_metrics_snap *s, const char *scope, jbuf *j)
{
	j->cap = 4096;
	j->p = ferry__malloc(j->cap);
	if (j->p == NULL)
		return -ENOMEM;
	jb_printf(j, "{\"ts_ns\":%llu,\"scope\":", (unsigned long long)s->ts_ns);
	jb_string(j, scope != NULL ? scope : "");
	jb_printf(j, ",\"counters\":{");
	for (int i = 0; i < s->ncounters; i++) {
		jb_printf(j, i ? "," : "");
		jb_string(j, s->c[i].name);
		jb_printf(j, ":%llu", (unsigned long long)s->c[i].value);
	}
	jb_printf(j, "},\"histograms\":{");
	for (int i = 0; i < s->nhists; i++) {
		const ferry_hist *h = &s->h[i].h;
		int lo = 0, hi = -1;
		for (int b = 0; b < FERRY_HIST_BUCKETS; b++)
			if (h->buckets[b] != 0) {
				if (hi < 0)
					lo = b;
				hi = b;
			}
		jb_printf(j, i ? "," : "");
		jb_string(j, s->h[i].name);
		/* bounds are edges: bucket k holds [bounds[k], bounds[k+1]). */
		jb_printf(j, ":{\"bounds\":[");
		for (int b = lo; b <= hi + 1 && hi >= 0; b++)
			jb_printf(j, "%s%llu", b > lo ? "," : "",
			          (unsigned long long)ferry_hist_lower(b));
		jb_printf(j, "],\"counts\":[");
		for (int b = lo; b <= hi; b++)
			jb_printf(j, "%s%llu", b > lo ? "," : "",
			          (unsigned long long)h->buckets[b]);
		jb_printf(j, "]}");
	}
	jb_printf(j, "}}\n");
	return j->err;
}

int ferry_metrics_snap_json(const ferry_metrics_snap *s, const char *scope, FILE *f)
{
	jbuf j = {0};
	int rc = snap_render(s, scope, &j);
	if (rc == 0 && fwrite(j.p, 1, j.len, f) != j.len)
		rc = -EIO;
	if (rc == 0)
		rc = (int)j.len;
	ferry__free(j.p);
	return rc;
}

int ferry_metrics_snap_json_buf(const ferry_metrics_snap *s, const char *scope,
                                ferry_buf *out)
{
	jbuf j = {0};
	int rc = snap_render(s, scope, &j);
	if (rc == 0)
		rc = ferry_buf_append(out, j.p, j.len);
	if (rc == 0)
		rc = (int)j.len;
	ferry__free(j.p);
	return rc;
}

int ferry_metrics_dump(ferry_ctx *ctx, const char *scope, FILE *f)
{
	ferry_metrics_snap *s = ferry_metrics_snapshot(ctx);
	if (s == NULL)
		return -ENOMEM;
	int rc = ferry_metrics_snap_json(s, scope, f);
	ferry_metrics_snap_free(s);
	if (rc >= 0 && fflush(f) != 0)
		rc = -errno;
	return rc < 0 ? rc : 0;
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
