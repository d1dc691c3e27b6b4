/* Stream driver conformance: every stream driver (tcp, splice, infrc)
 * keeps the contract of include/ferry/driver.h ("Stream endpoint ops") when
 * driven directly, without the stream transport. argv[1] is the driver
 * name; argv[2], optional, locator keys added to every locator (infrc:
 * "dev=rxe0" or "dev=rxe0,large=pull"). infrc runs every case that does
 * not depend on kernel sockets (socket buffers, splice, exact header
 * reads): those are skipped, and tiny socket buffers become tiny receive
 * buffers and few credits. Without a verbs device the infrc run exits 77
 * (or fails when FERRY_REQUIRE names ibverbs).
 *
 * The tests bring their own upcalls and their own 40-byte header (magic,
 * sink mode, body length, id, pattern seed). Upcalls never assert (a
 * longjmp out of the driver would leave it half-updated): they record the
 * first violation, and the pump loop fails on it from outside the driver.
 * Every wait is bounded by a deadline.
 *
 * Tests that could crash or hang run in a child process. CMOCKA_FILTER=pattern
 * runs a subset. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/testutil.h"
#include "transport/core.h"
#include "transport/locator.h"

static const char *drv_name; /* "tcp", "splice" or "infrc" */
static bool is_splice;
static bool is_infrc;
static bool is_pull;     /* infrc with large=pull */
static char g_keys[128]; /* argv[2] + ",", put in front of every locator's keys */
static uint64_t g_deadline_us = 5000000ull;

#define HDR_LEN     40
#define MAGIC       0x31595246u /* "FRY1" */
#define MAX_MSGS    64
#define DEADLINE_US g_deadline_us /* infrc: a TCG-emulated VM is slow */
#define CALL_MAX_US 50000ull
/* Small socket buffers force partial writes. rcvbuf stays above 8 KiB: a
 * Linux loopback receive buffer smaller than the 64 KiB loopback MSS
 * stalls TCP itself (zero-window probes), with or without ferry. */
#define TCP_SMALLBUF ",sndbuf=4096,rcvbuf=16384"
/* infrc: small receive buffers and few of them: few credits per peer. */
#define INFRC_SMALLBUF ",bufsize=4096,rxbufs=32"
#define SMALLBUF       (is_infrc ? INFRC_SMALLBUF : TCP_SMALLBUF)

enum { M_BUF = 0, M_FD = 1, M_DISCARD = 2, M_FAIL = 3 };

typedef struct th {
	uint32_t magic, mode;
	uint64_t len, id, seed, pad;
} th;
_Static_assert(sizeof(th) == HDR_LEN, "test header is 40 bytes");

struct side;
typedef struct txrec {
	struct side *s;
	ferry_conn *conn;
	int idx;
	uint64_t cum; /* wire bytes through this message on its endpoint */
	int sent;     /* on_sent calls */
	int failed;   /* on_send_failed calls ... */
	int fail_err; /* ... with this error */
	bool fail_reset;
	uint64_t seq;
} txrec;

typedef struct rxrec {
	th h;
	ferry_conn *conn; /* the conn it came on (may be freed since) */
	ferry_buf buf;
	bool done;
	int status;
	uint64_t copied;
	uint64_t seq;
} rxrec;

#define MAX_CONNS 8
typedef struct cstate {
	ferry_conn *c; /* NULL once CLOSED/RESET ran */
	bool used;
	int ups, ends;
	th cur; /* header of the body in progress */
	bool have_cur;
	int slot;              /* its rx record */
	ferry_body_sink *sink; /* the driver's sink while the body arrives */
	int last_sent_idx;
} cstate;

typedef struct side {
	const char *name;
	ferry_ep *eps[FERRY_LOC_MAX_LAYERS];
	int neps;
	ferry_ep *ep;
	bool listening;
	ferry_conn *conn; /* the first connection (NULL once CLOSED/RESET ran) */
	cstate cs[MAX_CONNS];
	int ncs;
	int ups, closeds, resets, last_err;
	uint64_t event_seq;
	bool set_hdr_exact; /* set conn->hdr_exact on UP */
	/* receive */
	int sink_fd;
	int64_t sink_off;
	int fail_rc; /* on_header's answer to M_FAIL */
	int headers;
	rxrec rx[MAX_MSGS];
	int nslots; /* rx records handed out by on_header */
	int nrx;    /* bodies complete (on_body) */
	/* transmit */
	txrec tx[MAX_MSGS];
	int ntx, nsent, nfailed;
	uint64_t tx_cum;
	bool check_written;   /* on_sent: the driver counts the bytes written */
	uint64_t max_call_us; /* slowest poll/flush call (wall clock) */
	/* Slowest call that slept (a voluntary context switch: it blocked),
	 * as opposed to one the scheduler preempted on a busy machine. */
	uint64_t max_slept_us;
	/* Called at the end of every upcall (reentrancy tests). */
	void (*hook)(struct side *s, int where, ferry_conn *c, int arg);
	int hook_n;
	int bad;
	char bad_msg[256];
} side;

enum { H_UP = 1, H_END, H_BODY, H_SENT };

