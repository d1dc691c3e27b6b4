/* ferry-bench server: listens on one or more locators and serves READ
 * (the stored object of the requested size, sent zero-copy by reference),
 * WRITE (consumes the bytes), ECHO (the request's own bytes, referenced,
 * not copied) and FILEREAD (the first size bytes of a file, as a file
 * region: sendfile on the splice driver, pread + send elsewhere). It prints
 * each bound locator on stdout, one per line, then "ready", and serves
 * until SIGTERM or SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "ferry/ferry.h"

#define SERVER_LISTEN_MAX       16
#define SERVER_OBJECT_MAX_BYTES (64u << 20)

static volatile sig_atomic_t server_stop;

static void server_on_signal(int sig)
{
	(void)sig;
	server_stop = 1;
}

/* One object of the largest size READ serves, filled once with a pattern:
 * READ(size) references its first size bytes. It is never reallocated, so
 * responses in flight always point at live memory. */
static uint8_t *server_obj;

static int server_object(void)
{
	if (server_obj != NULL)
		return 0;
	server_obj = malloc(SERVER_OBJECT_MAX_BYTES);
	if (server_obj == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < SERVER_OBJECT_MAX_BYTES; i++)
		server_obj[i] = (uint8_t)(i * 131 + 7);
	return 0;
}

static void server_read(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	uint32_t size = 0;
	if (ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 4, &size) != 4 ||
	    size > SERVER_OBJECT_MAX_BYTES) {
		ferry_rpc_reply(rpc, FERRY_EPROTO);
		return;
	}
	int rc = server_object();
	if (rc == 0 && size > 0)
		rc = ferry_buf_append_ref(ferry_rpc_response(rpc), server_obj, size);
	ferry_rpc_reply(rpc, rc);
}

/* FILEREAD's file: created in file_dir (default /dev/shm, so the disk is
 * not what is measured) and unlinked at once, so nothing is left behind
 * whatever ends the server. It holds the object's bytes and grows to the
 * largest size asked for; growing only appends, so regions already in
 * responses stay valid. */
static const char *server_file_dir = "/dev/shm";
static int server_file_fd = -1;
static uint64_t server_file_len;

static int server_file(uint64_t size)
{
	if (server_file_fd < 0) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/ferry-bench-file-XXXXXX",
		         server_file_dir);
		server_file_fd = mkstemp(path);
		if (server_file_fd < 0)
			return -errno;
		unlink(path);
		server_file_len = 0;
	}
	while (server_file_len < size) {
		ssize_t w = pwrite(server_file_fd, server_obj + server_file_len,
		                   size - server_file_len, (off_t)server_file_len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		server_file_len += (uint64_t)w;
	}
	return 0;
}

static void server_fileread(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	uint32_t size = 0;
	if (ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 4, &size) != 4 ||
	    size > SERVER_OBJECT_MAX_BYTES) {
		ferry_rpc_reply(rpc, FERRY_EPROTO);
		return;
	}
	int rc = server_object();
	if (rc == 0)
		rc = server_file(size);
	/* the fd stays open for the server's life: longer than any response */
	if (rc == 0 && size > 0)
		rc = ferry_buf_append_file(ferry_rpc_response(rpc), server_file_fd, 0,
		                           size);
	ferry_rpc_reply(rpc, rc);
}

static void server_write(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_rpc_reply(rpc, 0);
}

/* Zero-copy echo: the response references the request's chunks (loans of
 * the driver's receive memory), which stay alive until the reply is sent. */
static void server_echo(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_buf *req = ferry_rpc_request(rpc);
	ferry_buf *resp = ferry_rpc_response(rpc);
	ferry_buf_iter it;
	ferry_buf_seg seg;
	int rc = 0;
	ferry_buf_iter_init(&it, req, 0, ferry_buf_len(req));
	while (rc == 0 && ferry_buf_iter_next(&it, &seg))
		rc = seg.kind == FERRY_CHUNK_FILE
		             ? ferry_buf_append_file(resp, seg.fd, seg.file_off, seg.len)
		             : ferry_buf_append_ref(resp, seg.data, seg.len);
	ferry_rpc_reply(rpc, rc);
}

