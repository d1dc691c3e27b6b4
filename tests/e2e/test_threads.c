/* Cross-thread traffic against one context, for ThreadSanitizer (suite
 * tsan) as much as for the ordinary suites: four worker threads
 *   - reply to deferred rpcs (the handler only queues them),
 *   - start calls of their own (ferry_call from a foreign thread),
 *   - check and release the responses of completed calls, whose bytes are
 *     loans of the context's endpoints,
 * while the owner thread polls (spin or block mode) and starts calls too.
 * argv[1] is the listen locator (one process: loopback, or tcp over
 * 127.0.0.1). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../common/testutil.h"
#include "transport/core.h"

#define OP_DEFER         300 /* request: u64 seed, u32 size; reply from a worker */
#define WORKERS          4
#define CALLS_PER_WORKER 150
#define CALLS_OWNER      150
#define CALLS_TOTAL      (WORKERS * CALLS_PER_WORKER + CALLS_OWNER)
#define RESP_BYTES_MAX   5000        /* several fragments at mtu=1024 */
#define RUN_US           60000000ull /* give up after a minute */
#define CALL_TIMEOUT_US  30000000u

static const char *listen_loc;

/* A multi-producer, multi-consumer queue of tagged items. */
enum item_kind { ITEM_NONE, ITEM_STOP, ITEM_RPC, ITEM_RELEASE };
typedef struct item {
	int kind;
	void *p;
} item;
#define QCAP 4096
typedef struct queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	item it[QCAP];
	unsigned head, n;
} queue;

