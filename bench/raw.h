/* ferry-bench raw, shared between its files: the wire protocol (below), the
 * options, a client's state, and the helpers both families use. raw.c
 * parses options and starts a server, raw_client.c measures, raw_udp.c and
 * raw_tcp.c are the two baseline families (server and client side each),
 * raw_io.c the socket helpers they share. */
#ifndef FERRY_BENCH_RAW_H
#define FERRY_BENCH_RAW_H

/* Wire protocol (integers big-endian).
 *
 * UDP latency: one datagram each way per call. Request: u32 word, u32 size,
 * then filler up to max(8, SIZE) bytes for write and echo (a read request is
 * exactly 8 bytes). word = seq << 8 | op with op = BENCH_OP_READ/WRITE/ECHO
 * and seq a 24-bit per-call counter, so a reply that arrives after its call
 * timed out never passes for the reply to a later call. The reply starts with
 * the request's 8 bytes and is max(8, SIZE) bytes long for read and echo
 * (echo sends the request back as is), exactly 8 bytes for write. No reply
 * within 200 ms: the call counts as an error and the next call goes on.
 *
 * UDP throughput: the client streams datagrams of max(16, SIZE) bytes, each
 * starting u32 RAW_MAGIC_STREAM, u32 run, u64 seq. The server counts bytes
 * and datagrams per run (a new run id restarts the count). Then the client
 * sends END (u32 RAW_MAGIC_END, u32 run, 8 zero bytes) every 10 ms until the
 * server's REPORT (u32 RAW_MAGIC_REPORT, u32 run, u64 bytes, u64 datagrams;
 * zeros if that run is not the server's current one) comes back, for at most
 * 2 s. The server tells the kinds apart by the first word: the magics have
 * 1..3 in their low byte, latency words 16..18.
 *
 * TCP: TCP_NODELAY on both ends; the first message on a connection picks the
 * kind. Latency: request u32 op, u32 size, then SIZE bytes for write and
 * echo; reply SIZE bytes for read and echo (echo returns the payload), the
 * request's 8-byte header for write; one request at a time, any ops and
 * sizes, until the client closes. Throughput: u32 RAW_MAGIC_STREAM, u32 SIZE
 * (the client's write size, informational), then bytes until the client
 * shuts down its write side; the server replies with the u64 count of bytes
 * after the header and closes. One connection per stream. The client
 * refuses SIZE 0 for read and echo: an empty reply cannot be waited for.
 *
 * Results: latency rows carry the per-call RTT percentiles; throughput rows
 * have no samples, ops = datagrams the server received (UDP) or SIZE-byte
 * writes (TCP), rates over the client's send time, and for UDP errors = the
 * datagrams the server did not receive; the server's CPU is read once the
 * count is back, as draining its queue is part of the work. Throughput rows
 * say op "write" since the data flows client to server whatever --op says. */
#include <arpa/inet.h>
#include <endian.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "common.h"

#define RAW_UDP_MAX_BYTES    65507u     /* largest UDP payload over IPv4 */
#define RAW_TCP_MAX_BYTES    (1u << 30) /* sizes travel as u32; a sane cap for buffers */
#define RAW_HDR_BYTES        8
#define RAW_STREAM_HDR_BYTES 16 /* UDP stream datagram header */
#define RAW_REPORT_BYTES     24
#define RAW_DGRAM_BUF_BYTES  65536
#define RAW_BATCH_DGRAMS     32
#define RAW_SOCKBUF_BYTES    (8 << 20)
/* the server's recv size when counting a TCP stream */
#define RAW_STREAM_CHUNK_BYTES (256 << 10)
#define RAW_TIMEOUT_NS         200000000ull
#define RAW_END_EVERY_NS       10000000ull
#define RAW_REPORT_WAIT_NS     2000000000ull
#define RAW_PROGRESS_NS        200000000ull
#define RAW_MAGIC_STREAM       0x46525301u /* "FRS" 1 */
#define RAW_MAGIC_END          0x46525302u
#define RAW_MAGIC_REPORT       0x46525303u

