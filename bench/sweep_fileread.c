/* ferry-bench sweep: file reads, splice against tcp serving a file region
 * into a file (FILEREAD, ferry_call_into_fd), alternating slices against a
 * blocking server of their own that is replaced when it dies. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include "sweep.h"

/* Which fileread transports run: tcp (the reference) must, splice may.
 * File sizes whose server file plus client sink would not fit in
 * /dev/shm (64 MiB in a default Docker container) are dropped. */
int bench_sweep_fileread_plan(sweep_cfg *cfg, const bool *use, int *ti)
{
	struct statvfs vfs;
	if (cfg->fileread && statvfs(SWEEP_FILEREAD_DIR, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		int n = 0;
		for (int i = 0; i < cfg->nfsizes; i++) {
			uint64_t s = cfg->fsizes[i];
			uint64_t need =
			        s +
			        (uint64_t)bench_sweep_concurrency("throughput", s) * s +
			        (1u << 20);
			if (need <= avail)
				cfg->fsizes[n++] = s;
			else
				fprintf(stderr,
				        "ferry-bench sweep: fileread %llu B skipped: "
				        "%s has %llu MiB free, needs %llu\n",
				        (unsigned long long)s, SWEEP_FILEREAD_DIR,
				        (unsigned long long)(avail >> 20),
				        (unsigned long long)(need >> 20));
		}
		cfg->nfsizes = n;
	}
	if (!cfg->fileread || cfg->nfsizes == 0)
		return 0;
	int r = bench_sweep_transport_index(SWEEP_FILEREAD_REF);
	int z = bench_sweep_transport_index(SWEEP_FILEREAD_ZC);
	if (r < 0 || !use[r])
		return 0;
	ti[0] = r;
	if (z < 0 || !use[z])
		return 1;
	ti[1] = z;
	return 2;
}

/* The file-read server: both transports of ti on one blocking server, its
 * bound locators in loc. 0, or -1 when it did not start (reaped). */
static int sweep_fileread_start(const sweep_cfg *cfg, const int *ti, int nt,
                                sweep_child *srv, char loc[][640])
{
	char *argv[4 + 2 * 2 + 4];
	char listen[2][128], line[640];
	int a = 0;
	argv[a++] = (char *)cfg->exe;
	argv[a++] = "server";
	for (int i = 0; i < nt; i++) {
		argv[a++] = "--listen";
		argv[a++] =
		        bench_sweep_listen_loc(cfg, ti[i], listen[i], sizeof(listen[i]));
	}
	argv[a++] = "--poll";
	argv[a++] = SWEEP_FILEREAD_POLL;
	argv[a] = NULL;
	if (bench_sweep_spawn(cfg, BENCH_LINK_SERVER, argv, NULL, cfg->cpu_server, srv) ==
	    0) {
		int i = 0;
		while (i < nt &&
		       bench_sweep_readline(srv, loc[i], sizeof(loc[i]), 10) == 0)
			i++;
		if (i == nt && bench_sweep_readline(srv, line, sizeof(line), 10) == 0 &&
		    strcmp(line, "ready") == 0)
			return 0;
		bench_sweep_reap(srv, true, NULL);
	}
	fprintf(stderr, "ferry-bench sweep: fileread server did not start\n");
	return -1;
}

/* The fileread server, started again when it has died (before a slice) or
 * after a failed slice (a live one is replaced: its broken state would
 * fail every slice after it, each client finding nothing in its sink).
 * Deaths are said and counted in pg->restarts, replacements in
 * pg->replaced. 0, or -1 when it could not be started again (said). */
static int sweep_fileread_again(const sweep_cfg *cfg, const int *ti, int nt,
                                sweep_child *srv, char loc[][640], bool failed,
                                sweep_progress *pg)
{
	char why[96];
	bool died = bench_sweep_exited(srv, why, sizeof(why));
	if (!died && !failed)
		return 0;
	if (died) {
		bench_progress_done(); /* the message on a line of its own */
		fprintf(stderr,
		        "ferry-bench sweep: the fileread server (pid %d) died (%s); "
		        "starting another\n",
		        (int)srv->pid, why);
	}
	bench_sweep_reap(srv, true, NULL);
	if (sweep_fileread_start(cfg, ti, nt, srv, loc) != 0) {
		fprintf(stderr,
		        "ferry-bench sweep: the fileread server could not be started "
		        "again: stopping the sweep\n");
		pg->broken = true;
		return -1;
	}
	(died ? pg->restarts : pg->replaced)[SWEEP_SRV_FILEREAD]++;
	return 0;
}

/* One FILEREAD slice of transport ti at size into its row (row ref: NULL
 * for the reference). 0, or -1 when it failed (no result, or no call
 * completed: then on record in its row, unpaired). */
static int sweep_fileread_slice(const sweep_cfg *cfg, int ti, const char *loc,
                                const char *ref, uint64_t size, bench_result *r)
{
	const char *name = bench_sweep_transports[ti].stack;
	const char *poll = SWEEP_FILEREAD_POLL;
	if (bench_sweep_client(cfg, loc, name, "fileread", "fileread", poll, size, r) !=
	    0)
		return -1;
	snprintf(r->poll, sizeof(r->poll), "%s", poll);
	bench_sweep_row_add(bench_sweep_row_get(name, poll, "fileread", size, ref), r);
	return r->ops > 0 ? 0 : -1;
}

/* Every slice at one file size: tcp and splice alternate who goes first,
 * each slice pair gives splice a ratio. 0, or -1 when the server could not
 * be started again. */
static int sweep_fileread_size(const sweep_cfg *cfg, const int *ti, int nt,
                               sweep_child *srv, char loc[][640], uint64_t size,
                               sweep_progress *pg)
{
	const char *poll = SWEEP_FILEREAD_POLL;
	const char *ref = bench_sweep_transports[ti[0]].stack;
	for (int k = 0; k < cfg->slices; k++) {
		bench_result res[2];
		int rc[2] = {-1, -1};
		for (int j = 0; j < nt; j++) {
			int i = k % 2 == 0 ? j : nt - 1 - j;
			bench_sweep_progress_slice(
			        pg, bench_sweep_transports[ti[i]].stack, poll, "fileread",
			        size, k, cfg->slices);
			pg->done++;
			if (sweep_fileread_again(cfg, ti, nt, srv, loc, false, pg) != 0)
				return -1;
			rc[i] = sweep_fileread_slice(cfg, ti[i], loc[i],
			                             i == 0 ? NULL : ref, size, &res[i]);
			/* tcp's slice is both a row's and splice's baseline */
			pg->failures += rc[i] != 0;
			pg->raw_failures += rc[i] != 0 && i == 0;
			if (rc[i] != 0 &&
			    sweep_fileread_again(cfg, ti, nt, srv, loc, true, pg) != 0)
				return -1;
		}
		if (nt == 2 && rc[0] == 0 && rc[1] == 0) {
			sweep_row *w =
			        bench_sweep_row_get(bench_sweep_transports[ti[1]].stack,
			                            poll, "fileread", size, ref);
			double pr = bench_sweep_pair("fileread", &res[1], &res[0]);
			if (w != NULL && pr > 0 && w->npairs < SWEEP_SLICES_MAX)
				w->pair_ratio[w->npairs++] = pr;
		}
	}
	return 0;
}

/* splice vs tcp FILEREAD at each file size against one blocking server of
 * their own (the other servers are gone by now), checked before each slice.
 * Returns 0, or -1 when that server could not be started (again); pg counts
 * slices, points and restarts. */
int bench_sweep_fileread(const sweep_cfg *cfg, const int *ti, int nt, sweep_progress *pg)
{
	sweep_child srv;
	char loc[2][640];
	if (sweep_fileread_start(cfg, ti, nt, &srv, loc) != 0) {
		pg->broken = true;
		return -1;
	}
	for (int s = 0; s < cfg->nfsizes; s++) {
		if (sweep_fileread_size(cfg, ti, nt, &srv, loc, cfg->fsizes[s], pg) != 0)
			return -1; /* no server left to reap */
		for (int i = 0; i < nt; i++)
			bench_sweep_progress_point(
			        pg, bench_sweep_transports[ti[i]].stack,
			        SWEEP_FILEREAD_POLL, "fileread", cfg->fsizes[s], false);
	}
	bench_sweep_reap(&srv, true, NULL);
	return 0;
}
