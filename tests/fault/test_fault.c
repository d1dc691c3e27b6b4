/* Suite fault: fast over the lossy wrapper. A server thread and this
 * client, both in block mode and both behind lossy (drop, 5% duplication,
 * 5% reordering): every call completes byte-exact and runs exactly once on
 * the server; lossy's counters match its rates within binomial bounds;
 * fast had to retransmit.
 * argv: driver (loopback|udp) drop calls bigcalls */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../common/testutil.h"

#define OP_ONCE      120
#define INFLIGHT     8
#define BIG_INFLIGHT 2

static const char *driver;
static double drop;
static int ncalls, nbig;
static const double dup_rate = 0.05, reorder_rate = 0.05;

static uint8_t *executed; /* per call id, counted by the server */

static void once_handler(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_buf *req = ferry_rpc_request(rpc);
	uint32_t id = 0;
	size_t n = ferry_buf_len(req);
	if (ferry_buf_copy_out(req, 0, 4, &id) == 4 && id < (uint32_t)(ncalls + nbig))
		executed[id]++;
	void *dst = ferry_buf_alloc(ferry_rpc_response(rpc), n);
	if (n > 0 && (dst == NULL || ferry_buf_copy_out(req, 0, n, dst) != (ssize_t)n)) {
		ferry_rpc_reply(rpc, -EIO);
		return;
	}
	ferry_rpc_reply(rpc, 0);
}

struct srv {
	char listen[256], bound[512];
	volatile int ready, stop;
	ferry_ctx *ctx;
	uint64_t lossy[6];
};

static const char *const lossy_names[] = {"lossy.seen", "lossy.dropped",
                                          "lossy.duplicated", "lossy.reordered"};

static void *srv_thread(void *arg)
{
	struct srv *s = arg;
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_server *srv;
	if (ferry_ctx_create(&o, &s->ctx) != 0 || ferry_server_create(s->ctx, &srv) != 0)
		return NULL;
	ferry_server_handle(srv, OP_ONCE, once_handler, NULL);
	if (ferry_server_listen(srv, s->listen) != 0) {
		fprintf(stderr, "listen: %s\n", ferry_ctx_errmsg(s->ctx));
		__atomic_store_n(&s->ready, -1, __ATOMIC_RELEASE);
		return NULL;
	}
	ferry_server_locator(srv, 0, s->bound, sizeof(s->bound));
	__atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
		ferry_ctx_poll(s->ctx, 10000);
	for (int i = 0; i < 4; i++)
		ferry_metrics_get(s->ctx, lossy_names[i], &s->lossy[i]);
	ferry_ctx_destroy(s->ctx);
	return NULL;
}

struct slot {
	int id;
	size_t size;
	int status, done;
	ferry_buf req, resp;
};

static int completed, failed, bad;

static bool same_bytes(ferry_buf *a, ferry_buf *b)
{
	size_t n = ferry_buf_len(a);
	if (n != ferry_buf_len(b))
		return false;
	const void *pa = ferry_buf_range(a, 0, n), *pb = ferry_buf_range(b, 0, n);
	return n == 0 || (pa != NULL && pb != NULL && memcmp(pa, pb, n) == 0);
}

static void slot_done(void *arg, int status, ferry_buf *resp)
{
	struct slot *sl = arg;
	sl->status = status;
	sl->done = 1;
	completed++;
	if (status != 0) {
		failed++;
		fprintf(stderr, "call %d (%zu B): %s\n", sl->id, sl->size,
		        ferry_err_name(status));
	} else if (!same_bytes(resp, &sl->req)) {
		bad++;
	}
}

static size_t call_size(int i, uint64_t *rng)
{
	*rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
	uint64_t r = *rng >> 33;
	if (i % 20 == 0)
		return 4 + r % 65536;
	if (i % 4 == 0)
		return 4 + r % 4096;
	return 4 + r % 256;
}

static void issue(ferry_session *s, struct slot *sl, int id, size_t size)
{
	sl->id = id;
	sl->size = size;
	sl->done = 0;
	ferry_buf_reset(&sl->req);
	ferry_buf_reset(&sl->resp);
	uint8_t *p = ferry_buf_alloc(&sl->req, size);
	tu_fill(p, size, (uint64_t)id * 7919);
	uint32_t id32 = (uint32_t)id;
	memcpy(p, &id32, 4);
	/* the response echoes the request: checked against it (same_bytes) */
	assert_int_equal(
	        ferry_call(s, OP_ONCE, &sl->req, &sl->resp, 60000000, slot_done, sl), 0);
}

static void run_calls(ferry_ctx *ctx, ferry_session *s, int first, int count,
                      int inflight, size_t (*size_of)(int, uint64_t *), uint64_t *rng)
{
	struct slot *slots = calloc((size_t)inflight, sizeof(*slots));
	for (int i = 0; i < inflight; i++) {
		ferry_buf_init(&slots[i].req);
		ferry_buf_init(&slots[i].resp);
		slots[i].done = 1;
	}
	int next = first, end = first + count, target = completed + count;
	while (completed < target) {
		for (int i = 0; i < inflight && next < end; i++)
			if (slots[i].done) {
				size_t size = size_of(next, rng);
				issue(s, &slots[i], next++, size);
			}
		ferry_ctx_poll(ctx, 10000);
	}
	for (int i = 0; i < inflight; i++) {
		ferry_buf_fini(&slots[i].req);
		ferry_buf_fini(&slots[i].resp);
	}
	free(slots);
}