static uint64_t g_seq;
static int g_test_fds; /* files the test itself holds open (fd leak checks) */

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int fd_count(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static void bad(side *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(side *s, const char *fmt, ...)
{
	if (s->bad++ > 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->bad_msg, sizeof(s->bad_msg), fmt, ap);
	va_end(ap);
}

static void side_ok(const side *s)
{
	if (s != NULL && s->bad != 0)
		fail_msg("%s: contract violation in an upcall: %s", s->name, s->bad_msg);
}

/* Counters ------------------------------------------------------------------*/
static uint64_t cnt(ferry_ep *ep, const char *name)
{
	uint64_t v;
	if (!tu_driver_counter(ep, name, &v)) {
		fprintf(stderr, "counter %s missing\n", name);
		return UINT64_MAX / 2; /* fails any == or < check loudly */
	}
	return v;
}

/* A counter only some drivers have (sendfile, splice): 0 where absent. */
static uint64_t cnt_opt(ferry_ep *ep, const char *name)
{
	uint64_t v;
	return tu_driver_counter(ep, name, &v) ? v : 0;
}

static uint64_t written_bytes(ferry_ep *ep)
{
	return cnt(ep, "tx_user_bytes") + cnt_opt(ep, "sendfile_bytes");
}

/* Cases that test kernel-socket behaviour are skipped on infrc, saying so. */
static void skip_on_infrc(const char *why)
{
	if (!is_infrc)
		return;
	fprintf(stderr, "infrc: skipped (%s)\n", why);
	skip();
}

/* Upcalls -------------------------------------------------------------------*/
static cstate *cs_find(side *s, ferry_conn *c)
{
	for (int i = 0; i < s->ncs; i++)
		if (s->cs[i].used && s->cs[i].c == c && c != NULL)
			return &s->cs[i];
	return NULL;
}

static cstate *cs_add(side *s, ferry_conn *c)
{
	if (s->ncs >= MAX_CONNS) {
		bad(s, "too many connections");
		return NULL;
	}
	cstate *k = &s->cs[s->ncs++];
	memset(k, 0, sizeof(*k));
	k->used = true;
	k->c = c;
	k->last_sent_idx = -1;
	if (s->conn == NULL)
		s->conn = c;
	return k;
}

static void up_conn_event(void *arg, ferry_conn *c, int event, int err)
{
	side *s = arg;
	uint64_t seq = ++g_seq;
	if (c == NULL || c->ep != s->ep) {
		bad(s, "conn_event %d on a conn of another endpoint", event);
		return;
	}
	cstate *k = cs_find(s, c);
	if (event == FERRY_CONN_UP) {
		s->ups++;
		if (err != 0)
			bad(s, "UP with err %d", err);
		if (s->listening && k == NULL)
			k = cs_add(s, c);
		if (k == NULL) {
			bad(s, "UP for a conn connect() did not return");
			return;
		}
		if (++k->ups > 1)
			bad(s, "second UP on one conn");
		if (c->peer.len == 0)
			bad(s, "UP with no peer address");
		if (s->set_hdr_exact)
			c->hdr_exact = true;
		if (s->hook != NULL)
			s->hook(s, H_UP, c, 0);
		return;
	}
	if (event != FERRY_CONN_CLOSED && event != FERRY_CONN_RESET) {
		bad(s, "unknown conn_event %d", event);
		return;
	}
	if (k == NULL) {
		bad(s, "conn_event %d for an unknown or finished conn", event);
		return;
	}
	k->ends++;
	if (event == FERRY_CONN_CLOSED)
		s->closeds++;
	else
		s->resets++;
	if (event == FERRY_CONN_RESET && err == 0)
		bad(s, "RESET without an error");
	s->last_err = err;
	s->event_seq = seq;
	/* Everything queued on it got on_sent first. */
	for (int i = 0; i < s->ntx; i++)
		if (s->tx[i].conn == c && s->tx[i].sent != 1)
			bad(s, "conn_event %d with message %d on_sent %d times", event, i,
			    s->tx[i].sent);
	k->c = NULL;
	k->sink = NULL;
	if (s->conn == c)
		s->conn = NULL;
	if (s->hook != NULL)
		s->hook(s, H_END, c, event);
}

static int up_on_header(void *arg, ferry_conn *c, const uint8_t *hdr,
                        ferry_body_sink *sink)
{
	side *s = arg;
	th h;
	memcpy(&h, hdr, sizeof(h));
	cstate *k = cs_find(s, c);
	if (k == NULL) {
		bad(s, "on_header on an unknown conn");
		return FERRY_EPROTO;
	}
	if (h.magic != MAGIC) {
		bad(s, "header %d: bad magic %#x (framing lost)", s->headers, h.magic);
		return FERRY_EPROTO;
	}
	if (k->have_cur)
		bad(s, "on_header while a body is pending");
	for (size_t i = HDR_LEN; i < s->ep->up->hdr_len; i++)
		if (hdr[i] != 0xA5) {
			bad(s, "header byte %zu wrong", i);
			break;
		}
	if (h.mode == M_FAIL)
		return s->fail_rc;
	if (s->nslots >= MAX_MSGS) {
		bad(s, "too many messages");
		return FERRY_EPROTO;
	}
	s->headers++;
	k->slot = s->nslots++;
	rxrec *r = &s->rx[k->slot];
	sink->len = h.len;
	switch (h.mode) {
	case M_BUF:
		sink->buf = &r->buf;
		if (ferry_buf_len(sink->buf) != 0)
			bad(s, "sink buffer %d not empty", k->slot);
		break;
	case M_FD:
		sink->fd = s->sink_fd;
		sink->off = s->sink_off;
		break;
	default:
		sink->discard = true;
		break;
	}
	k->cur = h;
	k->have_cur = true;
	k->sink = sink;
	return 0;
}

static void up_on_body(void *arg, ferry_conn *c, const uint8_t *hdr,
                       ferry_body_sink *sink, int status)
{
	side *s = arg;
	th h;
	memcpy(&h, hdr, sizeof(h));
	cstate *k = cs_find(s, c);
	if (k == NULL) {
		bad(s, "on_body on an unknown conn");
		return;
	}
	if (!k->have_cur || memcmp(&h, &k->cur, sizeof(h)) != 0) {
		bad(s, "on_body header differs from on_header's");
		return;
	}
	if (sink != k->sink)
		bad(s, "on_body with another sink than on_header's");
	k->have_cur = false;
	k->sink = NULL;
	rxrec *r = &s->rx[k->slot];
	s->nrx++;
	r->h = h;
	r->conn = c;
	r->done = true;
	r->status = status;
	r->copied = sink->copied;
	r->seq = ++g_seq;
	if (sink->len != h.len)
		bad(s, "sink.len changed");
	bool to_buf = sink->buf != NULL, to_fd = sink->fd >= 0;
	if (to_buf && sink->buf != &r->buf)
		bad(s, "sink.buf changed");
	if (to_buf && status == 0 && ferry_buf_len(&r->buf) != h.len)
		bad(s, "body %llu: %zu bytes in the sink, want %llu",
		    (unsigned long long)h.id, ferry_buf_len(&r->buf),
		    (unsigned long long)h.len);
	if (h.mode != M_FD && sink->copied != 0)
		bad(s, "copied %llu for a non-fd sink", (unsigned long long)sink->copied);
	if (to_fd && status == 0 && sink->copied > h.len)
		bad(s, "copied %llu > len %llu", (unsigned long long)sink->copied,
		    (unsigned long long)h.len);
	if (s->hook != NULL)
		s->hook(s, H_BODY, c, k->slot);
}

static void up_on_sent(void *arg, ferry_conn *c, void *cookie)
{
	side *s = arg;
	txrec *t = cookie;
	if (t == NULL || t->s != s) {
		bad(s, "on_sent with a foreign cookie");
		return;
	}
	cstate *k = cs_find(s, c);
	if (k == NULL || c != t->conn) {
		bad(s, "on_sent for message %d on the wrong or a finished conn", t->idx);
		return;
	}
	if (++t->sent > 1)
		bad(s, "on_sent twice for message %d", t->idx);
	if (t->idx <= k->last_sent_idx)
		bad(s, "on_sent out of order: %d after %d", t->idx, k->last_sent_idx);
	k->last_sent_idx = t->idx;
	s->nsent++;
	t->seq = ++g_seq;
	if (s->check_written) {
		uint64_t w = written_bytes(s->ep);
		if (w < t->cum)
			bad(s,
			    "on_sent for message %d before it was written: %llu of %llu bytes",
			    t->idx, (unsigned long long)w, (unsigned long long)t->cum);
	}
	if (s->hook != NULL)
		s->hook(s, H_SENT, c, t->idx);
}

/* Before the message's on_sent, once, with an error. */
static void up_on_send_failed(void *arg, ferry_conn *c, void *cookie, int err, bool reset)
{
	side *s = arg;
	txrec *t = cookie;
	if (t == NULL || t->s != s) {
		bad(s, "on_send_failed with a foreign cookie");
		return;
	}
	if (cs_find(s, c) == NULL || c != t->conn)
		bad(s, "on_send_failed for message %d on the wrong or a finished conn",
		    t->idx);
	if (t->sent != 0 || t->failed++ != 0)
		bad(s, "on_send_failed for message %d after its on_sent or twice",
		    t->idx);
	if (err >= 0)
		bad(s, "on_send_failed for message %d without an error", t->idx);
	t->fail_err = err;
	t->fail_reset = reset;
	s->nfailed++;
}

static ferry_stream_upcalls upcalls = {
        /* hdr_len changes in one test */
        .hdr_len = HDR_LEN,        .conn_event = up_conn_event,
        .on_header = up_on_header, .on_body = up_on_body,
        .on_sent = up_on_sent,     .on_send_failed = up_on_send_failed,
};

/* Sides and pairs -------------------------------------------------------------*/
static side *side_new(const char *name)
{
	side *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->name = name;
	s->sink_fd = -1;
	s->sink_off = 0;
	s->fail_rc = FERRY_EPROTO;
	for (int i = 0; i < MAX_MSGS; i++)
		ferry_buf_init(&s->rx[i].buf);
	return s;
}

static uint32_t loans_held(side *s)
{
	uint32_t n = 0;
	for (int i = 0; i < MAX_MSGS; i++)
		n += (uint32_t)ferry_buf_chunk_count(&s->rx[i].buf);
	return n;
}

static void side_release_rx(side *s)
{
	for (int i = 0; i < MAX_MSGS; i++)
		ferry_buf_reset(&s->rx[i].buf);
}

static void side_free(side *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < MAX_MSGS; i++)
		ferry_buf_fini(&s->rx[i].buf);
	if (s->neps > 0) {
		assert_int_equal(s->ep->loans_out, 0);
		ferry__ep_close_stack(s->eps, s->neps);
	}
	free(s);
}

static int side_open_rc(ferry_ctx *ctx, side *s, const char *text, bool listen, char *err,
                        size_t errlen)
{
	ferry_loc loc;
	int rc = ferry__loc_parse(text, &loc, err, errlen);
	if (rc != 0)
		return rc;
	s->listening = listen;
	rc = ferry__ep_open_stack(
	        ctx, &ferry__ctx_ep_host, ctx->poll_mode == FERRY_POLL_BLOCK, &loc,
	        listen ? FERRY_EP_LISTEN : 0, &upcalls, s, s->eps, &s->neps, err, errlen);
	if (rc == 0) {
		assert_int_equal(s->neps, 1);
		s->ep = s->eps[0];
		assert_int_equal(s->ep->drv->kind, FERRY_DRIVER_STREAM);
		assert_string_equal(s->ep->drv->name, drv_name);
		assert_ptr_equal(s->ep->up_next, &upcalls);
	}
	return rc;
}

static void side_open(ferry_ctx *ctx, side *s, const char *text, bool listen)
{
	char err[256] = "";
	int rc = side_open_rc(ctx, s, text, listen, err, sizeof(err));
	if (rc != 0)
		fail_msg("open '%s': %d %s", text, rc, err);
}

static int side_connect(side *s, const char *text)
{
	ferry_loc loc;
	char err[256] = "";
	int rc = ferry__loc_parse(text, &loc, err, sizeof(err));
	if (rc != 0)
		fail_msg("parse '%s': %s", text, err);
	ferry_conn *c = NULL;
	rc = ferry__ep_connect(s->ep, &loc, &c);
	if (rc == 0) {
		if (c == NULL || c->ep != s->ep)
			fail_msg("connect returned no conn of this endpoint");
		cs_add(s, c);
	}
	return rc;
}

static long voluntary_switches(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_nvcsw;
}

/* Time one poll or flush call. */
static void call_timed(side *s, bool flush)
{
	long v0 = voluntary_switches();
	uint64_t t0 = now_us();
	int rc = flush ? ferry__ep_stream_flush(s->ep) : ferry__ep_stream_poll(s->ep, 64);
	uint64_t dt = now_us() - t0;
	side_ok(s);
	if (rc < 0)
		fail_msg("%s: %s returned %d", s->name, flush ? "flush" : "poll", rc);
	if (dt > s->max_call_us)
		s->max_call_us = dt;
	if (voluntary_switches() != v0 && dt > s->max_slept_us)
		s->max_slept_us = dt;
}

/* One pass over each side: poll, then flush. */
static void pump_sides(side **ss, int n)
{
	for (int i = 0; i < n; i++) {
		if (ss[i] == NULL)
			continue;
		call_timed(ss[i], false);
		call_timed(ss[i], true);
	}
}

static void pump_once(side *a, side *b)
{
	side *ss[2] = {a, b};
	pump_sides(ss, 2);
}

static void side_dump(const side *s)
{
	if (s == NULL)
		return;
	fprintf(stderr,
	        "  %s: ups %d closeds %d resets %d err %d, rx %d (headers %d), sent %d/%d, "
	        "written %llu recv %llu partial %llu blocked %llu backlog %llu\n",
	        s->name, s->ups, s->closeds, s->resets, s->last_err, s->nrx, s->headers,
	        s->nsent, s->ntx, (unsigned long long)written_bytes(s->ep),
	        (unsigned long long)cnt(s->ep, "recv_bytes"),
	        (unsigned long long)cnt_opt(s->ep, "tx_partial"),
	        (unsigned long long)cnt(s->ep, "tx_blocked"),
	        (unsigned long long)cnt(s->ep, "tx_backlog_bytes"));
	if (is_infrc)
		fprintf(stderr,
		        "  %s: credits %llu credits_waits %llu sends %llu recv_chunks %llu "
		        "rdma_reads %llu rx_posted %llu rx_held %llu qp_errors %llu\n",
		        s->name, (unsigned long long)cnt(s->ep, "tx_credits"),
		        (unsigned long long)cnt(s->ep, "credits_waits"),
		        (unsigned long long)cnt(s->ep, "sends"),
		        (unsigned long long)cnt(s->ep, "recv_chunks"),
		        (unsigned long long)cnt(s->ep, "rdma_reads"),
		        (unsigned long long)cnt(s->ep, "rx_posted"),
		        (unsigned long long)cnt(s->ep, "rx_held"),
		        (unsigned long long)cnt(s->ep, "qp_errors"));
}

#define PUMP_UNTIL_N(ss, n, cond)                                                        \
	do {                                                                             \
		uint64_t dl_ = now_us() + DEADLINE_US;                                   \
		while (!(cond)) {                                                        \
			pump_sides((ss), (n));                                           \
			if (now_us() > dl_) {                                            \
				for (int i_ = 0; i_ < (n); i_++)                         \
					side_dump((ss)[i_]);                             \
				fail_msg("line %d: timed out waiting for %s", __LINE__,  \
				         #cond);                                         \
			}                                                                \
		}                                                                        \
	} while (0)

#define PUMP_UNTIL(a, b, cond)                                                           \
	do {                                                                             \
		uint64_t dl_ = now_us() + DEADLINE_US;                                   \
		while (!(cond)) {                                                        \
			pump_once((a), (b));                                             \
			if (now_us() > dl_) {                                            \
				side_dump(a);                                            \
				side_dump(b);                                            \
				fail_msg("line %d: timed out waiting for %s", __LINE__,  \
				         #cond);                                         \
			}                                                                \
		}                                                                        \
	} while (0)

static void pump_for(side *a, side *b, uint64_t us)
{
	uint64_t end = now_us() + us;
	while (now_us() < end)
		pump_once(a, b);
}

typedef struct pair {
	ferry_ctx *ctx;
	side *srv, *cli;
	char cli_loc[FERRY_LOC_MAX_BYTES];
	int fds_before;
} pair;

/* Listen on host port 0, read the bound locator, open a client endpoint and
 * connect it. rc != 0: the listener could not open (err says why). */
static int pair_open_rc(pair *p, const char *host, const char *extra, int poll_mode,
                        char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->fds_before = fd_count() - g_test_fds;
	ferry_ctx_opts o = {.poll_mode = poll_mode, .cpu = -1};
	assert_int_equal(ferry_ctx_create(&o, &p->ctx), 0);
	p->srv = side_new("server");
	p->cli = side_new("client");
	/* on_sent only after the bytes left; tests that drop messages turn
	 * this off. */
	p->srv->check_written = p->cli->check_written = true;
	char text[FERRY_LOC_MAX_BYTES];
	snprintf(text, sizeof(text), "%s:%shost=%s,port=0%s", drv_name, g_keys, host,
	         extra);
	int rc = side_open_rc(p->ctx, p->srv, text, true, err, errlen);
	if (rc != 0)
		return rc;
	char keys[256] = "";
	struct ferry_ctl_locator bl = {keys, sizeof(keys)};
	assert_int_equal(ferry__ep_ctl(p->srv->ep, FERRY_CTL_BOUND_LOCATOR, &bl), 0);
	const char *port = strstr(keys, "port=");
	assert_non_null(port);
	long pn = strtol(port + 5, NULL, 10);
	assert_true(pn > 0 && pn < 65536);
	assert_non_null(strstr(keys, host));
	snprintf(p->cli_loc, sizeof(p->cli_loc), "%s:%s%s%s", drv_name, g_keys, keys,
	         extra);
	side_open(p->ctx, p->cli, p->cli_loc, false);
	/* Only listeners have a bound locator. */
	assert_int_equal(ferry__ep_ctl(p->cli->ep, FERRY_CTL_BOUND_LOCATOR, &bl),
	                 -ENOTSUP);
	assert_int_equal(side_connect(p->cli, p->cli_loc), 0);
	assert_non_null(p->cli->conn);
	assert_ptr_equal(p->cli->conn->ep, p->cli->ep);
	return 0;
}

static void pair_open(pair *p, const char *extra)
{
	char err[256] = "";
	if (pair_open_rc(p, "127.0.0.1", extra, FERRY_POLL_SPIN, err, sizeof(err)) != 0)
		fail_msg("listen: %s", err);
}

static void pair_up(pair *p)
{
	PUMP_UNTIL(p->srv, p->cli, p->srv->ups == 1 && p->cli->ups == 1);
	assert_non_null(p->srv->conn);
}

static void pair_close(pair *p)
{
	side_ok(p->srv);
	side_ok(p->cli);
	side_release_rx(p->srv);
	side_release_rx(p->cli);
	side_free(p->srv);
	side_free(p->cli);
	ferry_ctx_destroy(p->ctx);
	assert_int_equal(fd_count() - g_test_fds, p->fds_before);
}

/* Payloads --------------------------------------------------------------------*/
typedef struct payload {
	uint8_t *mem; /* tu_fill(seed) pattern, n bytes */
	size_t n;
	uint64_t seed;
	int fd; /* file holding the same pattern, or -1 */
	ferry_buf b;
	size_t pieces, file_pieces;
} payload;

/* An unlinked file in /dev/shm (tmpfs: sendfile and splice work), else /tmp. */
static int tmp_file(int extra_flags)
{
	char path[64];
	snprintf(path, sizeof(path), "/dev/shm/ferry_sc_XXXXXX");
	int fd = mkostemp(path, O_CLOEXEC | extra_flags);
	if (fd < 0) {
		snprintf(path, sizeof(path), "/tmp/ferry_sc_XXXXXX");
		fd = mkostemp(path, O_CLOEXEC | extra_flags);
	}
	assert_true(fd >= 0);
	unlink(path);
	g_test_fds++;
	return fd;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
	size_t at = 0;
	while (at < n) {
		ssize_t w = pwrite(fd, p + at, n - at, (off_t)at);
		assert_true(w > 0);
		at += (size_t)w;
	}
}

static void test_close(int fd)
{
	assert_int_equal(close(fd), 0);
	g_test_fds--;
}

/* Length of piece i: many small pieces first, bigger ones later. */
static size_t piece_len(size_t i, size_t n)
{
	if (n <= 65536 || i < 200)
		return 1 + (i * 37) % 61;
	if (i % 5 == 3)
		return 1 + (i * 7919) % 300000; /* file pieces, some > 256 KiB */
	return 1 + (i * 7919) % 60000;
}

/* A payload of n pattern bytes gathered from small referenced and copied
 * pieces, every fifth piece a file region when files is set. */
static void payload_make(payload *p, size_t n, uint64_t seed, bool files)
{
	memset(p, 0, sizeof(*p));
	p->n = n;
	p->seed = seed;
	p->mem = malloc(n + 1);
	assert_non_null(p->mem);
	tu_fill(p->mem, n, seed);
	p->fd = -1;
	if (files && n > 0) {
		p->fd = tmp_file(0);
		write_all(p->fd, p->mem, n);
	}
	ferry_buf_init(&p->b);
	size_t off = 0;
	for (size_t i = 0; off < n; i++) {
		size_t k = piece_len(i, n);
		if (k > n - off)
			k = n - off;
		if (p->fd >= 0 && i % 5 == 3) {
			assert_int_equal(
			        ferry_buf_append_file(&p->b, p->fd, (off_t)off, k), 0);
			p->file_pieces++;
		} else if (i % 7 == 5) {
			assert_int_equal(ferry_buf_append(&p->b, p->mem + off, k), 0);
		} else {
			assert_int_equal(ferry_buf_append_ref(&p->b, p->mem + off, k), 0);
		}
		p->pieces++;
		off += k;
	}
	assert_int_equal(ferry_buf_len(&p->b), n);
}

static void payload_free(payload *p)
{
	ferry_buf_fini(&p->b);
	free(p->mem);
	p->mem = NULL;
	if (p->fd >= 0)
		test_close(p->fd);
	p->fd = -1;
}

/* Queue one message on s's connection. pl NULL: no payload iterator. */
static int send_on(side *s, ferry_conn *c, uint32_t mode, uint64_t id, payload *pl,
                   size_t len, uint64_t seed)
{
	assert_true(s->ntx < MAX_MSGS);
	th h = {MAGIC, mode, len, id, seed, 0};
	txrec *t = &s->tx[s->ntx];
	t->s = s;
	t->conn = c;
	t->idx = s->ntx;
	t->cum = s->tx_cum + HDR_LEN + len;
	ferry_buf_iter it;
	if (pl != NULL)
		ferry_buf_iter_init(&it, &pl->b, 0, len);
	int rc = ferry__ep_send_msg(c, &h, HDR_LEN, pl != NULL ? &it : NULL, t);
	if (rc == 0) {
		s->ntx++;
		s->tx_cum = t->cum;
	}
	return rc;
}

static void send_pl(side *s, uint32_t mode, uint64_t id, payload *pl)
{
	assert_int_equal(send_on(s, s->conn, mode, id, pl, pl->n, pl->seed), 0);
}

static void check_rx_buf(side *s, int i, uint64_t id, size_t n, uint64_t seed)
{
	rxrec *r = &s->rx[i];
	if (r->h.id != id || r->h.len != n || r->status != 0)
		fail_msg("%s rx %d: id %llu len %llu status %d, want id %llu len %zu",
		         s->name, i, (unsigned long long)r->h.id,
		         (unsigned long long)r->h.len, r->status, (unsigned long long)id,
		         n);
	long badoff = tu_check(&r->buf, n, seed);
	if (badoff >= 0)
		fail_msg("%s rx %d (%zu bytes): first bad byte at %ld", s->name, i, n,
		         badoff);
}

static void check_fd(int fd, off_t at, size_t n, uint64_t seed)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((size_t)st.st_size, (size_t)at + n);
	uint8_t *want = malloc(n + 1), *got = malloc(n + 1);
	tu_fill(want, n, seed);
	assert_int_equal(pread(fd, got, n, at), (ssize_t)n);
	if (memcmp(want, got, n) != 0) {
		size_t i = 0;
		while (want[i] == got[i])
			i++;
		fail_msg("fd body differs at byte %zu of %zu", i, n);
	}
	free(want);
	free(got);
}

/* Tests -------------------------------------------------------------------------*/

/* Listen on port 0, connect: UP exactly once on each side, peers known,
 * then the client closes and the server sees CLOSED. No fd left behind. */
static void listen_connect(const char *host)
{
	pair p;
	char err[256] = "";
	int rc = pair_open_rc(&p, host, "", FERRY_POLL_SPIN, err, sizeof(err));
	if (rc != 0) {
		if (strcmp(host, "::1") == 0 &&
		    (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT)) {
			fprintf(stderr, "no IPv6 loopback here (%s): skipped\n", err);
			side_free(p.srv);
			side_free(p.cli);
			ferry_ctx_destroy(p.ctx);
			skip();
		}
		fail_msg("listen on %s: %s", host, err);
	}
	pair_up(&p);
	pump_for(p.srv, p.cli, 50000);
	assert_int_equal(p.srv->ups, 1);
	assert_int_equal(p.cli->ups, 1);
	assert_int_equal(p.srv->closeds + p.srv->resets + p.cli->closeds + p.cli->resets,
	                 0);
	assert_int_equal(cnt(p.srv->ep, "accepts"), 1);
	assert_int_equal(cnt(p.srv->ep, "conns_up"), 1);
	assert_int_equal(cnt(p.cli->ep, "conns_up"), 1);
	assert_int_equal(cnt(p.cli->ep, "connects"), 1);
	assert_int_equal(cnt(p.srv->ep, "conns"), 1);
	ferry_caps caps;
	ferry__ep_caps(p.srv->ep, &caps);
	assert_true(caps.rx_batch >= 1);
	/* Idle: every poll reports nothing, without error. */
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(ferry__ep_stream_poll(p.srv->ep, 64), 0);
		assert_int_equal(ferry__ep_stream_poll(p.cli->ep, 64), 0);
	}
	/* A bound locator that does not fit is refused, not truncated. */
	char tiny[5];
	struct ferry_ctl_locator bl = {tiny, sizeof(tiny)};
	assert_int_equal(ferry__ep_ctl(p.srv->ep, FERRY_CTL_BOUND_LOCATOR, &bl), -ERANGE);
	/* Local close: CLOSED from inside the call, the peer sees CLOSED. */
	ferry__ep_conn_close(p.cli->conn);
	assert_int_equal(p.cli->closeds, 1);
	assert_null(p.cli->conn);
	PUMP_UNTIL(p.srv, p.cli, p.srv->closeds + p.srv->resets == 1);
	assert_int_equal(p.srv->closeds, 1);
	assert_int_equal(p.srv->resets, 0);
	assert_int_equal(cnt(p.srv->ep, "conns"), 0);
	assert_int_equal(cnt(p.cli->ep, "conns"), 0);
	pair_close(&p);
}

static void test_listen_connect_v4(void **st)
{
	(void)st;
	listen_connect("127.0.0.1");
}

static void test_listen_connect_v6(void **st)
{
	(void)st;
	listen_connect("::1");
}

/* Connecting to a port nobody listens on: RESET with an error, no UP; a
 * message queued before the failure gets on_sent once, before the RESET. */
static void test_connect_refused(void **st)
{
	(void)st;
	int before = fd_count();
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sl), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	close(s); /* bound, never listened: the port refuses */
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	side *c = side_new("client");
	char loc[320];
	snprintf(loc, sizeof(loc), "%s:%shost=127.0.0.1,port=%u", drv_name, g_keys,
	         ntohs(sa.sin_port));
	side_open(ctx, c, loc, false);
	assert_int_equal(side_connect(c, loc), 0);
	assert_int_equal(send_on(c, c->conn, M_BUF, 1, NULL, 0, 0), 0);
	PUMP_UNTIL(c, NULL, c->closeds + c->resets == 1);
	assert_int_equal(c->ups, 0);
	assert_int_equal(c->resets, 1);
	assert_true(c->last_err < 0);
	if (c->last_err != -ECONNREFUSED)
		fprintf(stderr, "note: refused connect reported %s\n",
		        ferry_err_name(c->last_err));
	assert_int_equal(c->tx[0].sent, 1);
	assert_true(c->tx[0].seq < c->event_seq);
	assert_int_equal(cnt(c->ep, "connect_failures"), 1);
	pump_for(c, NULL, 20000);
	assert_int_equal(c->resets + c->closeds, 1);
	side_free(c);
	ferry_ctx_destroy(ctx);
	assert_int_equal(fd_count(), before);
}

