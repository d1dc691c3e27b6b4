/* ferryfs: the command-line client (docs/ferryfs/CLI.md), on libferryfs
 * (include/ferryfs/ferryfs.h).
 *
 *   ferryfs WHERE upload FILE [--ext EXT] [--appender] [--store N] [--group G]
 *   ferryfs WHERE download ID OUT [--offset N] [--length N]
 *   ferryfs WHERE delete ID
 *   ferryfs [WHERE] info ID
 *   ferryfs WHERE append ID FILE | write ID OFFSET FILE | truncate ID SIZE
 *   ferryfs WHERE meta set ID [--merge] KEY=VALUE ... | meta get ID [--json]
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

#include "bench.h"
#include "ferryfs/ferryfs.h"

#define CLI_TRACKERS_MAX 8
#define CLI_PROGRESS_MIN (8u << 20) /* a progress line from this size up */
#define CLI_SERVERS_MAX  256

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
	        "       ferryfs bench [--quick] [--transports LIST] [--out DIR]\n"
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
	case 0:
		return EX_OK;
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
	const char *transport;
	ferryfs *fs;
} cli;

static void cli_note(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "ferryfs: %s\n", msg);
}

static int cli_open(cli *c)
{
	if (c->fs != NULL)
		return EX_OK;
	if (c->server == NULL && c->ntrackers == 0) {
		fprintf(stderr,
		        "ferryfs: --server LOCATOR or --tracker LOCATOR is needed\n");
		return EX_USAGE;
	}
	ferryfs_opts o = {.size = sizeof(o),
	                  .trackers = c->tracker,
	                  .ntrackers = c->ntrackers,
	                  .server = c->server,
	                  .transport = c->transport,
	                  .note = cli_note};
	int rc = ferryfs_open(&o, &c->fs);
	if (rc != 0) {
		fprintf(stderr, "ferryfs: cannot start a client: %s\n",
		        strerror(rc < 0 ? -rc : rc));
		return EX_FAILED;
	}
	return EX_OK;
}

/* A failed call: its message, and the exit code its status means. */
static int failed(cli *c, int st)
{
	fprintf(stderr, "ferryfs: %s\n", ferryfs_errmsg(c->fs));
	return exit_for(st);
}

/* A progress line on a terminal for transfers over a few MiB. */
typedef struct progress {
	const char *what;
	struct timespec t0;
} progress;

static void progress_show(void *arg, uint64_t done, uint64_t total)
{
	const progress *p = arg;
	if (total < CLI_PROGRESS_MIN || !isatty(STDERR_FILENO))
		return;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	double s = (double)(t.tv_sec - p->t0.tv_sec) + (t.tv_nsec - p->t0.tv_nsec) / 1e9;
	fprintf(stderr, "\r%s %3d%% %" PRIu64 "/%" PRIu64 " MiB %.0f MB/s ", p->what,
	        (int)(done * 100 / total), done >> 20, total >> 20,
	        s > 0 ? (double)done / s / 1e6 : 0.0);
	if (done == total)
		fputc('\n', stderr);
}

static progress progress_new(const char *what)
{
	progress p = {.what = what};
	clock_gettime(CLOCK_MONOTONIC, &p.t0);
	return p;
}

/* A file ID given on the command line, checked here before any call. */
static int check_id(const char *id, ferryfs_info *in)
{
	if (ferryfs_stat(NULL, id, in) != 0) {
		fprintf(stderr, "ferryfs: %s: malformed file ID\n", id);
		return EX_USAGE;
	}
	return EX_OK;
}

/* A command on one object: its ID checked here, then the client opened. */
static int open_for(cli *c, const char *id, ferryfs_info *in)
{
	int rc = check_id(id, in);
	return rc != EX_OK ? rc : cli_open(c);
}

