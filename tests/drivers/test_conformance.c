/* The driver conformance suite: every datagram driver passes the same
 * tests. argv[1] is a listener locator naming the stack under test (for
 * example "unreliable+udp:host=127.0.0.1,port=0"); the transport in front is
 * only there for the malformed-input test. Endpoints are driven through the
 * core's wrappers, exactly as the transport drives them. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/testutil.h"
#include "transport/core.h"
#include "transport/wire.h"

#define HDR_BYTES 16 /* arbitrary "transport header" for raw driver tests */

static const char *listen_loc;

static int fd_count(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

typedef struct pair {
	ferry_ctx *ctx;
	ferry__port *srv, *cli;
	ferry_addr to_srv;
	ferry_caps caps;
} pair;

static void pair_open(pair *p, const char *extra)
{
	char text[600];
	snprintf(text, sizeof(text), "%s%s", listen_loc, extra);
	assert_int_equal(ferry_ctx_create(NULL, &p->ctx), 0);
	ferry_loc loc;
	char err[200] = "";
	assert_int_equal(ferry__loc_parse(text, &loc, err, sizeof(err)), 0);
	assert_int_equal(ferry__port_open(p->ctx, &loc, true, &p->srv), 0);
	ferry_loc cloc;
	assert_int_equal(ferry__loc_parse(p->srv->bound, &cloc, err, sizeof(err)), 0);
	assert_int_equal(ferry__port_open(p->ctx, &cloc, false, &p->cli), 0);
	assert_int_equal(p->cli->ep->drv->dgram->resolve(p->cli->ep, &cloc, &p->to_srv),
	                 0);
	p->caps = p->srv->caps;
	assert_true(p->caps.max_payload >= 256);
}

static void pair_close(pair *p)
{
	assert_int_equal(p->srv->eps[p->srv->neps - 1]->loans_out, 0);
	assert_int_equal(p->cli->eps[p->cli->neps - 1]->loans_out, 0);
	ferry_ctx_destroy(p->ctx);
}

/* Poll ep until n packets arrived (bounded). */
static int recv_n(ferry_ep *ep, ferry_pkt **pkts, int n)
{
	int got = 0;
	for (int spins = 0; got < n && spins < 2000000; spins++) {
		int k = ferry__ep_poll(ep, pkts + got, n - got);
		assert_true(k >= 0);
		got += k;
	}
	return got;
}

static void test_open_close(void **s)
{
	(void)s;
	int before = fd_count();
	for (int i = 0; i < 3; i++) {
		pair p;
		pair_open(&p, "");
		pair_close(&p);
	}
	assert_int_equal(fd_count(), before);
}

/* A failed open releases what it built; the next open works. */
static void test_failed_open(void **s)
{
	(void)s;
	int before = fd_count();
	ferry_ctx *ctx;
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	ferry_server *srv;
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	char bad[600];
	snprintf(bad, sizeof(bad), "%s%smtu=1", listen_loc,
	         strchr(listen_loc, ':') != NULL ? "," : ":");
	assert_int_equal(ferry_server_listen(srv, bad), FERRY_EBADLOC);
	assert_non_null(strstr(ferry_ctx_errmsg(ctx), "mtu"));
	assert_int_equal(ferry_server_listen(srv, listen_loc), 0);
	ferry_ctx_destroy(ctx);
	assert_int_equal(fd_count(), before);
}

/* Header plus a gathered payload of several chunks, at sizes up to the max;
 * the receiver replies to the source address it saw. */
static void test_sizes_and_reply(void **s)
{
	(void)s;
	pair p;
	pair_open(&p, "");
	uint32_t max = p.caps.max_payload - HDR_BYTES;
	uint32_t sizes[] = {0, 1, 7, 100, 1000, max / 3, max - 1, max};
	uint8_t hdr[HDR_BYTES];
	uint64_t sent_bytes = 0;
	enum { NSIZES = sizeof(sizes) / sizeof(sizes[0]) };
	for (size_t k = 0; k < NSIZES; k++) {
		uint32_t n = sizes[k];
		sent_bytes += HDR_BYTES + n;
		ferry_buf b;
		ferry_buf_init(&b);
		uint8_t *pat = malloc(n + 1);
		tu_fill(pat, n, k);
		/* three pieces: copied, referenced, copied */
		ferry_buf_append(&b, pat, n / 3);
		ferry_buf_append_ref(&b, pat + n / 3, n / 3);
		ferry_buf_append(&b, pat + 2 * (n / 3), n - 2 * (n / 3));
		memset(hdr, (int)k, sizeof(hdr));
		ferry_buf_iter it;
		ferry_buf_iter_init(&it, &b, 0, n);
		assert_int_equal(
		        ferry__ep_send(p.cli->ep, &p.to_srv, hdr, sizeof(hdr), &it), 0);
		assert_true(ferry__ep_flush(p.cli->ep) >= 0);
		ferry_pkt *pkt;
		assert_int_equal(recv_n(p.srv->ep, &pkt, 1), 1);
		assert_int_equal(pkt->len, HDR_BYTES + n);
		assert_memory_equal(pkt->data, hdr, HDR_BYTES);
		if (n > 0)
			assert_memory_equal(pkt->data + HDR_BYTES, pat, n);
		/* reply to the source address */
		assert_int_equal(
		        ferry__ep_send(p.srv->ep, &pkt->src, hdr, sizeof(hdr), NULL), 0);
		ferry__ep_flush(p.srv->ep);
		ferry__ep_release(pkt);
		ferry_pkt *back;
		assert_int_equal(recv_n(p.cli->ep, &back, 1), 1);
		assert_int_equal(back->len, HDR_BYTES);
		ferry__ep_release(back);
		ferry_buf_fini(&b);
		free(pat);
	}
	/* The generic counters the core's wrappers keep, exactly what went
	 * each way: the requests one way, the header-only replies back. */
	assert_int_equal(p.cli->ep->cnt.tx_pkts, NSIZES);
	assert_int_equal(p.cli->ep->cnt.tx_bytes, sent_bytes);
	assert_int_equal(p.srv->ep->cnt.rx_pkts, NSIZES);
	assert_int_equal(p.srv->ep->cnt.rx_bytes, sent_bytes);
	assert_int_equal(p.srv->ep->cnt.tx_pkts, NSIZES);
	assert_int_equal(p.srv->ep->cnt.tx_bytes, (uint64_t)NSIZES * HDR_BYTES);
	assert_int_equal(p.cli->ep->cnt.rx_pkts, NSIZES);
	assert_int_equal(p.cli->ep->cnt.rx_bytes, (uint64_t)NSIZES * HDR_BYTES);
	assert_int_equal(p.cli->ep->cnt.tx_errors, 0);
	assert_int_equal(p.srv->ep->cnt.tx_errors, 0);
	/* one byte over the max is refused, not truncated */
	ferry_buf b;
	ferry_buf_init(&b);
	ferry_buf_alloc(&b, max + 1);
	ferry_buf_iter it;
	ferry_buf_iter_init(&it, &b, 0, max + 1);
	assert_int_equal(ferry__ep_send(p.cli->ep, &p.to_srv, hdr, sizeof(hdr), &it),
	                 -EMSGSIZE);
	assert_int_equal(p.cli->ep->cnt.tx_errors, 1);
	assert_int_equal(p.cli->ep->cnt.tx_pkts, NSIZES);
	ferry_buf_fini(&b);
	pair_close(&p);
}

/* A header of FERRY_DRIVER_HDR_MAX bytes (the contract's bound; fast's
 * widest acks are 552) goes out whole, alone or with a payload. udp once
 * refused headers over 64 bytes: every ack of more than three bitmap words
 * was lost, and a 4 MiB call at 1% loss stalled until the peer was
 * declared dead. */
static void test_long_header(void **s)
{
	(void)s;
	pair p;
	pair_open(&p, "");
	uint32_t h = FERRY_DRIVER_HDR_MAX;
	if (h + 8 > p.caps.max_payload)
		h = p.caps.max_payload - 8;
	uint8_t *hdr = malloc(h), pay[8];
	tu_fill(hdr, h, 7);
	tu_fill(pay, sizeof(pay), 8);
	ferry_buf b;
	ferry_buf_init(&b);
	ferry_buf_append(&b, pay, sizeof(pay));
	uint32_t lens[] = {65, 552, h};
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		for (int with = 0; with < 2; with++) {
			ferry_buf_iter it;
			ferry_buf_iter_init(&it, &b, 0, sizeof(pay));
			assert_int_equal(ferry__ep_send(p.cli->ep, &p.to_srv, hdr,
			                                lens[k], with ? &it : NULL),
			                 0);
			assert_true(ferry__ep_flush(p.cli->ep) >= 0);
			ferry_pkt *pkt;
			assert_int_equal(recv_n(p.srv->ep, &pkt, 1), 1);
			assert_int_equal(pkt->len, lens[k] + (with ? sizeof(pay) : 0));
			assert_memory_equal(pkt->data, hdr, lens[k]);
			if (with)
				assert_memory_equal(pkt->data + lens[k], pay,
				                    sizeof(pay));
			ferry__ep_release(pkt);
		}
	}
	ferry_buf_fini(&b);
	free(hdr);
	pair_close(&p);
}

