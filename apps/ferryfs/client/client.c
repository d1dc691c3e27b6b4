/* libferryfs (include/ferryfs/ferryfs.h): finding the server (trackers in
 * order, or the one given), then one ferry call per message: uploads whole
 * or in pieces, downloads in ranges, appender operations, metadata. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/buf.h"
#include "ferry/err.h"
#include "ferry/rpc.h"
#include "ferryfs/ferryfs.h"
#include "proto/wire.h"

#define FSC_TIMEOUT_US 60000000ull
#define FSC_TRACKER_US 3000000ull
#define FSC_TRACKERS   8
#define FSC_MSG_BYTES  8192
#define FSC_CONNS      16

_Static_assert(FERRYFS_ID_MAX == FS_FID_MAX, "one ID length");
_Static_assert(FERRYFS_LOC_MAX == FS_LOC_MAX, "one locator length");

struct ferryfs {
	ferry_ctx *ctx;
	ferry_session *s; /* to the server in use: one of conns[] */
	char server[FS_LOC_MAX + 1];
	/* one session per storage server talked to, kept open as FastDFS
	 * clients keep a connection per server (least recently used goes
	 * when all are taken) */
	struct {
		char loc[FS_LOC_MAX + 1];
		ferry_session *s;
		uint64_t used;
	} conns[FSC_CONNS];
	uint64_t uses;
	char *trackers[FSC_TRACKERS];
	ferry_session *tsess[FSC_TRACKERS]; /* kept open, reopened when dead */
	int ntrackers;
	char *fixed_server; /* opts.server */
	char *transport;
	uint64_t timeout_us;
	uint8_t store; /* the tracker's choice for an upload */
	void (*note)(void *arg, const char *msg);
	void *note_arg;
	char errmsg[256];
	uint8_t msg[FSC_MSG_BYTES];
};

static int fail(ferryfs *fs, int st, const char *fmt, ...)
{
	va_list ap;
	char what[160];
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	const char *why;
	switch (st) {
	case -EBADMSG:
		why = "refused as malformed (or a malformed answer)";
		break;
	case -ENXIO:
		why = "not that server's group or store path";
		break;
	case -EINVAL:
		why = "malformed file ID, or a range or offset out of bounds";
		break;
	case -EFBIG:
		why = "over one message";
		break;
	case -EHOSTDOWN:
		why = "no storage server online for it";
		break;
	case -EROFS:
		why = "the group is read-only (below its reserved space)";
		break;
	case -EPERM:
		why = "not an appender object";
		break;
	default:
		why = st > -4096 ? strerror(-st) : ferry_strerror(st);
	}
	snprintf(fs->errmsg, sizeof(fs->errmsg), "%s: %s", what, why);
	return st;
}

static void note(ferryfs *fs, const char *fmt, ...)
{
	if (fs->note == NULL)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fs->note(fs->note_arg, msg);
}

int ferryfs_open(const ferryfs_opts *o, ferryfs **out)
{
	*out = NULL;
	if (o == NULL || o->size < sizeof(size_t))
		return -EINVAL;
	ferryfs_opts opts = {0};
	memcpy(&opts, o, o->size < sizeof(opts) ? o->size : sizeof(opts));
	if (opts.ntrackers < 0 || opts.ntrackers > FSC_TRACKERS ||
	    (opts.ntrackers == 0 && opts.server == NULL))
		return -EINVAL;
	ferryfs *fs = calloc(1, sizeof(*fs));
	if (fs == NULL)
		return -ENOMEM;
	/* block mode: a call waits in epoll, it does not spin a core */
	ferry_ctx_opts co = {.poll_mode = FERRY_POLL_BLOCK, .cpu = -1};
	int rc = ferry_ctx_create(&co, &fs->ctx);
	if (rc != 0) {
		free(fs);
		return rc;
	}
	for (int i = 0; i < opts.ntrackers; i++)
		fs->trackers[fs->ntrackers++] = strdup(opts.trackers[i]);
	fs->fixed_server = opts.server != NULL ? strdup(opts.server) : NULL;
	fs->transport = opts.transport != NULL ? strdup(opts.transport) : NULL;
	fs->timeout_us = opts.timeout_us != 0 ? opts.timeout_us : FSC_TIMEOUT_US;
	fs->note = opts.note;
	fs->note_arg = opts.note_arg;
	*out = fs;
	return 0;
}

