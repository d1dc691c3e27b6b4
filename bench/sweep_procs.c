/* ferry-bench sweep: child processes (spawned in the link's namespaces,
 * their stdout read line by line, reaped with a grace period, ended on our
 * own signals) and the servers of a poll mode (the ferry server and the two
 * raw baselines, only one running at a time). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sweep.h"

/* Child processes ---------------------------------------------------------------*/

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

void bench_sweep_catch_signals(void)
{
	struct sigaction sa = {.sa_handler = sweep_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* The child's half of bench_sweep_spawn: in the side's namespace (through
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
int bench_sweep_spawn(const sweep_cfg *cfg, int side, char *const argv[],
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
		setenv(BENCH_NO_PROGRESS_ENV, "1", 1); /* the sweep draws its own */
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
int bench_sweep_readline(sweep_child *c, char *line, size_t len, double timeout_s)
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

int bench_sweep_reap(sweep_child *c, bool kill_it, struct rusage *ru)
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
	while (kill_it && (got = wait4(c->pid, &st, WNOHANG, r)) == 0 &&
	       bench_now_ns() < end)
		usleep(1000);
	if (kill_it && got == 0)
		kill(c->pid, SIGKILL);
	if (got != c->pid)
		wait4(c->pid, &st, 0, r);
	sweep_kid_set(c->pid, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Has c exited? Then why goes in buf (c is left to bench_sweep_reap). */
bool bench_sweep_exited(const sweep_child *c, char *buf, size_t len)
{
	siginfo_t si = {0};
	if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
	    si.si_pid != c->pid)
		return false;
	if (si.si_code == CLD_EXITED)
		snprintf(buf, len, "exit status %d", si.si_status);
	else
		snprintf(buf, len, "signal %d (%s)", si.si_status,
		         strsignal(si.si_status));
	return true;
}

/* Servers -----------------------------------------------------------------------*/

/* Transport ti's server locator on the link's server address. */
char *bench_sweep_listen_loc(const sweep_cfg *cfg, int ti, char *buf, size_t len)
{
	snprintf(buf, len, "%s:host=%s,port=0", bench_sweep_transports[ti].stack,
	         cfg->link.host);
	return buf;
}

/* "HOST:PORT" of a raw server on the link's server address. */
char *bench_sweep_raw_addr(const sweep_cfg *cfg, int port, char *buf, size_t len)
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
			argv[a++] = bench_sweep_listen_loc(cfg, i, listen[i],
			                                   sizeof(listen[i]));
		}
	argv[a++] = "--poll";
	argv[a++] = (char *)sv->poll;
	argv[a] = NULL;
	char line[600];
	if (bench_sweep_spawn(cfg, BENCH_LINK_SERVER, argv, NULL, cfg->cpu_server,
	                      &sv->ferry) != 0)
		return -1;
	for (int i = 0; i < SWEEP_NTRANSPORTS; i++) {
		sv->ferry_ok[i] = false;
		if (!sv->use[i])
			continue;
		if (bench_sweep_readline(&sv->ferry, line, sizeof(line), 10) != 0)
			return -1;
		snprintf(sv->ferry_loc[i], sizeof(sv->ferry_loc[i]), "%s", line);
		sv->ferry_ok[i] = true;
	}
	if (bench_sweep_readline(&sv->ferry, line, sizeof(line), 10) != 0 ||
	    strcmp(line, "ready") != 0)
		return -1;
	return 0;
}

/* Raw baseline server udp (else tcp) of sv, its port into sv. 0 or -1 (a
 * child that started is left in sv for bench_sweep_stop_servers). */
static int sweep_start_raw(const sweep_cfg *cfg, sweep_servers *sv, bool udp)
{
	char line[600], any[64];
	sweep_child *c = udp ? &sv->raw_udp : &sv->raw_tcp;
	bench_sweep_raw_addr(cfg, 0, any, sizeof(any));
	char *argv[] = {(char *)cfg->exe,
	                "raw",
	                "--proto",
	                udp ? "udp" : "tcp",
	                "--listen",
	                any,
	                "--poll",
	                (char *)sv->poll,
	                NULL};
	int rc =
	        bench_sweep_spawn(cfg, BENCH_LINK_SERVER, argv, NULL, cfg->cpu_server, c);
	if (rc != 0 || bench_sweep_readline(c, line, sizeof(line), 10) != 0 ||
	    strncmp(line, "port=", 5) != 0)
		return -1;
	*(udp ? &sv->raw_udp_port : &sv->raw_tcp_port) = atoi(line + 5);
	return 0;
}

/* The ferry server and both raw servers for one poll mode. 0 or -1 (the
 * caller stops whatever started). */
int bench_sweep_start_servers(const sweep_cfg *cfg, const char *poll, sweep_servers *sv,
                              const bool *use)
{
	sv->poll = poll;
	sv->use = use;
	if (sweep_start_ferry(cfg, sv) != 0 || sweep_start_raw(cfg, sv, true) != 0 ||
	    sweep_start_raw(cfg, sv, false) != 0)
		return -1;
	return 0;
}

void bench_sweep_focus(sweep_servers *sv, int which)
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

void bench_sweep_stop_servers(sweep_servers *sv)
{
	/* stopped servers must run again to act on SIGTERM */
	pid_t pids[3] = {sv->ferry.pid, sv->raw_udp.pid, sv->raw_tcp.pid};
	for (int i = 0; i < 3; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGCONT);
	if (sv->ferry.pid > 0)
		bench_sweep_reap(&sv->ferry, true, NULL);
	if (sv->raw_udp.pid > 0)
		bench_sweep_reap(&sv->raw_udp, true, NULL);
	if (sv->raw_tcp.pid > 0)
		bench_sweep_reap(&sv->raw_tcp, true, NULL);
	memset(sv, 0, sizeof(*sv));
}

const char *bench_sweep_srv_name(int which)
{
	static const char *const names[SWEEP_SRV_KINDS] = {
	        [SWEEP_SRV_NONE] = "none",
	        [SWEEP_SRV_FERRY] = "ferry",
	        [SWEEP_SRV_RAW_UDP] = "raw-udp",
	        [SWEEP_SRV_RAW_TCP] = "raw-tcp",
	        [SWEEP_SRV_FILEREAD] = "fileread"};
	return which >= 0 && which < SWEEP_SRV_KINDS ? names[which] : "?";
}

static sweep_child *sweep_srv_child(sweep_servers *sv, int which)
{
	return which == SWEEP_SRV_FERRY     ? &sv->ferry
	       : which == SWEEP_SRV_RAW_UDP ? &sv->raw_udp
	                                    : &sv->raw_tcp;
}

/* Server which of sv again, the old one reaped first (stopped or not). */
static int sweep_srv_start_again(const sweep_cfg *cfg, sweep_servers *sv, int which)
{
	sweep_child *c = sweep_srv_child(sv, which);
	if (c->pid > 0) {
		kill(c->pid, SIGCONT); /* a stopped server acts on SIGTERM once it runs */
		bench_sweep_reap(c, true, NULL);
	}
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	return which == SWEEP_SRV_FERRY
	               ? sweep_start_ferry(cfg, sv)
	               : sweep_start_raw(cfg, sv, which == SWEEP_SRV_RAW_UDP);
}

static int sweep_srv_broken(sweep_servers *sv, int which, sweep_progress *pg)
{
	bench_progress_done(); /* the message on a line of its own */
	fprintf(stderr,
	        "ferry-bench sweep: the %s server (poll %s) could not be started again: "
	        "stopping the sweep\n",
	        bench_sweep_srv_name(which), sv->poll);
	pg->broken = true;
	return -1;
}

/* waitid(WNOHANG | WNOWAIT) on each child: a stopped server is alive, a dead
 * one a zombie until reaped. Whether its port still answers is not probed:
 * a stopped server's kernel socket accepts and queues all the same. */
int bench_sweep_check_servers(const sweep_cfg *cfg, sweep_servers *sv, sweep_progress *pg)
{
	static const int all[] = {SWEEP_SRV_FERRY, SWEEP_SRV_RAW_UDP, SWEEP_SRV_RAW_TCP};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		sweep_child *c = sweep_srv_child(sv, all[i]);
		char why[96];
		if (c->pid <= 0 || !bench_sweep_exited(c, why, sizeof(why)))
			continue;
		bench_progress_done(); /* the message on a line of its own */
		fprintf(stderr,
		        "ferry-bench sweep: the %s server (poll %s, pid %d) died (%s); "
		        "starting another\n",
		        bench_sweep_srv_name(all[i]), sv->poll, (int)c->pid, why);
		if (sweep_srv_start_again(cfg, sv, all[i]) != 0)
			return sweep_srv_broken(sv, all[i], pg);
		pg->restarts[all[i]]++;
	}
	return 0;
}

/* After a failed slice: a fresh ferry server, so that one transport's
 * broken state (a session declared dead, a pinned receive pool) does not
 * fail every later slice of every transport it serves. */
int bench_sweep_restart_ferry(const sweep_cfg *cfg, sweep_servers *sv, sweep_progress *pg)
{
	char why[96];
	bool died = sv->ferry.pid > 0 && bench_sweep_exited(&sv->ferry, why, sizeof(why));
	if (died) {
		bench_progress_done(); /* the message on a line of its own */
		fprintf(stderr,
		        "ferry-bench sweep: the ferry server (poll %s, pid %d) "
		        "died (%s); starting another\n",
		        sv->poll, (int)sv->ferry.pid, why);
	}
	if (sweep_srv_start_again(cfg, sv, SWEEP_SRV_FERRY) != 0)
		return sweep_srv_broken(sv, SWEEP_SRV_FERRY, pg);
	(died ? pg->restarts : pg->replaced)[SWEEP_SRV_FERRY]++;
	return 0;
}
