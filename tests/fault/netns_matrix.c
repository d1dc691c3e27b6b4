/* The client half of the loss matrix (netns_matrix.sh runs it inside a
 * network namespace): echo calls (TEST_OP_ONCE) of 1 byte to MAX over one
 * fast session, up to INFLIGHT at once through the asynchronous API, every
 * response byte-exact; then the server says how often each call id ran, and
 * every id must have run at most once, a call that succeeded exactly once.
 *
 * argv: LOCATOR then key=value options (sizes take k, m, g):
 *   calls=N         calls in all (default 200)
 *   max=BYTES       largest request message (default 4m)
 *   inflight=N      calls in flight at once, 1-64; the session asks for as
 *                   many channels (default 1)
 *   large=K         every K-th call is large: 64 KiB to max, log-uniform
 *                   (default 50; 0 = none besides the edges)
 *   deadline_ms=MS  each call's deadline (default 60000)
 *   timeouts=0|1    1: a call may fail with FERRY_ETIMEDOUT (counted and
 *                   printed); any other failure fails the run (default 0)
 *   payload=BYTES   the udp payload the client must have probed (1472 at
 *                   MTU 1500; default 0 = don't check)
 *   label=NAME      printed in the summary line
 *
 * A request is the call id (u32, what the server counts) followed by the
 * payload: tu_fill_at(id) bytes. Sizes below are payload bytes, so "1 B" is
 * a 5-byte message; the edges are chosen on the message length (one
 * fragment is udp payload - 40 bytes: 1432 at MTU 1500), and the largest
 * message is exactly max. The first calls are the edges, smallest first;
 * the rest are seeded from the call index. A call the server refuses with
 * FERRY_EAGAIN (a limit: it did not run it) goes again 10 ms later, as a
 * client would (counted: refused=). Without timeouts=1 the first failure
 * stops new calls (the ones in flight finish) and fails the run.
 * Exit 0 only if all of it holds. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/testutil.h"

#define MX_INFLIGHT_MAX     64          /* fast's channel cap */
#define MX_HDR_BYTES        4           /* the u32 call id in front of the payload */
#define MX_FRAG_BYTES       1432        /* fragment payload at MTU 1500 (1472 - 40) */
#define MX_LARGE_MIN_BYTES  65536       /* large calls: from here to max */
#define MX_FAIL_PRINT_MAX   10          /* failures printed one by one */
#define MX_QUERY_TIMEOUT_US 30000000ull /* report queries after the run */
#define MX_QUERY_TRIES      5
#define MX_RUNS_BATCH       16384 /* ids per TEST_OP_ONCE_RUNS query */
#define MX_POLL_US          100000
#define MX_RETRY_US         10000 /* a refused call goes again after this */

enum mx_outcome { MX_NOT_SENT, MX_OK, MX_TIMEDOUT, MX_FAILED };

struct mx_slot {
	ferry_buf req, resp;
	uint32_t id;
	size_t len; /* message bytes: header + payload */
	uint64_t start_us;
	bool busy;
	bool retry;        /* refused with FERRY_EAGAIN: start id again ... */
	uint64_t retry_us; /* ... from then on */
};

static struct {
	ferry_ctx *ctx;
	uint32_t calls, inflight, large;
	size_t max;
	uint64_t deadline_us;
	bool timeouts_ok;
	uint8_t *outcome; /* enum mx_outcome per id */
	uint32_t ok, timedout, failed, done;
	uint32_t refused; /* FERRY_EAGAIN answers (a server limit): retried */
	uint64_t bytes;
	bool stop;
	uint8_t *want; /* scratch for the expected pattern */
	size_t want_cap;
} mx;

static uint64_t mx_mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ull;
	x ^= x >> 29;
	return x;
}

static int mx_cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* The edge message lengths that fit under max, ascending, deduplicated. */
static size_t mx_edges(size_t *out)
{
	const size_t f = MX_FRAG_BYTES;
	size_t cand[] = {MX_HDR_BYTES + 1,
	                 MX_HDR_BYTES + 2,
	                 MX_HDR_BYTES + 3,
	                 MX_HDR_BYTES + 4,
	                 f - 1,
	                 f,
	                 f + 1,
	                 1472,
	                 2 * f,
	                 2 * f + 1,
	                 65535,
	                 65536,
	                 65537,
	                 64 * f,
	                 64 * f + 1,
	                 1u << 20,
	                 mx.max - 1,
	                 mx.max};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
		if (cand[i] > MX_HDR_BYTES && cand[i] <= mx.max)
			out[n++] = cand[i];
	qsort(out, n, sizeof(out[0]), mx_cmp_size);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || out[k - 1] != out[i])
			out[k++] = out[i];
	return k;
}

