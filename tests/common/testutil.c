/* Shared test helpers (see testutil.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static uint64_t tu_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

void tu_fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t s = tu_mix(seed + 1);
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = tu_mix(s + i);
		size_t k = n - i < 8 ? n - i : 8;
		memcpy(p + i, &v, k);
	}
}

void tu_fill_at(uint8_t *p, size_t off, size_t n, uint64_t seed)
{
	uint64_t s = tu_mix(seed + 1);
	for (size_t i = 0; i < n;) {
		size_t pos = off + i, blk = pos & ~(size_t)7, in = pos - blk;
		uint64_t v = tu_mix(s + blk);
		size_t k = 8 - in < n - i ? 8 - in : n - i;
		memcpy(p + i, (uint8_t *)&v + in, k);
		i += k;
	}
}

long tu_check(ferry_buf *b, size_t n, uint64_t seed)
{
	if (ferry_buf_len(b) != n)
		return 0;
	uint8_t *want = malloc(n + 1);
	tu_fill(want, n, seed);
	long bad = -1;
	ferry_buf_iter it;
	ferry_buf_seg seg;
	ferry_buf_iter_init(&it, b, 0, n);
	while (bad < 0 && ferry_buf_iter_next(&it, &seg)) {
		if (seg.kind == FERRY_CHUNK_FILE) {
			uint8_t *tmp = malloc(seg.len + 1);
			if (pread(seg.fd, tmp, seg.len, seg.file_off) !=
			            (ssize_t)seg.len ||
			    memcmp(tmp, want + seg.offset, seg.len) != 0)
				bad = (long)seg.offset;
			free(tmp);
		} else if (memcmp(seg.data, want + seg.offset, seg.len) != 0) {
			for (size_t i = 0; i < seg.len; i++)
				if (seg.data[i] != want[seg.offset + i]) {
					bad = (long)(seg.offset + i);
					break;
				}
		}
	}
	free(want);
	return bad;
}

void tu_skip_or_fail(const char *cap, const char *why)
{
	const char *req = getenv("FERRY_REQUIRE");
	if (req != NULL) {
		char list[512];
		snprintf(list, sizeof(list), ",%s,", req);
		for (char *c = list; *c; c++)
			if (*c == ' ')
				*c = ',';
		char want[64];
		snprintf(want, sizeof(want), ",%s,", cap);
		if (strstr(list, want) != NULL) {
			fprintf(stderr, "FAIL: required capability '%s' missing: %s\n",
			        cap, why);
			exit(1);
		}
	}
	fprintf(stderr, "SKIP: %s\n", why);
	exit(77);
}

pid_t tu_spawn_argv(char *const argv[], char *out, size_t out_len)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	if (f == NULL || fgets(out, (int)out_len, f) == NULL) {
		if (f != NULL)
			fclose(f);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
	return pid;
}

pid_t tu_spawn_server(const char *exe, const char *locator, const char *mode, char *out,
                      size_t out_len)
{
	char *argv[] = {(char *)exe, (char *)locator, (char *)mode, NULL};
	return tu_spawn_argv(argv, out, out_len);
}

int tu_stop_server(pid_t pid)
{
	int st = 0;
	kill(pid, SIGTERM);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void tu_echo(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_buf *req = ferry_rpc_request(rpc);
	ferry_buf *resp = ferry_rpc_response(rpc);
	size_t n = ferry_buf_len(req);
	void *dst = ferry_buf_alloc(resp, n);
	if (n > 0 && (dst == NULL || ferry_buf_copy_out(req, 0, n, dst) != (ssize_t)n)) {
		ferry_rpc_reply(rpc, -EIO);
		return;
	}
	ferry_rpc_reply(rpc, 0);
}

static void tu_sized(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	uint8_t in[12];
	ferry_buf *req = ferry_rpc_request(rpc);
	if (ferry_buf_copy_out(req, 0, sizeof(in), in) != sizeof(in)) {
		ferry_rpc_reply(rpc, FERRY_EPROTO);
		return;
	}
	uint32_t n;
	uint64_t seed;
	memcpy(&n, in, 4);
	memcpy(&seed, in + 4, 8);
	void *dst = ferry_buf_alloc(ferry_rpc_response(rpc), n);
	if (dst == NULL) {
		ferry_rpc_reply(rpc, -ENOMEM);
		return;
	}
	tu_fill(dst, n, seed);
	ferry_rpc_reply(rpc, 0);
}

static void *tu_slow_thread(void *arg)
{
	ferry_rpc *rpc = arg;
	uint32_t us = 0;
	ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 4, &us);
	struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
	nanosleep(&ts, NULL);
	ferry_buf_append(ferry_rpc_response(rpc), &us, 4);
	ferry_rpc_reply(rpc, 0); /* from a foreign thread: via the handoff */
	return NULL;
}

static void tu_slow(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	pthread_t t;
	if (pthread_create(&t, NULL, tu_slow_thread, rpc) != 0) {
		ferry_rpc_reply(rpc, -EAGAIN);
		return;
	}
	pthread_detach(t);
}

static uint8_t tu_once_runs[TEST_ONCE_IDS];
static uint64_t tu_once_total; /* every execution, whatever its id */

static void tu_once(void *arg, ferry_rpc *rpc)
{
	uint32_t id = 0;
	tu_once_total++;
	if (ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 4, &id) == 4 &&
	    id < TEST_ONCE_IDS && tu_once_runs[id] < 255)
		tu_once_runs[id]++;
	tu_echo(arg, rpc);
}

