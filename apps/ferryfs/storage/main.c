/* ferryfs-storage: a storage server. Objects are files under its store
 * paths (STORE/data/hh/hh/NAME[.ext]); every call is a ferry call on the
 * locators it listens on; disk work runs on ferry's worker pool, never on
 * the event loop. Config: docs/ferryfs/STORAGE.md; protocol:
 * docs/ferryfs/PROTOCOL.md.
 *
 * Map: configuration (INI + --set); uploads (temp file, fsync policy,
 * rename); downloads (file regions, closed when sent); delete, info;
 * main (listen, serve, drain on SIGTERM). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "ferry/buf.h"
#include "ferry/err.h"
#include "ferry/rpc.h"
#include "common/daemon.h"
#include "proto/wire.h"

#define ST_STORES_MAX   16
#define ST_LISTEN_MAX   8
#define ST_COPY_BYTES   (256u << 10) /* bounce buffer for file-region bodies */
#define ST_DRAIN_US     5000000u
#define ST_TRACKERS_MAX 4
#define ST_SESSIONS_MAX 1024
#define ST_BEAT_BYTES   8192

enum { ST_FSYNC_NEVER = 0, ST_FSYNC_ALWAYS = 1 };

typedef struct st_config {
	char group[FS_GROUP_MAX + 1];
	uint32_t server_id;
	char *listen[ST_LISTEN_MAX];
	int nlisten;
	char *store[ST_STORES_MAX];
	int nstores;
	int fsync;
	int workers;
	char *tracker[ST_TRACKERS_MAX];
	int ntrackers;
	uint32_t beat_ms;
	uint32_t upload_idle_s;
	bool foreground;
} st_config;

/* Counters of what was refused (malformed messages and IDs) and done. */
typedef struct st_counters {
	atomic_ulong uploads, downloads, deletes, infos;
	atomic_ulong bad_messages, bad_ids, not_found, no_space, io_errors;
} st_counters;

static st_config cfg = {.group = "group1",
                        .server_id = 1,
                        .fsync = ST_FSYNC_ALWAYS,
                        .beat_ms = 1000,
                        .upload_idle_s = 60};
static st_counters cnt;
static atomic_uint next_store;
static atomic_uint in_flight; /* the load a beat reports */
static atomic_ulong served;
static volatile sig_atomic_t stop;

#define st_log(...) fs_log("ferryfs-storage", __VA_ARGS__)

/* Configuration --------------------------------------------------------------*/

/* One key (from the file's [storage] section or --set KEY=VALUE). 1 = ok,
 * 0 = refused (inih's convention); why goes to stderr. */
static int st_key(const char *key, const char *val)
{
	if (strcmp(key, "group") == 0) {
		if (!fs_group_valid(val, strlen(val))) {
			fprintf(stderr,
			        "ferryfs-storage: group '%s': 1-16 of A-Z a-z 0-9 _ -\n",
			        val);
			return 0;
		}
		snprintf(cfg.group, sizeof(cfg.group), "%s", val);
	} else if (strcmp(key, "server_id") == 0) {
		char *end;
		unsigned long v = strtoul(val, &end, 10);
		if (*val == '\0' || *end != '\0' || v == 0 || v > UINT32_MAX) {
			fprintf(stderr, "ferryfs-storage: server_id '%s': 1 to 2^32-1\n",
			        val);
			return 0;
		}
		cfg.server_id = (uint32_t)v;
	} else if (strcmp(key, "listen") == 0) {
		if (cfg.nlisten == ST_LISTEN_MAX) {
			fprintf(stderr, "ferryfs-storage: at most %d listen keys\n",
			        ST_LISTEN_MAX);
			return 0;
		}
		cfg.listen[cfg.nlisten++] = strdup(val);
	} else if (strcmp(key, "store_path") == 0) {
		if (cfg.nstores == ST_STORES_MAX || val[0] != '/') {
			fprintf(stderr,
			        "ferryfs-storage: store_path '%s': an absolute path, at most %d\n",
			        val, ST_STORES_MAX);
			return 0;
		}
		cfg.store[cfg.nstores++] = strdup(val);
	} else if (strcmp(key, "fsync") == 0) {
		if (strcmp(val, "always") == 0)
			cfg.fsync = ST_FSYNC_ALWAYS;
		else if (strcmp(val, "never") == 0)
			cfg.fsync = ST_FSYNC_NEVER;
		else {
			fprintf(stderr, "ferryfs-storage: fsync '%s': always or never\n",
			        val);
			return 0;
		}
	} else if (strcmp(key, "tracker") == 0) {
		if (cfg.ntrackers == ST_TRACKERS_MAX) {
			fprintf(stderr, "ferryfs-storage: at most %d tracker keys\n",
			        ST_TRACKERS_MAX);
			return 0;
		}
		cfg.tracker[cfg.ntrackers++] = strdup(val);
	} else if (strcmp(key, "beat_ms") == 0) {
		int v = atoi(val);
		if (v < 50 || v > 600000) {
			fprintf(stderr, "ferryfs-storage: beat_ms '%s': 50 to 600000\n",
			        val);
			return 0;
		}
		cfg.beat_ms = (uint32_t)v;
	} else if (strcmp(key, "upload_idle_s") == 0) {
		int v = atoi(val);
		if (v < 1 || v > 86400) {
			fprintf(stderr,
			        "ferryfs-storage: upload_idle_s '%s': 1 to 86400\n", val);
			return 0;
		}
		cfg.upload_idle_s = (uint32_t)v;
	} else if (strcmp(key, "workers") == 0) {
		int v = atoi(val);
		if (v < 1 || v > FERRY_WORKERS_THREADS_MAX) {
			fprintf(stderr, "ferryfs-storage: workers '%s': 1 to %d\n", val,
			        FERRY_WORKERS_THREADS_MAX);
			return 0;
		}
		cfg.workers = v;
	} else {
		fprintf(stderr, "ferryfs-storage: unknown key '%s'\n", key);
		return 0;
	}
	return 1;
}