void ferryfs_close(ferryfs *fs)
{
	if (fs == NULL)
		return;
	/* sessions before their context: destroying it frees them */
	for (int i = 0; i < FSC_CONNS; i++)
		if (fs->conns[i].s != NULL)
			ferry_session_close(fs->conns[i].s);
	for (int i = 0; i < fs->ntrackers; i++) {
		if (fs->tsess[i] != NULL)
			ferry_session_close(fs->tsess[i]);
		free(fs->trackers[i]);
	}
	ferry_ctx_destroy(fs->ctx);
	free(fs->fixed_server);
	free(fs->transport);
	free(fs);
}

const char *ferryfs_errmsg(const ferryfs *fs)
{
	return fs->errmsg;
}

/* Finding the server ------------------------------------------------------------*/

/* Ask the trackers in order until one answers (a transport failure moves
 * on; an answer, even an error, is final). Sessions stay open across
 * calls, as FastDFS clients keep their tracker connections; a dead one is
 * reopened on its next use. */
static int tracker_call(ferryfs *fs, uint16_t op, const uint8_t *msg, size_t n,
                        ferry_buf *resp)
{
	int st = -EHOSTDOWN;
	for (int i = 0; i < fs->ntrackers; i++) {
		ferry_session **s = &fs->tsess[i];
		if (*s != NULL && ferry_session_status(*s) != 0) {
			ferry_session_close(*s);
			*s = NULL;
		}
		if (*s == NULL && ferry_session_open(fs->ctx, fs->trackers[i], s) != 0) {
			*s = NULL;
			note(fs, "tracker %s: %s", fs->trackers[i],
			     ferry_ctx_errmsg(fs->ctx));
			continue;
		}
		ferry_buf req;
		ferry_buf_init(&req);
		ferry_buf_append(&req, msg, n);
		ferry_buf_reset(resp);
		st = ferry_call_sync(*s, op, &req, resp, FSC_TRACKER_US);
		ferry_buf_fini(&req);
		if (st == 0 || st > -10000)
			return st; /* an answer: the tracker's own status is an errno */
		ferry_session_close(*s);
		*s = NULL;
		note(fs, "tracker %s: %s%s", fs->trackers[i], ferry_strerror(st),
		     i + 1 < fs->ntrackers ? ", trying the next" : "");
		st = -EHOSTDOWN;
	}
	return st;
}

/* The locator of sv to use: the transport asked for, else the one on the
 * first tracker's transport, else the first. */
static const char *pick_loc(const ferryfs *fs, const fs_server *sv)
{
	char want[32];
	const char *t = fs->transport != NULL ? fs->transport : fs->trackers[0];
	snprintf(want, sizeof(want), "%.*s:", (int)strcspn(t, ":"), t);
	for (int i = 0; i < sv->nlocs; i++)
		if (strncmp(sv->locs[i], want, strlen(want)) == 0)
			return sv->locs[i];
	return fs->transport != NULL ? NULL : sv->locs[0];
}

/* Point the handle at a server: for an upload (id NULL; group may be
 * NULL), or for the server holding id. Opens the session. */
static int locate(ferryfs *fs, const char *group, const char *id)
{
	const char *loc = fs->fixed_server;
	fs_server sv; /* loc may point into it: it lives as long as loc */
	fs->store = FS_STORE_ANY;
	if (loc == NULL) {
		int n = id != NULL ? fs_enc_id_req(fs->msg, sizeof(fs->msg), id)
		                   : fs_enc_query_store(fs->msg, sizeof(fs->msg),
		                                        group != NULL ? group : "");
		if (n < 0)
			return -EINVAL;
		ferry_buf resp;
		ferry_buf_init(&resp);
		int st = tracker_call(fs,
		                      id != NULL ? FS_OP_QUERY_FETCH : FS_OP_QUERY_STORE,
		                      fs->msg, (size_t)n, &resp);
		size_t len = ferry_buf_len(&resp);
		if (st == 0 &&
		    (len > sizeof(fs->msg) ||
		     ferry_buf_copy_out(&resp, 0, len, fs->msg) != (ssize_t)len ||
		     fs_dec_server(fs->msg, len, &sv) != (int)len || sv.nlocs == 0))
			st = -EBADMSG;
		ferry_buf_fini(&resp);
		if (st != 0)
			return st;
		if ((loc = pick_loc(fs, &sv)) == NULL)
			return -ENXIO;
		fs->store = sv.store;
	}
	snprintf(fs->server, sizeof(fs->server), "%s", loc);
	int slot = -1, lru = 0;
	for (int i = 0; i < FSC_CONNS; i++) {
		if (fs->conns[i].s != NULL && strcmp(fs->conns[i].loc, loc) == 0) {
			slot = i;
			break;
		}
		if (fs->conns[i].used < fs->conns[lru].used)
			lru = i;
	}
	if (slot >= 0 && ferry_session_status(fs->conns[slot].s) != 0) {
		ferry_session_close(fs->conns[slot].s); /* dead: open it again */
		fs->conns[slot].s = NULL;
	}
	if (slot < 0) {
		slot = lru;
		if (fs->conns[slot].s != NULL)
			ferry_session_close(fs->conns[slot].s);
		fs->conns[slot].s = NULL;
		snprintf(fs->conns[slot].loc, sizeof(fs->conns[slot].loc), "%s", loc);
	}
	fs->s = NULL;
	if (fs->conns[slot].s == NULL) {
		int rc = ferry_session_open(fs->ctx, loc, &fs->conns[slot].s);
		if (rc != 0) {
			fs->conns[slot].s = NULL;
			return rc;
		}
	}
	fs->conns[slot].used = ++fs->uses;
	fs->s = fs->conns[slot].s;
	return 0;
}

