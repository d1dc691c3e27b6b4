/* ferry-bench shared pieces: option values (sizes, durations), latency
 * statistics, CPU time, pinning, progress on a terminal, and the result
 * record every measuring subcommand prints (one JSON line per point, or CSV
 * rows in the results.csv column order). */
#ifndef FERRY_BENCH_COMMON_H
#define FERRY_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define BENCH_SIZES_MAX 32
#define BENCH_OP_READ   16 /* request: u32 size; response: the object of that size */
#define BENCH_OP_WRITE  17 /* request: the bytes; response: empty */
#define BENCH_OP_ECHO   18 /* response = request */
/* Request: u32 size; response: a region of a file (ferry_buf_append_file), received into
 * an fd with ferry_call_into_fd */
#define BENCH_OP_FILEREAD 19
/* Parse "64,1k,4k,64k,1m" (k = 1024, m = 1048576). Returns the count or -1
 * with a message on stderr. */
/* loc with ",pcap=FILE" appended (":pcap=FILE" when loc has no keys) into
 * out: ferry-bench's --pcap. 0, or -1 with a message on stderr (FILE must
 * not contain ',' or ':', which the locator grammar reserves). */
int bench_loc_pcap(const char *loc, const char *pcap, char *out, size_t len);
int bench_parse_sizes(const char *s, uint64_t *out, int max);
/* Parse "3s", "500ms", "2.5s", "100us" or plain seconds. -1 if bad. */
double bench_parse_duration(const char *s);
/* "read" / "write" / "echo" / "fileread" -> BENCH_OP_*, or -1. */
int bench_parse_op(const char *s);
const char *bench_op_name(int op);

uint64_t bench_now_ns(void);
/* This process's CPU time (user + system), ns. */
uint64_t bench_cpu_ns(void);
/* Another process's CPU time from /proc/PID/schedstat (ns), or 0. */
uint64_t bench_pid_cpu_ns(pid_t pid);
/* Pin the calling thread; -1 = leave alone. 0 or -errno. */
int bench_pin(int cpu);

/* Latency samples: a growing array of ns values. */
typedef struct bench_samples {
	uint64_t *v;
	size_t n, cap;
} bench_samples;
void bench_samples_add(bench_samples *s, uint64_t ns);
void bench_samples_free(bench_samples *s);
/* Sort, then the value at quantile q (0..1); 0 when empty. */
void bench_samples_sort(bench_samples *s);
uint64_t bench_samples_q(const bench_samples *s, double q);

/* One measured point. */
typedef struct bench_result {
	char transport[96]; /* locator stack, or raw-udp / raw-tcp / peer-… */
	char poll[8];       /* spin | block */
	char mode[16];      /* latency | throughput | fileread */
	char op[12];        /* read | write | echo | fileread */
	uint64_t size;
	uint64_t ops, errors;
	double seconds;
	double min_us, median_us, p90_us, p99_us, p999_us, max_us;
	double ops_per_s, mb_per_s;                        /* MB = 10^6 bytes */
	double client_cpu_us_per_op, server_cpu_us_per_op; /* <0: unknown */
	char link[16]; /* the sweep's link (lo, veth1500): "" = not said, not written */
} bench_result;

/* Fill the latency fields and rates from samples and totals. */
void bench_result_finish(bench_result *r, bench_samples *s, uint64_t ops, uint64_t errors,
                         double seconds, uint64_t client_cpu_ns,
                         uint64_t server_cpu_ns /* 0: unknown */);
/* {"transport":…,"poll":…,…} on one line ("link" last, when set). */
void bench_result_json(FILE *f, const bench_result *r);
/* Parse a line written by bench_result_json (with json-c). 0 or -1. */
int bench_result_parse(const char *line, bench_result *r);
/* A NUL-terminated JSON document (a result line, a metrics dump line)
 * parsed with json-c in strict mode, trailing whitespace allowed. Returns
 * new (json_object_put), or NULL when it does not parse. */
struct json_object *bench_json_parse(const char *text);
/* results.csv: the header, and one row (raw_ref, ratio given). The sweep
 * appends its own columns after these (BENCH_CSV_COLUMNS, then the
 * fields without the line's end). */
#define BENCH_CSV_COLUMNS                                                                \
	"transport,poll,mode,size,median_us,p99_us,ops_per_s,mb_per_s,"                  \
	"client_cpu_us_per_op,server_cpu_us_per_op,raw_ref,ratio_vs_raw"
void bench_csv_header(FILE *f);
void bench_csv_row(FILE *f, const bench_result *r, const char *raw_ref, double ratio);
void bench_csv_fields(FILE *f, const bench_result *r, const char *raw_ref, double ratio);
/* A number, or nothing when v < 0 (unknown): a CSV cell. */
void bench_csv_num(FILE *f, double v, const char *fmt);

/* Progress on a terminal (stderr), nothing otherwise; a progress line is
 * cut to the terminal's width. The sweep sets BENCH_NO_PROGRESS_ENV in its
 * children, so that only its own progress bar is drawn. */
#define BENCH_NO_PROGRESS_ENV "FERRY_BENCH_NO_PROGRESS"
bool bench_tty(void);
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_done(void);

#endif