static void q_push(queue *q, int kind, void *p)
{
	pthread_mutex_lock(&q->lock);
	if (q->n == QCAP)
		abort(); /* sized for every job at once: cannot happen */
	q->it[(q->head + q->n++) % QCAP] = (item){kind, p};
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

/* The next item; without wait, ITEM_NONE when there is none. */
static item q_pop(queue *q, bool wait)
{
	pthread_mutex_lock(&q->lock);
	while (q->n == 0 && wait)
		pthread_cond_wait(&q->cond, &q->lock);
	if (q->n == 0) {
		pthread_mutex_unlock(&q->lock);
		return (item){ITEM_NONE, NULL};
	}
	item it = q->it[q->head];
	q->head = (q->head + 1) % QCAP;
	q->n--;
	pthread_mutex_unlock(&q->lock);
	return it;
}

typedef struct job {
	ferry_buf req, resp;
	uint64_t seed;
	uint32_t size;
	int status;
} job;

typedef struct world {
	ferry_ctx *ctx;
	ferry_server *srv;
	ferry_session *s;
	queue q;
	job jobs[CALLS_TOTAL];
	atomic_int released; /* jobs checked and released by a worker */
	atomic_int bad;      /* wrong status or bytes */
	atomic_int replied;  /* deferred replies sent from workers */
	atomic_int next_job; /* workers' calls: next job index */
} world;

static world the_world; /* large: static, zeroed per run */

static void defer_handler(void *arg, ferry_rpc *rpc)
{
	world *w = arg;
	q_push(&w->q, ITEM_RPC, rpc);
}

static void call_done(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	job *j = arg;
	j->status = status;
	q_push(&the_world.q, ITEM_RELEASE, j);
}

/* Runs on any worker: the rpc's request is read and its response built
 * on this thread, then the reply travels the handoff queue. */
static void worker_reply(world *w, ferry_rpc *rpc)
{
	uint8_t hdr[12];
	ferry_buf *req = ferry_rpc_request(rpc);
	if (ferry_buf_copy_out(req, 0, sizeof(hdr), hdr) != (ssize_t)sizeof(hdr)) {
		atomic_fetch_add(&w->bad, 1);
		ferry_rpc_reply(rpc, -22);
		return;
	}
	uint64_t seed;
	uint32_t size;
	memcpy(&seed, hdr, 8);
	memcpy(&size, hdr + 8, 4);
	uint8_t *p = ferry_buf_alloc(ferry_rpc_response(rpc), size);
	if (p == NULL) {
		atomic_fetch_add(&w->bad, 1);
		ferry_rpc_reply(rpc, -12);
		return;
	}
	tu_fill(p, size, seed);
	atomic_fetch_add(&w->replied, 1);
	ferry_rpc_reply(rpc, 0);
}

/* Runs on any worker: the response's loans go home from here. */
static void worker_release(world *w, job *j)
{
	if (j->status != 0 || tu_check(&j->resp, j->size, j->seed) != -1) {
		fprintf(stderr, "job seed %llu: status %d, %zu bytes\n",
		        (unsigned long long)j->seed, j->status, ferry_buf_len(&j->resp));
		atomic_fetch_add(&w->bad, 1);
	}
	ferry_buf_fini(&j->resp);
	ferry_buf_fini(&j->req);
	atomic_fetch_add(&w->released, 1);
}

static void job_start(world *w, job *j, int index)
{
	ferry_buf_init(&j->req);
	ferry_buf_init(&j->resp);
	j->seed = 1000u + (uint64_t)index;
	j->size = (uint32_t)(index * 37 % RESP_BYTES_MAX);
	uint8_t *p = ferry_buf_alloc(&j->req, 12);
	memcpy(p, &j->seed, 8);
	memcpy(p + 8, &j->size, 4);
	/* Owner or foreign thread alike; the foreign one goes through the
	 * handoff queue and reports failures through the callback. */
	int rc = ferry_call(w->s, OP_DEFER, &j->req, &j->resp, CALL_TIMEOUT_US, call_done,
	                    j);
	if (rc != 0) {
		j->status = rc;
		q_push(&w->q, ITEM_RELEASE, j);
	}
}

typedef struct worker {
	world *w;
	pthread_t t;
	int id;
} worker;

static void *worker_main(void *arg)
{
	worker *k = arg;
	world *w = k->w;
	int started = 0;
	for (;;) {
		/* Interleave own calls with queue work; wait for work only
		 * once every own call is started. */
		if (started < CALLS_PER_WORKER) {
			int idx = atomic_fetch_add(&w->next_job, 1);
			job_start(w, &w->jobs[idx], idx);
			started++;
		}
		item it = q_pop(&w->q, started == CALLS_PER_WORKER);
		if (it.kind == ITEM_STOP)
			break;
		if (it.kind == ITEM_NONE)
			continue;
		if (it.kind == ITEM_RPC)
			worker_reply(w, it.p);
		else
			worker_release(w, it.p);
	}
	return NULL;
}

static void run(const char *extra, int mode)
{
	world *w = &the_world;
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->q.lock, NULL);
	pthread_cond_init(&w->q.cond, NULL);
	ferry_ctx_opts o = {.poll_mode = mode, .cpu = -1};
	assert_int_equal(ferry_ctx_create(&o, &w->ctx), 0);
	assert_int_equal(ferry_server_create(w->ctx, &w->srv), 0);
	ferry_server_handle(w->srv, OP_DEFER, defer_handler, w);
	char loc[512];
	snprintf(loc, sizeof(loc), "%s%s", listen_loc, extra);
	assert_int_equal(ferry_server_listen(w->srv, loc), 0);
	assert_true(ferry_server_locator(w->srv, 0, loc, sizeof(loc)) > 0);
	assert_int_equal(ferry_session_open(w->ctx, loc, &w->s), 0);
	uint64_t handoffs0 = 0, remote0 = 0;
	ferry_metrics_get(w->ctx, "rpc.handoffs", &handoffs0);
	ferry_metrics_get(w->ctx, "rpc.loans_released_remote", &remote0);

	atomic_store(&w->next_job, CALLS_OWNER);
	worker k[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		k[i] = (worker){.w = w, .id = i};
		assert_int_equal(pthread_create(&k[i].t, NULL, worker_main, &k[i]), 0);
	}
	uint64_t t0 = ferry__clock_us();
	int owner_started = 0;
	while (atomic_load(&w->released) < CALLS_TOTAL &&
	       ferry__clock_us() - t0 < RUN_US) {
		if (owner_started < CALLS_OWNER) {
			job_start(w, &w->jobs[owner_started], owner_started);
			owner_started++;
		}
		ferry_ctx_poll(w->ctx, mode == FERRY_POLL_BLOCK ? 1000 : 0);
	}
	for (int i = 0; i < WORKERS; i++)
		q_push(&w->q, ITEM_STOP, NULL);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(k[i].t, NULL);
	/* Releases queued after the last pass come home now. */
	ferry_ctx_poll(w->ctx, 0);
	assert_int_equal(atomic_load(&w->released), CALLS_TOTAL);
	assert_int_equal(atomic_load(&w->bad), 0);
	assert_int_equal(atomic_load(&w->replied), CALLS_TOTAL);
	uint64_t handoffs = 0, remote = 0;
	ferry_metrics_get(w->ctx, "rpc.handoffs", &handoffs);
	ferry_metrics_get(w->ctx, "rpc.loans_released_remote", &remote);
	/* Every deferred reply and every worker call came through the queue. */
	assert_true(handoffs - handoffs0 >= CALLS_TOTAL + WORKERS * CALLS_PER_WORKER);
	assert_true(remote > remote0);
	/* Every response loan came home. (Server ports may still hold loans:
	 * fast keeps its last reply per channel, with the request, until the
	 * client's next call acknowledges it.) */
	ferry__port *cp = w->s->port;
	for (int i = 0; i < cp->neps; i++)
		assert_int_equal(cp->eps[i]->loans_out, 0);
	ferry_ctx_destroy(w->ctx);
	pthread_mutex_destroy(&w->q.lock);
	pthread_cond_destroy(&w->q.cond);
}

static void test_spin(void **st)
{
	(void)st;
	run("", FERRY_POLL_SPIN);
}

static void test_block(void **st)
{
	(void)st;
	run("", FERRY_POLL_BLOCK);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s LISTEN_LOCATOR\n", argv[0]);
		return 2;
	}
	listen_loc = argv[1];
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_spin),
	        cmocka_unit_test(test_block),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