static int cmd_upload(cli *c, int argc, char **argv)
{
	const char *file = NULL;
	ferryfs_upload_opts o = {.size = sizeof(o)};
	for (int i = 0; i < argc; i++) {
		uint64_t v;
		if (strcmp(argv[i], "--ext") == 0 && i + 1 < argc)
			o.ext = argv[++i];
		else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc)
			o.group = argv[++i];
		else if (strcmp(argv[i], "--appender") == 0)
			o.appender = true;
		else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc &&
		         parse_u64(argv[++i], &v) == 0 && v < 255)
			o.store = (int)v + 1;
		else if (file == NULL && argv[i][0] != '-')
			file = argv[i];
		else
			return usage(stderr), EX_USAGE;
	}
	if (file == NULL)
		return usage(stderr), EX_USAGE;
	int rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	progress p = progress_new("upload");
	o.progress = progress_show;
	o.progress_arg = &p;
	char id[FERRYFS_ID_MAX];
	int st = ferryfs_upload_path(c->fs, file, &o, id);
	if (st == -EINVAL && strstr(ferryfs_errmsg(c->fs), "bad extension") != NULL) {
		fprintf(stderr,
		        "ferryfs: --ext/--group: ext 1-6 of A-Z a-z 0-9, group 1-16 of "
		        "A-Z a-z 0-9 _ -\n");
		return EX_USAGE;
	}
	if (st != 0)
		return failed(c, st);
	printf("%s\n", id);
	return EX_OK;
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
	ferryfs_info in;
	if (id == NULL || out == NULL)
		return usage(stderr), EX_USAGE;
	int rc = open_for(c, id, &in);
	if (rc != EX_OK)
		return rc;
	bool out_std = strcmp(out, "-") == 0;
	int fd = out_std ? STDOUT_FILENO
	                 : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "ferryfs: %s: %s\n", out, strerror(errno));
		return EX_FAILED;
	}
	progress p = progress_new("download");
	uint64_t written;
	int st = ferryfs_download_fd(c->fs, id, off, len, fd, out_std ? -1 : 0, &written,
	                             progress_show, &p);
	if (!out_std && close(fd) != 0 && st == 0) {
		fprintf(stderr, "ferryfs: %s: %s\n", out, strerror(errno));
		st = -EIO;
		unlink(out);
		return EX_FAILED;
	}
	if (st != 0) {
		if (!out_std)
			unlink(out);
		return failed(c, st);
	}
	return EX_OK;
}

static int cmd_delete(cli *c, int argc, char **argv)
{
	ferryfs_info in;
	if (argc != 1)
		return usage(stderr), EX_USAGE;
	int rc = open_for(c, argv[0], &in);
	if (rc != EX_OK)
		return rc;
	int st = ferryfs_delete(c->fs, argv[0]);
	return st != 0 ? failed(c, st) : EX_OK;
}

static void print_time(const char *label, uint64_t s)
{
	char buf[64];
	time_t t = (time_t)s;
	struct tm tm;
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
	printf("%-14s %s\n", label, buf);
}

static int cmd_info(cli *c, int argc, char **argv)
{
	ferryfs_info in;
	if (argc != 1)
		return usage(stderr), EX_USAGE;
	int rc = check_id(argv[0], &in);
	if (rc != EX_OK)
		return rc;
	printf("%-14s %s\n%-14s M%02X\n%-14s %u\n", "group", in.group, "store path",
	       in.store, "source server", in.source);
	print_time("created", in.ctime);
	printf("%-14s %" PRIu64 "\n%-14s %08x\n%-14s %s\n", "size at upload",
	       in.size_at_upload, "crc32", in.crc32, "appender",
	       in.appender ? "yes" : "no");
	if (c->server == NULL && c->ntrackers == 0)
		return EX_OK;
	if ((rc = cli_open(c)) != EX_OK)
		return rc;
	int st = ferryfs_stat(c->fs, argv[0], &in);
	if (st != 0)
		return failed(c, st);
	printf("%-14s %" PRIu64 "\n", "size now", in.size);
	print_time("modified", in.mtime);
	return EX_OK;
}

