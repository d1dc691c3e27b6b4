/* ferry-bench sweep, shared between its files: the configuration, the rows
 * being collected, child processes and the servers of a poll mode, and what
 * each file offers the others. The design (pairing, baselines, CSV
 * consistency) is at the top of sweep.c. */
#ifndef FERRY_BENCH_SWEEP_H
#define FERRY_BENCH_SWEEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "common.h"
#include "link.h"

#define SWEEP_SLICES_MAX          16
#define SWEEP_ROWS_MAX            256
#define SWEEP_RAW_UDP_MAX         65507u
#define SWEEP_TPUT_INFLIGHT_BYTES (4u << 20) /* throughput: cap bytes in flight */
#define SWEEP_TPUT_CONCURRENCY    8
#define SWEEP_GIVE_UP_FAILS       2 /* failed slices, none good, before a point is given up */
#define SWEEP_KIDS_MAX            16 /* child processes alive at once (servers, a client, ucx) */
#define SWEEP_MTU_DEFAULT         1500
#define SWEEP_TERM_GRACE_MS       3000  /* SIGTERM to SIGKILL */
#define SWEEP_TCP                 "tcp" /* the transport ratio_vs_tcp compares with */

/* A transport the sweep knows (bench_sweep_transports, in display order). A
 * row runs when its bottom driver is registered and its probe passes. */
struct sweep_transport {
	const char *stack;  /* the locator stack: the CSV's transport column */
	const char *driver; /* bottom driver to probe */
	bool datagram;      /* raw_ref raw-udp up to 65507 B; else raw-tcp always */
};
#define SWEEP_NTRANSPORTS 4
extern const struct sweep_transport bench_sweep_transports[SWEEP_NTRANSPORTS];
#define SWEEP_PEER "peer-ucx-tcp" /* the UCX row's name, also in --transports */

/* The file-read comparison: the reference transport and the one compared. */
#define SWEEP_FILEREAD_REF     "tcp"
#define SWEEP_FILEREAD_ZC      "splice"
#define SWEEP_FILEREAD_POLL    "block"
#define SWEEP_FILEREAD_TIMEOUT "20s"
#define SWEEP_FILEREAD_DIR     "/dev/shm" /* the server's file and the client's sink */

typedef struct sweep_cfg {
	const char *out, *plots, *exe;
	bool quick, tiny, peer, plot, fileread;
	int nsizes, npolls, slices, nfsizes;
	uint64_t sizes[BENCH_SIZES_MAX];
	uint64_t fsizes[BENCH_SIZES_MAX]; /* fileread sizes */
	const char *polls[2];
	double slice_s, warmup_s;
	int cpu_client, cpu_server;
	const char *only; /* comma list of transports, or NULL */
	bench_link link;  /* where servers and clients run, and the servers' host */
} sweep_cfg;

/* A row of results.csv being collected: every slice's result. */
typedef struct sweep_row {
	char transport[96];
	char poll[8], mode[16];
	uint64_t size;
	const char *raw_ref; /* NULL for raw rows */
	int n;
	bench_result slice[SWEEP_SLICES_MAX];
	bool failed[SWEEP_SLICES_MAX]; /* no call completed: on record, not aggregated */
	int ngood, nfailed;            /* nfailed also counts slices with no result */
	bool gave_up;
	double pair_ratio[SWEEP_SLICES_MAX];
	int npairs;
	bench_result agg;
	double ratio;
	double vs_tcp; /* ratio_vs_tcp, <0: not measured */
} sweep_row;

/* Every row so far (sweep_rows.c). */
extern sweep_row bench_sweep_rows[SWEEP_ROWS_MAX];
extern int bench_sweep_nrows;

typedef struct sweep_child {
	pid_t pid;
	int fd;     /* the child's stdout */
	size_t len; /* bytes read ahead in buf (stdio would hide them from poll) */
	char buf[8192];
} sweep_child;