static void st_usage(FILE *f)
{
	fprintf(f,
	        "usage: ferryfs-storage [--config FILE] [--set KEY=VALUE ...] [--foreground]\n"
	        "Serves ferryfs objects from its store paths (docs/ferryfs/STORAGE.md).\n"
	        "Keys ([storage] section of FILE, or --set, which wins):\n"
	        "  group=NAME        the storage group (default group1)\n"
	        "  server_id=N       this server's id, written into its file IDs (default 1)\n"
	        "  listen=LOCATOR    a ferry locator to serve on (repeatable)\n"
	        "  store_path=DIR    a store path, M00, M01, ... in order (repeatable)\n"
	        "  fsync=always|never  fsync each object and its directory before it is\n"
	        "                    visible (default always)\n"
	        "  workers=N         disk worker threads (default %d)\n"
	        "  tracker=LOCATOR   a tracker to beat to (repeatable: every one)\n"
	        "  beat_ms=N         between beats (default 1000)\n"
	        "  upload_idle_s=N   an upload in pieces idle this long is dropped (60)\n"
	        "--foreground: stay in the foreground, log to stderr (otherwise the\n"
	        "server detaches and logs to STORE0/storage.log). SIGTERM or SIGINT:\n"
	        "stop taking calls, finish those in flight (up to 5 s), exit.\n",
	        FERRY_WORKERS_THREADS_DEFAULT);
}

static fs_daemon me_daemon = {.name = "ferryfs-storage",
                              .section = "storage",
                              .key = st_key,
                              .usage = st_usage};

static int st_args(int argc, char **argv)
{
	if (fs_daemon_args(&me_daemon, argc, argv) != 0)
		return -1;
	cfg.foreground = me_daemon.foreground;
	if (cfg.nlisten == 0 || cfg.nstores == 0) {
		fprintf(stderr,
		        "ferryfs-storage: need at least one listen= and one store_path=\n");
		return -1;
	}
	return 0;
}

/* Requests ----------------------------------------------------------------------*/

/* A decoder's verdict: a malformed request is counted (bad messages). */
static int st_counted(int rc)
{
	if (rc != 0)
		atomic_fetch_add(&cnt.bad_messages, 1);
	return rc;
}

/* The message's first bytes, contiguous, for a decoder. */
static size_t st_head(ferry_buf *req, uint8_t *out)
{
	size_t n =
	        ferry_buf_len(req) < FS_DECODE_MAX ? ferry_buf_len(req) : FS_DECODE_MAX;
	ssize_t got = ferry_buf_copy_out(req, 0, n, out);
	return got < 0 ? 0 : (size_t)got;
}

/* The object's full path (or its directory with dir_only). */
static int st_path(const fs_fid *f, bool dir_only, char *out, size_t cap)
{
	char rel[128];
	if (f->store >= cfg.nstores || fs_fid_path(f, dir_only, rel, sizeof(rel)) < 0)
		return -EINVAL;
	int n = snprintf(out, cap, "%s/%s", cfg.store[f->store], rel);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* A decoded ID request that names this group and one of its store paths. */
static int st_id_ok(int rc, int fid_err, const fs_id_req *r)
{
	if (rc == -EINVAL) {
		atomic_fetch_add(&cnt.bad_ids, 1);
		st_log("refused file ID: %s", fs_fid_strerror(fid_err));
		return -EINVAL;
	}
	if (rc != 0) {
		atomic_fetch_add(&cnt.bad_messages, 1);
		return rc;
	}
	if (strcmp(r->fid.group, cfg.group) != 0 || r->fid.store >= cfg.nstores) {
		atomic_fetch_add(&cnt.bad_ids, 1);
		return -ENXIO; /* another group's, or a store path this server lacks */
	}
	return 0;
}

/* An ID request (a download's with download) decoded and checked, and the
 * object's path: 0 or the status to answer. */
static int st_id_path(ferry_rpc *rpc, bool download, fs_id_req *r, char *path, size_t cap)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	uint8_t head[FS_DECODE_MAX];
	size_t have = st_head(req, head);
	int fe = 0;
	int rc = download ? fs_dec_download(head, have, ferry_buf_len(req), r, &fe)
	                  : fs_dec_id_req(head, have, ferry_buf_len(req), r, &fe);
	rc = st_id_ok(rc, fe, r);
	return rc != 0 ? rc : st_path(&r->fid, false, path, cap);
}

