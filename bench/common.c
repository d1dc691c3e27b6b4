/* Shared ferry-bench helpers (see common.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common.h"

#define BENCH_TTY_COLS_DEFAULT 80

int bench_parse_sizes(const char *s, uint64_t *out, int max)
{
	int n = 0;
	const char *p = s;
	while (*p != '\0') {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(p, &end, 10);
		if (end == p || errno != 0 || *p == '-') {
			fprintf(stderr, "ferry-bench: bad size in '%s'\n", s);
			return -1;
		}
		if (*end == 'k' || *end == 'K')
			v *= 1024, end++;
		else if (*end == 'm' || *end == 'M')
			v *= 1048576, end++;
		if (*end != ',' && *end != '\0') {
			fprintf(stderr, "ferry-bench: bad size in '%s'\n", s);
			return -1;
		}
		if (n == max) {
			fprintf(stderr, "ferry-bench: more than %d sizes\n", max);
			return -1;
		}
		out[n++] = v;
		p = *end == ',' ? end + 1 : end;
	}
	if (n == 0)
		fprintf(stderr, "ferry-bench: no sizes in '%s'\n", s);
	return n == 0 ? -1 : n;
}

double bench_parse_duration(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		return -1;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		return v;
	if (strcmp(end, "ms") == 0)
		return v / 1e3;
	if (strcmp(end, "us") == 0)
		return v / 1e6;
	return -1;
}

int bench_parse_op(const char *s)
{
	if (strcmp(s, "read") == 0)
		return BENCH_OP_READ;
	if (strcmp(s, "write") == 0)
		return BENCH_OP_WRITE;
	if (strcmp(s, "echo") == 0)
		return BENCH_OP_ECHO;
	if (strcmp(s, "fileread") == 0)
		return BENCH_OP_FILEREAD;
	return -1;
}

const char *bench_op_name(int op)
{
	return op == BENCH_OP_READ       ? "read"
	       : op == BENCH_OP_WRITE    ? "write"
	       : op == BENCH_OP_FILEREAD ? "fileread"
	                                 : "echo";
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_pid_cpu_ns(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	unsigned long long ns = 0;
	if (fscanf(f, "%llu", &ns) != 1)
		ns = 0;
	fclose(f);
	return ns;
}

int bench_pin(int cpu)
{
	if (cpu < 0)
		return 0;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

void bench_samples_add(bench_samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1 << 16;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));
		if (v == NULL)
			return; /* keep what we have: percentiles of a prefix */
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ns;
}

void bench_samples_free(bench_samples *s)
{
	free(s->v);
	*s = (bench_samples){0};
}

static int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void bench_samples_sort(bench_samples *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), bench_cmp_u64);
}

uint64_t bench_samples_q(const bench_samples *s, double q)
{
	if (s->n == 0)
		return 0;
	size_t i = (size_t)(q * (double)(s->n - 1) + 0.5);
	return s->v[i < s->n ? i : s->n - 1];
}

void bench_result_finish(bench_result *r, bench_samples *s, uint64_t ops, uint64_t errors,
                         double seconds, uint64_t client_cpu_ns, uint64_t server_cpu_ns)
{
	bench_samples_sort(s);
	r->ops = ops;
	r->errors = errors;
	r->seconds = seconds;
	r->min_us = bench_samples_q(s, 0) / 1e3;
	r->median_us = bench_samples_q(s, 0.5) / 1e3;
	r->p90_us = bench_samples_q(s, 0.9) / 1e3;
	r->p99_us = bench_samples_q(s, 0.99) / 1e3;
	r->p999_us = bench_samples_q(s, 0.999) / 1e3;
	r->max_us = bench_samples_q(s, 1) / 1e3;
	r->ops_per_s = seconds > 0 ? (double)ops / seconds : 0;
	r->mb_per_s = r->ops_per_s * (double)r->size / 1e6;
	r->client_cpu_us_per_op =
	        ops > 0 ? (double)client_cpu_ns / 1e3 / (double)ops : -1;
	r->server_cpu_us_per_op = ops > 0 && server_cpu_ns > 0
	                                  ? (double)server_cpu_ns / 1e3 / (double)ops
	                                  : -1;
}

