/* ferryfs: the command-line client (docs/ferryfs/CLI.md).
 *
 *   ferryfs WHERE upload FILE [--ext EXT] [--appender] [--store N] [--group G]
 *   ferryfs WHERE download ID OUT [--offset N] [--length N]
 *   ferryfs WHERE delete ID
 *   ferryfs [WHERE] info ID
 *   ferryfs --tracker LOCATOR monitor [--json]
 *
 * WHERE is --tracker LOCATOR (repeatable: tried in order until one
 * answers), which finds the storage server, or --server LOCATOR, a storage
 * server itself. Exit codes: 0 done; 1 the call failed (the message says
 * why); 2 usage, or a malformed file ID; 3 no such object; 4 no space on
 * the server; 5 no server for it (offline, or no tracker answered); 6 the
 * group is read-only (below its reserved space). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry/buf.h"
#include "ferry/err.h"
#include "ferry/rpc.h"
#include "proto/wire.h"

#define CLI_TIMEOUT_US    60000000ull
#define CLI_TRACKER_US    3000000ull
#define CLI_TRACKERS_MAX  8
#define CLI_TRACKER_BYTES 8192
#define CLI_PROGRESS_MIN  (8u << 20) /* a progress line from this size up */

enum {
	EX_OK = 0,
	EX_FAILED = 1,
	EX_USAGE = 2,
	EX_NOENT = 3,
	EX_NOSPC = 4,
	EX_NOSERVER = 5,
	EX_READONLY = 6
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: ferryfs WHERE upload FILE [--ext EXT] [--appender] [--store N] "
	        "[--group G]\n"
	        "       ferryfs WHERE download ID OUT [--offset N] [--length N]\n"
	        "       ferryfs WHERE delete ID\n"
	        "       ferryfs [WHERE] info ID\n"
	        "       ferryfs WHERE append ID FILE\n"
	        "       ferryfs WHERE write ID OFFSET FILE\n"
	        "       ferryfs WHERE truncate ID SIZE\n"
	        "       ferryfs WHERE meta set ID [--merge] KEY=VALUE ...\n"
	        "       ferryfs WHERE meta get ID [--json]\n"
	        "       ferryfs --tracker LOCATOR monitor [--json]\n"
	        "WHERE: --tracker LOCATOR (repeatable, tried in order) or --server LOCATOR\n"
	        "(a storage server). --transport NAME picks which of a storage server's\n"
	        "locators to use (default: the tracker locator's, e.g. tcp).\n"
	        "upload prints the new object's file ID. OUT '-' is standard output.\n"
	        "info decodes the ID here; with WHERE it also asks the server.\n"
	        "Exit: 0 done, 1 the call failed, 2 usage or a malformed ID,\n"
	        "3 no such object, 4 no space on the server, 5 no server for it,\n"
	        "6 the group is read-only.\n");
}

static int exit_for(int status)
{
	switch (status) {
	case -ENOENT:
		return EX_NOENT;
	case -ENOSPC:
		return EX_NOSPC;
	case -EHOSTDOWN:
		return EX_NOSERVER;
	case -EROFS:
		return EX_READONLY;
	default:
		return EX_FAILED;
	}
}