typedef struct sweep_servers {
	const char *poll;
	const bool *use; /* per transport: whether the ferry server listens for it */
	sweep_child ferry;
	char ferry_loc[SWEEP_NTRANSPORTS][640];
	bool ferry_ok[SWEEP_NTRANSPORTS];
	sweep_child raw_udp, raw_tcp;
	int raw_udp_port, raw_tcp_port;
} sweep_servers;

/* Spinning servers would share the server core and time-slice each other
 * (a 3x loss of throughput, invisible in the median). Only the server a
 * slice talks to runs; the others are stopped (SIGSTOP), sockets intact. */
enum {
	SWEEP_SRV_NONE = 0,
	SWEEP_SRV_FERRY,
	SWEEP_SRV_RAW_UDP,
	SWEEP_SRV_RAW_TCP,
	SWEEP_SRV_FILEREAD, /* the file-read comparison's own ferry server */
	SWEEP_SRV_KINDS
};

/* How far the sweep is, and what went wrong on the way. A slice is one
 * measured pair (a transport and its baseline); a point is a transport's
 * row (transport, poll, mode, size), done after its last slice. */
typedef struct sweep_progress {
	int total, done, failures, skipped; /* slices */
	int raw_failures;                   /* baseline slices without a result */
	int points, points_done;
	int restarts[SWEEP_SRV_KINDS]; /* servers started again after dying */
	int replaced[SWEEP_SRV_KINDS]; /* live servers replaced after a failed slice */
	uint64_t t_start;
	bool broken; /* a server could not be started again: stop */
} sweep_progress;

/* sweep.c */
/* Index of the transport named stack in bench_sweep_transports, or -1. */
int bench_sweep_transport_index(const char *stack);

/* sweep_procs.c: child processes and servers */
/* SIGINT/SIGTERM/SIGHUP end every child and remove the link's namespaces. */
void bench_sweep_catch_signals(void);
/* Start argv on side (BENCH_LINK_SERVER or BENCH_LINK_CLIENT), its stdout a
 * pipe in c, pinned to cpu (-1: not), envp_extra added. 0 or -errno. */
int bench_sweep_spawn(const sweep_cfg *cfg, int side, char *const argv[],
                      char *const envp_extra[], int cpu, sweep_child *c);
/* One line of c's stdout within timeout_s: 0, -ETIMEDOUT or -EPIPE (EOF). */
int bench_sweep_readline(sweep_child *c, char *line, size_t len, double timeout_s);
/* Wait for c (after SIGTERM, SIGKILL past a grace period, when kill_it);
 * its rusage into ru (may be NULL). Its exit status, 128 + signal. */
int bench_sweep_reap(sweep_child *c, bool kill_it, struct rusage *ru);
/* Has c exited (not reaped)? Then why goes in buf. */
bool bench_sweep_exited(const sweep_child *c, char *buf, size_t len);
/* Transport ti's server locator on the link's server address. */
char *bench_sweep_listen_loc(const sweep_cfg *cfg, int ti, char *buf, size_t len);
/* "HOST:PORT" of a raw server on the link's server address. */
char *bench_sweep_raw_addr(const sweep_cfg *cfg, int port, char *buf, size_t len);
/* The ferry server (every transport in use) and both raw servers. 0 or -1
 * (the caller stops whatever started). */
int bench_sweep_start_servers(const sweep_cfg *cfg, const char *poll, sweep_servers *sv,
                              const bool *use);
/* Let only server which (SWEEP_SRV_*) run; the others are stopped. */
void bench_sweep_focus(sweep_servers *sv, int which);
void bench_sweep_stop_servers(sweep_servers *sv);
/* "ferry", "raw-udp", "raw-tcp", "fileread": server which's name. */
const char *bench_sweep_srv_name(int which);
/* Before a slice: is every server of sv alive? One that died is reaped,
 * said on stderr with why, started again and counted in pg->restarts. 0,
 * or -1 when one could not be started again (said; pg->broken set). */
int bench_sweep_check_servers(const sweep_cfg *cfg, sweep_servers *sv,
                              sweep_progress *pg);