/* Bad keys, values and hosts: FERRY_EBADLOC with a message naming them. */
static void test_bad_locator(void **st)
{
	(void)st;
	int before = fd_count();
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	struct {
		const char *keys;
		bool listen;
		const char *named;
	} cases[] = {
	        {"host=127.0.0.1,port=0,bogus=1", true, "bogus"},
	        {"host=127.0.0.1,port=0,sndbuf=lots", true, "sndbuf"},
	        {"host=127.0.0.1,port=0,rcvbuf=-1", true, "rcvbuf"},
	        {"host=127.0.0.1,port=99999", true, "port"},
	        {"host=127.0.0.1,port=0,connect_timeout=0", true, "connect_timeout"},
	        {"host=not a host!,port=0", true, "not a host!"},
	        {"host=127.0.0.1,port=0,mtu=1500", false, "mtu"},
	};
	/* infrc: its own keys instead of the socket buffer ones. */
	static const struct {
		const char *keys;
		bool listen;
		const char *named;
	} ib_cases[] = {
	        {"host=127.0.0.1,port=0,bogus=1", true, "bogus"},
	        {"host=127.0.0.1,port=0,bufsize=lots", true, "bufsize"},
	        {"host=127.0.0.1,port=0,bufsize=16", true, "bufsize"},
	        {"host=127.0.0.1,port=0,rxbufs=-1", true, "rxbufs"},
	        {"host=127.0.0.1,port=0,large=sideways", true, "large"},
	        {"host=127.0.0.1,port=0,pull_min=0", true, "pull_min"},
	        {"host=127.0.0.1,port=0,dev=nosuchdev0", true, "dev"},
	        {"host=127.0.0.1,port=0,ibport=9", true, "ibport"},
	        {"host=127.0.0.1,port=0,gid=100000", true, "gid"},
	        {"host=127.0.0.1,port=99999", true, "port"},
	        {"host=127.0.0.1,port=0,connect_timeout=0", true, "connect_timeout"},
	        {"host=not a host!,port=0", true, "not a host!"},
	        {"host=127.0.0.1,port=0,mtu=1500", false, "mtu"},
	};
	size_t ncases = is_infrc ? sizeof(ib_cases) / sizeof(ib_cases[0])
	                         : sizeof(cases) / sizeof(cases[0]);
	for (size_t i = 0; i < ncases; i++) {
		char text[256], err[256] = "";
		const char *keys = is_infrc ? ib_cases[i].keys : cases[i].keys;
		const char *named = is_infrc ? ib_cases[i].named : cases[i].named;
		bool listen = is_infrc ? ib_cases[i].listen : cases[i].listen;
		snprintf(text, sizeof(text), "%s:%s", drv_name, keys);
		side *s = side_new("bad");
		int rc = side_open_rc(ctx, s, text, listen, err, sizeof(err));
		if (rc != FERRY_EBADLOC || strstr(err, named) == NULL)
			fail_msg("'%s': rc %d (%s), want FERRY_EBADLOC naming '%s'", text,
			         rc, err, named);
		assert_int_equal(s->neps, 0);
		side_free(s);
	}
	/* Connect-side checks land in ep->errmsg. */
	side *s = side_new("client");
	char text[256];
	snprintf(text, sizeof(text), "%s:%s", drv_name,
	         is_infrc ? "bufsize=65536" : "rcvbuf=65536");
	side_open(ctx, s, text, false);
	struct {
		const char *keys;
		const char *named;
	} peers[] = {
	        {"host=127.0.0.1", "port"},
	        {"port=9", "host"},
	        {"host=127.0.0.1,port=0", "port"},
	        {"host=127.0.0.1,port=70000", "port"},
	        {"host=bad host name,port=9", "bad host name"},
	};
	for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
		snprintf(text, sizeof(text), "%s:%s", drv_name, peers[i].keys);
		/* A value outside a declared key's range is refused by the
		 * parser already (drivers with key tables), naming the key. */
		ferry_loc pl;
		char perr[256] = "";
		int prc = ferry__loc_parse(text, &pl, perr, sizeof(perr));
		if (prc != 0) {
			if (prc != FERRY_EBADLOC || strstr(perr, peers[i].named) == NULL)
				fail_msg(
				        "parse '%s': rc %d (%s), want FERRY_EBADLOC naming '%s'",
				        text, prc, perr, peers[i].named);
			continue;
		}
		s->ep->errmsg[0] = '\0';
		int rc = side_connect(s, text);
		if (rc != FERRY_EBADLOC || strstr(s->ep->errmsg, peers[i].named) == NULL)
			fail_msg(
			        "connect '%s': rc %d (%s), want FERRY_EBADLOC naming '%s'",
			        text, rc, s->ep->errmsg, peers[i].named);
		assert_null(s->conn);
	}
	assert_int_equal(cnt(s->ep, "conns"), 0);
	side_free(s);
	ferry_ctx_destroy(ctx);
	assert_int_equal(fd_count(), before);
}