static const char *why(int status)
{
	switch (status) {
	case -EBADMSG:
		return "the server refused the message as malformed";
	case -EPROTONOSUPPORT:
		return "the server speaks another protocol version";
	case -ENXIO:
		return "not this server's group or store path";
	case -EINVAL:
		return "malformed file ID, or a range past the end";
	case -EFBIG:
		return "over one message: ask for a range";
	case -EHOSTDOWN:
		return "no storage server online for it";
	case -EROFS:
		return "the group is read-only (below its reserved space)";
	case -EPERM:
		return "not an appender object (upload it with --appender)";
	default:
		return status < 0 && status > -4096 ? strerror(-status)
		                                    : ferry_strerror(status);
	}
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

typedef struct cli {
	const char *server;
	const char *tracker[CLI_TRACKERS_MAX];
	int ntrackers;
	const char *transport;       /* which storage locator to use */
	char picked[FS_LOC_MAX + 1]; /* the storage server a tracker named */
	uint8_t store;               /* ... and its store path for an upload */
	ferry_ctx *ctx;
	ferry_session *s;
} cli;

static int cli_ctx(cli *c)
{
	int rc = c->ctx != NULL ? 0 : ferry_ctx_create(NULL, &c->ctx);
	if (rc != 0)
		fprintf(stderr, "ferryfs: %s\n", ferry_strerror(rc));
	return rc;
}

/* Ask the trackers in order until one answers (a failed transport moves
 * on; an answer, even an error, is final). The answer's body in *resp. */
static int tracker_call(cli *c, uint16_t op, const uint8_t *msg, size_t n,
                        ferry_buf *resp)
{
	int st = -EHOSTDOWN;
	if (cli_ctx(c) != 0)
		return -ENOMEM;
	for (int i = 0; i < c->ntrackers; i++) {
		ferry_session *s;
		if (ferry_session_open(c->ctx, c->tracker[i], &s) != 0) {
			fprintf(stderr, "ferryfs: tracker %s: %s\n", c->tracker[i],
			        ferry_ctx_errmsg(c->ctx));
			continue;
		}
		ferry_buf req;
		ferry_buf_init(&req);
		ferry_buf_append(&req, msg, n);
		ferry_buf_reset(resp);
		st = ferry_call_sync(s, op, &req, resp, CLI_TRACKER_US);
		ferry_buf_fini(&req);
		ferry_session_close(s);
		if (st == 0 || st > -10000)
			return st; /* an answer (the tracker's own status is an errno) */
		fprintf(stderr, "ferryfs: tracker %s: %s%s\n", c->tracker[i],
		        ferry_strerror(st),
		        i + 1 < c->ntrackers ? ", trying the next" : "");
		st = -EHOSTDOWN;
	}
	return st;
}

/* The locator of sv to use: --transport's, else the one on the tracker's
 * transport, else the first. */
static const char *pick_loc(const cli *c, const fs_server *sv)
{
	char want[32];
	const char *t = c->transport != NULL ? c->transport : c->tracker[0];
	snprintf(want, sizeof(want), "%.*s:", (int)strcspn(t, ":"), t);
	for (int i = 0; i < sv->nlocs; i++)
		if (strncmp(sv->locs[i], want, strlen(want)) == 0)
			return sv->locs[i];
	return c->transport != NULL ? NULL : sv->locs[0];
}

/* Where an upload goes (group may be ""), or who holds id: c->picked. */
static int tracker_locate(cli *c, const char *group, const char *id)
{
	uint8_t m[FS_DECODE_MAX];
	int n = id != NULL ? fs_enc_id_req(m, sizeof(m), id)
	                   : fs_enc_query_store(m, sizeof(m), group);
	ferry_buf resp;
	ferry_buf_init(&resp);
	int st = tracker_call(c, id != NULL ? FS_OP_QUERY_FETCH : FS_OP_QUERY_STORE, m,
	                      (size_t)n, &resp);
	static uint8_t body[CLI_TRACKER_BYTES];
	fs_server sv;
	if (st == 0) {
		ssize_t got = ferry_buf_copy_out(&resp, 0,
		                                 ferry_buf_len(&resp) < sizeof(body)
		                                         ? ferry_buf_len(&resp)
		                                         : sizeof(body),
		                                 body);
		if (got < 0 ||
		    fs_dec_server(body, (size_t)got, &sv) != (int)ferry_buf_len(&resp) ||
		    sv.nlocs == 0)
			st = -EBADMSG;
	}
	ferry_buf_fini(&resp);
	if (st != 0)
		return st;
	const char *loc = pick_loc(c, &sv);
	if (loc == NULL) {
		fprintf(stderr, "ferryfs: server %s/%u has no %s locator\n", sv.group,
		        sv.id, c->transport);
		return -ENXIO;
	}
	snprintf(c->picked, sizeof(c->picked), "%s", loc);
	c->server = c->picked;
	c->store = sv.store;
	return 0;
}

static int cli_open(cli *c)
{
	if (c->server == NULL) {
		fprintf(stderr,
		        "ferryfs: --server LOCATOR or --tracker LOCATOR is needed\n");
		return EX_USAGE;
	}
	int rc = cli_ctx(c);
	if (rc == 0 && (rc = ferry_session_open(c->ctx, c->server, &c->s)) != 0) {
		fprintf(stderr, "ferryfs: %s: %s\n", c->server, ferry_ctx_errmsg(c->ctx));
		return EX_USAGE;
	}
	if (rc != 0) {
		fprintf(stderr, "ferryfs: %s\n", ferry_strerror(rc));
		return EX_FAILED;
	}
	return EX_OK;
}

/* A progress line on a terminal for transfers over a few MiB. */
typedef struct progress {
	const char *what;
	uint64_t total;
	struct timespec t0;
	bool on;
} progress;

static void progress_start(progress *p, const char *what, uint64_t total)
{
	p->what = what;
	p->total = total;
	p->on = total >= CLI_PROGRESS_MIN && isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &p->t0);
}