/* File-region chunks are read and sent as bytes. */
static void test_file_payload(void **s)
{
	(void)s;
	pair p;
	pair_open(&p, "");
	FILE *f = tmpfile();
	/* 2000 file bytes, or what fits a datagram (InfiniBand: MTU 1024) */
	size_t flen = p.caps.max_payload - HDR_BYTES - 2 < 2000
	                      ? p.caps.max_payload - HDR_BYTES - 2
	                      : 2000;
	uint8_t data[3000];
	tu_fill(data, sizeof(data), 42);
	assert_int_equal(fwrite(data, 1, sizeof(data), f), sizeof(data));
	fflush(f);
	ferry_buf b;
	ferry_buf_init(&b);
	ferry_buf_append(&b, "ab", 2);
	assert_int_equal(ferry_buf_append_file(&b, fileno(f), 100, flen), 0);
	uint8_t hdr[HDR_BYTES] = {0};
	ferry_buf_iter it;
	ferry_buf_iter_init(&it, &b, 0, ferry_buf_len(&b));
	assert_int_equal(ferry__ep_send(p.cli->ep, &p.to_srv, hdr, sizeof(hdr), &it), 0);
	ferry__ep_flush(p.cli->ep);
	ferry_pkt *pkt;
	assert_int_equal(recv_n(p.srv->ep, &pkt, 1), 1);
	assert_int_equal(pkt->len, HDR_BYTES + 2 + flen);
	assert_memory_equal(pkt->data + HDR_BYTES, "ab", 2);
	assert_memory_equal(pkt->data + HDR_BYTES + 2, data + 100, flen);
	ferry__ep_release(pkt);
	ferry_buf_fini(&b);
	fclose(f);
	pair_close(&p);
}

