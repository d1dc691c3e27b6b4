/* ferry-bench sweep: where a long run is, on stderr. On a terminal, one
 * progress bar redrawn in place as each slice starts; otherwise (a log, a
 * pipe) one line per finished point with the time spent and an estimate of
 * the time left, from the slices done so far. */
#include <stdio.h>

#include "sweep.h"

#define SWEEP_BAR_CELLS 20

char *bench_sweep_duration(double s, char *buf, size_t len)
{
	unsigned long t = s > 0 ? (unsigned long)(s + 0.5) : 0;
	if (t < 60)
		snprintf(buf, len, "%lus", t);
	else if (t < 3600)
		snprintf(buf, len, "%lum%02lus", t / 60, t % 60);
	else
		snprintf(buf, len, "%luh%02lum", t / 3600, t / 60 % 60);
	return buf;
}

/* Seconds since the start and, when any slice is done, an estimate of the
 * seconds left (the mean slice time so far); -1 when there is none yet. */
static double sweep_progress_times(const sweep_progress *pg, double *left)
{
	double spent = (double)(bench_now_ns() - pg->t_start) / 1e9;
	*left = pg->done > 0 && pg->total >= pg->done
	                ? spent / pg->done * (pg->total - pg->done)
	                : -1;
	return spent;
}

void bench_sweep_progress_slice(const sweep_progress *pg, const char *name,
                                const char *poll, const char *mode, uint64_t size, int k,
                                int slices)
{
	if (!bench_tty())
		return;
	char bar[SWEEP_BAR_CELLS + 1], spent_s[SWEEP_DURATION_BYTES],
	        left_s[SWEEP_DURATION_BYTES + 16] = "";
	double left, spent = sweep_progress_times(pg, &left);
	int full = pg->total > 0 ? pg->done * SWEEP_BAR_CELLS / pg->total : 0;
	for (int i = 0; i < SWEEP_BAR_CELLS; i++)
		bar[i] = i < full ? '#' : '.';
	bar[SWEEP_BAR_CELLS] = '\0';
	if (left >= 0) {
		char d[SWEEP_DURATION_BYTES];
		snprintf(left_s, sizeof(left_s), ", ~%s left",
		         bench_sweep_duration(left, d, sizeof(d)));
	}
	bench_progress("sweep [%s] %d/%d points, %s%s | %s %s %s %llu B %d/%d", bar,
	               pg->points_done, pg->points,
	               bench_sweep_duration(spent, spent_s, sizeof(spent_s)), left_s,
	               name, poll, mode, (unsigned long long)size, k + 1, slices);
}

void bench_sweep_progress_point(sweep_progress *pg, const char *name, const char *poll,
                                const char *mode, uint64_t size, bool gave_up)
{
	pg->points_done++;
	if (bench_tty())
		return; /* the bar says it */
	char spent_s[SWEEP_DURATION_BYTES], left_s[SWEEP_DURATION_BYTES];
	double left, spent = sweep_progress_times(pg, &left);
	fprintf(stderr, "sweep: %d/%d %s %s %s %llu B %s (%s elapsed", pg->points_done,
	        pg->points, name, poll, mode, (unsigned long long)size,
	        gave_up ? "given up" : "done",
	        bench_sweep_duration(spent, spent_s, sizeof(spent_s)));
	if (left >= 0)
		fprintf(stderr, ", ~%s left",
		        bench_sweep_duration(left, left_s, sizeof(left_s)));
	fputs(")\n", stderr);
}