static void progress_show(const progress *p, uint64_t done)
{
	if (!p->on)
		return;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	double s = (double)(t.tv_sec - p->t0.tv_sec) + (t.tv_nsec - p->t0.tv_nsec) / 1e9;
	fprintf(stderr, "\r%s %3d%% %" PRIu64 "/%" PRIu64 " MiB %.0f MB/s ", p->what,
	        (int)(done * 100 / p->total), done >> 20, p->total >> 20,
	        s > 0 ? (double)done / s / 1e6 : 0.0);
	if (done == p->total)
		fputc('\n', stderr);
}

/* The ID in an upload's (or commit's) answer. */
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

/* One message: header, then the file as a region (sendfile on splice). */
static int upload_whole(cli *c, int fd, uint64_t size, uint8_t flags, uint8_t store,
                        const char *ext, char *id)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	uint8_t *h = ferry_buf_alloc(&req, FS_UPLOAD_FIXED_BYTES + strlen(ext));
	fs_enc_upload(h, FS_UPLOAD_FIXED_BYTES + strlen(ext), flags, store, size, ext);
	if (size > 0)
		ferry_buf_append_file(&req, fd, 0, (size_t)size);
	int st = ferry_call_sync(c->s, FS_OP_UPLOAD, &req, &resp, CLI_TIMEOUT_US);
	if (st == 0)
		st = upload_answer(&resp, id);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	return st;
}

/* A small request with a handle (commit, abort). */
static int handle_call(cli *c, uint16_t op, uint64_t handle, ferry_buf *resp)
{
	ferry_buf req;
	ferry_buf_init(&req);
	uint8_t *h = ferry_buf_alloc(&req, FS_HANDLE_REQ_BYTES);
	fs_enc_handle_req(h, FS_HANDLE_REQ_BYTES, handle);
	int st = ferry_call_sync(c->s, op, &req, resp, CLI_TIMEOUT_US);
	ferry_buf_fini(&req);
	return st;
}

/* Over one message: begin, FS_PIECE_BYTES at a time in order, commit; on a
 * failure the server is told to drop what it has (abort). */
static int upload_pieces(cli *c, int fd, uint64_t size, uint8_t flags, uint8_t store,
                         const char *ext, char *id)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	uint8_t *h = ferry_buf_alloc(&req, FS_UPLOAD_FIXED_BYTES + strlen(ext));
	fs_enc_upload(h, FS_UPLOAD_FIXED_BYTES + strlen(ext), flags, store, size, ext);
	int st = ferry_call_sync(c->s, FS_OP_UPLOAD_BEGIN, &req, &resp, CLI_TIMEOUT_US);
	uint64_t handle = 0;
	uint8_t b[FS_BEGIN_RESP_BYTES];
	if (st == 0 &&
	    (ferry_buf_copy_out(&resp, 0, sizeof(b), b) != sizeof(b) ||
	     fs_dec_begin_resp(b, sizeof(b), ferry_buf_len(&resp), &handle) != 0))
		st = -EBADMSG;
	progress p;
	progress_start(&p, "upload", size);
	for (uint64_t off = 0; st == 0 && off < size;) {
		uint64_t n = size - off < FS_PIECE_BYTES ? size - off : FS_PIECE_BYTES;
		ferry_buf_reset(&req);
		ferry_buf_reset(&resp);
		h = ferry_buf_alloc(&req, FS_PIECE_FIXED_BYTES);
		fs_enc_piece(h, FS_PIECE_FIXED_BYTES, handle, off);
		ferry_buf_append_file(&req, fd, (off_t)off, (size_t)n);
		st = ferry_call_sync(c->s, FS_OP_UPLOAD_PIECE, &req, &resp,
		                     CLI_TIMEOUT_US);
		off += n;
		if (st == 0)
			progress_show(&p, off);
	}
	ferry_buf_reset(&resp);
	if (st == 0 && (st = handle_call(c, FS_OP_UPLOAD_COMMIT, handle, &resp)) == 0)
		st = upload_answer(&resp, id);
	else if (handle != 0 && st != -ENOSPC)
		handle_call(c, FS_OP_UPLOAD_ABORT, handle, &resp); /* best effort */
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	return st;
}

