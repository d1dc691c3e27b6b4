/* ferry-bench client: calls READ, WRITE, ECHO or FILEREAD on a ferry server
 * at each size for a fixed time. Latency mode keeps one call in flight and
 * records every round trip; throughput mode keeps N calls in flight over M
 * sessions. FILEREAD receives each response body into a file descriptor
 * with ferry_call_into_fd (call k in flight writes at offset k * size of one
 * sink file) and its rows say mode "fileread". The server's metrics are
 * collected for exactly the measured interval with the built-in
 * START/STOP/DUMP service (its CPU time comes from there). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common.h"
#include "ferry/ferry.h"

#define CLIENT_SESSIONS_MAX 64
#define CLIENT_INFLIGHT_MAX 1024
#define CLIENT_PROGRESS_NS  200000000ull

typedef struct client_cfg {
	const char *connect;
	char connect_pcap[1024]; /* connect with pcap=FILE added (--pcap) */
	char transport[96];
	int op, mode_tput, poll, cpu, concurrency, sessions, nsizes;
	uint64_t sizes[BENCH_SIZES_MAX];
	double duration, warmup;
	uint64_t timeout_us;
	const char *csv, *json, *server_metrics, *client_metrics;
	const char *sink; /* FILEREAD: a directory (a fresh file in it) or a file */
	pid_t server_pid;
} client_cfg;

typedef struct client_slot {
	struct client_run *run;
	ferry_session *s;
	ferry_buf req, resp;
	ferry_fd_sink sink; /* FILEREAD */
	int index;
	uint64_t start_ns;
	bool busy;
	uint64_t good; /* calls that succeeded since client_measure began */
	int last_rc;   /* the last call's status (-EIO: status 0, body short) */
} client_slot;

typedef struct client_run {
	const client_cfg *cfg;
	uint64_t size, end_ns, last_ns;
	uint64_t ops, errors;
	int sink_fd; /* FILEREAD destination, -1 otherwise */
	bool measuring, stopping;
	bench_samples samples;
	client_slot slots[CLIENT_INFLIGHT_MAX];
} client_run;

static uint8_t *client_pattern;

/* The mode a row reports: FILEREAD rows are their own mode. */
static const char *client_mode_name(const client_cfg *cfg)
{
	return cfg->op == BENCH_OP_FILEREAD ? "fileread"
	       : cfg->mode_tput             ? "throughput"
	                                    : "latency";
}

static void client_fill_req(const client_cfg *cfg, ferry_buf *req, uint64_t size)
{
	ferry_buf_reset(req);
	if (cfg->op == BENCH_OP_READ || cfg->op == BENCH_OP_FILEREAD) {
		uint32_t s32 = (uint32_t)size;
		ferry_buf_append(req, &s32, sizeof(s32));
	} else if (size > 0) {
		/* referenced, not copied: the request is the same every call */
		ferry_buf_append_ref(req, client_pattern, size);
	}
}

static bool client_resp_ok(const client_cfg *cfg, const client_slot *sl, ferry_buf *resp,
                           uint64_t size)
{
	if (cfg->op == BENCH_OP_FILEREAD)
		return ferry_buf_len(resp) == 0 && sl->sink.written == size;
	uint64_t want = cfg->op == BENCH_OP_WRITE ? 0 : size;
	return ferry_buf_len(resp) == want;
}

/* FILEREAD: call k in flight writes at k * size of the sink file (the
 * same place every time: the file does not grow). */
static void client_sink_arm(client_slot *sl)
{
	client_run *run = sl->run;
	sl->sink = (ferry_fd_sink){.fd = run->sink_fd,
	                           .off = (int64_t)((uint64_t)sl->index * run->size)};
}

/* Open FILEREAD's destination: a directory gets a fresh file, unlinked at
 * once; anything else (e.g. /dev/null) is opened for writing as is. */
static int client_sink_open(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		char tmpl[PATH_MAX];
		snprintf(tmpl, sizeof(tmpl), "%s/ferry-bench-sink-XXXXXX", path);
		int fd = mkstemp(tmpl);
		if (fd >= 0)
			unlink(tmpl);
		return fd;
	}
	return open(path, O_WRONLY | O_CLOEXEC);
}

/* The bytes FILEREAD wrote at off: the server's object pattern? Checked
 * once per size, after the warm-up. Only regular files can be read back. */