/* One call on the server's session: a header, then optionally a file region. */
static int call(ferryfs *fs, uint16_t op, const uint8_t *hdr, size_t hl, int fd,
                uint64_t off, uint64_t n, ferry_buf *resp)
{
	ferry_buf req;
	ferry_buf_init(&req);
	int st = ferry_buf_append(&req, hdr, hl);
	if (st == 0 && n > 0)
		st = ferry_buf_append_file(&req, fd, (off_t)off, (size_t)n);
	if (st == 0)
		st = ferry_call_sync(fs->s, op, &req, resp, fs->timeout_us);
	ferry_buf_fini(&req);
	return st;
}

/* Uploads ------------------------------------------------------------------------*/

static int upload_answer(ferry_buf *resp, char *id)
{
	uint8_t head[FS_DECODE_MAX];
	size_t len = ferry_buf_len(resp);
	ssize_t n = ferry_buf_copy_out(resp, 0, len < sizeof(head) ? len : sizeof(head),
	                               head);
	return fs_dec_upload_resp(head, n < 0 ? 0 : (size_t)n, len, id, FS_FID_MAX) != 0
	               ? -EBADMSG
	               : 0;
}

static int handle_call(ferryfs *fs, uint16_t op, uint64_t handle, ferry_buf *resp)
{
	uint8_t h[FS_HANDLE_REQ_BYTES];
	fs_enc_handle_req(h, sizeof(h), handle);
	return call(fs, op, h, sizeof(h), -1, 0, 0, resp);
}

static int upload_pieces(ferryfs *fs, int fd, uint64_t size, const uint8_t *hdr,
                         size_t hl, const ferryfs_upload_opts *o, char *id)
{
	ferry_buf resp;
	ferry_buf_init(&resp);
	int st = call(fs, FS_OP_UPLOAD_BEGIN, hdr, hl, -1, 0, 0, &resp);
	uint64_t handle = 0;
	uint8_t b[FS_BEGIN_RESP_BYTES];
	if (st == 0 &&
	    (ferry_buf_copy_out(&resp, 0, sizeof(b), b) != sizeof(b) ||
	     fs_dec_begin_resp(b, sizeof(b), ferry_buf_len(&resp), &handle) != 0))
		st = -EBADMSG;
	for (uint64_t off = 0; st == 0 && off < size;) {
		uint64_t n = size - off < FS_PIECE_BYTES ? size - off : FS_PIECE_BYTES;
		uint8_t ph[FS_PIECE_FIXED_BYTES];
		fs_enc_piece(ph, sizeof(ph), handle, off);
		ferry_buf_reset(&resp);
		st = call(fs, FS_OP_UPLOAD_PIECE, ph, sizeof(ph), fd, off, n, &resp);
		off += n;
		if (st == 0 && o != NULL && o->progress != NULL)
			o->progress(o->progress_arg, off, size);
	}
	ferry_buf_reset(&resp);
	if (st == 0 && (st = handle_call(fs, FS_OP_UPLOAD_COMMIT, handle, &resp)) == 0)
		st = upload_answer(&resp, id);
	else if (handle != 0 && st != -ENOSPC)
		handle_call(fs, FS_OP_UPLOAD_ABORT, handle, &resp); /* best effort */
	ferry_buf_fini(&resp);
	return st;
}