static int st_mkdirs(const fs_fid *f)
{
	char dir[PATH_MAX];
	int rc = st_path(f, true, dir, sizeof(dir));
	if (rc != 0)
		return rc;
	/* STORE/data, STORE/data/hh, STORE/data/hh/hh */
	size_t base = strlen(cfg.store[f->store]);
	for (size_t i = base + 1; dir[i] != '\0'; i++)
		if (dir[i] == '/') {
			dir[i] = '\0';
			if (mkdir(dir, 0755) != 0 && errno != EEXIST)
				return -errno;
			dir[i] = '/';
		}
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int st_write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The request body (from off) into fd; *crc continues over it. */
static int st_write_body(int fd, ferry_buf *req, size_t off, uint64_t len, uint32_t *crc)
{
	ferry_buf_iter it;
	ferry_buf_seg seg;
	uint8_t *bounce = NULL;
	int rc = 0;
	ferry_buf_iter_init(&it, req, off, len);
	while (rc == 0 && ferry_buf_iter_next(&it, &seg)) {
		if (seg.kind != FERRY_CHUNK_FILE) {
			*crc = fs_crc32(*crc, seg.data, seg.len);
			rc = st_write_all(fd, seg.data, seg.len);
			continue;
		}
		if (bounce == NULL && (bounce = malloc(ST_COPY_BYTES)) == NULL)
			return -ENOMEM;
		for (size_t done = 0; rc == 0 && done < seg.len;) {
			size_t n = seg.len - done < ST_COPY_BYTES ? seg.len - done
			                                          : ST_COPY_BYTES;
			ssize_t r = pread(seg.fd, bounce, n, seg.file_off + (off_t)done);
			if (r <= 0) {
				rc = r < 0 ? -errno : -EIO;
				break;
			}
			*crc = fs_crc32(*crc, bounce, (size_t)r);
			rc = st_write_all(fd, bounce, (size_t)r);
			done += (size_t)r;
		}
	}
	free(bounce);
	return rc;
}

static int st_fsync_dir(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) != 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* An upload's file: the ID's fields (source, time, store path, random
 * part, extension) and a temporary file beside its final name. The fd, or
 * -errno. */
static int st_begin_file(const fs_upload_req *u, fs_fid *f, char *tmp, size_t cap)
{
	if (u->store != FS_STORE_ANY && u->store >= cfg.nstores)
		return -ENXIO;
	*f = (fs_fid){.source = cfg.server_id,
	              .ctime = (uint32_t)time(NULL),
	              .size = u->size,
	              .appender = (u->flags & FS_UPLOAD_APPENDER) != 0};
	snprintf(f->group, sizeof(f->group), "%s", cfg.group);
	snprintf(f->ext, sizeof(f->ext), "%s", u->ext);
	f->store = u->store != FS_STORE_ANY ? u->store
	                                    : (uint8_t)(atomic_fetch_add(&next_store, 1) %
	                                                (unsigned)cfg.nstores);
	while (getrandom(&f->rnd, sizeof(f->rnd), 0) != sizeof(f->rnd))
		;
	int rc = st_mkdirs(f);
	if (rc != 0)
		return rc;
	char dir[PATH_MAX];
	st_path(f, true, dir, sizeof(dir));
	if ((size_t)snprintf(tmp, cap, "%s/.upload-XXXXXX", dir) >= cap)
		return -ENAMETOOLONG;
	int fd = mkostemp(tmp, O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The end of an upload whose bytes are in fd (rc: how writing went):
 * fsync (policy), close, rename into place under a name nobody has, and
 * answer with the ID. On any failure the temporary file goes and the
 * status says why (ENOSPC counted as such). */
static int st_finish(ferry_rpc *rpc, fs_fid *f, const char *tmp, int fd, int rc)
{
	char path[PATH_MAX];
	if (rc == 0 && cfg.fsync == ST_FSYNC_ALWAYS && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	/* The final name; on the (2^-16) chance it exists, another random
	 * high half keeps the same directories. */
	for (int tries = 0; rc == 0; tries++) {
		st_path(f, false, path, sizeof(path));
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
			break;
		if (errno != EEXIST || tries == 8) {
			rc = -errno;
			break;
		}
		uint16_t hi;
		while (getrandom(&hi, sizeof(hi), 0) != sizeof(hi))
			;
		f->rnd = (f->rnd & 0xffffu) | (uint32_t)hi << 16;
	}
	if (rc != 0) {
		unlink(tmp);
		if (rc == -ENOSPC || rc == -EDQUOT)
			atomic_fetch_add(&cnt.no_space, 1);
		else
			atomic_fetch_add(&cnt.io_errors, 1);
		return rc == -EDQUOT ? -ENOSPC : rc;
	}
	if (cfg.fsync == ST_FSYNC_ALWAYS && (rc = st_fsync_dir(path)) != 0)
		return rc;
	char id[FS_FID_MAX];
	if (fs_fid_encode(f, id, sizeof(id)) < 0)
		return -EIO;
	uint8_t *out = ferry_buf_alloc(ferry_rpc_response(rpc),
	                               FS_UPLOAD_RESP_FIXED + strlen(id));
	if (out == NULL)
		return -ENOMEM;
	fs_enc_upload_resp(out, FS_UPLOAD_RESP_FIXED + strlen(id), id);
	atomic_fetch_add(&cnt.uploads, 1);
	return 0;
}

/* Upload: the body goes to a temporary file beside its final name, is
 * fsynced (policy), and only then renamed into place: a crash or a full
 * disk never leaves a partial object visible, and a failed upload leaves
 * nothing behind. */
static int st_upload(ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	uint8_t head[FS_DECODE_MAX];
	fs_upload_req u;
	int rc = st_counted(
	        fs_dec_upload(head, st_head(req, head), ferry_buf_len(req), &u));
	if (rc != 0)
		return rc;
	fs_fid f;
	char tmp[PATH_MAX + 32];
	int fd = st_begin_file(&u, &f, tmp, sizeof(tmp));
	if (fd < 0)
		return fd;
	f.crc32 = 0;
	rc = st_write_body(fd, req, u.body_off, u.size, &f.crc32);
	return st_finish(rpc, &f, tmp, fd, rc);
}

/* Uploads in pieces --------------------------------------------------------------*/

/* An upload over one message: begun, fed pieces in order (offset = bytes so
 * far; the CRC runs along), committed (as an upload ends) or aborted. A
 * session left idle for upload_idle_s is aborted by the event loop. One
 * piece at a time per session (busy). */
typedef struct st_session {
	uint64_t handle; /* 0: a free slot */
	int fd;
	bool busy;
	char tmp[PATH_MAX + 32];
	fs_fid fid;
	uint64_t written;
	uint64_t last_us;
} st_session;

static st_session sessions[ST_SESSIONS_MAX];
static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t st_now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* The session of handle, made busy (under the lock): NULL and *rc. */
static st_session *st_session_take(uint64_t handle, int *rc)
{
	pthread_mutex_lock(&sessions_lock);
	for (int i = 0; i < ST_SESSIONS_MAX; i++)
		if (sessions[i].handle == handle) {
			st_session *x = &sessions[i];
			if (x->busy) {
				*rc = -EBUSY; /* pieces of one upload go one at a time */
				break;
			}
			x->busy = true;
			pthread_mutex_unlock(&sessions_lock);
			return x;
		}
	if (*rc == 0)
		*rc = -ENOENT; /* no such upload (expired, or never begun) */
	pthread_mutex_unlock(&sessions_lock);
	return NULL;
}

static void st_session_give(st_session *x)
{
	pthread_mutex_lock(&sessions_lock);
	x->busy = false;
	x->last_us = st_now_us();
	pthread_mutex_unlock(&sessions_lock);
}

/* Forget a taken session; with drop, its temporary file goes too. */
static void st_session_end(st_session *x, bool drop)
{
	if (drop) {
		close(x->fd);
		unlink(x->tmp);
	}
	pthread_mutex_lock(&sessions_lock);
	x->handle = 0;
	x->busy = false;
	pthread_mutex_unlock(&sessions_lock);
}

static int st_upload_begin(ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	uint8_t head[FS_DECODE_MAX];
	fs_upload_req u;
	int rc = st_counted(
	        fs_dec_upload_begin(head, st_head(req, head), ferry_buf_len(req), &u));
	if (rc != 0)
		return rc;
	if (u.size == 0 || u.size >= FS_APPENDER_BIT)
		return -EINVAL;
	st_session *x = NULL;
	pthread_mutex_lock(&sessions_lock);
	for (int i = 0; i < ST_SESSIONS_MAX && x == NULL; i++)
		if (sessions[i].handle == 0) {
			x = &sessions[i];
			x->handle = UINT64_MAX; /* reserved while the file is made */
			x->busy = true;
		}
	pthread_mutex_unlock(&sessions_lock);
	if (x == NULL)
		return -EAGAIN; /* too many uploads in progress */
	int fd = st_begin_file(&u, &x->fid, x->tmp, sizeof(x->tmp));
	if (fd < 0) {
		st_session_end(x, false);
		return fd;
	}
	x->fd = fd;
	x->written = 0;
	x->fid.crc32 = 0;
	uint64_t h = 0;
	while (h == 0 || h == UINT64_MAX)
		while (getrandom(&h, sizeof(h), 0) != sizeof(h))
			;
	uint8_t *out = ferry_buf_alloc(ferry_rpc_response(rpc), FS_BEGIN_RESP_BYTES);
	if (out == NULL) {
		st_session_end(x, true);
		return -ENOMEM;
	}
	fs_enc_begin_resp(out, FS_BEGIN_RESP_BYTES, h);
	pthread_mutex_lock(&sessions_lock);
	x->handle = h;
	x->busy = false;
	x->last_us = st_now_us();
	pthread_mutex_unlock(&sessions_lock);
	return 0;
}

static int st_upload_piece(ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	uint8_t head[FS_DECODE_MAX];
	uint64_t handle, off, n;
	int rc = st_counted(fs_dec_piece(head, st_head(req, head), ferry_buf_len(req),
	                                 &handle, &off, &n));
	if (rc != 0)
		return rc;
	st_session *x = st_session_take(handle, &rc);
	if (x == NULL)
		return rc;
	if (off != x->written || n > x->fid.size - x->written) {
		st_session_give(x);
		return -EINVAL; /* out of order, or past the size begun with */
	}
	rc = st_write_body(x->fd, req, FS_PIECE_FIXED_BYTES, n, &x->fid.crc32);
	if (rc != 0) {
		/* a full disk ends the upload: nothing of it stays */
		if (rc == -ENOSPC || rc == -EDQUOT)
			atomic_fetch_add(&cnt.no_space, 1);
		st_session_end(x, true);
		return rc == -EDQUOT ? -ENOSPC : rc;
	}
	x->written += n;
	st_session_give(x);
	return 0;
}

static int st_upload_commit(ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	uint8_t head[FS_DECODE_MAX];
	uint64_t handle;
	int rc = st_counted(
	        fs_dec_handle_req(head, st_head(req, head), ferry_buf_len(req), &handle));
	if (rc != 0)
		return rc;
	st_session *x = st_session_take(handle, &rc);
	if (x == NULL)
		return rc;
	if (x->written != x->fid.size) {
		st_session_give(x);
		return -EINVAL; /* not all of it came */
	}
	fs_fid f = x->fid;
	char tmp[sizeof(x->tmp)];
	memcpy(tmp, x->tmp, sizeof(tmp));
	int fd = x->fd;
	st_session_end(x, false);
	return st_finish(rpc, &f, tmp, fd, 0);
}

static int st_upload_abort(ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	uint8_t head[FS_DECODE_MAX];
	uint64_t handle;
	int rc = st_counted(
	        fs_dec_handle_req(head, st_head(req, head), ferry_buf_len(req), &handle));
	if (rc != 0)
		return rc;
	st_session *x = st_session_take(handle, &rc);
	if (x == NULL)
		return rc;
	st_session_end(x, true);
	return 0;
}

/* From the event loop: uploads idle too long (or all, at exit) are
 * aborted, their temporary files removed. */
static unsigned st_sessions_expire(uint64_t idle_us)
{
	unsigned n = 0;
	uint64_t now = st_now_us();
	for (int i = 0; i < ST_SESSIONS_MAX; i++) {
		pthread_mutex_lock(&sessions_lock);
		st_session *x = &sessions[i];
		bool go = x->handle != 0 && x->handle != UINT64_MAX && !x->busy &&
		          now - x->last_us >= idle_us;
		if (go)
			x->busy = true;
		pthread_mutex_unlock(&sessions_lock);
		if (go) {
			st_session_end(x, true);
			n++;
		}
	}
	return n;
}

static void st_close_fd(void *arg, void *data)
{
	(void)data;
	close((int)(intptr_t)arg);
}

/* Download: the range as a file region of the object's file (sendfile on
 * splice: the bytes never enter this process); the file closes once the
 * response has been sent. */
static int st_download(ferry_rpc *rpc)
{
	fs_id_req r;
	char path[PATH_MAX];
	int rc = st_id_path(rpc, true, &r, path, sizeof(path));
	if (rc != 0)
		return rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			atomic_fetch_add(&cnt.not_found, 1);
		return -errno;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	uint64_t size = (uint64_t)st.st_size;
	uint64_t len = r.length == 0 && r.offset <= size ? size - r.offset : r.length;
	if (r.offset > size || len > size - r.offset) {
		close(fd);
		return -EINVAL; /* a range past the end */
	}
	if (len > FERRY_MSG_MAX_BYTES_DEFAULT) {
		close(fd);
		return -EFBIG; /* more than one message: ask for ranges */
	}
	rc = ferry_buf_append_file_loan(ferry_rpc_response(rpc), fd, (off_t)r.offset,
	                                (size_t)len, st_close_fd, (void *)(intptr_t)fd);
	if (rc != 0) {
		close(fd);
		return rc;
	}
	atomic_fetch_add(&cnt.downloads, 1);
	return 0;
}

/* Metadata lives beside the object in PATH@meta (no ID can name it: '@'
 * is in no part's alphabet), in the wire's pair encoding, replaced whole
 * (temporary file, rename). */
static int st_meta_path(const char *path, char *out, size_t cap)
{
	return (size_t)snprintf(out, cap, "%s@meta", path) >= cap ? -ENAMETOOLONG : 0;
}

static int st_delete(ferry_rpc *rpc)
{
	fs_id_req r;
	char path[PATH_MAX];
	int rc = st_id_path(rpc, false, &r, path, sizeof(path));
	if (rc != 0)
		return rc;
	if (unlink(path) != 0) {
		if (errno == ENOENT)
			atomic_fetch_add(&cnt.not_found, 1);
		return -errno;
	}
	char mpath[PATH_MAX];
	if (st_meta_path(path, mpath, sizeof(mpath)) == 0)
		unlink(mpath); /* its metadata, if it had any */
	if (cfg.fsync == ST_FSYNC_ALWAYS)
		st_fsync_dir(path);
	atomic_fetch_add(&cnt.deletes, 1);
	return 0;
}

/* Appender objects and metadata -------------------------------------------------*/

/* The ID and object path of an appender operation or a metadata request
 * (dec decodes it; the bytes, if any, start at *body_off). */
typedef int (*st_dec_fn)(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *r,
                         uint32_t *body_off, int *fid_err);

static int st_dec_path(ferry_rpc *rpc, st_dec_fn dec, fs_id_req *r, uint32_t *body_off,
                       char *path, size_t cap)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	uint8_t head[FS_DECODE_MAX];
	int fe = 0;
	int rc = st_id_ok(
	        dec(head, st_head(req, head), ferry_buf_len(req), r, body_off, &fe), fe,
	        r);
	return rc != 0 ? rc : st_path(&r->fid, false, path, cap);
}

static int st_dec_write(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *r,
                        uint32_t *body_off, int *fid_err)
{
	return fs_dec_mod(p, have, msg_len, true, r, body_off, fid_err);
}

static int st_dec_truncate(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *r,
                           uint32_t *body_off, int *fid_err)
{
	return fs_dec_mod(p, have, msg_len, false, r, body_off, fid_err);
}

/* An appender object opened for writing, locked against the other
 * appender operations on it (flock, released by close): the fd, or the
 * status (-EPERM: not an appender object). */
static int st_open_appender(const fs_id_req *r, const char *path)
{
	if (!r->fid.appender)
		return -EPERM;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			atomic_fetch_add(&cnt.not_found, 1);
		return -errno;
	}
	if (flock(fd, LOCK_EX) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int st_appender_done(int fd, int rc)
{
	if (rc == 0 && cfg.fsync == ST_FSYNC_ALWAYS && fsync(fd) != 0)
		rc = -errno;
	close(fd);
	if (rc == -ENOSPC || rc == -EDQUOT)
		atomic_fetch_add(&cnt.no_space, 1);
	return rc == -EDQUOT ? -ENOSPC : rc;
}

/* The common start of append, write and truncate: the request decoded,
 * the offset or size in bounds, the object open and locked. The fd, or
 * the status to answer. */
static int st_appender_begin(ferry_rpc *rpc, st_dec_fn dec, fs_id_req *r, uint32_t *off)
{
	char path[PATH_MAX];
	int rc = st_dec_path(rpc, dec, r, off, path, sizeof(path));
	if (rc != 0)
		return rc;
	if (r->offset >= FS_APPENDER_BIT)
		return -EINVAL;
	return st_open_appender(r, path);
}

/* Append: at the end, all or nothing (a failed append is cut off again). */
static int st_append(ferry_rpc *rpc)
{
	fs_id_req r;
	uint32_t off;
	int fd = st_appender_begin(rpc, fs_dec_append, &r, &off), rc;
	if (fd < 0)
		return fd;
	struct stat st;
	uint32_t crc = 0;
	ferry_buf *req = ferry_rpc_request(rpc);
	if (fstat(fd, &st) != 0 || lseek(fd, 0, SEEK_END) < 0)
		rc = -errno;
	else if ((rc = st_write_body(fd, req, off, ferry_buf_len(req) - off, &crc)) !=
	                 0 &&
	         ftruncate(fd, st.st_size) != 0)
		st_log("append to %s failed and could not be cut off: %s", r.id,
		       strerror(errno));
	return st_appender_done(fd, rc);
}

/* Write at an offset; past the end leaves a hole, which reads as zeros. */
static int st_write(ferry_rpc *rpc)
{
	fs_id_req r;
	uint32_t off, crc = 0;
	int fd = st_appender_begin(rpc, st_dec_write, &r, &off), rc;
	if (fd < 0)
		return fd;
	ferry_buf *req = ferry_rpc_request(rpc);
	if (lseek(fd, (off_t)r.offset, SEEK_SET) < 0)
		rc = -errno;
	else
		rc = st_write_body(fd, req, off, ferry_buf_len(req) - off, &crc);
	return st_appender_done(fd, rc);
}

static int st_truncate(ferry_rpc *rpc)
{
	fs_id_req r;
	uint32_t off;
	int fd = st_appender_begin(rpc, st_dec_truncate, &r, &off);
	if (fd < 0)
		return fd;
	return st_appender_done(fd, ftruncate(fd, (off_t)r.offset) != 0 ? -errno : 0);
}

/* The object's pairs (none without a metadata file): count or -errno. */
static int st_meta_read(const char *mpath, fs_meta_pair *pairs, uint8_t *buf, size_t cap)
{
	int fd = open(mpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	ssize_t n = read(fd, buf, cap);
	close(fd);
	if (n < 0)
		return -errno;
	int k = fs_dec_meta(buf, (size_t)n, pairs, FS_META_PAIRS_MAX);
	return k < 0 ? -EIO : k; /* a metadata file that does not decode */
}

#define ST_META_BYTES (2 + FS_META_PAIRS_MAX * (3 + FS_META_KEY_MAX + FS_META_VALUE_MAX))

static int st_meta_set(ferry_rpc *rpc)
{
	ferry_buf *req = ferry_rpc_request(rpc);
	uint8_t head[FS_DECODE_MAX];
	fs_id_req r;
	bool merge;
	uint32_t off;
	int fe = 0;
	int rc = st_id_ok(fs_dec_meta_set(head, st_head(req, head), ferry_buf_len(req),
	                                  &r, &merge, &off, &fe),
	                  fe, &r);
	char path[PATH_MAX], mpath[PATH_MAX], tmp[PATH_MAX];
	if (rc != 0 || (rc = st_path(&r.fid, false, path, sizeof(path))) != 0 ||
	    (rc = st_meta_path(path, mpath, sizeof(mpath))) != 0)
		return rc;
	size_t len = ferry_buf_len(req) - off;
	if (len > ST_META_BYTES)
		return -EFBIG;
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno; /* metadata of an object that is not there */
	fs_meta_pair *cur = malloc(2 * FS_META_PAIRS_MAX * sizeof(*cur));
	uint8_t *buf = malloc(ST_META_BYTES);
	int fd = -1;
	if (cur == NULL || buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	fs_meta_pair *in = cur + FS_META_PAIRS_MAX;
	int n = ferry_buf_copy_out(req, off, len, buf) == (ssize_t)len
	                ? fs_dec_meta(buf, len, in, FS_META_PAIRS_MAX)
	                : -EIO;
	if (n < 0) {
		atomic_fetch_add(&cnt.bad_messages, 1);
		rc = -EBADMSG;
		goto out;
	}
	int have = merge ? st_meta_read(mpath, cur, buf, ST_META_BYTES) : 0;
	if (have < 0) {
		rc = have;
		goto out;
	}
	/* merge: the new value of a key replaces the old; others stay */
	for (int i = 0; i < n; i++) {
		int j = 0;
		while (j < have && strcmp(cur[j].key, in[i].key) != 0)
			j++;
		if (j == have && have == FS_META_PAIRS_MAX) {
			rc = -E2BIG;
			goto out;
		}
		cur[j] = in[i];
		if (j == have)
			have++;
	}
	int bytes = fs_enc_meta(buf, ST_META_BYTES, cur, (unsigned)have);
	snprintf(tmp, sizeof(tmp), "%.*s/.meta-XXXXXX", (int)(strrchr(path, '/') - path),
	         path);
	if (bytes < 0 || (fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		rc = bytes < 0 ? -EIO : -errno;
		goto out;
	}
	rc = st_write_all(fd, buf, (size_t)bytes);
	if (rc == 0 && cfg.fsync == ST_FSYNC_ALWAYS && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, mpath) != 0)
		rc = -errno;
	if (rc != 0)
		unlink(tmp);
out:
	free(cur);
	free(buf);
	return rc == -EDQUOT ? -ENOSPC : rc;
}

static int st_meta_get(ferry_rpc *rpc)
{
	fs_id_req r;
	char path[PATH_MAX], mpath[PATH_MAX];
	int rc = st_id_path(rpc, false, &r, path, sizeof(path));
	if (rc != 0 || (rc = st_meta_path(path, mpath, sizeof(mpath))) != 0)
		return rc;
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno;
	fs_meta_pair *cur = malloc(FS_META_PAIRS_MAX * sizeof(*cur));
	uint8_t *buf = malloc(ST_META_BYTES);
	int n = cur != NULL && buf != NULL ? st_meta_read(mpath, cur, buf, ST_META_BYTES)
	                                   : -ENOMEM;
	int bytes = n >= 0 ? fs_enc_meta(buf, ST_META_BYTES, cur, (unsigned)n) : n;
	rc = bytes < 0 ? (n < 0 ? n : -EIO)
	               : ferry_buf_append(ferry_rpc_response(rpc), buf, (size_t)bytes);
	free(cur);
	free(buf);
	return rc;
}

static int st_info(ferry_rpc *rpc)
{
	fs_id_req r;
	char path[PATH_MAX];
	int rc = st_id_path(rpc, false, &r, path, sizeof(path));
	if (rc != 0)
		return rc;
	struct stat st;
	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			atomic_fetch_add(&cnt.not_found, 1);
		return -errno;
	}
	fs_info in = {.size = (uint64_t)st.st_size,
	              .mtime_s = (uint64_t)st.st_mtime,
	              .crc32 = r.fid.crc32,
	              .source = r.fid.source,
	              .ctime = r.fid.ctime,
	              .appender = r.fid.appender};
	uint8_t *out = ferry_buf_alloc(ferry_rpc_response(rpc), FS_INFO_RESP_BYTES);
	if (out == NULL)
		return -ENOMEM;
	fs_enc_info(out, FS_INFO_RESP_BYTES, &in);
	atomic_fetch_add(&cnt.infos, 1);
	return 0;
}

/* Every opcode's handler runs on a worker: one entry, one reply. */
typedef struct st_op {
	uint16_t op;
	int (*fn)(ferry_rpc *rpc);
} st_op;

static const st_op st_ops[] = {
        {FS_OP_UPLOAD, st_upload},
        {FS_OP_DOWNLOAD, st_download},
        {FS_OP_DELETE, st_delete},
        {FS_OP_INFO, st_info},
        {FS_OP_UPLOAD_BEGIN, st_upload_begin},
        {FS_OP_UPLOAD_PIECE, st_upload_piece},
        {FS_OP_UPLOAD_COMMIT, st_upload_commit},
        {FS_OP_UPLOAD_ABORT, st_upload_abort},
        {FS_OP_APPEND, st_append},
        {FS_OP_WRITE, st_write},
        {FS_OP_TRUNCATE, st_truncate},
        {FS_OP_META_SET, st_meta_set},
        {FS_OP_META_GET, st_meta_get},
};

static void st_handler(void *arg, ferry_rpc *rpc)
{
	const st_op *o = arg;
	atomic_fetch_add(&in_flight, 1);
	int rc = o->fn(rpc);
	atomic_fetch_sub(&in_flight, 1);
	atomic_fetch_add(&served, 1);
	ferry_rpc_reply(rpc, rc);
}

/* Beats -------------------------------------------------------------------------*/

/* One tracker: a session (reopened when it dies) and at most one beat in
 * flight. */
typedef struct st_tracker {
	const char *loc;
	ferry_session *s;
	ferry_buf req, resp;
	bool busy, ok, said;
} st_tracker;

static st_tracker trackers[ST_TRACKERS_MAX];
static fs_server me; /* this server as beats describe it */

static void st_beat_done(void *arg, int status, ferry_buf *resp)
{
	(void)resp;
	st_tracker *t = arg;
	t->busy = false;
	ferry_buf_reset(&t->req);
	ferry_buf_reset(&t->resp);
	if ((status == 0) != t->ok || !t->said) {
		if (status == 0)
			st_log("tracker %s: beating", t->loc);
		else
			st_log("tracker %s: beat failed: %s", t->loc,
			       status > -4096 ? strerror(-status)
			                      : ferry_strerror(status));
		t->said = true;
	}
	t->ok = status == 0;
}

/* A beat to every tracker without one in flight: free space per store
 * path (statvfs), calls in flight, calls served. */
static void st_beat(ferry_ctx *ctx)
{
	me.load = atomic_load(&in_flight);
	me.ops = atomic_load(&served);
	for (int i = 0; i < cfg.nstores; i++) {
		struct statvfs v;
		if (statvfs(cfg.store[i], &v) == 0) {
			me.free_bytes[i] = (uint64_t)v.f_bavail * v.f_frsize;
			me.total_bytes[i] = (uint64_t)v.f_blocks * v.f_frsize;
		}
	}
	for (int i = 0; i < cfg.ntrackers; i++) {
		st_tracker *t = &trackers[i];
		if (t->busy)
			continue;
		if (t->s != NULL && ferry_session_status(t->s) != 0) {
			ferry_session_close(t->s);
			t->s = NULL;
		}
		if (t->s == NULL && ferry_session_open(ctx, t->loc, &t->s) != 0) {
			t->s = NULL;
			continue;
		}
		uint8_t *m = ferry_buf_alloc(&t->req, ST_BEAT_BYTES);
		int n = m != NULL ? fs_enc_beat(m, ST_BEAT_BYTES, &me) : -1;
		if (n < 0) {
			ferry_buf_reset(&t->req);
			continue;
		}
		ferry_buf_truncate(&t->req, (size_t)n);
		t->busy = ferry_call(t->s, FS_OP_BEAT, &t->req, &t->resp,
		                     2ull * cfg.beat_ms * 1000, st_beat_done, t) == 0;
		if (!t->busy)
			ferry_buf_reset(&t->req);
	}
}

/* Main --------------------------------------------------------------------------*/

/* Temporary files of uploads a crash cut short (never visible as objects)
 * are removed at start, so their space comes back. */
static unsigned long st_sweep_dir(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	unsigned long n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		if (e->d_name[0] == '.' &&
		    (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
		    sizeof(path))
			continue;
		if (depth < 2 && e->d_type == DT_DIR && strlen(e->d_name) == 2)
			n += st_sweep_dir(path, depth + 1);
		else if (depth == 2 &&
		         (strncmp(e->d_name, ".upload-", 8) == 0 ||
		          strncmp(e->d_name, ".meta-", 6) == 0) &&
		         unlink(path) == 0)
			n++;
	}
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	if (st_args(argc, argv) != 0)
		return 2;
	for (int i = 0; i < cfg.nstores; i++) {
		struct stat st;
		if (stat(cfg.store[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr,
			        "ferryfs-storage: store_path %s: not a directory\n",
			        cfg.store[i]);
			return 2;
		}
	}
	char log[PATH_MAX];
	snprintf(log, sizeof(log), "%s/storage.log", cfg.store[0]);
	if (fs_daemon_detach(&me_daemon, log) != 0)
		return 1;
	for (int i = 0; i < cfg.nstores; i++) {
		char data[PATH_MAX];
		snprintf(data, sizeof(data), "%s/data", cfg.store[i]);
		unsigned long n = st_sweep_dir(data, 0);
		if (n > 0)
			st_log("%s: removed %lu unfinished uploads", cfg.store[i], n);
	}
	fs_daemon_signals(&stop);

	ferry_ctx *ctx;
	ferry_server *srv;
	/* block mode: an idle daemon sleeps in epoll instead of spinning a core */
	ferry_ctx_opts co = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	int rc = ferry_ctx_create(&co, &ctx);
	if (rc != 0) {
		st_log("cannot create a ferry context: %s", ferry_strerror(rc));
		return 1;
	}
	if ((rc = ferry_server_create(ctx, &srv)) != 0) {
		st_log("cannot create a server: %s", ferry_ctx_errmsg(ctx));
		return 1;
	}
	ferry_workers_opts wo = {.threads = cfg.workers};
	ferry_server_workers(srv, &wo);
	for (size_t i = 0; i < sizeof(st_ops) / sizeof(st_ops[0]); i++)
		ferry_server_handle_blocking(srv, st_ops[i].op, st_handler,
		                             (void *)&st_ops[i]);
	for (int i = 0; i < cfg.nlisten; i++) {
		if ((rc = ferry_server_listen(srv, cfg.listen[i])) != 0) {
			st_log("listen %s: %s", cfg.listen[i], ferry_ctx_errmsg(ctx));
			return 1;
		}
		char bound[256];
		if (ferry_server_locator(srv, i, bound, sizeof(bound)) >= 0)
			st_log("group %s server %u listening on %s", cfg.group,
			       cfg.server_id, bound);
	}
	snprintf(me.group, sizeof(me.group), "%s", cfg.group);
	me.id = cfg.server_id;
	me.nstores = (uint8_t)cfg.nstores;
	me.store = FS_STORE_ANY;
	for (int i = 0; i < cfg.nlisten && i < FS_LOCS_MAX; i++)
		if (ferry_server_locator(srv, i, me.locs[i], FS_LOC_MAX + 1) >= 0)
			me.nlocs++;
	for (int i = 0; i < cfg.ntrackers; i++) {
		trackers[i].loc = cfg.tracker[i];
		ferry_buf_init(&trackers[i].req);
		ferry_buf_init(&trackers[i].resp);
	}
	uint64_t next_beat = 0, next_expiry = 0;
	while (!stop) {
		uint64_t now = ferry_ctx_now_us(ctx);
		if (now >= next_expiry) {
			unsigned n = st_sessions_expire(cfg.upload_idle_s * 1000000ull);
			if (n > 0)
				st_log("dropped %u uploads idle for %u s", n,
				       cfg.upload_idle_s);
			next_expiry = now + 1000000;
		}
		if (cfg.ntrackers > 0 && now >= next_beat) {
			st_beat(ctx);
			next_beat = now + cfg.beat_ms * 1000ull;
		}
		uint64_t wait =
		        cfg.ntrackers > 0 && next_beat > now ? next_beat - now : 200000;
		ferry_ctx_poll(ctx, (int64_t)(wait < 200000 ? wait : 200000));
	}
	st_log("stopping: draining calls in flight");
	rc = ferry_server_drain(srv, ST_DRAIN_US);
	for (int i = 0; i < cfg.ntrackers; i++) {
		if (trackers[i].s != NULL)
			ferry_session_close(
			        trackers[i].s); /* a beat in flight fails now */
		ferry_buf_fini(&trackers[i].req);
		ferry_buf_fini(&trackers[i].resp);
		free(cfg.tracker[i]);
	}
	ferry_server_destroy(srv);
	ferry_ctx_destroy(ctx);
	st_sessions_expire(0); /* unfinished uploads leave nothing */
	st_log("stopped%s: uploads %lu downloads %lu deletes %lu infos %lu; refused: "
	       "bad messages %lu bad IDs %lu; not found %lu; no space %lu; I/O errors %lu",
	       rc != 0 ? " (drain timed out)" : "", (unsigned long)cnt.uploads,
	       (unsigned long)cnt.downloads, (unsigned long)cnt.deletes,
	       (unsigned long)cnt.infos, (unsigned long)cnt.bad_messages,
	       (unsigned long)cnt.bad_ids, (unsigned long)cnt.not_found,
	       (unsigned long)cnt.no_space, (unsigned long)cnt.io_errors);
	for (int i = 0; i < cfg.nlisten; i++)
		free(cfg.listen[i]);
	for (int i = 0; i < cfg.nstores; i++)
		free(cfg.store[i]);
	return 0;
}