static uint64_t driver_counter(ferry_ep *ep, const char *name, int *found)
{
	uint64_t v;
	*found = tu_driver_counter(ep, name, &v);
	return v;
}

/* A burst: queued sends go out in batches; receives come in batches; loans
 * are counted while held and all come back. */
static void test_batches_and_loans(void **s)
{
	(void)s;
	enum { BURST = 32 };
	pair p;
	pair_open(&p, "");
	uint8_t hdr[HDR_BYTES];
	for (int i = 0; i < BURST; i++) {
		memset(hdr, i, sizeof(hdr));
		assert_int_equal(
		        ferry__ep_send(p.cli->ep, &p.to_srv, hdr, sizeof(hdr), NULL), 0);
	}
	assert_int_equal(ferry__ep_flush(p.cli->ep), BURST);
	ferry_pkt *pkts[BURST];
	assert_int_equal(recv_n(p.srv->ep, pkts, BURST), BURST);
	ferry_ep *bottom = p.srv->eps[p.srv->neps - 1];
	assert_int_equal(bottom->loans_out, BURST);
	for (int i = 0; i < BURST; i++) {
		assert_int_equal(pkts[i]->data[0], i); /* in order, no loss */
		ferry__ep_release(pkts[i]);
	}
	assert_int_equal(bottom->loans_out, 0);
	/* Drivers that batch through the kernel prove it with counters. */
	int found;
	uint64_t calls =
	        driver_counter(p.cli->eps[p.cli->neps - 1], "sendmmsg_calls", &found);
	if (found) {
		uint64_t pk = driver_counter(p.cli->eps[p.cli->neps - 1], "sendmmsg_pkts",
		                             &found);
		assert_true(calls > 0 && pk / calls > 1);
		/* receive offload (GRO): one train of many packets instead */
		uint64_t trains = driver_counter(bottom, "gro_trains", &found);
		if (found && trains > 0) {
			pk = driver_counter(bottom, "gro_pkts", &found);
			assert_true(pk / trains > 1);
		} else {
			calls = driver_counter(bottom, "recvmmsg_calls", &found);
			pk = driver_counter(bottom, "recvmmsg_pkts", &found);
			assert_true(calls > 0 && (double)pk / (double)calls > 1.0);
		}
	}
	pair_close(&p);
}

