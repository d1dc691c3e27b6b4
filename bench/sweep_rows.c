/* ferry-bench sweep: the rows of results.csv as they are collected, every
 * slice kept, points given up after repeated failures, then each row's
 * medians and its ratio (the median of its paired slice ratios). */
#include <stdlib.h>
#include <string.h>

#include "sweep.h"

sweep_row bench_sweep_rows[SWEEP_ROWS_MAX];
int bench_sweep_nrows;

sweep_row *bench_sweep_row_get(const char *transport, const char *poll, const char *mode,
                               uint64_t size, const char *raw_ref)
{
	for (int i = 0; i < bench_sweep_nrows; i++) {
		sweep_row *w = &bench_sweep_rows[i];
		if (strcmp(w->transport, transport) == 0 && strcmp(w->poll, poll) == 0 &&
		    strcmp(w->mode, mode) == 0 && w->size == size)
			return w;
	}
	if (bench_sweep_nrows == SWEEP_ROWS_MAX)
		return NULL;
	sweep_row *w = &bench_sweep_rows[bench_sweep_nrows++];
	memset(w, 0, sizeof(*w));
	snprintf(w->transport, sizeof(w->transport), "%s", transport);
	snprintf(w->poll, sizeof(w->poll), "%s", poll);
	snprintf(w->mode, sizeof(w->mode), "%s", mode);
	w->size = size;
	w->raw_ref = raw_ref;
	return w;
}

/* A slice in which no call completed is kept for the record (results.json,
 * its errors) but not aggregated. */
void bench_sweep_row_add(sweep_row *w, const bench_result *r)
{
	if (w == NULL || w->n == SWEEP_SLICES_MAX)
		return;
	bool bad = r->ops == 0;
	w->failed[w->n] = bad;
	w->slice[w->n++] = *r;
	if (bad)
		w->nfailed++;
	else
		w->ngood++;
}

/* Was a smaller size of w's series (transport, poll, mode) given up? */
static bool sweep_series_gave_up(const sweep_row *w)
{
	for (int i = 0; i < bench_sweep_nrows; i++) {
		const sweep_row *o = &bench_sweep_rows[i];
		if (o->gave_up && o->size < w->size &&
		    strcmp(o->transport, w->transport) == 0 &&
		    strcmp(o->poll, w->poll) == 0 && strcmp(o->mode, w->mode) == 0)
			return true;
	}
	return false;
}

/* After a failed slice of w (no_result: the client gave no result line,
 * else it is in w already): give the point up after SWEEP_GIVE_UP_FAILS
 * failures with no good slice, or at once when a smaller size of the
 * series was given up (the same fault, seconds per slice again). */
void bench_sweep_row_failed(sweep_row *w, bool no_result)
{
	if (w == NULL)
		return;
	if (no_result)
		w->nfailed++;
	if (w->ngood == 0 &&
	    (w->nfailed >= SWEEP_GIVE_UP_FAILS || sweep_series_gave_up(w)))
		w->gave_up = true;
}

