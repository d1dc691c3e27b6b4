/* ferry-bench raw, the UDP family: a server that answers latency calls and
 * counts streams, and the client's calls and streams (wire protocol in
 * raw.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "raw.h"

/* Server ------------------------------------------------------------------------------*/

static void raw_udp_reply(int fd, const void *p, size_t len, const struct sockaddr_in *to,
                          bool spin)
{
	int flags = spin ? MSG_DONTWAIT : 0;
	/* A full send queue is worth waiting out; anything else (the client
	 * went away) only loses this reply. */
	while (sendto(fd, p, len, flags, (const struct sockaddr *)to, sizeof(*to)) < 0 &&
	       (bench_raw_again(errno) || errno == ENOBUFS) && !bench_raw_stop)
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

int bench_raw_udp_server(int fd, bool spin)
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
	while (!bench_raw_stop) {
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

/* Client ------------------------------------------------------------------------------*/

int bench_raw_udp_socket(const struct raw_opts *o)
{
	int fd = socket(AF_INET,
	                SOCK_DGRAM | SOCK_CLOEXEC | (o->spin ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		perror("ferry-bench raw: socket");
		return -1;
	}
	bench_raw_sockbufs(fd);
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
int bench_raw_udp_call(struct raw_client *c)
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
		if (!bench_raw_again(errno) && errno != ENOBUFS)
			return raw_udp_failed(c, "send");
	uint64_t start = bench_now_ns();
	for (;;) {
		ssize_t n = recv(c->fd, c->rx, c->rxcap, flags);
		if (n >= 0) {
			if ((size_t)n == rsp && memcmp(c->rx, c->tx, RAW_HDR_BYTES) == 0)
				return 0;
			/* a late reply to an earlier call: drop it, keep waiting */
		} else if (!bench_raw_again(errno)) {
			return raw_udp_failed(c, "recv");
		} else if (!c->o->spin && errno != EINTR) {
			return 1; /* SO_RCVTIMEO ran out */
		}
		if (bench_now_ns() - start >= RAW_TIMEOUT_NS)
			return 1;
	}
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
int bench_raw_udp_stream(struct raw_client *c, double seconds, struct raw_point *p)
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
	uint64_t s0 = bench_raw_server_cpu(o), c0 = bench_cpu_ns();
	uint64_t t0 = bench_now_ns(), stop = t0 + raw_ns(seconds), last = t0, t1;
	for (;;) {
		for (int i = 0; i < RAW_BATCH_DGRAMS; i++)
			raw_put64(hdr[i] + 8, seq + (uint64_t)i);
		int n = sendmmsg(c->fd, msg, RAW_BATCH_DGRAMS, flags);
		if (n > 0)
			seq += (uint64_t)n;
		else if (n < 0 && !bench_raw_again(errno) && errno != ENOBUFS) {
			int err = errno;
			bench_progress_done(); /* isatty() may change errno */
			errno = err;
			return raw_udp_failed(c, "sendmmsg");
		}
		t1 = bench_now_ns();
		if (t1 >= stop)
			break;
		if (p != NULL && t1 - last >= RAW_PROGRESS_NS) {
			bench_raw_progress(c, t0, t1);
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
	p->scpu = bench_raw_delta(s0, bench_raw_server_cpu(o));
	p->ccpu = ccpu;
	p->ops = pkts;
	p->errors = seq > pkts ? seq - pkts : 0;
	p->seconds = (double)(t1 - t0) / 1e9;
	return 0;
}
