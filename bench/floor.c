/* ferry-floor: what the kernel alone costs for one large response, with no
 * ferry code in the path. A ping-pong of a 1-byte request and a SIZE-byte
 * response over plain TCP, or over UDP sent the cheapest way the kernel
 * offers (UDP_SEGMENT trains of up to 64 KiB, received with UDP_GRO). The
 * UDP row is the floor any UDP transport pays on that link: fast+udp can
 * get near it, never under it. bench/floor.sh runs it across a veth pair
 * next to ferry-bench's fast+udp and tcp rows.
 *
 *   ferry-floor server tcp|udp PORT SEG [spin]
 *   ferry-floor client tcp|udp HOST PORT SEG SIZE CALLS [INFLIGHT] [spin]
 *
 * SEG is the datagram size (the link's MTU less 28). INFLIGHT (default 1)
 * requests are kept outstanding: 1 measures round trips (latency), more
 * measures MB/s (throughput), as ferry-bench's two modes do. spin: both
 * sides poll with MSG_DONTWAIT instead of sleeping (ferry-bench --poll
 * spin); UDP keeps fewer where that many answers would not fit in 3/4 of
 * its receive buffer (the "inflight" it prints). The client prints one JSON line: median
 * and p99 round trip (or MB/s), its CPU per call; the server prints its own at the end. A
 * UDP answer that loses a datagram counts as an error after 200 ms. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define FLOOR_HDR        8     /* per datagram: the call's sequence number */
#define FLOOR_TRAIN_MAX  65000 /* bytes per UDP_SEGMENT send (IPv4 limit) */
#define FLOOR_SEGS_MAX   64    /* segments per send (UDP_MAX_SEGMENTS) */
#define FLOOR_WARMUP     100
#define FLOOR_TIMEOUT_MS 200
#define FLOOR_SOCKBUF    (8 << 20)
#define FLOOR_RX_BYTES   (1 << 17)

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int usage(void)
{
	fprintf(stderr, "usage: ferry-floor server tcp|udp PORT SEG [spin]\n"
	                "       ferry-floor client tcp|udp HOST PORT SEG SIZE CALLS "
	                "[INFLIGHT] [spin]\n");
	return 2;
}

static bool floor_spin;

/* One receive: blocking, or (spin) polled with MSG_DONTWAIT until data or
 * the timeout. */
static ssize_t floor_recv(int fd, void *buf, size_t len, int flags,
                          struct sockaddr_in *from, socklen_t *fl, int timeout_ms)
{
	if (!floor_spin) {
		if (timeout_ms >= 0) {
			struct pollfd p = {fd, POLLIN, 0};
			if (poll(&p, 1, timeout_ms) <= 0)
				return -1;
		}
		return recvfrom(fd, buf, len, flags, (struct sockaddr *)from, fl);
	}
	double end = timeout_ms >= 0 ? now_s() + timeout_ms * 1e-3 : 0;
	for (unsigned i = 0;; i++) {
		/* a zero-timeout poll reads the queue without its lock, which a
		 * spinning recv would take from the softirq filling it */
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 0) == 1) {
			ssize_t n = recvfrom(fd, buf, len, flags | MSG_DONTWAIT,
			                     (struct sockaddr *)from, fl);
			if (n >= 0 || (errno != EAGAIN && errno != EINTR))
				return n;
		}
		if (timeout_ms >= 0 && (i & 255) == 0 && now_s() > end)
			return -1;
	}
}

/* UDP buffers forced large (a 1 MiB answer is ~700 datagrams); TCP keeps
 * the kernel's autotuning, as ferry's tcp driver does. */
static int floor_socket(bool tcp)
{
	int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0), one = 1;
	if (fd < 0) {
		perror("ferry-floor: socket");
		return -1;
	}
	if (tcp) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		return fd;
	}
	int v = FLOOR_SOCKBUF;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v));
	if (setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof(one)) != 0)
		perror("ferry-floor: UDP_GRO (trains arrive one datagram each)");
	return fd;
}

/* Datagrams a size-byte answer takes at seg bytes each. */
static size_t floor_segs(size_t size, size_t seg)
{
	size_t p = seg - FLOOR_HDR;
	return size == 0 ? 1 : (size + p - 1) / p;
}

/* The answer over UDP: trains of up to FLOOR_SEGS_MAX segments, each its
 * own header (the sequence) and a slice of src, one sendmsg per train. */
