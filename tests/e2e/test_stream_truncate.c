/* A file truncated under a queued send, over a stream driver (argv[1]: tcp
 * or splice), through the stream transport: the bytes a file region
 * promised are never made up (no zeros delivered as success), and the call
 * that sent them sees the read's error.
 *
 * Client and server are two contexts of this process, polled by hand, so
 * a side can be stalled at will; small socket buffers keep a large message
 * queued. Cases:
 *   - a request whose file shrank while it waited behind another: that
 *     call alone fails with -EIO, the connection carries on;
 *   - the same, found by the detach of a call that timed out (the request
 *     of zeros that used to reach the server): nothing is sent;
 *   - a request whose file shrank after part of it was written: the call
 *     fails with -EIO, the other call on the connection with
 *     FERRY_EPEERDEAD (the connection resets: the peer was owed bytes),
 *     and the next call reconnects;
 *   - a reply whose file shrank before any of it was written: the server
 *     answers the call with -EIO instead, the connection carries on;
 *   - a reply whose file shrank after part of it was written: the
 *     connection resets, the call fails with FERRY_EPEERDEAD (the client
 *     cannot learn the server's read error from a cut stream).
 * The server's handler checks every request byte against its pattern.
 *
 * argv: driver [keys [shift]]: keys replace the small socket buffers (infrc,
 * in the Soft-RoCE VM: "dev=rxe0,large=push,bufsize=4096,rxbufs=32": few
 * credits hold a message back); shift divides every size by 2^shift (the
 * VM is emulated). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/testutil.h"

#define OP_CHECK        200 /* request: pattern (seed = first 8 bytes' seed); reply: empty */
#define OP_SIZED        201 /* request: u32 size, u64 seed; reply: that pattern (memory) */
#define OP_FILE         202 /* request: u64 len; reply: the server's file region [0, len) */
#define REQ_SEED        77 /* every OP_CHECK request carries this pattern */
#define FILE_SEED       78 /* the files' pattern */
#define BUFKEYS         "sndbuf=65536,rcvbuf=131072"
#define DEADLINE_US     20000000ull
#define CALL_TIMEOUT_US 30000000ull

static const char *drv;            /* "tcp", "splice" or "infrc" */
static const char *keys = BUFKEYS; /* added to both locators */
static unsigned shift;             /* sizes are divided by 2^shift */
#define SZ(n) ((size_t)(n) >> shift)

typedef struct srv_state {
	int checked, bad; /* OP_CHECK requests seen, and those with wrong bytes */
	int file_fd;      /* OP_FILE's file */
	int handled;      /* handlers run */
} srv_state;

typedef struct call_rec {
	int done, status;
	size_t len; /* expected response length (pattern FILE_SEED / seed) */
	uint64_t seed;
	bool check; /* check the response's bytes */
	bool bad;   /* a success with wrong bytes */
	ferry_buf req, resp;
} call_rec;

typedef struct rig {
	ferry_ctx *sctx, *cctx;
	ferry_server *srv;
	ferry_session *s;
	srv_state st;
	char loc[256];
} rig;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* An unlinked file of n bytes of pattern seed in /dev/shm (else /tmp). */
static int pattern_fd(size_t n, uint64_t seed)
{
	char path[64];
	snprintf(path, sizeof(path), "/dev/shm/ferry_trunc_XXXXXX");
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		snprintf(path, sizeof(path), "/tmp/ferry_trunc_XXXXXX");
		fd = mkostemp(path, O_CLOEXEC);
	}
	assert_true(fd >= 0);
	unlink(path);
	uint8_t *p = malloc(n + 1);
	assert_non_null(p);
	tu_fill(p, n, seed);
	for (size_t at = 0; at < n;) {
		ssize_t w = pwrite(fd, p + at, n - at, (off_t)at);
		assert_true(w > 0);
		at += (size_t)w;
	}
	free(p);
	return fd;
}