int ferryfs_upload_fd(ferryfs *fs, int fd, uint64_t size, const ferryfs_upload_opts *uo,
                      char id[FERRYFS_ID_MAX])
{
	ferryfs_upload_opts o = {0};
	if (uo != NULL)
		memcpy(&o, uo,
		       uo->size < sizeof(o) && uo->size > 0 ? uo->size : sizeof(o));
	const char *ext = o.ext != NULL ? o.ext : "";
	if (!fs_ext_valid(ext, strlen(ext)) ||
	    (o.group != NULL && !fs_group_valid(o.group, strlen(o.group))))
		return fail(fs, -EINVAL, "upload: bad extension or group");
	int st = locate(fs, o.group, NULL);
	if (st != 0)
		return fail(fs, st, "upload: finding a server");
	uint8_t store =
	        o.store > 0 && o.store <= 255 ? (uint8_t)(o.store - 1) : fs->store;
	uint8_t flags = o.appender ? FS_UPLOAD_APPENDER : 0;
	uint8_t hdr[FS_UPLOAD_FIXED_BYTES + FS_EXT_MAX];
	int hl = fs_enc_upload(hdr, sizeof(hdr), flags, store, size, ext);
	ferry_buf resp;
	ferry_buf_init(&resp);
	if (size + FS_UPLOAD_FIXED_BYTES + FS_EXT_MAX <= FS_PIECE_BYTES) {
		st = call(fs, FS_OP_UPLOAD, hdr, (size_t)hl, fd, 0, size, &resp);
		if (st == 0)
			st = upload_answer(&resp, id);
	} else {
		st = upload_pieces(fs, fd, size, hdr, (size_t)hl, &o, id);
	}
	ferry_buf_fini(&resp);
	return st != 0 ? fail(fs, st, "upload to %s", fs->server) : 0;
}

int ferryfs_upload_path(ferryfs *fs, const char *path, const ferryfs_upload_opts *o,
                        char id[FERRYFS_ID_MAX])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		int rc = -errno;
		if (fd >= 0)
			close(fd);
		return fail(fs, rc, "%s", path);
	}
	int rc = ferryfs_upload_fd(fs, fd, (uint64_t)st.st_size, o, id);
	close(fd);
	return rc;
}

/* Memory goes through a sealed memfd: one path for every size, and file
 * regions keep the send zero-copy where the transport can. */
int ferryfs_upload_mem(ferryfs *fs, const void *p, size_t n, const ferryfs_upload_opts *o,
                       char id[FERRYFS_ID_MAX])
{
	int fd = memfd_create("ferryfs-upload", MFD_CLOEXEC);
	if (fd < 0)
		return fail(fs, -errno, "upload: memfd_create");
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, (const uint8_t *)p + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int rc = w < 0 ? -errno : -EIO;
			close(fd);
			return fail(fs, rc, "upload: staging");
		}
		off += (size_t)w;
	}
	int rc = ferryfs_upload_fd(fs, fd, n, o, id);
	close(fd);
	return rc;
}

/* Downloads, info, delete ----------------------------------------------------------*/

static int decode(ferryfs *fs, const char *id, fs_fid *f)
{
	int e = fs_fid_decode(id, strlen(id), f);
	if (e != 0) {
		if (fs != NULL)
			snprintf(fs->errmsg, sizeof(fs->errmsg), "%s: %s", id,
			         fs_fid_strerror(e));
		return -EINVAL;
	}
	return 0;
}

/* An ID request on the server holding id. */
static int id_call(ferryfs *fs, uint16_t op, const char *id, ferry_buf *resp)
{
	int st = locate(fs, NULL, id);
	if (st != 0)
		return st;
	int n = fs_enc_id_req(fs->msg, sizeof(fs->msg), id);
	return call(fs, op, fs->msg, (size_t)n, -1, 0, 0, resp);
}

static int info_call(ferryfs *fs, const char *id, fs_info *in)
{
	ferry_buf resp;
	ferry_buf_init(&resp);
	int st = id_call(fs, FS_OP_INFO, id, &resp);
	uint8_t head[FS_INFO_RESP_BYTES];
	if (st == 0 &&
	    (ferry_buf_copy_out(&resp, 0, sizeof(head), head) != sizeof(head) ||
	     fs_dec_info(head, sizeof(head), ferry_buf_len(&resp), in) != 0))
		st = -EBADMSG;
	ferry_buf_fini(&resp);
	return st;
}

