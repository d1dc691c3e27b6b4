/* ferry-bench sweep: every transport this machine can run, against the raw
 * socket baselines (and UCX over TCP as a peer when ucx_perftest is
 * installed), server and client pinned to different cores. Runs of a
 * transport and of its raw baseline at the same size alternate in short
 * slices, and a row's ratio is the median of the paired slice ratios, so
 * machine noise mostly cancels. Writes DIR/results.csv (the documented
 * columns), DIR/results.json (every slice), DIR/metrics.csv (packets and
 * copies per call from both sides' metrics), then renders the plots.
 *
 * Operations: latency rows are ECHO ping-pongs (size bytes each way, like
 * ucx_perftest's tag_lat and the raw ping-pong); throughput rows are READs
 * (size bytes server to client per call, like a one-way stream: tag_bw and
 * the raw streams).
 *
 * Baselines: datagram transports compare with raw-udp up to 65507 B and
 * raw-tcp above; stream transports (tcp, splice) with raw-tcp at every size.
 *
 * File reads (mode "fileread"): splice against tcp, the same FILEREAD call
 * on both (the server answers with a region of a file it made on /dev/shm,
 * the client receives the body into a /dev/shm file with
 * ferry_call_into_fd), in alternating slices; the tcp row is the reference
 * (raw_ref "tcp", ratio 1) and the splice row's ratio is its throughput over
 * tcp's. These run with poll=block on both sides whatever --quick/--tiny
 * say: a spinning process burns its core whether it works or not, so its
 * CPU per op would only restate the wall time, and the CPU per op is the
 * point (sendfile/splice against pread+send and recv+write copies).
 *
 * CSV consistency: for a transport row, median_us is the raw row's median
 * times the median paired ratio (latency), and mb_per_s the raw row's times
 * the ratio (throughput, fileread), so ratio_vs_raw can be recomputed from
 * the CSV alone; the directly measured medians are in results.json.
 * ratio_vs_tcp compares a row with the tcp transport's row at the same
 * poll, mode and size, from those same CSV numbers, oriented so that above
 * 1 is better than tcp: mb_per_s over tcp's (throughput, fileread), tcp's
 * median_us over the row's (latency).
 *
 * Links (link.h): lo, the default, runs everything in this namespace over
 * 127.0.0.1; --link veth runs every server in one namespace and every
 * client in another, joined by a veth pair at --mtu, each child under
 * `ip netns exec`. Every row says which (the link column, last).
 *
 * A point (transport, poll, mode, size) that fails twice with no good
 * slice, or once after a smaller size of the same series was given up, is
 * given up: a dead session costs seconds per slice, and its errors are
 * already on record (results.json, the table).
 *
 * Servers: before each slice every server the sweep started (the ferry
 * server, both raw baselines, the fileread server) is checked; one that
 * died is said, started again and counted (the summary's restarts), and if
 * it cannot be started the sweep stops. A transport row is written only
 * with its baseline: a row none of whose slices could be paired with a
 * baseline slice is reported as an error, left out of results.csv, and the
 * sweep exits 1 at the end.
 *
 * Progress on stderr: a bar on a terminal, else one line per finished
 * point with the time spent and left.
 *
 * Files: sweep.c (this: options, the plan, the loop over points and
 * slices), sweep_procs.c (child processes, the servers), sweep_slices.c (one
 * measuring child per slice), sweep_rows.c (rows and aggregation),
 * sweep_fileread.c (splice against tcp reading a file), sweep_progress.c
 * (progress on stderr), sweep_out.c (CSV, JSON, the table, plots); sweep.h
 * what they share. */
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/driver.h"
#include "ferry/ferry.h"
#include "sweep.h"

const struct sweep_transport bench_sweep_transports[SWEEP_NTRANSPORTS] = {
        {"fast+udp", "udp", true},
        {"unreliable+udp", "udp", true},
        {"tcp", "tcp", false},
        {"splice", "splice", false},
};
_Static_assert(sizeof(bench_sweep_transports) / sizeof(bench_sweep_transports[0]) ==
                       SWEEP_NTRANSPORTS,
               "SWEEP_NTRANSPORTS counts the table");

static bool sweep_transport_runnable(const struct sweep_transport *t, char *why,
                                     size_t len)
{
	const ferry_driver_ops *d = ferry_driver_find(t->driver);
	if (d == NULL) {
		snprintf(why, len, "driver %s not built", t->driver);
		return false;
	}
	if (d->probe != NULL && d->probe(why, len) != 0)
		return false;
	return true;
}

