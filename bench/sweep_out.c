/* ferry-bench sweep output: results.csv and results.json, metrics.csv and
 * histograms.csv from both sides' metric dumps (read with json-c), the
 * table on stdout, and the plots. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <json-c/json.h>

#include "sweep.h"

/* Metrics: sum the interval dumps per (transport, poll, mode, size) into
 * packets and copy bytes per call. */
typedef struct sweep_msum {
	char key[160];
	double calls, ctx, crx, srx, stx, copy;
} sweep_msum;

/* The sum of every counter of dump whose name equals (or ends with) key. */
static double sweep_json_counter(json_object *dump, const char *key, bool suffix)
{
	json_object *counters;
	double sum = 0;
	if (!json_object_object_get_ex(dump, "counters", &counters) ||
	    !json_object_is_type(counters, json_type_object))
		return 0;
	size_t k = strlen(key);
	json_object_object_foreach(counters, name, v)
	{
		size_t n = strlen(name);
		bool hit = suffix ? n >= k && memcmp(name + n - k, key, k) == 0
		                  : strcmp(name, key) == 0;
		if (hit)
			sum += json_object_get_double(v);
	}
	return sum;
}

/* Both metric files carry one JSON line per measured slice, scoped
 * "<side>:T:poll:mode:op:size" (server side "bench", client side "client").
 * Call fn for every such dump with the scope after "<side>:". */
typedef void (*sweep_dump_fn)(void *arg, int side, json_object *dump, const char *scope);

static void sweep_each_dump(const sweep_cfg *cfg, sweep_dump_fn fn, void *arg)
{
	const char *files[2] = {"server-metrics.jsonl", "client-metrics.jsonl"};
	const char *prefix[2] = {"bench:", "client:"};
	char path[PATH_MAX];
	char *line = NULL;
	size_t cap = 0;
	for (int side = 0; side < 2; side++) {
		snprintf(path, sizeof(path), "%s/%s", cfg->out, files[side]);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t plen = strlen(prefix[side]);
		while (getline(&line, &cap, f) > 0) {
			json_object *dump = bench_json_parse(line), *scope;
			const char *sc = json_object_object_get_ex(dump, "scope", &scope)
			                         ? json_object_get_string(scope)
			                         : NULL;
			if (sc != NULL && strncmp(sc, prefix[side], plen) == 0)
				fn(arg, side, dump, sc + plen);
			json_object_put(dump);
		}
		fclose(f);
	}
	free(line);
}

static sweep_msum *sweep_msum_get(sweep_msum *sums, int *nsums, const char *key)
{
	for (int i = 0; i < *nsums; i++)
		if (strcmp(sums[i].key, key) == 0)
			return &sums[i];
	if (*nsums == SWEEP_ROWS_MAX)
		return NULL;
	sweep_msum *m = &sums[(*nsums)++];
	memset(m, 0, sizeof(*m));
	snprintf(m->key, sizeof(m->key), "%s", key);
	return m;
}

struct sweep_msums {
	sweep_msum sums[SWEEP_ROWS_MAX];
	int n;
};

static void sweep_metrics_line(void *arg, int side, json_object *line, const char *scope)
{
	struct sweep_msums *ms = arg;
	char t[96], poll[8], mode[16], op[12], key[160];
	unsigned long long size;
	/* transport stacks contain no ':' */
	if (sscanf(scope, "%95[^:]:%7[^:]:%15[^:]:%11[^:]:%llu", t, poll, mode, op,
	           &size) != 5)
		return;
	snprintf(key, sizeof(key), "%s,%s,%s,%llu", t, poll, mode, size);
	sweep_msum *m = sweep_msum_get(ms->sums, &ms->n, key);
	if (m == NULL)
		return;
	if (side == 0) {
		m->calls += sweep_json_counter(line, "rpc.requests_received", false);
		m->srx += sweep_json_counter(line, ".rx_packets", true);
		m->stx += sweep_json_counter(line, ".tx_packets", true);
	} else {
		m->ctx += sweep_json_counter(line, ".tx_packets", true);
		m->crx += sweep_json_counter(line, ".rx_packets", true);
	}
	m->copy += sweep_json_counter(line, "copy_bytes", true);
}

