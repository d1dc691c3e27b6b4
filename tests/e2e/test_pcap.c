/* Packet capture end to end (docs/CAPTURE.md): a server thread and a client
 * in one process, each with its own context, capture with pcap=; tshark
 * with the ferry dissector (tools/wireshark/ferry.lua) reads the files back
 * and what it decodes is checked against the run's counters.
 * argv[1]: ferry.lua; argv[2]: which case (fast, lossy, rotation, stream,
 * errors). Without tshark the cases exit 77 (or fail under
 * FERRY_REQUIRE=tshark). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/testutil.h"

#define PCAP_CALLS       200
#define PCAP_BIG_EVERY   10     /* every 10th call: multi-fragment */
#define PCAP_BIG_BYTES   150000 /* 3 fragments at 65467 */
#define PCAP_SMALL_BYTES 100
#define PCAP_QUIET_US    300000 /* let trailing acks land before counting */
#define PCAP_STATS_MAX   512
#define PCAP_L2L4_V4     42 /* Ethernet + IPv4 + UDP */

static const char *lua_path;
static char tmpdir[256];

/* Counters by name, summed (several endpoints report the same names). */
typedef struct stats {
	int n;
	struct {
		char name[96];
		uint64_t v;
	} e[PCAP_STATS_MAX];
} stats;

static void stats_cb(void *arg, const char *name, uint64_t v)
{
	stats *s = arg;
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->e[i].name, name) == 0) {
			s->e[i].v += v;
			return;
		}
	if (s->n < PCAP_STATS_MAX) {
		snprintf(s->e[s->n].name, sizeof(s->e[0].name), "%s", name);
		s->e[s->n++].v = v;
	}
}

static uint64_t cnt(const stats *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->e[i].name, name) == 0)
			return s->e[i].v;
	return 0;
}

static bool stat_has(const stats *s, const char *prefix)
{
	for (int i = 0; i < s->n; i++)
		if (strncmp(s->e[i].name, prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

/* The server: its own context on its own thread, block mode. */
typedef struct srv {
	char listen[512];
	char loc[512];
	pthread_t th;
	atomic_int state; /* 0 starting, 1 listening, -1 failed */
	atomic_bool stop;
	stats st;
} srv;

static void *srv_main(void *arg)
{
	srv *v = arg;
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_ctx *ctx;
	ferry_server *s;
	if (ferry_ctx_create(&o, &ctx) != 0) {
		atomic_store(&v->state, -1);
		return NULL;
	}
	ferry_server_create(ctx, &s);
	tu_server_handlers(s);
	if (ferry_server_listen(s, v->listen) != 0) {
		fprintf(stderr, "listen %s: %s\n", v->listen, ferry_ctx_errmsg(ctx));
		atomic_store(&v->state, -1);
		ferry_ctx_destroy(ctx);
		return NULL;
	}
	ferry_server_locator(s, 0, v->loc, sizeof(v->loc));
	atomic_store(&v->state, 1);
	while (!atomic_load(&v->stop))
		ferry_ctx_poll(ctx, 10000);
	ferry_ctx_stats(ctx, stats_cb, &v->st);
	ferry_ctx_destroy(ctx);
	return NULL;
}

static void srv_start(srv *v, const char *listen)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->listen, sizeof(v->listen), "%s", listen);
	assert_int_equal(pthread_create(&v->th, NULL, srv_main, v), 0);
	while (atomic_load(&v->state) == 0)
		usleep(1000);
	assert_int_equal(atomic_load(&v->state), 1);
}

static void srv_stop(srv *v)
{
	atomic_store(&v->stop, true);
	pthread_join(v->th, NULL);
}

static void path_of(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpdir, name);
}

/* Echo calls: every PCAP_BIG_EVERY-th is multi-fragment. Then a quiet
 * period so the last acks land, then the client's counters. */
static void run_calls(ferry_ctx *ctx, ferry_session *s, int calls, size_t small,
                      size_t big)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	uint8_t *p = malloc(big > small ? big : small);
	assert_non_null(p);
	for (int i = 0; i < calls; i++) {
		size_t n =
		        big > 0 && i % PCAP_BIG_EVERY == PCAP_BIG_EVERY - 1 ? big : small;
		tu_fill(p, n, (uint64_t)i);
		ferry_buf_reset(&req);
		ferry_buf_reset(&resp);
		assert_int_equal(ferry_buf_append(&req, p, n), 0);
		int rc = ferry_call_sync(s, TEST_OP_ECHO, &req, &resp, 10000000);
		if (rc != 0)
			fail_msg("call %d: %s (%s)", i, ferry_err_name(rc),
			         ferry_ctx_errmsg(ctx));
		assert_int_equal(ferry_buf_len(&resp), n);
		assert_int_equal(tu_check(&resp, n, (uint64_t)i), -1);
	}
	free(p);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	uint64_t end = ferry_ctx_now_us(ctx) + PCAP_QUIET_US;
	while (ferry_ctx_now_us(ctx) < end)
		ferry_ctx_poll(ctx, 10000);
}