/* Message length of call id. */
static size_t mx_len(uint32_t id)
{
	static size_t edges[32];
	static size_t nedges = (size_t)-1;
	if (nedges == (size_t)-1)
		nedges = mx_edges(edges);
	if (id < nedges)
		return edges[id];
	uint64_t h = mx_mix(id + 0x51ed27ull);
	size_t small_max = mx.max < MX_LARGE_MIN_BYTES ? mx.max : MX_LARGE_MIN_BYTES;
	size_t lo = MX_HDR_BYTES + 1, hi;
	if (mx.large != 0 && id % mx.large == mx.large - 1 &&
	    mx.max > MX_LARGE_MIN_BYTES) {
		/* Log-uniform in [64 KiB, max]: as many 100 KiB calls as 10 MiB ones. */
		double lo2 = log2(MX_LARGE_MIN_BYTES), hi2 = log2((double)mx.max);
		double u = (double)(h >> 11) / (double)(1ull << 53);
		size_t n = (size_t)exp2(lo2 + (hi2 - lo2) * u);
		return n < MX_LARGE_MIN_BYTES ? MX_LARGE_MIN_BYTES
		       : n > mx.max           ? mx.max
		                              : n;
	}
	/* Seven in eight one or two fragments, the rest up to 64 KiB. */
	hi = (h & 7) != 0 ? 2 * MX_FRAG_BYTES : small_max;
	if (hi > small_max)
		hi = small_max;
	return lo + (size_t)((h >> 3) % (hi - lo + 1));
}

static uint64_t mx_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void mx_fail(struct mx_slot *sl, const char *what)
{
	uint32_t n = mx.failed + mx.timedout;
	if (n <= MX_FAIL_PRINT_MAX)
		fprintf(stderr,
		        "netns_matrix: call %u (%zu B payload, %zu B message): %s, "
		        "after %.3f s\n",
		        sl->id, sl->len - MX_HDR_BYTES, sl->len, what,
		        (double)(mx_now_us() - sl->start_us) / 1e6);
	else if (n == MX_FAIL_PRINT_MAX + 1)
		fprintf(stderr, "netns_matrix: (further failures only counted)\n");
}

static void mx_fail_rc(struct mx_slot *sl, const char *what, int rc)
{
	char msg[200];
	snprintf(msg, sizeof(msg), "%s %s (%s)", what, ferry_err_name(rc),
	         ferry_strerror(rc));
	mx_fail(sl, msg);
}

/* First offset where resp differs from the request of sl, or -1. */
static long mx_check(struct mx_slot *sl, ferry_buf *resp)
{
	ferry_buf_iter it;
	ferry_buf_seg seg;
	uint8_t hdr[MX_HDR_BYTES];
	memcpy(hdr, &sl->id, MX_HDR_BYTES);
	ferry_buf_iter_init(&it, resp, 0, sl->len);
	while (ferry_buf_iter_next(&it, &seg)) {
		if (seg.kind == FERRY_CHUNK_FILE)
			return (long)seg.offset; /* an echo never answers with a file */
		for (size_t i = 0; i < seg.len && seg.offset + i < MX_HDR_BYTES; i++)
			if (seg.data[i] != hdr[seg.offset + i])
				return (long)(seg.offset + i);
		size_t skip = seg.offset < MX_HDR_BYTES ? MX_HDR_BYTES - seg.offset : 0;
		if (skip >= seg.len)
			continue;
		size_t n = seg.len - skip;
		if (n > mx.want_cap) {
			free(mx.want);
			mx.want = malloc(n);
			mx.want_cap = mx.want != NULL ? n : 0;
			if (mx.want == NULL)
				return (long)seg.offset;
		}
		tu_fill_at(mx.want, seg.offset + skip - MX_HDR_BYTES, n, sl->id);
		if (memcmp(seg.data + skip, mx.want, n) != 0)
			for (size_t i = 0; i < n; i++)
				if (seg.data[skip + i] != mx.want[i])
					return (long)(seg.offset + skip + i);
	}
	return -1;
}

