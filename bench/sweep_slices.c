/* ferry-bench sweep: one slice, one measuring child (a ferry-bench client,
 * a ferry-bench raw client, or ucx_perftest with a server of its own), its
 * one result line parsed into a bench_result. */
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sweep.h"

int bench_sweep_concurrency(const char *mode, uint64_t size)
{
	if (strcmp(mode, "throughput") != 0)
		return 1;
	uint64_t c = size > 0 ? SWEEP_TPUT_INFLIGHT_BYTES / size : SWEEP_TPUT_CONCURRENCY;
	return c < 1 ? 1 : c > SWEEP_TPUT_CONCURRENCY ? SWEEP_TPUT_CONCURRENCY : (int)c;
}

/* Run one measuring child and parse its one JSON result line; what (the
 * row's transport) names it in a failure. */
static int sweep_measure(const sweep_cfg *cfg, char **argv, const char *what,
                         bench_result *r)
{
	sweep_child c;
	if (bench_sweep_spawn(cfg, BENCH_LINK_CLIENT, argv, NULL, cfg->cpu_client, &c) !=
	    0)
		return -1;
	char line[2048];
	int rc = bench_sweep_readline(&c, line, sizeof(line),
	                              cfg->slice_s + cfg->warmup_s + 20);
	int st = bench_sweep_reap(&c, rc != 0, NULL);
	if (rc != 0 || bench_result_parse(line, r) != 0) {
		bench_progress_done(); /* the message on a line of its own */
		fprintf(stderr, "ferry-bench sweep: %s slice: no result (exit %d)\n",
		        what, st);
		return -1;
	}
	return 0;
}

/* One ferry client slice against the server at loc. op "fileread" runs
 * as a throughput client (its rows say mode fileread). */
int bench_sweep_client(const sweep_cfg *cfg, const char *loc, const char *label,
                       const char *op, const char *mode, const char *poll, uint64_t size,
                       bench_result *r)
{
	char sizes[32], dur[32], warm[32], conc[16], sm[PATH_MAX], cm[PATH_MAX];
	bool fileread = strcmp(op, "fileread") == 0;
	const char *cmode = fileread ? "throughput" : mode;
	snprintf(sizes, sizeof(sizes), "%llu", (unsigned long long)size);
	snprintf(dur, sizeof(dur), "%.3f", cfg->slice_s);
	snprintf(warm, sizeof(warm), "%.3f", cfg->warmup_s);
	snprintf(conc, sizeof(conc), "%d", bench_sweep_concurrency(cmode, size));
	snprintf(sm, sizeof(sm), "%s/server-metrics.jsonl", cfg->out);
	snprintf(cm, sizeof(cm), "%s/client-metrics.jsonl", cfg->out);
	char *argv[] = {(char *)cfg->exe, "client", "--connect", (char *)loc, "--label",
	                (char *)label, "--op", (char *)op, "--sizes", sizes, "--duration",
	                dur, "--warmup", warm, "--mode", (char *)cmode, "--concurrency",
	                conc, "--poll", (char *)poll, "--json", "-", "--server-metrics",
	                sm, "--client-metrics", cm,
	                /* a 64 MiB file read takes tens of ms: give it room */
	                "--timeout", fileread ? SWEEP_FILEREAD_TIMEOUT : "1s", NULL};
	return sweep_measure(cfg, argv, label, r);
}

int bench_sweep_slice_ferry(const sweep_cfg *cfg, sweep_servers *sv, int ti,
                            const char *poll, const char *mode, uint64_t size,
                            bench_result *r)
{
	bench_sweep_focus(sv, SWEEP_SRV_FERRY);
	return bench_sweep_client(
	        cfg, sv->ferry_loc[ti], bench_sweep_transports[ti].stack,
	        strcmp(mode, "latency") == 0 ? "echo" : "read", mode, poll, size, r);
}

int bench_sweep_slice_raw(const sweep_cfg *cfg, sweep_servers *sv, bool udp,
                          const char *poll, const char *mode, uint64_t size,
                          bench_result *r)
{
	char sizes[32], dur[32], warm[32], conn[64], pid[16];
	snprintf(sizes, sizeof(sizes), "%llu", (unsigned long long)size);
	snprintf(dur, sizeof(dur), "%.3f", cfg->slice_s);
	snprintf(warm, sizeof(warm), "%.3f", cfg->warmup_s);
	bench_sweep_raw_addr(cfg, udp ? sv->raw_udp_port : sv->raw_tcp_port, conn,
	                     sizeof(conn));
	snprintf(pid, sizeof(pid), "%d", (int)(udp ? sv->raw_udp.pid : sv->raw_tcp.pid));
	char *argv[] = {(char *)cfg->exe,
	                "raw",
	                "--proto",
	                udp ? "udp" : "tcp",
	                "--connect",
	                conn,
	                "--op",
	                strcmp(mode, "latency") == 0 ? "echo" : "read",
	                "--sizes",
	                sizes,
	                "--duration",
	                dur,
	                "--warmup",
	                warm,
	                "--mode",
	                (char *)mode,
	                "--poll",
	                (char *)poll,
	                "--server-pid",
	                pid,
	                "--json",
	                "-",
	                NULL};
	bench_sweep_focus(sv, udp ? SWEEP_SRV_RAW_UDP : SWEEP_SRV_RAW_TCP);
	return sweep_measure(cfg, argv, udp ? "raw-udp" : "raw-tcp", r);
}