int ferryfs_stat(ferryfs *fs, const char *id, ferryfs_info *out)
{
	fs_fid f;
	memset(out, 0, sizeof(*out));
	if (decode(fs, id, &f) != 0)
		return -EINVAL;
	snprintf(out->group, sizeof(out->group), "%s", f.group);
	out->store = f.store;
	out->source = f.source;
	out->ctime = f.ctime;
	out->size_at_upload = f.size;
	out->crc32 = f.crc32;
	out->appender = f.appender;
	if (fs == NULL)
		return 0;
	fs_info in;
	int st = info_call(fs, id, &in);
	if (st != 0)
		return fail(fs, st, "info %s", id);
	out->from_server = true;
	out->size = in.size;
	out->mtime = in.mtime_s;
	return 0;
}

int ferryfs_delete(ferryfs *fs, const char *id)
{
	fs_fid f;
	if (decode(fs, id, &f) != 0)
		return -EINVAL;
	ferry_buf resp;
	ferry_buf_init(&resp);
	int st = id_call(fs, FS_OP_DELETE, id, &resp);
	ferry_buf_fini(&resp);
	return st != 0 ? fail(fs, st, "delete %s", id) : 0;
}

int ferryfs_download_fd(ferryfs *fs, const char *id, uint64_t off, uint64_t len, int fd,
                        int64_t fd_off, uint64_t *written, ferryfs_progress_cb progress,
                        void *progress_arg)
{
	fs_fid f;
	*written = 0;
	if (decode(fs, id, &f) != 0)
		return -EINVAL;
	int st = locate(fs, NULL, id);
	if (st != 0)
		return fail(fs, st, "download %s: finding its server", id);
	/* The size is known from the ID; an appender's is asked (it may have
	 * grown). Over FS_PIECE_BYTES the object comes as ranges, each
	 * written at its offset. */
	uint64_t want = len != 0 ? len : f.appender || off > f.size ? 0 : f.size - off;
	fs_info in;
	if (len == 0 && f.appender && info_call(fs, id, &in) == 0)
		want = in.size > off ? in.size - off : 0;
	uint64_t got = 0;
	do {
		uint64_t n = want - got < FS_PIECE_BYTES ? want - got : FS_PIECE_BYTES;
		if (want == 0)
			n = len; /* 0: to the end, in one answer */
		int k = fs_enc_download(fs->msg, sizeof(fs->msg), id, off + got, n);
		ferry_buf req;
		ferry_buf_init(&req);
		ferry_buf_append(&req, fs->msg, (size_t)k);
		ferry_fd_sink sink = {.fd = fd,
		                      .off = fd_off < 0 ? -1 : fd_off + (int64_t)got};
		st = ferry_call_into_fd_sync(fs->s, FS_OP_DOWNLOAD, &req, &sink,
		                             fs->timeout_us);
		ferry_buf_fini(&req);
		/* an object that is not an appender cannot change: its ID says
		 * how many bytes must come */
		if (st == 0 && want != 0 && sink.written != n)
			st = -EIO;
		got += sink.written;
		if (st == 0 && want != 0 && progress != NULL)
			progress(progress_arg, got, want);
	} while (st == 0 && got < want);
	*written = got;
	return st != 0 ? fail(fs, st, "download %s from %s", id, fs->server) : 0;
}

int ferryfs_download_path(ferryfs *fs, const char *id, const char *path,
                          ferryfs_progress_cb progress, void *progress_arg)
{
	fs_fid f;
	if (decode(fs, id, &f) != 0)
		return -EINVAL;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return fail(fs, -errno, "%s", path);
	uint64_t w;
	int rc = ferryfs_download_fd(fs, id, 0, 0, fd, 0, &w, progress, progress_arg);
	if (close(fd) != 0 && rc == 0)
		rc = fail(fs, -errno, "%s", path);
	if (rc != 0)
		unlink(path);
	return rc;
}