/* JSON has no inf or nan (printf would write "inf", which json-c refuses):
 * such a value, a rate over no time, is written as -1, unknown. */
static double bench_json_finite(double v)
{
	return isfinite(v) ? v : -1;
}

void bench_result_json(FILE *f, const bench_result *r)
{
#define BENCH_FIN(x) bench_json_finite(r->x)
	fprintf(f,
	        "{\"transport\":\"%s\",\"poll\":\"%s\",\"mode\":\"%s\",\"op\":\"%s\","
	        "\"size\":%llu,\"ops\":%llu,\"errors\":%llu,\"seconds\":%.6f,"
	        "\"min_us\":%.3f,\"median_us\":%.3f,\"p90_us\":%.3f,\"p99_us\":%.3f,"
	        "\"p999_us\":%.3f,\"max_us\":%.3f,\"ops_per_s\":%.1f,\"mb_per_s\":%.3f,"
	        "\"client_cpu_us_per_op\":%.3f,\"server_cpu_us_per_op\":%.3f",
	        r->transport, r->poll, r->mode, r->op, (unsigned long long)r->size,
	        (unsigned long long)r->ops, (unsigned long long)r->errors,
	        BENCH_FIN(seconds), BENCH_FIN(min_us), BENCH_FIN(median_us),
	        BENCH_FIN(p90_us), BENCH_FIN(p99_us), BENCH_FIN(p999_us),
	        BENCH_FIN(max_us), BENCH_FIN(ops_per_s), BENCH_FIN(mb_per_s),
	        BENCH_FIN(client_cpu_us_per_op), BENCH_FIN(server_cpu_us_per_op));
#undef BENCH_FIN
	if (r->link[0] != '\0')
		fprintf(f, ",\"link\":\"%s\"", r->link);
	fputs("}\n", f);
	fflush(f);
}

struct json_object *bench_json_parse(const char *text)
{
	size_t len = strlen(text);
	if (len > INT_MAX)
		return NULL;
	json_tokener *tok = json_tokener_new();
	if (tok == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *j = json_tokener_parse_ex(tok, text, (int)len);
	/* a bare number ends with the input: say so with the NUL */
	if (j == NULL && json_tokener_get_error(tok) == json_tokener_continue)
		j = json_tokener_parse_ex(tok, text + len, 1);
	json_tokener_free(tok);
	return j;
}

/* Member key of o as a string that fits in len bytes: 0 or -1. */
static int bench_json_str(json_object *o, const char *key, char *out, size_t len)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return -1;
	const char *s = json_object_get_string(v);
	if ((size_t)json_object_get_string_len(v) >= len)
		return -1;
	snprintf(out, len, "%s", s);
	return 0;
}

/* Member key of o as a number (integer or not): 0 or -1. */
static int bench_json_num(json_object *o, const char *key, double *out)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) ||
	    !(json_object_is_type(v, json_type_int) ||
	      json_object_is_type(v, json_type_double)))
		return -1;
	*out = json_object_get_double(v);
	return 0;
}

