/* ferryfs: the command-line client (docs/ferryfs/CLI.md).
 *
 *   ferryfs [--server LOCATOR] upload FILE [--ext EXT] [--appender] [--store N]
 *   ferryfs [--server LOCATOR] download ID OUT [--offset N] [--length N]
 *   ferryfs [--server LOCATOR] delete ID
 *   ferryfs [--server LOCATOR] info ID
 *
 * Until the tracker exists (issue 16) every command talks to the storage
 * server named by --server. Exit codes: 0 done; 1 the call failed (the
 * message says why); 2 usage, or a malformed file ID; 3 no such object;
 * 4 no space on the server. */
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

#define CLI_TIMEOUT_US 60000000ull

enum { EX_OK = 0, EX_FAILED = 1, EX_USAGE = 2, EX_NOENT = 3, EX_NOSPC = 4 };

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: ferryfs --server LOCATOR upload FILE [--ext EXT] [--appender] [--store N]\n"
	        "       ferryfs --server LOCATOR download ID OUT [--offset N] [--length N]\n"
	        "       ferryfs --server LOCATOR delete ID\n"
	        "       ferryfs [--server LOCATOR] info ID\n"
	        "upload prints the new object's file ID. OUT '-' is standard output.\n"
	        "info decodes the ID here; with --server it also asks the server.\n"
	        "Exit: 0 done, 1 the call failed, 2 usage or a malformed ID,\n"
	        "3 no such object, 4 no space on the server.\n");
}

static int exit_for(int status)
{
	return status == -ENOENT ? EX_NOENT : status == -ENOSPC ? EX_NOSPC : EX_FAILED;
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
	ferry_ctx *ctx;
	ferry_session *s;
} cli;

static int cli_open(cli *c)
{
	if (c->server == NULL) {
		fprintf(stderr, "ferryfs: --server LOCATOR is needed (no tracker yet)\n");
		return EX_USAGE;
	}
	int rc = ferry_ctx_create(NULL, &c->ctx);
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

static int cmd_upload(cli *c, int argc, char **argv)
{
	const char *file = NULL, *ext = "";
	uint8_t flags = 0, store = FS_STORE_ANY;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--ext") == 0 && i + 1 < argc)
			ext = argv[++i];
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
	if (size + FS_UPLOAD_FIXED_BYTES + FS_EXT_MAX > FERRY_MSG_MAX_BYTES_DEFAULT) {
		fprintf(stderr,
		        "ferryfs: %s: %" PRIu64
		        " bytes: objects over one message (%u MiB) "
		        "are not supported yet\n",
		        file, size, FERRY_MSG_MAX_BYTES_DEFAULT >> 20);
		return EX_FAILED;
	}
	int rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	uint8_t *h = ferry_buf_alloc(&req, FS_UPLOAD_FIXED_BYTES + strlen(ext));
	fs_enc_upload(h, FS_UPLOAD_FIXED_BYTES + strlen(ext), flags, store, size, ext);
	/* the body as a file region: sendfile on splice */
	if (size > 0)
		ferry_buf_append_file(&req, fd, 0, (size_t)size);
	int st_ = ferry_call_sync(c->s, FS_OP_UPLOAD, &req, &resp, CLI_TIMEOUT_US);
	close(fd);
	char id[FS_FID_MAX];
	uint8_t head[FS_DECODE_MAX];
	ssize_t n = ferry_buf_copy_out(
	        &resp, 0,
	        ferry_buf_len(&resp) < sizeof(head) ? ferry_buf_len(&resp) : sizeof(head),
	        head);
	if (st_ == 0 && fs_dec_upload_resp(head, n < 0 ? 0 : (size_t)n,
	                                   ferry_buf_len(&resp), id, sizeof(id)) != 0)
		st_ = -EBADMSG;
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
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
	int rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	int fd = strcmp(out, "-") == 0
	                 ? STDOUT_FILENO
	                 : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "ferryfs: %s: %s\n", out, strerror(errno));
		return EX_FAILED;
	}
	ferry_buf req;
	ferry_buf_init(&req);
	uint8_t *h = ferry_buf_alloc(&req, FS_DL_FIXED_BYTES + strlen(id));
	fs_enc_download(h, FS_DL_FIXED_BYTES + strlen(id), id, off, len);
	ferry_fd_sink sink = {.fd = fd, .off = fd == STDOUT_FILENO ? -1 : 0};
	int st_ = ferry_call_into_fd_sync(c->s, FS_OP_DOWNLOAD, &req, &sink,
	                                  CLI_TIMEOUT_US);
	ferry_buf_fini(&req);
	/* An object that is not an appender cannot change: its ID says how
	 * many bytes must have come. */
	if (st_ == 0 && !f.appender && len == 0 && off <= f.size &&
	    sink.written != f.size - off)
		st_ = -EIO;
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

static int cmd_delete(cli *c, int argc, char **argv)
{
	fs_fid f;
	if (argc != 1)
		return usage(stderr), EX_USAGE;
	if (decode_id(argv[0], &f) != 0)
		return EX_USAGE;
	int rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	uint8_t *h = ferry_buf_alloc(&req, FS_ID_REQ_FIXED_BYTES + strlen(argv[0]));
	fs_enc_id_req(h, FS_ID_REQ_FIXED_BYTES + strlen(argv[0]), argv[0]);
	int st_ = ferry_call_sync(c->s, FS_OP_DELETE, &req, &resp, CLI_TIMEOUT_US);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	if (st_ != 0) {
		fprintf(stderr, "ferryfs: delete %s: %s\n", argv[0], why(st_));
		return exit_for(st_);
	}
	return EX_OK;
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
	if (c->server == NULL)
		return EX_OK;
	int rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	uint8_t *h = ferry_buf_alloc(&req, FS_ID_REQ_FIXED_BYTES + strlen(argv[0]));
	fs_enc_id_req(h, FS_ID_REQ_FIXED_BYTES + strlen(argv[0]), argv[0]);
	int st_ = ferry_call_sync(c->s, FS_OP_INFO, &req, &resp, CLI_TIMEOUT_US);
	uint8_t head[FS_INFO_RESP_BYTES];
	fs_info in;
	if (st_ == 0 &&
	    (ferry_buf_copy_out(&resp, 0, sizeof(head), head) != sizeof(head) ||
	     fs_dec_info(head, sizeof(head), ferry_buf_len(&resp), &in) != 0))
		st_ = -EBADMSG;
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	if (st_ != 0) {
		fprintf(stderr, "ferryfs: info %s: %s\n", argv[0], why(st_));
		return exit_for(st_);
	}
	printf("%-14s %" PRIu64 "\n", "size now", in.size);
	print_time("modified", in.mtime_s);
	return EX_OK;
}

int main(int argc, char **argv)
{
	cli c = {0};
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
			c.server = argv[++i];
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
