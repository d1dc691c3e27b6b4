/* ferryfs-tracker: the cluster's directory. Storage servers beat to it
 * (group, id, locators, free space per store path, load); clients ask it
 * where to upload (placement per config) and who holds an ID (the source
 * server while it is online). It learns everything from beats, keeps its
 * view in a state file across restarts, and marks servers offline when
 * their beats stop. Everything runs on the event loop: each call is a few
 * table lookups; only a membership change writes the state file.
 * Config and behaviour: docs/ferryfs/TRACKER.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry/buf.h"
#include "ferry/err.h"
#include "ferry/rpc.h"
#include "common/daemon.h"
#include "proto/wire.h"

#define TR_LISTEN_MAX  8
#define TR_MSG_MAX     8192 /* a beat: 8 locators and 16 store paths fit */
#define TR_STATE_MAGIC "ferryfs-tracker-state 1"

enum { TR_RR = 0, TR_MOST_FREE = 1, TR_LEAST_LOAD = 2 };

typedef struct tr_entry {
	fs_server sv;
	uint64_t last_beat_us; /* 0: not heard from since this tracker started */
} tr_entry;

static struct {
	char *listen[TR_LISTEN_MAX];
	int nlisten;
	char state_file[PATH_MAX];
	uint32_t beat_timeout_ms;
	int placement;
	uint64_t reserved_bytes;
	bool foreground;
} cfg = {.beat_timeout_ms = 3000};

static tr_entry servers[FS_LIST_SERVERS];
static int nservers;
static unsigned rr;
static volatile sig_atomic_t stop;
static ferry_ctx *ctx;
static struct {
	unsigned long beats, stores, fetches, lists, bad_messages, no_server, read_only;
} cnt;

#define tr_log(...) fs_log("ferryfs-tracker", __VA_ARGS__)

/* Configuration --------------------------------------------------------------*/

static int tr_key(const char *key, const char *val)
{
	char *end;
	if (strcmp(key, "listen") == 0) {
		if (cfg.nlisten == TR_LISTEN_MAX) {
			fprintf(stderr, "ferryfs-tracker: at most %d listen keys\n",
			        TR_LISTEN_MAX);
			return 0;
		}
		cfg.listen[cfg.nlisten++] = strdup(val);
	} else if (strcmp(key, "state_file") == 0) {
		snprintf(cfg.state_file, sizeof(cfg.state_file), "%s", val);
	} else if (strcmp(key, "beat_timeout_ms") == 0) {
		unsigned long v = strtoul(val, &end, 10);
		if (*val == '\0' || *end != '\0' || v < 100 || v > 3600000) {
			fprintf(stderr,
			        "ferryfs-tracker: beat_timeout_ms '%s': 100 to 3600000\n",
			        val);
			return 0;
		}
		cfg.beat_timeout_ms = (uint32_t)v;
	} else if (strcmp(key, "placement") == 0) {
		if (strcmp(val, "round_robin") == 0)
			cfg.placement = TR_RR;
		else if (strcmp(val, "most_free") == 0)
			cfg.placement = TR_MOST_FREE;
		else if (strcmp(val, "least_load") == 0)
			cfg.placement = TR_LEAST_LOAD;
		else {
			fprintf(stderr,
			        "ferryfs-tracker: placement '%s': round_robin, most_free or "
			        "least_load\n",
			        val);
			return 0;
		}
	} else if (strcmp(key, "reserved_mb") == 0) {
		unsigned long long v = strtoull(val, &end, 10);
		if (*val == '\0' || *end != '\0' || v > (1ull << 40)) {
			fprintf(stderr, "ferryfs-tracker: reserved_mb '%s': 0 to 2^40\n",
			        val);
			return 0;
		}
		cfg.reserved_bytes = v << 20;
	} else {
		fprintf(stderr, "ferryfs-tracker: unknown key '%s'\n", key);
		return 0;
	}
	return 1;
}

static void tr_usage(FILE *f)
{
	fprintf(f,
	        "usage: ferryfs-tracker [--config FILE] [--set KEY=VALUE ...] [--foreground]\n"
	        "Keys ([tracker] section of FILE, or --set, which wins):\n"
	        "  listen=LOCATOR       a ferry locator to serve on (repeatable)\n"
	        "  state_file=PATH      the cluster view kept across restarts\n"
	        "  beat_timeout_ms=N    a server is offline after N ms without a beat "
	        "(default 3000)\n"
	        "  placement=round_robin|most_free|least_load  upload placement\n"
	        "  reserved_mb=N        a server with less free space is read-only\n"
	        "--foreground: log to stderr (otherwise detach, log to STATE_FILE.log).\n");
}

