/* Fuzz harness: the stream frame reader — the tcp/splice driver's header
 * and body handling and the stream transport's upcalls (header decode,
 * sinks, dispatch, responses) — over real sockets on 127.0.0.1.
 *
 * Input: u8 ctl, u8 chunk, then the bytes that travel on the connection.
 *   ctl & 1   0: a raw client writes the bytes to a ferry server (echo and
 *                failing handlers): requests;
 *             1: a ferry client's call goes to a raw listener, which reads
 *                the request and answers with the bytes: responses.
 *   ctl & 2   (client side) copy the request's channel, client hint and
 *             rpc id into the first 40-byte header of the bytes, so the
 *             response matches the call.
 *   ctl & 4   the splice driver instead of tcp.
 *   ctl & 8   (client side) the call wants its body in an fd (a memfd):
 *             exact header reads, splice or pwrite of the body.
 *   chunk     bytes per write (0: all at once); the context polls between
 *             writes, so headers and bodies straddle reads.
 * After the bytes the raw side shuts down its write half and the context
 * polls until the connection is gone (bounded). Each input gets a fresh
 * context; the raw side resets its connections (SO_LINGER 0) so no
 * TIME_WAIT piles up. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/ferry.h"
#include "transport/locator.h"
#include "transport/wire.h"

#define FZ_OP_ECHO         0x100
#define FZ_OP_FAIL         0x101
#define FZ_PASSES_MAX      400 /* poll passes to wait for the end */
#define FZ_CALL_TIMEOUT_US 60000000u
#define FZ_MAXMSG          "65536"

static void fz_echo(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_buf *req = ferry_rpc_request(rpc), *resp = ferry_rpc_response(rpc);
	size_t n = ferry_buf_len(req);
	if (n > 0) {
		void *p = ferry_buf_alloc(resp, n);
		if (p != NULL)
			ferry_buf_copy_out(req, 0, n, p);
	}
	ferry_rpc_reply(rpc, 0);
}

static void fz_fail(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_rpc_reply(rpc, -5);
}

static bool fz_verbose; /* FUZZ_VERBOSE set: say what each input reached */

static void fz_call_cb(void *arg, int status, ferry_buf *resp)
{
	if (fz_verbose)
		fprintf(stderr, "  call: status %d, %zu response bytes\n", status,
		        ferry_buf_len(resp));
	*(int *)arg = 1;
}

static void fz_stat(void *arg, const char *name, uint64_t v)
{
	(void)arg;
	if (v != 0 && (strncmp(name, "rpc.", 4) == 0 || strncmp(name, "stream.", 7) == 0))
		fprintf(stderr, "  %s = %llu\n", name, (unsigned long long)v);
}

static void fz_die(const char *what)
{
	fprintf(stderr, "fuzz_stream: %s failed: %s\n", what, strerror(errno));
	__builtin_trap();
}

static void fz_reset_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static unsigned fz_port_of(const char *loc)
{
	const char *p = strstr(loc, "port=");
	unsigned port = 0;
	if (p != NULL)
		sscanf(p, "port=%u", &port);
	return port;
}

/* Read whatever is there (non-blocking). Returns 0 on EOF or error, 1
 * while the connection is open. Keeps the first hdr_len bytes in hdr. */
static int fz_drain(int fd, uint8_t *hdr, size_t *have, size_t hdr_len)
{
	uint8_t b[16384];
	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
		if (n == 0)
			return 0;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		if (hdr != NULL && *have < hdr_len) {
			size_t k =
			        hdr_len - *have < (size_t)n ? hdr_len - *have : (size_t)n;
			memcpy(hdr + *have, b, k);
			*have += k;
		}
	}
}

