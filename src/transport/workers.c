/* The worker pool behind ferry_server_handle_blocking(): a bounded FIFO of
 * (handler, rpc) jobs under one mutex, and threads started at the first
 * job. The owner thread only ever tries the lock and appends: a full queue
 * answers FERRY_EAGAIN at once, so the poll loop never waits for a worker.
 * Workers reply through ferry_rpc_reply(), which from a foreign thread
 * goes through the context's handoff queue. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "base/alloc.h"
#include "core.h"

typedef struct workers_job {
	ferry_handler_cb cb;
	void *arg;
	struct ferry_rpc *rpc;
} workers_job;

struct ferry__workers {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	pthread_t *threads;
	int nthreads; /* configured */
	int started;  /* running */
	workers_job *ring;
	uint32_t cap, head, len;
	bool stop;
	/* Counters: written by workers and the owner, read by the owner. */
	atomic_uint_fast64_t jobs_run, overflow, submitted;
	atomic_uint_fast64_t busy; /* handlers running now */
};

static ferry__workers *workers_get(ferry_server *srv)
{
	if (srv->workers != NULL)
		return srv->workers;
	ferry__workers *w = ferry__calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->nthreads = FERRY_WORKERS_THREADS_DEFAULT;
	w->cap = FERRY_WORKERS_QUEUE_DEFAULT;
	srv->workers = w;
	return w;
}

int ferry_server_workers(ferry_server *srv, const ferry_workers_opts *opts)
{
	if (srv == NULL)
		return -EINVAL;
	if (!ferry__on_owner(srv->ctx))
		return FERRY_EWRONGTHREAD;
	int threads = opts != NULL && opts->threads != 0 ? opts->threads
	                                                 : FERRY_WORKERS_THREADS_DEFAULT;
	int queue = opts != NULL && opts->queue_max != 0 ? opts->queue_max
	                                                 : FERRY_WORKERS_QUEUE_DEFAULT;
	if (threads < 1 || threads > FERRY_WORKERS_THREADS_MAX || queue < 1)
		return -EINVAL;
	ferry__workers *w = workers_get(srv);
	if (w == NULL)
		return -ENOMEM;
	if (w->ring != NULL)
		return -EBUSY;
	w->nthreads = threads;
	w->cap = (uint32_t)queue;
	return 0;
}

int ferry_server_handle_blocking(ferry_server *srv, uint16_t opcode, ferry_handler_cb cb,
                                 void *arg)
{
	if (opcode < FERRY_OPCODE_USER_MIN)
		return -EINVAL;
	if (workers_get(srv) == NULL)
		return -ENOMEM;
	int rc = ferry__server_handle_builtin(srv, opcode, cb, arg);
	if (rc == 0)
		srv->handlers[opcode >> 8][opcode & 0xff].blocking = true;
	return rc;
}

static void *workers_main(void *arg)
{
	ferry__workers *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->stop && w->len == 0)
			pthread_cond_wait(&w->cv, &w->lock);
		if (w->stop)
			break;
		workers_job j = w->ring[w->head];
		w->head = (w->head + 1) % w->cap;
		w->len--;
		atomic_fetch_add(&w->busy, 1);
		pthread_mutex_unlock(&w->lock);
		j.cb(j.arg, j.rpc);
		atomic_fetch_sub(&w->busy, 1);
		atomic_fetch_add(&w->jobs_run, 1);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* First job: the ring and the threads. 0 when at least one thread runs. */
static int workers_start(ferry__workers *w)
{
	w->ring = ferry__calloc(w->cap, sizeof(*w->ring));
	w->threads = ferry__calloc((size_t)w->nthreads, sizeof(*w->threads));
	if (w->ring == NULL || w->threads == NULL)
		return -ENOMEM;
	int rc = 0;
	for (int i = 0; i < w->nthreads; i++) {
		rc = -pthread_create(&w->threads[w->started], NULL, workers_main, w);
		if (rc != 0)
			break;
		w->started++;
	}
	if (w->started == 0)
		return rc;
	if (rc != 0)
		ferry__log(1, "workers: %d of %d threads started (%d)", w->started,
		           w->nthreads, rc);
	return 0;
}

void ferry__workers_submit(ferry_server *srv, const ferry__handler *h,
                           struct ferry_rpc *rpc)
{
	ferry__workers *w = srv->workers;
	if (w->started == 0) {
		int rc = workers_start(w);
		if (rc != 0) {
			ferry_rpc_reply(rpc, rc);
			return;
		}
	}
	pthread_mutex_lock(&w->lock);
	if (w->len == w->cap) {
		pthread_mutex_unlock(&w->lock);
		atomic_fetch_add(&w->overflow, 1);
		ferry_rpc_reply(rpc, FERRY_EAGAIN);
		return;
	}
	w->ring[(w->head + w->len) % w->cap] = (workers_job){h->cb, h->arg, rpc};
	w->len++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->lock);
	atomic_fetch_add(&w->submitted, 1);
}

void ferry__workers_fini(ferry_server *srv)
{
	ferry__workers *w = srv->workers;
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < w->started; i++)
		pthread_join(w->threads[i], NULL);
	/* Requests no worker took: the server is going away. */
	while (w->len > 0) {
		workers_job j = w->ring[w->head];
		w->head = (w->head + 1) % w->cap;
		w->len--;
		ferry_rpc_reply(j.rpc, FERRY_ESHUTDOWN);
	}
	ferry__free(w->threads);
	ferry__free(w->ring);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->lock);
	ferry__free(w);
	srv->workers = NULL;
}

void ferry__workers_stats(ferry_ctx *ctx, ferry_stat_cb cb, void *arg)
{
	uint64_t threads = 0, depth = 0, busy = 0, jobs = 0, overflow = 0, submitted = 0;
	for (ferry_server *srv = ctx->servers; srv != NULL; srv = srv->next) {
		ferry__workers *w = srv->workers;
		if (w == NULL)
			continue;
		pthread_mutex_lock(&w->lock);
		depth += w->len;
		pthread_mutex_unlock(&w->lock);
		threads += (uint64_t)w->started;
		busy += atomic_load(&w->busy);
		jobs += atomic_load(&w->jobs_run);
		overflow += atomic_load(&w->overflow);
		submitted += atomic_load(&w->submitted);
	}
	cb(arg, "rpc.workers.threads", threads);
	cb(arg, "rpc.workers.queue_depth", depth);
	cb(arg, "rpc.workers.busy", busy);
	cb(arg, "rpc.workers.submitted", submitted);
	cb(arg, "rpc.workers.jobs", jobs);
	cb(arg, "rpc.workers.overflow", overflow);
}