static void tu_once_report(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	uint32_t once = 0, more = 0;
	for (uint32_t i = 0; i < TEST_ONCE_IDS; i++) {
		once += tu_once_runs[i] == 1;
		more += tu_once_runs[i] > 1;
	}
	ferry_buf_append(ferry_rpc_response(rpc), &once, 4);
	ferry_buf_append(ferry_rpc_response(rpc), &more, 4);
	ferry_buf_append(ferry_rpc_response(rpc), &tu_once_total, 8);
	ferry_rpc_reply(rpc, 0);
}

static void tu_once_runs_of(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	uint32_t range[2];
	if (ferry_buf_copy_out(ferry_rpc_request(rpc), 0, 8, range) != 8 ||
	    range[0] > TEST_ONCE_IDS || range[1] > TEST_ONCE_IDS - range[0]) {
		ferry_rpc_reply(rpc, -EINVAL);
		return;
	}
	ferry_rpc_reply(rpc, ferry_buf_append(ferry_rpc_response(rpc),
	                                      tu_once_runs + range[0], range[1]));
}

/* Files TEST_OP_FILE opened. A response holding a file region borrows the
 * fd until the buffer is reset, which happens inside the library after the
 * reply: simplest is to keep every fd open until the process exits. A path
 * whose file was replaced (another inode) gets a new entry. */
static struct {
	int fd;
	dev_t dev;
	ino_t ino;
	char path[256];
} tu_files[TEST_FILE_FDS_MAX];
static int tu_nfiles;

static void tu_files_close(void)
{
	for (int i = 0; i < tu_nfiles; i++)
		close(tu_files[i].fd);
	tu_nfiles = 0;
}

static int tu_file_fd(const char *path, off_t *size)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno;
	*size = st.st_size;
	for (int i = 0; i < tu_nfiles; i++)
		if (tu_files[i].dev == st.st_dev && tu_files[i].ino == st.st_ino &&
		    strcmp(tu_files[i].path, path) == 0)
			return tu_files[i].fd;
	if (tu_nfiles == TEST_FILE_FDS_MAX)
		return -EMFILE;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (tu_nfiles == 0)
		atexit(tu_files_close);
	tu_files[tu_nfiles].fd = fd;
	tu_files[tu_nfiles].dev = st.st_dev;
	tu_files[tu_nfiles].ino = st.st_ino;
	snprintf(tu_files[tu_nfiles].path, sizeof(tu_files[0].path), "%s", path);
	tu_nfiles++;
	return fd;
}

static void tu_file(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_buf *req = ferry_rpc_request(rpc);
	uint64_t hdr[2];
	char path[256];
	size_t plen = ferry_buf_len(req) - (ferry_buf_len(req) >= 16 ? 16 : 0);
	if (ferry_buf_len(req) <= 16 || plen >= sizeof(path) ||
	    ferry_buf_copy_out(req, 0, 16, hdr) != 16 ||
	    ferry_buf_copy_out(req, 16, plen, path) != (ssize_t)plen) {
		ferry_rpc_reply(rpc, FERRY_EPROTO);
		return;
	}
	path[plen] = '\0';
	off_t size = 0;
	int fd = tu_file_fd(path, &size);
	if (fd < 0) {
		ferry_rpc_reply(rpc, fd);
		return;
	}
	/* A region past the end of the file is refused here: the drivers
	 * expect the bytes to exist. */
	if (hdr[0] > (uint64_t)size || hdr[1] > (uint64_t)size - hdr[0]) {
		ferry_rpc_reply(rpc, -EINVAL);
		return;
	}
	int rc = ferry_buf_append_file(ferry_rpc_response(rpc), fd, (off_t)hdr[0],
	                               (size_t)hdr[1]);
	ferry_rpc_reply(rpc, rc);
}

void tu_server_handlers(ferry_server *srv)
{
	ferry_server_handle(srv, TEST_OP_FILE, tu_file, NULL);
	ferry_server_handle(srv, TEST_OP_ONCE, tu_once, NULL);
	ferry_server_handle(srv, TEST_OP_ONCE_REPORT, tu_once_report, NULL);
	ferry_server_handle(srv, TEST_OP_ONCE_RUNS, tu_once_runs_of, NULL);
	ferry_server_handle(srv, TEST_OP_ECHO, tu_echo, NULL);
	ferry_server_handle(srv, TEST_OP_SIZED, tu_sized, NULL);
	ferry_server_handle(srv, TEST_OP_SLOW, tu_slow, NULL);
}

struct tu_counter_find {
	const char *name;
	uint64_t value;
	bool found;
};

static void tu_counter_cb(void *arg, const char *name, uint64_t value)
{
	struct tu_counter_find *c = arg;
	if (strcmp(name, c->name) == 0)
		c->value = value, c->found = true;
}

bool tu_driver_counter(ferry_ep *ep, const char *name, uint64_t *out)
{
	struct tu_counter_find c = {name, 0, false};
	struct ferry_ctl_counters cc = {tu_counter_cb, &c};
	int rc = ep->drv->kind == FERRY_DRIVER_STREAM
	                 ? ep->drv->stream->ctl(ep, FERRY_CTL_COUNTERS, &cc)
	                 : ep->drv->dgram->ctl(ep, FERRY_CTL_COUNTERS, &cc);
	*out = c.value;
	return rc == 0 && c.found;
}