/* The raw baseline of transport t at size: datagram transports raw-udp
 * while a datagram holds size, stream transports raw-tcp at every size. */
static bool sweep_raw_udp(const struct sweep_transport *t, uint64_t size)
{
	return t != NULL && t->datagram && size <= SWEEP_RAW_UDP_MAX;
}

int bench_sweep_transport_index(const char *stack)
{
	for (int i = 0; i < SWEEP_NTRANSPORTS; i++)
		if (strcmp(bench_sweep_transports[i].stack, stack) == 0)
			return i;
	return -1;
}

static void sweep_usage(FILE *f)
{
	/* one source line per line of the usage text */
	/* clang-format off */
	fprintf(f,
	        "usage: ferry-bench sweep --out DIR [--quick | --tiny] [--plots DIR]\n"
	        "         [--link lo|veth] [--mtu N] [--no-peer] [--no-plots] [--no-fileread]\n"
	        "         [--transports a,b] [--sizes LIST] [--polls spin,block]\n"
	        "         [--slices K] [--slice 0.2s] [--cpus CLIENT,SERVER]\n"
	        "       ferry-bench sweep --list\n"
	        "Every transport this machine can run plus raw-udp/raw-tcp (and UCX over\n"
	        "TCP, row " SWEEP_PEER ", when ucx_perftest is installed): latency (ECHO\n"
	        "ping-pong) and throughput (READ); runs of a transport and its raw baseline\n"
	        "alternate in short slices and the ratio is the median of the paired\n"
	        "ratios. Datagram transports compare with raw-udp (raw-tcp past 64 KiB),\n"
	        "stream transports (tcp, splice) with raw-tcp. Then file reads (mode\n"
	        "fileread, poll block): splice vs tcp serving a /dev/shm file region into\n"
	        "a /dev/shm file (ferry_call_into_fd), ratio = splice / tcp throughput.\n"
	        "results.csv's ratio_vs_tcp compares each row with the tcp row of the same\n"
	        "poll, mode and size, above 1 = better than tcp: MB/s over tcp's\n"
	        "(throughput, fileread), tcp's median RTT over the row's (latency).\n"
	        "  --link lo    the default: everything on 127.0.0.1 in this namespace\n"
	        "  --link veth  servers in one network namespace, clients in another,\n"
	        "               joined by a veth pair (root; ip, ethtool for GRO);\n"
	        "               full sizes 64,4k,64k,256k,1m,4m,16m,64m\n"
	        "  --mtu N      the veth pair's MTU (default 1500); link column vethN\n"
	        "  --quick   sizes 64,64k,1m, spin only, ~1 s per point; fileread 1m,16m\n"
	        "  --tiny    sizes 64,4k, spin only, a few short slices (the smoke test);\n"
	        "            fileread 1m\n"
	        "  default   sizes 64,1k,4k,16k,64k,256k,1m, spin and block (< 10 min);\n"
	        "            fileread 1m,4m,16m,64m\n"
	        "  --sizes, --polls  replace the sizes and poll modes the above chose\n"
	        "  --transports      only these rows (names as in --list, or " SWEEP_PEER ")\n"
	        "  --list    print each transport and whether it would run, then exit\n"
	        "Writes DIR/results.csv, results.json, metrics.csv, *-metrics.jsonl and\n"
	        "the plots (gnuplot, scripts from --plots, default ./plots), every row\n"
	        "and plot saying its link. A server that died is started again\n"
	        "before the next slice (the summary counts restarts); a row whose\n"
	        "baseline could not be measured is not written, and the sweep then\n"
	        "exits 1. Progress on stderr: a bar on a terminal, else a line per\n"
	        "finished point.\n");
	/* clang-format on */
}

static bool sweep_have_ucx(void)
{
	return system("command -v ucx_perftest >/dev/null 2>&1") == 0;
}

/* Is name one of --transports (every name when there is no list)? */
static bool sweep_wanted(const sweep_cfg *cfg, const char *name)
{
	if (cfg->only == NULL)
		return true;
	char list[512], want[128];
	snprintf(list, sizeof(list), ",%s,", cfg->only);
	snprintf(want, sizeof(want), ",%s,", name);
	return strstr(list, want) != NULL;
}