int ferryfs_download_mem(ferryfs *fs, const char *id, uint64_t off, void *buf, size_t cap,
                         size_t *got)
{
	*got = 0;
	int fd = memfd_create("ferryfs-download", MFD_CLOEXEC);
	if (fd < 0)
		return fail(fs, -errno, "download: memfd_create");
	uint64_t w = 0;
	int rc = ferryfs_download_fd(fs, id, off, cap, fd, 0, &w, NULL, NULL);
	if (rc == -EINVAL && cap > 0) {
		/* a range past the end: ask for what there is */
		ferryfs_info in;
		if (ferryfs_stat(fs, id, &in) == 0 && off <= in.size)
			rc = in.size == off
			             ? 0
			             : ferryfs_download_fd(
			                       fs, id, off,
			                       in.size - off < cap ? in.size - off : cap,
			                       fd, 0, &w, NULL, NULL);
	}
	if (rc == 0 && w > 0 && pread(fd, buf, (size_t)w, 0) != (ssize_t)w)
		rc = fail(fs, -EIO, "download %s: reading back", id);
	close(fd);
	if (rc == 0)
		*got = (size_t)w;
	return rc;
}

/* Appender objects and metadata ------------------------------------------------------*/

static int modify_fd(ferryfs *fs, uint16_t op, const char *id, uint64_t at, int fd,
                     uint64_t size)
{
	fs_fid f;
	if (decode(fs, id, &f) != 0)
		return -EINVAL;
	int st = locate(fs, NULL, id);
	for (uint64_t off = 0; st == 0 && off < size;) {
		uint64_t n = size - off < FS_PIECE_BYTES ? size - off : FS_PIECE_BYTES;
		int hl = op == FS_OP_WRITE
		                 ? fs_enc_mod(fs->msg, sizeof(fs->msg), id, at + off)
		                 : fs_enc_append(fs->msg, sizeof(fs->msg), id);
		ferry_buf resp;
		ferry_buf_init(&resp);
		st = call(fs, op, fs->msg, (size_t)hl, fd, off, n, &resp);
		ferry_buf_fini(&resp);
		off += n;
	}
	return st != 0 ? fail(fs, st, "%s %s", fs_op_name(op), id) : 0;
}

int ferryfs_append_fd(ferryfs *fs, const char *id, int fd, uint64_t size)
{
	return modify_fd(fs, FS_OP_APPEND, id, 0, fd, size);
}

int ferryfs_write_fd(ferryfs *fs, const char *id, uint64_t off, int fd, uint64_t size)
{
	return modify_fd(fs, FS_OP_WRITE, id, off, fd, size);
}

int ferryfs_truncate(ferryfs *fs, const char *id, uint64_t size)
{
	fs_fid f;
	if (decode(fs, id, &f) != 0)
		return -EINVAL;
	int st = locate(fs, NULL, id);
	if (st == 0) {
		int hl = fs_enc_mod(fs->msg, sizeof(fs->msg), id, size);
		ferry_buf resp;
		ferry_buf_init(&resp);
		st = call(fs, FS_OP_TRUNCATE, fs->msg, (size_t)hl, -1, 0, 0, &resp);
		ferry_buf_fini(&resp);
	}
	return st != 0 ? fail(fs, st, "truncate %s", id) : 0;
}

#define FSC_META_BYTES (2 + FS_META_PAIRS_MAX * (3 + FS_META_KEY_MAX + FS_META_VALUE_MAX))

int ferryfs_meta_set(ferryfs *fs, const char *id, const ferryfs_meta *pairs, int n,
                     bool merge)
{
	fs_fid f;
	if (decode(fs, id, &f) != 0)
		return -EINVAL;
	if (n < 0 || n > FS_META_PAIRS_MAX)
		return fail(fs, -EINVAL, "meta set %s: %d pairs", id, n);
	fs_meta_pair *p = calloc((size_t)(n > 0 ? n : 1), sizeof(*p));
	uint8_t *buf = malloc(FSC_META_BYTES);
	int st = p == NULL || buf == NULL ? -ENOMEM : 0;
	for (int i = 0; st == 0 && i < n; i++) {
		size_t kl = strlen(pairs[i].key);
		if (!fs_meta_key_valid(pairs[i].key, kl) ||
		    pairs[i].len > FS_META_VALUE_MAX) {
			st = -EINVAL;
			break;
		}
		memcpy(p[i].key, pairs[i].key, kl + 1);
		p[i].vlen = (uint16_t)pairs[i].len;
		memcpy(p[i].value, pairs[i].value, pairs[i].len);
	}
	int k = st == 0 ? fs_enc_meta(buf, FSC_META_BYTES, p, (unsigned)n) : -1;
	if (st == 0 && k < 0)
		st = -EINVAL;
	if (st == 0)
		st = locate(fs, NULL, id);
	if (st == 0) {
		int hl = fs_enc_meta_set_hdr(fs->msg, sizeof(fs->msg), id, merge);
		ferry_buf req, resp;
		ferry_buf_init(&req);
		ferry_buf_init(&resp);
		ferry_buf_append(&req, fs->msg, (size_t)hl);
		ferry_buf_append(&req, buf, (size_t)k);
		st = ferry_call_sync(fs->s, FS_OP_META_SET, &req, &resp, fs->timeout_us);
		ferry_buf_fini(&req);
		ferry_buf_fini(&resp);
	}
	free(p);
	free(buf);
	return st != 0 ? fail(fs, st, "meta set %s", id) : 0;
}