/* What tshark decodes in a file. */
typedef struct decoded {
	int frames, ferry;
	int req, rsp, ack, open, open_reply, bad_session;
	int c2s, s2c;                              /* by the RESPONSE flag */
	int retx_c2s, retx_s2c;                    /* DATA with RETX */
	int retx_marked;                           /* ferry.retransmission present */
	uint64_t max_len, max_caplen, max_msg_len; /* the largest frame's */
} decoded;

static bool have_tshark(void)
{
	return system("tshark -v >/dev/null 2>&1") == 0;
}

static void decode(const char *file, decoded *d)
{
	memset(d, 0, sizeof(*d));
	char cmd[1024];
	snprintf(
	        cmd, sizeof(cmd),
	        /* heuristics first: an ephemeral port that another dissector
	         * owns (by port number) once hid every ferry field of a run */
	        "tshark -o tcp.try_heuristic_first:TRUE -o udp.try_heuristic_first:TRUE "
	        "-r '%s' -X lua_script:'%s' -T fields -E separator=, "
	        "-e frame.len -e frame.cap_len -e ferry.type -e ferry.flags.response "
	        "-e ferry.flags.retx -e ferry.retransmission -e ferry.msg_len 2>/dev/null",
	        file, lua_path);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char line[512];
	while (fgets(line, sizeof(line), f) != NULL) {
		char *fld[7] = {0};
		char *p = line;
		for (int i = 0; i < 7; i++) {
			fld[i] = p;
			char *sl = strchr(p, ',');
			if (sl == NULL) {
				p[strcspn(p, "\n")] = '\0';
				break;
			}
			*sl = '\0';
			p = sl + 1;
		}
		d->frames++;
		uint64_t len = strtoull(fld[0], NULL, 10);
		if (len > d->max_len) {
			d->max_len = len;
			d->max_caplen = fld[1] != NULL ? strtoull(fld[1], NULL, 10) : 0;
			d->max_msg_len = fld[6] != NULL ? strtoull(fld[6], NULL, 10) : 0;
		}
		if (fld[2] == NULL || fld[2][0] == '\0')
			continue;
		d->ferry++;
		int type = atoi(fld[2]);
		bool resp = fld[3] != NULL && (fld[3][0] == '1' || fld[3][0] == 'T');
		bool retx = fld[4] != NULL && (fld[4][0] == '1' || fld[4][0] == 'T');
		bool marked = fld[5] != NULL && fld[5][0] != '\0' && fld[5][0] != '0' &&
		              fld[5][0] != 'F';
		resp ? d->s2c++ : d->c2s++;
		d->retx_marked += marked;
		switch (type) {
		case 0:
			resp ? d->rsp++ : d->req++;
			if (retx)
				resp ? d->retx_s2c++ : d->retx_c2s++;
			break;
		case 1:
			d->ack++;
			break;
		case 2:
			d->open++;
			break;
		case 3:
			d->open_reply++;
			break;
		case 4:
			d->bad_session++;
			break;
		}
	}
	int rc = pclose(f);
	if (rc != 0)
		fail_msg("tshark -r %s failed (status %d)", file, rc);
}

/* A client locator: the server's bound one plus extra keys. */
static void client_loc(char *out, size_t len, const char *bound, const char *stack,
                       const char *extra)
{
	const char *colon = strchr(bound, ':');
	assert_non_null(colon);
	int n = snprintf(out, len, "%s%s,%s", stack != NULL ? stack : "",
	                 stack != NULL ? colon : bound, extra);
	assert_true(n > 0 && (size_t)n < len);
}

/* (a) fast+udp, server and client capturing into ONE file (a shared
 * writer): every packet appears twice, once where it was sent and once
 * where it was received. */