static int floor_udp_answer(int fd, const struct sockaddr_in *to, const uint8_t *hdr,
                            const uint8_t *src, size_t size, size_t seg)
{
	size_t p = seg - FLOOR_HDR, off = 0;
	int per = (int)(FLOOR_TRAIN_MAX / seg);
	if (per > FLOOR_SEGS_MAX)
		per = FLOOR_SEGS_MAX;
	do {
		struct iovec iov[2 * FLOOR_SEGS_MAX];
		int k = 0;
		for (int n = 0; n < per && (off < size || (size == 0 && k == 0)); n++) {
			size_t m = size - off < p ? size - off : p;
			iov[k++] = (struct iovec){(void *)hdr, FLOOR_HDR};
			if (m > 0)
				iov[k++] = (struct iovec){(void *)(src + off), m};
			off += m;
		}
		struct msghdr mh = {.msg_name = (void *)to,
		                    .msg_namelen = sizeof(*to),
		                    .msg_iov = iov,
		                    .msg_iovlen = (size_t)k};
		while (sendmsg(fd, &mh, 0) < 0)
			if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
				perror("ferry-floor: sendmsg");
				return -1;
			}
	} while (off < size);
	return 0;
}

static int floor_server(bool tcp, int port, size_t seg)
{
	int lfd = floor_socket(tcp), one = 1;
	if (lfd < 0)
		return 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    (tcp && listen(lfd, 1) != 0)) {
		perror("ferry-floor: bind");
		return 1;
	}
	int fd = lfd;
	if (tcp) {
		fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			perror("ferry-floor: accept");
			return 1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	} else {
		int s = (int)seg;
		if (setsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &s, sizeof(s)) != 0) {
			perror("ferry-floor: UDP_SEGMENT");
			return 1;
		}
	}
	uint8_t *src = NULL;
	size_t cap = 0;
	long calls = 0;
	double c0 = 0;
	for (;;) {
		/* request: "q", the sequence (u32) and the size (u32) */
		uint8_t q[9];
		struct sockaddr_in peer;
		socklen_t pl = sizeof(peer);
		ssize_t n = recvfrom(fd, q, sizeof(q), MSG_WAITALL,
		                     (struct sockaddr *)&peer, &pl);
		if (n != (ssize_t)sizeof(q) || q[0] != 'q')
			break;
		uint32_t size;
		memcpy(&size, q + 5, 4);
		if (size > cap) {
			free(src);
			cap = size;
			src = malloc(cap);
			if (src == NULL)
				return 1;
			memset(src, 0x5a, cap);
		}
		if (++calls == FLOOR_WARMUP)
			c0 = cpu_s();
		uint8_t hdr[FLOOR_HDR] = {0};
		memcpy(hdr, q + 1, 4);
		if (tcp) {
			for (size_t off = 0; off < size;) {
				ssize_t w = send(fd, src + off, size - off, 0);
				if (w < 0)
					return 1;
				off += (size_t)w;
			}
		} else if (floor_udp_answer(fd, &peer, hdr, src, size, seg) != 0)
			return 1;
	}
	if (calls > FLOOR_WARMUP)
		fprintf(stdout, "{\"server_cpu_us_per_op\": %.1f}\n",
		        (cpu_s() - c0) / (double)(calls - FLOOR_WARMUP) * 1e6);
	free(src);
	return 0;
}

/* Wait for the whole answer to call seq: want bytes (TCP: carry holds
 * bytes already read past the previous answer). false on a timeout (a UDP
 * datagram lost: the call counts as an error). */
static bool floor_await(int fd, bool tcp, uint32_t seq, size_t want, uint8_t *rx,
                        size_t *carry)
{
	size_t got = *carry;
	*carry = 0;
	while (got < want) {
		ssize_t n = floor_recv(fd, rx, FLOOR_RX_BYTES, 0, NULL, NULL,
		                       FLOOR_TIMEOUT_MS);
		if (n <= 0)
			return false;
		if (!tcp && (n < FLOOR_HDR || memcmp(rx, &seq, 4) != 0))
			continue; /* a train of another call: late, or lost parts */
		got += (size_t)n;
	}
	if (tcp)
		*carry = got - want;
	return true;
}

static int floor_request(int fd, uint32_t seq, size_t size)
{
	uint8_t q[9] = {'q'};
	uint32_t sz = (uint32_t)size;
	memcpy(q + 1, &seq, 4);
	memcpy(q + 5, &sz, 4);
	return send(fd, q, sizeof(q), 0) == (ssize_t)sizeof(q) ? 0 : -1;
}