/* "spin", "block", "spin,block" into cfg->polls. 0 or -1. */
static int sweep_parse_polls(sweep_cfg *cfg, const char *s)
{
	cfg->npolls = 0;
	while (*s != '\0') {
		size_t n = strcspn(s, ",");
		const char *p = n == 4 && strncmp(s, "spin", 4) == 0    ? "spin"
		                : n == 5 && strncmp(s, "block", 5) == 0 ? "block"
		                                                        : NULL;
		if (p == NULL || cfg->npolls == 2)
			return -1;
		cfg->polls[cfg->npolls++] = p;
		s += n + (s[n] == ',');
	}
	return cfg->npolls > 0 ? 0 : -1;
}

/* Sizes, poll modes and slices of --tiny, --quick or the full sweep (whose
 * veth sizes go past lo's to where a real link's segmentation shows), then
 * the explicit --sizes, --polls, --slices, --slice. 0 or -1. */
static int sweep_plan(sweep_cfg *cfg, bool veth, const char *sizes, const char *polls,
                      int slices, double slice)
{
	cfg->npolls = 1, cfg->polls[0] = "spin";
	if (cfg->tiny) {
		cfg->nsizes = bench_parse_sizes("64,4k", cfg->sizes, BENCH_SIZES_MAX);
		cfg->nfsizes = bench_parse_sizes("1m", cfg->fsizes, BENCH_SIZES_MAX);
		cfg->slices = 3, cfg->slice_s = 0.08, cfg->warmup_s = 0.02;
	} else if (cfg->quick) {
		cfg->nsizes = bench_parse_sizes("64,64k,1m", cfg->sizes, BENCH_SIZES_MAX);
		cfg->nfsizes = bench_parse_sizes("1m,16m", cfg->fsizes, BENCH_SIZES_MAX);
		cfg->slices = 5, cfg->slice_s = 0.15, cfg->warmup_s = 0.03;
	} else {
		cfg->nsizes = bench_parse_sizes(veth ? "64,4k,64k,256k,1m,4m,16m,64m"
		                                     : "64,1k,4k,16k,64k,256k,1m",
		                                cfg->sizes, BENCH_SIZES_MAX);
		cfg->nfsizes =
		        bench_parse_sizes("1m,4m,16m,64m", cfg->fsizes, BENCH_SIZES_MAX);
		cfg->npolls = 2, cfg->polls[1] = "block";
		cfg->slices = 5, cfg->slice_s = 0.25, cfg->warmup_s = 0.05;
	}
	if (sizes != NULL &&
	    (cfg->nsizes = bench_parse_sizes(sizes, cfg->sizes, BENCH_SIZES_MAX)) <= 0)
		return -1;
	if (polls != NULL && sweep_parse_polls(cfg, polls) != 0) {
		fprintf(stderr,
		        "ferry-bench sweep: --polls %s: spin, block or spin,block\n",
		        polls);
		return -1;
	}
	if (slices > 0)
		cfg->slices = slices < SWEEP_SLICES_MAX ? slices : SWEEP_SLICES_MAX;
	if (slice > 0)
		cfg->slice_s = slice;
	return 0;
}

/* Which rows run: use[i] per transport, and whether the UCX peer does. */
static bool sweep_choose(const sweep_cfg *cfg, bool *use)
{
	for (int i = 0; i < SWEEP_NTRANSPORTS; i++) {
		char why[160] = "";
		use[i] = sweep_transport_runnable(&bench_sweep_transports[i], why,
		                                  sizeof(why));
		if (use[i] && !sweep_wanted(cfg, bench_sweep_transports[i].stack)) {
			use[i] = false;
			snprintf(why, sizeof(why), "not in --transports");
		}
		if (!use[i])
			fprintf(stderr, "ferry-bench sweep: skipping %s: %s\n",
			        bench_sweep_transports[i].stack, why);
	}
	if (!cfg->peer || cfg->tiny || !sweep_wanted(cfg, SWEEP_PEER))
		return false;
	if (sweep_have_ucx())
		return true;
	fprintf(stderr, "ferry-bench sweep: ucx_perftest not found: no UCX row "
	                "(apt-get install ucx-utils)\n");
	return false;
}

/* Does row t (SWEEP_NTRANSPORTS: the UCX peer) run at this poll mode?
 * ucx_perftest always spins: no block-mode peer row. */