static void test_fast(void **st)
{
	(void)st;
	char file[512], listen[768], cloc[1024];
	path_of(file, sizeof(file), "fast.pcap");
	snprintf(listen, sizeof(listen), "fast+udp:host=127.0.0.1,port=0,pcap=%s", file);
	srv v;
	srv_start(&v, listen);
	assert_null(strstr(v.loc, "pcap")); /* the bound locator leaves capture out */
	char extra[600];
	snprintf(extra, sizeof(extra), "pcap=%s", file);
	client_loc(cloc, sizeof(cloc), v.loc, NULL, extra);
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(&(ferry_ctx_opts){.poll_mode = FERRY_POLL_BLOCK,
	                                                    .cpu = -1},
	                                  &ctx),
	                 0);
	assert_int_equal(ferry_session_open(ctx, cloc, &s), 0);
	run_calls(ctx, s, PCAP_CALLS, PCAP_SMALL_BYTES, PCAP_BIG_BYTES);
	stats c = {0};
	ferry_ctx_stats(ctx, stats_cb, &c);
	srv_stop(&v);
	ferry_ctx_destroy(ctx);
	const stats *sv = &v.st;
	decoded d;
	decode(file, &d);
	print_message(
	        "frames %d: req %d rsp %d ack %d open %d/%d; client data %llu acks %llu, "
	        "server data %llu acks %llu\n",
	        d.frames, d.req, d.rsp, d.ack, d.open, d.open_reply,
	        (unsigned long long)cnt(&c, "fast.data_sent"),
	        (unsigned long long)cnt(&c, "fast.acks_sent"),
	        (unsigned long long)cnt(sv, "fast.data_sent"),
	        (unsigned long long)cnt(sv, "fast.acks_sent"));
	/* Nothing lost on the way (the counts below rely on it). */
	assert_int_equal(cnt(&c, "udp.tx_packets"), cnt(sv, "udp.rx_packets"));
	assert_int_equal(cnt(sv, "udp.tx_packets"), cnt(&c, "udp.rx_packets"));
	uint64_t recs = cnt(&c, "capture.records") + cnt(sv, "capture.records");
	assert_int_equal(d.frames, recs);
	assert_int_equal(d.frames, cnt(&c, "udp.tx_packets") + cnt(&c, "udp.rx_packets") +
	                                   cnt(sv, "udp.tx_packets") +
	                                   cnt(sv, "udp.rx_packets"));
	assert_int_equal(d.ferry, d.frames);
	assert_int_equal(cnt(&c, "capture.dropped") + cnt(sv, "capture.dropped"), 0);
	assert_int_equal(cnt(&c, "capture.errors") + cnt(sv, "capture.errors"), 0);
	assert_int_equal(d.req, 2 * cnt(&c, "fast.data_sent"));
	assert_int_equal(d.rsp, 2 * cnt(sv, "fast.data_sent"));
	assert_int_equal(d.ack,
	                 2 * (cnt(&c, "fast.acks_sent") + cnt(sv, "fast.acks_sent")));
	assert_int_equal(cnt(&c, "fast.acks_sent"), cnt(sv, "fast.acks_received"));
	assert_int_equal(cnt(sv, "fast.acks_sent"), cnt(&c, "fast.acks_received"));
	assert_int_equal(d.open, 2 * cnt(&c, "fast.open_sent"));
	/* Multi-fragment calls happened: more DATA than calls each way. */
	assert_true(cnt(&c, "fast.data_sent") > PCAP_CALLS);
	assert_true(cnt(sv, "fast.data_sent") > PCAP_CALLS);
	/* No zero-retransmission check: a loaded machine can delay a poll past
	 * the RTO (a spurious retransmission is still counted in data_sent
	 * above, so the counts hold); test_lossy checks how they decode. */
}

/* (b) loss on the client's transmit path (lossy under fast, above udp).
 * The tap sits on the bottom driver, so what lossy dropped is in no file. */