/* ep->tx_pad (driver.h): while set, a sender may pad a datagram with
 * zeros to coalesce it with its neighbours. What arrives starts with
 * exactly what was sent and has only zeros after it; unset, lengths are
 * exact. Full, short, full, full to one peer: udp with segmentation
 * offload (mtu=1500) pads the short one and says so in its counters. */
static void test_tx_pad(void **s)
{
	(void)s;
	pair p;
	pair_open(&p, "");
	ferry_ep *bottom = p.cli->eps[p.cli->neps - 1];
	uint32_t full = p.caps.max_payload < 1200 ? p.caps.max_payload : 1200;
	uint32_t lens[] = {full, full * 3 / 4, full, full};
	enum { N = sizeof(lens) / sizeof(lens[0]) };
	uint8_t *pay = malloc(full);
	tu_fill(pay, full, 9);
	ferry_buf b;
	ferry_buf_init(&b);
	ferry_buf_append(&b, pay, full);
	for (int pad = 1; pad >= 0; pad--) {
		bottom->tx_pad = pad;
		uint8_t hdr[HDR_BYTES];
		for (int i = 0; i < N; i++) {
			memset(hdr, 'A' + i, sizeof(hdr));
			ferry_buf_iter it;
			ferry_buf_iter_init(&it, &b, 0, lens[i] - HDR_BYTES);
			assert_int_equal(ferry__ep_send(p.cli->ep, &p.to_srv, hdr,
			                                sizeof(hdr), &it),
			                 0);
		}
		assert_int_equal(ferry__ep_flush(p.cli->ep), N);
		ferry_pkt *pkts[N];
		assert_int_equal(recv_n(p.srv->ep, pkts, N), N);
		int padded = 0;
		for (int i = 0; i < N; i++) {
			assert_true(pkts[i]->len >= lens[i]);
			assert_int_equal(pkts[i]->data[0], 'A' + i);
			assert_memory_equal(pkts[i]->data + HDR_BYTES, pay,
			                    lens[i] - HDR_BYTES);
			for (uint32_t k = lens[i]; k < pkts[i]->len; k++)
				assert_int_equal(pkts[i]->data[k], 0);
			padded += pkts[i]->len > lens[i];
			ferry__ep_release(pkts[i]);
		}
		int found;
		uint64_t gso = driver_counter(bottom, "gso_sends", &found);
		if (pad && found && gso > 0) {
			assert_int_equal(padded, 1);
			assert_int_equal(driver_counter(bottom, "gso_padded", &found), 1);
			assert_int_equal(driver_counter(bottom, "gso_pad_bytes", &found),
			                 full - lens[1]);
		} else {
			assert_int_equal(padded, 0);
		}
	}
	ferry_buf_fini(&b);
	free(pay);
	pair_close(&p);
}

/* Silence: an idle endpoint polls empty, without error, every time. */
static void test_silence(void **s)
{
	(void)s;
	pair p;
	pair_open(&p, "");
	ferry_pkt *pkts[8];
	for (int i = 0; i < 10000; i++)
		assert_int_equal(ferry__ep_poll(p.srv->ep, pkts, 8), 0);
	pair_close(&p);
}

/* Malformed input reaching a transport is dropped and counted, reason by
 * reason, and a good call still works afterwards. */