static fs_daemon me_daemon = {.name = "ferryfs-tracker",
                              .section = "tracker",
                              .key = tr_key,
                              .usage = tr_usage};

static int tr_args(int argc, char **argv)
{
	if (fs_daemon_args(&me_daemon, argc, argv) != 0)
		return -1;
	cfg.foreground = me_daemon.foreground;
	if (cfg.nlisten == 0 || cfg.state_file[0] == '\0') {
		fprintf(stderr, "ferryfs-tracker: need listen= and state_file=\n");
		return -1;
	}
	return 0;
}

/* The cluster view ----------------------------------------------------------------*/

static uint64_t tr_free(const fs_server *sv, uint8_t *best_store)
{
	uint64_t sum = 0, best = 0;
	for (int i = 0; i < sv->nstores; i++) {
		sum += sv->free_bytes[i];
		if (best_store != NULL && (i == 0 || sv->free_bytes[i] > best)) {
			best = sv->free_bytes[i];
			*best_store = (uint8_t)i;
		}
	}
	return sum;
}

/* A server's state now: offline without a recent beat, read-only when no
 * store path has more than the reserve free. */
static uint8_t tr_state(const tr_entry *e, uint64_t now_us)
{
	if (e->last_beat_us == 0 ||
	    now_us - e->last_beat_us > cfg.beat_timeout_ms * 1000ull)
		return FS_SERVER_OFFLINE;
	for (int i = 0; i < e->sv.nstores; i++)
		if (e->sv.free_bytes[i] > cfg.reserved_bytes)
			return FS_SERVER_ACTIVE;
	return FS_SERVER_READONLY;
}

/* The state file: one line per server, "group id loc1|loc2|...". Written to
 * a temporary file, fsynced and renamed, so a crash keeps the old or the
 * new view, never half of one. */
static void tr_save(void)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", cfg.state_file);
	FILE *f = fopen(tmp, "w");
	if (f == NULL) {
		tr_log("state file %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f, "%s\n", TR_STATE_MAGIC);
	for (int i = 0; i < nservers; i++) {
		const fs_server *sv = &servers[i].sv;
		fprintf(f, "%s %u", sv->group, sv->id);
		for (int k = 0; k < sv->nlocs; k++)
			fprintf(f, "%c%s", k == 0 ? ' ' : '|', sv->locs[k]);
		fputc('\n', f);
	}
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	if (fclose(f) != 0 || !ok || rename(tmp, cfg.state_file) != 0) {
		tr_log("state file %s: %s", cfg.state_file, strerror(errno));
		unlink(tmp);
	}
}

static void tr_load(void)
{
	FILE *f = fopen(cfg.state_file, "r");
	if (f == NULL) {
		if (errno != ENOENT)
			tr_log("state file %s: %s", cfg.state_file, strerror(errno));
		return;
	}
	char line[FS_LOCS_MAX * (FS_LOC_MAX + 1) + 64];
	if (fgets(line, sizeof(line), f) == NULL ||
	    strncmp(line, TR_STATE_MAGIC, 23) != 0) {
		tr_log("state file %s: not a tracker state file, ignored",
		       cfg.state_file);
		fclose(f);
		return;
	}
	while (nservers < FS_LIST_SERVERS && fgets(line, sizeof(line), f) != NULL) {
		fs_server sv = {0};
		char group[64], locs[sizeof(line)];
		unsigned id;
		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "%63s %u %s", group, &id, locs) != 3 ||
		    !fs_group_valid(group, strlen(group)) || id == 0) {
			tr_log("state file %s: bad line '%s' skipped", cfg.state_file,
			       line);
			continue;
		}
		snprintf(sv.group, sizeof(sv.group), "%s", group);
		sv.id = id;
		for (char *save, *l = strtok_r(locs, "|", &save);
		     l != NULL && sv.nlocs < FS_LOCS_MAX; l = strtok_r(NULL, "|", &save))
			snprintf(sv.locs[sv.nlocs++], FS_LOC_MAX + 1, "%s", l);
		servers[nservers++].sv = sv;
	}
	fclose(f);
	tr_log("cluster view from %s: %d servers (offline until they beat)",
	       cfg.state_file, nservers);
}

