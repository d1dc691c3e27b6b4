/* Wire-version negotiation (docs/WIRE.md, "Versions"), in one process with
 * plain sockets playing the other side: a server answers a packet at a
 * version it does not speak (0, 2) with a 40-byte VERSION_MISMATCH and keeps
 * no state for it; a client whose "server" answers with a VERSION_MISMATCH,
 * or at another version, fails its calls with FERRY_EVERSION at once (not at
 * the deadline), names both versions in ferry_ctx_errmsg, and fails later
 * calls synchronously. Over unreliable+udp, fast+udp and tcp. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/testutil.h"

#define HDR         40
#define DEADLINE_US 5000000 /* the calls' timeout: failing must take far less */
#define QUICK_US    1000000

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct stat_find {
	const char *name;
	uint64_t value;
};
static void stat_cb(void *arg, const char *name, uint64_t v)
{
	struct stat_find *f = arg;
	if (strcmp(name, f->name) == 0)
		f->value = v;
}
static uint64_t stat(ferry_ctx *ctx, const char *name)
{
	struct stat_find f = {name, 0};
	ferry_ctx_stats(ctx, stat_cb, &f);
	return f.value;
}

static unsigned loc_port(const char *loc)
{
	const char *p = strstr(loc, "port=");
	assert_non_null(p);
	return (unsigned)atoi(p + 5);
}

static struct sockaddr_in lo_addr(unsigned port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* A header-shaped packet at version v, type t: what an older or newer peer
 * might send (only bytes 0-2 are promised to mean the same in every
 * version). */
static size_t craft(uint8_t *p, uint8_t v, uint8_t type)
{
	memset(p, 0, 64);
	p[0] = 0x77, p[1] = 0xfe, p[2] = v, p[3] = type, p[4] = 0x08;
	p[6] = 100; /* opcode */
	p[32] = 12; /* msg_len */
	memcpy(p + HDR, "hello, ferry", 12);
	return HDR + 12;
}

/* The VERSION_MISMATCH a library speaking only version 1 must send. */
static void check_mismatch(const uint8_t *p, ssize_t n, uint8_t refused)
{
	assert_int_equal(n, HDR);
	assert_int_equal(p[0], 0x77);
	assert_int_equal(p[1], 0xfe);
	assert_int_equal(p[2], 1);    /* frozen at version 1 */
	assert_int_equal(p[3], 8);    /* VERSION_MISMATCH (frozen) */
	assert_int_equal(p[4], 0x01); /* RESPONSE */
	assert_int_equal(p[5], refused);
	assert_int_equal(p[38], 1); /* oldest version spoken */
	assert_int_equal(p[39], 1); /* newest */
	for (int i = 6; i < 38; i++)
		assert_int_equal(p[i], 0);
}

/* Server side: datagrams -----------------------------------------------------*/
static void server_dgram(const char *listen, uint8_t type)
{
	ferry_ctx *ctx;
	ferry_server *srv;
	char loc[256];
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	tu_server_handlers(srv);
	assert_int_equal(ferry_server_listen(srv, listen), 0);
	assert_true(ferry_server_locator(srv, 0, loc, sizeof(loc)) > 0);
	struct sockaddr_in to = lo_addr(loc_port(loc));
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	uint8_t pkt[64], in[256];
	const uint8_t versions[] = {0, 2, 255};
	for (size_t i = 0; i < sizeof(versions); i++) {
		size_t n = craft(pkt, versions[i], type);
		assert_int_equal(
		        sendto(fd, pkt, n, 0, (struct sockaddr *)&to, sizeof(to)),
		        (ssize_t)n);
		ssize_t got = -1;
		for (uint64_t t0 = now_us(); got < 0 && now_us() - t0 < QUICK_US;) {
			ferry_ctx_poll(ctx, 0);
			got = recv(fd, in, sizeof(in), MSG_DONTWAIT);
		}
		check_mismatch(in, got, versions[i]);
	}
	assert_int_equal(stat(ctx, "rpc.drop.bad_version"), sizeof(versions));
	assert_int_equal(stat(ctx, "rpc.version.mismatch_sent"), sizeof(versions));
	/* A VERSION_MISMATCH sent to a server is never answered: two peers
	 * must not be able to ping-pong. */
	uint8_t mm[HDR] = {0x77, 0xfe, 1, 5, 0x01, 2};
	mm[38] = mm[39] = 2;
	assert_int_equal(
	        sendto(fd, mm, sizeof(mm), 0, (struct sockaddr *)&to, sizeof(to)), HDR);
	for (uint64_t t0 = now_us(); now_us() - t0 < 100000;)
		ferry_ctx_poll(ctx, 0);
	assert_int_equal(recv(fd, in, sizeof(in), MSG_DONTWAIT), -1);
	assert_int_equal(stat(ctx, "rpc.version.mismatch_sent"), sizeof(versions));
	/* No state was kept: the server still serves a real client. */
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	assert_int_equal(ferry_buf_append(&req, "ping", 4), 0);
	assert_int_equal(ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, DEADLINE_US), 0);
	assert_int_equal(ferry_buf_len(&resp), 4);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry_session_close(s);
	close(fd);
	ferry_ctx_destroy(ctx);
}