int ferryfs_meta_get(ferryfs *fs, const char *id, ferryfs_meta *pairs, int max, int *n)
{
	fs_fid f;
	*n = 0;
	if (decode(fs, id, &f) != 0)
		return -EINVAL;
	ferry_buf resp;
	ferry_buf_init(&resp);
	int st = id_call(fs, FS_OP_META_GET, id, &resp);
	size_t len = ferry_buf_len(&resp);
	fs_meta_pair *p = malloc(FS_META_PAIRS_MAX * sizeof(*p));
	uint8_t *buf = malloc(FSC_META_BYTES);
	int k = 0;
	if (st == 0 && (p == NULL || buf == NULL))
		st = -ENOMEM;
	if (st == 0 && (len > FSC_META_BYTES ||
	                ferry_buf_copy_out(&resp, 0, len, buf) != (ssize_t)len ||
	                (k = fs_dec_meta(buf, len, p, FS_META_PAIRS_MAX)) < 0))
		st = -EBADMSG;
	for (int i = 0; st == 0 && i < k && i < max; i++) {
		snprintf(pairs[i].key, sizeof(pairs[i].key), "%s", p[i].key);
		pairs[i].len = p[i].vlen;
		memcpy(pairs[i].value, p[i].value, p[i].vlen);
		(*n)++;
	}
	ferry_buf_fini(&resp);
	free(p);
	free(buf);
	return st != 0 ? fail(fs, st, "meta get %s", id) : 0;
}

int ferryfs_servers(ferryfs *fs, ferryfs_server *out, int max, int *n)
{
	*n = 0;
	if (fs->ntrackers == 0)
		return fail(fs, -EINVAL, "servers: no tracker given");
	ferry_buf resp;
	ferry_buf_init(&resp);
	const uint8_t list[] = {FS_PROTO_VERSION, 0, 0, 0};
	int st = tracker_call(fs, FS_OP_LIST, list, sizeof(list), &resp);
	size_t len = ferry_buf_len(&resp);
	uint8_t *body = st == 0 && len >= 2 ? malloc(len) : NULL;
	if (st == 0 &&
	    (body == NULL || ferry_buf_copy_out(&resp, 0, len, body) != (ssize_t)len))
		st = -EBADMSG;
	ferry_buf_fini(&resp);
	size_t off = 2;
	unsigned count = st == 0 ? fs_get16(body) : 0;
	for (unsigned i = 0; st == 0 && i < count; i++) {
		fs_server sv;
		int k = fs_dec_server(body + off, len - off, &sv);
		if (k < 0) {
			st = -EBADMSG;
			break;
		}
		off += (size_t)k;
		if ((int)i >= max)
			continue;
		ferryfs_server *o = &out[i];
		memset(o, 0, sizeof(*o));
		snprintf(o->group, sizeof(o->group), "%s", sv.group);
		o->id = sv.id;
		o->state = sv.state;
		o->beat_ms = sv.age_ms == UINT32_MAX ? -1 : (int64_t)sv.age_ms;
		o->load = sv.load;
		o->ops = sv.ops;
		o->nlocs = sv.nlocs;
		o->nstores = sv.nstores;
		memcpy(o->locs, sv.locs, sizeof(o->locs));
		memcpy(o->free_bytes, sv.free_bytes, sizeof(o->free_bytes));
		memcpy(o->total_bytes, sv.total_bytes, sizeof(o->total_bytes));
		(*n)++;
	}
	free(body);
	return st != 0 ? fail(fs, st, "servers") : 0;
}