/* Messages of many sizes, gathered from > 64 small pieces mixed with file
 * regions, both directions at once, pipelined; the client's are queued
 * before the handshake completes. Byte-exact, in order, on_sent once each
 * and only after the bytes were written; received bodies are loans. */
static void test_sizes_both_directions(void **st)
{
	(void)st;
	/* 984 and 985: a whole message of exactly 1 KiB and one byte more. */
	static const size_t sizes[] = {0,    1,         40,      984, 985,
	                               4096, 300 << 10, 8 << 20, 5,   0};
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	pair p;
	pair_open(&p, "");
	payload cpl[N], spl[N];
	for (int i = 0; i < N; i++) {
		payload_make(&cpl[i], sizes[i], 100 + (uint64_t)i, true);
		payload_make(&spl[i], sizes[i], 200 + (uint64_t)i, true);
		if (sizes[i] >= 4096)
			assert_true(ferry_buf_chunk_count(&cpl[i].b) > 64 &&
			            cpl[i].file_pieces > 0);
	}
	/* Queued before UP: written once the handshake completes. The first
	 * empty message goes without an iterator at all. */
	assert_int_equal(send_on(p.cli, p.cli->conn, M_BUF, 0, NULL, 0, 100), 0);
	for (int i = 1; i < N; i++)
		send_pl(p.cli, M_BUF, (uint64_t)i, &cpl[i]);
	assert_int_equal(p.cli->nsent, 0);
	pair_up(&p);
	for (int i = 0; i < N; i++)
		send_pl(p.srv, M_BUF, (uint64_t)i, &spl[i]);
	PUMP_UNTIL(p.srv, p.cli,
	           p.srv->nrx == N && p.cli->nrx == N && p.srv->nsent == N &&
	                   p.cli->nsent == N);
	for (int i = 0; i < N; i++) {
		check_rx_buf(p.srv, i, (uint64_t)i, sizes[i], 100 + (uint64_t)i);
		check_rx_buf(p.cli, i, (uint64_t)i, sizes[i], 200 + (uint64_t)i);
		assert_int_equal(p.cli->tx[i].sent, 1);
		assert_int_equal(p.srv->tx[i].sent, 1);
	}
	/* Every received chunk is a pooled loan, counted while held. */
	assert_true(p.srv->ep->loans_out > 0);
	assert_int_equal(p.srv->ep->loans_out, loans_held(p.srv));
	assert_int_equal(p.cli->ep->loans_out, loans_held(p.cli));
	for (int i = 0; i < N; i++) {
		ferry_buf_iter it;
		ferry_buf_seg seg;
		ferry_buf_iter_init(&it, &p.srv->rx[i].buf, 0, sizes[i]);
		while (ferry_buf_iter_next(&it, &seg))
			assert_int_equal(seg.kind, FERRY_CHUNK_LOAN);
	}
	side_release_rx(p.srv);
	assert_int_equal(p.srv->ep->loans_out, 0);
	side_release_rx(p.cli);
	assert_int_equal(p.cli->ep->loans_out, 0);
	/* File regions: pread + send on tcp, sendfile on splice. */
	for (int k = 0; k < 2; k++) {
		ferry_ep *ep = k == 0 ? p.cli->ep : p.srv->ep;
		if (is_splice) {
			assert_true(cnt(ep, "sendfile_bytes") > 0);
			assert_int_equal(cnt(ep, "tx_file_copy_bytes"), 0);
		} else {
			assert_true(cnt(ep, "tx_file_copy_bytes") > 0);
			assert_int_equal(cnt_opt(ep, "sendfile_bytes"), 0);
		}
		assert_int_equal(cnt(ep, "tx_backlog_bytes"), 0);
	}
	assert_int_equal(written_bytes(p.cli->ep), p.cli->tx_cum);
	assert_int_equal(written_bytes(p.srv->ep), p.srv->tx_cum);
	/* The generic counters, kept by the core's wrappers as for datagram
	 * drivers: one packet per message, header and payload bytes. */
	uint64_t msg_bytes = 0;
	for (int i = 0; i < N; i++)
		msg_bytes += HDR_LEN + sizes[i];
	for (int k = 0; k < 2; k++) {
		side *sd = k == 0 ? p.cli : p.srv;
		assert_int_equal(sd->ep->cnt.tx_pkts, N);
		assert_int_equal(sd->ep->cnt.tx_bytes, msg_bytes);
		assert_int_equal(sd->ep->cnt.tx_bytes, sd->tx_cum);
		assert_int_equal(sd->ep->cnt.tx_errors, 0);
		assert_int_equal(sd->ep->cnt.rx_pkts, N);
		assert_int_equal(sd->ep->cnt.rx_bytes, msg_bytes);
		assert_true(sd->ep->cnt.polls >= sd->ep->cnt.polls_nonempty);
		assert_true(sd->ep->cnt.polls_nonempty > 0);
	}
	pair_close(&p);
	for (int i = 0; i < N; i++) {
		payload_free(&cpl[i]);
		payload_free(&spl[i]);
	}
}

/* A file-only payload: the exact byte counts of each driver's file path. */
static void test_file_regions(void **st)
{
	(void)st;
	pair p;
	pair_open(&p, "");
	pair_up(&p);
	payload pl;
	payload_make(&pl, 1 << 20, 7, true);
	ferry_buf_reset(&pl.b);
	assert_int_equal(ferry_buf_append_file(&pl.b, pl.fd, 0, 600 << 10), 0);
	assert_int_equal(
	        ferry_buf_append_file(&pl.b, pl.fd, 600 << 10, (1 << 20) - (600 << 10)),
	        0);
	send_pl(p.cli, M_BUF, 1, &pl);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 1 && p.cli->nsent == 1);
	check_rx_buf(p.srv, 0, 1, pl.n, pl.seed);
	if (is_splice) {
		assert_int_equal(cnt(p.cli->ep, "sendfile_bytes"), pl.n);
		assert_int_equal(cnt(p.cli->ep, "tx_file_copy_bytes"), 0);
	} else {
		assert_int_equal(cnt(p.cli->ep, "tx_file_copy_bytes"), pl.n);
		assert_int_equal(cnt_opt(p.cli->ep, "sendfile_bytes"), 0);
	}
	assert_int_equal(written_bytes(p.cli->ep), HDR_LEN + pl.n);
	pair_close(&p);
	payload_free(&pl);
}