static uint64_t stat_of(ferry_ctx *ctx, const char *name)
{
	char full[128];
	snprintf(full, sizeof(full), "%s", name);
	if (strncmp(name, "drv.", 4) == 0)
		snprintf(full, sizeof(full), "%s.%s", drv, name + 4);
	uint64_t v = 0;
	if (ferry_metrics_get(ctx, full, &v) != 0)
		fail_msg("no counter %s", full);
	return v;
}

/* Server handlers ------------------------------------------------------------*/
static void h_check(void *arg, ferry_rpc *rpc)
{
	srv_state *st = arg;
	ferry_buf *req = ferry_rpc_request(rpc);
	st->handled++;
	st->checked++;
	if (tu_check(req, ferry_buf_len(req), REQ_SEED) >= 0)
		st->bad++;
	ferry_rpc_reply(rpc, 0);
}

static void h_sized(void *arg, ferry_rpc *rpc)
{
	srv_state *st = arg;
	uint32_t n = 0;
	uint64_t seed = 0;
	ferry_buf *req = ferry_rpc_request(rpc);
	st->handled++;
	assert_int_equal(ferry_buf_copy_out(req, 0, 4, &n), 4);
	assert_int_equal(ferry_buf_copy_out(req, 4, 8, &seed), 8);
	ferry_buf *resp = ferry_rpc_response(rpc);
	tu_fill(ferry_buf_alloc(resp, n), n, seed);
	ferry_rpc_reply(rpc, 0);
}

static void h_file(void *arg, ferry_rpc *rpc)
{
	srv_state *st = arg;
	uint64_t len = 0;
	st->handled++;
	assert_int_equal(ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 8, &len), 8);
	ferry_rpc_reply(rpc, ferry_buf_append_file(ferry_rpc_response(rpc), st->file_fd,
	                                           0, (size_t)len));
}

/* Rig -------------------------------------------------------------------------*/
static void rig_close(rig *r)
{
	ferry_session_close(r->s);
	ferry_ctx_poll(r->cctx, 0);
	ferry_server_destroy(r->srv);
	ferry_ctx_destroy(r->cctx);
	ferry_ctx_destroy(r->sctx);
	if (r->st.file_fd >= 0)
		close(r->st.file_fd);
}

static void pump(rig *r, bool client, bool server)
{
	if (client)
		ferry_ctx_poll(r->cctx, 0);
	if (server)
		ferry_ctx_poll(r->sctx, 0);
}