/* A port free here, for ucx_perftest's server. On veth that server runs in
 * a namespace of its own, where every port is free anyway. */
static int sweep_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* UCX over TCP: ucx_perftest's server serves one test and exits, so each
 * slice starts one. Its latency is half a round trip: doubled here. Its
 * MB are 2^20 bytes: converted to 10^6. CPU per op comes from both
 * processes' rusage (setup included: an overestimate). */
int bench_sweep_slice_ucx(const sweep_cfg *cfg, const char *mode, uint64_t size,
                          uint64_t *iters, bench_result *r)
{
	char port[16], sz[32], n[32], w[32], cs[16], cc[16];
	snprintf(port, sizeof(port), "%d", sweep_free_port());
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
	snprintf(n, sizeof(n), "%llu", (unsigned long long)*iters);
	snprintf(w, sizeof(w), "%llu", (unsigned long long)(*iters / 10 + 1));
	snprintf(cs, sizeof(cs), "%d", cfg->cpu_server < 0 ? 0 : cfg->cpu_server);
	snprintf(cc, sizeof(cc), "%d", cfg->cpu_client < 0 ? 0 : cfg->cpu_client);
	/* each side's UCX uses its own end of the link */
	char dev[2][64];
	for (int i = 0; i < 2; i++)
		snprintf(dev[i], sizeof(dev[i]), "UCX_NET_DEVICES=%s", cfg->link.dev[i]);
	char *senv[] = {"UCX_TLS=tcp", dev[BENCH_LINK_SERVER],
	                "UCX_WARN_UNUSED_ENV_VARS=n", NULL};
	char *cenv[] = {"UCX_TLS=tcp", dev[BENCH_LINK_CLIENT],
	                "UCX_WARN_UNUSED_ENV_VARS=n", NULL};
	char *sargv[] = {"ucx_perftest", "-p", port, "-c", cs, NULL};
	bool lat = strcmp(mode, "latency") == 0;
	char *cargv[] = {"ucx_perftest",
	                 (char *)cfg->link.host,
	                 "-p",
	                 port,
	                 "-t",
	                 lat ? "tag_lat" : "tag_bw",
	                 "-s",
	                 sz,
	                 "-n",
	                 n,
	                 "-w",
	                 w,
	                 "-c",
	                 cc,
	                 "-f",
	                 "-v",
	                 NULL};
	sweep_child s, c;
	if (bench_sweep_spawn(cfg, BENCH_LINK_SERVER, sargv, senv, -1, &s) != 0)
		return -1;
	usleep(200000); /* let the server listen */
	uint64_t t0 = bench_now_ns();
	if (bench_sweep_spawn(cfg, BENCH_LINK_CLIENT, cargv, cenv, -1, &c) != 0) {
		bench_sweep_reap(&s, true, NULL);
		return -1;
	}
	char line[512], last[512] = "";
	while (bench_sweep_readline(&c, line, sizeof(line), cfg->slice_s * 20 + 20) == 0)
		snprintf(last, sizeof(last), "%s", line);
	struct rusage cru, sru;
	bench_sweep_reap(&c, false, &cru);
	double wall = (double)(bench_now_ns() - t0) / 1e9;
	bench_sweep_reap(&s, true, &sru);
	/* ucx_perftest's CSV: iterations, 50.0_percentile_lat, avg_lat,
	 * overall_lat, avg_bw, overall_bw, avg_mr, overall_mr */
	unsigned long long it;
	double p50, avg_lat, overall_lat, avg_bw, overall_bw;
	if (sscanf(last, "%llu,%lf,%lf,%lf,%lf,%lf", &it, &p50, &avg_lat, &overall_lat,
	           &avg_bw, &overall_bw) != 6 ||
	    it == 0) {
		fprintf(stderr, "ferry-bench sweep: ucx_perftest gave no result ('%s')\n",
		        last);
		return -1;
	}
	memset(r, 0, sizeof(*r));
	snprintf(r->transport, sizeof(r->transport), "peer-ucx-tcp");
	snprintf(r->mode, sizeof(r->mode), "%s", mode);
	snprintf(r->op, sizeof(r->op), "%s", lat ? "echo" : "read");
	r->size = size;
	r->ops = it;
	r->seconds = lat ? (double)it * 2 * overall_lat / 1e6
	                 : (double)it * (double)size / (overall_bw * 1048576.0);
	r->median_us = lat ? 2 * p50 : 0;
	r->p99_us = -1;
	r->min_us = r->p90_us = r->p999_us = r->max_us = r->median_us;
	r->mb_per_s = lat ? (double)size / (2 * p50) : overall_bw * 1.048576;
	r->ops_per_s =
	        lat ? 1e6 / (2 * p50) : r->mb_per_s * 1e6 / (double)(size ? size : 1);
	r->client_cpu_us_per_op = (cru.ru_utime.tv_sec + cru.ru_stime.tv_sec) * 1e6 +
	                          cru.ru_utime.tv_usec + cru.ru_stime.tv_usec;
	r->client_cpu_us_per_op /= (double)it;
	r->server_cpu_us_per_op = ((sru.ru_utime.tv_sec + sru.ru_stime.tv_sec) * 1e6 +
	                           sru.ru_utime.tv_usec + sru.ru_stime.tv_usec) /
	                          (double)it;
	/* aim the next slice at the slice length */
	double per = wall > 0.3 ? (wall - 0.2) / (double)it : 0;
	if (per > 0)
		*iters = (uint64_t)(cfg->slice_s / per) + 100;
	return 0;
}