static bool client_sink_check(int fd, int64_t off, uint64_t size)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return true;
	uint8_t *b = malloc(size ? size : 1);
	bool ok = b != NULL && pread(fd, b, size, off) == (ssize_t)size;
	for (uint64_t i = 0; ok && i < size; i++)
		ok = b[i] == (uint8_t)(i * 131 + 7);
	free(b);
	return ok;
}

/* A call of sl ended: remember how, warm-up or not. True if it succeeded. */
static bool client_outcome(client_slot *sl, int status, ferry_buf *resp)
{
	bool ok = status == 0 && client_resp_ok(sl->run->cfg, sl, resp, sl->run->size);
	sl->good += ok;
	sl->last_rc = ok ? 0 : status != 0 ? status : -EIO;
	return ok;
}

static void client_issue(client_slot *sl);

static void client_done(void *arg, int status, ferry_buf *resp)
{
	client_slot *sl = arg;
	client_run *run = sl->run;
	uint64_t now = bench_now_ns();
	sl->busy = false;
	bool ok = client_outcome(sl, status, resp);
	if (run->measuring) {
		if (ok) {
			run->ops++;
			bench_samples_add(&run->samples, now - sl->start_ns);
		} else {
			run->errors++;
		}
		run->last_ns = now;
	}
	ferry_buf_reset(resp);
	if (!run->stopping && now < run->end_ns)
		client_issue(sl);
}

static void client_issue(client_slot *sl)
{
	client_run *run = sl->run;
	sl->start_ns = bench_now_ns();
	int rc;
	if (run->cfg->op == BENCH_OP_FILEREAD) {
		client_sink_arm(sl);
		rc = ferry_call_into_fd(sl->s, (uint16_t)run->cfg->op, &sl->req,
		                        &sl->sink, run->cfg->timeout_us, client_done, sl);
	} else {
		rc = ferry_call(sl->s, (uint16_t)run->cfg->op, &sl->req, &sl->resp,
		                run->cfg->timeout_us, client_done, sl);
	}
	if (rc == 0) {
		sl->busy = true;
		return;
	}
	run->errors++;
}

/* Run the slots until end_ns, then drain what is in flight. */
static void client_throughput(ferry_ctx *ctx, client_run *run, int n, uint64_t end_ns)
{
	run->end_ns = end_ns;
	run->stopping = false;
	for (int i = 0; i < n; i++)
		client_issue(&run->slots[i]);
	uint64_t next_progress = 0;
	for (;;) {
		ferry_ctx_poll(ctx, 1000);
		uint64_t now = bench_now_ns();
		if (run->measuring && now >= next_progress) {
			bench_progress("%s size %llu: %llu ops", run->cfg->transport,
			               (unsigned long long)run->size,
			               (unsigned long long)run->ops);
			next_progress = now + CLIENT_PROGRESS_NS;
		}
		int busy = 0;
		for (int i = 0; i < n; i++)
			busy += run->slots[i].busy;
		if (busy == 0 && now >= end_ns)
			break;
		if (busy == 0) /* every call failed synchronously: try again */
			for (int i = 0; i < n; i++)
				client_issue(&run->slots[i]);
	}
}

/* One call in flight at a time, every round trip recorded. */
static void client_latency(ferry_ctx *ctx, client_run *run, uint64_t end_ns)
{
	client_slot *sl = &run->slots[0];
	uint64_t next_progress = 0;
	while (bench_now_ns() < end_ns) {
		uint64_t t0 = bench_now_ns();
		int rc;
		if (run->cfg->op == BENCH_OP_FILEREAD) {
			client_sink_arm(sl);
			rc = ferry_call_into_fd_sync(sl->s, (uint16_t)run->cfg->op,
			                             &sl->req, &sl->sink,
			                             run->cfg->timeout_us);
		} else {
			rc = ferry_call_sync(sl->s, (uint16_t)run->cfg->op, &sl->req,
			                     &sl->resp, run->cfg->timeout_us);
		}
		uint64_t t1 = bench_now_ns();
		bool ok = client_outcome(sl, rc, &sl->resp);
		if (run->measuring) {
			if (ok) {
				run->ops++;
				bench_samples_add(&run->samples, t1 - t0);
			} else {
				run->errors++;
			}
			run->last_ns = t1;
			if (t1 >= next_progress) {
				bench_progress("%s size %llu: %llu calls",
				               run->cfg->transport,
				               (unsigned long long)run->size,
				               (unsigned long long)run->ops);
				next_progress = t1 + CLIENT_PROGRESS_NS;
			}
		}
		ferry_buf_reset(&sl->resp);
	}
	(void)ctx;
}