#define PUMP_UNTIL(r, client, server, cond)                                              \
	do {                                                                             \
		uint64_t dl_ = now_us() + DEADLINE_US;                                   \
		while (!(cond)) {                                                        \
			pump((r), (client), (server));                                   \
			if (now_us() > dl_)                                              \
				fail_msg("line %d: timed out waiting for %s", __LINE__,  \
				         #cond);                                         \
		}                                                                        \
	} while (0)

static void call_cb(void *arg, int status, ferry_buf *resp)
{
	call_rec *c = arg;
	c->done++;
	c->status = status;
	if (status == 0 && c->check &&
	    (ferry_buf_len(resp) != c->len || tu_check(resp, c->len, c->seed) >= 0))
		c->bad = true;
}

static void rec_init(call_rec *c)
{
	memset(c, 0, sizeof(*c));
	ferry_buf_init(&c->req);
	ferry_buf_init(&c->resp);
}

static void rec_fini(call_rec *c)
{
	ferry_buf_fini(&c->req);
	ferry_buf_fini(&c->resp);
}

static void call_on(rig *r, call_rec *c, uint16_t op)
{
	assert_int_equal(
	        ferry_call(r->s, op, &c->req, &c->resp, CALL_TIMEOUT_US, call_cb, c), 0);
}

/* OP_CHECK with n bytes of the request pattern in memory. */
static void call_check_mem(rig *r, call_rec *c, size_t n)
{
	rec_init(c);
	tu_fill(ferry_buf_alloc(&c->req, n), n, REQ_SEED);
	call_on(r, c, OP_CHECK);
}

static void rig_open(rig *r)
{
	memset(r, 0, sizeof(*r));
	r->st.file_fd = -1;
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_SPIN, .cpu = -1};
	assert_int_equal(ferry_ctx_create(&o, &r->sctx), 0);
	assert_int_equal(ferry_ctx_create(&o, &r->cctx), 0);
	assert_int_equal(ferry_server_create(r->sctx, &r->srv), 0);
	ferry_server_handle(r->srv, OP_CHECK, h_check, &r->st);
	ferry_server_handle(r->srv, OP_SIZED, h_sized, &r->st);
	ferry_server_handle(r->srv, OP_FILE, h_file, &r->st);
	char listen[256], bound[256];
	snprintf(listen, sizeof(listen), "%s:host=127.0.0.1,port=0,%s", drv, keys);
	assert_int_equal(ferry_server_listen(r->srv, listen), 0);
	assert_true(ferry_server_locator(r->srv, 0, bound, sizeof(bound)) > 0);
	const char *port = strstr(bound, "port=");
	assert_non_null(port);
	snprintf(r->loc, sizeof(r->loc), "%s:host=127.0.0.1,port=%d,%s", drv,
	         atoi(port + 5), keys);
	assert_int_equal(ferry_session_open(r->cctx, r->loc, &r->s), 0);
	/* One call with both sides polled: the connection is up (infrc's
	 * setup needs the server to answer) before a side is stalled. */
	call_rec w;
	call_check_mem(r, &w, 16);
	PUMP_UNTIL(r, true, true, w.done);
	assert_int_equal(w.status, 0);
	rec_fini(&w);
	r->st.checked = r->st.handled = 0;
}

/* A file of n bytes of the request pattern. */
static int req_file(size_t n)
{
	return pattern_fd(n, REQ_SEED);
}

static void call_check_file(rig *r, call_rec *c, int fd, size_t n)
{
	rec_init(c);
	assert_int_equal(ferry_buf_append_file(&c->req, fd, 0, n), 0);
	call_on(r, c, OP_CHECK);
}

/* The client's driver has been refused by a full socket (again). */
static void client_until_blocked(rig *r)
{
	uint64_t b0 = stat_of(r->cctx, "drv.tx_blocked");
	PUMP_UNTIL(r, true, false, stat_of(r->cctx, "drv.tx_blocked") > b0);
}

static void server_until_blocked(rig *r)
{
	uint64_t b0 = stat_of(r->sctx, "drv.tx_blocked");
	PUMP_UNTIL(r, false, true, stat_of(r->sctx, "drv.tx_blocked") > b0);
}

/* Tests -------------------------------------------------------------------------*/

/* A request waits behind a large one; its file shrinks before any of it
 * is written: only its call fails (-EIO), the connection carries on and the
 * server never sees it. */
static void test_request_truncated_queued(void **st)
{
	(void)st;
	rig r;
	rig_open(&r);
	call_rec a, b, c;
	int fd = req_file(SZ(1u << 20));
	call_check_mem(&r, &a, SZ(4u << 20));
	call_check_file(&r, &b, fd, SZ(1u << 20));
	client_until_blocked(&r);
	assert_int_equal(ftruncate(fd, 0), 0);
	PUMP_UNTIL(&r, true, true, a.done && b.done);
	assert_int_equal(a.status, 0);
	assert_int_equal(b.status, -EIO);
	assert_int_equal(ferry_buf_len(&b.resp), 0);
	assert_int_equal(r.st.checked, 1);
	assert_int_equal(r.st.bad, 0);
	assert_int_equal(stat_of(r.cctx, "drv.tx_file_read_errors"), 1);
	assert_int_equal(stat_of(r.cctx, "stream.sends_failed"), 1);
	assert_int_equal(stat_of(r.cctx, "stream.conns_lost"), 0);
	/* The same connection takes the next one, file and all. */
	close(fd);
	fd = req_file(SZ(300u << 10));
	call_check_file(&r, &c, fd, SZ(300u << 10));
	PUMP_UNTIL(&r, true, true, c.done);
	assert_int_equal(c.status, 0);
	assert_int_equal(r.st.checked, 2);
	assert_int_equal(r.st.bad, 0);
	assert_int_equal(stat_of(r.cctx, "stream.conns_up"), 1);
	close(fd);
	rec_fini(&a);
	rec_fini(&b);
	rec_fini(&c);
	rig_close(&r);
}