static int sweep_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double sweep_median(double *v, int n)
{
	if (n == 0)
		return -1;
	qsort(v, (size_t)n, sizeof(*v), sweep_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Median of one field over a row's slices (negative = unknown, skipped). */
static double sweep_field_median(const sweep_row *w, size_t off)
{
	double v[SWEEP_SLICES_MAX];
	int n = 0;
	for (int i = 0; i < w->n; i++) {
		double x = *(const double *)((const char *)&w->slice[i] + off);
		if (x >= 0 && !w->failed[i])
			v[n++] = x;
	}
	return sweep_median(v, n);
}

static void sweep_aggregate(sweep_row *w)
{
	bench_result *a = &w->agg;
	int first = 0;
	while (first < w->n - 1 && w->failed[first])
		first++;
	*a = w->slice[first];
	a->ops = a->errors = 0;
	for (int i = 0; i < w->n; i++)
		a->ops += w->slice[i].ops, a->errors += w->slice[i].errors;
#define SWEEP_MED(f) a->f = sweep_field_median(w, offsetof(bench_result, f))
	SWEEP_MED(median_us);
	SWEEP_MED(p99_us);
	SWEEP_MED(ops_per_s);
	SWEEP_MED(mb_per_s);
	SWEEP_MED(client_cpu_us_per_op);
	SWEEP_MED(server_cpu_us_per_op);
#undef SWEEP_MED
}

static sweep_row *sweep_find(const char *transport, const char *poll, const char *mode,
                             uint64_t size)
{
	for (int i = 0; i < bench_sweep_nrows; i++)
		if (strcmp(bench_sweep_rows[i].transport, transport) == 0 &&
		    strcmp(bench_sweep_rows[i].poll, poll) == 0 &&
		    strcmp(bench_sweep_rows[i].mode, mode) == 0 &&
		    bench_sweep_rows[i].size == size)
			return &bench_sweep_rows[i];
	return NULL;
}

/* Does w go into results.csv: a good slice, and a ratio where it needs one. */
bool bench_sweep_row_written(const sweep_row *w)
{
	return w->ngood > 0 && (w->raw_ref == NULL || w->ratio >= 0);
}

bool bench_sweep_row_no_baseline(const sweep_row *w)
{
	return w->raw_ref != NULL && w->ngood > 0 && w->ratio < 0;
}

/* ratio_vs_tcp from the numbers results.csv carries (see the top of this
 * file), so that it recomputes from the CSV too. */
static void sweep_vs_tcp(sweep_row *w)
{
	const sweep_row *t = sweep_find(SWEEP_TCP, w->poll, w->mode, w->size);
	w->vs_tcp = -1;
	if (t == NULL || !bench_sweep_row_written(t) || !bench_sweep_row_written(w))
		return;
	bool lat = strcmp(w->mode, "latency") == 0;
	double mine = lat ? w->agg.median_us : w->agg.mb_per_s;
	double tcp = lat ? t->agg.median_us : t->agg.mb_per_s;
	if (mine > 0 && tcp > 0)
		w->vs_tcp = lat ? tcp / mine : mine / tcp;
}

/* A row's ratio is the median of its paired ratios; its headline number is
 * the raw row's times that ratio (see the top of this file). */
void bench_sweep_finish_rows(void)
{
	for (int i = 0; i < bench_sweep_nrows; i++)
		if (bench_sweep_rows[i].n > 0)
			sweep_aggregate(&bench_sweep_rows[i]);
	for (int i = 0; i < bench_sweep_nrows; i++) {
		sweep_row *w = &bench_sweep_rows[i];
		if (w->raw_ref == NULL) {
			w->ratio = 1;
			continue;
		}
		sweep_row *raw = sweep_find(w->raw_ref, w->poll, w->mode, w->size);
		double pr[SWEEP_SLICES_MAX];
		memcpy(pr, w->pair_ratio, sizeof(pr));
		w->ratio = sweep_median(pr, w->npairs);
		if (raw == NULL || raw->ngood == 0 || w->ratio <= 0) {
			w->ratio = -1;
			continue;
		}
		if (strcmp(w->mode, "latency") == 0) {
			w->agg.median_us = raw->agg.median_us * w->ratio;
		} else {
			w->agg.mb_per_s = raw->agg.mb_per_s * w->ratio;
			w->agg.ops_per_s =
			        w->size > 0 ? w->agg.mb_per_s * 1e6 / (double)w->size
			                    : w->agg.ops_per_s;
		}
	}
	for (int i = 0; i < bench_sweep_nrows; i++)
		sweep_vs_tcp(&bench_sweep_rows[i]);
}

double bench_sweep_pair(const char *mode, const bench_result *t, const bench_result *raw)
{
	if (strcmp(mode, "latency") == 0)
		return raw->median_us > 0 && t->median_us > 0
		               ? t->median_us / raw->median_us
		               : -1;
	return raw->mb_per_s > 0 && t->mb_per_s >= 0 ? t->mb_per_s / raw->mb_per_s : -1;
}