/* Packets and copy bytes per call, per (transport, poll, mode, size). */
void bench_sweep_metrics_csv(const sweep_cfg *cfg)
{
	static struct sweep_msums ms;
	ms.n = 0;
	sweep_each_dump(cfg, sweep_metrics_line, &ms);
	sweep_msum *sums = ms.sums;
	int nsums = ms.n;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/metrics.csv", cfg->out);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return;
	fprintf(f, "transport,poll,mode,size,calls,client_tx_packets_per_call,"
	           "client_rx_packets_per_call,server_rx_packets_per_call,"
	           "server_tx_packets_per_call,copy_bytes_per_call,link\n");
	for (int i = 0; i < nsums; i++) {
		sweep_msum *m = &sums[i];
		if (m->calls <= 0)
			continue;
		fprintf(f, "%s,%.0f,%.3f,%.3f,%.3f,%.3f,%.1f,%s\n", m->key, m->calls,
		        m->ctx / m->calls, m->crx / m->calls, m->srx / m->calls,
		        m->stx / m->calls, m->copy / m->calls, cfg->link.name);
	}
	fclose(f);
}

/* Histograms of the transports' own metrics (window size, RTT), summed over
 * every measured slice per (transport, poll, side): DIR/histograms.csv for
 * plots/hist.gp. Bucket edges are the same in every dump, so counts add. */
#define SWEEP_HIST_BUCKETS 512
typedef struct sweep_hsum {
	char key[128]; /* transport,poll,side,name */
	uint64_t lower[SWEEP_HIST_BUCKETS], count[SWEEP_HIST_BUCKETS];
	int n;
} sweep_hsum;

static void sweep_hist_add(sweep_hsum *h, uint64_t lower, uint64_t count)
{
	for (int i = 0; i < h->n; i++)
		if (h->lower[i] == lower) {
			h->count[i] += count;
			return;
		}
	if (h->n < SWEEP_HIST_BUCKETS) {
		h->lower[h->n] = lower;
		h->count[h->n++] = count;
	}
}

struct sweep_hsums {
	sweep_hsum sums[64];
	int n;
};

static void sweep_hist_line(void *arg, int side, json_object *dump, const char *scope)
{
	struct sweep_hsums *hs = arg;
	const char *sides[2] = {"server", "client"};
	const char *names[] = {"fast.rtt_us", "fast.cwnd_frags"};
	char t[96], poll[8];
	json_object *hists;
	if (sscanf(scope, "%95[^:]:%7[^:]", t, poll) != 2 ||
	    !json_object_object_get_ex(dump, "histograms", &hists))
		return;
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		json_object *h, *b, *c;
		if (!json_object_object_get_ex(hists, names[k], &h) ||
		    !json_object_object_get_ex(h, "bounds", &b) ||
		    !json_object_object_get_ex(h, "counts", &c) ||
		    !json_object_is_type(b, json_type_array) ||
		    !json_object_is_type(c, json_type_array))
			continue;
		char key[128];
		snprintf(key, sizeof(key), "%s,%s,%s,%s", t, poll, sides[side], names[k]);
		sweep_hsum *hsum = NULL;
		for (int i = 0; i < hs->n; i++)
			if (strcmp(hs->sums[i].key, key) == 0)
				hsum = &hs->sums[i];
		if (hsum == NULL && hs->n < 64) {
			hsum = &hs->sums[hs->n++];
			memset(hsum, 0, sizeof(*hsum));
			snprintf(hsum->key, sizeof(hsum->key), "%s", key);
		}
		if (hsum == NULL)
			continue;
		/* bounds has one more entry than counts: count i is from bound i */
		size_t nb = json_object_array_length(b), nc = json_object_array_length(c);
		for (size_t i = 0; i < nc && i < nb; i++)
			sweep_hist_add(
			        hsum,
			        json_object_get_uint64(json_object_array_get_idx(b, i)),
			        json_object_get_uint64(json_object_array_get_idx(c, i)));
	}
}

