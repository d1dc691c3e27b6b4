/* The sweep's link (see link.h): lo, or two network namespaces joined by a
 * veth pair, made with ip(8) and removed at exit or on a signal. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "link.h"

#define LINK_NETNS_DIR       "/var/run/netns" /* where `ip netns add` mounts a namespace */
#define LINK_MTU_MIN         576              /* IPv4's minimum datagram */
#define LINK_MTU_MAX         65535            /* veth's maximum */
#define LINK_NET_FIRST_OCTET 10               /* 10.x.y.0/24 */
#define LINK_NET_X_BASE      200
#define LINK_NET_X_SPAN      50

/* The namespaces' mount points, for bench_link_close: static so that an
 * exit or signal path needs nothing but them. */
static char link_paths[2][PATH_MAX];
static volatile sig_atomic_t link_live;

void bench_link_close(void)
{
	if (!link_live)
		return;
	link_live = 0;
	/* exactly what `ip netns del` does, without a fork: a signal handler
	 * may be here, and fork there can deadlock on malloc's locks */
	for (int i = 0; i < 2; i++)
		if (link_paths[i][0] != '\0') {
			umount2(link_paths[i], MNT_DETACH);
			unlink(link_paths[i]);
			link_paths[i][0] = '\0';
		}
}

static void link_atexit(void)
{
	bench_link_close();
}