static void mx_done(void *arg, int status, ferry_buf *resp)
{
	struct mx_slot *sl = arg;
	size_t got = ferry_buf_len(resp);
	long off = -1;
	if (status == 0 && (got != sl->len || (off = mx_check(sl, resp)) >= 0)) {
		char msg[160];
		snprintf(msg, sizeof(msg),
		         "response differs: %zu bytes back, first bad byte %ld", got,
		         got != sl->len ? -1 : off);
		mx.outcome[sl->id] = MX_FAILED;
		mx.failed++;
		mx_fail(sl, msg);
		mx.stop = true;
	} else if (status == 0) {
		mx.outcome[sl->id] = MX_OK;
		mx.ok++;
		mx.bytes += sl->len;
	} else if (status == FERRY_EAGAIN) {
		/* A server limit (partial requests per port, fragments per
		 * session) refused it before running it: what a client does is
		 * try again a little later. Large calls that overlap, as 64 in
		 * flight up to 64 MiB do, pass the 256 MiB default. */
		mx.refused++;
		sl->retry = true;
		sl->retry_us = mx_now_us() + MX_RETRY_US;
	} else if (status == FERRY_ETIMEDOUT && mx.timeouts_ok) {
		mx.outcome[sl->id] = MX_TIMEDOUT;
		mx.timedout++;
		mx_fail_rc(sl, "timed out (allowed here):", status);
	} else {
		mx.outcome[sl->id] = MX_FAILED;
		mx.failed++;
		mx_fail_rc(sl, "failed:", status);
		mx.stop = true;
	}
	mx.done++;
	ferry_buf_reset(resp);
	ferry_buf_reset(&sl->req);
	sl->busy = false;
}

static bool mx_retries_left(const struct mx_slot *slots)
{
	for (uint32_t i = 0; i < mx.inflight && !mx.stop; i++)
		if (slots[i].retry)
			return true;
	return false;
}

static int mx_start(ferry_session *s, struct mx_slot *sl, uint32_t id)
{
	sl->id = id;
	sl->len = mx_len(id);
	uint8_t *p = ferry_buf_alloc(&sl->req, sl->len);
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, &id, MX_HDR_BYTES);
	tu_fill_at(p + MX_HDR_BYTES, 0, sl->len - MX_HDR_BYTES, id);
	sl->start_us = mx_now_us();
	sl->busy = true;
	int rc = ferry_call(s, TEST_OP_ONCE, &sl->req, &sl->resp, mx.deadline_us, mx_done,
	                    sl);
	if (rc != 0) {
		sl->busy = false;
		ferry_buf_reset(&sl->req);
		mx.outcome[id] = MX_FAILED;
		mx.failed++;
		mx_fail_rc(sl, "not started: ferry_call", rc);
		mx.stop = true;
	}
	return rc;
}

/* One call after the run, retried: the report queries go over the same
 * lossy path. */
static int mx_query(ferry_session *s, uint16_t op, const void *arg, size_t arg_len,
                    void *out, size_t out_len)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	int rc = FERRY_ETIMEDOUT;
	for (int t = 0; t < MX_QUERY_TRIES && rc != 0; t++) {
		ferry_buf_reset(&req);
		ferry_buf_reset(&resp);
		if (arg_len > 0)
			ferry_buf_append(&req, arg, arg_len);
		rc = ferry_call_sync(s, op, &req, &resp, MX_QUERY_TIMEOUT_US);
		if (rc == 0 &&
		    ferry_buf_copy_out(&resp, 0, out_len, out) != (ssize_t)out_len)
			rc = FERRY_EPROTO;
		if (rc != 0)
			fprintf(stderr, "netns_matrix: query %u: %s\n", op,
			        ferry_err_name(rc));
	}
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	return rc;
}

static uint64_t mx_metric(const char *name)
{
	uint64_t v = 0;
	return ferry_metrics_get(mx.ctx, name, &v) == 0 ? v : 0;
}