/* The server's "process.cpu_ns" from a dump line, or 0. */
static uint64_t client_dump_cpu(const char *line)
{
	json_object *dump = bench_json_parse(line), *counters, *v;
	uint64_t ns = 0;
	if (json_object_object_get_ex(dump, "counters", &counters) &&
	    json_object_object_get_ex(counters, "process.cpu_ns", &v) &&
	    json_object_is_type(v, json_type_int))
		ns = json_object_get_uint64(v);
	json_object_put(dump);
	return ns;
}

static int client_measure(ferry_ctx *ctx, client_run *run, FILE *metrics_f, FILE *local_f,
                          bench_result *r)
{
	const client_cfg *cfg = run->cfg;
	int n = cfg->mode_tput ? cfg->concurrency : 1;
	for (int i = 0; i < n; i++) {
		client_fill_req(cfg, &run->slots[i].req, run->size);
		run->slots[i].good = 0;
		run->slots[i].last_rc = 0;
	}

	/* warm-up: same traffic, not counted */
	run->measuring = false;
	uint64_t now = bench_now_ns();
	if (cfg->mode_tput)
		client_throughput(ctx, run, n, now + (uint64_t)(cfg->warmup * 1e9));
	else
		client_latency(ctx, run, now + (uint64_t)(cfg->warmup * 1e9));

	/* FILEREAD: the warm-up's bytes landed where they should (a failed
	 * check counts as one error of the row). Offset 0 is slot 0's: with
	 * none of its calls through (a server gone, a full disk) there is
	 * nothing to check, and that is said instead (also one error), with
	 * the reason, rather than passed off as wrong bytes. */
	uint64_t bad_data = 0;
	if (cfg->op == BENCH_OP_FILEREAD && run->slots[0].good == 0) {
		fprintf(stderr,
		        "ferry-bench client: fileread %llu B: no warm-up call into sink "
		        "offset 0 succeeded (last: %s); nothing to check\n",
		        (unsigned long long)run->size,
		        ferry_strerror(run->slots[0].last_rc));
		bad_data = 1;
	} else if (cfg->op == BENCH_OP_FILEREAD &&
	           !client_sink_check(run->sink_fd, 0, run->size)) {
		fprintf(stderr,
		        "ferry-bench client: fileread %llu B: wrong bytes in the sink\n",
		        (unsigned long long)run->size);
		bad_data = 1;
	}

	ferry_session *ms = run->slots[0].s;
	bool have_metrics = ferry_metrics_remote_start(ms) == 0;
	ferry_metrics_snap *local0 = local_f != NULL ? ferry_metrics_snapshot(ctx) : NULL;
	uint64_t pid_cpu0 = cfg->server_pid > 0 ? bench_pid_cpu_ns(cfg->server_pid) : 0;
	uint64_t cpu0 = bench_cpu_ns();
	run->measuring = true;
	run->ops = run->errors = 0;
	uint64_t t0 = bench_now_ns();
	run->last_ns = t0;
	if (cfg->mode_tput)
		client_throughput(ctx, run, n, t0 + (uint64_t)(cfg->duration * 1e9));
	else
		client_latency(ctx, run, t0 + (uint64_t)(cfg->duration * 1e9));
	run->measuring = false;
	uint64_t cpu1 = bench_cpu_ns();
	if (local0 != NULL) {
		ferry_metrics_snap *local1 = ferry_metrics_snapshot(ctx);
		if (local1 != NULL) {
			char scope[256];
			snprintf(scope, sizeof(scope), "client:%s:%s:%s:%s:%llu",
			         cfg->transport,
			         cfg->poll == FERRY_POLL_BLOCK ? "block" : "spin",
			         client_mode_name(cfg), bench_op_name(cfg->op),
			         (unsigned long long)run->size);
			ferry_metrics_snap_sub(local1, local0);
			ferry_metrics_snap_json(local1, scope, local_f);
			fflush(local_f);
			ferry_metrics_snap_free(local1);
		}
		ferry_metrics_snap_free(local0);
	}
	uint64_t pid_cpu1 = cfg->server_pid > 0 ? bench_pid_cpu_ns(cfg->server_pid) : 0;
	if (have_metrics)
		have_metrics = ferry_metrics_remote_stop(ms) == 0;
	bench_progress_done();

	uint64_t server_cpu = pid_cpu1 > pid_cpu0 ? pid_cpu1 - pid_cpu0 : 0;
	if (have_metrics) {
		char scope[256];
		snprintf(scope, sizeof(scope), "bench:%s:%s:%s:%s:%llu", cfg->transport,
		         cfg->poll == FERRY_POLL_BLOCK ? "block" : "spin",
		         client_mode_name(cfg), bench_op_name(cfg->op),
		         (unsigned long long)run->size);
		ferry_buf dump;
		ferry_buf_init(&dump);
		if (ferry_metrics_remote_dump(ms, scope, &dump) == 0) {
			size_t len = ferry_buf_len(&dump);
			const char *line = ferry_buf_range(&dump, 0, len);
			char *copy = line != NULL ? strndup(line, len) : NULL;
			if (copy != NULL) {
				if (server_cpu == 0)
					server_cpu = client_dump_cpu(copy);
				if (metrics_f != NULL)
					fputs(copy, metrics_f), fflush(metrics_f);
			}
			free(copy);
		}
		ferry_buf_fini(&dump);
	}
	snprintf(r->transport, sizeof(r->transport), "%s", cfg->transport);
	snprintf(r->poll, sizeof(r->poll), "%s",
	         cfg->poll == FERRY_POLL_BLOCK ? "block" : "spin");
	snprintf(r->mode, sizeof(r->mode), "%s", client_mode_name(cfg));
	snprintf(r->op, sizeof(r->op), "%s", bench_op_name(cfg->op));
	r->size = run->size;
	double secs = (double)(run->last_ns - t0) / 1e9;
	bench_result_finish(r, &run->samples, run->ops, run->errors + bad_data, secs,
	                    cpu1 - cpu0, server_cpu);
	return 0;
}