/* Is prog an executable in PATH? */
static bool link_have(const char *prog)
{
	const char *path = getenv("PATH");
	char file[PATH_MAX];
	for (const char *p = path != NULL ? path : "/usr/sbin:/usr/bin:/sbin:/bin"; *p;) {
		size_t n = strcspn(p, ":");
		/* an empty entry is the current directory */
		int len = snprintf(file, sizeof(file), "%.*s/%s", n > 0 ? (int)n : 1,
		                   n > 0 ? p : ".", prog);
		if (len > 0 && (size_t)len < sizeof(file) && access(file, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

/* Run argv (NULL-terminated) and wait: 0 when it exited 0. quiet sends
 * its output to /dev/null (a failure the caller explains itself). */
static int link_run(char *const argv[], bool quiet)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (quiet) {
			int fd = open("/dev/null", O_WRONLY);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* `ip ARGS...` in namespace ns ("" for the sweep's own). */
#define LINK_IP(ns, ...)                                                                 \
	link_run((char *[]){"ip", "-n", (char *)(ns), __VA_ARGS__, NULL}, false)

static int link_netns_add(const char *ns, char *path, size_t len)
{
	if (link_run((char *[]){"ip", "netns", "add", (char *)ns, NULL}, false) != 0)
		return -1;
	snprintf(path, len, "%s/%s", LINK_NETNS_DIR, ns);
	if (access(path, F_OK) == 0)
		return 0;
	/* an ip built with another run directory: remove it the way it knows */
	fprintf(stderr, "ferry-bench: ip netns add made no %s\n", path);
	link_run((char *[]){"ip", "netns", "del", (char *)ns, NULL}, true);
	path[0] = '\0';
	return -1;
}

/* The pair, addresses, MTU, lo, and GRO: datagram transports read with
 * UDP_GRO, which coalesces only what the device's GRO delivered together. */
static int link_veth_up(bench_link *l, int mtu)
{
	char mtus[16], addr[2][32];
	int pid = (int)getpid();
	int x = LINK_NET_X_BASE + (pid >> 8) % LINK_NET_X_SPAN, y = pid & 255;
	snprintf(mtus, sizeof(mtus), "%d", mtu);
	for (int s = 0; s < 2; s++)
		snprintf(addr[s], sizeof(addr[s]), "%d.%d.%d.%d/24", LINK_NET_FIRST_OCTET,
		         x, y, s + 1);
	snprintf(l->host, sizeof(l->host), "%d.%d.%d.1", LINK_NET_FIRST_OCTET, x, y);
	if (link_run((char *[]){"ip", "link", "add", l->dev[0], "netns", l->ns[0], "type",
	                        "veth", "peer", "name", l->dev[1], "netns", l->ns[1],
	                        NULL},
	             false) != 0) {
		fprintf(stderr, "ferry-bench: cannot create a veth pair (kernel without "
		                "veth?)\n");
		return -1;
	}
	for (int s = 0; s < 2; s++)
		if (LINK_IP(l->ns[s], "addr", "add", addr[s], "dev", l->dev[s]) != 0 ||
		    LINK_IP(l->ns[s], "link", "set", l->dev[s], "mtu", mtus, "up") != 0 ||
		    LINK_IP(l->ns[s], "link", "set", "lo", "up") != 0) {
			fprintf(stderr,
			        "ferry-bench: cannot configure %s in %s (MTU %d)\n",
			        l->dev[s], l->ns[s], mtu);
			return -1;
		}
	bool gro = link_have("ethtool");
	for (int s = 0; gro && s < 2; s++)
		gro = link_run((char *[]){"ip", "netns", "exec", l->ns[s], "ethtool",
		                          "-K", l->dev[s], "gro", "on", NULL},
		               true) == 0;
	if (!gro)
		fprintf(stderr,
		        "ferry-bench: note: could not turn GRO on for the veth pair "
		        "(ethtool missing or refused); datagram rows lose UDP_GRO "
		        "coalescing\n");
	return 0;
}

static int link_veth_open(bench_link *l, int mtu)
{
	if (mtu < LINK_MTU_MIN || mtu > LINK_MTU_MAX) {
		fprintf(stderr, "ferry-bench: --mtu %d: between %d and %d\n", mtu,
		        LINK_MTU_MIN, LINK_MTU_MAX);
		return -1;
	}
	if (geteuid() != 0) {
		fprintf(stderr,
		        "ferry-bench: --link veth needs root (it creates network "
		        "namespaces and a veth pair); run as root or use --link lo\n");
		return -1;
	}
	if (!link_have("ip")) {
		fprintf(stderr,
		        "ferry-bench: --link veth needs ip (iproute2), not in PATH\n");
		return -1;
	}
	int pid = (int)getpid();
	snprintf(l->name, sizeof(l->name), "veth%d", mtu);
	l->mtu = mtu;
	for (int s = 0; s < 2; s++) {
		snprintf(l->ns[s], sizeof(l->ns[s]), "ferry-sw-%c-%d", "ab"[s], pid);
		snprintf(l->dev[s], sizeof(l->dev[s]), "fsw%c%d", "ab"[s], pid);
	}
	static bool registered;
	if (!registered && atexit(link_atexit) == 0)
		registered = true;
	link_live = 1;
	for (int s = 0; s < 2; s++)
		if (link_netns_add(l->ns[s], link_paths[s], sizeof(link_paths[s])) != 0) {
			fprintf(stderr,
			        "ferry-bench: cannot create network namespace %s "
			        "(no CAP_SYS_ADMIN, or no namespaces here?)\n",
			        l->ns[s]);
			bench_link_close();
			return -1;
		}
	if (link_veth_up(l, mtu) != 0) {
		bench_link_close();
		return -1;
	}
	return 0;
}

int bench_link_open(bench_link *l, const char *kind, int mtu)
{
	memset(l, 0, sizeof(*l));
	if (strcmp(kind, "veth") == 0)
		return link_veth_open(l, mtu);
	if (strcmp(kind, "lo") != 0) {
		fprintf(stderr, "ferry-bench: --link %s: lo or veth\n", kind);
		return -1;
	}
	snprintf(l->name, sizeof(l->name), "lo");
	snprintf(l->host, sizeof(l->host), "127.0.0.1");
	for (int s = 0; s < 2; s++)
		snprintf(l->dev[s], sizeof(l->dev[s]), "lo");
	return 0;
}

const char *bench_link_describe(const bench_link *l, char *buf, size_t len)
{
	if (l->mtu == 0)
		snprintf(buf, len, "lo (loopback, one namespace)");
	else
		snprintf(buf, len,
		         "%s (veth pair, MTU %d; servers in netns %s at %s, clients "
		         "in netns %s)",
		         l->name, l->mtu, l->ns[0], l->host, l->ns[1]);
	return buf;
}