/* Tiny socket buffers: a 16 MiB message (memory and a file region) gets
 * through in many partial writes; no poll or flush call ever waits. */
static void test_partial_writes(void **st)
{
	(void)st;
	pair p;
	pair_open(&p, SMALLBUF);
	pair_up(&p);
	payload pl;
	size_t n = 16u << 20;
	payload_make(&pl, n, 16, true);
	ferry_buf_reset(&pl.b);
	size_t quarter = n / 4;
	assert_int_equal(ferry_buf_append_ref(&pl.b, pl.mem, quarter), 0);
	assert_int_equal(ferry_buf_append_file(&pl.b, pl.fd, (off_t)quarter, quarter), 0);
	for (size_t off = 2 * quarter; off < n; off += quarter / 4)
		assert_int_equal(ferry_buf_append_ref(&pl.b, pl.mem + off, quarter / 4),
		                 0);
	payload tail;
	payload_make(&tail, 100, 17, false);
	p.cli->max_call_us = p.cli->max_slept_us = 0;
	p.srv->max_call_us = p.srv->max_slept_us = 0;
	uint64_t t0 = now_us();
	send_pl(p.cli, M_BUF, 1, &pl);
	send_pl(p.cli, M_BUF, 2, &tail);
	assert_true(now_us() - t0 < CALL_MAX_US);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 2 && p.cli->nsent == 2);
	check_rx_buf(p.srv, 0, 1, n, pl.seed);
	check_rx_buf(p.srv, 1, 2, 100, tail.seed);
	/* infrc: no socket to fill; credits run out instead (tx_partial is
	 * then the number of waits for credits). */
	uint64_t partial =
	        is_infrc ? cnt(p.cli->ep, "credits_waits") : cnt(p.cli->ep, "tx_partial");
	uint64_t blocked = cnt(p.cli->ep, "tx_blocked");
	if (is_pull) /* one descriptor, one RDMA READ: no credits to run out of */
		partial = blocked = cnt(p.srv->ep, "rdma_reads");
	fprintf(stderr,
	        "16 MiB: tx_partial %llu tx_blocked %llu, slowest call %llu us (sleeping %llu us)\n",
	        (unsigned long long)partial, (unsigned long long)blocked,
	        (unsigned long long)p.cli->max_call_us,
	        (unsigned long long)p.cli->max_slept_us);
	/* A call that slept that long blocked; one only preempted that long
	 * (a loaded machine) did not, but a second would be absurd anyway. */
	for (int k = 0; k < 2; k++) {
		side *s = k == 0 ? p.cli : p.srv;
		if (s->max_slept_us >= CALL_MAX_US || s->max_call_us >= 1000000)
			fail_msg(
			        "a %s poll/flush call took %llu us (%llu us of it asleep)",
			        s->name, (unsigned long long)s->max_call_us,
			        (unsigned long long)s->max_slept_us);
	}
	assert_true(partial > 0);
	assert_true(blocked > 0);
	assert_int_equal(p.srv->ep->loans_out, loans_held(p.srv));
	pair_close(&p);
	payload_free(&pl);
	payload_free(&tail);
}

/* Loans: counted per chunk while held, released piecemeal, and still
 * valid (and releasable) after the connection that filled them is gone. */
static void test_loans(void **st)
{
	(void)st;
	pair p;
	pair_open(&p, "");
	pair_up(&p);
	payload pl[3];
	for (int i = 0; i < 3; i++) {
		payload_make(&pl[i], (300u << 10) + (size_t)i, 30 + (uint64_t)i, false);
		send_pl(p.cli, M_BUF, (uint64_t)i, &pl[i]);
	}
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 3);
	assert_true(p.srv->ep->loans_out >= 3);
	assert_int_equal(p.srv->ep->loans_out, loans_held(p.srv));
	uint32_t first = (uint32_t)ferry_buf_chunk_count(&p.srv->rx[0].buf);
	uint32_t before = p.srv->ep->loans_out;
	ferry_buf_reset(&p.srv->rx[0].buf);
	assert_int_equal(p.srv->ep->loans_out, before - first);
	/* Part of a loan chunk leaves: still held until the chunk goes. */
	ferry_buf_truncate_front(&p.srv->rx[1].buf, 1000);
	assert_int_equal(p.srv->ep->loans_out, loans_held(p.srv));
	/* The connection goes; the loans stay readable. */
	ferry__ep_conn_close(p.cli->conn);
	PUMP_UNTIL(p.srv, p.cli, p.srv->closeds == 1);
	assert_true(p.srv->ep->loans_out > 0);
	check_rx_buf(p.srv, 2, 2, pl[2].n, pl[2].seed);
	side_release_rx(p.srv);
	assert_int_equal(p.srv->ep->loans_out, 0);
	pair_close(&p);
	for (int i = 0; i < 3; i++)
		payload_free(&pl[i]);
}

/* fd sinks, framed by buffer messages on either side. tcp copies the body
 * out of its blocks; splice, with hdr_exact set on the receiving conn,
 * moves it socket -> pipe -> fd; an O_APPEND file makes splice fall back to
 * copying; an fd that refuses writes fails that body only. */
static void fd_sink_case(bool hdr_exact)
{
	pair p;
	pair_open(&p, "");
	p.srv->set_hdr_exact = hdr_exact;
	pair_up(&p);
	assert_int_equal(p.srv->conn->hdr_exact, hdr_exact);
	payload a, big, b, small;
	payload_make(&a, 1000, 41, false);
	payload_make(&big, 3u << 20, 42, true);
	payload_make(&b, 5000, 43, false);
	payload_make(&small, 70000, 44, false);
	int fd = tmp_file(0);
	int msgs = 0;

	/* 1. off 0 */
	uint64_t spliced0 = cnt_opt(p.srv->ep, "splice_bytes");
	p.srv->sink_fd = fd;
	p.srv->sink_off = 0;
	send_pl(p.cli, M_BUF, 1, &a);
	send_pl(p.cli, M_FD, 2, &big);
	send_pl(p.cli, M_BUF, 3, &b);
	msgs += 3;
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == msgs);
	check_rx_buf(p.srv, 0, 1, a.n, a.seed);
	check_rx_buf(p.srv, 2, 3, b.n, b.seed);
	rxrec *r = &p.srv->rx[1];
	assert_int_equal(r->status, 0);
	check_fd(fd, 0, big.n, big.seed);
	uint64_t spliced = cnt_opt(p.srv->ep, "splice_bytes") - spliced0;
	fprintf(stderr, "%s hdr_exact=%d: fd body %zu bytes, copied %llu, spliced %llu\n",
	        drv_name, hdr_exact, big.n, (unsigned long long)r->copied,
	        (unsigned long long)spliced);
	if (!is_splice) {
		assert_int_equal(r->copied, big.n);
		assert_int_equal(spliced, 0);
	} else if (hdr_exact) {
		assert_int_equal(r->copied, 0);
		assert_int_equal(spliced, big.n);
		assert_int_equal(cnt_opt(p.srv->ep, "splice_fallbacks"), 0);
	} else {
		assert_int_equal(r->copied + spliced, big.n);
	}

	/* 2. at the fd's position; then an empty fd body */
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	p.srv->sink_off = -1;
	send_pl(p.cli, M_FD, 4, &small);
	assert_int_equal(send_on(p.cli, p.cli->conn, M_FD, 5, NULL, 0, 0), 0);
	send_pl(p.cli, M_BUF, 6, &a);
	msgs += 3;
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == msgs);
	assert_int_equal(p.srv->rx[msgs - 3].status, 0);
	assert_int_equal(p.srv->rx[msgs - 2].status, 0);
	assert_int_equal(p.srv->rx[msgs - 2].copied, 0);
	check_fd(fd, 0, small.n, small.seed);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)small.n);
	check_rx_buf(p.srv, msgs - 1, 6, a.n, a.seed);

	/* 3. O_APPEND: splice refuses, the copy fallback keeps the data exact */
	int afd = tmp_file(O_APPEND);
	uint64_t fallbacks0 = cnt_opt(p.srv->ep, "splice_fallbacks");
	p.srv->sink_fd = afd;
	p.srv->sink_off = -1;
	send_pl(p.cli, M_FD, 7, &big);
	send_pl(p.cli, M_BUF, 8, &b);
	msgs += 2;
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == msgs);
	r = &p.srv->rx[msgs - 2];
	assert_int_equal(r->status, 0);
	check_fd(afd, 0, big.n, big.seed);
	check_rx_buf(p.srv, msgs - 1, 8, b.n, b.seed);
	uint64_t fallbacks = cnt_opt(p.srv->ep, "splice_fallbacks") - fallbacks0;
	if (is_splice) {
		assert_true(fallbacks > 0);
		assert_true(r->copied > 0);
	} else {
		assert_int_equal(fallbacks, 0);
		assert_int_equal(r->copied, big.n);
	}
	test_close(afd);

	/* 4. an fd that refuses writes: that body fails, the stream stays framed */
	int rfd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	assert_true(rfd >= 0);
	p.srv->sink_fd = rfd;
	p.srv->sink_off = 0;
	send_pl(p.cli, M_FD, 9, &small);
	send_pl(p.cli, M_BUF, 10, &a);
	msgs += 2;
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == msgs);
	assert_true(p.srv->rx[msgs - 2].status < 0);
	check_rx_buf(p.srv, msgs - 1, 10, a.n, a.seed);
	close(rfd);

	assert_int_equal(p.srv->closeds + p.srv->resets, 0);
	assert_int_equal(p.cli->nsent, msgs);
	pair_close(&p);
	test_close(fd);
	payload_free(&a);
	payload_free(&big);
	payload_free(&b);
	payload_free(&small);
}

static void test_fd_sink(void **st)
{
	(void)st;
	fd_sink_case(false);
}

static void test_fd_sink_hdr_exact(void **st)
{
	(void)st;
	skip_on_infrc("hdr_exact matters to socket reads only");
	fd_sink_case(true);
}

/* A discarded body is read and dropped; the next message is framed. */
static void test_discard(void **st)
{
	(void)st;
	pair p;
	pair_open(&p, "");
	pair_up(&p);
	payload a, big;
	payload_make(&a, 333, 51, false);
	payload_make(&big, 1u << 20, 52, true);
	send_pl(p.cli, M_BUF, 1, &a);
	send_pl(p.cli, M_DISCARD, 2, &big);
	send_pl(p.cli, M_BUF, 3, &a);
	send_pl(p.cli, M_DISCARD, 4, &a);
	send_pl(p.cli, M_BUF, 5, &big);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 5);
	check_rx_buf(p.srv, 0, 1, a.n, a.seed);
	assert_int_equal(p.srv->rx[1].status, 0);
	assert_int_equal(ferry_buf_len(&p.srv->rx[1].buf), 0);
	check_rx_buf(p.srv, 2, 3, a.n, a.seed);
	assert_int_equal(p.srv->rx[3].h.id, 4);
	check_rx_buf(p.srv, 4, 5, big.n, big.seed);
	/* Dropped bodies hold no loans. */
	assert_int_equal(p.srv->ep->loans_out, loans_held(p.srv));
	pair_close(&p);
	payload_free(&a);
	payload_free(&big);
}