/* append ID FILE / write ID OFFSET FILE */
static int cmd_modify(cli *c, bool is_write, int argc, char **argv)
{
	uint64_t at = 0;
	ferryfs_info in;
	if (argc != (is_write ? 3 : 2) || (is_write && parse_u64(argv[1], &at) != 0))
		return usage(stderr), EX_USAGE;
	const char *id = argv[0], *file = argv[argc - 1];
	int rc = check_id(id, &in);
	if (rc != EX_OK)
		return rc;
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "ferryfs: %s: %s\n", file, strerror(errno));
		return EX_FAILED;
	}
	if ((rc = cli_open(c)) != EX_OK) {
		close(fd);
		return rc;
	}
	int s = is_write ? ferryfs_write_fd(c->fs, id, at, fd, (uint64_t)st.st_size)
	                 : ferryfs_append_fd(c->fs, id, fd, (uint64_t)st.st_size);
	close(fd);
	return s != 0 ? failed(c, s) : EX_OK;
}

static int cmd_truncate(cli *c, int argc, char **argv)
{
	uint64_t size;
	ferryfs_info in;
	if (argc != 2 || parse_u64(argv[1], &size) != 0)
		return usage(stderr), EX_USAGE;
	int rc = open_for(c, argv[0], &in);
	if (rc != EX_OK)
		return rc;
	int st = ferryfs_truncate(c->fs, argv[0], size);
	return st != 0 ? failed(c, st) : EX_OK;
}

static void json_string(const unsigned char *p, size_t n)
{
	putchar('"');
	for (size_t k = 0; k < n; k++) {
		if (p[k] == '"' || p[k] == '\\')
			printf("\\%c", p[k]);
		else if (p[k] < 0x20 || p[k] >= 0x7f)
			printf("\\u%04x", p[k]);
		else
			putchar(p[k]);
	}
	putchar('"');
}

/* meta set ID [--merge] KEY=VALUE ... | meta get ID [--json] */
static int cmd_meta(cli *c, int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[0], "set") != 0 && strcmp(argv[0], "get") != 0))
		return usage(stderr), EX_USAGE;
	bool set = strcmp(argv[0], "set") == 0, merge = false, json = false;
	const char *id = argv[1];
	static ferryfs_meta pairs[256];
	int n = 0;
	for (int i = 2; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		size_t kl = eq != NULL ? (size_t)(eq - argv[i]) : 0;
		bool key_ok = kl > 0 && kl < sizeof(pairs[0].key);
		for (size_t k = 0; key_ok && k < kl; k++) {
			char ch = argv[i][k];
			key_ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			         (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
			         ch == '-';
		}
		if (set && strcmp(argv[i], "--merge") == 0)
			merge = true;
		else if (!set && strcmp(argv[i], "--json") == 0)
			json = true;
		else if (set && key_ok && n < 256 &&
		         strlen(eq + 1) <= sizeof(pairs[0].value)) {
			snprintf(pairs[n].key, sizeof(pairs[n].key), "%.*s", (int)kl,
			         argv[i]);
			pairs[n].len = strlen(eq + 1);
			memcpy(pairs[n].value, eq + 1, pairs[n].len);
			n++;
		} else {
			fprintf(stderr,
			        "ferryfs: meta: '%s': KEY=VALUE (key 1-64 of A-Z a-z 0-9 _ . -, value "
			        "up to 1024 bytes)\n",
			        argv[i]);
			return EX_USAGE;
		}
	}
	ferryfs_info in;
	int rc = open_for(c, id, &in);
	if (rc != EX_OK)
		return rc;
	int st = set ? ferryfs_meta_set(c->fs, id, pairs, n, merge)
	             : ferryfs_meta_get(c->fs, id, pairs, 256, &n);
	if (st != 0)
		return failed(c, st);
	if (set)
		return EX_OK;
	if (json)
		printf("{");
	for (int i = 0; i < n; i++) {
		if (json) {
			printf("%s\"%s\": ", i ? ", " : "", pairs[i].key);
			json_string(pairs[i].value, pairs[i].len);
		} else {
			printf("%s=%.*s\n", pairs[i].key, (int)pairs[i].len,
			       (const char *)pairs[i].value);
		}
	}
	if (json)
		printf("}\n");
	return EX_OK;
}

