/* ferry-bench sweep: every transport this machine can run, against the raw
 * socket baselines (and UCX over TCP as a peer when ucx_perftest is
 * installed), server and client pinned to different cores. Runs of a
 * transport and of its raw baseline at the same size alternate in short
 * slices, and a row's ratio is the median of the paired slice ratios, so
 * machine noise mostly cancels. Writes DIR/results.csv (the documented
 * columns), DIR/results.json (every slice), DIR/metrics.csv (packets and
 * copies per call from both sides' metrics), then renders the plots.
 *
 * Operations: latency rows are ECHO ping-pongs (size bytes each way, like
 * ucx_perftest's tag_lat and the raw ping-pong); throughput rows are READs
 * (size bytes server to client per call, like a one-way stream: tag_bw and
 * the raw streams).
 *
 * Baselines: datagram transports compare with raw-udp up to 65507 B and
 * raw-tcp above; stream transports (tcp, splice) with raw-tcp at every size.
 *
 * File reads (mode "fileread"): splice against tcp, the same FILEREAD call
 * on both (the server answers with a region of a file it made on /dev/shm,
 * the client receives the body into a /dev/shm file with
 * ferry_call_into_fd), in alternating slices; the tcp row is the reference
 * (raw_ref "tcp", ratio 1) and the splice row's ratio is its throughput over
 * tcp's. These run with poll=block on both sides whatever --quick/--tiny
 * say: a spinning process burns its core whether it works or not, so its
 * CPU per op would only restate the wall time, and the CPU per op is the
 * point (sendfile/splice against pread+send and recv+write copies).
 *
 * CSV consistency: for a transport row, median_us is the raw row's median
 * times the median paired ratio (latency), and mb_per_s the raw row's times
 * the ratio (throughput, fileread), so ratio_vs_raw can be recomputed from
 * the CSV alone; the directly measured medians are in results.json.
 * ratio_vs_tcp compares a row with the tcp transport's row at the same
 * poll, mode and size, from those same CSV numbers, oriented so that above
 * 1 is better than tcp: mb_per_s over tcp's (throughput, fileread), tcp's
 * median_us over the row's (latency).
 *
 * Links (link.h): lo, the default, runs everything in this namespace over
 * 127.0.0.1; --link veth runs every server in one namespace and every
 * client in another, joined by a veth pair at --mtu, each child under
 * `ip netns exec`. Every row says which (the link column, last).
 *
 * A point (transport, poll, mode, size) that fails twice with no good
 * slice, or once after a smaller size of the same series was given up, is
 * given up: a dead session costs seconds per slice, and its errors are
 * already on record (results.json, the table). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common.h"
#include "ferry/driver.h"
#include "link.h"
#include "ferry/ferry.h"

#define SWEEP_SLICES_MAX 16
#define SWEEP_ROWS_MAX 256
#define SWEEP_RAW_UDP_MAX 65507u
#define SWEEP_TPUT_INFLIGHT_BYTES (4u << 20) /* throughput: cap bytes in flight */
#define SWEEP_TPUT_CONCURRENCY 8
#define SWEEP_GIVE_UP_FAILS 2 /* failed slices, none good, before a point is given up */
#define SWEEP_KIDS_MAX 16     /* child processes alive at once (servers, a client, ucx) */
#define SWEEP_MTU_DEFAULT 1500
#define SWEEP_TERM_GRACE_MS 3000 /* SIGTERM to SIGKILL */
#define SWEEP_TCP "tcp" /* the transport ratio_vs_tcp compares with */

/* Transports the sweep knows, in display order. A row runs when its bottom
 * driver is registered and its probe passes. */
static const struct sweep_transport {
	const char *stack;  /* the locator stack: the CSV's transport column */
	const char *driver; /* bottom driver to probe */
	bool datagram;      /* raw_ref raw-udp up to 65507 B; else raw-tcp always */
} sweep_transports[] = {
	{"fast+udp", "udp", true},
	{"unreliable+udp", "udp", true},
	{"tcp", "tcp", false},
	{"splice", "splice", false},
};
#define SWEEP_PEER "peer-ucx-tcp" /* the UCX row's name, also in --transports */
#define SWEEP_NTRANSPORTS ((int)(sizeof(sweep_transports) / sizeof(sweep_transports[0])))

/* The file-read comparison: the reference transport and the one compared. */
#define SWEEP_FILEREAD_REF "tcp"
#define SWEEP_FILEREAD_ZC "splice"
#define SWEEP_FILEREAD_POLL "block"
#define SWEEP_FILEREAD_TIMEOUT "20s"
#define SWEEP_FILEREAD_DIR "/dev/shm" /* the server's file and the client's sink */

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

static sweep_row sweep_rows[SWEEP_ROWS_MAX];
static int sweep_nrows;

/* Child processes ---------------------------------------------------------------*/

typedef struct sweep_child {
	pid_t pid;
	int fd;          /* the child's stdout */
	size_t len;      /* bytes read ahead in buf (stdio would hide them from poll) */
	char buf[8192];
} sweep_child;

/* Every child alive, so that a signal can end them (stopped servers, too:
 * they would spin on in their namespace after we are gone). */
static volatile pid_t sweep_kids[SWEEP_KIDS_MAX];

static void sweep_kid_set(pid_t old, pid_t pid)
{
	for (int i = 0; i < SWEEP_KIDS_MAX; i++)
		if (sweep_kids[i] == old) {
			sweep_kids[i] = pid;
			return;
		}
}

/* SIGINT/SIGTERM/SIGHUP: end the children, remove the link's namespaces,
 * then die of the signal. Async-signal-safe calls only. */