/* on_header refuses a header: the receiver resets the connection with that
 * error; the sender sees CLOSED or RESET, after on_sent ran exactly once
 * for every message still queued (the small buffers keep most queued). */
static void test_header_error_resets(void **st)
{
	(void)st;
	pair p;
	pair_open(&p, SMALLBUF);
	pair_up(&p);
	p.cli->check_written = false; /* most are dropped */
	p.srv->fail_rc = FERRY_EPROTO;
	payload a, big;
	payload_make(&a, 100, 61, false);
	payload_make(&big, 2u << 20, 62, true);
	send_pl(p.cli, M_BUF, 1, &a);
	send_pl(p.cli, M_FAIL, 2, &a);
	for (int i = 0; i < 3; i++)
		send_pl(p.cli, M_BUF, 3 + (uint64_t)i, &big);
	PUMP_UNTIL(p.srv, p.cli,
	           p.srv->closeds + p.srv->resets == 1 &&
	                   p.cli->closeds + p.cli->resets == 1);
	assert_int_equal(p.srv->resets, 1);
	assert_int_equal(p.srv->last_err, FERRY_EPROTO);
	assert_int_equal(p.srv->nrx, 1);
	check_rx_buf(p.srv, 0, 1, a.n, a.seed);
	assert_int_equal(p.cli->nsent, 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(p.cli->tx[i].sent, 1);
		assert_true(p.cli->tx[i].seq < p.cli->event_seq);
	}
	fprintf(stderr, "sender saw %s (%s)\n", p.cli->closeds ? "CLOSED" : "RESET",
	        ferry_err_name(p.cli->last_err));
	assert_int_equal(cnt(p.srv->ep, "conns_reset"), 1);
	pump_for(p.srv, p.cli, 20000);
	assert_int_equal(p.cli->closeds + p.cli->resets, 1);
	assert_int_equal(p.srv->closeds + p.srv->resets, 1);
	pair_close(&p);
	payload_free(&a);
	payload_free(&big);
}

/* detach: a large message stuck behind a full socket (and one not started
 * behind it) no longer references its payload: the memory is freed, the
 * buffer reset, the file truncated and closed; the receiver still gets the
 * original bytes. */
static void test_detach(void **st)
{
	(void)st;
	if (is_pull)
		skip_on_infrc(
		        "large=pull stages a message whole when it reaches the queue head: "
		        "nothing is left to detach");
	pair p;
	pair_open(&p, SMALLBUF);
	pair_up(&p);
	payload one, two, done;
	payload_make(&done, 10, 70, false);
	payload_make(&one, 4u << 20, 71, true);
	payload_make(&two, 300u << 10, 72, true);
	/* A message already written: detaching its cookie is a no-op. */
	send_pl(p.cli, M_BUF, 0, &done);
	PUMP_UNTIL(p.srv, p.cli, p.cli->nsent == 1);
	assert_int_equal(ferry__ep_detach(p.cli->conn, &p.cli->tx[0]), 0);
	send_pl(p.cli, M_BUF, 1, &one);
	send_pl(p.cli, M_BUF, 2, &two);
	/* Flush the sender alone until the socket refuses more. */
	uint64_t dl = now_us() + DEADLINE_US;
	while (cnt(p.cli->ep, "tx_blocked") == 0) {
		ferry__ep_stream_flush(p.cli->ep);
		side_ok(p.cli);
		if (now_us() > dl)
			fail_msg("the sender never blocked");
	}
	uint64_t written = written_bytes(p.cli->ep);
	assert_true(written > HDR_LEN + done.n);
	assert_true(written < p.cli->tx_cum);
	assert_int_equal(p.cli->nsent, 1);
	assert_int_equal(ferry__ep_detach(p.cli->conn, &p.cli->tx[1]), 1);
	assert_int_equal(ferry__ep_detach(p.cli->conn, &p.cli->tx[2]), 1);
	uint64_t copied = cnt(p.cli->ep, "detach_copy_bytes");
	assert_true(copied > two.n && copied < one.n + two.n);
	/* Detaching twice copies nothing more (nothing left to detach: 0). */
	assert_int_equal(ferry__ep_detach(p.cli->conn, &p.cli->tx[1]), 0);
	assert_int_equal(cnt(p.cli->ep, "detach_copy_bytes"), copied);
	/* The payloads go away for good. */
	uint64_t s1 = one.seed, s2 = two.seed;
	size_t n1 = one.n, n2 = two.n;
	memset(one.mem, 0xEE, one.n);
	memset(two.mem, 0xEE, two.n);
	assert_int_equal(ftruncate(one.fd, 0), 0);
	ferry_buf_reset(&one.b);
	ferry_buf_reset(&two.b);
	payload_free(&one);
	payload_free(&two);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 3 && p.cli->nsent == 3);
	check_rx_buf(p.srv, 0, 0, done.n, done.seed);
	check_rx_buf(p.srv, 1, 1, n1, s1);
	check_rx_buf(p.srv, 2, 2, n2, s2);
	pair_close(&p);
	payload_free(&done);
}

/* conn_close with messages queued and never flushed: on_sent for each,
 * then CLOSED, all inside the call; the peer sees CLOSED. Then the other
 * way round (the accepting side closes). */
static void test_conn_close(void **st)
{
	(void)st;
	for (int way = 0; way < 2; way++) {
		pair p;
		pair_open(&p, "");
		pair_up(&p);
		side *closer = way == 0 ? p.cli : p.srv;
		side *peer = way == 0 ? p.srv : p.cli;
		closer->check_written = false; /* its messages are dropped */
		payload a;
		payload_make(&a, 1000, 80, true);
		for (int i = 0; i < 3; i++)
			send_pl(closer, M_BUF, (uint64_t)i, &a);
		ferry__ep_conn_close(closer->conn);
		assert_int_equal(closer->nsent, 3);
		assert_int_equal(closer->closeds, 1);
		assert_null(closer->conn);
		for (int i = 0; i < 3; i++)
			assert_true(closer->tx[i].seq < closer->event_seq);
		PUMP_UNTIL(p.srv, p.cli, peer->closeds + peer->resets == 1);
		assert_int_equal(peer->closeds, 1);
		assert_int_equal(peer->nrx, 0);
		pump_for(p.srv, p.cli, 20000);
		assert_int_equal(closer->closeds + closer->resets, 1);
		assert_int_equal(peer->closeds + peer->resets, 1);
		pair_close(&p);
		payload_free(&a);
	}
}

/* Block mode: the endpoint fd signals accepts, connects and input. */
static void test_block_mode_fd(void **st)
{
	(void)st;
	pair p;
	char err[256] = "";
	if (pair_open_rc(&p, "127.0.0.1", "", FERRY_POLL_BLOCK, err, sizeof(err)) != 0)
		fail_msg("listen: %s", err);
	assert_true(p.srv->ep->sleeps && p.cli->ep->sleeps);
	assert_true(p.srv->ep->fd >= 0 && p.cli->ep->fd >= 0);
	payload a;
	payload_make(&a, 2000, 90, false);
	uint64_t dl = now_us() + DEADLINE_US;
	bool sent = false;
	while (p.srv->nrx < 1) {
		struct pollfd pf[2] = {{p.srv->ep->fd, POLLIN, 0},
		                       {p.cli->ep->fd, POLLIN, 0}};
		bool busy = p.srv->ep->tx_pending || p.cli->ep->tx_pending;
		int k = poll(pf, 2, busy ? 0 : 1000);
		assert_true(k >= 0);
		if (k == 0 && !busy)
			fail_msg("no readiness on either endpoint fd (ups %d/%d, rx %d)",
			         p.srv->ups, p.cli->ups, p.srv->nrx);
		pump_once(p.srv, p.cli);
		if (!sent && p.cli->ups == 1) {
			send_pl(p.cli, M_BUF, 1, &a);
			sent = true;
		}
		if (now_us() > dl)
			fail_msg("timed out");
	}
	check_rx_buf(p.srv, 0, 1, a.n, a.seed);
	PUMP_UNTIL(p.srv, p.cli, p.cli->nsent == 1);
	pair_close(&p);
	payload_free(&a);
}

/* More connections than the driver reads directly (spin mode switches to
 * epoll readiness past a few): six clients on one listener, each sends
 * three messages; the server echoes every body back on the conn it came
 * from, sending the received loans themselves as the payload. */
static void test_many_conns(void **st)
{
	(void)st;
	enum { NC = 6, PER = 3 };
	pair p;
	pair_open(&p, "");
	side *cl[NC];
	side *all[NC + 1];
	all[0] = p.srv;
	cl[0] = p.cli;
	static const char *names[NC] = {"client0", "client1", "client2",
	                                "client3", "client4", "client5"};
	for (int i = 1; i < NC; i++) {
		cl[i] = side_new(names[i]);
		side_open(p.ctx, cl[i], p.cli_loc, false);
		assert_int_equal(side_connect(cl[i], p.cli_loc), 0);
	}
	for (int i = 0; i < NC; i++)
		all[i + 1] = cl[i];
	payload pl[PER];
	for (int j = 0; j < PER; j++)
		payload_make(&pl[j],
		             j == 0   ? 10
		             : j == 1 ? 70000
		                      : (1u << 20),
		             300 + (uint64_t)j, j == 2);
	for (int i = 0; i < NC; i++)
		for (int j = 0; j < PER; j++)
			send_pl(cl[i], M_BUF, (uint64_t)(i * PER + j), &pl[j]);
	PUMP_UNTIL_N(all, NC + 1, p.srv->nrx == NC * PER);
	assert_int_equal(p.srv->ups, NC);
	assert_int_equal(cnt(p.srv->ep, "conns"), NC);
	/* Echo: the received loans go back out as the payload. */
	for (int k = 0; k < NC * PER; k++) {
		rxrec *r = &p.srv->rx[k];
		int j = (int)(r->h.id % PER);
		check_rx_buf(p.srv, k, r->h.id, pl[j].n, pl[j].seed);
		ferry_buf_iter it;
		ferry_buf_iter_init(&it, &r->buf, 0, r->h.len);
		th h = {MAGIC, M_BUF, r->h.len, r->h.id, r->h.seed, 0};
		txrec *t = &p.srv->tx[p.srv->ntx];
		*t = (txrec){.s = p.srv, .conn = r->conn, .idx = p.srv->ntx};
		assert_int_equal(ferry__ep_send_msg(r->conn, &h, HDR_LEN, &it, t), 0);
		p.srv->ntx++;
	}
	PUMP_UNTIL_N(all, NC + 1,
	             p.srv->nsent == NC * PER && cl[0]->nrx == PER && cl[1]->nrx == PER &&
	                     cl[2]->nrx == PER && cl[3]->nrx == PER &&
	                     cl[4]->nrx == PER && cl[5]->nrx == PER);
	for (int i = 0; i < NC; i++) {
		for (int j = 0; j < PER; j++)
			check_rx_buf(cl[i], j, (uint64_t)(i * PER + j), pl[j].n,
			             pl[j].seed);
		assert_int_equal(cl[i]->ups, 1);
		assert_int_equal(cl[i]->nsent, PER);
	}
	assert_true(cnt(p.srv->ep, "epoll_waits") > 0);
	side_release_rx(p.srv);
	assert_int_equal(p.srv->ep->loans_out, 0);
	for (int i = 1; i < NC; i++) {
		side_ok(cl[i]);
		side_release_rx(cl[i]);
		side_free(cl[i]);
	}
	PUMP_UNTIL(p.srv, p.cli, p.srv->closeds == NC - 1);
	pair_close(&p);
	for (int j = 0; j < PER; j++)
		payload_free(&pl[j]);
}

