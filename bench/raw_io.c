/* ferry-bench raw: what both baseline families share, the server's CPU,
 * progress, socket buffers and whole-buffer send/recv that spin or block. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sys/socket.h>

#include "raw.h"

volatile sig_atomic_t bench_raw_stop;

uint64_t bench_raw_server_cpu(const struct raw_opts *o)
{
	return o->server_pid > 0 ? bench_pid_cpu_ns(o->server_pid) : 0;
}

/* 0 = unknown, which bench_result_finish reports as such. */
uint64_t bench_raw_delta(uint64_t a, uint64_t b)
{
	return a != 0 && b > a ? b - a : 0;
}

void bench_raw_progress(const struct raw_client *c, uint64_t t0, uint64_t t)
{
	bench_progress("raw-%s %s size %llu: %.1f/%.1fs", c->o->tcp ? "tcp" : "udp",
	               c->o->throughput ? "throughput" : bench_op_name(c->o->op),
	               (unsigned long long)c->size, (double)(t - t0) / 1e9,
	               c->o->duration);
}

/* Big buffers so a throughput burst is not dropped for want of socket
 * memory; the FORCE variants pass net.core.[rw]mem_max when we are root. */
void bench_raw_sockbufs(int fd)
{
	int v = RAW_SOCKBUF_BYTES;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

bool bench_raw_again(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/* The whole buffer; a spinning caller sees EAGAIN and simply retries. 0, or
 * -1 with errno (also when the server is told to stop). */
int bench_raw_send_all(int fd, const uint8_t *p, size_t len, bool spin)
{
	int flags = MSG_NOSIGNAL | (spin ? MSG_DONTWAIT : 0);
	while (len > 0) {
		ssize_t n = send(fd, p, len, flags);
		if (n < 0) {
			if (!bench_raw_again(errno))
				return -1;
			if (bench_raw_stop) {
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
int bench_raw_recv_some(int fd, uint8_t *p, size_t min, size_t max, bool spin,
                        size_t *got)
{
	int flags = spin ? MSG_DONTWAIT : 0;
	size_t have = 0;
	while (have < min) {
		ssize_t n = recv(fd, p + have, max - have, flags);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (!bench_raw_again(errno))
				return -1;
			if (bench_raw_stop) {
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

int bench_raw_recv_all(int fd, uint8_t *p, size_t len, bool spin)
{
	size_t got;
	return bench_raw_recv_some(fd, p, len, len, spin, &got);
}