static int cmd_upload(cli *c, int argc, char **argv)
{
	const char *file = NULL, *ext = "", *group = "";
	uint8_t flags = 0, store = FS_STORE_ANY;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--ext") == 0 && i + 1 < argc)
			ext = argv[++i];
		else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc)
			group = argv[++i];
		else if (strcmp(argv[i], "--appender") == 0)
			flags |= FS_UPLOAD_APPENDER;
		else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc)
			store = (uint8_t)atoi(argv[++i]);
		else if (file == NULL)
			file = argv[i];
		else
			return usage(stderr), EX_USAGE;
	}
	if (file == NULL)
		return usage(stderr), EX_USAGE;
	if (!fs_ext_valid(ext, strlen(ext))) {
		fprintf(stderr, "ferryfs: --ext %s: 1-6 of A-Z a-z 0-9\n", ext);
		return EX_USAGE;
	}
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "ferryfs: %s: %s\n", file, strerror(errno));
		return EX_FAILED;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (!fs_group_valid(group, strlen(group)) && group[0] != '\0') {
		fprintf(stderr, "ferryfs: --group %s: 1-16 of A-Z a-z 0-9 _ -\n", group);
		return EX_USAGE;
	}
	if (c->server == NULL && c->ntrackers > 0) {
		int st = tracker_locate(c, group, NULL);
		if (st != 0) {
			fprintf(stderr, "ferryfs: upload %s: %s\n", file, why(st));
			close(fd);
			return exit_for(st);
		}
		if (store == FS_STORE_ANY)
			store = c->store;
	}
	int rc = cli_open(c);
	if (rc != EX_OK) {
		close(fd);
		return rc;
	}
	char id[FS_FID_MAX];
	int st_ = size + FS_UPLOAD_FIXED_BYTES + FS_EXT_MAX <= FS_PIECE_BYTES
	                  ? upload_whole(c, fd, size, flags, store, ext, id)
	                  : upload_pieces(c, fd, size, flags, store, ext, id);
	close(fd);
	if (st_ != 0) {
		fprintf(stderr, "ferryfs: upload %s: %s\n", file, why(st_));
		return exit_for(st_);
	}
	printf("%s\n", id);
	return EX_OK;
}

static int decode_id(const char *id, fs_fid *f)
{
	int e = fs_fid_decode(id, strlen(id), f);
	if (e != 0)
		fprintf(stderr, "ferryfs: %s: %s\n", id, fs_fid_strerror(e));
	return e;
}

/* The storage server for an ID: --server, or the trackers' answer. An
 * exit code (EX_OK when c->server is set). */
static int locate_id(cli *c, const char *what, const char *id)
{
	if (c->server != NULL || c->ntrackers == 0)
		return EX_OK;
	int st = tracker_locate(c, NULL, id);
	if (st != 0) {
		fprintf(stderr, "ferryfs: %s %s: %s\n", what, id, why(st));
		return exit_for(st);
	}
	return EX_OK;
}

/* INFO on the open session: 0 or the status. */
static int session_info(cli *c, const char *id, fs_info *in)
{
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	size_t hl = FS_ID_REQ_FIXED_BYTES + strlen(id);
	fs_enc_id_req(ferry_buf_alloc(&req, hl), hl, id);
	int st = ferry_call_sync(c->s, FS_OP_INFO, &req, &resp, CLI_TIMEOUT_US);
	uint8_t head[FS_INFO_RESP_BYTES];
	if (st == 0 &&
	    (ferry_buf_copy_out(&resp, 0, sizeof(head), head) != sizeof(head) ||
	     fs_dec_info(head, sizeof(head), ferry_buf_len(&resp), in) != 0))
		st = -EBADMSG;
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	return st;
}