static bool sweep_runs(int t, const bool *use, bool peer, const char *poll)
{
	return t < SWEEP_NTRANSPORTS ? use[t] : peer && strcmp(poll, "spin") == 0;
}

/* Slice k of row t (SWEEP_NTRANSPORTS: the UCX peer) at one point, paired
 * with a slice of its raw baseline; which goes first alternates with k.
 * Every server is checked (and a dead one started again) first. */
static void sweep_slice(const sweep_cfg *cfg, sweep_servers *sv, int t, const char *poll,
                        const char *mode, uint64_t size, int k, uint64_t *ucx_iters,
                        sweep_progress *pg)
{
	bool is_peer = t == SWEEP_NTRANSPORTS;
	bool dg = sweep_raw_udp(is_peer ? NULL : &bench_sweep_transports[t], size);
	const char *ref = dg ? "raw-udp" : "raw-tcp";
	const char *name = is_peer ? SWEEP_PEER : bench_sweep_transports[t].stack;
	sweep_row *raw =
	        bench_sweep_row_get(ref, poll, mode, size, NULL); /* listed first */
	sweep_row *w = bench_sweep_row_get(name, poll, mode, size, ref);
	bench_sweep_progress_slice(pg, name, poll, mode, size, k, cfg->slices);
	pg->done++;
	if (w != NULL && w->gave_up) {
		pg->skipped++;
		goto out;
	}
	if (bench_sweep_check_servers(cfg, sv, pg) != 0)
		return;
	bench_result rr, tr;
	int rc_raw = -1, rc_t = -1;
	for (int side = 0; side < 2; side++) {
		bool raw_now = (side == 0) == (k % 2 == 0);
		if (raw_now) {
			rc_raw =
			        bench_sweep_slice_raw(cfg, sv, dg, poll, mode, size, &rr);
		} else if (is_peer) {
			bench_sweep_focus(sv, SWEEP_SRV_NONE);
			rc_t = bench_sweep_slice_ucx(cfg, mode, size, ucx_iters, &tr);
		} else {
			rc_t = bench_sweep_slice_ferry(cfg, sv, t, poll, mode, size, &tr);
		}
	}
	if (rc_raw == 0) {
		snprintf(rr.poll, sizeof(rr.poll), "%s", poll);
		bench_sweep_row_add(raw, &rr);
	}
	pg->raw_failures += rc_raw != 0 || rr.ops == 0;
	if (rc_t == 0) {
		snprintf(tr.poll, sizeof(tr.poll), "%s", poll);
		bench_sweep_row_add(w, &tr);
	}
	if (rc_t != 0 || tr.ops == 0) {
		pg->failures++;
		bench_sweep_row_failed(w, rc_t != 0);
		if (!is_peer && bench_sweep_restart_ferry(cfg, sv, pg) != 0)
			return;
	} else {
		double pr = rc_raw == 0 ? bench_sweep_pair(mode, &tr, &rr) : -1;
		if (w != NULL && pr > 0 && w->npairs < SWEEP_SLICES_MAX)
			w->pair_ratio[w->npairs++] = pr;
	}
out:
	if (k == cfg->slices - 1)
		bench_sweep_progress_point(pg, name, poll, mode, size,
		                           w != NULL && w->gave_up);
}

/* Every latency and throughput point of one poll mode against one set of
 * servers. 0, or -1 when the servers did not start. */
static int sweep_poll_mode(const sweep_cfg *cfg, const char *poll, const bool *use,
                           bool peer, sweep_progress *pg)
{
	const char *modes[2] = {"latency", "throughput"};
	sweep_servers sv;
	memset(&sv, 0, sizeof(sv));
	if (bench_sweep_start_servers(cfg, poll, &sv, use) != 0) {
		fprintf(stderr, "ferry-bench sweep: servers did not start (link %s)\n",
		        cfg->link.name);
		bench_sweep_stop_servers(&sv);
		return -1;
	}
	for (int m = 0; m < 2; m++)
		for (int s = 0; s < cfg->nsizes; s++) {
			uint64_t ucx_iters = m == 0 ? 2000 : 500;
			for (int k = 0; k < cfg->slices && !pg->broken; k++)
				for (int t = 0; t < SWEEP_NTRANSPORTS + 1 && !pg->broken;
				     t++)
					if (sweep_runs(t, use, peer, poll))
						sweep_slice(cfg, &sv, t, poll, modes[m],
						            cfg->sizes[s], k, &ucx_iters,
						            pg);
		}
	bench_sweep_stop_servers(&sv);
	return pg->broken ? -1 : 0;
}