static void sweep_on_signal(int sig)
{
	for (int i = 0; i < SWEEP_KIDS_MAX; i++)
		if (sweep_kids[i] > 0) {
			kill(sweep_kids[i], SIGCONT);
			kill(sweep_kids[i], SIGTERM);
		}
	bench_link_close();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void sweep_catch_signals(void)
{
	struct sigaction sa = {.sa_handler = sweep_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* The child's half of sweep_spawn: in the side's namespace (through
 * `ip netns exec`, which execs in place: the pid we signal is the
 * command's) when the link has one. */
static void sweep_exec(const sweep_cfg *cfg, int side, char *const argv[])
{
	const char *ns = cfg->link.ns[side];
	char *full[64] = {"ip", "netns", "exec", (char *)ns};
	int n = 4;
	for (int i = 0; argv[i] != NULL && n < 63; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	char *const *run = ns[0] != '\0' ? full : argv;
	execvp(run[0], run);
	fprintf(stderr, "ferry-bench sweep: exec %s: %s\n", run[0], strerror(errno));
	_exit(127);
}

/* side: BENCH_LINK_SERVER or BENCH_LINK_CLIENT. */
static int sweep_spawn(const sweep_cfg *cfg, int side, char *const argv[],
                       char *const envp_extra[], int cpu, sweep_child *c)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Its own process group: the sweep stops idle servers
		 * (SIGSTOP), and a group with a stopped member that becomes
		 * orphaned (the shell that started the sweep exits, as a
		 * backgrounded `./ferry.sh bench` does) gets SIGHUP. That
		 * killed the servers started in the sweep's first seconds: the
		 * raw baselines' rows then had no server ("connection
		 * refused"). Reproduced by backgrounding a sweep from a shell
		 * that exits at once. The sweep ends its children by pid (on
		 * its own signals too), not by group. */
		setpgid(0, 0);
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		for (int i = 0; envp_extra != NULL && envp_extra[i] != NULL; i++)
			putenv(envp_extra[i]);
		if (cpu >= 0)
			bench_pin(cpu);
		sweep_exec(cfg, side, argv);
	}
	close(fds[1]);
	sweep_kid_set(0, pid);
	c->pid = pid;
	c->fd = fds[0];
	c->len = 0;
	return 0;
}

/* Read one line within timeout_s; 0, -ETIMEDOUT or -EPIPE (EOF). */
static int sweep_readline(sweep_child *c, char *line, size_t len, double timeout_s)
{
	uint64_t end = bench_now_ns() + (uint64_t)(timeout_s * 1e9);
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl != NULL) {
			size_t n = (size_t)(nl - c->buf);
			snprintf(line, len, "%.*s", (int)n, c->buf);
			c->len -= n + 1;
			memmove(c->buf, nl + 1, c->len);
			return 0;
		}
		if (c->len == sizeof(c->buf)) /* a line longer than the buffer */
			c->len = 0;
		uint64_t now = bench_now_ns();
		if (now >= end)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		int r = poll(&p, 1, (int)((end - now) / 1000000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -ETIMEDOUT;
		ssize_t got = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -EPIPE;
		c->len += (size_t)got;
	}
}

static int sweep_reap(sweep_child *c, bool kill_it, struct rusage *ru)
{
	if (kill_it)
		kill(c->pid, SIGTERM);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	int st = 0;
	struct rusage dummy;
	/* a child wedged past SIGTERM (a server stuck in a broken state) is
	 * killed after a grace period rather than hanging the sweep */
	struct rusage *r = ru != NULL ? ru : &dummy;
	uint64_t end = bench_now_ns() + SWEEP_TERM_GRACE_MS * 1000000ull;
	pid_t got = 0;
	while (kill_it && (got = wait4(c->pid, &st, WNOHANG, r)) == 0 && bench_now_ns() < end)
		usleep(1000);
	if (kill_it && got == 0)
		kill(c->pid, SIGKILL);
	if (got != c->pid)
		wait4(c->pid, &st, 0, r);
	sweep_kid_set(c->pid, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Servers ---------------------------------------------------------------------------*/

typedef struct sweep_servers {
	const char *poll;
	const bool *use; /* per transport: whether the ferry server listens for it */
	sweep_child ferry;
	char ferry_loc[SWEEP_NTRANSPORTS][640];
	bool ferry_ok[SWEEP_NTRANSPORTS];
	sweep_child raw_udp, raw_tcp;
	int raw_udp_port, raw_tcp_port;
} sweep_servers;

static bool sweep_transport_runnable(const struct sweep_transport *t, char *why, size_t len)
{
	const ferry_driver_ops *d = ferry_driver_find(t->driver);
	if (d == NULL) {
		snprintf(why, len, "driver %s not built", t->driver);
		return false;
	}
	if (d->probe != NULL && d->probe(why, len) != 0)
		return false;
	return true;
}

/* The raw baseline of transport t at size: datagram transports raw-udp
 * while a datagram holds size, stream transports raw-tcp at every size. */
static bool sweep_raw_udp(const struct sweep_transport *t, uint64_t size)
{
	return t != NULL && t->datagram && size <= SWEEP_RAW_UDP_MAX;
}

static int sweep_transport_index(const char *stack)
{
	for (int i = 0; i < SWEEP_NTRANSPORTS; i++)
		if (strcmp(sweep_transports[i].stack, stack) == 0)
			return i;
	return -1;
}

/* Transport ti's server locator on the link's server address. */
static char *sweep_listen_loc(const sweep_cfg *cfg, int ti, char *buf, size_t len)
{
	snprintf(buf, len, "%s:host=%s,port=0", sweep_transports[ti].stack, cfg->link.host);
	return buf;
}

/* "HOST:PORT" of a raw server on the link's server address. */
static char *sweep_raw_addr(const sweep_cfg *cfg, int port, char *buf, size_t len)
{
	snprintf(buf, len, "%s:%d", cfg->link.host, port);
	return buf;
}

/* The ferry server, listening for every transport in use; its locators
 * (bound ports) into sv->ferry_loc. 0 or -1. */
static int sweep_start_ferry(const sweep_cfg *cfg, sweep_servers *sv)
{
	char *argv[4 + 2 * SWEEP_NTRANSPORTS + 6];
	char listen[SWEEP_NTRANSPORTS][128];
	int a = 0;
	argv[a++] = (char *)cfg->exe;
	argv[a++] = "server";
	for (int i = 0; i < SWEEP_NTRANSPORTS; i++)
		if (sv->use[i]) {
			argv[a++] = "--listen";
			argv[a++] = sweep_listen_loc(cfg, i, listen[i], sizeof(listen[i]));
		}
	argv[a++] = "--poll";
	argv[a++] = (char *)sv->poll;
	argv[a] = NULL;
	char line[600];
	if (sweep_spawn(cfg, BENCH_LINK_SERVER, argv, NULL, cfg->cpu_server, &sv->ferry) != 0)
		return -1;
	for (int i = 0; i < SWEEP_NTRANSPORTS; i++) {
		sv->ferry_ok[i] = false;
		if (!sv->use[i])
			continue;
		if (sweep_readline(&sv->ferry, line, sizeof(line), 10) != 0)
			return -1;
		snprintf(sv->ferry_loc[i], sizeof(sv->ferry_loc[i]), "%s", line);
		sv->ferry_ok[i] = true;
	}
	if (sweep_readline(&sv->ferry, line, sizeof(line), 10) != 0 || strcmp(line, "ready") != 0)
		return -1;
	return 0;
}

/* The ferry server and both raw servers for one poll mode. 0 or -1 (the
 * caller stops whatever started). */
static int sweep_start_servers(const sweep_cfg *cfg, const char *poll, sweep_servers *sv,
                               const bool *use)
{
	sv->poll = poll;
	sv->use = use;
	if (sweep_start_ferry(cfg, sv) != 0)
		return -1;
	char line[600];
	const char *protos[2] = {"udp", "tcp"};
	char any[64];
	sweep_raw_addr(cfg, 0, any, sizeof(any));
	for (int k = 0; k < 2; k++) {
		sweep_child *c = k == 0 ? &sv->raw_udp : &sv->raw_tcp;
		char *rargv[] = {(char *)cfg->exe, "raw", "--proto", (char *)protos[k],
		                 "--listen", any, "--poll", (char *)poll, NULL};
		if (sweep_spawn(cfg, BENCH_LINK_SERVER, rargv, NULL, cfg->cpu_server, c) != 0 ||
		    sweep_readline(c, line, sizeof(line), 10) != 0 ||
		    strncmp(line, "port=", 5) != 0)
			return -1;
		*(k == 0 ? &sv->raw_udp_port : &sv->raw_tcp_port) = atoi(line + 5);
	}
	return 0;
}

/* Spinning servers would share the server core and time-slice each other
 * (a 3x loss of throughput, invisible in the median). Only the server a
 * slice talks to runs; the others are stopped (SIGSTOP), sockets intact. */
enum { SWEEP_SRV_NONE = 0, SWEEP_SRV_FERRY, SWEEP_SRV_RAW_UDP, SWEEP_SRV_RAW_TCP };

static void sweep_focus(sweep_servers *sv, int which)
{
	const struct {
		pid_t pid;
		int id;
	} all[] = {{sv->ferry.pid, SWEEP_SRV_FERRY},
	           {sv->raw_udp.pid, SWEEP_SRV_RAW_UDP},
	           {sv->raw_tcp.pid, SWEEP_SRV_RAW_TCP}};
	for (int i = 0; i < 3; i++)
		if (all[i].pid > 0 && all[i].id != which)
			kill(all[i].pid, SIGSTOP);
	for (int i = 0; i < 3; i++)
		if (all[i].pid > 0 && all[i].id == which)
			kill(all[i].pid, SIGCONT);
}

static void sweep_stop_servers(sweep_servers *sv)
{
	/* stopped servers must run again to act on SIGTERM */
	pid_t pids[3] = {sv->ferry.pid, sv->raw_udp.pid, sv->raw_tcp.pid};
	for (int i = 0; i < 3; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGCONT);
	if (sv->ferry.pid > 0)
		sweep_reap(&sv->ferry, true, NULL);
	if (sv->raw_udp.pid > 0)
		sweep_reap(&sv->raw_udp, true, NULL);
	if (sv->raw_tcp.pid > 0)
		sweep_reap(&sv->raw_tcp, true, NULL);
	memset(sv, 0, sizeof(*sv));
}

/* After a failed slice: a fresh ferry server, so that one transport's
 * broken state (a session declared dead, a pinned receive pool) does not
 * fail every later slice of every transport it serves. 0 or -1. */
static int sweep_restart_ferry(const sweep_cfg *cfg, sweep_servers *sv)
{
	if (sv->ferry.pid > 0) {
		kill(sv->ferry.pid, SIGCONT);
		sweep_reap(&sv->ferry, true, NULL);
	}
	memset(&sv->ferry, 0, sizeof(sv->ferry));
	if (sweep_start_ferry(cfg, sv) == 0)
		return 0;
	fprintf(stderr, "ferry-bench sweep: the restarted ferry server did not start\n");
	return -1;
}

/* Slices ------------------------------------------------------------------------------*/

static int sweep_concurrency(const char *mode, uint64_t size)
{
	if (strcmp(mode, "throughput") != 0)
		return 1;
	uint64_t c = size > 0 ? SWEEP_TPUT_INFLIGHT_BYTES / size : SWEEP_TPUT_CONCURRENCY;
	return c < 1 ? 1 : c > SWEEP_TPUT_CONCURRENCY ? SWEEP_TPUT_CONCURRENCY : (int)c;
}

/* Run one measuring child and parse its one JSON result line. */
static int sweep_measure(const sweep_cfg *cfg, char **argv, bench_result *r)
{
	sweep_child c;
	if (sweep_spawn(cfg, BENCH_LINK_CLIENT, argv, NULL, cfg->cpu_client, &c) != 0)
		return -1;
	char line[2048];
	int rc = sweep_readline(&c, line, sizeof(line), cfg->slice_s + cfg->warmup_s + 20);
	int st = sweep_reap(&c, rc != 0, NULL);
	if (rc != 0 || bench_result_parse(line, r) != 0) {
		fprintf(stderr, "ferry-bench sweep: %s %s: no result (exit %d)\n", argv[1],
		        argv[2], st);
		return -1;
	}
	return 0;
}

/* One ferry client slice against the server at loc. op "fileread" runs
 * as a throughput client (its rows say mode fileread). */
static int sweep_client(const sweep_cfg *cfg, const char *loc, const char *label,
                        const char *op, const char *mode, const char *poll,
                        uint64_t size, bench_result *r)
{
	char sizes[32], dur[32], warm[32], conc[16], sm[PATH_MAX], cm[PATH_MAX];
	bool fileread = strcmp(op, "fileread") == 0;
	const char *cmode = fileread ? "throughput" : mode;
	snprintf(sizes, sizeof(sizes), "%llu", (unsigned long long)size);
	snprintf(dur, sizeof(dur), "%.3f", cfg->slice_s);
	snprintf(warm, sizeof(warm), "%.3f", cfg->warmup_s);
	snprintf(conc, sizeof(conc), "%d", sweep_concurrency(cmode, size));
	snprintf(sm, sizeof(sm), "%s/server-metrics.jsonl", cfg->out);
	snprintf(cm, sizeof(cm), "%s/client-metrics.jsonl", cfg->out);
	char *argv[] = {(char *)cfg->exe, "client", "--connect", (char *)loc,
	                "--label", (char *)label, "--op", (char *)op,
	                "--sizes", sizes, "--duration", dur, "--warmup", warm,
	                "--mode", (char *)cmode, "--concurrency", conc, "--poll", (char *)poll,
	                "--json", "-", "--server-metrics", sm, "--client-metrics", cm,
	                /* a 64 MiB file read takes tens of ms: give it room */
	                "--timeout", fileread ? SWEEP_FILEREAD_TIMEOUT : "1s", NULL};
	return sweep_measure(cfg, argv, r);
}

static int sweep_slice_ferry(const sweep_cfg *cfg, sweep_servers *sv, int ti,
                             const char *poll, const char *mode, uint64_t size,
                             bench_result *r)
{
	sweep_focus(sv, SWEEP_SRV_FERRY);
	return sweep_client(cfg, sv->ferry_loc[ti], sweep_transports[ti].stack,
	                    strcmp(mode, "latency") == 0 ? "echo" : "read", mode, poll, size, r);
}

static int sweep_slice_raw(const sweep_cfg *cfg, sweep_servers *sv, bool udp,
                           const char *poll, const char *mode, uint64_t size,
                           bench_result *r)
{
	char sizes[32], dur[32], warm[32], conn[64], pid[16];
	snprintf(sizes, sizeof(sizes), "%llu", (unsigned long long)size);
	snprintf(dur, sizeof(dur), "%.3f", cfg->slice_s);
	snprintf(warm, sizeof(warm), "%.3f", cfg->warmup_s);
	sweep_raw_addr(cfg, udp ? sv->raw_udp_port : sv->raw_tcp_port, conn, sizeof(conn));
	snprintf(pid, sizeof(pid), "%d", (int)(udp ? sv->raw_udp.pid : sv->raw_tcp.pid));
	char *argv[] = {(char *)cfg->exe, "raw", "--proto", udp ? "udp" : "tcp",
	                "--connect", conn, "--op", strcmp(mode, "latency") == 0 ? "echo" : "read",
	                "--sizes", sizes,
	                "--duration", dur, "--warmup", warm, "--mode", (char *)mode,
	                "--poll", (char *)poll, "--server-pid", pid, "--json", "-", NULL};
	sweep_focus(sv, udp ? SWEEP_SRV_RAW_UDP : SWEEP_SRV_RAW_TCP);
	return sweep_measure(cfg, argv, r);
}

/* A port free here, for ucx_perftest's server. On veth that server runs in
 * a namespace of its own, where every port is free anyway. */
static int sweep_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* UCX over TCP: ucx_perftest's server serves one test and exits, so each
 * slice starts one. Its latency is half a round trip: doubled here. Its
 * MB are 2^20 bytes: converted to 10^6. CPU per op comes from both
 * processes' rusage (setup included: an overestimate). */
static int sweep_slice_ucx(const sweep_cfg *cfg, const char *mode, uint64_t size,
                           uint64_t *iters, bench_result *r)
{
	char port[16], sz[32], n[32], w[32], cs[16], cc[16];
	snprintf(port, sizeof(port), "%d", sweep_free_port());
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
	snprintf(n, sizeof(n), "%llu", (unsigned long long)*iters);
	snprintf(w, sizeof(w), "%llu", (unsigned long long)(*iters / 10 + 1));
	snprintf(cs, sizeof(cs), "%d", cfg->cpu_server < 0 ? 0 : cfg->cpu_server);
	snprintf(cc, sizeof(cc), "%d", cfg->cpu_client < 0 ? 0 : cfg->cpu_client);
	/* each side's UCX uses its own end of the link */
	char dev[2][64];
	for (int i = 0; i < 2; i++)
		snprintf(dev[i], sizeof(dev[i]), "UCX_NET_DEVICES=%s", cfg->link.dev[i]);
	char *senv[] = {"UCX_TLS=tcp", dev[BENCH_LINK_SERVER], "UCX_WARN_UNUSED_ENV_VARS=n", NULL};
	char *cenv[] = {"UCX_TLS=tcp", dev[BENCH_LINK_CLIENT], "UCX_WARN_UNUSED_ENV_VARS=n", NULL};
	char *sargv[] = {"ucx_perftest", "-p", port, "-c", cs, NULL};
	bool lat = strcmp(mode, "latency") == 0;
	char *cargv[] = {"ucx_perftest", (char *)cfg->link.host, "-p", port,
	                 "-t", lat ? "tag_lat" : "tag_bw",
	                 "-s", sz, "-n", n, "-w", w, "-c", cc, "-f", "-v", NULL};
	sweep_child s, c;
	if (sweep_spawn(cfg, BENCH_LINK_SERVER, sargv, senv, -1, &s) != 0)
		return -1;
	usleep(200000); /* let the server listen */
	uint64_t t0 = bench_now_ns();
	if (sweep_spawn(cfg, BENCH_LINK_CLIENT, cargv, cenv, -1, &c) != 0) {
		sweep_reap(&s, true, NULL);
		return -1;
	}
	char line[512], last[512] = "";
	while (sweep_readline(&c, line, sizeof(line), cfg->slice_s * 20 + 20) == 0)
		snprintf(last, sizeof(last), "%s", line);
	struct rusage cru, sru;
	sweep_reap(&c, false, &cru);
	double wall = (double)(bench_now_ns() - t0) / 1e9;
	sweep_reap(&s, true, &sru);
	/* iterations,50.0_percentile_lat,avg_lat,overall_lat,avg_bw,overall_bw,avg_mr,overall_mr */
	unsigned long long it;
	double p50, avg_lat, overall_lat, avg_bw, overall_bw;
	if (sscanf(last, "%llu,%lf,%lf,%lf,%lf,%lf", &it, &p50, &avg_lat, &overall_lat, &avg_bw,
	           &overall_bw) != 6 || it == 0) {
		fprintf(stderr, "ferry-bench sweep: ucx_perftest gave no result ('%s')\n", last);
		return -1;
	}
	memset(r, 0, sizeof(*r));
	snprintf(r->transport, sizeof(r->transport), "peer-ucx-tcp");
	snprintf(r->mode, sizeof(r->mode), "%s", mode);
	snprintf(r->op, sizeof(r->op), "%s", lat ? "echo" : "read");
	r->size = size;
	r->ops = it;
	r->seconds = lat ? (double)it * 2 * overall_lat / 1e6 : (double)it * (double)size / (overall_bw * 1048576.0);
	r->median_us = lat ? 2 * p50 : 0;
	r->p99_us = -1;
	r->min_us = r->p90_us = r->p999_us = r->max_us = r->median_us;
	r->mb_per_s = lat ? (double)size / (2 * p50) : overall_bw * 1.048576;
	r->ops_per_s = lat ? 1e6 / (2 * p50) : r->mb_per_s * 1e6 / (double)(size ? size : 1);
	r->client_cpu_us_per_op = (cru.ru_utime.tv_sec + cru.ru_stime.tv_sec) * 1e6 +
	                          cru.ru_utime.tv_usec + cru.ru_stime.tv_usec;
	r->client_cpu_us_per_op /= (double)it;
	r->server_cpu_us_per_op = ((sru.ru_utime.tv_sec + sru.ru_stime.tv_sec) * 1e6 +
	                           sru.ru_utime.tv_usec + sru.ru_stime.tv_usec) / (double)it;
	/* aim the next slice at the slice length */
	double per = wall > 0.3 ? (wall - 0.2) / (double)it : 0;
	if (per > 0)
		*iters = (uint64_t)(cfg->slice_s / per) + 100;
	return 0;
}

/* Rows and aggregation ------------------------------------------------------------*/

static sweep_row *sweep_row_get(const char *transport, const char *poll, const char *mode,
                                uint64_t size, const char *raw_ref)
{
	for (int i = 0; i < sweep_nrows; i++) {
		sweep_row *w = &sweep_rows[i];
		if (strcmp(w->transport, transport) == 0 && strcmp(w->poll, poll) == 0 &&
		    strcmp(w->mode, mode) == 0 && w->size == size)
			return w;
	}
	if (sweep_nrows == SWEEP_ROWS_MAX)
		return NULL;
	sweep_row *w = &sweep_rows[sweep_nrows++];
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
static void sweep_row_add(sweep_row *w, const bench_result *r)
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
	for (int i = 0; i < sweep_nrows; i++) {
		const sweep_row *o = &sweep_rows[i];
		if (o->gave_up && o->size < w->size && strcmp(o->transport, w->transport) == 0 &&
		    strcmp(o->poll, w->poll) == 0 && strcmp(o->mode, w->mode) == 0)
			return true;
	}
	return false;
}

/* After a failed slice of w (no_result: the client gave no result line,
 * else it is in w already): give the point up after SWEEP_GIVE_UP_FAILS
 * failures with no good slice, or at once when a smaller size of the
 * series was given up (the same fault, seconds per slice again). */
static void sweep_row_failed(sweep_row *w, bool no_result)
{
	if (w == NULL)
		return;
	if (no_result)
		w->nfailed++;
	if (w->ngood == 0 && (w->nfailed >= SWEEP_GIVE_UP_FAILS || sweep_series_gave_up(w)))
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
	for (int i = 0; i < sweep_nrows; i++)
		if (strcmp(sweep_rows[i].transport, transport) == 0 &&
		    strcmp(sweep_rows[i].poll, poll) == 0 && strcmp(sweep_rows[i].mode, mode) == 0 &&
		    sweep_rows[i].size == size)
			return &sweep_rows[i];
	return NULL;
}

/* Does w go into results.csv: a good slice, and a ratio where it needs one. */
static bool sweep_row_written(const sweep_row *w)
{
	return w->ngood > 0 && (w->raw_ref == NULL || w->ratio >= 0);
}

/* ratio_vs_tcp from the numbers results.csv carries (see the top of this
 * file), so that it recomputes from the CSV too. */
static void sweep_vs_tcp(sweep_row *w)
{
	const sweep_row *t = sweep_find(SWEEP_TCP, w->poll, w->mode, w->size);
	w->vs_tcp = -1;
	if (t == NULL || !sweep_row_written(t) || !sweep_row_written(w))
		return;
	bool lat = strcmp(w->mode, "latency") == 0;
	double mine = lat ? w->agg.median_us : w->agg.mb_per_s;
	double tcp = lat ? t->agg.median_us : t->agg.mb_per_s;
	if (mine > 0 && tcp > 0)
		w->vs_tcp = lat ? tcp / mine : mine / tcp;
}

/* A row's ratio is the median of its paired ratios; its headline number is
 * the raw row's times that ratio (see the top of this file). */
static void sweep_finish_rows(void)
{
	for (int i = 0; i < sweep_nrows; i++)
		if (sweep_rows[i].n > 0)
			sweep_aggregate(&sweep_rows[i]);
	for (int i = 0; i < sweep_nrows; i++) {
		sweep_row *w = &sweep_rows[i];
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
			w->agg.ops_per_s = w->size > 0 ? w->agg.mb_per_s * 1e6 / (double)w->size
			                               : w->agg.ops_per_s;
		}
	}
	for (int i = 0; i < sweep_nrows; i++)
		sweep_vs_tcp(&sweep_rows[i]);
}

static double sweep_pair(const char *mode, const bench_result *t, const bench_result *raw)
{
	if (strcmp(mode, "latency") == 0)
		return raw->median_us > 0 && t->median_us > 0 ? t->median_us / raw->median_us : -1;
	return raw->mb_per_s > 0 && t->mb_per_s >= 0 ? t->mb_per_s / raw->mb_per_s : -1;
}

/* File reads ----------------------------------------------------------------------*/

/* Which fileread transports run: tcp (the reference) must, splice may.
 * File sizes whose server file plus client sink would not fit in
 * /dev/shm (64 MiB in a default Docker container) are dropped. */
static int sweep_fileread_plan(sweep_cfg *cfg, const bool *use, int *ti)
{
	struct statvfs vfs;
	if (cfg->fileread && statvfs(SWEEP_FILEREAD_DIR, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		int n = 0;
		for (int i = 0; i < cfg->nfsizes; i++) {
			uint64_t s = cfg->fsizes[i];
			uint64_t need = s + (uint64_t)sweep_concurrency("throughput", s) * s + (1u << 20);
			if (need <= avail)
				cfg->fsizes[n++] = s;
			else
				fprintf(stderr,
				        "ferry-bench sweep: fileread %llu B skipped: %s has %llu MiB "
				        "free, needs %llu\n",
				        (unsigned long long)s, SWEEP_FILEREAD_DIR,
				        (unsigned long long)(avail >> 20), (unsigned long long)(need >> 20));
		}
		cfg->nfsizes = n;
	}
	if (!cfg->fileread || cfg->nfsizes == 0)
		return 0;
	int r = sweep_transport_index(SWEEP_FILEREAD_REF);
	int z = sweep_transport_index(SWEEP_FILEREAD_ZC);
	if (r < 0 || !use[r])
		return 0;
	ti[0] = r;
	if (z < 0 || !use[z])
		return 1;
	ti[1] = z;
	return 2;
}

/* The file-read server: both transports of ti on one blocking server, its
 * bound locators in loc. 0, or -1 when it did not start (reaped). */
static int sweep_fileread_start(const sweep_cfg *cfg, const int *ti, int nt, sweep_child *srv,
                                char loc[][640])
{
	char *argv[4 + 2 * 2 + 4];
	char listen[2][128], line[640];
	int a = 0;
	argv[a++] = (char *)cfg->exe;
	argv[a++] = "server";
	for (int i = 0; i < nt; i++) {
		argv[a++] = "--listen";
		argv[a++] = sweep_listen_loc(cfg, ti[i], listen[i], sizeof(listen[i]));
	}
	argv[a++] = "--poll";
	argv[a++] = SWEEP_FILEREAD_POLL;
	argv[a] = NULL;
	if (sweep_spawn(cfg, BENCH_LINK_SERVER, argv, NULL, cfg->cpu_server, srv) == 0) {
		int i = 0;
		while (i < nt && sweep_readline(srv, loc[i], sizeof(loc[i]), 10) == 0)
			i++;
		if (i == nt && sweep_readline(srv, line, sizeof(line), 10) == 0 &&
		    strcmp(line, "ready") == 0)
			return 0;
		sweep_reap(srv, true, NULL);
	}
	fprintf(stderr, "ferry-bench sweep: fileread server did not start\n");
	return -1;
}

/* Has c exited? Then why goes in buf (c is left to sweep_reap). */
static bool sweep_exited(const sweep_child *c, char *buf, size_t len)
{
	siginfo_t si = {0};
	if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
	    si.si_pid != c->pid)
		return false;
	if (si.si_code == CLD_EXITED)
		snprintf(buf, len, "exit status %d", si.si_status);
	else
		snprintf(buf, len, "signal %d (%s)", si.si_status, strsignal(si.si_status));
	return true;
}

/* splice vs tcp FILEREAD at each file size, alternating slices against one
 * blocking server of their own (the other servers are gone by now). After
 * a failed slice, or once it has died, the server is replaced, and a death
 * is reported (a server killed from outside used to fail every slice after
 * it, each client finding nothing in its sink). Returns 0, or -1 when that
 * server did not start; *done and *failures count slices. */
static int sweep_fileread(const sweep_cfg *cfg, const int *ti, int nt, int *done, int total,
                          uint64_t t_start, int *failures)
{
	const char *poll = SWEEP_FILEREAD_POLL;
	sweep_child srv;
	char loc[2][640];
	if (sweep_fileread_start(cfg, ti, nt, &srv, loc) != 0)
		return -1;
	const char *ref = sweep_transports[ti[0]].stack;
	for (int s = 0; s < cfg->nfsizes; s++) {
		uint64_t size = cfg->fsizes[s];
		for (int k = 0; k < cfg->slices; k++) {
			bench_result res[2];
			int rc[2] = {-1, -1};
			for (int j = 0; j < nt; j++) {
				int i = k % 2 == 0 ? j : nt - 1 - j; /* alternate who goes first */
				const char *name = sweep_transports[ti[i]].stack;
				bench_progress("[%d/%d %.0fs] %s %s fileread %llu B, slice %d/%d",
				               *done + 1, total,
				               (double)(bench_now_ns() - t_start) / 1e9, name, poll,
				               (unsigned long long)size, k + 1, cfg->slices);
				rc[i] = sweep_client(cfg, loc[i], name, "fileread", "fileread", poll, size,
				                     &res[i]);
				(*done)++;
				if (rc[i] == 0) {
					snprintf(res[i].poll, sizeof(res[i].poll), "%s", poll);
					sweep_row_add(sweep_row_get(name, poll, "fileread", size,
					                            i == 0 ? NULL : ref),
					              &res[i]);
					if (res[i].ops == 0) /* on record in its row; no pair */
						rc[i] = -1;
				}
				*failures += rc[i] != 0;
				char why[96] = "";
				bool died = sweep_exited(&srv, why, sizeof(why));
				if (rc[i] == 0 && !died)
					continue;
				if (died)
					fprintf(stderr,
					        "ferry-bench sweep: the fileread server died (%s) by "
					        "the end of %s %llu B; starting another\n",
					        why, name, (unsigned long long)size);
				sweep_reap(&srv, true, NULL);
				if (sweep_fileread_start(cfg, ti, nt, &srv, loc) != 0)
					return -1;
			}
			if (nt == 2 && rc[0] == 0 && rc[1] == 0) {
				sweep_row *w = sweep_row_get(sweep_transports[ti[1]].stack, poll,
				                             "fileread", size, ref);
				double pr = sweep_pair("fileread", &res[1], &res[0]);
				if (w != NULL && pr > 0 && w->npairs < SWEEP_SLICES_MAX)
					w->pair_ratio[w->npairs++] = pr;
			}
		}
	}
	sweep_reap(&srv, true, NULL);
	return 0;
}

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
	if (sscanf(scope, "%95[^:]:%7[^:]:%15[^:]:%11[^:]:%llu", t, poll, mode, op, &size) != 5)
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
static void sweep_metrics_csv(const sweep_cfg *cfg)
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
		        m->ctx / m->calls, m->crx / m->calls, m->srx / m->calls, m->stx / m->calls,
		        m->copy / m->calls, cfg->link.name);
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
			sweep_hist_add(hsum, json_object_get_uint64(json_object_array_get_idx(b, i)),
			               json_object_get_uint64(json_object_array_get_idx(c, i)));
	}
}

static void sweep_histograms_csv(const sweep_cfg *cfg)
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
				        (unsigned long long)sums[i].count[k], cfg->link.name);
	fclose(f);
}