static int cmd_download(cli *c, int argc, char **argv)
{
	const char *id = NULL, *out = NULL;
	uint64_t off = 0, len = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--offset") == 0 && i + 1 < argc) {
			if (parse_u64(argv[++i], &off) != 0)
				return usage(stderr), EX_USAGE;
		} else if (strcmp(argv[i], "--length") == 0 && i + 1 < argc) {
			if (parse_u64(argv[++i], &len) != 0)
				return usage(stderr), EX_USAGE;
		} else if (id == NULL)
			id = argv[i];
		else if (out == NULL)
			out = argv[i];
		else
			return usage(stderr), EX_USAGE;
	}
	fs_fid f;
	if (id == NULL || out == NULL)
		return usage(stderr), EX_USAGE;
	if (decode_id(id, &f) != 0)
		return EX_USAGE;
	int rc = locate_id(c, "download", id);
	if (rc == EX_OK)
		rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	int fd = strcmp(out, "-") == 0
	                 ? STDOUT_FILENO
	                 : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "ferryfs: %s: %s\n", out, strerror(errno));
		return EX_FAILED;
	}
	/* The whole size is known from the ID (an appender's may have grown:
	 * that one is asked for in one go, as far as one message goes). Over
	 * FS_PIECE_BYTES the object comes as ranges, each written at its
	 * offset. */
	uint64_t want = len != 0 ? len : f.appender || off > f.size ? 0 : f.size - off;
	fs_info in;
	if (len == 0 && f.appender && session_info(c, id, &in) == 0)
		want = in.size > off ? in.size - off : 0; /* as it is now */
	int st_ = 0;
	uint64_t got = 0;
	progress p;
	progress_start(&p, "download", want);
	do {
		uint64_t n = want - got < FS_PIECE_BYTES ? want - got : FS_PIECE_BYTES;
		if (want == 0)
			n = len; /* 0: to the end, in one answer */
		ferry_buf req;
		ferry_buf_init(&req);
		uint8_t *h = ferry_buf_alloc(&req, FS_DL_FIXED_BYTES + strlen(id));
		fs_enc_download(h, FS_DL_FIXED_BYTES + strlen(id), id, off + got, n);
		ferry_fd_sink sink = {.fd = fd,
		                      .off = fd == STDOUT_FILENO ? -1 : (int64_t)got};
		st_ = ferry_call_into_fd_sync(c->s, FS_OP_DOWNLOAD, &req, &sink,
		                              CLI_TIMEOUT_US);
		ferry_buf_fini(&req);
		/* an object that is not an appender cannot change: its ID says
		 * how many bytes must come */
		if (st_ == 0 && want != 0 && sink.written != n)
			st_ = -EIO;
		got += sink.written;
		if (st_ == 0 && want != 0)
			progress_show(&p, got);
	} while (st_ == 0 && got < want);
	if (fd != STDOUT_FILENO && close(fd) != 0 && st_ == 0)
		st_ = -errno;
	if (st_ != 0) {
		fprintf(stderr, "ferryfs: download %s: %s\n", id, why(st_));
		if (fd != STDOUT_FILENO)
			unlink(out);
		return exit_for(st_);
	}
	return EX_OK;
}

/* An ID request (delete, info) to the storage server for id, found by
 * --server or the trackers: the call's status, the answer in *resp; an
 * exit code other than EX_OK in *ex when the server could not be had. */
static int id_call(cli *c, uint16_t op, const char *what, const char *id, ferry_buf *resp,
                   int *ex)
{
	*ex = locate_id(c, what, id);
	if (*ex == EX_OK)
		*ex = cli_open(c);
	if (*ex != EX_OK)
		return 0;
	ferry_buf req;
	ferry_buf_init(&req);
	uint8_t *h = ferry_buf_alloc(&req, FS_ID_REQ_FIXED_BYTES + strlen(id));
	fs_enc_id_req(h, FS_ID_REQ_FIXED_BYTES + strlen(id), id);
	int st = ferry_call_sync(c->s, op, &req, resp, CLI_TIMEOUT_US);
	ferry_buf_fini(&req);
	if (st != 0)
		fprintf(stderr, "ferryfs: %s %s: %s\n", what, id, why(st));
	return st;
}

static int cmd_delete(cli *c, int argc, char **argv)
{
	fs_fid f;
	if (argc != 1)
		return usage(stderr), EX_USAGE;
	if (decode_id(argv[0], &f) != 0)
		return EX_USAGE;
	ferry_buf resp;
	ferry_buf_init(&resp);
	int ex, st = id_call(c, FS_OP_DELETE, "delete", argv[0], &resp, &ex);
	ferry_buf_fini(&resp);
	return ex != EX_OK ? ex : st != 0 ? exit_for(st) : EX_OK;
}

static void print_time(const char *label, uint64_t s)
{
	char buf[64];
	time_t t = (time_t)s;
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", localtime(&t));
	printf("%-14s %s\n", label, buf);
}

static int cmd_info(cli *c, int argc, char **argv)
{
	fs_fid f;
	if (argc != 1)
		return usage(stderr), EX_USAGE;
	if (decode_id(argv[0], &f) != 0)
		return EX_USAGE;
	printf("%-14s %s\n%-14s M%02X\n%-14s %u\n", "group", f.group, "store path",
	       f.store, "source server", f.source);
	print_time("created", f.ctime);
	printf("%-14s %" PRIu64 "\n%-14s %08x\n%-14s %s\n", "size at upload", f.size,
	       "crc32", f.crc32, "appender", f.appender ? "yes" : "no");
	if (c->server == NULL && c->ntrackers == 0)
		return EX_OK;
	ferry_buf resp;
	ferry_buf_init(&resp);
	int ex, st = id_call(c, FS_OP_INFO, "info", argv[0], &resp, &ex);
	uint8_t head[FS_INFO_RESP_BYTES];
	fs_info in;
	if (ex == EX_OK && st == 0 &&
	    (ferry_buf_copy_out(&resp, 0, sizeof(head), head) != sizeof(head) ||
	     fs_dec_info(head, sizeof(head), ferry_buf_len(&resp), &in) != 0)) {
		st = -EBADMSG;
		fprintf(stderr, "ferryfs: info %s: %s\n", argv[0], why(st));
	}
	ferry_buf_fini(&resp);
	if (ex != EX_OK)
		return ex;
	if (st != 0)
		return exit_for(st);
	printf("%-14s %" PRIu64 "\n", "size now", in.size);
	print_time("modified", in.mtime_s);
	return EX_OK;
}