/* The receiver may change its mind while a body arrives (the stream
 * transport does when a call ends early): through the sink pointer it got
 * in on_header it turns a buffer or fd sink into a discard. The rest of
 * the body is dropped and the next message is framed. */
static void sink_switch_case(uint32_t mode, bool hdr_exact)
{
	pair p;
	pair_open(&p, "");
	p.srv->set_hdr_exact = hdr_exact;
	pair_up(&p);
	int fd = tmp_file(0);
	p.srv->sink_fd = fd;
	p.srv->sink_off = 0;
	payload big, a;
	payload_make(&big, 8u << 20, 400, false);
	payload_make(&a, 5000, 401, false);
	send_pl(p.cli, mode, 1, &big);
	send_pl(p.cli, M_BUF, 2, &a);
	/* Wait until part of the body is in. */
	struct stat stt;
	PUMP_UNTIL(p.srv, p.cli,
	           p.srv->cs[0].sink != NULL &&
	                   (mode == M_BUF ? ferry_buf_len(&p.srv->rx[0].buf) > 0
	                                  : (fstat(fd, &stt) == 0 && stt.st_size > 0)));
	assert_int_equal(p.srv->nrx, 0);
	ferry_body_sink *k = p.srv->cs[0].sink;
	k->buf = NULL;
	k->fd = -1;
	k->discard = true;
	size_t kept = mode == M_BUF ? ferry_buf_len(&p.srv->rx[0].buf) : 0;
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 2);
	assert_int_equal(p.srv->rx[0].status, 0);
	assert_int_equal(p.srv->rx[0].h.id, 1);
	if (mode == M_BUF)
		assert_int_equal(ferry_buf_len(&p.srv->rx[0].buf), kept);
	check_rx_buf(p.srv, 1, 2, a.n, a.seed);
	assert_int_equal(p.srv->closeds + p.srv->resets, 0);
	assert_int_equal(p.srv->ep->loans_out, loans_held(p.srv));
	pair_close(&p);
	test_close(fd);
	payload_free(&big);
	payload_free(&a);
}

static void test_sink_switch_mid_body(void **st)
{
	(void)st;
	if (is_pull)
		skip_on_infrc(
		        "large=pull: an 8 MiB body arrives in one RDMA READ, never half-way");
	sink_switch_case(M_BUF, false);
	sink_switch_case(M_FD, false);
	sink_switch_case(M_FD, true);
}

/* A connect nobody answers (the listener's accept queue is full, so the
 * SYN is dropped) ends in RESET with FERRY_ETIMEDOUT after
 * connect_timeout; the endpoint asks to be polled by then (wake_at_us). */
static void test_connect_timeout(void **st)
{
	(void)st;
	int before = fd_count();
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sl), 0);
	assert_int_equal(listen(l, 0), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
	int fill[4];
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		connect(fill[i], (struct sockaddr *)&sa, sl);
	}
	usleep(20000);
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	side *c = side_new("client");
	char loc[320];
	snprintf(loc, sizeof(loc), "%s:%shost=127.0.0.1,port=%u,connect_timeout=200",
	         drv_name, g_keys, ntohs(sa.sin_port));
	side_open(ctx, c, loc, false);
	uint64_t t0 = now_us();
	assert_int_equal(side_connect(c, loc), 0);
	assert_true(c->ep->wake_at_us != 0);
	assert_int_equal(send_on(c, c->conn, M_BUF, 1, NULL, 0, 0), 0);
	PUMP_UNTIL(c, NULL, c->closeds + c->resets == 1);
	uint64_t took = now_us() - t0;
	if (c->ups != 0) {
		fprintf(stderr,
		        "the SYN was not dropped here (UP): timeout not testable\n");
	} else {
		assert_int_equal(c->resets, 1);
		assert_int_equal(c->last_err, FERRY_ETIMEDOUT);
		assert_true(took >= 190000 && took < 2000000);
		assert_int_equal(cnt(c->ep, "connect_timeouts"), 1);
		assert_int_equal(c->tx[0].sent, 1);
		assert_int_equal(c->ep->wake_at_us, 0);
	}
	side_free(c);
	ferry_ctx_destroy(ctx);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(l);
	assert_int_equal(fd_count(), before);
}

/* Reentrancy: what a transport does from inside upcalls. ----------------------*/
static payload g_small; /* 1000 bytes, shared by the hooks below */

static void hook_reply(side *s, int where, ferry_conn *c, int slot)
{
	if (where != H_BODY || s->ntx >= MAX_MSGS)
		return;
	/* A handler answering at once: a header-only reply from on_body. */
	if (send_on(s, c, M_BUF, s->rx[slot].h.id + 1000, NULL, 0, 0) != 0)
		bad(s, "send_msg from on_body failed");
}

static void hook_chain(side *s, int where, ferry_conn *c, int idx)
{
	if (where != H_SENT || idx >= 19 || s->ntx >= MAX_MSGS)
		return;
	/* A completion starting the next request from on_sent. */
	if (send_on(s, c, M_BUF, (uint64_t)idx + 1, &g_small, g_small.n, g_small.seed) !=
	    0)
		bad(s, "send_msg from on_sent failed");
}

static const char *g_reconnect_loc;
static void hook_reconnect(side *s, int where, ferry_conn *c, int event)
{
	(void)c;
	(void)event;
	if (where != H_END || s->hook_n++ > 0)
		return;
	/* The connection is lost: a new one from inside conn_event. */
	ferry_loc loc;
	char err[256];
	ferry_conn *nc = NULL;
	if (ferry__loc_parse(g_reconnect_loc, &loc, err, sizeof(err)) != 0 ||
	    ferry__ep_connect(s->ep, &loc, &nc) != 0 || nc == NULL) {
		bad(s, "connect from conn_event failed");
		return;
	}
	cs_add(s, nc);
	s->conn = nc;
	if (send_on(s, nc, M_BUF, 2, &g_small, g_small.n, g_small.seed) != 0)
		bad(s, "send_msg on the new conn failed");
}

static void test_reentrant_send_connect(void **st)
{
	(void)st;
	payload_make(&g_small, 1000, 500, false);
	/* replies from on_body */
	pair p;
	pair_open(&p, "");
	pair_up(&p);
	p.srv->hook = hook_reply;
	for (int i = 0; i < 10; i++)
		send_pl(p.cli, M_BUF, (uint64_t)i, &g_small);
	PUMP_UNTIL(p.srv, p.cli, p.cli->nrx == 10 && p.srv->nsent == 10);
	for (int i = 0; i < 10; i++) {
		check_rx_buf(p.srv, i, (uint64_t)i, g_small.n, g_small.seed);
		check_rx_buf(p.cli, i, (uint64_t)i + 1000, 0, 0);
	}
	pair_close(&p);
	/* a chain of sends from on_sent */
	pair_open(&p, "");
	pair_up(&p);
	p.cli->hook = hook_chain;
	send_pl(p.cli, M_BUF, 0, &g_small);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 20 && p.cli->nsent == 20);
	for (int i = 0; i < 20; i++)
		check_rx_buf(p.srv, i, (uint64_t)i, g_small.n, g_small.seed);
	pair_close(&p);
	/* reconnect from conn_event: the server drops the first conn */
	pair_open(&p, "");
	pair_up(&p);
	g_reconnect_loc = p.cli_loc;
	p.cli->hook = hook_reconnect;
	send_pl(p.cli, M_BUF, 1, &g_small);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 1);
	ferry__ep_conn_close(p.srv->conn);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 2 && p.cli->nsent == 2);
	assert_int_equal(p.cli->closeds, 1);
	assert_int_equal(p.cli->ups, 2);
	assert_int_equal(p.srv->ups, 2);
	check_rx_buf(p.srv, 1, 2, g_small.n, g_small.seed);
	pair_close(&p);
	payload_free(&g_small);
}

static void hook_close_on_body(side *s, int where, ferry_conn *c, int slot)
{
	(void)slot;
	if (where == H_BODY && s->hook_n++ == 0)
		ferry__ep_conn_close(c);
}

static void hook_close_on_sent(side *s, int where, ferry_conn *c, int idx)
{
	(void)idx;
	if (where == H_SENT && s->hook_n++ == 0)
		ferry__ep_conn_close(c);
}

/* conn_close from inside on_body / on_sent (a session closed from a call's
 * completion callback reaches the driver this way): the driver must not
 * touch the connection it was reading or writing after the upcall. */
static void test_close_from_upcall(void **st)
{
	(void)st;
	payload_make(&g_small, 1000, 501, false);
	for (int way = 0; way < 2; way++) {
		pair p;
		pair_open(&p, "");
		pair_up(&p);
		p.cli->check_written = false; /* some are dropped */
		if (way == 0)
			p.srv->hook = hook_close_on_body;
		else
			p.cli->hook = hook_close_on_sent;
		for (int i = 0; i < 3; i++)
			send_pl(p.cli, M_BUF, (uint64_t)i, &g_small);
		PUMP_UNTIL(p.srv, p.cli,
		           p.srv->closeds + p.srv->resets == 1 &&
		                   p.cli->closeds + p.cli->resets == 1);
		assert_int_equal(p.cli->nsent, 3);
		if (way == 0)
			assert_int_equal(p.srv->nrx, 1);
		pair_close(&p);
	}
	payload_free(&g_small);
}

/* Run fn in a child: a crash or a hang (> 5 s) fails the test instead of
 * taking the suite down. */
static void run_in_child(void (*fn)(void), const char *what)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	int status = 0;
	for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; i++)
		usleep(50000);
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("%s: hung", what);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s: child %s %d", what,
		         WIFEXITED(status) ? "exited" : "killed by signal",
		         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

static void past_eof_child(void)
{
	pair p;
	pair_open(&p, "");
	pair_up(&p);
	p.cli->check_written = false;
	payload pl, after;
	payload_make(&pl, 1u << 20, 96, true);
	payload_make(&after, 3000, 95, false);
	ferry_buf_reset(&pl.b);
	assert_int_equal(ferry_buf_append_file(&pl.b, pl.fd, 0, pl.n), 0);
	assert_int_equal(ftruncate(pl.fd, 1000), 0);
	send_pl(p.cli, M_BUF, 1, &pl);
	send_pl(p.cli, M_BUF, 2, &after);
	PUMP_UNTIL(p.srv, p.cli, p.cli->nsent == 2 && p.srv->nrx == 1);
	/* Nothing of it was out: it alone fails, with the read's error, and
	 * the connection stays framed (the next message arrives whole). */
	if (p.cli->nfailed != 1 || p.cli->tx[0].fail_err != -EIO ||
	    p.cli->tx[0].fail_reset) {
		fprintf(stderr, "failed %d err %d reset %d\n", p.cli->nfailed,
		        p.cli->tx[0].fail_err, p.cli->tx[0].fail_reset);
		_exit(3);
	}
	check_rx_buf(p.srv, 0, 2, after.n, after.seed);
	if (p.cli->closeds + p.cli->resets != 0 ||
	    cnt(p.cli->ep, "tx_file_read_errors") != 1)
		_exit(4);
	/* The core's generic count: one message that could not be sent. */
	if (p.cli->ep->cnt.tx_errors != 1)
		_exit(5);
	pair_close(&p);
	payload_free(&pl);
	payload_free(&after);
}