static const char *state_name(int st)
{
	return st == FERRYFS_ACTIVE     ? "ACTIVE"
	       : st == FERRYFS_READONLY ? "READONLY"
	                                : "OFFLINE";
}

/* Every server a tracker knows: like fdfs_monitor. */
static int cmd_monitor(cli *c, int argc, char **argv)
{
	bool json = argc == 1 && strcmp(argv[0], "--json") == 0;
	if ((argc > 0 && !json) || c->ntrackers == 0)
		return usage(stderr), EX_USAGE;
	int rc = cli_open(c);
	if (rc != EX_OK)
		return rc;
	static ferryfs_server sv[CLI_SERVERS_MAX];
	int n;
	int st = ferryfs_servers(c->fs, sv, CLI_SERVERS_MAX, &n);
	if (st != 0)
		return failed(c, st);
	if (json)
		printf("{\"servers\": [");
	else
		printf("%-16s %6s %-8s %9s %12s %12s %5s %10s  %s\n", "group", "id",
		       "state", "beat ago", "free MiB", "total MiB", "load", "ops",
		       "locators");
	for (int i = 0; i < n; i++) {
		uint64_t fr = 0, tot = 0;
		for (int s = 0; s < sv[i].nstores; s++) {
			fr += sv[i].free_bytes[s];
			tot += sv[i].total_bytes[s];
		}
		if (json) {
			printf("%s{\"group\": \"%s\", \"id\": %u, \"state\": \"%s\", \"beat_age_ms\": ",
			       i ? ", " : "", sv[i].group, sv[i].id,
			       state_name(sv[i].state));
			if (sv[i].beat_ms < 0)
				printf("null");
			else
				printf("%" PRId64, sv[i].beat_ms);
			printf(", \"free_bytes\": %" PRIu64 ", \"total_bytes\": %" PRIu64
			       ", \"load\": %u, \"ops\": %" PRIu64 ", \"locators\": [",
			       fr, tot, sv[i].load, sv[i].ops);
			for (int l = 0; l < sv[i].nlocs; l++)
				printf("%s\"%s\"", l ? ", " : "", sv[i].locs[l]);
			printf("], \"stores\": [");
			for (int s = 0; s < sv[i].nstores; s++)
				printf("%s{\"free_bytes\": %" PRIu64
				       ", \"total_bytes\": %" PRIu64 "}",
				       s ? ", " : "", sv[i].free_bytes[s],
				       sv[i].total_bytes[s]);
			printf("]}");
		} else {
			char ago[16];
			if (sv[i].beat_ms < 0)
				snprintf(ago, sizeof(ago), "never");
			else
				snprintf(ago, sizeof(ago), "%.1fs",
				         (double)sv[i].beat_ms / 1000.0);
			printf("%-16s %6u %-8s %9s %12" PRIu64 " %12" PRIu64
			       " %5u %10" PRIu64 "  ",
			       sv[i].group, sv[i].id, state_name(sv[i].state), ago,
			       fr >> 20, tot >> 20, sv[i].load, sv[i].ops);
			for (int l = 0; l < sv[i].nlocs; l++)
				printf("%s%s", l ? " " : "", sv[i].locs[l]);
			printf("\n");
		}
	}
	if (json)
		printf("]}\n");
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
	else if (strcmp(cmd, "bench") == 0) {
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		self[n > 0 ? n : 0] = '\0';
		rc = ferryfs_bench(argc - i, argv + i, self);
	} else {
		fprintf(stderr, "ferryfs: unknown command '%s'\n", cmd);
		usage(stderr);
		rc = EX_USAGE;
	}
	ferryfs_close(c.fs);
	return rc;
}