/* The points given up, on stderr: their errors are in results.json. */
static void sweep_report_gave_up(void)
{
	for (int i = 0; i < bench_sweep_nrows; i++) {
		const sweep_row *w = &bench_sweep_rows[i];
		if (w->gave_up)
			fprintf(stderr,
			        "ferry-bench sweep: gave up on %s %s %s %llu B after "
			        "%d failed slices (%llu call errors)\n",
			        w->transport, w->poll, w->mode,
			        (unsigned long long)w->size, w->nfailed,
			        (unsigned long long)w->agg.errors);
	}
}

/* Rows that had a baseline to be compared with but none was measured with
 * them, on stderr: left out of results.csv. Returns their count. */
static int sweep_report_no_baseline(void)
{
	int n = 0;
	for (int i = 0; i < bench_sweep_nrows; i++) {
		const sweep_row *w = &bench_sweep_rows[i];
		if (!bench_sweep_row_no_baseline(w))
			continue;
		fprintf(stderr,
		        "ferry-bench sweep: error: %s %s %s %llu B has no %s "
		        "baseline measured with it: row not written\n",
		        w->transport, w->poll, w->mode, (unsigned long long)w->size,
		        w->raw_ref);
		n++;
	}
	return n;
}

/* The end of the summary: servers started again, baselines missing. */
static void sweep_summary(const sweep_progress *pg, int nobase, bool aborted)
{
	printf("servers started again after dying:");
	for (int i = SWEEP_SRV_FERRY; i < SWEEP_SRV_KINDS; i++)
		printf("%s %s %d", i == SWEEP_SRV_FERRY ? "" : ",",
		       bench_sweep_srv_name(i), pg->restarts[i]);
	printf("; replaced after a failed slice: ferry %d, fileread %d\n",
	       pg->replaced[SWEEP_SRV_FERRY], pg->replaced[SWEEP_SRV_FILEREAD]);
	printf("baseline slices without a result: %d; rows without a baseline (not "
	       "written): %d\n",
	       pg->raw_failures, nobase);
	if (aborted)
		printf("stopped early: see the errors above\n");
}