static void test_server_unreliable(void **st)
{
	(void)st;
	server_dgram("unreliable+udp:host=127.0.0.1,port=0", 0 /* DATA */);
}

static void test_server_fast(void **st)
{
	(void)st;
	server_dgram("fast+udp:host=127.0.0.1,port=0", 2 /* SESSION_OPEN */);
}

/* Server side: a stream answers the first message, then closes. */
static void test_server_tcp(void **st)
{
	(void)st;
	ferry_ctx *ctx;
	ferry_server *srv;
	char loc[256];
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	assert_int_equal(ferry_server_listen(srv, "tcp:host=127.0.0.1,port=0"), 0);
	assert_true(ferry_server_locator(srv, 0, loc, sizeof(loc)) > 0);
	struct sockaddr_in to = lo_addr(loc_port(loc));
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
	uint8_t pkt[64], in[256];
	size_t n = craft(pkt, 2, 0);
	assert_int_equal(send(fd, pkt, n, 0), (ssize_t)n);
	size_t have = 0;
	bool eof = false;
	for (uint64_t t0 = now_us(); !eof && now_us() - t0 < QUICK_US;) {
		ferry_ctx_poll(ctx, 0);
		ssize_t r = recv(fd, in + have, sizeof(in) - have, MSG_DONTWAIT);
		if (r > 0)
			have += (size_t)r;
		else if (r == 0 || errno == ECONNRESET)
			eof = true;
	}
	assert_true(eof);
	check_mismatch(in, (ssize_t)have, 2);
	assert_int_equal(stat(ctx, "rpc.version.mismatch_sent"), 1);
	close(fd);
	ferry_ctx_destroy(ctx);
}

/* Client side ------------------------------------------------------------------*/
struct done {
	bool done;
	int status;
};
static void done_cb(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	struct done *d = arg;
	d->done = true;
	d->status = status;
}

enum answer { ANSWER_MISMATCH, ANSWER_V2 };

/* The fake server's answer to the request header req: a VERSION_MISMATCH
 * saying it speaks 2-3, or the request echoed at version 2. */
static size_t answer(uint8_t *out, const uint8_t *req, enum answer how)
{
	if (how == ANSWER_MISMATCH) {
		memset(out, 0, HDR);
		out[0] = 0x77, out[1] = 0xfe, out[2] = 1, out[3] = 8, out[4] = 0x01;
		out[5] = req[2];
		out[38] = 2, out[39] = 3;
		return HDR;
	}
	memcpy(out, req, HDR);
	out[2] = 2;
	out[4] |= 0x01;
	return HDR;
}

/* Run a call against the fake server: recv_req gets the first request off
 * the fake's socket, send_ans answers it. */
static void client_expect_eversion(ferry_ctx *ctx, ferry_session *s,
                                   ssize_t (*recv_req)(void *, uint8_t *, size_t),
                                   void (*send_ans)(void *, const uint8_t *, size_t),
                                   void *fake, enum answer how, const char *peer_versions)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	assert_int_equal(ferry_buf_append(&req, "hello", 5), 0);
	struct done d = {0};
	uint64_t t0 = now_us();
	assert_int_equal(
	        ferry_call(s, TEST_OP_ECHO, &req, &resp, DEADLINE_US, done_cb, &d), 0);
	uint8_t in[4096], out[HDR];
	ssize_t got = -1;
	while (got < HDR && now_us() - t0 < QUICK_US) {
		ferry_ctx_poll(ctx, 0);
		got = recv_req(fake, in, sizeof(in));
	}
	assert_true(got >= HDR);
	assert_int_equal(in[2], 1);
	send_ans(fake, out, answer(out, in, how));
	while (!d.done && now_us() - t0 < QUICK_US)
		ferry_ctx_poll(ctx, 0);
	assert_true(d.done);
	assert_int_equal(d.status, FERRY_EVERSION);
	assert_true(now_us() - t0 < QUICK_US);
	const char *msg = ferry_ctx_errmsg(ctx);
	char want[64];
	snprintf(want, sizeof(want), "peer speaks wire version %s", peer_versions);
	if (strstr(msg, want) == NULL || strstr(msg, "this library 1") == NULL)
		fail_msg("errmsg \"%s\" does not name both versions", msg);
	/* The session stays refused: the next call fails at once. */
	ferry_buf_reset(&resp);
	assert_int_equal(
	        ferry_call(s, TEST_OP_ECHO, &req, &resp, DEADLINE_US, done_cb, &d),
	        FERRY_EVERSION);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
}

