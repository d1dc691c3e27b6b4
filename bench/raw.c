/* ferry-bench raw: the raw-socket baseline every ferry transport row is
 * compared with. Plain UDP datagrams or one plain TCP connection at the same
 * sizes, cores and polling modes as the ferry client, against a server that
 * answers every mode and op for any number of consecutive clients. */

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
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

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
static volatile sig_atomic_t raw_stop;

static void raw_put32(uint8_t *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t raw_get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

static void raw_put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static uint64_t raw_get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static bool raw_is_op(uint32_t op)
{
	return op == BENCH_OP_READ || op == BENCH_OP_WRITE || op == BENCH_OP_ECHO;
}

static uint64_t raw_ns(double s)
{
	return (uint64_t)(s * 1e9);
}

static uint64_t raw_server_cpu(const struct raw_opts *o)
{
	return o->server_pid > 0 ? bench_pid_cpu_ns(o->server_pid) : 0;
}

/* 0 = unknown, which bench_result_finish reports as such. */
static uint64_t raw_delta(uint64_t a, uint64_t b)
{
	return a != 0 && b > a ? b - a : 0;
}

static void raw_progress(const struct raw_client *c, uint64_t t0, uint64_t t)
{
	bench_progress("raw-%s %s size %llu: %.1f/%.1fs", c->o->tcp ? "tcp" : "udp",
	               c->o->throughput ? "throughput" : bench_op_name(c->o->op),
	               (unsigned long long)c->size, (double)(t - t0) / 1e9,
	               c->o->duration);
}

static void raw_on_signal(int sig)
{
	(void)sig;
	raw_stop = 1;
}

/* HOST:PORT, IPv4. An empty host or "*" means any address when listening. */
static int raw_parse_addr(const char *s, bool passive, struct sockaddr_in *sa)
{
	const char *colon = strrchr(s, ':');
	char host[256];
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		goto bad;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || errno != 0 || port > 65535)
		goto bad;
	bool any = host[0] == '\0' || strcmp(host, "*") == 0;
	struct addrinfo hints = {.ai_family = AF_INET,
	                         .ai_flags = passive ? AI_PASSIVE : 0};
	struct addrinfo *res;
	int rc = getaddrinfo(any ? NULL : host, NULL, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "ferry-bench raw: %s: %s\n", s, gai_strerror(rc));
		return -1;
	}
	memcpy(sa, res->ai_addr, sizeof(*sa));
	sa->sin_port = htons((uint16_t)port);
	freeaddrinfo(res);
	return 0;
bad:
	fprintf(stderr, "ferry-bench raw: bad address '%s' (want HOST:PORT)\n", s);
	return -1;
}

/* Big buffers so a throughput burst is not dropped for want of socket
 * memory; the FORCE variants pass net.core.[rw]mem_max when we are root. */