static void client_usage(FILE *f)
{
	fprintf(f,
	        "usage: ferry-bench client --connect LOCATOR [--op read|write|echo|fileread]\n"
	        "         [--sizes 64,1k,4k,64k,1m] [--duration 3s] [--warmup 0.2s]\n"
	        "         [--mode latency|throughput] [--concurrency N] [--sessions M]\n"
	        "         [--poll spin|block] [--cpu N] [--timeout 1s]\n"
	        "         [--csv FILE] [--json FILE|-] [--server-metrics FILE]\n"
	        "         [--server-pid PID] [--client-metrics FILE] [--label NAME]\n"
	        "         [--sink DIR|FILE] [--pcap FILE]\n"
	        "Latency mode: one call in flight, min/median/p90/p99/p99.9/max RTT.\n"
	        "Throughput mode: N calls in flight (default 8) over M sessions\n"
	        "(default 1); ops/s and MB/s (10^6 bytes). Sizes take k (1024) and m\n"
	        "(1048576). --server-metrics appends the server's metrics for each\n"
	        "measured interval (one JSON line per size, docs/METRICS.md);\n"
	        "--client-metrics does the same for this process's own context.\n"
	        "--op fileread: the server answers with a file region; each body is\n"
	        "received into --sink (a directory: a fresh unlinked file in it, default\n"
	        "/dev/shm; or a file such as /dev/null) with ferry_call_into_fd. Its\n"
	        "rows say mode fileread; --mode still picks 1 or N calls in flight.\n"
	        "--pcap FILE captures this client's packets (adds pcap=FILE to the\n"
	        "locator; docs/CAPTURE.md).\n");
}