static void server_usage(FILE *f)
{
	fprintf(f,
	        "usage: ferry-bench server --listen LOCATOR [--listen LOCATOR ...]\n"
	        "                          [--poll spin|block] [--cpu N] [--file-dir DIR]\n"
	        "                          [--pcap FILE]\n"
	        "Serves READ(size), WRITE(bytes), ECHO and FILEREAD(size) on every\n"
	        "locator; prints the bound locators (port=0 becomes the real port),\n"
	        "then 'ready'.\n"
	        "  --listen LOC   e.g. unreliable+udp:host=127.0.0.1,port=0\n"
	        "  --poll MODE    spin (default) or block\n"
	        "  --cpu N        pin the server thread to CPU N\n"
	        "  --file-dir DIR where FILEREAD's file is made (default /dev/shm;\n"
	        "                 unlinked at once, grown to the largest size read)\n"
	        "  --pcap FILE    capture every listener's packets to FILE (adds\n"
	        "                 pcap=FILE to each locator; docs/CAPTURE.md)\n");
}

int bench_server_main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"listen", required_argument, NULL, 'l'},
	        {"poll", required_argument, NULL, 'p'},
	        {"cpu", required_argument, NULL, 'c'},
	        {"file-dir", required_argument, NULL, 'f'},
	        {"pcap", required_argument, NULL, 'P'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *listen[SERVER_LISTEN_MAX];
	const char *pcap = NULL;
	int nlisten = 0, cpu = -1, mode = FERRY_POLL_SPIN, o;
	while ((o = getopt_long(argc, argv, "l:p:c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			if (nlisten == SERVER_LISTEN_MAX) {
				fprintf(stderr,
				        "ferry-bench server: too many --listen\n");
				return 2;
			}
			listen[nlisten++] = optarg;
			break;
		case 'p':
			if (strcmp(optarg, "spin") != 0 && strcmp(optarg, "block") != 0) {
				fprintf(stderr,
				        "ferry-bench server: --poll spin|block\n");
				return 2;
			}
			mode = strcmp(optarg, "block") == 0 ? FERRY_POLL_BLOCK
			                                    : FERRY_POLL_SPIN;
			break;
		case 'c':
			cpu = atoi(optarg);
			break;
		case 'f':
			server_file_dir = optarg;
			break;
		case 'P':
			pcap = optarg;
			break;
		case 'h':
			server_usage(stdout);
			return 0;
		default:
			server_usage(stderr);
			return 2;
		}
	}
	if (nlisten == 0) {
		server_usage(stderr);
		return 2;
	}
	signal(SIGTERM, server_on_signal);
	signal(SIGINT, server_on_signal);
	signal(SIGPIPE, SIG_IGN);
	ferry_ctx_opts co = {.poll_mode = mode, .cpu = cpu};
	ferry_ctx *ctx;
	ferry_server *srv;
	int rc = ferry_ctx_create(&co, &ctx);
	if (rc != 0) {
		fprintf(stderr, "ferry-bench server: %s\n", ferry_strerror(rc));
		return 1;
	}
	ferry_server_create(ctx, &srv);
	ferry_server_handle(srv, BENCH_OP_READ, server_read, NULL);
	ferry_server_handle(srv, BENCH_OP_WRITE, server_write, NULL);
	ferry_server_handle(srv, BENCH_OP_ECHO, server_echo, NULL);
	ferry_server_handle(srv, BENCH_OP_FILEREAD, server_fileread, NULL);
	if (server_object() != 0) {
		fprintf(stderr, "ferry-bench server: out of memory\n");
		return 1;
	}
	for (int i = 0; i < nlisten; i++) {
		char with_pcap[1024];
		if (pcap != NULL) {
			if (bench_loc_pcap(listen[i], pcap, with_pcap,
			                   sizeof(with_pcap)) != 0) {
				ferry_ctx_destroy(ctx);
				return 2;
			}
			listen[i] = with_pcap;
		}
		rc = ferry_server_listen(srv, listen[i]);
		if (rc != 0) {
			fprintf(stderr, "ferry-bench server: %s: %s (%s)\n", listen[i],
			        ferry_err_name(rc), ferry_ctx_errmsg(ctx));
			ferry_ctx_destroy(ctx);
			return 1;
		}
		char loc[512];
		ferry_server_locator(srv, i, loc, sizeof(loc));
		printf("%s\n", loc);
	}
	printf("ready\n");
	fflush(stdout);
	while (!server_stop)
		ferry_ctx_poll(ctx, 100000);
	ferry_ctx_destroy(ctx);
	if (server_file_fd >= 0)
		close(server_file_fd);
	free(server_obj);
	return 0;
}