struct udp_fake {
	int fd;
	struct sockaddr_in from;
};
static ssize_t udp_recv(void *arg, uint8_t *p, size_t len)
{
	struct udp_fake *f = arg;
	socklen_t fl = sizeof(f->from);
	return recvfrom(f->fd, p, len, MSG_DONTWAIT, (struct sockaddr *)&f->from, &fl);
}
static void udp_send(void *arg, const uint8_t *p, size_t len)
{
	struct udp_fake *f = arg;
	assert_int_equal(
	        sendto(f->fd, p, len, 0, (struct sockaddr *)&f->from, sizeof(f->from)),
	        (ssize_t)len);
}

static void client_udp(const char *transport, enum answer how, const char *peer_versions)
{
	struct udp_fake f;
	f.fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = lo_addr(0);
	socklen_t al = sizeof(a);
	assert_int_equal(bind(f.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(f.fd, (struct sockaddr *)&a, &al), 0);
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	char loc[128];
	snprintf(loc, sizeof(loc), "%s+udp:host=127.0.0.1,port=%u", transport,
	         ntohs(a.sin_port));
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	client_expect_eversion(ctx, s, udp_recv, udp_send, &f, how, peer_versions);
	assert_true(stat(ctx, "rpc.version.refused_by_peer") >= 1);
	ferry_session_close(s);
	ferry_ctx_destroy(ctx);
	close(f.fd);
}

static void test_client_unreliable_mismatch(void **st)
{
	(void)st;
	client_udp("unreliable", ANSWER_MISMATCH, "2-3");
}
static void test_client_unreliable_v2(void **st)
{
	(void)st;
	client_udp("unreliable", ANSWER_V2, "2");
}
/* fast: the request the fake sees first is the SESSION_OPEN. */
static void test_client_fast_mismatch(void **st)
{
	(void)st;
	client_udp("fast", ANSWER_MISMATCH, "2-3");
}
static void test_client_fast_v2(void **st)
{
	(void)st;
	client_udp("fast", ANSWER_V2, "2");
}

struct tcp_fake {
	int lfd, fd;
};
static ssize_t tcp_recv(void *arg, uint8_t *p, size_t len)
{
	struct tcp_fake *f = arg;
	if (f->fd < 0) {
		f->fd = accept(f->lfd, NULL, NULL);
		if (f->fd < 0)
			return -1;
	}
	/* The whole request: 40-byte header and 5-byte body, in one go on
	 * loopback. */
	return recv(f->fd, p, len, MSG_DONTWAIT);
}
static void tcp_send(void *arg, const uint8_t *p, size_t len)
{
	struct tcp_fake *f = arg;
	assert_int_equal(send(f->fd, p, len, 0), (ssize_t)len);
}

static void client_tcp(enum answer how, const char *peer_versions)
{
	struct tcp_fake f = {.fd = -1};
	f.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = lo_addr(0);
	socklen_t al = sizeof(a);
	assert_int_equal(bind(f.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f.lfd, 4), 0);
	assert_int_equal(getsockname(f.lfd, (struct sockaddr *)&a, &al), 0);
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	char loc[128];
	snprintf(loc, sizeof(loc), "tcp:host=127.0.0.1,port=%u", ntohs(a.sin_port));
	ferry_session *s;
	assert_int_equal(ferry_session_open(ctx, loc, &s), 0);
	client_expect_eversion(ctx, s, tcp_recv, tcp_send, &f, how, peer_versions);
	ferry_session_close(s);
	ferry_ctx_destroy(ctx);
	if (f.fd >= 0)
		close(f.fd);
	close(f.lfd);
}

static void test_client_tcp_mismatch(void **st)
{
	(void)st;
	client_tcp(ANSWER_MISMATCH, "2-3");
}
static void test_client_tcp_v2(void **st)
{
	(void)st;
	client_tcp(ANSWER_V2, "2");
}

static void test_strerror(void **st)
{
	(void)st;
	assert_string_equal(ferry_err_name(FERRY_EVERSION), "FERRY_EVERSION");
	assert_string_equal(ferry_strerror(FERRY_EVERSION),
	                    "peer speaks an incompatible wire version");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_strerror),
	        cmocka_unit_test(test_server_unreliable),
	        cmocka_unit_test(test_server_fast),
	        cmocka_unit_test(test_server_tcp),
	        cmocka_unit_test(test_client_unreliable_mismatch),
	        cmocka_unit_test(test_client_unreliable_v2),
	        cmocka_unit_test(test_client_fast_mismatch),
	        cmocka_unit_test(test_client_fast_v2),
	        cmocka_unit_test(test_client_tcp_mismatch),
	        cmocka_unit_test(test_client_tcp_v2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
