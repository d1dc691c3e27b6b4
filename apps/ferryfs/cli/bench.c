/* ferryfs bench: a cluster on loopback (a tracker, two storage servers of
 * one group on /dev/shm with fsync=never, as FastDFS's two: the page-cache conditions of
 * the FastDFS figures in research/fastdfs.md) and N client processes doing what FastDFS's
 * benchmark does per operation: ask the tracker, then call the storage server (upload
 * from a file, download into a file, delete). Per transport, size and client count:
 * ops/s, MB/s, p50/p99 latency, and the daemons' CPU per operation from /proc/PID/stat.
 * CSV and a table with the FastDFS figures beside. docs/ferryfs/BENCH.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "ferryfs/ferryfs.h"

#define B_CLIENTS_MAX 8
#define B_TRANSPORTS  3

enum { OP_UPLOAD = 0, OP_DOWNLOAD = 1, OP_DELETE = 2, OP_N = 3 };
static const char *const op_names[OP_N] = {"upload", "download", "delete"};

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* utime + stime of pid, in seconds. */
static double proc_cpu(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
	           &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* A daemon started from dir, its first "listening on" lines read back. */
typedef struct daemon_proc {
	pid_t pid;
	char log[PATH_MAX];
	char locs[4][FERRYFS_LOC_MAX + 1];
	int nlocs;
} daemon_proc;

static int start_daemon(daemon_proc *d, char *const argv[], const char *log, int want)
{
	snprintf(d->log, sizeof(d->log), "%s", log);
	d->nlocs = 0;
	d->pid = fork();
	if (d->pid < 0)
		return -errno;
	if (d->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	for (int t = 0; t < 100 && d->nlocs < want; t++) {
		usleep(50000);
		FILE *f = fopen(log, "r");
		char line[512];
		d->nlocs = 0;
		while (f != NULL && fgets(line, sizeof(line), f) != NULL &&
		       d->nlocs < 4) {
			char *p = strstr(line, "listening on ");
			if (p != NULL) {
				p += 13;
				p[strcspn(p, "\n")] = '\0';
				snprintf(d->locs[d->nlocs++], FERRYFS_LOC_MAX + 1, "%s",
				         p);
			}
		}
		if (f != NULL)
			fclose(f);
	}
	return d->nlocs >= want ? 0 : -ETIMEDOUT;
}

static void stop_daemon(daemon_proc *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
}

/* One client process: its share of a cell, each phase on the parent's go
 * (a byte on go), its latencies to lat (shared memory), one byte back on
 * done when a phase ends. Exit status 0 when every operation succeeded. */
static int client_run(const char *tracker, const char *transport, size_t size, int ops,
                      double *lat, int go, int done)
{
	ferryfs_opts o = {.size = sizeof(o),
	                  .trackers = &tracker,
	                  .ntrackers = 1,
	                  .transport = transport};
	ferryfs *fs;
	if (ferryfs_open(&o, &fs) != 0)
		return 1;
	int src = memfd_create("bench-src", MFD_CLOEXEC),
	    dst = memfd_create("bench-dst", 0);
	uint8_t *buf = malloc(size);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 131 + (size_t)getpid());
	if (src < 0 || dst < 0 || buf == NULL || write(src, buf, size) != (ssize_t)size)
		return 1;
	char(*ids)[FERRYFS_ID_MAX] = calloc((size_t)ops, FERRYFS_ID_MAX);
	int bad = 0;
	for (int phase = 0; phase < OP_N; phase++) {
		char c;
		if (read(go, &c, 1) != 1)
			return 1;
		for (int i = 0; i < ops; i++) {
			double t0 = now_s();
			int rc;
			uint64_t w;
			if (phase == OP_UPLOAD)
				rc = ferryfs_upload_fd(fs, src, size, NULL, ids[i]);
			else if (phase == OP_DOWNLOAD)
				rc = ferryfs_download_fd(fs, ids[i], 0, 0, dst, 0, &w,
				                         NULL, NULL);
			else
				rc = ferryfs_delete(fs, ids[i]);
			lat[phase * ops + i] = now_s() - t0;
			if (rc != 0 && bad++ == 0)
				fprintf(stderr, "ferryfs bench: %s\n",
				        ferryfs_errmsg(fs));
		}
		if (write(done, "d", 1) != 1)
			return 1;
	}
	ferryfs_close(fs);
	free(ids);
	free(buf);
	return bad != 0;
}

typedef struct cell {
	const char *transport;
	size_t size;
	int clients;
	int op;
	double ops_s, mb_s, p50_us, p99_us, st_cpu_us, tr_cpu_us;
	int errors;
} cell;

/* One size and client count on one transport: upload, download, delete. */
static int run_cell(const char *tracker, const char *transport, size_t size, int clients,
                    int ops_total, const pid_t storage[2], pid_t trk, cell out[OP_N])
{
	int per = ops_total / clients;
	size_t lat_bytes = (size_t)clients * OP_N * (size_t)per * sizeof(double);
	double *lat = mmap(NULL, lat_bytes, PROT_READ | PROT_WRITE,
	                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (lat == MAP_FAILED)
		return -errno;
	int gop[2], dp[2];
	if (pipe(dp) != 0)
		return -errno;
	pid_t kids[B_CLIENTS_MAX];
	int go[B_CLIENTS_MAX];
	for (int k = 0; k < clients; k++) {
		if (pipe(gop) != 0)
			return -errno;
		kids[k] = fork();
		if (kids[k] == 0) {
			close(gop[1]);
			close(dp[0]);
			_exit(client_run(tracker, transport, size, per,
			                 lat + (size_t)k * OP_N * (size_t)per, gop[0],
			                 dp[1]));
		}
		close(gop[0]);
		go[k] = gop[1];
	}
	close(dp[1]);
	int rc = 0;
	for (int phase = 0; phase < OP_N; phase++) {
		double s0 = proc_cpu(storage[0]) + proc_cpu(storage[1]),
		       r0 = proc_cpu(trk), t0 = now_s();
		for (int k = 0; k < clients; k++)
			if (write(go[k], "g", 1) != 1)
				rc = -EPIPE;
		char c;
		for (int k = 0; k < clients; k++)
			if (read(dp[0], &c, 1) != 1)
				rc = -EPIPE;
		double secs = now_s() - t0;
		int n = clients * per;
		double *l = malloc((size_t)n * sizeof(double));
		for (int k = 0; k < clients; k++)
			memcpy(l + k * per,
			       lat + ((size_t)k * OP_N + (size_t)phase) * (size_t)per,
			       (size_t)per * sizeof(double));
		qsort(l, (size_t)n, sizeof(double), cmp_double);
		out[phase] = (cell){
		        .transport = transport,
		        .size = size,
		        .clients = clients,
		        .op = phase,
		        .ops_s = n / secs,
		        .mb_s = phase == OP_DELETE ? 0 : n * (double)size / secs / 1e6,
		        .p50_us = l[n / 2] * 1e6,
		        .p99_us = l[(size_t)n * 99 / 100] * 1e6,
		        /* both servers, as FastDFS's figure */
		        .st_cpu_us = (proc_cpu(storage[0]) + proc_cpu(storage[1]) - s0) /
		                     n * 1e6,
		        .tr_cpu_us = (proc_cpu(trk) - r0) / n * 1e6};
		free(l);
	}
	for (int k = 0; k < clients; k++) {
		int status;
		close(go[k]);
		waitpid(kids[k], &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			for (int p = 0; p < OP_N; p++)
				out[p].errors++;
	}
	close(dp[0]);
	munmap(lat, lat_bytes);
	return rc;
}

/* FastDFS 6.16 on a machine like ours (research/fastdfs.md): ops/s for
 * 4 KiB, MB/s for 1 MiB; 0 where it has no figure here. */
static double fastdfs_ref(size_t size, int op, int clients)
{
	if (size == 4096 && op == OP_DOWNLOAD)
		return clients == 1 ? 10992 : 29384;
	if (size == 4096 && op == OP_UPLOAD)
		return clients == 1 ? 1922 : 9620;
	if (size == 4096 && op == OP_DELETE)
		return clients == 1 ? 3580 : 5770;
	if (size == 65536 && op == OP_DOWNLOAD)
		return clients == 1 ? 5658 : 10319;
	if (size == 65536 && op == OP_UPLOAD)
		return clients == 1 ? 795 : 1829;
	if (size == 1048576 && op == OP_DOWNLOAD)
		return clients == 1 ? 1314.5 : 2160.8;
	if (size == 1048576 && op == OP_UPLOAD)
		return clients == 1 ? 117.6 : 226.2;
	return 0;
}

static void usage_bench(FILE *f)
{
	fprintf(f,
	        "usage: ferryfs bench [--quick | --tiny] [--transports tcp,splice,fast+udp]\n"
	        "  [--out DIR] [--daemons DIR] [--store DIR]\n"
	        "A tracker and two storage servers on loopback (store on /dev/shm, fsync\n"
	        "never), 1 and 8 client processes; upload, download, delete at 4 KiB,\n"
	        "64 KiB and 1 MiB. Writes DIR/results.csv (default out/bench/ferryfs).\n");
}

/* The tracker and two storage servers of one group (uploads alternate,
 * each read goes to the server that has the object: no replication yet,
 * issue 17), all on every transport, stores under store/, logs in out/. */
static int cluster_start(daemon_proc *trk, daemon_proc st[2], char *trk_bin, char *st_bin,
                         const char *out, const char *store, char *stf)
{
	char tlog[PATH_MAX + 16], slog[PATH_MAX + 16], storep[PATH_MAX + 16],
	        cmd[PATH_MAX + 32];
	snprintf(tlog, sizeof(tlog), "%s/tracker.log", out);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s/s1' '%s/s2' '%s/tracker.state'", store,
	         store, store);
	if (system(cmd) != 0)
		return -1;
	char *targv[] = {trk_bin, "--foreground",
	                 "--set", "listen=tcp:host=127.0.0.1,port=0",
	                 "--set", "listen=splice:host=127.0.0.1,port=0",
	                 "--set", "listen=fast+udp:host=127.0.0.1,port=0",
	                 "--set", stf,
	                 NULL};
	if (start_daemon(trk, targv, tlog, 3) != 0) {
		fprintf(stderr, "ferryfs bench: the tracker did not start (%s)\n", tlog);
		stop_daemon(trk);
		return -1;
	}
	char beat[FERRYFS_LOC_MAX + 16], sid[32];
	snprintf(beat, sizeof(beat), "tracker=%s", trk->locs[0]);
	char *sargv[] = {st_bin,  "--foreground",
	                 "--set", sid,
	                 "--set", "listen=tcp:host=127.0.0.1,port=0",
	                 "--set", "listen=splice:host=127.0.0.1,port=0",
	                 "--set", "listen=fast+udp:host=127.0.0.1,port=0",
	                 "--set", storep,
	                 "--set", "fsync=never",
	                 "--set", beat,
	                 "--set", "beat_ms=200",
	                 "--set", "workers=4",
	                 NULL};
	for (int k = 0; k < 2; k++) {
		snprintf(sid, sizeof(sid), "server_id=%d", k + 1);
		snprintf(storep, sizeof(storep), "store_path=%s/s%d", store, k + 1);
		snprintf(slog, sizeof(slog), "%s/storage%d.log", out, k + 1);
		snprintf(cmd, sizeof(cmd), "mkdir -p '%s/s%d'", store, k + 1);
		if (system(cmd) != 0 || start_daemon(&st[k], sargv, slog, 3) != 0) {
			fprintf(stderr,
			        "ferryfs bench: a storage server did not start (%s)\n",
			        slog);
			stop_daemon(&st[0]);
			stop_daemon(&st[1]);
			stop_daemon(trk);
			return -1;
		}
	}
	usleep(600000); /* a beat or two: the tracker knows the servers */
	return 0;
}

static void cluster_stop(daemon_proc *trk, daemon_proc st[2])
{
	stop_daemon(&st[0]);
	stop_daemon(&st[1]);
	stop_daemon(trk);
}

int ferryfs_bench(int argc, char **argv, const char *self)
{
	bool quick = false, tiny = false;
	const char *transports = "tcp,splice,fast+udp", *out = "out/bench/ferryfs";
	char daemons[PATH_MAX], store[PATH_MAX] = "";
	snprintf(daemons, sizeof(daemons), "%s", self);
	char *slash = strrchr(daemons, '/');
	if (slash != NULL)
		*slash = '\0';
	else
		snprintf(daemons, sizeof(daemons), ".");
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else if (strcmp(argv[i], "--tiny") == 0)
			tiny = true;
		else if (strcmp(argv[i], "--transports") == 0 && i + 1 < argc)
			transports = argv[++i];
		else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (strcmp(argv[i], "--daemons") == 0 && i + 1 < argc)
			snprintf(daemons, sizeof(daemons), "%s", argv[++i]);
		else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc)
			snprintf(store, sizeof(store), "%s", argv[++i]);
		else {
			usage_bench(argc > 0 && strcmp(argv[i], "--help") == 0 ? stdout
			                                                       : stderr);
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", out);
	if (system(cmd) != 0)
		return 1;
	char state[PATH_MAX], dir[PATH_MAX] = "/dev/shm/ferryfs-bench-XXXXXX";
	if (store[0] == '\0') {
		if (mkdtemp(dir) == NULL)
			return 1;
		snprintf(store, sizeof(store), "%s", dir);
	}
	snprintf(state, sizeof(state), "%s/tracker.state", store);
	char trk_bin[PATH_MAX + 24], st_bin[PATH_MAX + 24], tlog[PATH_MAX + 16],
	        slog[PATH_MAX + 16], storep[PATH_MAX + 16], stf[PATH_MAX + 16];
	snprintf(trk_bin, sizeof(trk_bin), "%s/ferryfs-tracker", daemons);
	snprintf(st_bin, sizeof(st_bin), "%s/ferryfs-storage", daemons);
	snprintf(tlog, sizeof(tlog), "%s/tracker.log", out);
	snprintf(slog, sizeof(slog), "%s/storage1.log", out);
	snprintf(storep, sizeof(storep), "store_path=%s/s1", store);
	snprintf(stf, sizeof(stf), "state_file=%s", state);
	daemon_proc trk = {0}, st[2] = {{0}};
	char csv[PATH_MAX + 16];
	snprintf(csv, sizeof(csv), "%s/results.csv", out);
	FILE *f = fopen(csv, "w");
	if (f == NULL)
		return 1;
	fprintf(f, "transport,size,op,clients,ops_per_s,mb_per_s,p50_us,p99_us,"
	           "storage_cpu_us_per_op,tracker_cpu_us_per_op,errors,fastdfs_ref\n");
	static const size_t sizes[] = {4096, 65536, 1048576};
	/* operations per cell: FastDFS's own counts (research/fastdfs.md), a
	 * tenth of them (--quick), or a smoke test's (--tiny) */
	static const int full_ops[] = {20000, 10000, 3000},
	                 quick_ops[] = {2000, 1000, 200}, tiny_ops[] = {80, 40, 16};
	static const int nclients[] = {1, 8};
	int rc = 0, total = 0, done = 0;
	char list[256];
	snprintf(list, sizeof(list), "%s", transports);
	for (char *s = list; *s != '\0'; s++)
		total += *s == ',';
	total = (total + 1) * 3 * 2;
	printf("| transport | size | op | clients | ops/s | MB/s | p50 µs | p99 µs | storage CPU "
	       "µs/op | FastDFS 6.16 |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
	char *save = NULL;
	for (char *t = strtok_r(list, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		/* a fresh cluster per transport: what one transport's clients
		 * left on the servers does not weigh on the next */
		if (cluster_start(&trk, st, trk_bin, st_bin, out, store, stf) != 0) {
			rc = 1;
			break;
		}
		pid_t spids[2] = {st[0].pid, st[1].pid};
		const char *tracker = NULL;
		for (int i = 0; i < trk.nlocs; i++)
			if (strncmp(trk.locs[i], t, strlen(t)) == 0 &&
			    trk.locs[i][strlen(t)] == ':')
				tracker = trk.locs[i];
		if (tracker == NULL) {
			fprintf(stderr, "ferryfs bench: no tracker locator on %s\n", t);
			cluster_stop(&trk, st);
			rc = 1;
			continue;
		}
		for (int si = 0; si < 3; si++)
			for (int ci = 0; ci < 2; ci++) {
				cell c[OP_N];
				fprintf(stderr,
				        "ferryfs bench: %s %zu B, %d client%s (%d/%d)\n",
				        t, sizes[si], nclients[ci],
				        nclients[ci] > 1 ? "s" : "", ++done, total);
				int ops = tiny    ? tiny_ops[si]
				          : quick ? quick_ops[si]
				                  : full_ops[si];
				if (run_cell(tracker, t, sizes[si], nclients[ci], ops,
				             spids, trk.pid, c) != 0)
					rc = 1;
				for (int p = 0; p < OP_N; p++) {
					double ref =
					        fastdfs_ref(sizes[si], p, nclients[ci]);
					fprintf(f,
					        "%s,%zu,%s,%d,%.1f,%.1f,%.0f,%.0f,%.1f,%.1f,%d,%.1f\n",
					        t, sizes[si], op_names[p], nclients[ci],
					        c[p].ops_s, c[p].mb_s, c[p].p50_us,
					        c[p].p99_us, c[p].st_cpu_us,
					        c[p].tr_cpu_us, c[p].errors, ref);
					char refs[32] = "";
					if (ref > 0)
						snprintf(refs, sizeof(refs), "%.0f %s",
						         ref,
						         sizes[si] == 1048576 ? "MB/s"
						                              : "ops/s");
					printf("| %s | %zu | %s | %d | %.0f | %.1f | %.0f | %.0f | %.0f | %s |\n",
					       t, sizes[si], op_names[p], nclients[ci],
					       c[p].ops_s, c[p].mb_s, c[p].p50_us,
					       c[p].p99_us, c[p].st_cpu_us, refs);
					if (c[p].errors != 0)
						rc = 1;
				}
				fflush(stdout);
			}
		cluster_stop(&trk, st);
	}
	fclose(f);
	if (strncmp(store, "/dev/shm/ferryfs-bench-", 23) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", store);
		if (system(cmd) != 0)
			rc = 1;
	}
	fprintf(stderr, "ferryfs bench: results in %s\n", csv);
	return rc;
}