static size_t big_size(int i, uint64_t *rng)
{
	(void)i;
	*rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
	return (1u << 20) + (size_t)((*rng >> 33) % (3u << 20));
}

/* Within 5 standard deviations (plus one) of n*p. */
static void assert_binomial(const char *what, uint64_t got, double n, double p)
{
	double mean = n * p, sd = sqrt(n * p * (1 - p));
	if (fabs((double)got - mean) > 5 * sd + 1)
		fail_msg("%s: %llu, expected %.0f +- %.0f", what, (unsigned long long)got,
		         mean, 5 * sd);
}

static void check_lossy(const char *side, const uint64_t c[4])
{
	double seen = (double)c[0];
	char what[64];
	snprintf(what, sizeof(what), "%s dropped", side);
	assert_binomial(what, c[1], seen, drop);
	/* reorder is drawn for packets not dropped; dup for those also not held */
	snprintf(what, sizeof(what), "%s reordered", side);
	assert_binomial(what, c[3], seen * (1 - drop), reorder_rate);
	snprintf(what, sizeof(what), "%s duplicated", side);
	assert_binomial(what, c[2], seen * (1 - drop) * (1 - reorder_rate), dup_rate);
}

static void test_lossy_exactly_once(void **st)
{
	(void)st;
	static struct srv s;
	memset(&s, 0, sizeof(s));
	char rates[160];
	snprintf(rates, sizeof(rates),
	         "drop=%g,dup=%g,reorder=%g,delay_us=500,liveness=30000000", drop,
	         dup_rate, reorder_rate);
	if (strcmp(driver, "udp") == 0)
		snprintf(s.listen, sizeof(s.listen),
		         "fast+lossy+udp:host=127.0.0.1,port=0,seed=11,%s", rates);
	else
		snprintf(s.listen, sizeof(s.listen), "fast+lossy+loopback:seed=11,%s",
		         rates);
	executed = calloc((size_t)(ncalls + nbig), 1);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, srv_thread, &s), 0);
	while (__atomic_load_n(&s.ready, __ATOMIC_ACQUIRE) == 0)
		;
	assert_int_equal(s.ready, 1);
	/* The client uses the server's bound locator with its own seed. */
	char loc[600];
	snprintf(loc, sizeof(loc), "%s", s.bound);
	char *seed = strstr(loc, "seed=11");
	assert_non_null(seed);
	seed[5] = '2';
	ferry_ctx_opts o = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	ferry_ctx *ctx;
	ferry_session *sess;
	assert_int_equal(ferry_ctx_create(&o, &ctx), 0);
	int rc = ferry_session_open(ctx, loc, &sess);
	if (rc != 0)
		fail_msg("session_open %s: %s", loc, ferry_ctx_errmsg(ctx));
	uint64_t rng = 42;
	run_calls(ctx, sess, 0, ncalls, INFLIGHT, call_size, &rng);
	run_calls(ctx, sess, ncalls, nbig, BIG_INFLIGHT, big_size, &rng);
	assert_int_equal(failed, 0);
	assert_int_equal(bad, 0);
	assert_int_equal(completed, ncalls + nbig);
	uint64_t c[4], retx = 0, v;
	for (int i = 0; i < 4; i++)
		ferry_metrics_get(ctx, lossy_names[i], &c[i]);
	const char *rx[] = {"fast.retx.timeout", "fast.retx.fast", "fast.retx.probe",
	                    "fast.retx.dup_request"};
	for (int i = 0; i < 4; i++)
		if (ferry_metrics_get(ctx, rx[i], &v) == 0)
			retx += v;
	if (getenv("FERRY_TEST_DUMP") != NULL)
		ferry_metrics_dump(ctx, "fault-client", stderr);
	ferry_session_close(sess);
	ferry_ctx_destroy(ctx);
	__atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	/* exactly once: every call ran one time on the server */
	for (int i = 0; i < ncalls + nbig; i++)
		if (executed[i] != 1)
			fail_msg("call %d executed %d times", i, executed[i]);
	free(executed);
	check_lossy("client", c);
	check_lossy("server", s.lossy);
	if (drop > 0)
		assert_true(retx > 0);
	printf("# %s drop %.2f: %d calls + %d big, client lossy seen %llu dropped %llu, "
	       "server seen %llu dropped %llu, client retransmissions %llu\n",
	       driver, drop, ncalls, nbig, (unsigned long long)c[0],
	       (unsigned long long)c[1], (unsigned long long)s.lossy[0],
	       (unsigned long long)s.lossy[1], (unsigned long long)retx);
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	driver = argv[1];
	drop = atof(argv[2]);
	ncalls = atoi(argv[3]);
	nbig = atoi(argv[4]);
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_lossy_exactly_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