static void raw_sockbufs(int fd)
{
	int v = RAW_SOCKBUF_BYTES;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

static bool raw_again(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/* The whole buffer; a spinning caller sees EAGAIN and simply retries. 0, or
 * -1 with errno (also when the server is told to stop). */
static int raw_send_all(int fd, const uint8_t *p, size_t len, bool spin)
{
	int flags = MSG_NOSIGNAL | (spin ? MSG_DONTWAIT : 0);
	while (len > 0) {
		ssize_t n = send(fd, p, len, flags);
		if (n < 0) {
			if (!raw_again(errno))
				return -1;
			if (raw_stop) {
				errno = EINTR;
				return -1;
			}
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* At least min and at most max bytes (more than min when they are already
 * there, which saves the server a second recv for header + payload). 1 with
 * *got set, 0 on EOF first, -1 on error or stop. */
static int raw_recv_some(int fd, uint8_t *p, size_t min, size_t max, bool spin,
                         size_t *got)
{
	int flags = spin ? MSG_DONTWAIT : 0;
	size_t have = 0;
	while (have < min) {
		ssize_t n = recv(fd, p + have, max - have, flags);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (!raw_again(errno))
				return -1;
			if (raw_stop) {
				errno = EINTR;
				return -1;
			}
			continue;
		}
		have += (size_t)n;
	}
	*got = have;
	return 1;
}

static int raw_recv_all(int fd, uint8_t *p, size_t len, bool spin)
{
	size_t got;
	return raw_recv_some(fd, p, len, len, spin, &got);
}

/* Server ------------------------------------------------------------------------------*/

static void raw_udp_reply(int fd, const void *p, size_t len, const struct sockaddr_in *to,
                          bool spin)
{
	int flags = spin ? MSG_DONTWAIT : 0;
	/* A full send queue is worth waiting out; anything else (the client
	 * went away) only loses this reply. */
	while (sendto(fd, p, len, flags, (const struct sockaddr *)to, sizeof(*to)) < 0 &&
	       (raw_again(errno) || errno == ENOBUFS) && !raw_stop)
		;
}

/* The stream the server is counting: one at a time, the latest run id. */
struct raw_udp_run {
	uint32_t id;
	bool valid;
	uint64_t bytes, dgrams;
};

/* One datagram: count it, or answer it. True if it was stream data. */
static bool raw_udp_serve(int fd, const uint8_t *d, size_t len,
                          const struct sockaddr_in *from, bool spin, uint8_t *fill,
                          struct raw_udp_run *run)
{
	if (len < RAW_HDR_BYTES)
		return false;
	uint32_t w = raw_get32(d), arg = raw_get32(d + 4);
	if (w == RAW_MAGIC_STREAM && len >= RAW_STREAM_HDR_BYTES) {
		if (!run->valid || arg != run->id)
			*run = (struct raw_udp_run){.id = arg, .valid = true};
		run->bytes += len;
		run->dgrams++;
		return true;
	}
	if (w == RAW_MAGIC_END) {
		uint8_t rep[RAW_REPORT_BYTES];
		bool cur = run->valid && arg == run->id;
		raw_put32(rep, RAW_MAGIC_REPORT);
		raw_put32(rep + 4, arg);
		raw_put64(rep + 8, cur ? run->bytes : 0);
		raw_put64(rep + 16, cur ? run->dgrams : 0);
		raw_udp_reply(fd, rep, sizeof(rep), from, spin);
		return false;
	}
	uint32_t op = w & 0xff;
	if (op == BENCH_OP_READ && arg <= RAW_UDP_MAX_BYTES) {
		memcpy(fill, d, RAW_HDR_BYTES);
		raw_udp_reply(fd, fill, arg < RAW_HDR_BYTES ? RAW_HDR_BYTES : arg, from,
		              spin);
	} else if (op == BENCH_OP_WRITE) {
		raw_udp_reply(fd, d, RAW_HDR_BYTES, from, spin);
	} else if (op == BENCH_OP_ECHO) {
		raw_udp_reply(fd, d, len, from, spin);
	}
	return false;
}

static int raw_udp_server(int fd, bool spin)
{
	uint8_t *bufs = malloc((size_t)RAW_BATCH_DGRAMS * RAW_DGRAM_BUF_BYTES);
	/* read replies: the request header, then filler */
	uint8_t *fill = calloc(1, RAW_DGRAM_BUF_BYTES);
	if (bufs == NULL || fill == NULL) {
		fprintf(stderr, "ferry-bench raw: out of memory\n");
		free(bufs);
		free(fill);
		return 1;
	}
	struct mmsghdr msg[RAW_BATCH_DGRAMS];
	struct iovec iov[RAW_BATCH_DGRAMS];
	struct sockaddr_in from[RAW_BATCH_DGRAMS];
	struct raw_udp_run run = {0};
	/* One datagram per recvmmsg while serving calls (no wasted second try per
	 * call), batches while a stream is coming in. */
	unsigned int vlen = 1;
	while (!raw_stop) {
		for (unsigned int i = 0; i < vlen; i++) {
			iov[i] = (struct iovec){bufs + (size_t)i * RAW_DGRAM_BUF_BYTES,
			                        RAW_DGRAM_BUF_BYTES};
			msg[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
			                                 .msg_namelen = sizeof(from[i]),
			                                 .msg_iov = &iov[i],
			                                 .msg_iovlen = 1};
		}
		/* MSG_WAITFORONE: block for the first datagram only */
		int flags = spin ? MSG_DONTWAIT : MSG_WAITFORONE;
		int n = recvmmsg(fd, msg, vlen, flags, NULL);
		if (n < 0)
			continue; /* EAGAIN, EINTR, or a stray ICMP error: keep serving */
		bool streaming = false;
		for (int i = 0; i < n; i++)
			if (msg[i].msg_hdr.msg_namelen == sizeof(from[i]) &&
			    raw_udp_serve(fd, iov[i].iov_base, msg[i].msg_len, &from[i],
			                  spin, fill, &run))
				streaming = true;
		vlen = streaming ? RAW_BATCH_DGRAMS : 1;
	}
	free(bufs);
	free(fill);
	return 0;
}

/* Count a throughput stream to EOF (already = bytes that came with the
 * header), then report the count. */
static void raw_tcp_count(int fd, bool spin, uint8_t *buf, size_t cap, uint64_t already)
{
	uint64_t total = already;
	int flags = spin ? MSG_DONTWAIT : 0;
	while (!raw_stop) { /* a busy stream never blocks long enough for EINTR */
		ssize_t n = recv(fd, buf, cap, flags);
		if (n == 0)
			break;
		if (n < 0) {
			if (raw_again(errno) && !raw_stop)
				continue;
			return;
		}
		total += (uint64_t)n;
	}
	if (raw_stop)
		return;
	uint8_t cnt[8];
	raw_put64(cnt, total);
	(void)raw_send_all(fd, cnt, sizeof(cnt), spin);
}

/* Serve one connection until the client closes it or breaks the protocol.
 * The buffer (header + largest payload so far) is kept for the next one. */
static void raw_tcp_conn(int fd, bool spin, uint8_t **bufp, size_t *capp)
{
	while (!raw_stop) {
		uint8_t *buf = *bufp;
		size_t got;
		if (raw_recv_some(fd, buf, RAW_HDR_BYTES, *capp, spin, &got) != 1)
			return;
		uint32_t op = raw_get32(buf), size = raw_get32(buf + 4);
		if (op == RAW_MAGIC_STREAM) {
			raw_tcp_count(fd, spin, buf, *capp, got - RAW_HDR_BYTES);
			return;
		}
		size_t need = op == BENCH_OP_READ ? RAW_HDR_BYTES
		                                  : RAW_HDR_BYTES + (size_t)size;
		/* got > need: the next request came before this reply */
		if (!raw_is_op(op) || size > RAW_TCP_MAX_BYTES || got > need) {
			fprintf(stderr, "ferry-bench raw: bad request (op %u, size %u)\n",
			        op, size);
			return;
		}
		/* read replies come from this buffer too, so always room for SIZE */
		if (RAW_HDR_BYTES + (size_t)size > *capp) {
			size_t cap = RAW_HDR_BYTES + (size_t)size;
			if ((buf = realloc(buf, cap)) == NULL) {
				fprintf(stderr, "ferry-bench raw: out of memory\n");
				return;
			}
			/* no stale heap on the wire */
			memset(buf + *capp, 0x5a, cap - *capp);
			*bufp = buf;
			*capp = cap;
		}
		if (got < need && raw_recv_all(fd, buf + got, need - got, spin) != 1)
			return;
		int rc = op == BENCH_OP_WRITE
		                 ? raw_send_all(fd, buf, RAW_HDR_BYTES, spin)
		                 : raw_send_all(fd, buf + RAW_HDR_BYTES, size, spin);
		if (rc != 0)
			return;
	}
}

static int raw_tcp_server(int lfd, bool spin)
{
	size_t cap = RAW_HDR_BYTES + RAW_STREAM_CHUNK_BYTES;
	uint8_t *buf = malloc(cap);
	if (buf == NULL)
		return 1;
	memset(buf, 0x5a, cap);
	while (!raw_stop) {
		/* accept blocks either way: the wait between clients is not measured */
		int fd = accept4(lfd, NULL, NULL,
		                 SOCK_CLOEXEC | (spin ? SOCK_NONBLOCK : 0));
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				perror("ferry-bench raw: accept");
				usleep(10000);
				continue;
			}
			perror("ferry-bench raw: accept");
			free(buf);
			return 1;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		raw_tcp_conn(fd, spin, &buf, &cap);
		close(fd);
	}
	free(buf);
	return 0;
}

static int raw_server(const struct raw_opts *o)
{
	/* No SA_RESTART: a blocked recv or accept returns EINTR and we leave. */
	struct sigaction sa = {.sa_handler = raw_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a client killed mid-reply must not kill us */

	int type = o->tcp ? SOCK_STREAM : SOCK_DGRAM | (o->spin ? SOCK_NONBLOCK : 0);
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("ferry-bench raw: socket");
		return 1;
	}
	int one = 1;
	if (o->tcp)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	else
		raw_sockbufs(fd);
	struct sockaddr_in a = o->addr;
	socklen_t alen = sizeof(a);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    (o->tcp && listen(fd, 16) != 0) ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
		fprintf(stderr, "ferry-bench raw: %s: %s\n", o->listen, strerror(errno));
		close(fd);
		return 1;
	}
	printf("port=%u\n", ntohs(a.sin_port));
	fflush(stdout);
	int rc = o->tcp ? raw_tcp_server(fd, o->spin) : raw_udp_server(fd, o->spin);
	close(fd);
	return rc;
}

/* Client ------------------------------------------------------------------------------*/

static int raw_udp_socket(const struct raw_opts *o)
{
	int fd = socket(AF_INET,
	                SOCK_DGRAM | SOCK_CLOEXEC | (o->spin ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		perror("ferry-bench raw: socket");
		return -1;
	}
	raw_sockbufs(fd);
	/* Blocking calls give up after 200 ms like the spinning ones, so a lost
	 * datagram costs an error, not the run. */
	struct timeval tv = {.tv_sec = 0, .tv_usec = RAW_TIMEOUT_NS / 1000};
	if (!o->spin)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* connected: a cached route, only the server's datagrams, and a dead
	 * server shows up as ECONNREFUSED instead of silence */
	if (connect(fd, (const struct sockaddr *)&o->addr, sizeof(o->addr)) != 0) {
		fprintf(stderr, "ferry-bench raw: %s: %s\n", o->connect, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int raw_tcp_connect(const struct raw_opts *o)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("ferry-bench raw: socket");
		return -1;
	}
	int one = 1;
	if (connect(fd, (const struct sockaddr *)&o->addr, sizeof(o->addr)) != 0) {
		fprintf(stderr, "ferry-bench raw: %s: %s\n", o->connect, strerror(errno));
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->spin)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static int raw_udp_failed(const struct raw_client *c, const char *what)
{
	if (errno == ECONNREFUSED)
		fprintf(stderr,
		        "ferry-bench raw: no udp server at %s (connection refused)\n",
		        c->o->connect);
	else
		fprintf(stderr, "ferry-bench raw: udp %s: %s\n", what, strerror(errno));
	return -1;
}

/* One UDP call: 0 = reply, 1 = lost (timed out), -1 = fatal. */
static int raw_udp_call(struct raw_client *c)
{
	int op = c->o->op;
	int flags = c->o->spin ? MSG_DONTWAIT : 0;
	size_t len = c->size < RAW_HDR_BYTES ? RAW_HDR_BYTES : (size_t)c->size;
	size_t req = op == BENCH_OP_READ ? RAW_HDR_BYTES : len;
	size_t rsp = op == BENCH_OP_WRITE ? RAW_HDR_BYTES : len;
	c->seq = (c->seq + 1) & 0xffffff;
	raw_put32(c->tx, c->seq << 8 | (uint32_t)op);
	raw_put32(c->tx + 4, (uint32_t)c->size);
	while (send(c->fd, c->tx, req, flags) < 0)
		if (!raw_again(errno) && errno != ENOBUFS)
			return raw_udp_failed(c, "send");
	uint64_t start = bench_now_ns();
	for (;;) {
		ssize_t n = recv(c->fd, c->rx, c->rxcap, flags);
		if (n >= 0) {
			if ((size_t)n == rsp && memcmp(c->rx, c->tx, RAW_HDR_BYTES) == 0)
				return 0;
			/* a late reply to an earlier call: drop it, keep waiting */
		} else if (!raw_again(errno)) {
			return raw_udp_failed(c, "recv");
		} else if (!c->o->spin && errno != EINTR) {
			return 1; /* SO_RCVTIMEO ran out */
		}
		if (bench_now_ns() - start >= RAW_TIMEOUT_NS)
			return 1;
	}
}

/* One TCP call: 0 or -1 (a broken connection ends the run). */
static int raw_tcp_call(struct raw_client *c)
{
	int op = c->o->op;
	bool spin = c->o->spin;
	size_t req = RAW_HDR_BYTES + (op == BENCH_OP_READ ? 0 : (size_t)c->size);
	size_t rsp = op == BENCH_OP_WRITE ? RAW_HDR_BYTES : (size_t)c->size;
	raw_put32(c->tx, (uint32_t)op);
	raw_put32(c->tx + 4, (uint32_t)c->size);
	/* header and payload in one send, as any framing transport would */
	if (raw_send_all(c->fd, c->tx, req, spin) != 0) {
		fprintf(stderr, "ferry-bench raw: tcp send: %s\n", strerror(errno));
		return -1;
	}
	int rc = rsp > 0 ? raw_recv_all(c->fd, c->rx, rsp, spin) : 1;
	if (rc != 1) {
		fprintf(stderr, "ferry-bench raw: tcp recv: %s\n",
		        rc == 0 ? "server closed the connection" : strerror(errno));
		return -1;
	}
	return 0;
}

/* Warmup calls, then calls for the duration, each timed on its own. */
static int raw_latency_point(struct raw_client *c, raw_call_fn call, struct raw_point *p)
{
	const struct raw_opts *o = c->o;
	uint64_t t = bench_now_ns(), end = t + raw_ns(o->warmup);
	while (t < end) {
		if (call(c) < 0)
			return -1;
		t = bench_now_ns();
	}
	uint64_t s0 = raw_server_cpu(o), c0 = bench_cpu_ns();
	uint64_t t0 = bench_now_ns(), stop = t0 + raw_ns(o->duration), last = t0, t1;
	do {
		uint64_t a = bench_now_ns();
		int rc = call(c);
		t1 = bench_now_ns();
		if (rc < 0) {
			bench_progress_done();
			return -1;
		}
		if (rc == 0) {
			bench_samples_add(&p->s, t1 - a);
			p->ops++;
		} else {
			p->errors++;
		}
		if (t1 - last >= RAW_PROGRESS_NS) {
			raw_progress(c, t0, t1);
			last = t1;
		}
	} while (t1 < stop);
	p->ccpu = bench_cpu_ns() - c0;
	p->scpu = raw_delta(s0, raw_server_cpu(o));
	p->seconds = (double)(t1 - t0) / 1e9;
	bench_progress_done();
	return 0;
}

/* END until REPORT for this run. Not timed, so a plain poll() in both modes. */
static int raw_udp_report(struct raw_client *c, uint32_t run, uint64_t *bytes,
                          uint64_t *pkts)
{
	uint8_t end[RAW_STREAM_HDR_BYTES] = {0};
	raw_put32(end, RAW_MAGIC_END);
	raw_put32(end + 4, run);
	uint64_t start = bench_now_ns(), sent = 0;
	for (;;) {
		uint64_t t = bench_now_ns();
		if (t - start >= RAW_REPORT_WAIT_NS) {
			fprintf(stderr, "ferry-bench raw: no REPORT from %s in 2 s\n",
			        c->o->connect);
			return -1;
		}
		if (sent == 0 || t - sent >= RAW_END_EVERY_NS) {
			if (send(c->fd, end, sizeof(end), MSG_DONTWAIT) < 0 &&
			    errno == ECONNREFUSED)
				return raw_udp_failed(c, "send");
			sent = t;
		}
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		poll(&pfd, 1, 1);
		ssize_t n;
		while ((n = recv(c->fd, c->rx, c->rxcap, MSG_DONTWAIT)) >= 0) {
			/* stale latency replies and earlier runs' REPORTs are skipped */
			if (n == RAW_REPORT_BYTES &&
			    raw_get32(c->rx) == RAW_MAGIC_REPORT &&
			    raw_get32(c->rx + 4) == run) {
				*bytes = raw_get64(c->rx + 8);
				*pkts = raw_get64(c->rx + 16);
				return 0;
			}
		}
		if (errno == ECONNREFUSED)
			return raw_udp_failed(c, "recv");
	}
}

/* Stream datagrams for `seconds`, then ask for the count. p == NULL: warmup
 * (the REPORT still drains the server before the measured run starts). */
static int raw_udp_stream(struct raw_client *c, double seconds, struct raw_point *p)
{
	const struct raw_opts *o = c->o;
	uint32_t run = ++c->run;
	size_t len =
	        c->size < RAW_STREAM_HDR_BYTES ? RAW_STREAM_HDR_BYTES : (size_t)c->size;
	uint8_t hdr[RAW_BATCH_DGRAMS][RAW_STREAM_HDR_BYTES];
	struct iovec iov[RAW_BATCH_DGRAMS][2];
	struct mmsghdr msg[RAW_BATCH_DGRAMS];
	memset(msg, 0, sizeof(msg));
	for (int i = 0; i < RAW_BATCH_DGRAMS; i++) {
		raw_put32(hdr[i], RAW_MAGIC_STREAM);
		raw_put32(hdr[i] + 4, run);
		/* own header, shared payload: no per-datagram copy of SIZE bytes */
		iov[i][0] = (struct iovec){hdr[i], RAW_STREAM_HDR_BYTES};
		iov[i][1] = (struct iovec){c->tx, len - RAW_STREAM_HDR_BYTES};
		msg[i].msg_hdr.msg_iov = iov[i];
		msg[i].msg_hdr.msg_iovlen = len > RAW_STREAM_HDR_BYTES ? 2 : 1;
	}
	int flags = o->spin ? MSG_DONTWAIT : 0;
	uint64_t seq = 0;
	uint64_t s0 = raw_server_cpu(o), c0 = bench_cpu_ns();
	uint64_t t0 = bench_now_ns(), stop = t0 + raw_ns(seconds), last = t0, t1;
	for (;;) {
		for (int i = 0; i < RAW_BATCH_DGRAMS; i++)
			raw_put64(hdr[i] + 8, seq + (uint64_t)i);
		int n = sendmmsg(c->fd, msg, RAW_BATCH_DGRAMS, flags);
		if (n > 0)
			seq += (uint64_t)n;
		else if (n < 0 && !raw_again(errno) && errno != ENOBUFS) {
			int err = errno;
			bench_progress_done(); /* isatty() may change errno */
			errno = err;
			return raw_udp_failed(c, "sendmmsg");
		}
		t1 = bench_now_ns();
		if (t1 >= stop)
			break;
		if (p != NULL && t1 - last >= RAW_PROGRESS_NS) {
			raw_progress(c, t0, t1);
			last = t1;
		}
	}
	uint64_t ccpu = bench_cpu_ns() - c0;
	if (p != NULL)
		bench_progress_done();
	uint64_t bytes = 0, pkts = 0;
	if (raw_udp_report(c, run, &bytes, &pkts) != 0)
		return -1;
	if (p == NULL)
		return 0;
	/* the server's share ends when it has drained its queue, i.e. now */
	p->scpu = raw_delta(s0, raw_server_cpu(o));
	p->ccpu = ccpu;
	p->ops = pkts;
	p->errors = seq > pkts ? seq - pkts : 0;
	p->seconds = (double)(t1 - t0) / 1e9;
	return 0;
}

/* One connection: header, SIZE-byte writes for `seconds`, shutdown, count. */
static int raw_tcp_stream(struct raw_client *c, double seconds, struct raw_point *p)
{
	const struct raw_opts *o = c->o;
	int fd = raw_tcp_connect(o);
	if (fd < 0)
		return -1;
	uint8_t hdr[RAW_HDR_BYTES];
	raw_put32(hdr, RAW_MAGIC_STREAM);
	raw_put32(hdr + 4, (uint32_t)c->size);
	const char *what = "send";
	if (raw_send_all(fd, hdr, sizeof(hdr), o->spin) != 0)
		goto fail;
	uint64_t sent = 0;
	uint64_t s0 = raw_server_cpu(o), c0 = bench_cpu_ns();
	uint64_t t0 = bench_now_ns(), stop = t0 + raw_ns(seconds), last = t0, t1;
	for (;;) {
		if (raw_send_all(fd, c->tx, (size_t)c->size, o->spin) != 0)
			goto fail;
		sent += c->size;
		t1 = bench_now_ns();
		if (t1 >= stop)
			break;
		if (p != NULL && t1 - last >= RAW_PROGRESS_NS) {
			raw_progress(c, t0, t1);
			last = t1;
		}
	}
	uint64_t ccpu = bench_cpu_ns() - c0;
	if (p != NULL)
		bench_progress_done();
	what = "shutdown";
	if (shutdown(fd, SHUT_WR) != 0)
		goto fail;
	uint8_t cnt[8];
	what = "recv count";
	int rc = raw_recv_all(fd, cnt, sizeof(cnt), o->spin);
	if (rc != 1) {
		if (rc == 0)
			errno = ECONNRESET;
		goto fail;
	}
	uint64_t scpu = raw_delta(s0, raw_server_cpu(o));
	close(fd);
	uint64_t got = raw_get64(cnt);
	if (got != sent)
		fprintf(stderr,
		        "ferry-bench raw: tcp server counted %llu bytes of %llu sent\n",
		        (unsigned long long)got, (unsigned long long)sent);
	if (p != NULL) {
		p->ops = got / c->size;
		p->ccpu = ccpu;
		p->scpu = scpu;
		p->seconds = (double)(t1 - t0) / 1e9;
	}
	return 0;
fail:;
	int err = errno;
	bench_progress_done(); /* isatty() may change errno */
	fprintf(stderr, "ferry-bench raw: tcp stream %s: %s\n", what, strerror(err));
	close(fd);
	return -1;
}

static int raw_point(struct raw_client *c, struct raw_point *p)
{
	const struct raw_opts *o = c->o;
	if (!o->throughput)
		return raw_latency_point(c, o->tcp ? raw_tcp_call : raw_udp_call, p);
	int (*stream)(struct raw_client *, double, struct raw_point *) =
	        o->tcp ? raw_tcp_stream : raw_udp_stream;
	if (o->warmup > 0 && stream(c, o->warmup, NULL) != 0)
		return -1;
	return stream(c, o->duration, p);
}

static FILE *raw_open_out(const char *path)
{
	if (strcmp(path, "-") == 0)
		return stdout;
	FILE *f = fopen(path, "w");
	if (f == NULL)
		fprintf(stderr, "ferry-bench raw: %s: %s\n", path, strerror(errno));
	return f;
}

static void raw_close_out(FILE *f)
{
	if (f != NULL && f != stdout)
		fclose(f);
}

static int raw_client(const struct raw_opts *o)
{
	FILE *json = NULL, *csv = NULL;
	/* no output named: the JSON lines on stdout, which is what scripts read */
	if ((o->json != NULL || o->csv == NULL) &&
	    (json = raw_open_out(o->json ? o->json : "-")) == NULL)
		return 1;
	if (o->csv != NULL && (csv = raw_open_out(o->csv)) == NULL) {
		raw_close_out(json);
		return 1;
	}
	if (csv != NULL)
		bench_csv_header(csv);
	if (o->server_pid > 0 && bench_pid_cpu_ns(o->server_pid) == 0)
		fprintf(stderr,
		        "ferry-bench raw: no /proc/%d/schedstat: server CPU unknown\n",
		        (int)o->server_pid);

	uint64_t maxsize = 0;
	for (int i = 0; i < o->nsizes; i++)
		maxsize = o->sizes[i] > maxsize ? o->sizes[i] : maxsize;
	struct raw_client c = {.o = o, .fd = -1};
	/* UDP: any datagram fits, so stray ones are never truncated into looking
	 * like a reply. TCP: header + the largest payload. */
	c.txcap = o->tcp ? RAW_HDR_BYTES + (size_t)maxsize : RAW_DGRAM_BUF_BYTES;
	c.rxcap = o->tcp ? (maxsize < RAW_HDR_BYTES ? RAW_HDR_BYTES : (size_t)maxsize)
	                 : RAW_DGRAM_BUF_BYTES;
	c.tx = malloc(c.txcap);
	c.rx = malloc(c.rxcap);
	int status = 1;
	if (c.tx == NULL || c.rx == NULL) {
		fprintf(stderr, "ferry-bench raw: out of memory\n");
		goto out;
	}
	/* touch every page now so no first-use fault lands in a measurement */
	memset(c.tx, 0x5a, c.txcap);
	memset(c.rx, 0, c.rxcap);
	/* runs of different clients differ, so a server never adds one client's
	 * stream to another's count */
	c.run = (uint32_t)getpid() * 2654435761u ^ (uint32_t)bench_now_ns();
	if (!o->tcp)
		c.fd = raw_udp_socket(o);
	else if (!o->throughput)
		c.fd = raw_tcp_connect(o);
	if (c.fd < 0 && !(o->tcp && o->throughput))
		goto out;

	status = 0;
	for (int i = 0; i < o->nsizes; i++) {
		struct raw_point p = {0};
		c.size = o->sizes[i];
		if (raw_point(&c, &p) != 0) {
			bench_samples_free(&p.s);
			status = 1;
			break;
		}
		bench_result r = {.size = c.size};
		snprintf(r.transport, sizeof(r.transport), "raw-%s",
		         o->tcp ? "tcp" : "udp");
		snprintf(r.poll, sizeof(r.poll), "%s", o->spin ? "spin" : "block");
		snprintf(r.mode, sizeof(r.mode), "%s",
		         o->throughput ? "throughput" : "latency");
		snprintf(r.op, sizeof(r.op), "%s",
		         bench_op_name(o->throughput ? BENCH_OP_WRITE : o->op));
		bench_result_finish(&r, &p.s, p.ops, p.errors, p.seconds, p.ccpu, p.scpu);
		bench_samples_free(&p.s);
		if (json != NULL)
			bench_result_json(json, &r);
		if (csv != NULL) {
			bench_csv_row(csv, &r, r.transport, 1);
			fflush(csv);
		}
	}
out:
	if (c.fd >= 0)
		close(c.fd);
	free(c.tx);
	free(c.rx);
	raw_close_out(json);
	raw_close_out(csv);
	return status;
}

/* Options -----------------------------------------------------------------------------*/

static void raw_usage(FILE *f)
{
	fprintf(f,
	        "usage: ferry-bench raw --proto udp|tcp --listen HOST:PORT\n"
	        "                       [--poll spin|block] [--cpu N]\n"
	        "       ferry-bench raw --proto udp|tcp --connect HOST:PORT [options]\n"
	        "The raw-socket baseline. --listen serves every mode and op for any\n"
	        "number of consecutive clients until SIGTERM/SIGINT; PORT 0 picks a\n"
	        "port, printed on stdout as port=N. --connect measures:\n"
	        "  --mode latency|throughput  (latency)\n"
	        "  --op read|write|echo       latency calls (read): read = 8-byte\n"
	        "                             request, SIZE-byte reply; write = the\n"
	        "                             reverse; echo = SIZE both ways.\n"
	        "                             Throughput streams client to server.\n"
	        "  --sizes LIST               (64,1k,4k,64k,1m; udp up to 65507)\n"
	        "  --duration D, --warmup D   per size (3s, 0.1s)\n"
	        "  --poll spin|block          busy-polled non-blocking sockets, or\n"
	        "                             blocking calls (spin)\n"
	        "  --cpu N                    pin this process to CPU N\n"
	        "  --server-pid PID           server CPU from /proc/PID/schedstat\n"
	        "  --json FILE, --csv FILE    results, '-' = stdout (JSON on stdout)\n"
	        "A udp call with no reply in 200 ms counts as an error. Throughput is\n"
	        "the bytes the server received over the client's send time; for udp,\n"
	        "errors are the datagrams it did not receive.\n");
}

/* -1 = go on, else the exit status. */
static int raw_parse(int argc, char **argv, struct raw_opts *o)
{
	static const struct option opts[] = {
	        {"proto", required_argument, NULL, 'p'},
	        {"listen", required_argument, NULL, 'l'},
	        {"connect", required_argument, NULL, 'c'},
	        {"mode", required_argument, NULL, 'm'},
	        {"op", required_argument, NULL, 'o'},
	        {"sizes", required_argument, NULL, 's'},
	        {"duration", required_argument, NULL, 'd'},
	        {"warmup", required_argument, NULL, 'w'},
	        {"poll", required_argument, NULL, 'P'},
	        {"cpu", required_argument, NULL, 'C'},
	        {"server-pid", required_argument, NULL, 'S'},
	        {"json", required_argument, NULL, 'j'},
	        {"csv", required_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	*o = (struct raw_opts){.op = BENCH_OP_READ,
	                       .cpu = -1,
	                       .spin = true,
	                       .duration = 3,
	                       .warmup = 0.1};
	o->nsizes = bench_parse_sizes("64,1k,4k,64k,1m", o->sizes, BENCH_SIZES_MAX);
	const char *proto = NULL;
	char *end;
	long v;
	int c;
	optind = 0; /* glibc and musl: start over whatever main parsed before */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			proto = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'c':
			o->connect = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "latency") != 0 &&
			    strcmp(optarg, "throughput") != 0)
				goto bad;
			o->throughput = strcmp(optarg, "throughput") == 0;
			break;
		case 'o':
			if ((o->op = bench_parse_op(optarg)) < 0 || o->op == BENCH_OP_FILEREAD)
				goto bad; /* fileread needs a ferry server */
			break;
		case 's':
			if ((o->nsizes = bench_parse_sizes(optarg, o->sizes,
			                                   BENCH_SIZES_MAX)) < 0)
				return 2;
			o->sizes_given = true;
			break;
		case 'd':
			if ((o->duration = bench_parse_duration(optarg)) <= 0)
				goto bad;
			break;
		case 'w':
			if ((o->warmup = bench_parse_duration(optarg)) < 0)
				goto bad;
			break;
		case 'P':
			if (strcmp(optarg, "spin") != 0 && strcmp(optarg, "block") != 0)
				goto bad;
			o->spin = strcmp(optarg, "spin") == 0;
			break;
		case 'C':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || errno != 0 || v < -1 ||
			    v > 65535)
				goto bad;
			o->cpu = (int)v;
			break;
		case 'S':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || errno != 0 || v <= 0 ||
			    v > 0x3fffffff)
				goto bad;
			o->server_pid = (pid_t)v;
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'v':
			o->csv = optarg;
			break;
		case 'h':
			raw_usage(stdout);
			return 0;
		default:
			raw_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferry-bench raw: unexpected argument '%s'\n",
		        argv[optind]);
		return 2;
	}
	if (proto == NULL || (strcmp(proto, "udp") != 0 && strcmp(proto, "tcp") != 0)) {
		fprintf(stderr, "ferry-bench raw: --proto udp|tcp is required\n");
		return 2;
	}
	o->tcp = strcmp(proto, "tcp") == 0;
	if ((o->listen == NULL) == (o->connect == NULL)) {
		fprintf(stderr,
		        "ferry-bench raw: give exactly one of --listen and --connect\n");
		return 2;
	}
	if (raw_parse_addr(o->listen ? o->listen : o->connect, o->listen != NULL,
	                   &o->addr) != 0)
		return 2;
	if (o->listen != NULL)
		return -1;

	/* Refuse what the protocol cannot carry before measuring anything. The
	 * default list is trimmed for udp instead: it is not the user's mistake. */
	int n = 0;
	uint64_t max = o->tcp ? RAW_TCP_MAX_BYTES : RAW_UDP_MAX_BYTES;
	for (int i = 0; i < o->nsizes; i++) {
		uint64_t s = o->sizes[i];
		if (o->throughput && s == 0) {
			fprintf(stderr,
			        "ferry-bench raw: throughput needs sizes above 0\n");
			return 2;
		}
		/* an empty TCP reply cannot be waited for: the next request would
		 * overtake it */
		if (o->tcp && !o->throughput && o->op != BENCH_OP_WRITE && s == 0) {
			fprintf(stderr, "ferry-bench raw: tcp %s needs sizes above 0\n",
			        bench_op_name(o->op));
			return 2;
		}
		if (s <= max) {
			o->sizes[n++] = s;
			continue;
		}
		if (o->tcp || o->sizes_given) {
			fprintf(stderr,
			        "ferry-bench raw: size %llu: raw-%s carries at most "
			        "%llu%s\n",
			        (unsigned long long)s, proto, (unsigned long long)max,
			        o->tcp ? "" : " (one datagram per message)");
			return 2;
		}
		fprintf(stderr,
		        "ferry-bench raw: skipping size %llu: over one udp datagram\n",
		        (unsigned long long)s);
	}
	o->nsizes = n;
	return -1;
bad:
	fprintf(stderr, "ferry-bench raw: bad value '%s'\n", optarg);
	raw_usage(stderr);
	return 2;
}

int bench_raw_main(int argc, char **argv)
{
	struct raw_opts o;
	int rc = raw_parse(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if ((rc = bench_pin(o.cpu)) != 0) {
		fprintf(stderr, "ferry-bench raw: cannot pin to CPU %d: %s\n", o.cpu,
		        strerror(-rc));
		return 1;
	}
	return o.listen != NULL ? raw_server(&o) : raw_client(&o);
}