/* append ID FILE / write ID OFFSET FILE: the file's bytes in messages of up
 * to FS_PIECE_BYTES (each an append, or a write at its offset; each
 * applies whole or not at all on the server). */
static int cmd_modify(cli *c, bool is_write, int argc, char **argv)
{
	const char *what = is_write ? "write" : "append";
	uint64_t at = 0;
	if (argc != (is_write ? 3 : 2) || (is_write && parse_u64(argv[1], &at) != 0))
		return usage(stderr), EX_USAGE;
	const char *id = argv[0], *file = argv[argc - 1];
	fs_fid f;
	if (decode_id(id, &f) != 0)
		return EX_USAGE;
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "ferryfs: %s: %s\n", file, strerror(errno));
		return EX_FAILED;
	}
	uint64_t size = (uint64_t)st.st_size;
	int rc = locate_id(c, what, id);
	if (rc == EX_OK)
		rc = cli_open(c);
	if (rc != EX_OK) {
		close(fd);
		return rc;
	}
	int st_ = 0;
	progress p;
	progress_start(&p, what, size);
	for (uint64_t off = 0; st_ == 0 && off < size;) {
		uint64_t n = size - off < FS_PIECE_BYTES ? size - off : FS_PIECE_BYTES;
		ferry_buf req, resp;
		ferry_buf_init(&req);
		ferry_buf_init(&resp);
		size_t hl = (is_write ? FS_MOD_FIXED_BYTES : FS_ID_REQ_FIXED_BYTES) +
		            strlen(id);
		uint8_t *h = ferry_buf_alloc(&req, hl);
		if (is_write)
			fs_enc_mod(h, hl, id, at + off);
		else
			fs_enc_append(h, hl, id);
		ferry_buf_append_file(&req, fd, (off_t)off, (size_t)n);
		st_ = ferry_call_sync(c->s, is_write ? FS_OP_WRITE : FS_OP_APPEND, &req,
		                      &resp, CLI_TIMEOUT_US);
		ferry_buf_fini(&req);
		ferry_buf_fini(&resp);
		off += n;
		if (st_ == 0)
			progress_show(&p, off);
	}
	close(fd);
	if (st_ != 0) {
		fprintf(stderr, "ferryfs: %s %s: %s\n", what, id, why(st_));
		return exit_for(st_);
	}
	return EX_OK;
}

static int cmd_truncate(cli *c, int argc, char **argv)
{
	uint64_t size;
	fs_fid f;
	if (argc != 2 || parse_u64(argv[1], &size) != 0)
		return usage(stderr), EX_USAGE;
	if (decode_id(argv[0], &f) != 0)
		return EX_USAGE;
	int rc = locate_id(c, "truncate", argv[0]);
	if (rc == EX_OK)
		rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	size_t hl = FS_MOD_FIXED_BYTES + strlen(argv[0]);
	fs_enc_mod(ferry_buf_alloc(&req, hl), hl, argv[0], size);
	int st = ferry_call_sync(c->s, FS_OP_TRUNCATE, &req, &resp, CLI_TIMEOUT_US);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	if (st != 0) {
		fprintf(stderr, "ferryfs: truncate %s: %s\n", argv[0], why(st));
		return exit_for(st);
	}
	return EX_OK;
}