static tr_entry *tr_find(const char *group, uint32_t id)
{
	for (int i = 0; i < nservers; i++)
		if (servers[i].sv.id == id && strcmp(servers[i].sv.group, group) == 0)
			return &servers[i];
	return NULL;
}

/* Handlers -----------------------------------------------------------------------*/

/* The whole request, contiguous (tracker messages are small). */
static size_t tr_msg(ferry_rpc *rpc, uint8_t *out)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	size_t n = ferry_buf_len(req) < TR_MSG_MAX ? ferry_buf_len(req) : TR_MSG_MAX;
	ssize_t got = ferry_buf_copy_out(req, 0, n, out);
	return got < 0 ? 0 : (size_t)got;
}

static int tr_reply_server(ferry_rpc *rpc, const fs_server *sv)
{
	uint8_t out[TR_MSG_MAX];
	int n = fs_enc_server(out, sizeof(out), sv);
	if (n < 0)
		return -EIO;
	return ferry_buf_append(ferry_rpc_response(rpc), out, (size_t)n);
}

static void tr_beat(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	static uint8_t m[TR_MSG_MAX];
	fs_server sv;
	size_t have = tr_msg(rpc, m);
	int rc = fs_dec_beat(m, have, ferry_buf_len(ferry_rpc_request(rpc)), &sv);
	if (rc != 0) {
		cnt.bad_messages++;
		ferry_rpc_reply(rpc, rc);
		return;
	}
	cnt.beats++;
	tr_entry *e = tr_find(sv.group, sv.id);
	bool changed = e == NULL;
	if (e == NULL) {
		if (nservers == FS_LIST_SERVERS) {
			ferry_rpc_reply(rpc, -ENOSPC);
			return;
		}
		e = &servers[nservers++];
		tr_log("new server: group %s id %u at %s", sv.group, sv.id, sv.locs[0]);
	} else {
		changed = e->sv.nlocs != sv.nlocs;
		for (int i = 0; !changed && i < sv.nlocs; i++)
			changed = strcmp(e->sv.locs[i], sv.locs[i]) != 0;
		if (e->last_beat_us == 0 ||
		    tr_state(e, ferry_ctx_now_us(ctx)) == FS_SERVER_OFFLINE)
			tr_log("server back: group %s id %u", sv.group, sv.id);
	}
	sv.state = FS_SERVER_ACTIVE;
	e->sv = sv;
	e->last_beat_us = ferry_ctx_now_us(ctx);
	if (changed)
		tr_save();
	ferry_rpc_reply(rpc, 0);
}

static void tr_query_store(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	uint8_t m[TR_MSG_MAX];
	char group[FS_GROUP_MAX + 1];
	int rc = fs_dec_query_store(m, tr_msg(rpc, m),
	                            ferry_buf_len(ferry_rpc_request(rpc)), group);
	if (rc != 0) {
		cnt.bad_messages++;
		ferry_rpc_reply(rpc, rc);
		return;
	}
	cnt.stores++;
	uint64_t now = ferry_ctx_now_us(ctx);
	int cand[FS_LIST_SERVERS], n = 0;
	bool readonly = false;
	for (int i = 0; i < nservers; i++) {
		if (group[0] != '\0' && strcmp(group, servers[i].sv.group) != 0)
			continue;
		uint8_t st = tr_state(&servers[i], now);
		readonly |= st == FS_SERVER_READONLY;
		if (st == FS_SERVER_ACTIVE)
			cand[n++] = i;
	}
	if (n == 0) {
		/* distinct errors: full (read-only) versus nobody there */
		if (readonly)
			cnt.read_only++;
		else
			cnt.no_server++;
		ferry_rpc_reply(rpc, readonly ? -EROFS : -EHOSTDOWN);
		return;
	}
	int pick = cand[rr++ % (unsigned)n];
	for (int k = 0; k < n && cfg.placement != TR_RR; k++) {
		const fs_server *a = &servers[cand[k]].sv, *b = &servers[pick].sv;
		if (cfg.placement == TR_MOST_FREE ? tr_free(a, NULL) > tr_free(b, NULL)
		                                  : a->load < b->load)
			pick = cand[k];
	}
	fs_server sv = servers[pick].sv;
	tr_free(&sv, &sv.store); /* the store path with the most room */
	ferry_rpc_reply(rpc, tr_reply_server(rpc, &sv));
}