/* A file region that ends past EOF (the file shrank after queueing, before
 * any byte of the message went out): the message fails on its own
 * (on_send_failed -EIO, then on_sent), no zeros or other bytes stand in
 * for the missing ones, and the connection carries on. */
static void test_file_region_past_eof(void **st)
{
	(void)st;
	run_in_child(past_eof_child, "file region past EOF");
}

/* Flush the sender alone until it is held back (a full socket, or no
 * credits on infrc) for the first time after `since` such events. */
static void flush_until_blocked(side *s, uint64_t since)
{
	uint64_t dl = now_us() + DEADLINE_US;
	while (cnt(s->ep, "tx_blocked") + cnt_opt(s->ep, "credits_waits") == since) {
		ferry__ep_stream_flush(s->ep);
		side_ok(s);
		if (now_us() > dl)
			fail_msg("the sender never blocked");
	}
}

/* The file shrinks under a message of which part is already out: the peer
 * is owed bytes that do not exist, so the message fails with the read's
 * error (on_send_failed, reset set) and the connection resets with it; the
 * receiver never completes a body. */
static void test_file_truncated_mid_send(void **st)
{
	(void)st;
	if (is_pull)
		skip_on_infrc("large=pull stages a message whole when it reaches the "
		              "queue head: "
		              "its file is read before anything is sent");
	pair p;
	pair_open(&p, SMALLBUF);
	pair_up(&p);
	p.cli->check_written = false;
	payload pl;
	payload_make(&pl, 16u << 20, 98, true);
	ferry_buf_reset(&pl.b);
	assert_int_equal(ferry_buf_append_file(&pl.b, pl.fd, 0, pl.n), 0);
	send_pl(p.cli, M_BUF, 1, &pl);
	flush_until_blocked(p.cli, 0);
	assert_true(written_bytes(p.cli->ep) > HDR_LEN);
	assert_int_equal(ftruncate(pl.fd, 0), 0);
	PUMP_UNTIL(p.srv, p.cli,
	           p.cli->closeds + p.cli->resets == 1 &&
	                   p.srv->closeds + p.srv->resets == 1);
	assert_int_equal(p.cli->nfailed, 1);
	assert_int_equal(p.cli->tx[0].fail_err, -EIO);
	assert_true(p.cli->tx[0].fail_reset);
	assert_int_equal(p.cli->tx[0].sent, 1);
	assert_int_equal(p.cli->resets, 1);
	assert_int_equal(p.cli->last_err, -EIO);
	assert_int_equal(p.srv->nrx, 0);
	assert_int_equal(cnt(p.cli->ep, "tx_file_read_errors"), 1);
	assert_int_equal(p.cli->ep->cnt.tx_errors, 1);
	pair_close(&p);
	payload_free(&pl);
}

/* detach cannot read what it must copy (the file shrank): it says so, the
 * payload is referenced no more, no on_send_failed runs (its call ended),
 * and the message never goes out as anything else: one not started is
 * dropped (the connection carries on), one partly written resets the
 * connection. */
static void test_detach_unreadable(void **st)
{
	(void)st;
	if (is_pull)
		skip_on_infrc("large=pull stages a message whole when it reaches the "
		              "queue head: "
		              "nothing is left to detach");
	pair p;
	pair_open(&p, SMALLBUF);
	pair_up(&p);
	p.cli->check_written = false;
	payload one, two, three, big;
	payload_make(&one, 4u << 20, 81, true);
	payload_make(&two, 300u << 10, 82, true);
	payload_make(&three, 5000, 83, false);
	payload_make(&big, 4u << 20, 84, true);
	ferry_buf_reset(&two.b);
	assert_int_equal(ferry_buf_append_file(&two.b, two.fd, 0, two.n), 0);
	ferry_buf_reset(&big.b);
	assert_int_equal(ferry_buf_append_file(&big.b, big.fd, 0, big.n), 0);
	send_pl(p.cli, M_BUF, 1, &one);
	send_pl(p.cli, M_BUF, 2, &two);
	flush_until_blocked(p.cli, 0);
	assert_int_equal(p.cli->nsent, 0);
	/* Not started: dropped; detaching it again finds nothing. */
	assert_int_equal(ftruncate(two.fd, 1000), 0);
	assert_int_equal(p.cli->ep->drv->stream->detach(p.cli->conn, &p.cli->tx[1]),
	                 -EIO);
	assert_int_equal(p.cli->ep->drv->stream->detach(p.cli->conn, &p.cli->tx[1]), 0);
	ferry_buf_reset(&two.b);
	send_pl(p.cli, M_BUF, 3, &three);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 2 && p.cli->nsent == 3);
	check_rx_buf(p.srv, 0, 1, one.n, one.seed);
	check_rx_buf(p.srv, 1, 3, three.n, three.seed);
	assert_int_equal(p.cli->nfailed, 0);
	assert_int_equal(p.cli->closeds + p.cli->resets, 0);
	assert_int_equal(cnt(p.cli->ep, "tx_file_read_errors"), 1);
	assert_int_equal(cnt(p.cli->ep, "tx_backlog_bytes"), 0);
	/* Partly written: the connection resets. */
	send_pl(p.cli, M_BUF, 4, &big);
	flush_until_blocked(p.cli, cnt(p.cli->ep, "tx_blocked") +
	                                   cnt_opt(p.cli->ep, "credits_waits"));
	assert_true(p.cli->nsent == 3);
	assert_int_equal(ftruncate(big.fd, 0), 0);
	assert_int_equal(p.cli->ep->drv->stream->detach(p.cli->conn, &p.cli->tx[3]),
	                 -EIO);
	ferry_buf_reset(&big.b);
	PUMP_UNTIL(p.srv, p.cli,
	           p.cli->closeds + p.cli->resets == 1 &&
	                   p.srv->closeds + p.srv->resets == 1);
	assert_int_equal(p.cli->resets, 1);
	assert_int_equal(p.cli->last_err, -EIO);
	assert_int_equal(p.cli->nfailed, 0);
	assert_int_equal(p.cli->nsent, 4);
	assert_int_equal(p.srv->nrx, 2);
	assert_int_equal(cnt(p.cli->ep, "tx_file_read_errors"), 2);
	pair_close(&p);
	payload_free(&one);
	payload_free(&two);
	payload_free(&three);
	payload_free(&big);
}

static void hdr_len_child(void)
{
	upcalls.hdr_len = 100;
	pair p;
	char err[256] = "";
	if (pair_open_rc(&p, "127.0.0.1", "", FERRY_POLL_SPIN, err, sizeof(err)) != 0) {
		fprintf(stderr, "hdr_len 100 refused at open: %s\n", err);
		return; /* refusing is fine */
	}
	pair_up(&p);
	/* 100 header bytes on the wire: ours, then 60 of 0xA5 as "payload". */
	payload pl;
	payload_make(&pl, 1000, 97, false);
	uint8_t extra[60];
	memset(extra, 0xA5, sizeof(extra));
	ferry_buf b;
	ferry_buf_init(&b);
	ferry_buf_append(&b, extra, sizeof(extra));
	ferry_buf_append(&b, pl.mem, pl.n);
	th h = {MAGIC, M_BUF, pl.n, 1, pl.seed, 0};
	ferry_buf_iter it;
	ferry_buf_iter_init(&it, &b, 0, ferry_buf_len(&b));
	txrec *t = &p.cli->tx[p.cli->ntx++];
	*t = (txrec){.s = p.cli, .conn = p.cli->conn};
	assert_int_equal(ferry__ep_send_msg(p.cli->conn, &h, HDR_LEN, &it, t), 0);
	PUMP_UNTIL(p.srv, p.cli, p.srv->nrx == 1);
	check_rx_buf(p.srv, 0, 1, pl.n, pl.seed);
	if (p.srv->nrx != 1)
		_exit(4);
}

/* The transport's hdr_len is the driver's to honour or refuse: a header
 * longer than the driver's own header buffer must not be accepted and
 * then written past that buffer. */
static void test_hdr_len_limit(void **st)
{
	(void)st;
	run_in_child(hdr_len_child, "hdr_len 100");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s tcp|splice\n", argv[0]);
		return 2;
	}
	drv_name = argv[1];
	is_splice = strcmp(drv_name, "splice") == 0;
	is_infrc = strcmp(drv_name, "infrc") == 0;
	if (argc > 2 && argv[2][0] != '\0') {
		snprintf(g_keys, sizeof(g_keys), "%s,", argv[2]);
		is_pull = strstr(argv[2], "large=pull") != NULL;
	}
	const ferry_driver_ops *d = ferry_driver_find(drv_name);
	if (d == NULL || d->kind != FERRY_DRIVER_STREAM) {
		if (strcmp(drv_name, "infrc") == 0)
			tu_skip_or_fail("ibverbs",
			                "the infrc driver is not built (no libibverbs)");
		fprintf(stderr, "no stream driver '%s' built\n", drv_name);
		return 1;
	}
	if (d->probe != NULL) {
		char why[160] = "";
		if (d->probe(why, sizeof(why)) != 0)
			tu_skip_or_fail("ibverbs", why);
	}
	if (is_infrc)
		g_deadline_us = 60000000ull; /* Soft-RoCE under TCG emulation */
	if (getenv("CMOCKA_FILTER") != NULL)
		cmocka_set_test_filter(getenv("CMOCKA_FILTER"));
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_listen_connect_v4),
	        cmocka_unit_test(test_listen_connect_v6),
	        cmocka_unit_test(test_connect_refused),
	        cmocka_unit_test(test_bad_locator),
	        cmocka_unit_test(test_sizes_both_directions),
	        cmocka_unit_test(test_file_regions),
	        cmocka_unit_test(test_partial_writes),
	        cmocka_unit_test(test_loans),
	        cmocka_unit_test(test_fd_sink),
	        cmocka_unit_test(test_fd_sink_hdr_exact),
	        cmocka_unit_test(test_discard),
	        cmocka_unit_test(test_header_error_resets),
	        cmocka_unit_test(test_detach),
	        cmocka_unit_test(test_conn_close),
	        cmocka_unit_test(test_block_mode_fd),
	        cmocka_unit_test(test_many_conns),
	        cmocka_unit_test(test_sink_switch_mid_body),
	        cmocka_unit_test(test_connect_timeout),
	        cmocka_unit_test(test_reentrant_send_connect),
	        cmocka_unit_test(test_close_from_upcall),
	        cmocka_unit_test(test_file_region_past_eof),
	        cmocka_unit_test(test_file_truncated_mid_send),
	        cmocka_unit_test(test_detach_unreadable),
	        cmocka_unit_test(test_hdr_len_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