/* meta set ID [--merge] KEY=VALUE ... | meta get ID [--json] */
static int cmd_meta(cli *c, int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[0], "set") != 0 && strcmp(argv[0], "get") != 0))
		return usage(stderr), EX_USAGE;
	bool set = strcmp(argv[0], "set") == 0, merge = false, json = false;
	const char *id = argv[1];
	static fs_meta_pair pairs[FS_META_PAIRS_MAX];
	unsigned n = 0;
	for (int i = 2; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		if (set && strcmp(argv[i], "--merge") == 0)
			merge = true;
		else if (!set && strcmp(argv[i], "--json") == 0)
			json = true;
		else if (set && eq != NULL && n < FS_META_PAIRS_MAX &&
		         fs_meta_key_valid(argv[i], (size_t)(eq - argv[i])) &&
		         strlen(eq + 1) <= FS_META_VALUE_MAX) {
			snprintf(pairs[n].key, sizeof(pairs[n].key), "%.*s",
			         (int)(eq - argv[i]), argv[i]);
			pairs[n].vlen = (uint16_t)strlen(eq + 1);
			memcpy(pairs[n].value, eq + 1, pairs[n].vlen);
			n++;
		} else {
			fprintf(stderr,
			        "ferryfs: meta: '%s': KEY=VALUE (key 1-%d of A-Z a-z 0-9 _ . -, "
			        "value up to %d bytes)\n",
			        argv[i], FS_META_KEY_MAX, FS_META_VALUE_MAX);
			return EX_USAGE;
		}
	}
	fs_fid f;
	if (decode_id(id, &f) != 0)
		return EX_USAGE;
	int rc = locate_id(c, "meta", id);
	if (rc == EX_OK)
		rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	size_t hl = FS_ID_REQ_FIXED_BYTES + strlen(id);
	static uint8_t
	        buf[2 + FS_META_PAIRS_MAX * (3 + FS_META_KEY_MAX + FS_META_VALUE_MAX)];
	if (set) {
		fs_enc_meta_set_hdr(ferry_buf_alloc(&req, hl), hl, id, merge);
		int k = fs_enc_meta(buf, sizeof(buf), pairs, n);
		ferry_buf_append(&req, buf, (size_t)k);
	} else {
		fs_enc_id_req(ferry_buf_alloc(&req, hl), hl, id);
	}
	int st = ferry_call_sync(c->s, set ? FS_OP_META_SET : FS_OP_META_GET, &req, &resp,
	                         CLI_TIMEOUT_US);
	size_t len = ferry_buf_len(&resp);
	int got = 0;
	if (st == 0 && !set &&
	    (len > sizeof(buf) ||
	     ferry_buf_copy_out(&resp, 0, len, buf) != (ssize_t)len ||
	     (got = fs_dec_meta(buf, len, pairs, FS_META_PAIRS_MAX)) < 0))
		st = -EBADMSG;
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	if (st != 0) {
		fprintf(stderr, "ferryfs: meta %s %s: %s\n", argv[0], id, why(st));
		return exit_for(st);
	}
	if (json)
		printf("{");
	for (int i = 0; i < got; i++) {
		if (json) {
			printf("%s\"%s\": \"", i ? ", " : "", pairs[i].key);
			for (unsigned k = 0; k < pairs[i].vlen; k++) {
				uint8_t ch = pairs[i].value[k];
				if (ch == '"' || ch == '\\')
					printf("\\%c", ch);
				else if (ch < 0x20 || ch >= 0x7f)
					printf("\\u%04x", ch);
				else
					putchar(ch);
			}
			printf("\"");
		} else {
			printf("%s=%.*s\n", pairs[i].key, (int)pairs[i].vlen,
			       (const char *)pairs[i].value);
		}
	}
	if (json)
		printf("}\n");
	return EX_OK;
}

static const char *state_name(uint8_t st)
{
	return st == FS_SERVER_ACTIVE     ? "ACTIVE"
	       : st == FS_SERVER_READONLY ? "READONLY"
	                                  : "OFFLINE";
}