static int client_parse(int argc, char **argv, client_cfg *c)
{
	static const struct option opts[] = {
	        {"connect", required_argument, NULL, 'C'},
	        {"op", required_argument, NULL, 'o'},
	        {"sizes", required_argument, NULL, 's'},
	        {"duration", required_argument, NULL, 'd'},
	        {"warmup", required_argument, NULL, 'w'},
	        {"mode", required_argument, NULL, 'm'},
	        {"concurrency", required_argument, NULL, 'n'},
	        {"sessions", required_argument, NULL, 'S'},
	        {"poll", required_argument, NULL, 'p'},
	        {"cpu", required_argument, NULL, 'c'},
	        {"timeout", required_argument, NULL, 't'},
	        {"csv", required_argument, NULL, 'v'},
	        {"json", required_argument, NULL, 'j'},
	        {"server-metrics", required_argument, NULL, 'M'},
	        {"server-pid", required_argument, NULL, 'P'},
	        {"client-metrics", required_argument, NULL, 'K'},
	        {"label", required_argument, NULL, 'L'},
	        {"sink", required_argument, NULL, 'k'},
	        {"pcap", required_argument, NULL, 'A'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	*c = (client_cfg){.op = BENCH_OP_READ,
	                  .cpu = -1,
	                  .concurrency = 8,
	                  .sessions = 1,
	                  .duration = 3,
	                  .warmup = 0.2,
	                  .timeout_us = 1000000,
	                  .sink = "/dev/shm"};
	c->nsizes = bench_parse_sizes("64,1k,4k,64k,1m", c->sizes, BENCH_SIZES_MAX);
	const char *label = NULL;
	const char *pcap = NULL;
	int o;
	double d;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'C':
			c->connect = optarg;
			break;
		case 'o':
			if ((c->op = bench_parse_op(optarg)) < 0)
				goto bad;
			break;
		case 's':
			if ((c->nsizes = bench_parse_sizes(optarg, c->sizes,
			                                   BENCH_SIZES_MAX)) < 0)
				return 2;
			break;
		case 'd':
			if ((c->duration = bench_parse_duration(optarg)) <= 0)
				goto bad;
			break;
		case 'w':
			if ((c->warmup = bench_parse_duration(optarg)) < 0)
				goto bad;
			break;
		case 'm':
			if (strcmp(optarg, "latency") != 0 &&
			    strcmp(optarg, "throughput") != 0)
				goto bad;
			c->mode_tput = strcmp(optarg, "throughput") == 0;
			break;
		case 'n':
			c->concurrency = atoi(optarg);
			if (c->concurrency < 1 || c->concurrency > CLIENT_INFLIGHT_MAX)
				goto bad;
			break;
		case 'S':
			c->sessions = atoi(optarg);
			if (c->sessions < 1 || c->sessions > CLIENT_SESSIONS_MAX)
				goto bad;
			break;
		case 'p':
			if (strcmp(optarg, "spin") != 0 && strcmp(optarg, "block") != 0)
				goto bad;
			c->poll = strcmp(optarg, "block") == 0 ? FERRY_POLL_BLOCK
			                                       : FERRY_POLL_SPIN;
			break;
		case 'c':
			c->cpu = atoi(optarg);
			break;
		case 't':
			if ((d = bench_parse_duration(optarg)) <= 0)
				goto bad;
			c->timeout_us = (uint64_t)(d * 1e6);
			break;
		case 'v':
			c->csv = optarg;
			break;
		case 'j':
			c->json = optarg;
			break;
		case 'M':
			c->server_metrics = optarg;
			break;
		case 'P':
			c->server_pid = (pid_t)atoi(optarg);
			break;
		case 'K':
			c->client_metrics = optarg;
			break;
		case 'L':
			label = optarg;
			break;
		case 'k':
			c->sink = optarg;
			break;
		case 'A':
			pcap = optarg;
			break;
		case 'h':
			client_usage(stdout);
			return 0;
		default:
			client_usage(stderr);
			return 2;
		}
	}
	if (c->connect == NULL) {
		fprintf(stderr, "ferry-bench client: --connect LOCATOR is required\n");
		return 2;
	}
	if (pcap != NULL) {
		if (bench_loc_pcap(c->connect, pcap, c->connect_pcap,
		                   sizeof(c->connect_pcap)) != 0)
			return 2;
		c->connect = c->connect_pcap;
	}
	const char *colon = strchr(c->connect, ':');
	size_t n = colon != NULL ? (size_t)(colon - c->connect) : strlen(c->connect);
	if (label != NULL)
		snprintf(c->transport, sizeof(c->transport), "%s", label);
	else
		snprintf(c->transport, sizeof(c->transport), "%.*s", (int)n, c->connect);
	return -1;
bad:
	fprintf(stderr, "ferry-bench client: bad value '%s'\n", optarg);
	client_usage(stderr);
	return 2;
}