/* After a failed slice: a fresh ferry server (counted in pg->restarts when
 * the old one had died, else in pg->replaced). 0, or -1 when it did not
 * start (said; pg->broken set). */
int bench_sweep_restart_ferry(const sweep_cfg *cfg, sweep_servers *sv,
                              sweep_progress *pg);

/* sweep_slices.c: one measuring child per slice */
/* Calls in flight for mode at size. */
int bench_sweep_concurrency(const char *mode, uint64_t size);
/* One ferry client slice against loc; op "fileread" measures as throughput
 * (its rows say mode fileread). 0 or -1. */
int bench_sweep_client(const sweep_cfg *cfg, const char *loc, const char *label,
                       const char *op, const char *mode, const char *poll, uint64_t size,
                       bench_result *r);
int bench_sweep_slice_ferry(const sweep_cfg *cfg, sweep_servers *sv, int ti,
                            const char *poll, const char *mode, uint64_t size,
                            bench_result *r);
int bench_sweep_slice_raw(const sweep_cfg *cfg, sweep_servers *sv, bool udp,
                          const char *poll, const char *mode, uint64_t size,
                          bench_result *r);
/* UCX over TCP; *iters is adjusted toward the slice length. 0 or -1. */
int bench_sweep_slice_ucx(const sweep_cfg *cfg, const char *mode, uint64_t size,
                          uint64_t *iters, bench_result *r);

/* sweep_rows.c: rows and their aggregation */
/* The row of (transport, poll, mode, size), made when new; NULL when full. */
sweep_row *bench_sweep_row_get(const char *transport, const char *poll, const char *mode,
                               uint64_t size, const char *raw_ref);
/* Record a slice's result (w may be NULL). */
void bench_sweep_row_add(sweep_row *w, const bench_result *r);
/* After a failed slice of w: maybe give the point up. */
void bench_sweep_row_failed(sweep_row *w, bool no_result);
/* Does w go into results.csv? */
bool bench_sweep_row_written(const sweep_row *w);
/* Has w a raw_ref but no baseline measured with it (not written then)? */
bool bench_sweep_row_no_baseline(const sweep_row *w);
/* Aggregate every row: medians, ratios, ratio_vs_tcp. */
void bench_sweep_finish_rows(void);
/* A slice pair's ratio of t to raw (mode decides which way), or -1. */
double bench_sweep_pair(const char *mode, const bench_result *t, const bench_result *raw);

/* sweep_fileread.c: splice against tcp reading a file */
/* The fileread transports into ti (tcp first): their count, 0..2. */
int bench_sweep_fileread_plan(sweep_cfg *cfg, const bool *use, int *ti);
/* Every fileread point; 0, or -1 when its server could not be started
 * (again). */
int bench_sweep_fileread(const sweep_cfg *cfg, const int *ti, int nt, sweep_progress *pg);

/* sweep_progress.c: where the sweep is, on stderr */
/* A slice starts: the progress bar, on a terminal. */
void bench_sweep_progress_slice(const sweep_progress *pg, const char *name,
                                const char *poll, const char *mode, uint64_t size, int k,
                                int slices);
/* A point is done (its last slice, or given up): one line on stderr when
 * that is no terminal. */
void bench_sweep_progress_point(sweep_progress *pg, const char *name, const char *poll,
                                const char *mode, uint64_t size, bool gave_up);
/* "42s", "3m07s", "2h05m" into buf (SWEEP_DURATION_BYTES holds any). */
#define SWEEP_DURATION_BYTES 32
char *bench_sweep_duration(double s, char *buf, size_t len);

/* sweep_out.c: results.csv/json, metrics.csv, histograms.csv, the table, plots */
int bench_sweep_write(const sweep_cfg *cfg);
void bench_sweep_metrics_csv(const sweep_cfg *cfg);
void bench_sweep_histograms_csv(const sweep_cfg *cfg);
void bench_sweep_table(const sweep_cfg *cfg, FILE *f);
int bench_sweep_plots(const sweep_cfg *cfg);

#endif