static bool mx_parse_size(const char *v, size_t *out)
{
	char *end;
	unsigned long long n = strtoull(v, &end, 10);
	if (end == v)
		return false;
	switch (*end) {
	case 'k':
		n <<= 10, end++;
		break;
	case 'm':
		n <<= 20, end++;
		break;
	case 'g':
		n <<= 30, end++;
		break;
	}
	*out = (size_t)n;
	return *end == '\0';
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr,
		        "usage: netns_matrix LOCATOR [calls=N max=B inflight=N large=K "
		        "deadline_ms=MS timeouts=0|1 payload=B label=S]\n");
		return 2;
	}
	size_t calls = 200, inflight = 1, large = 50, deadline_ms = 60000, timeouts = 0;
	size_t payload = 0;
	const char *label = "";
	mx.max = 4u << 20;
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const char *k = argv[i], *v = eq != NULL ? eq + 1 : "";
		size_t kl = eq != NULL ? (size_t)(eq - k) : strlen(k);
		struct {
			const char *name;
			size_t *dst;
		} keys[] = {{"calls", &calls},
		            {"max", &mx.max},
		            {"inflight", &inflight},
		            {"large", &large},
		            {"deadline_ms", &deadline_ms},
		            {"timeouts", &timeouts},
		            {"payload", &payload}};
		bool known = false;
		for (size_t j = 0; j < sizeof(keys) / sizeof(keys[0]); j++)
			if (strlen(keys[j].name) == kl &&
			    strncmp(k, keys[j].name, kl) == 0) {
				known = mx_parse_size(v, keys[j].dst);
				break;
			}
		if (kl == 5 && strncmp(k, "label", 5) == 0)
			label = v, known = true;
		if (!known) {
			fprintf(stderr, "netns_matrix: bad argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (calls == 0 || calls > TEST_ONCE_IDS || inflight == 0 ||
	    inflight > MX_INFLIGHT_MAX || mx.max <= MX_HDR_BYTES ||
	    mx.max > FERRY_MSG_MAX_BYTES_DEFAULT || timeouts > 1) {
		fprintf(stderr,
		        "netns_matrix: calls 1-%u, inflight 1-%d, max 5 B - 64 MiB\n",
		        TEST_ONCE_IDS, MX_INFLIGHT_MAX);
		return 2;
	}
	mx.calls = (uint32_t)calls;
	mx.inflight = (uint32_t)inflight;
	mx.large = (uint32_t)large;
	mx.deadline_us = (uint64_t)deadline_ms * 1000u;
	mx.timeouts_ok = timeouts == 1;
	mx.outcome = calloc(calls, 1);

	char loc[600];
	snprintf(loc, sizeof(loc), "%s,channels=%zu", argv[1], inflight);
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_session *s;
	if (mx.outcome == NULL || ferry_ctx_create(&o, &mx.ctx) != 0)
		return 1;
	if (ferry_session_open(mx.ctx, loc, &s) != 0) {
		fprintf(stderr, "netns_matrix: %s: %s\n", loc, ferry_ctx_errmsg(mx.ctx));
		return 1;
	}
	struct mx_slot slots[MX_INFLIGHT_MAX];
	for (uint32_t i = 0; i < mx.inflight; i++) {
		ferry_buf_init(&slots[i].req);
		ferry_buf_init(&slots[i].resp);
		slots[i].busy = false;
		slots[i].retry = false;
	}

	/* The run: refill free slots after every poll pass (not from the
	 * completion callback, which runs inside the library). */
	uint64_t t0 = mx_now_us();
	uint32_t next = 0, started = 0;
	while (mx.done < started || (next < mx.calls && !mx.stop) ||
	       mx_retries_left(slots)) {
		uint64_t now = mx_now_us();
		for (uint32_t i = 0; i < mx.inflight && !mx.stop; i++) {
			struct mx_slot *sl = &slots[i];
			if (sl->busy)
				continue;
			if (sl->retry) {
				if (now < sl->retry_us)
					continue;
				sl->retry = false;
				if (mx_start(s, sl, sl->id) == 0)
					started++;
			} else if (next < mx.calls && mx_start(s, sl, next++) == 0) {
				started++;
			}
		}
		ferry_ctx_poll(mx.ctx, MX_RETRY_US);
	}
	double secs = (double)(mx_now_us() - t0) / 1e6;
	bool bad = mx.failed != 0 || mx.ok + mx.timedout != mx.calls;
	if (mx.stop)
		fprintf(stderr,
		        "netns_matrix: stopped after the first failure: %u of %u done\n",
		        mx.done, mx.calls);

	/* Executions, from the server: every id at most once, every success
	 * exactly once, nothing not sent, and no execution beyond these ids. */
	uint8_t report[16] = {0};
	uint32_t once = 0, more = 0, runs_once = 0, timedout_ran = 0;
	uint64_t total = 0, runs_sum = 0;
	int qrc = mx_query(s, TEST_OP_ONCE_REPORT, NULL, 0, report, sizeof(report));
	memcpy(&once, report, 4);
	memcpy(&more, report + 4, 4);
	memcpy(&total, report + 8, 8);
	uint8_t *runs = calloc(mx.calls, 1);
	for (uint32_t first = 0; qrc == 0 && runs != NULL && first < mx.calls;
	     first += MX_RUNS_BATCH) {
		uint32_t range[2] = {first, mx.calls - first < MX_RUNS_BATCH
		                                    ? mx.calls - first
		                                    : MX_RUNS_BATCH};
		qrc = mx_query(s, TEST_OP_ONCE_RUNS, range, sizeof(range), runs + first,
		               range[1]);
	}
	uint32_t wrong = 0;
	for (uint32_t id = 0; qrc == 0 && runs != NULL && id < mx.calls; id++) {
		runs_sum += runs[id];
		runs_once += runs[id] == 1;
		timedout_ran += mx.outcome[id] == MX_TIMEDOUT && runs[id] == 1;
		bool fine = mx.outcome[id] == MX_OK         ? runs[id] == 1
		            : mx.outcome[id] == MX_NOT_SENT ? runs[id] == 0
		                                            : runs[id] <= 1;
		static const char *const what[] = {"never sent", "succeeded", "timed out",
		                                   "failed"};
		if (!fine && ++wrong <= MX_FAIL_PRINT_MAX)
			fprintf(stderr,
			        "netns_matrix: call %u (%zu B, %s) ran %u times\n", id,
			        mx_len(id), what[mx.outcome[id]], runs[id]);
	}
	if (qrc != 0 || runs == NULL) {
		fprintf(stderr, "netns_matrix: could not read the server's executions\n");
		bad = true;
	} else if (wrong != 0 || more != 0 || once != runs_once || total != runs_sum) {
		fprintf(stderr,
		        "netns_matrix: executions wrong: %u ids off; server: %u once, "
		        "%u more, %llu in all; per id: %u once, %llu in all\n",
		        wrong, once, more, (unsigned long long)total, runs_once,
		        (unsigned long long)runs_sum);
		bad = true;
	}
	uint64_t max_payload = mx_metric("udp.max_payload");
	if (payload != 0 && max_payload != payload) {
		fprintf(stderr, "netns_matrix: udp payload %llu, want %zu (path MTU?)\n",
		        (unsigned long long)max_payload, payload);
		bad = true;
	}

	printf("netns_matrix %s: %s calls=%u inflight=%u max=%zu ok=%u timedout=%u "
	       "(ran: %u) failed=%u refused=%u %.1f s %.1f MB/s both ways | server ran once=%u "
	       "more=%u executions=%llu | retx timeout=%llu fast=%llu probe=%llu "
	       "data_sent=%llu peerdead=%llu | udp payload=%llu rx_pool_empty=%llu "
	       "rx_truncated=%llu tx_eagain=%llu tx_errors=%llu\n",
	       label, bad ? "FAIL" : "ok", mx.calls, mx.inflight, mx.max, mx.ok,
	       mx.timedout, timedout_ran, mx.failed, mx.refused, secs,
	       (double)mx.bytes * 2 / 1e6 / (secs > 0 ? secs : 1), once, more,
	       (unsigned long long)total,
	       (unsigned long long)mx_metric("fast.retx.timeout"),
	       (unsigned long long)mx_metric("fast.retx.fast"),
	       (unsigned long long)mx_metric("fast.retx.probe"),
	       (unsigned long long)mx_metric("fast.data_sent"),
	       (unsigned long long)mx_metric("fast.calls.peerdead"),
	       (unsigned long long)max_payload,
	       (unsigned long long)mx_metric("udp.rx_pool_empty"),
	       (unsigned long long)mx_metric("udp.rx_truncated"),
	       (unsigned long long)mx_metric("udp.tx_eagain"),
	       (unsigned long long)mx_metric("udp.tx_send_errors"));
	fflush(stdout);
	for (uint32_t i = 0; i < mx.inflight; i++) {
		ferry_buf_fini(&slots[i].req);
		ferry_buf_fini(&slots[i].resp);
	}
	free(runs);
	free(mx.want);
	free(mx.outcome);
	ferry_ctx_destroy(mx.ctx);
	return bad ? 1 : 0;
}