int bench_client_main(int argc, char **argv)
{
	client_cfg cfg;
	int rc = client_parse(argc, argv, &cfg);
	if (rc >= 0)
		return rc;
	uint64_t maxsize = 0;
	for (int i = 0; i < cfg.nsizes; i++)
		maxsize = cfg.sizes[i] > maxsize ? cfg.sizes[i] : maxsize;
	client_pattern = malloc(maxsize + 1);
	for (uint64_t i = 0; i < maxsize; i++)
		client_pattern[i] = (uint8_t)(i * 7 + 1);
	FILE *csv = NULL, *json = NULL, *mf = NULL, *lf = NULL;
	if (cfg.csv != NULL && (csv = fopen(cfg.csv, "w")) == NULL) {
		perror(cfg.csv);
		return 1;
	}
	if (cfg.json != NULL)
		json = strcmp(cfg.json, "-") == 0 ? stdout : fopen(cfg.json, "w");
	if (cfg.server_metrics != NULL)
		mf = fopen(cfg.server_metrics, "a");
	if (cfg.client_metrics != NULL && (lf = fopen(cfg.client_metrics, "a")) == NULL) {
		perror(cfg.client_metrics);
		return 1;
	}
	if ((cfg.json != NULL && json == NULL) ||
	    (cfg.server_metrics != NULL && mf == NULL)) {
		perror("ferry-bench client");
		return 1;
	}
	if (csv != NULL)
		bench_csv_header(csv);

	ferry_ctx_opts co = {.poll_mode = cfg.poll, .cpu = cfg.cpu};
	ferry_ctx *ctx;
	if ((rc = ferry_ctx_create(&co, &ctx)) != 0) {
		fprintf(stderr, "ferry-bench client: %s\n", ferry_strerror(rc));
		return 1;
	}
	client_run *run = calloc(1, sizeof(*run));
	run->cfg = &cfg;
	run->sink_fd = -1;
	if (cfg.op == BENCH_OP_FILEREAD &&
	    (run->sink_fd = client_sink_open(cfg.sink)) < 0) {
		fprintf(stderr, "ferry-bench client: sink %s: %s\n", cfg.sink,
		        strerror(errno));
		ferry_ctx_destroy(ctx);
		free(run);
		return 1;
	}
	ferry_session *sess[CLIENT_SESSIONS_MAX];
	int status = 0;
	for (int i = 0; i < CLIENT_INFLIGHT_MAX; i++) {
		run->slots[i].run = run;
		run->slots[i].index = i;
		ferry_buf_init(&run->slots[i].req);
		ferry_buf_init(&run->slots[i].resp);
	}
	for (int i = 0; i < cfg.sessions; i++) {
		rc = ferry_session_open(ctx, cfg.connect, &sess[i]);
		if (rc != 0) {
			fprintf(stderr, "ferry-bench client: %s: %s (%s)\n", cfg.connect,
			        ferry_err_name(rc), ferry_ctx_errmsg(ctx));
			cfg.sessions = i;
			status = 1;
			goto out;
		}
	}
	for (int i = 0; i < CLIENT_INFLIGHT_MAX; i++)
		run->slots[i].s = sess[i % cfg.sessions];
	for (int k = 0; k < cfg.nsizes; k++) {
		bench_result r;
		memset(&r, 0, sizeof(r));
		run->size = cfg.sizes[k];
		client_measure(ctx, run, mf, lf, &r);
		bench_samples_free(&run->samples);
		if (json != NULL)
			bench_result_json(json, &r);
		if (csv != NULL)
			bench_csv_row(csv, &r, NULL, -1);
		if (json != stdout && csv == NULL)
			bench_result_json(stdout, &r);
		if (r.ops == 0)
			status = 1;
	}
out:
	for (int i = 0; i < CLIENT_INFLIGHT_MAX; i++) {
		ferry_buf_fini(&run->slots[i].req);
		ferry_buf_fini(&run->slots[i].resp);
	}
	for (int i = 0; i < cfg.sessions; i++)
		ferry_session_close(sess[i]);
	ferry_ctx_destroy(ctx);
	if (run->sink_fd >= 0)
		close(run->sink_fd);
	free(run);
	free(client_pattern);
	if (csv != NULL)
		fclose(csv);
	if (json != NULL && json != stdout)
		fclose(json);
	if (mf != NULL)
		fclose(mf);
	if (lf != NULL)
		fclose(lf);
	return status;
}