static void test_lossy(void **st)
{
	(void)st;
	char sfile[512], cfile[512], listen[768], cloc[1024], extra[700];
	path_of(sfile, sizeof(sfile), "lossy_server.pcap");
	path_of(cfile, sizeof(cfile), "lossy_client.pcap");
	snprintf(listen, sizeof(listen), "fast+udp:host=127.0.0.1,port=0,pcap=%s", sfile);
	srv v;
	srv_start(&v, listen);
	snprintf(extra, sizeof(extra), "drop=0.1,seed=7,pcap=%s", cfile);
	client_loc(cloc, sizeof(cloc), v.loc, "fast+lossy+udp", extra);
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(&(ferry_ctx_opts){.poll_mode = FERRY_POLL_BLOCK,
	                                                    .cpu = -1},
	                                  &ctx),
	                 0);
	int rc = ferry_session_open(ctx, cloc, &s);
	if (rc != 0)
		fail_msg("open %s: %s", cloc, ferry_ctx_errmsg(ctx));
	run_calls(ctx, s, PCAP_CALLS, PCAP_SMALL_BYTES, PCAP_BIG_BYTES);
	stats c = {0};
	ferry_ctx_stats(ctx, stats_cb, &c);
	srv_stop(&v);
	ferry_ctx_destroy(ctx);
	const stats *sv = &v.st;
	decoded dc, ds;
	decode(cfile, &dc);
	decode(sfile, &ds);
	uint64_t s_retx = cnt(sv, "fast.retx.timeout") + cnt(sv, "fast.retx.fast") +
	                  cnt(sv, "fast.retx.dup_request") + cnt(sv, "fast.retx.probe");
	uint64_t c_retx = cnt(&c, "fast.retx.timeout") + cnt(&c, "fast.retx.fast") +
	                  cnt(&c, "fast.retx.probe");
	print_message(
	        "lossy dropped %llu of %llu; client retx %llu, captured c2s retx %d; "
	        "server retx %llu, captured s2c retx %d (client file %d)\n",
	        (unsigned long long)cnt(&c, "lossy.dropped"),
	        (unsigned long long)cnt(&c, "lossy.seen"), (unsigned long long)c_retx,
	        dc.retx_c2s, (unsigned long long)s_retx, ds.retx_s2c, dc.retx_s2c);
	assert_true(cnt(&c, "lossy.dropped") > 0);
	assert_true(c_retx + s_retx > 0);
	/* The bottom tap: the client file holds what lossy let through. */
	assert_int_equal(dc.c2s, cnt(&c, "lossy.seen") - cnt(&c, "lossy.dropped"));
	assert_int_equal(ds.c2s, dc.c2s);
	/* Every server retransmission is a DATA packet with RETX, marked by
	 * the dissector, and nothing drops on its way back. */
	assert_int_equal(ds.retx_s2c, s_retx);
	assert_int_equal(dc.retx_s2c, s_retx);
	/* Client retransmissions: those lossy let through; fast's probe
	 * counter also counts ACK probes, hence at most. */
	assert_int_equal(ds.retx_c2s, dc.retx_c2s);
	assert_true((uint64_t)dc.retx_c2s <= c_retx);
	assert_int_equal(dc.retx_marked, dc.retx_c2s + dc.retx_s2c);
	assert_int_equal(ds.retx_marked, ds.retx_c2s + ds.retx_s2c);
}

/* (c) rotation: a tiny pcap_max keeps pcap_files files, each readable. */
static void test_rotation(void **st)
{
	(void)st;
	char file[512], listen[768], cloc[1024], extra[700];
	path_of(file, sizeof(file), "rot.pcap");
	snprintf(listen, sizeof(listen), "fast+udp:host=127.0.0.1,port=0");
	srv v;
	srv_start(&v, listen);
	snprintf(extra, sizeof(extra), "pcap=%s,pcap_max=16k,pcap_files=3", file);
	client_loc(cloc, sizeof(cloc), v.loc, NULL, extra);
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(&(ferry_ctx_opts){.poll_mode = FERRY_POLL_BLOCK,
	                                                    .cpu = -1},
	                                  &ctx),
	                 0);
	assert_int_equal(ferry_session_open(ctx, cloc, &s), 0);
	run_calls(ctx, s, 100, 1000, 0);
	stats c = {0};
	ferry_ctx_stats(ctx, stats_cb, &c);
	ferry_ctx_destroy(ctx);
	srv_stop(&v);
	assert_true(cnt(&c, "capture.rotations") >= 2);
	int total = 0;
	for (int i = 0; i < 4; i++) {
		char f[600];
		if (i == 0)
			snprintf(f, sizeof(f), "%s", file);
		else
			snprintf(f, sizeof(f), "%s.%d", file, i);
		struct stat sb;
		if (i == 3) {
			assert_int_not_equal(stat(f, &sb), 0); /* only 3 kept */
			break;
		}
		assert_int_equal(stat(f, &sb), 0);
		assert_true((uint64_t)sb.st_size <= 16 * 1024);
		decoded d;
		decode(f, &d);
		assert_true(d.frames > 0);
		assert_int_equal(d.ferry, d.frames);
		total += d.frames;
	}
	assert_true((uint64_t)total < cnt(&c, "capture.records"));
}

/* (d) a stream: one record per whole message, original length exact,
 * captured length capped by pcap_snap. */