/* Write data in chunks, polling the context between them. */
static void fz_write(ferry_ctx *ctx, int fd, const uint8_t *data, size_t size,
                     size_t chunk)
{
	size_t off = 0;
	int stalls = 0;
	while (off < size && stalls < FZ_PASSES_MAX) {
		size_t n = chunk == 0 || chunk > size - off ? size - off : chunk;
		ssize_t w = send(fd, data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return; /* the peer hung up */
		if (w > 0)
			off += (size_t)w;
		else
			stalls++;
		ferry_ctx_poll(ctx, 0);
		fz_drain(fd, NULL, NULL, 0);
	}
}

/* A blocking connect that survives signals (libFuzzer's -timeout timer
 * is a SIGALRM every second): after EINTR the handshake goes on in the
 * kernel, so wait for it rather than call connect again. */
static int fz_connect(int fd, const struct sockaddr_in *sa)
{
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (errno != EINTR && errno != EINPROGRESS)
		return -1;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int n;
	while ((n = poll(&p, 1, 5000)) < 0 && errno == EINTR)
		;
	int err = 0;
	socklen_t len = sizeof(err);
	if (n != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
		errno = n != 1 ? ETIMEDOUT : err;
		return -1;
	}
	return 0;
}

static void fz_server_side(ferry_ctx *ctx, const char *drv, const uint8_t *data,
                           size_t size, size_t chunk)
{
	ferry_server *srv;
	char loc[FERRY_LOC_MAX_BYTES];
	if (ferry_server_create(ctx, &srv) != 0)
		fz_die("server_create");
	ferry_server_handle(srv, FZ_OP_ECHO, fz_echo, NULL);
	ferry_server_handle(srv, FZ_OP_FAIL, fz_fail, NULL);
	snprintf(loc, sizeof(loc), "%s:host=127.0.0.1,port=0,maxmsg=" FZ_MAXMSG, drv);
	if (ferry_server_listen(srv, loc) != 0 ||
	    ferry_server_locator(srv, 0, loc, sizeof(loc)) <= 0)
		fz_die("server_listen");
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)fz_port_of(loc)),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0 || fz_connect(fd, &sa) != 0)
		fz_die("connect");
	fz_write(ctx, fd, data, size, chunk);
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < FZ_PASSES_MAX; i++) {
		ferry_ctx_poll(ctx, 0);
		if (fz_drain(fd, NULL, NULL, 0) == 0)
			break;
	}
	fz_reset_close(fd);
	ferry_ctx_poll(ctx, 0);
	ferry_server_destroy(srv);
}

static void fz_client_side(ferry_ctx *ctx, const char *drv, uint8_t ctl,
                           const uint8_t *data, size_t size, size_t chunk)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 4) != 0 || getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
		fz_die("listen");
	char loc[FERRY_LOC_MAX_BYTES];
	snprintf(loc, sizeof(loc), "%s:host=127.0.0.1,port=%u,maxmsg=" FZ_MAXMSG, drv,
	         ntohs(sa.sin_port));
	ferry_session *s;
	if (ferry_session_open(ctx, loc, &s) != 0)
		fz_die("session_open");
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_append(&req, "ping", 4);
	int done = 0, mfd = -1;
	ferry_fd_sink sink = {.fd = -1, .off = 0};
	int rc;
	if (ctl & 8) {
		mfd = memfd_create("fuzz_stream", MFD_CLOEXEC);
		if (mfd < 0)
			fz_die("memfd_create");
		sink.fd = mfd;
		rc = ferry_call_into_fd(s, FZ_OP_ECHO, &req, &sink, FZ_CALL_TIMEOUT_US,
		                        fz_call_cb, &done);
	} else {
		rc = ferry_call(s, FZ_OP_ECHO, &req, &resp, FZ_CALL_TIMEOUT_US,
		                fz_call_cb, &done);
	}
	if (rc != 0)
		fz_die("call");
	/* The request arrives on the raw listener. */
	int fd = -1;
	uint8_t hdr[FERRY_WIRE_HDR_BYTES];
	size_t have = 0;
	for (int i = 0; i < FZ_PASSES_MAX && (fd < 0 || have < sizeof(hdr)); i++) {
		ferry_ctx_poll(ctx, 0);
		if (fd < 0)
			fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			fz_drain(fd, hdr, &have, sizeof(hdr));
		if (fd < 0 || have < sizeof(hdr))
			usleep(10);
	}
	if (fd < 0 || have < sizeof(hdr))
		fz_die("request read");
	uint8_t *bytes = NULL;
	if ((ctl & 2) && size >= FERRY_WIRE_HDR_BYTES) {
		bytes = malloc(size);
		memcpy(bytes, data, size);
		bytes[5] = hdr[5];               /* channel */
		memcpy(bytes + 16, hdr + 16, 4); /* client hint */
		memcpy(bytes + 24, hdr + 24, 4); /* rpc id */
		data = bytes;
	}
	fz_write(ctx, fd, data, size, chunk);
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < FZ_PASSES_MAX && !done; i++) {
		ferry_ctx_poll(ctx, 0);
		fz_drain(fd, NULL, NULL, 0);
	}
	free(bytes);
	fz_reset_close(fd);
	close(lfd);
	ferry_session_close(s); /* completes the call if it is still open */
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	if (mfd >= 0)
		close(mfd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	fz_verbose = getenv("FUZZ_VERBOSE") != NULL;
	uint8_t ctl = data[0];
	size_t chunk = data[1];
	data += 2, size -= 2;
	const char *drv = (ctl & 4) && FERRY_HAVE_SPLICE ? "splice" : "tcp";
	ferry_ctx *ctx;
	if (ferry_ctx_create(NULL, &ctx) != 0)
		fz_die("ctx_create");
	if (ctl & 1)
		fz_client_side(ctx, drv, ctl, data, size, chunk);
	else
		fz_server_side(ctx, drv, data, size, chunk);
	if (fz_verbose)
		ferry_ctx_stats(ctx, fz_stat, NULL);
	ferry_ctx_destroy(ctx);
	return 0;
}