static void tr_query_fetch(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	uint8_t m[TR_MSG_MAX];
	fs_id_req r;
	int fe = 0;
	int rc = fs_dec_id_req(m, tr_msg(rpc, m), ferry_buf_len(ferry_rpc_request(rpc)),
	                       &r, &fe);
	if (rc != 0) {
		cnt.bad_messages++;
		ferry_rpc_reply(rpc, rc);
		return;
	}
	cnt.fetches++;
	/* Until groups replicate (issue 17), only the source holds an object. */
	tr_entry *e = tr_find(r.fid.group, r.fid.source);
	if (e == NULL) {
		ferry_rpc_reply(rpc, -ENXIO);
		return;
	}
	if (tr_state(e, ferry_ctx_now_us(ctx)) == FS_SERVER_OFFLINE) {
		cnt.no_server++;
		ferry_rpc_reply(rpc, -EHOSTDOWN);
		return;
	}
	fs_server sv = e->sv;
	sv.store = r.fid.store;
	ferry_rpc_reply(rpc, tr_reply_server(rpc, &sv));
}

static void tr_list(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	cnt.lists++;
	ferry_buf *resp = ferry_rpc_response(rpc);
	uint8_t *n = ferry_buf_alloc(resp, 2);
	if (n == NULL) {
		ferry_rpc_reply(rpc, -ENOMEM);
		return;
	}
	fs_put16(n, (uint16_t)nservers);
	uint64_t now = ferry_ctx_now_us(ctx);
	for (int i = 0; i < nservers; i++) {
		fs_server sv = servers[i].sv;
		sv.state = tr_state(&servers[i], now);
		uint64_t age = servers[i].last_beat_us == 0
		                       ? UINT32_MAX
		                       : (now - servers[i].last_beat_us) / 1000;
		sv.age_ms = age > UINT32_MAX ? UINT32_MAX : (uint32_t)age;
		int rc = tr_reply_server(rpc, &sv);
		if (rc != 0) {
			ferry_rpc_reply(rpc, rc);
			return;
		}
	}
	ferry_rpc_reply(rpc, 0);
}

int main(int argc, char **argv)
{
	if (tr_args(argc, argv) != 0)
		return 2;
	char log[PATH_MAX + 8];
	snprintf(log, sizeof(log), "%s.log", cfg.state_file);
	if (fs_daemon_detach(&me_daemon, log) != 0)
		return 1;
	tr_load();
	fs_daemon_signals(&stop);
	ferry_server *srv;
	/* block mode: an idle daemon sleeps in epoll instead of spinning a core */
	ferry_ctx_opts co = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	int rc = ferry_ctx_create(&co, &ctx);
	if (rc != 0 || ferry_server_create(ctx, &srv) != 0) {
		tr_log("cannot create a ferry context or server");
		return 1;
	}
	ferry_server_handle(srv, FS_OP_BEAT, tr_beat, NULL);
	ferry_server_handle(srv, FS_OP_QUERY_STORE, tr_query_store, NULL);
	ferry_server_handle(srv, FS_OP_QUERY_FETCH, tr_query_fetch, NULL);
	ferry_server_handle(srv, FS_OP_LIST, tr_list, NULL);
	for (int i = 0; i < cfg.nlisten; i++) {
		if (ferry_server_listen(srv, cfg.listen[i]) != 0) {
			tr_log("listen %s: %s", cfg.listen[i], ferry_ctx_errmsg(ctx));
			return 1;
		}
		char bound[256];
		if (ferry_server_locator(srv, i, bound, sizeof(bound)) >= 0)
			tr_log("listening on %s", bound);
	}
	while (!stop)
		ferry_ctx_poll(ctx, 200000);
	ferry_server_drain(srv, 2000000);
	ferry_server_destroy(srv);
	ferry_ctx_destroy(ctx);
	tr_log("stopped: beats %lu, upload queries %lu, fetch queries %lu, lists %lu; "
	       "refused: bad messages %lu; no server %lu, read-only %lu",
	       cnt.beats, cnt.stores, cnt.fetches, cnt.lists, cnt.bad_messages,
	       cnt.no_server, cnt.read_only);
	for (int i = 0; i < cfg.nlisten; i++)
		free(cfg.listen[i]);
	return 0;
}
