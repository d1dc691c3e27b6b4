/* Server groups: N contexts, one thread each, each with its own server and
 * endpoints on the same locators (SO_REUSEPORT for udp and tcp). Context 0
 * listens first, on the locators given; the others listen on the locators
 * it bound, so port=0 gives every context the same real port.
 *
 * Stopping without racing a context's destruction: the stopper sets the
 * flag, wakes every context through its handoff queue, and only then lets
 * the threads leave (they wait for `woken`), so no context is destroyed
 * while a wake-up is being pushed to it. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "core.h"

/* A poll pass in block mode sleeps at most this long (the stop flag is
 * also read after every pass; the wake-up makes it immediate). */
#define GROUP_POLL_TIMEOUT_US 100000

typedef struct group_member {
	struct ferry_server_group *g;
	int index;
	pthread_t thread;
	bool joinable;
	ferry_ctx *ctx; /* set while the context exists */
	ferry__handoff wake;
	int rc; /* start result */
	bool ready;
} group_member;

struct ferry_server_group {
	ferry_server_group_opts o;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	atomic_bool stop;
	bool woken;
	int nbound;
	char bound[FERRY_SERVER_LISTEN_MAX][FERRY_LOC_MAX_BYTES];
	group_member *m;
};

static void group_wake(ferry_ctx *ctx, ferry__handoff *h)
{
	(void)ctx;
	(void)h; /* the poll pass returns; the loop reads the stop flag */
}

static int group_listen(group_member *m, ferry_server *srv)
{
	struct ferry_server_group *g = m->g;
	for (int i = 0; i < g->o.nlocators; i++) {
		const char *loc = m->index == 0 ? g->o.locators[i] : g->bound[i];
		int rc = ferry_server_listen(srv, loc);
		if (rc != 0) {
			ferry__log(0, "server group: context %d: listen %s: %s", m->index,
			           loc, ferry_ctx_errmsg(m->ctx));
			return rc;
		}
		if (m->index == 0) {
			rc = ferry_server_locator(srv, i, g->bound[i],
			                          sizeof(g->bound[i]));
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

static void *group_main(void *arg)
{
	group_member *m = arg;
	struct ferry_server_group *g = m->g;
	ferry_ctx_opts co = {.poll_mode = g->o.poll_mode,
	                     .cpu = g->o.cpus != NULL ? g->o.cpus[m->index] : -1};
	ferry_server *srv = NULL;
	ferry_ctx *ctx = NULL;
	int rc = ferry_ctx_create(&co, &ctx);
	if (rc == 0)
		rc = ferry_server_create(ctx, &srv);
	m->ctx = ctx;
	if (rc == 0 && g->o.setup != NULL)
		rc = g->o.setup(g->o.arg, m->index, ctx, srv);
	if (rc == 0)
		rc = group_listen(m, srv);
	pthread_mutex_lock(&g->lock);
	m->rc = rc;
	m->ready = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->lock);
	int64_t timeout = g->o.poll_mode == FERRY_POLL_BLOCK ? GROUP_POLL_TIMEOUT_US : 0;
	while (rc == 0 && !atomic_load(&g->stop))
		if (ferry_ctx_poll(ctx, timeout) < 0)
			break;
	pthread_mutex_lock(&g->lock);
	while (!g->woken)
		pthread_cond_wait(&g->cv, &g->lock);
	pthread_mutex_unlock(&g->lock);
	if (ctx != NULL && srv != NULL && g->o.fini != NULL)
		g->o.fini(g->o.arg, m->index, ctx, srv);
	ferry_ctx_destroy(ctx); /* destroys srv too */
	return NULL;
}

static int group_spawn(struct ferry_server_group *g, int i)
{
	group_member *m = &g->m[i];
	m->g = g;
	m->index = i;
	m->wake.fn = group_wake;
	int rc = -pthread_create(&m->thread, NULL, group_main, m);
	if (rc != 0)
		return rc;
	m->joinable = true;
	return 0;
}

/* Wait until members [from, to) are ready; the first failure, or 0. */
static int group_wait_ready(struct ferry_server_group *g, int from, int to)
{
	int rc = 0;
	pthread_mutex_lock(&g->lock);
	for (int i = from; i < to; i++) {
		while (g->m[i].joinable && !g->m[i].ready)
			pthread_cond_wait(&g->cv, &g->lock);
		if (rc == 0 && g->m[i].rc != 0)
			rc = g->m[i].rc;
	}
	pthread_mutex_unlock(&g->lock);
	return rc;
}

int ferry_server_group_start(const ferry_server_group_opts *opts,
                             ferry_server_group **out)
{
	if (opts == NULL || out == NULL || opts->nctx < 1 ||
	    opts->nctx > FERRY_GROUP_CTX_MAX || opts->nlocators < 1 ||
	    opts->nlocators > FERRY_SERVER_LISTEN_MAX || opts->locators == NULL)
		return -EINVAL;
	struct ferry_server_group *g = ferry__calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	g->m = ferry__calloc((size_t)opts->nctx, sizeof(*g->m));
	if (g->m == NULL) {
		ferry__free(g);
		return -ENOMEM;
	}
	g->o = *opts;
	g->nbound = opts->nlocators;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cv, NULL);
	atomic_init(&g->stop, false);
	/* Context 0 first: the others need the locators it bound. */
	int rc = group_spawn(g, 0);
	if (rc == 0)
		rc = group_wait_ready(g, 0, 1);
	for (int i = 1; rc == 0 && i < opts->nctx; i++)
		rc = group_spawn(g, i);
	int rc2 = group_wait_ready(g, 0, opts->nctx);
	if (rc == 0)
		rc = rc2;
	if (rc != 0) {
		ferry_server_group_stop(g);
		return rc;
	}
	*out = g;
	return 0;
}

int ferry_server_group_locator(ferry_server_group *g, int i, char *out, size_t len)
{
	if (g == NULL || i < 0 || i >= g->nbound)
		return -ERANGE;
	int n = snprintf(out, len, "%s", g->bound[i]);
	return n < 0 || (size_t)n >= len ? -ERANGE : n;
}

void ferry_server_group_stop(ferry_server_group *g)
{
	if (g == NULL)
		return;
	atomic_store(&g->stop, true);
	/* Every running context is alive until `woken`: wake the ones that
	 * may sleep in epoll. */
	for (int i = 0; i < g->o.nctx; i++) {
		group_member *m = &g->m[i];
		if (m->joinable && m->ready && m->rc == 0)
			ferry__handoff_push(m->ctx, &m->wake);
	}
	pthread_mutex_lock(&g->lock);
	g->woken = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->lock);
	for (int i = 0; i < g->o.nctx; i++)
		if (g->m[i].joinable)
			pthread_join(g->m[i].thread, NULL);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->lock);
	ferry__free(g->m);
	ferry__free(g);
}