static void test_malformed_dropped(void **s)
{
	(void)s;
	ferry_ctx *ctx;
	ferry_server *srv;
	char loc[512];
	assert_int_equal(ferry_ctx_create(NULL, &ctx), 0);
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	tu_server_handlers(srv);
	assert_int_equal(ferry_server_listen(srv, listen_loc), 0);
	assert_true(ferry_server_locator(srv, 0, loc, sizeof(loc)) > 0);
	ferry_loc cloc;
	char err[200];
	assert_int_equal(ferry__loc_parse(loc, &cloc, err, sizeof(err)), 0);
	ferry__port *raw;
	assert_int_equal(ferry__port_open(ctx, &cloc, false, &raw), 0);
	ferry_addr to;
	assert_int_equal(raw->ep->drv->dgram->resolve(raw->ep, &cloc, &to), 0);

	uint8_t good[FERRY_WIRE_HDR_BYTES];
	ferry_wire_hdr h = {.type = FERRY_PKT_DATA,
	                    .flags = FERRY_FLAG_LAST,
	                    .opcode = TEST_OP_ECHO,
	                    .msg_len = 0,
	                    .frag_bytes = 1000};
	ferry__wire_encode(&h, good);
	uint8_t pkt[FERRY_WIRE_HDR_BYTES + 8];
	/* short */
	ferry__ep_send(raw->ep, &to, good, 10, NULL);
	/* bad magic */
	memcpy(pkt, good, sizeof(good));
	pkt[0] ^= 0xff;
	ferry__ep_send(raw->ep, &to, pkt, FERRY_WIRE_HDR_BYTES, NULL);
	/* bad version */
	memcpy(pkt, good, sizeof(good));
	pkt[2] = 99;
	ferry__ep_send(raw->ep, &to, pkt, FERRY_WIRE_HDR_BYTES, NULL);
	/* bad length: header says 9 bytes, 8 follow (more than the header
	 * says is padding, docs/WIRE.md, and no error) */
	ferry_wire_hdr bl = h;
	bl.msg_len = 9;
	ferry__wire_encode(&bl, pkt);
	memset(pkt + FERRY_WIRE_HDR_BYTES, 0, 8);
	ferry__ep_send(raw->ep, &to, pkt, sizeof(pkt), NULL);
	/* bad type */
	memcpy(pkt, good, sizeof(good));
	pkt[3] = 77;
	ferry__ep_send(raw->ep, &to, pkt, FERRY_WIRE_HDR_BYTES, NULL);
	ferry__ep_flush(raw->ep);
	const char *names[] = {"rpc.drop.short", "rpc.drop.bad_magic",
	                       "rpc.drop.bad_version", "rpc.drop.bad_length",
	                       "rpc.drop.bad_type"};
	uint64_t v = 0;
	for (int spins = 0; spins < 100000 && v < 1; spins++) {
		ferry_ctx_poll(ctx, 0);
		ferry_metrics_get(ctx, "rpc.drop.bad_type", &v);
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_int_equal(ferry_metrics_get(ctx, names[i], &v), 0);
		if (v != 1)
			fail_msg("%s = %llu, want 1", names[i], (unsigned long long)v);
	}
	/* The server's endpoint counted five drops. */
	assert_int_equal(srv->ports[0]->ep->cnt.rx_dropped, 5);
	/* And it still serves. */
	ferry_session *sess;
	assert_int_equal(ferry_session_open(ctx, loc, &sess), 0);
	ferry_buf req, resp;
	ferry_buf_init(&req);
	ferry_buf_init(&resp);
	ferry_buf_append(&req, "still here", 10);
	assert_int_equal(ferry_call_sync(sess, TEST_OP_ECHO, &req, &resp, 2000000), 0);
	assert_int_equal(ferry_buf_len(&resp), 10);
	ferry_buf_fini(&req);
	ferry_buf_fini(&resp);
	ferry__port_close(raw);
	ferry_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s listen-locator\n", argv[0]);
		return 2;
	}
	listen_loc = argv[1];
	/* A driver this machine cannot run (no verbs device) skips the suite. */
	char bottom[64];
	size_t stack_len = strcspn(listen_loc, ":");
	const char *name = listen_loc;
	for (const char *c = listen_loc; c < listen_loc + stack_len; c++)
		if (*c == '+')
			name = c + 1;
	snprintf(bottom, sizeof(bottom), "%.*s", (int)(listen_loc + stack_len - name),
	         name);
	const ferry_driver_ops *drv = ferry_driver_find(bottom);
	char why[160] = "";
	if (drv != NULL && drv->probe != NULL && drv->probe(why, sizeof(why)) != 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "driver '%s' cannot run here: %s", bottom,
		         why);
		tu_skip_or_fail("ibverbs", msg);
	}
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_open_close),
	        cmocka_unit_test(test_failed_open),
	        cmocka_unit_test(test_sizes_and_reply),
	        cmocka_unit_test(test_long_header),
	        cmocka_unit_test(test_file_payload),
	        cmocka_unit_test(test_batches_and_loans),
	        cmocka_unit_test(test_tx_pad),
	        cmocka_unit_test(test_silence),
	        cmocka_unit_test(test_malformed_dropped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