static void test_stream(void **st)
{
	(void)st;
	char file[512], listen[768];
	path_of(file, sizeof(file), "stream.pcap");
	snprintf(listen, sizeof(listen),
	         "tcp:host=127.0.0.1,port=0,pcap=%s,pcap_snap=4096", file);
	srv v;
	srv_start(&v, listen);
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(&(ferry_ctx_opts){.poll_mode = FERRY_POLL_BLOCK,
	                                                    .cpu = -1},
	                                  &ctx),
	                 0);
	assert_int_equal(ferry_session_open(ctx, v.loc, &s), 0);
	run_calls(ctx, s, 10, PCAP_SMALL_BYTES, 1u << 20); /* call 9: 1 MiB */
	ferry_ctx_destroy(ctx);
	srv_stop(&v);
	decoded d;
	decode(file, &d);
	assert_int_equal(d.frames, 20);
	assert_int_equal(d.req, 10);
	assert_int_equal(d.rsp, 10);
	assert_int_equal(cnt(&v.st, "capture.records"), 20);
	assert_int_equal(cnt(&v.st, "capture.truncated"), 2);
	assert_int_equal(d.max_len, PCAP_L2L4_V4 + 40 + (1u << 20));
	assert_int_equal(d.max_caplen, PCAP_L2L4_V4 + 4096);
	assert_int_equal(d.max_msg_len, 1u << 20);
}

/* Bad paths fail the open naming pcap; a file that cannot be written is
 * counted and reported, and calls go on. Capture off reports nothing. */
static void test_errors(void **st)
{
	(void)st;
	ferry_ctx *ctx;
	ferry_session *s;
	assert_int_equal(ferry_ctx_create(&(ferry_ctx_opts){.poll_mode = FERRY_POLL_BLOCK,
	                                                    .cpu = -1},
	                                  &ctx),
	                 0);
	assert_int_equal(
	        ferry_session_open(
	                ctx, "fast+udp:host=127.0.0.1,port=9,pcap=/nonexistent/x.pcap",
	                &s),
	        FERRY_EBADLOC);
	assert_non_null(strstr(ferry_ctx_errmsg(ctx), "pcap"));
	assert_int_equal(
	        ferry_session_open(ctx, "fast+udp:host=127.0.0.1,port=9,pcap_max=1m", &s),
	        FERRY_EBADLOC);
	assert_non_null(strstr(ferry_ctx_errmsg(ctx), "pcap_max"));
	assert_int_equal(
	        ferry_session_open(ctx, "tcp:host=127.0.0.1,port=9,pcap=/x,pcap_snap=1",
	                           &s),
	        FERRY_EBADLOC);
	assert_non_null(strstr(ferry_ctx_errmsg(ctx), "pcap_snap"));

	srv v;
	srv_start(&v, "fast+udp:host=127.0.0.1,port=0");
	char cloc[1024];
	client_loc(cloc, sizeof(cloc), v.loc, NULL, "pcap=/dev/full");
	assert_int_equal(ferry_session_open(ctx, cloc, &s), 0);
	run_calls(ctx, s, 20, PCAP_SMALL_BYTES, 0);
	stats c = {0};
	ferry_ctx_stats(ctx, stats_cb, &c);
	assert_true(cnt(&c, "capture.errors") >= 1);
	assert_true(cnt(&c, "capture.dropped") >= 1);
	ferry_ctx_destroy(ctx);
	srv_stop(&v);
	assert_false(stat_has(&v.st, "capture.")); /* the server did not capture */
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s ferry.lua fast|lossy|rotation|stream|errors\n",
		        argv[0]);
		return 2;
	}
	lua_path = argv[1];
	const char *which = argv[2];
	if (!FERRY_HAVE_PCAP) /* ferry_config.h: meson found no libpcap */
		tu_skip_or_fail("pcap",
		                "ferry was built without libpcap (pcap= is refused)");
	if (strcmp(which, "errors") != 0 && !have_tshark())
		tu_skip_or_fail("tshark", "tshark is not installed");
	if (access(lua_path, R_OK) != 0)
		tu_skip_or_fail("tshark", "the ferry dissector is missing");
	const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/ferry-pcap-XXXXXX", base);
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	static const struct CMUnitTest all[] = {
	        cmocka_unit_test(test_fast),     cmocka_unit_test(test_lossy),
	        cmocka_unit_test(test_rotation), cmocka_unit_test(test_stream),
	        cmocka_unit_test(test_errors),
	};
	static const char *const names[] = {"fast", "lossy", "rotation", "stream",
	                                    "errors"};
	int rc = 2;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(names[i], which) == 0)
			rc = _cmocka_run_group_tests(names[i], &all[i], 1, NULL, NULL);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (rc == 0 && system(cmd) != 0)
		rc = 1;
	return rc;
}