void bench_sweep_histograms_csv(const sweep_cfg *cfg)
{
	static struct sweep_hsums hs;
	hs.n = 0;
	sweep_each_dump(cfg, sweep_hist_line, &hs);
	sweep_hsum *sums = hs.sums;
	int nsums = hs.n;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/histograms.csv", cfg->out);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return;
	fprintf(f, "transport,poll,side,name,lower,count,link\n");
	for (int i = 0; i < nsums; i++)
		for (int k = 0; k < sums[i].n; k++)
			if (sums[i].count[k] > 0)
				fprintf(f, "%s,%llu,%llu,%s\n", sums[i].key,
				        (unsigned long long)sums[i].lower[k],
				        (unsigned long long)sums[i].count[k],
				        cfg->link.name);
	fclose(f);
}

int bench_sweep_write(const sweep_cfg *cfg)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/results.csv", cfg->out);
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		return -1;
	}
	/* new columns go last: readers by column number keep working */
	fputs(BENCH_CSV_COLUMNS ",ratio_vs_tcp,link\n", f);
	for (int i = 0; i < bench_sweep_nrows; i++) {
		sweep_row *w = &bench_sweep_rows[i];
		if (!bench_sweep_row_written(w))
			continue;
		bench_csv_fields(f, &w->agg,
		                 w->raw_ref != NULL ? w->raw_ref : w->transport,
		                 w->ratio);
		fputc(',', f);
		bench_csv_num(f, w->vs_tcp, "%.4f");
		fprintf(f, ",%s\n", cfg->link.name);
	}
	fclose(f);
	snprintf(path, sizeof(path), "%s/results.json", cfg->out);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "[\n");
	bool first = true;
	for (int i = 0; i < bench_sweep_nrows; i++)
		for (int k = 0; k < bench_sweep_rows[i].n; k++) {
			bench_result *r = &bench_sweep_rows[i].slice[k];
			snprintf(r->link, sizeof(r->link), "%s", cfg->link.name);
			fprintf(f, "%s", first ? "" : ",\n");
			first = false;
			bench_result_json(f, r);
			fseek(f, -1, SEEK_CUR); /* drop the newline inside the array */
		}
	fprintf(f, "\n]\n");
	fclose(f);
	return 0;
}

void bench_sweep_table(const sweep_cfg *cfg, FILE *f)
{
	char link[256];
	fprintf(f, "\nlink: %s\n", bench_link_describe(&cfg->link, link, sizeof(link)));
	fprintf(f, "%-16s %-5s %-10s %8s %11s %11s %11s %9s %9s %7s %7s\n", "transport",
	        "poll", "mode", "size", "median_us", "p99_us", "MB/s", "cli_cpu",
	        "srv_cpu", "ratio", "vs_tcp");
	for (int i = 0; i < bench_sweep_nrows; i++) {
		sweep_row *w = &bench_sweep_rows[i];
		if (w->n == 0 && w->nfailed == 0)
			continue;
		fprintf(f, "%-16s %-5s %-10s %8llu ", w->transport, w->poll, w->mode,
		        (unsigned long long)w->size);
		if (w->ngood == 0) {
			fprintf(f, "failed: %d slices, %llu call errors%s\n", w->nfailed,
			        (unsigned long long)w->agg.errors,
			        w->gave_up ? ", given up" : "");
			continue;
		}
		fprintf(f, "%11.2f %11.2f %11.1f %9.2f %9.2f %7.3f %7.3f%s%s\n",
		        w->agg.median_us, w->agg.p99_us, w->agg.mb_per_s,
		        w->agg.client_cpu_us_per_op, w->agg.server_cpu_us_per_op,
		        w->ratio, w->vs_tcp, w->agg.errors ? " (errors)" : "",
		        bench_sweep_row_no_baseline(w) ? " (no baseline: not written)"
		                                       : "");
	}
}

int bench_sweep_plots(const sweep_cfg *cfg)
{
	char cmd[PATH_MAX * 2 + 64];
	snprintf(cmd, sizeof(cmd), "sh '%s/all.sh' '%s'", cfg->plots, cfg->out);
	fflush(stdout); /* the table before the plot list, also into a file */
	int st = system(cmd);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}
