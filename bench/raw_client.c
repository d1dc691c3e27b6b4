/* ferry-bench raw, the measuring side: warmup and timed calls or a stream
 * per size, each point a bench_result on stdout (JSON) or in CSV. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raw.h"

/* Warmup calls, then calls for the duration, each timed on its own. */
static int raw_latency_point(struct raw_client *c, raw_call_fn call, struct raw_point *p)
{
	const struct raw_opts *o = c->o;
	uint64_t t = bench_now_ns(), end = t + raw_ns(o->warmup);
	while (t < end) {
		if (call(c) < 0)
			return -1;
		t = bench_now_ns();
	}
	uint64_t s0 = bench_raw_server_cpu(o), c0 = bench_cpu_ns();
	uint64_t t0 = bench_now_ns(), stop = t0 + raw_ns(o->duration), last = t0, t1;
	do {
		uint64_t a = bench_now_ns();
		int rc = call(c);
		t1 = bench_now_ns();
		if (rc < 0) {
			bench_progress_done();
			return -1;
		}
		if (rc == 0) {
			bench_samples_add(&p->s, t1 - a);
			p->ops++;
		} else {
			p->errors++;
		}
		if (t1 - last >= RAW_PROGRESS_NS) {
			bench_raw_progress(c, t0, t1);
			last = t1;
		}
	} while (t1 < stop);
	p->ccpu = bench_cpu_ns() - c0;
	p->scpu = bench_raw_delta(s0, bench_raw_server_cpu(o));
	p->seconds = (double)(t1 - t0) / 1e9;
	bench_progress_done();
	return 0;
}

static int raw_point(struct raw_client *c, struct raw_point *p)
{
	const struct raw_opts *o = c->o;
	if (!o->throughput)
		return raw_latency_point(
		        c, o->tcp ? bench_raw_tcp_call : bench_raw_udp_call, p);
	int (*stream)(struct raw_client *, double, struct raw_point *) =
	        o->tcp ? bench_raw_tcp_stream : bench_raw_udp_stream;
	if (o->warmup > 0 && stream(c, o->warmup, NULL) != 0)
		return -1;
	return stream(c, o->duration, p);
}

static FILE *raw_open_out(const char *path)
{
	if (strcmp(path, "-") == 0)
		return stdout;
	FILE *f = fopen(path, "w");
	if (f == NULL)
		fprintf(stderr, "ferry-bench raw: %s: %s\n", path, strerror(errno));
	return f;
}

static void raw_close_out(FILE *f)
{
	if (f != NULL && f != stdout)
		fclose(f);
}

int bench_raw_client(const struct raw_opts *o)
{
	FILE *json = NULL, *csv = NULL;
	/* no output named: the JSON lines on stdout, which is what scripts read */
	if ((o->json != NULL || o->csv == NULL) &&
	    (json = raw_open_out(o->json ? o->json : "-")) == NULL)
		return 1;
	if (o->csv != NULL && (csv = raw_open_out(o->csv)) == NULL) {
		raw_close_out(json);
		return 1;
	}
	if (csv != NULL)
		bench_csv_header(csv);
	if (o->server_pid > 0 && bench_pid_cpu_ns(o->server_pid) == 0)
		fprintf(stderr,
		        "ferry-bench raw: no /proc/%d/schedstat: server CPU unknown\n",
		        (int)o->server_pid);

	uint64_t maxsize = 0;
	for (int i = 0; i < o->nsizes; i++)
		maxsize = o->sizes[i] > maxsize ? o->sizes[i] : maxsize;
	struct raw_client c = {.o = o, .fd = -1};
	/* UDP: any datagram fits, so stray ones are never truncated into looking
	 * like a reply. TCP: header + the largest payload. */
	c.txcap = o->tcp ? RAW_HDR_BYTES + (size_t)maxsize : RAW_DGRAM_BUF_BYTES;
	c.rxcap = o->tcp ? (maxsize < RAW_HDR_BYTES ? RAW_HDR_BYTES : (size_t)maxsize)
	                 : RAW_DGRAM_BUF_BYTES;
	c.tx = malloc(c.txcap);
	c.rx = malloc(c.rxcap);
	int status = 1;
	if (c.tx == NULL || c.rx == NULL) {
		fprintf(stderr, "ferry-bench raw: out of memory\n");
		goto out;
	}
	/* touch every page now so no first-use fault lands in a measurement */
	memset(c.tx, 0x5a, c.txcap);
	memset(c.rx, 0, c.rxcap);
	/* runs of different clients differ, so a server never adds one client's
	 * stream to another's count */
	c.run = (uint32_t)getpid() * 2654435761u ^ (uint32_t)bench_now_ns();
	if (!o->tcp)
		c.fd = bench_raw_udp_socket(o);
	else if (!o->throughput)
		c.fd = bench_raw_tcp_connect(o);
	if (c.fd < 0 && !(o->tcp && o->throughput))
		goto out;

	status = 0;
	for (int i = 0; i < o->nsizes; i++) {
		struct raw_point p = {0};
		c.size = o->sizes[i];
		if (raw_point(&c, &p) != 0) {
			bench_samples_free(&p.s);
			status = 1;
			break;
		}
		bench_result r = {.size = c.size};
		snprintf(r.transport, sizeof(r.transport), "raw-%s",
		         o->tcp ? "tcp" : "udp");
		snprintf(r.poll, sizeof(r.poll), "%s", o->spin ? "spin" : "block");
		snprintf(r.mode, sizeof(r.mode), "%s",
		         o->throughput ? "throughput" : "latency");
		snprintf(r.op, sizeof(r.op), "%s",
		         bench_op_name(o->throughput ? BENCH_OP_WRITE : o->op));
		bench_result_finish(&r, &p.s, p.ops, p.errors, p.seconds, p.ccpu, p.scpu);
		bench_samples_free(&p.s);
		if (json != NULL)
			bench_result_json(json, &r);
		if (csv != NULL) {
			bench_csv_row(csv, &r, r.transport, 1);
			fflush(csv);
		}
	}
out:
	if (c.fd >= 0)
		close(c.fd);
	free(c.tx);
	free(c.rx);
	raw_close_out(json);
	raw_close_out(csv);
	return status;
}