/* The original silent corruption: a request waits behind a large one, its
 * call times out (the transport detaches the payload: the driver must copy
 * what is unwritten) after its file shrank. Nothing can be read, so
 * nothing is sent: the server never runs a request of zeros, and the
 * connection carries on. */
static void test_request_truncated_then_timed_out(void **st)
{
	(void)st;
	rig r;
	rig_open(&r);
	call_rec a, b;
	int fd = req_file(SZ(1u << 20));
	call_check_mem(&r, &a, SZ(4u << 20));
	rec_init(&b);
	assert_int_equal(ferry_buf_append_file(&b.req, fd, 0, SZ(1u << 20)), 0);
	/* Short, but longer than stalling the sender takes (the VM is slow). */
	uint64_t timeout_us = shift > 0 ? 2000000 : 200000;
	assert_int_equal(
	        ferry_call(r.s, OP_CHECK, &b.req, &b.resp, timeout_us, call_cb, &b), 0);
	client_until_blocked(&r);
	assert_int_equal(ftruncate(fd, 0), 0);
	PUMP_UNTIL(&r, true, false, b.done);
	assert_int_equal(b.status, FERRY_ETIMEDOUT);
	ferry_buf_reset(&b.req); /* the caller has its buffer back */
	close(fd);
	PUMP_UNTIL(&r, true, true, a.done);
	assert_int_equal(a.status, 0);
	/* One more call on the connection: whatever B left went before it. */
	call_rec c;
	call_check_mem(&r, &c, 1000);
	PUMP_UNTIL(&r, true, true, c.done);
	assert_int_equal(c.status, 0);
	assert_int_equal(r.st.checked, 2);
	assert_int_equal(r.st.bad, 0);
	assert_int_equal(stat_of(r.cctx, "drv.tx_file_read_errors"), 1);
	assert_int_equal(stat_of(r.cctx, "stream.conns_lost"), 0);
	rec_fini(&a);
	rec_fini(&b);
	rec_fini(&c);
	rig_close(&r);
}

/* The file shrinks after part of the request is out: that call fails with
 * the read's error, the one queued behind it with FERRY_EPEERDEAD (the
 * connection resets), the server never runs either, and the session
 * reconnects for the next call. */
static void test_request_truncated_mid_send(void **st)
{
	(void)st;
	rig r;
	rig_open(&r);
	call_rec a, b, c;
	int fd = req_file(SZ(16u << 20));
	call_check_file(&r, &a, fd, SZ(16u << 20));
	call_check_mem(&r, &b, SZ(100u << 10));
	client_until_blocked(&r);
	assert_int_equal(ftruncate(fd, 0), 0);
	PUMP_UNTIL(&r, true, true, a.done && b.done);
	assert_int_equal(a.status, -EIO);
	assert_int_equal(b.status, FERRY_EPEERDEAD);
	assert_int_equal(r.st.handled, 0);
	assert_int_equal(stat_of(r.cctx, "drv.tx_file_read_errors"), 1);
	assert_int_equal(stat_of(r.cctx, "drv.conns_reset"), 1);
	call_check_mem(&r, &c, 1000);
	PUMP_UNTIL(&r, true, true, c.done);
	assert_int_equal(c.status, 0);
	assert_int_equal(r.st.checked, 1);
	assert_int_equal(r.st.bad, 0);
	close(fd);
	rec_fini(&a);
	rec_fini(&b);
	rec_fini(&c);
	rig_close(&r);
}