/* calls (after FLOOR_WARMUP) with inflight requests outstanding: each
 * answer that completes sends the next request. Latency per call is from
 * its request to its last byte. */
static int floor_client(bool tcp, const char *host, int port, size_t seg, size_t size,
                        int calls, int inflight)
{
	int fd = floor_socket(tcp);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		fprintf(stderr, "ferry-floor: cannot connect to %s:%d\n", host, port);
		return 1;
	}
	size_t want = tcp ? size : size + floor_segs(size, seg) * FLOOR_HDR, carry = 0;
	/* UDP has no flow control: keep what is in flight within 3/4 of the
	 * receive buffer, or the kernel drops and every call times out */
	bool many = inflight > 1; /* the mode asked for, whatever fits */
	while (!tcp && inflight > 1 && (size_t)inflight * want > FLOOR_SOCKBUF / 4 * 3)
		inflight--;
	int total = calls + FLOOR_WARMUP;
	double *lat = calloc((size_t)calls, sizeof(double));
	double *sent = calloc((size_t)total + (size_t)inflight, sizeof(double));
	uint8_t *rx = malloc(FLOOR_RX_BYTES);
	if (lat == NULL || sent == NULL || rx == NULL)
		return 1;
	int lost = 0, next = 0;
	double c0 = 0, t0 = 0;
	for (; next < inflight && next < total; next++) {
		sent[next] = now_s();
		if (floor_request(fd, (uint32_t)next, size) != 0)
			return 1;
	}
	for (int i = 0; i < total; i++) {
		if (i == FLOOR_WARMUP) {
			c0 = cpu_s();
			t0 = now_s();
		}
		bool ok = floor_await(fd, tcp, (uint32_t)i, want, rx, &carry);
		if (!ok && tcp)
			return 1; /* a TCP answer that stops is a dead server */
		double t = now_s();
		if (i >= FLOOR_WARMUP) {
			lat[i - FLOOR_WARMUP] = t - sent[i];
			lost += !ok;
		}
		if (next < total) {
			sent[next] = now_s();
			if (floor_request(fd, (uint32_t)next++, size) != 0)
				return 1;
		}
	}
	double secs = now_s() - t0;
	double ccpu = (cpu_s() - c0) / calls * 1e6;
	qsort(lat, (size_t)calls, sizeof(double), cmp_double);
	printf("{\"transport\": \"floor-%s\", \"mode\": \"%s\", \"poll\": \"%s\", "
	       "\"size\": %zu, \"seg\": %zu, \"inflight\": %d, \"calls\": %d, "
	       "\"errors\": %d, \"median_us\": %.1f, \"p99_us\": %.1f, "
	       "\"mb_per_s\": %.1f, \"client_cpu_us_per_op\": %.1f}\n",
	       tcp ? "tcp" : "udp-gso", many ? "throughput" : "latency",
	       floor_spin ? "spin" : "block", size, seg, inflight, calls, lost,
	       lat[calls / 2] * 1e6, lat[(size_t)calls * 99 / 100] * 1e6,
	       (double)(calls - lost) * (double)size / secs / 1e6, ccpu);
	/* the end: a short request the server takes as its stop */
	send(fd, "x", 1, 0);
	free(lat);
	free(sent);
	free(rx);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[2], "tcp") != 0 && strcmp(argv[2], "udp") != 0))
		return usage();
	bool tcp = strcmp(argv[2], "tcp") == 0;
	floor_spin = strcmp(argv[argc - 1], "spin") == 0;
	argc -= floor_spin;
	if (strcmp(argv[1], "server") == 0 && argc == 5) {
		size_t seg = strtoul(argv[4], NULL, 10);
		if (seg <= FLOOR_HDR || seg > FLOOR_TRAIN_MAX)
			return usage();
		return floor_server(tcp, atoi(argv[3]), seg);
	}
	if (strcmp(argv[1], "client") == 0 && (argc == 8 || argc == 9)) {
		size_t seg = strtoul(argv[5], NULL, 10);
		int calls = atoi(argv[7]), inflight = argc == 9 ? atoi(argv[8]) : 1;
		if (seg <= FLOOR_HDR || seg > FLOOR_TRAIN_MAX || calls <= 0 ||
		    inflight <= 0 || inflight > 1024)
			return usage();
		return floor_client(tcp, argv[3], atoi(argv[4]), seg,
		                    strtoul(argv[6], NULL, 10), calls, inflight);
	}
	return usage();
}
