/* The link a sweep measures: loopback in the sweep's own network
 * namespace, or a veth pair at a chosen MTU between two namespaces made for
 * the run (servers in one, clients in the other), so that packets cross a
 * real device with its MTU, segmentation and GRO instead of lo's 64 KiB
 * frames. */
#ifndef FERRY_BENCH_LINK_H
#define FERRY_BENCH_LINK_H

#include <stddef.h>

#define BENCH_LINK_NAME_BYTES 16 /* "lo", "veth1500": results.csv's link column */
#define BENCH_LINK_NS_BYTES   32
#define BENCH_LINK_DEV_BYTES  16 /* IFNAMSIZ */
#define BENCH_LINK_ADDR_BYTES 16

enum { BENCH_LINK_SERVER = 0, BENCH_LINK_CLIENT = 1 };

typedef struct bench_link {
	char name[BENCH_LINK_NAME_BYTES];
	int mtu;                           /* 0 on lo */
	char host[BENCH_LINK_ADDR_BYTES];  /* the servers' address */
	char ns[2][BENCH_LINK_NS_BYTES];   /* per side; "" on lo */
	char dev[2][BENCH_LINK_DEV_BYTES]; /* per side: lo, or the veth end */
} bench_link;

/* Open the link kind ("lo" or "veth") with mtu (veth only): on veth, make
 * both namespaces and the pair, up, with GRO on where ethtool can set it,
 * and arrange their removal at exit (atexit; a signal handler calls
 * bench_link_close itself). One veth link per process. 0, or -1 with the
 * reason on stderr (not root, no ip, no namespaces) and nothing left
 * behind. */
int bench_link_open(bench_link *l, const char *kind, int mtu);

/* Remove the namespaces (their veth pair goes with them once the last
 * process in them exits). Idempotent; nothing on lo. Async-signal-safe,
 * so a signal handler may call it. */
void bench_link_close(void);

/* "lo (loopback)" or "veth, MTU 1500, servers in netns A, clients in netns B":
 * for tables and messages. */
const char *bench_link_describe(const bench_link *l, char *buf, size_t len);

#endif