/* Output --------------------------------------------------------------------------------*/

static int sweep_write(const sweep_cfg *cfg)
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
	for (int i = 0; i < sweep_nrows; i++) {
		sweep_row *w = &sweep_rows[i];
		if (!sweep_row_written(w))
			continue;
		bench_csv_fields(f, &w->agg, w->raw_ref != NULL ? w->raw_ref : w->transport,
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
	for (int i = 0; i < sweep_nrows; i++)
		for (int k = 0; k < sweep_rows[i].n; k++) {
			bench_result *r = &sweep_rows[i].slice[k];
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

static void sweep_table(const sweep_cfg *cfg, FILE *f)
{
	char link[256];
	fprintf(f, "\nlink: %s\n", bench_link_describe(&cfg->link, link, sizeof(link)));
	fprintf(f, "%-16s %-5s %-10s %8s %11s %11s %11s %9s %9s %7s %7s\n", "transport", "poll",
	        "mode", "size", "median_us", "p99_us", "MB/s", "cli_cpu", "srv_cpu", "ratio",
	        "vs_tcp");
	for (int i = 0; i < sweep_nrows; i++) {
		sweep_row *w = &sweep_rows[i];
		if (w->n == 0 && w->nfailed == 0)
			continue;
		fprintf(f, "%-16s %-5s %-10s %8llu ", w->transport, w->poll, w->mode,
		        (unsigned long long)w->size);
		if (w->ngood == 0) {
			fprintf(f, "failed: %d slices, %llu call errors%s\n", w->nfailed,
			        (unsigned long long)w->agg.errors, w->gave_up ? ", given up" : "");
			continue;
		}
		fprintf(f, "%11.2f %11.2f %11.1f %9.2f %9.2f %7.3f %7.3f%s\n", w->agg.median_us,
		        w->agg.p99_us, w->agg.mb_per_s, w->agg.client_cpu_us_per_op,
		        w->agg.server_cpu_us_per_op, w->ratio, w->vs_tcp,
		        w->agg.errors ? " (errors)" : "");
	}
}

static int sweep_plots(const sweep_cfg *cfg)
{
	char cmd[PATH_MAX * 2 + 64];
	snprintf(cmd, sizeof(cmd), "sh '%s/all.sh' '%s'", cfg->plots, cfg->out);
	fflush(stdout); /* the table before the plot list, also into a file */
	int st = system(cmd);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void sweep_usage(FILE *f)
{
	fprintf(f,
	        "usage: ferry-bench sweep --out DIR [--quick | --tiny] [--plots DIR]\n"
	        "         [--link lo|veth] [--mtu N] [--no-peer] [--no-plots] [--no-fileread]\n"
	        "         [--transports a,b] [--sizes LIST] [--polls spin,block]\n"
	        "         [--slices K] [--slice 0.2s] [--cpus CLIENT,SERVER]\n"
	        "       ferry-bench sweep --list\n"
	        "Every transport this machine can run plus raw-udp/raw-tcp (and UCX over\n"
	        "TCP, row " SWEEP_PEER ", when ucx_perftest is installed): latency (ECHO\n"
	        "ping-pong) and throughput (READ); runs of a transport and its raw baseline\n"
	        "alternate in short slices and the ratio is the median of the paired\n"
	        "ratios. Datagram transports compare with raw-udp (raw-tcp past 64 KiB),\n"
	        "stream transports (tcp, splice) with raw-tcp. Then file reads (mode\n"
	        "fileread, poll block): splice vs tcp serving a /dev/shm file region into\n"
	        "a /dev/shm file (ferry_call_into_fd), ratio = splice / tcp throughput.\n"
	        "results.csv's ratio_vs_tcp compares each row with the tcp row of the same\n"
	        "poll, mode and size, above 1 = better than tcp: MB/s over tcp's\n"
	        "(throughput, fileread), tcp's median RTT over the row's (latency).\n"
	        "  --link lo    the default: everything on 127.0.0.1 in this namespace\n"
	        "  --link veth  servers in one network namespace, clients in another,\n"
	        "               joined by a veth pair (root; ip, ethtool for GRO);\n"
	        "               full sizes 64,4k,64k,256k,1m,4m,16m,64m\n"
	        "  --mtu N      the veth pair's MTU (default 1500); link column vethN\n"
	        "  --quick   sizes 64,64k,1m, spin only, ~1 s per point; fileread 1m,16m\n"
	        "  --tiny    sizes 64,4k, spin only, a few short slices (the smoke test);\n"
	        "            fileread 1m\n"
	        "  default   sizes 64,1k,4k,16k,64k,256k,1m, spin and block (< 10 min);\n"
	        "            fileread 1m,4m,16m,64m\n"
	        "  --sizes, --polls  replace the sizes and poll modes the above chose\n"
	        "  --transports      only these rows (names as in --list, or " SWEEP_PEER ")\n"
	        "  --list    print each transport and whether it would run, then exit\n"
	        "Writes DIR/results.csv, results.json, metrics.csv, *-metrics.jsonl and\n"
	        "the plots (gnuplot, scripts from --plots, default ./plots), every row\n"
	        "and plot saying its link.\n");
}

static bool sweep_have_ucx(void)
{
	return system("command -v ucx_perftest >/dev/null 2>&1") == 0;
}

/* Is name one of --transports (every name when there is no list)? */
static bool sweep_wanted(const sweep_cfg *cfg, const char *name)
{
	if (cfg->only == NULL)
		return true;
	char list[512], want[128];
	snprintf(list, sizeof(list), ",%s,", cfg->only);
	snprintf(want, sizeof(want), ",%s,", name);
	return strstr(list, want) != NULL;
}

/* "spin", "block", "spin,block" into cfg->polls. 0 or -1. */
static int sweep_parse_polls(sweep_cfg *cfg, const char *s)
{
	cfg->npolls = 0;
	while (*s != '\0') {
		size_t n = strcspn(s, ",");
		const char *p = n == 4 && strncmp(s, "spin", 4) == 0    ? "spin"
		                : n == 5 && strncmp(s, "block", 5) == 0 ? "block"
		                                                        : NULL;
		if (p == NULL || cfg->npolls == 2)
			return -1;
		cfg->polls[cfg->npolls++] = p;
		s += n + (s[n] == ',');
	}
	return cfg->npolls > 0 ? 0 : -1;
}

/* Sizes, poll modes and slices of --tiny, --quick or the full sweep (whose
 * veth sizes go past lo's to where a real link's segmentation shows), then
 * the explicit --sizes, --polls, --slices, --slice. 0 or -1. */
static int sweep_plan(sweep_cfg *cfg, bool veth, const char *sizes, const char *polls,
                      int slices, double slice)
{
	cfg->npolls = 1, cfg->polls[0] = "spin";
	if (cfg->tiny) {
		cfg->nsizes = bench_parse_sizes("64,4k", cfg->sizes, BENCH_SIZES_MAX);
		cfg->nfsizes = bench_parse_sizes("1m", cfg->fsizes, BENCH_SIZES_MAX);
		cfg->slices = 3, cfg->slice_s = 0.08, cfg->warmup_s = 0.02;
	} else if (cfg->quick) {
		cfg->nsizes = bench_parse_sizes("64,64k,1m", cfg->sizes, BENCH_SIZES_MAX);
		cfg->nfsizes = bench_parse_sizes("1m,16m", cfg->fsizes, BENCH_SIZES_MAX);
		cfg->slices = 5, cfg->slice_s = 0.15, cfg->warmup_s = 0.03;
	} else {
		cfg->nsizes = bench_parse_sizes(veth ? "64,4k,64k,256k,1m,4m,16m,64m"
		                                     : "64,1k,4k,16k,64k,256k,1m",
		                                cfg->sizes, BENCH_SIZES_MAX);
		cfg->nfsizes = bench_parse_sizes("1m,4m,16m,64m", cfg->fsizes, BENCH_SIZES_MAX);
		cfg->npolls = 2, cfg->polls[1] = "block";
		cfg->slices = 5, cfg->slice_s = 0.25, cfg->warmup_s = 0.05;
	}
	if (sizes != NULL && (cfg->nsizes = bench_parse_sizes(sizes, cfg->sizes,
	                                                      BENCH_SIZES_MAX)) <= 0)
		return -1;
	if (polls != NULL && sweep_parse_polls(cfg, polls) != 0) {
		fprintf(stderr, "ferry-bench sweep: --polls %s: spin, block or spin,block\n", polls);
		return -1;
	}
	if (slices > 0)
		cfg->slices = slices < SWEEP_SLICES_MAX ? slices : SWEEP_SLICES_MAX;
	if (slice > 0)
		cfg->slice_s = slice;
	return 0;
}

/* Which rows run: use[i] per transport, and whether the UCX peer does. */
static bool sweep_choose(const sweep_cfg *cfg, bool *use)
{
	for (int i = 0; i < SWEEP_NTRANSPORTS; i++) {
		char why[160] = "";
		use[i] = sweep_transport_runnable(&sweep_transports[i], why, sizeof(why));
		if (use[i] && !sweep_wanted(cfg, sweep_transports[i].stack)) {
			use[i] = false;
			snprintf(why, sizeof(why), "not in --transports");
		}
		if (!use[i])
			fprintf(stderr, "ferry-bench sweep: skipping %s: %s\n",
			        sweep_transports[i].stack, why);
	}
	if (!cfg->peer || cfg->tiny || !sweep_wanted(cfg, SWEEP_PEER))
		return false;
	if (sweep_have_ucx())
		return true;
	fprintf(stderr, "ferry-bench sweep: ucx_perftest not found: no UCX row "
	                "(apt-get install ucx-utils)\n");
	return false;
}

/* Does row t (SWEEP_NTRANSPORTS: the UCX peer) run at this poll mode?
 * ucx_perftest always spins: no block-mode peer row. */
static bool sweep_runs(int t, const bool *use, bool peer, const char *poll)
{
	return t < SWEEP_NTRANSPORTS ? use[t] : peer && strcmp(poll, "spin") == 0;
}

typedef struct sweep_progress {
	int total, done, failures, skipped;
	uint64_t t_start;
	bool broken; /* the ferry server could not be restarted: stop */
} sweep_progress;

/* Slice k of row t (SWEEP_NTRANSPORTS: the UCX peer) at one point, paired
 * with a slice of its raw baseline; which goes first alternates with k. */
static void sweep_slice(const sweep_cfg *cfg, sweep_servers *sv, int t, const char *poll,
                        const char *mode, uint64_t size, int k, uint64_t *ucx_iters,
                        sweep_progress *pg)
{
	bool is_peer = t == SWEEP_NTRANSPORTS;
	bool dg = sweep_raw_udp(is_peer ? NULL : &sweep_transports[t], size);
	const char *ref = dg ? "raw-udp" : "raw-tcp";
	const char *name = is_peer ? SWEEP_PEER : sweep_transports[t].stack;
	sweep_row *raw = sweep_row_get(ref, poll, mode, size, NULL); /* listed first */
	sweep_row *w = sweep_row_get(name, poll, mode, size, ref);
	bench_progress("[%d/%d %.0fs %s] %s %s %s %llu B, slice %d/%d", pg->done + 1, pg->total,
	               (double)(bench_now_ns() - pg->t_start) / 1e9, cfg->link.name, name, poll,
	               mode, (unsigned long long)size, k + 1, cfg->slices);
	pg->done++;
	if (w != NULL && w->gave_up) {
		pg->skipped++;
		return;
	}
	bench_result rr, tr;
	int rc_raw = -1, rc_t = -1;
	for (int side = 0; side < 2; side++) {
		bool raw_now = (side == 0) == (k % 2 == 0);
		if (raw_now)
			rc_raw = sweep_slice_raw(cfg, sv, dg, poll, mode, size, &rr);
		else if (is_peer)
			sweep_focus(sv, SWEEP_SRV_NONE),
			rc_t = sweep_slice_ucx(cfg, mode, size, ucx_iters, &tr);
		else
			rc_t = sweep_slice_ferry(cfg, sv, t, poll, mode, size, &tr);
	}
	if (rc_raw == 0) {
		snprintf(rr.poll, sizeof(rr.poll), "%s", poll);
		sweep_row_add(raw, &rr);
	}
	if (rc_t == 0) {
		snprintf(tr.poll, sizeof(tr.poll), "%s", poll);
		sweep_row_add(w, &tr);
	}
	if (rc_t != 0 || tr.ops == 0) {
		pg->failures++;
		sweep_row_failed(w, rc_t != 0);
		if (!is_peer && sweep_restart_ferry(cfg, sv) != 0)
			pg->broken = true;
		return;
	}
	double pr = rc_raw == 0 ? sweep_pair(mode, &tr, &rr) : -1;
	if (w != NULL && pr > 0 && w->npairs < SWEEP_SLICES_MAX)
		w->pair_ratio[w->npairs++] = pr;
}

/* Every latency and throughput point of one poll mode against one set of
 * servers. 0, or -1 when the servers did not start. */
static int sweep_poll_mode(const sweep_cfg *cfg, const char *poll, const bool *use, bool peer,
                           sweep_progress *pg)
{
	const char *modes[2] = {"latency", "throughput"};
	sweep_servers sv;
	memset(&sv, 0, sizeof(sv));
	if (sweep_start_servers(cfg, poll, &sv, use) != 0) {
		fprintf(stderr, "ferry-bench sweep: servers did not start (link %s)\n",
		        cfg->link.name);
		sweep_stop_servers(&sv);
		return -1;
	}
	for (int m = 0; m < 2; m++)
		for (int s = 0; s < cfg->nsizes; s++) {
			uint64_t ucx_iters = m == 0 ? 2000 : 500;
			for (int k = 0; k < cfg->slices && !pg->broken; k++)
				for (int t = 0; t < SWEEP_NTRANSPORTS + 1 && !pg->broken; t++)
					if (sweep_runs(t, use, peer, poll))
						sweep_slice(cfg, &sv, t, poll, modes[m], cfg->sizes[s], k,
						            &ucx_iters, pg);
		}
	sweep_stop_servers(&sv);
	return pg->broken ? -1 : 0;
}

/* The points given up, on stderr: their errors are in results.json. */
static void sweep_report_gave_up(void)
{
	for (int i = 0; i < sweep_nrows; i++) {
		const sweep_row *w = &sweep_rows[i];
		if (w->gave_up)
			fprintf(stderr,
			        "ferry-bench sweep: gave up on %s %s %s %llu B after %d failed "
			        "slices (%llu call errors)\n",
			        w->transport, w->poll, w->mode, (unsigned long long)w->size,
			        w->nfailed, (unsigned long long)w->agg.errors);
	}
}

int bench_sweep_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"out", required_argument, NULL, 'o'},
		{"quick", no_argument, NULL, 'q'},
		{"tiny", no_argument, NULL, 't'},
		{"plots", required_argument, NULL, 'P'},
		{"no-peer", no_argument, NULL, 'N'},
		{"no-plots", no_argument, NULL, 'X'},
		{"no-fileread", no_argument, NULL, 'F'},
		{"list", no_argument, NULL, 'L'},
		{"transports", required_argument, NULL, 'T'},
		{"slices", required_argument, NULL, 'k'},
		{"slice", required_argument, NULL, 's'},
		{"cpus", required_argument, NULL, 'c'},
		{"link", required_argument, NULL, 'l'},
		{"mtu", required_argument, NULL, 'm'},
		{"sizes", required_argument, NULL, 'S'},
		{"polls", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	sweep_cfg cfg = {.plots = "plots", .peer = true, .plot = true, .fileread = true,
	                 .cpu_client = 0, .cpu_server = 1};
	double slice = -1;
	int slices = -1, mtu = -1, o;
	bool list = false;
	const char *link = "lo", *sizes = NULL, *polls = NULL;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'o': cfg.out = optarg; break;
		case 'q': cfg.quick = true; break;
		case 't': cfg.tiny = true; break;
		case 'P': cfg.plots = optarg; break;
		case 'N': cfg.peer = false; break;
		case 'X': cfg.plot = false; break;
		case 'F': cfg.fileread = false; break;
		case 'L': list = true; break;
		case 'T': cfg.only = optarg; break;
		case 'k': slices = atoi(optarg); break;
		case 's': slice = bench_parse_duration(optarg); break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &cfg.cpu_client, &cfg.cpu_server) != 2)
				goto bad;
			break;
		case 'l': link = optarg; break;
		case 'm': mtu = atoi(optarg); break;
		case 'S': sizes = optarg; break;
		case 'p': polls = optarg; break;
		case 'h': sweep_usage(stdout); return 0;
		default: goto bad;
		}
	}
	if (cfg.out == NULL && !list)
		goto bad;
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		cfg.cpu_client = cfg.cpu_server = -1; /* nothing to pin apart */
	if (list) {
		/* one line per transport: stack, yes|no, why not */
		for (int i = 0; i < SWEEP_NTRANSPORTS; i++) {
			char why[160] = "";
			bool ok = sweep_transport_runnable(&sweep_transports[i], why, sizeof(why));
			printf("%s %s%s%s\n", sweep_transports[i].stack, ok ? "yes" : "no",
			       ok ? "" : " ", why);
		}
		return 0;
	}
	if (mtu >= 0 && strcmp(link, "veth") != 0) {
		fprintf(stderr, "ferry-bench sweep: --mtu needs --link veth\n");
		return 2;
	}
	static char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 1;
	exe[n] = '\0';
	cfg.exe = exe;
	if (sweep_plan(&cfg, strcmp(link, "veth") == 0, sizes, polls, slices, slice) != 0)
		goto bad;
	sweep_catch_signals(); /* before the namespaces: a signal now removes them */
	if (bench_link_open(&cfg.link, link, mtu >= 0 ? mtu : SWEEP_MTU_DEFAULT) != 0)
		return 1;
	mkdir(cfg.out, 0755);
	bool use[SWEEP_NTRANSPORTS];
	bool peer = sweep_choose(&cfg, use);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/server-metrics.jsonl", cfg.out);
	unlink(path);
	snprintf(path, sizeof(path), "%s/client-metrics.jsonl", cfg.out);
	unlink(path);

	sweep_progress pg = {0};
	for (int p = 0; p < cfg.npolls; p++)
		for (int t = 0; t < SWEEP_NTRANSPORTS + 1; t++)
			if (sweep_runs(t, use, peer, cfg.polls[p]))
				pg.total += 2 * cfg.nsizes * cfg.slices;
	int fti[2];
	int nfile = sweep_fileread_plan(&cfg, use, fti);
	if (cfg.fileread && cfg.nfsizes > 0 && nfile < 2)
		fprintf(stderr, "ferry-bench sweep: %s\n",
		        nfile == 0 ? "no fileread rows (needs the tcp transport)"
		                   : "fileread: no splice row, tcp alone");
	pg.total += nfile * cfg.nfsizes * cfg.slices;
	pg.t_start = bench_now_ns();
	bool aborted = false; /* no servers: what was measured is still written */
	for (int p = 0; p < cfg.npolls && !aborted; p++)
		aborted = sweep_poll_mode(&cfg, cfg.polls[p], use, peer, &pg) != 0;
	if (!aborted && nfile > 0 &&
	    sweep_fileread(&cfg, fti, nfile, &pg.done, pg.total, pg.t_start, &pg.failures) != 0)
		pg.failures++;
	bench_progress_done();
	sweep_finish_rows();
	if (sweep_write(&cfg) != 0)
		return 1;
	sweep_metrics_csv(&cfg);
	sweep_histograms_csv(&cfg);
	sweep_table(&cfg, stdout);
	fflush(stdout); /* the table, then what was given up, also into one file */
	sweep_report_gave_up();
	printf("\n%d slices in %.1f s (%d failed, %d skipped after failures), link %s; "
	       "results in %s/results.csv\n",
	       pg.done, (double)(bench_now_ns() - pg.t_start) / 1e9, pg.failures, pg.skipped,
	       cfg.link.name, cfg.out);
	if (cfg.plot) {
		if (sweep_plots(&cfg) != 0) {
			fprintf(stderr, "ferry-bench sweep: plotting failed\n");
			return 1;
		}
		printf("plots in %s/\n", cfg.out);
	}
	return aborted || (pg.failures > 0 && pg.failures + pg.skipped == pg.done) ? 1 : 0;
bad:
	sweep_usage(stderr);
	return 2;
}
