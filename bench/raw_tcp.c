/* ferry-bench raw, the TCP family: a server for request/reply calls and
 * counted streams on any number of consecutive connections, and the client's
 * calls and streams (wire protocol in raw.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "raw.h"

/* Server ------------------------------------------------------------------------------*/

/* Count a throughput stream to EOF (already = bytes that came with the
 * header), then report the count. */
static void raw_tcp_count(int fd, bool spin, uint8_t *buf, size_t cap, uint64_t already)
{
	uint64_t total = already;
	int flags = spin ? MSG_DONTWAIT : 0;
	while (!bench_raw_stop) { /* a busy stream never blocks long enough for EINTR */
		ssize_t n = recv(fd, buf, cap, flags);
		if (n == 0)
			break;
		if (n < 0) {
			if (bench_raw_again(errno) && !bench_raw_stop)
				continue;
			return;
		}
		total += (uint64_t)n;
	}
	if (bench_raw_stop)
		return;
	uint8_t cnt[8];
	raw_put64(cnt, total);
	(void)bench_raw_send_all(fd, cnt, sizeof(cnt), spin);
}

/* Serve one connection until the client closes it or breaks the protocol.
 * The buffer (header + largest payload so far) is kept for the next one. */
static void raw_tcp_conn(int fd, bool spin, uint8_t **bufp, size_t *capp)
{
	while (!bench_raw_stop) {
		uint8_t *buf = *bufp;
		size_t got;
		if (bench_raw_recv_some(fd, buf, RAW_HDR_BYTES, *capp, spin, &got) != 1)
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
		if (got < need &&
		    bench_raw_recv_all(fd, buf + got, need - got, spin) != 1)
			return;
		int rc =
		        op == BENCH_OP_WRITE
		                ? bench_raw_send_all(fd, buf, RAW_HDR_BYTES, spin)
		                : bench_raw_send_all(fd, buf + RAW_HDR_BYTES, size, spin);
		if (rc != 0)
			return;
	}
}

int bench_raw_tcp_server(int lfd, bool spin)
{
	size_t cap = RAW_HDR_BYTES + RAW_STREAM_CHUNK_BYTES;
	uint8_t *buf = malloc(cap);
	if (buf == NULL)
		return 1;
	memset(buf, 0x5a, cap);
	while (!bench_raw_stop) {
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

/* Client ------------------------------------------------------------------------------*/

int bench_raw_tcp_connect(const struct raw_opts *o)
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

/* One TCP call: 0 or -1 (a broken connection ends the run). */
int bench_raw_tcp_call(struct raw_client *c)
{
	int op = c->o->op;
	bool spin = c->o->spin;
	size_t req = RAW_HDR_BYTES + (op == BENCH_OP_READ ? 0 : (size_t)c->size);
	size_t rsp = op == BENCH_OP_WRITE ? RAW_HDR_BYTES : (size_t)c->size;
	raw_put32(c->tx, (uint32_t)op);
	raw_put32(c->tx + 4, (uint32_t)c->size);
	/* header and payload in one send, as any framing transport would */
	if (bench_raw_send_all(c->fd, c->tx, req, spin) != 0) {
		fprintf(stderr, "ferry-bench raw: tcp send: %s\n", strerror(errno));
		return -1;
	}
	int rc = rsp > 0 ? bench_raw_recv_all(c->fd, c->rx, rsp, spin) : 1;
	if (rc != 1) {
		fprintf(stderr, "ferry-bench raw: tcp recv: %s\n",
		        rc == 0 ? "server closed the connection" : strerror(errno));
		return -1;
	}
	return 0;
}

/* One connection: header, SIZE-byte writes for `seconds`, shutdown, count. */
int bench_raw_tcp_stream(struct raw_client *c, double seconds, struct raw_point *p)
{
	const struct raw_opts *o = c->o;
	int fd = bench_raw_tcp_connect(o);
	if (fd < 0)
		return -1;
	uint8_t hdr[RAW_HDR_BYTES];
	raw_put32(hdr, RAW_MAGIC_STREAM);
	raw_put32(hdr + 4, (uint32_t)c->size);
	const char *what = "send";
	if (bench_raw_send_all(fd, hdr, sizeof(hdr), o->spin) != 0)
		goto fail;
	uint64_t sent = 0;
	uint64_t s0 = bench_raw_server_cpu(o), c0 = bench_cpu_ns();
	uint64_t t0 = bench_now_ns(), stop = t0 + raw_ns(seconds), last = t0, t1;
	for (;;) {
		if (bench_raw_send_all(fd, c->tx, (size_t)c->size, o->spin) != 0)
			goto fail;
		sent += c->size;
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
	what = "shutdown";
	if (shutdown(fd, SHUT_WR) != 0)
		goto fail;
	uint8_t cnt[8];
	what = "recv count";
	int rc = bench_raw_recv_all(fd, cnt, sizeof(cnt), o->spin);
	if (rc != 1) {
		if (rc == 0)
			errno = ECONNRESET;
		goto fail;
	}
	uint64_t scpu = bench_raw_delta(s0, bench_raw_server_cpu(o));
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