/* A file reply waits behind a large reply; its file shrinks before any of
 * it is written: the server answers that call with -EIO instead, the other
 * reply arrives whole, the connection carries on. */
static void test_reply_truncated_queued(void **st)
{
	(void)st;
	rig r;
	rig_open(&r);
	r.st.file_fd = pattern_fd(SZ(4u << 20), FILE_SEED);
	call_rec a, b, c;
	rec_init(&a);
	rec_init(&b);
	uint32_t n = (uint32_t)SZ(16u << 20);
	uint64_t seed = 5;
	ferry_buf_append(&a.req, &n, 4);
	ferry_buf_append(&a.req, &seed, 8);
	a.len = n, a.seed = seed, a.check = true;
	call_on(&r, &a, OP_SIZED);
	uint64_t len = SZ(4u << 20);
	ferry_buf_append(&b.req, &len, 8);
	b.len = len, b.seed = FILE_SEED, b.check = true;
	call_on(&r, &b, OP_FILE);
	PUMP_UNTIL(&r, true, true, r.st.handled == 2);
	server_until_blocked(&r);
	assert_int_equal(ftruncate(r.st.file_fd, 0), 0);
	PUMP_UNTIL(&r, true, true, a.done && b.done);
	assert_int_equal(a.status, 0);
	assert_false(a.bad);
	assert_int_equal(b.status, -EIO);
	assert_int_equal(ferry_buf_len(&b.resp), 0);
	assert_int_equal(stat_of(r.sctx, "drv.tx_file_read_errors"), 1);
	assert_int_equal(stat_of(r.sctx, "stream.sends_failed"), 1);
	assert_int_equal(stat_of(r.cctx, "stream.conns_lost"), 0);
	call_check_mem(&r, &c, 1000);
	PUMP_UNTIL(&r, true, true, c.done);
	assert_int_equal(c.status, 0);
	assert_int_equal(stat_of(r.cctx, "stream.conns_up"), 1);
	rec_fini(&a);
	rec_fini(&b);
	rec_fini(&c);
	rig_close(&r);
}

/* A file reply shrinks after part of it is out: the server resets the
 * connection and the call fails with FERRY_EPEERDEAD, never with a
 * success and made-up bytes. */
static void test_reply_truncated_mid_send(void **st)
{
	(void)st;
	rig r;
	rig_open(&r);
	r.st.file_fd = pattern_fd(SZ(16u << 20), FILE_SEED);
	call_rec b;
	rec_init(&b);
	uint64_t len = SZ(16u << 20);
	ferry_buf_append(&b.req, &len, 8);
	b.len = len, b.seed = FILE_SEED, b.check = true;
	call_on(&r, &b, OP_FILE);
	PUMP_UNTIL(&r, true, true, r.st.handled == 1);
	server_until_blocked(&r);
	assert_int_equal(ftruncate(r.st.file_fd, 0), 0);
	PUMP_UNTIL(&r, true, true, b.done);
	assert_int_equal(b.status, FERRY_EPEERDEAD);
	assert_false(b.bad);
	assert_int_equal(ferry_buf_len(&b.resp), 0);
	assert_int_equal(stat_of(r.sctx, "drv.tx_file_read_errors"), 1);
	assert_int_equal(stat_of(r.sctx, "drv.conns_reset"), 1);
	rec_fini(&b);
	rig_close(&r);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s tcp|splice|infrc [keys [shift]]\n", argv[0]);
		return 2;
	}
	drv = argv[1];
	if (argc > 2)
		keys = argv[2];
	if (argc > 3)
		shift = (unsigned)atoi(argv[3]);
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_request_truncated_queued),
	        cmocka_unit_test(test_request_truncated_then_timed_out),
	        cmocka_unit_test(test_request_truncated_mid_send),
	        cmocka_unit_test(test_reply_truncated_queued),
	        cmocka_unit_test(test_reply_truncated_mid_send),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