int bench_result_parse(const char *line, bench_result *r)
{
	memset(r, 0, sizeof(*r));
	json_object *o = bench_json_parse(line);
	double size, ops, errors;
	int rc = -1;
	if (o == NULL ||
	    bench_json_str(o, "transport", r->transport, sizeof(r->transport)) ||
	    bench_json_str(o, "poll", r->poll, sizeof(r->poll)) ||
	    bench_json_str(o, "mode", r->mode, sizeof(r->mode)) ||
	    bench_json_str(o, "op", r->op, sizeof(r->op)) ||
	    bench_json_num(o, "size", &size) || bench_json_num(o, "ops", &ops) ||
	    bench_json_num(o, "errors", &errors) ||
	    bench_json_num(o, "seconds", &r->seconds) ||
	    bench_json_num(o, "min_us", &r->min_us) ||
	    bench_json_num(o, "median_us", &r->median_us) ||
	    bench_json_num(o, "p90_us", &r->p90_us) ||
	    bench_json_num(o, "p99_us", &r->p99_us) ||
	    bench_json_num(o, "p999_us", &r->p999_us) ||
	    bench_json_num(o, "max_us", &r->max_us) ||
	    bench_json_num(o, "ops_per_s", &r->ops_per_s) ||
	    bench_json_num(o, "mb_per_s", &r->mb_per_s) ||
	    bench_json_num(o, "client_cpu_us_per_op", &r->client_cpu_us_per_op) ||
	    bench_json_num(o, "server_cpu_us_per_op", &r->server_cpu_us_per_op))
		goto out;
	if (bench_json_str(o, "link", r->link, sizeof(r->link)) != 0) /* optional */
		r->link[0] = '\0';
	r->size = (uint64_t)size;
	r->ops = (uint64_t)ops;
	r->errors = (uint64_t)errors;
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

void bench_csv_header(FILE *f)
{
	fputs(BENCH_CSV_COLUMNS "\n", f);
}

void bench_csv_num(FILE *f, double v, const char *fmt)
{
	if (v < 0) /* unknown */
		return;
	fprintf(f, fmt, v);
}

void bench_csv_fields(FILE *f, const bench_result *r, const char *raw_ref, double ratio)
{
	fprintf(f, "%s,%s,%s,%llu,%.3f,%.3f,%.1f,%.3f,", r->transport, r->poll, r->mode,
	        (unsigned long long)r->size, r->median_us, r->p99_us, r->ops_per_s,
	        r->mb_per_s);
	bench_csv_num(f, r->client_cpu_us_per_op, "%.3f");
	fputc(',', f);
	bench_csv_num(f, r->server_cpu_us_per_op, "%.3f");
	fprintf(f, ",%s,", raw_ref != NULL ? raw_ref : "");
	bench_csv_num(f, ratio, "%.4f");
}

void bench_csv_row(FILE *f, const bench_result *r, const char *raw_ref, double ratio)
{
	bench_csv_fields(f, r, raw_ref, ratio);
	fputc('\n', f);
}

bool bench_tty(void)
{
	return isatty(2) == 1 && getenv(BENCH_NO_PROGRESS_ENV) == NULL;
}

/* Columns of the terminal on stderr, BENCH_TTY_COLS_DEFAULT when unknown. */
static int bench_tty_cols(void)
{
	struct winsize ws;
	if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return BENCH_TTY_COLS_DEFAULT;
}

void bench_progress(const char *fmt, ...)
{
	if (!bench_tty())
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* a line wider than the terminal wraps, and \r would redraw only its
	 * last part: cut it to one column less */
	int cols = bench_tty_cols() - 1;
	fprintf(stderr, "\r\033[K%.*s", cols > 0 ? cols : 0, line);
	fflush(stderr);
}

void bench_progress_done(void)
{
	if (bench_tty())
		fputs("\r\033[K", stderr);
}

int bench_loc_pcap(const char *loc, const char *pcap, char *out, size_t len)
{
	if (strpbrk(pcap, ",:") != NULL) {
		fprintf(stderr,
		        "ferry-bench: --pcap '%s': the path may not contain ',' or ':'\n",
		        pcap);
		return -1;
	}
	const char *colon = strchr(loc, ':');
	const char *sep = colon == NULL ? ":" : colon[1] == '\0' ? "" : ",";
	if ((size_t)snprintf(out, len, "%s%spcap=%s", loc, sep, pcap) >= len) {
		fprintf(stderr, "ferry-bench: --pcap: locator too long\n");
		return -1;
	}
	return 0;
}