/* Every server a tracker knows: like fdfs_monitor. */
static int cmd_monitor(cli *c, int argc, char **argv)
{
	bool json = argc == 1 && strcmp(argv[0], "--json") == 0;
	if ((argc > 0 && !json) || c->ntrackers == 0)
		return usage(stderr), EX_USAGE;
	ferry_buf resp;
	ferry_buf_init(&resp);
	int st = tracker_call(c, FS_OP_LIST, (const uint8_t[]){FS_PROTO_VERSION, 0, 0, 0},
	                      4, &resp);
	size_t len = ferry_buf_len(&resp);
	uint8_t *body = len > 0 ? malloc(len) : NULL;
	if (st == 0 && (len < 2 || body == NULL ||
	                ferry_buf_copy_out(&resp, 0, len, body) != (ssize_t)len))
		st = -EBADMSG;
	ferry_buf_fini(&resp);
	if (st != 0) {
		free(body);
		fprintf(stderr, "ferryfs: monitor: %s\n", why(st));
		return exit_for(st);
	}
	unsigned n = fs_get16(body);
	size_t off = 2;
	if (json)
		printf("{\"servers\": [");
	else
		printf("%-16s %6s %-8s %9s %12s %12s %5s %10s  %s\n", "group", "id",
		       "state", "beat ago", "free MiB", "total MiB", "load", "ops",
		       "locators");
	for (unsigned i = 0; i < n; i++) {
		fs_server sv;
		int k = fs_dec_server(body + off, len - off, &sv);
		if (k < 0) {
			free(body);
			fprintf(stderr, "ferryfs: monitor: a malformed server record\n");
			return EX_FAILED;
		}
		off += (size_t)k;
		uint64_t fr = 0, tot = 0;
		for (int s = 0; s < sv.nstores; s++) {
			fr += sv.free_bytes[s];
			tot += sv.total_bytes[s];
		}
		char ago[16];
		if (sv.age_ms == UINT32_MAX)
			snprintf(ago, sizeof(ago), "never");
		else
			snprintf(ago, sizeof(ago), "%.1fs", sv.age_ms / 1000.0);
		if (json) {
			printf("%s{\"group\": \"%s\", \"id\": %u, \"state\": \"%s\", "
			       "\"beat_age_ms\": %s%u, \"free_bytes\": %" PRIu64
			       ", \"total_bytes\": %" PRIu64
			       ", \"load\": %u, \"ops\": %" PRIu64 ", \"locators\": [",
			       i ? ", " : "", sv.group, sv.id, state_name(sv.state),
			       sv.age_ms == UINT32_MAX ? "" : "",
			       sv.age_ms == UINT32_MAX ? 0 : sv.age_ms, fr, tot, sv.load,
			       sv.ops);
			for (int l = 0; l < sv.nlocs; l++)
				printf("%s\"%s\"", l ? ", " : "", sv.locs[l]);
			printf("], \"stores\": [");
			for (int s = 0; s < sv.nstores; s++)
				printf("%s{\"free_bytes\": %" PRIu64
				       ", \"total_bytes\": %" PRIu64 "}",
				       s ? ", " : "", sv.free_bytes[s],
				       sv.total_bytes[s]);
			printf("]}");
		} else {
			printf("%-16s %6u %-8s %9s %12" PRIu64 " %12" PRIu64
			       " %5u %10" PRIu64 "  ",
			       sv.group, sv.id, state_name(sv.state), ago, fr >> 20,
			       tot >> 20, sv.load, sv.ops);
			for (int l = 0; l < sv.nlocs; l++)
				printf("%s%s", l ? " " : "", sv.locs[l]);
			printf("\n");
		}
	}
	if (json)
		printf("]}\n");
	free(body);
	return EX_OK;
}

int main(int argc, char **argv)
{
	cli c = {0};
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
			c.server = argv[++i];
		else if (strcmp(argv[i], "--tracker") == 0 && i + 1 < argc &&
		         c.ntrackers < CLI_TRACKERS_MAX)
			c.tracker[c.ntrackers++] = argv[++i];
		else if (strcmp(argv[i], "--transport") == 0 && i + 1 < argc)
			c.transport = argv[++i];
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return usage(stdout), EX_OK;
		else
			return usage(stderr), EX_USAGE;
	}
	if (i >= argc)
		return usage(stderr), EX_USAGE;
	const char *cmd = argv[i++];
	int rc;
	if (strcmp(cmd, "upload") == 0)
		rc = cmd_upload(&c, argc - i, argv + i);
	else if (strcmp(cmd, "download") == 0)
		rc = cmd_download(&c, argc - i, argv + i);
	else if (strcmp(cmd, "delete") == 0)
		rc = cmd_delete(&c, argc - i, argv + i);
	else if (strcmp(cmd, "info") == 0)
		rc = cmd_info(&c, argc - i, argv + i);
	else if (strcmp(cmd, "monitor") == 0)
		rc = cmd_monitor(&c, argc - i, argv + i);
	else if (strcmp(cmd, "append") == 0)
		rc = cmd_modify(&c, false, argc - i, argv + i);
	else if (strcmp(cmd, "write") == 0)
		rc = cmd_modify(&c, true, argc - i, argv + i);
	else if (strcmp(cmd, "truncate") == 0)
		rc = cmd_truncate(&c, argc - i, argv + i);
	else if (strcmp(cmd, "meta") == 0)
		rc = cmd_meta(&c, argc - i, argv + i);
	else {
		fprintf(stderr, "ferryfs: unknown command '%s'\n", cmd);
		usage(stderr);
		rc = EX_USAGE;
	}
	if (c.s != NULL)
		ferry_session_close(c.s);
	if (c.ctx != NULL)
		ferry_ctx_destroy(c.ctx);
	return rc;
}