struct raw_opts {
	bool tcp, throughput, spin, sizes_given;
	const char *listen, *connect, *json, *csv;
	int op, cpu, nsizes;
	pid_t server_pid;
	double duration, warmup;
	uint64_t sizes[BENCH_SIZES_MAX];
	struct sockaddr_in addr;
};

struct raw_client {
	const struct raw_opts *o;
	int fd; /* the UDP socket, or the TCP latency connection */
	uint8_t *tx, *rx;
	size_t txcap, rxcap;
	uint32_t seq, run;
	uint64_t size; /* the point being measured */
};

/* What one measured point produced, before it becomes a bench_result. */
struct raw_point {
	bench_samples s;
	uint64_t ops, errors, ccpu, scpu;
	double seconds;
};

typedef int (*raw_call_fn)(struct raw_client *c);

/* Set by SIGTERM/SIGINT in the server; the client never installs handlers. */
extern volatile sig_atomic_t bench_raw_stop;

static inline void raw_put32(uint8_t *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static inline uint32_t raw_get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

static inline void raw_put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static inline uint64_t raw_get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static inline bool raw_is_op(uint32_t op)
{
	return op == BENCH_OP_READ || op == BENCH_OP_WRITE || op == BENCH_OP_ECHO;
}

static inline uint64_t raw_ns(double s)
{
	return (uint64_t)(s * 1e9);
}

/* raw_io.c */
/* Server CPU so far (ns) from /proc, or 0 = unknown. */
uint64_t bench_raw_server_cpu(const struct raw_opts *o);
/* b - a, or 0 (unknown) when either is unknown. */
uint64_t bench_raw_delta(uint64_t a, uint64_t b);
/* The progress line of the point c is measuring (a terminal only). */
void bench_raw_progress(const struct raw_client *c, uint64_t t0, uint64_t t);
/* Big socket buffers (forced past the sysctl limits when root). */
void bench_raw_sockbufs(int fd);
/* Is err only "try again" (EAGAIN, EWOULDBLOCK, EINTR)? */
bool bench_raw_again(int err);
/* All len bytes: 0, or -1 with errno (also once bench_raw_stop is set). */
int bench_raw_send_all(int fd, const uint8_t *p, size_t len, bool spin);
/* min..max bytes: 1 with *got set, 0 on EOF first, -1 on error or stop. */
int bench_raw_recv_some(int fd, uint8_t *p, size_t min, size_t max, bool spin,
                        size_t *got);
/* Exactly len bytes: 1, 0 on EOF first, -1 on error or stop. */
int bench_raw_recv_all(int fd, uint8_t *p, size_t len, bool spin);

/* raw_udp.c */
/* Serve datagrams on fd until bench_raw_stop. The exit status. */
int bench_raw_udp_server(int fd, bool spin);
/* The client's connected socket, or -1 (said on stderr). */
int bench_raw_udp_socket(const struct raw_opts *o);
/* One call: 0 = reply, 1 = lost (timed out), -1 = fatal. */
int bench_raw_udp_call(struct raw_client *c);
/* Stream for seconds, then the server's count into p (p NULL: warmup).
 * 0 or -1 (said on stderr). The same for bench_raw_tcp_stream. */
int bench_raw_udp_stream(struct raw_client *c, double seconds, struct raw_point *p);

/* raw_tcp.c */
/* Accept and serve connections on lfd until bench_raw_stop. The exit status. */
int bench_raw_tcp_server(int lfd, bool spin);
/* A connection to the server, TCP_NODELAY (non-blocking when spinning), or -1. */
int bench_raw_tcp_connect(const struct raw_opts *o);
/* One call: 0, or -1 (a broken connection ends the run). */
int bench_raw_tcp_call(struct raw_client *c);
int bench_raw_tcp_stream(struct raw_client *c, double seconds, struct raw_point *p);

/* raw_client.c: measure every size of o, print the results. The exit status. */
int bench_raw_client(const struct raw_opts *o);

#endif