int bench_sweep_main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"out", required_argument, NULL, 'o'},
	        {"quick", no_argument, NULL, 'q'},
	        {"tiny", no_argument, NULL, 't'},
	        {"plots", required_argument, NULL, 'P'},
	        {"no-peer", no_argument, NULL, 'N'},
	        {"no-plots", no_argument, NULL, 'X'},
	        {"no-fileread", no_argument, NULL, 'F'},
	        {"list", no_argument, NULL, 'L'},
	        {"transports", required_argument, NULL, 'T'},
	        {"slices", required_argument, NULL, 'k'},
	        {"slice", required_argument, NULL, 's'},
	        {"cpus", required_argument, NULL, 'c'},
	        {"link", required_argument, NULL, 'l'},
	        {"mtu", required_argument, NULL, 'm'},
	        {"sizes", required_argument, NULL, 'S'},
	        {"polls", required_argument, NULL, 'p'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	sweep_cfg cfg = {.plots = "plots",
	                 .peer = true,
	                 .plot = true,
	                 .fileread = true,
	                 .cpu_client = 0,
	                 .cpu_server = 1};
	double slice = -1;
	int slices = -1, mtu = -1, o;
	bool list = false;
	const char *link = "lo", *sizes = NULL, *polls = NULL;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'o':
			cfg.out = optarg;
			break;
		case 'q':
			cfg.quick = true;
			break;
		case 't':
			cfg.tiny = true;
			break;
		case 'P':
			cfg.plots = optarg;
			break;
		case 'N':
			cfg.peer = false;
			break;
		case 'X':
			cfg.plot = false;
			break;
		case 'F':
			cfg.fileread = false;
			break;
		case 'L':
			list = true;
			break;
		case 'T':
			cfg.only = optarg;
			break;
		case 'k':
			slices = atoi(optarg);
			break;
		case 's':
			slice = bench_parse_duration(optarg);
			break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &cfg.cpu_client, &cfg.cpu_server) !=
			    2)
				goto bad;
			break;
		case 'l':
			link = optarg;
			break;
		case 'm':
			mtu = atoi(optarg);
			break;
		case 'S':
			sizes = optarg;
			break;
		case 'p':
			polls = optarg;
			break;
		case 'h':
			sweep_usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (cfg.out == NULL && !list)
		goto bad;
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		cfg.cpu_client = cfg.cpu_server = -1; /* nothing to pin apart */
	if (list) {
		/* one line per transport: stack, yes|no, why not */
		for (int i = 0; i < SWEEP_NTRANSPORTS; i++) {
			char why[160] = "";
			bool ok = sweep_transport_runnable(&bench_sweep_transports[i],
			                                   why, sizeof(why));
			printf("%s %s%s%s\n", bench_sweep_transports[i].stack,
			       ok ? "yes" : "no", ok ? "" : " ", why);
		}
		return 0;
	}
	if (mtu >= 0 && strcmp(link, "veth") != 0) {
		fprintf(stderr, "ferry-bench sweep: --mtu needs --link veth\n");
		return 2;
	}
	static char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 1;
	exe[n] = '\0';
	cfg.exe = exe;
	if (sweep_plan(&cfg, strcmp(link, "veth") == 0, sizes, polls, slices, slice) != 0)
		goto bad;
	/* before the namespaces: a signal now removes them */
	bench_sweep_catch_signals();
	if (bench_link_open(&cfg.link, link, mtu >= 0 ? mtu : SWEEP_MTU_DEFAULT) != 0)
		return 1;
	mkdir(cfg.out, 0755);
	bool use[SWEEP_NTRANSPORTS];
	bool peer = sweep_choose(&cfg, use);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/server-metrics.jsonl", cfg.out);
	unlink(path);
	snprintf(path, sizeof(path), "%s/client-metrics.jsonl", cfg.out);
	unlink(path);

	sweep_progress pg = {0};
	for (int p = 0; p < cfg.npolls; p++)
		for (int t = 0; t < SWEEP_NTRANSPORTS + 1; t++)
			if (sweep_runs(t, use, peer, cfg.polls[p]))
				pg.points += 2 * cfg.nsizes;
	int fti[2];
	int nfile = bench_sweep_fileread_plan(&cfg, use, fti);
	if (cfg.fileread && cfg.nfsizes > 0 && nfile < 2)
		fprintf(stderr, "ferry-bench sweep: %s\n",
		        nfile == 0 ? "no fileread rows (needs the tcp transport)"
		                   : "fileread: no splice row, tcp alone");
	pg.points += nfile * cfg.nfsizes;
	pg.total = pg.points * cfg.slices;
	pg.t_start = bench_now_ns();
	/* no servers, or one that could not be started again: what was
	 * measured is still written */
	bool aborted = false;
	for (int p = 0; p < cfg.npolls && !aborted; p++)
		aborted = sweep_poll_mode(&cfg, cfg.polls[p], use, peer, &pg) != 0;
	if (!aborted && nfile > 0)
		aborted = bench_sweep_fileread(&cfg, fti, nfile, &pg) != 0;
	bench_progress_done();
	bench_sweep_finish_rows();
	if (bench_sweep_write(&cfg) != 0)
		return 1;
	bench_sweep_metrics_csv(&cfg);
	bench_sweep_histograms_csv(&cfg);
	bench_sweep_table(&cfg, stdout);
	fflush(stdout); /* the table, then what was given up, also into one file */
	sweep_report_gave_up();
	int nobase = sweep_report_no_baseline();
	printf("\n%d slices in %.1f s (%d failed, %d skipped after failures), link %s; "
	       "results in %s/results.csv\n",
	       pg.done, (double)(bench_now_ns() - pg.t_start) / 1e9, pg.failures,
	       pg.skipped, cfg.link.name, cfg.out);
	sweep_summary(&pg, nobase, aborted);
	if (cfg.plot) {
		if (bench_sweep_plots(&cfg) != 0) {
			fprintf(stderr, "ferry-bench sweep: plotting failed\n");
			return 1;
		}
		printf("plots in %s/\n", cfg.out);
	}
	if (aborted || nobase > 0)
		return 1;
	return pg.failures > 0 && pg.failures + pg.skipped == pg.done ? 1 : 0;
bad:
	sweep_usage(stderr);
	return 2;
}
