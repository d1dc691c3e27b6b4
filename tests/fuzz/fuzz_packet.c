/* Fuzz harness: the packet header and the datagram receive paths (fast and
 * unreliable, client and server side) over the in-process loopback driver.
 *
 * Per input, one fresh world: a context with a server listening on
 * fast+loopback and unreliable+loopback (echo handler), and a fast and an
 * unreliable session whose peer is a raw loopback endpoint (in a second,
 * never-polled context) that plays a hostile server. Each session has a
 * call in flight. The input is a list of records
 *
 *     u8 ctl, u8 len_lo, u8 len_hi, len bytes      (len capped at the input)
 *
 * each sent as one datagram from the raw endpoint. ctl & 3 picks the
 * target: 0 the fast server, 1 the unreliable server, 2 the fast client
 * session's port, 3 the unreliable one. ctl & 4 applies fix-ups that a
 * mutator cannot guess: towards the fast server the token and server hint
 * of the last SESSION_OPEN_REPLY it sent the raw endpoint; towards a client
 * the client hint, channel and rpc id of the last request it sent, and a
 * SESSION_OPEN_REPLY's nonce. After each record the context runs a few poll
 * passes. Everything is destroyed at the end of the input.
 *
 * The whole input also goes through ferry__wire_decode and, when long
 * enough, ferry__wire_decode_stream, directly. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/ferry.h"
#include "transport/core.h"
#include "transport/wire.h"
#include "base/le.h"

#define FZ_OP_ECHO         0x100 /* response = request */
#define FZ_OP_FAIL         0x101 /* replies with an error status */
#define FZ_POLL_PASSES     3
#define FZ_RECORDS_MAX     64
#define FZ_LB_KEYS         "rxslots=64,mtu=2048"
#define FZ_CALL_TIMEOUT_US 60000000u

enum { FZ_FAST_SRV, FZ_UNREL_SRV, FZ_FAST_CLI, FZ_UNREL_CLI, FZ_TARGETS };

typedef struct fz_world {
	ferry_ctx *ctx, *raw_ctx;
	ferry_server *srv;
	ferry__port *raw;
	ferry_addr to[FZ_TARGETS];
	ferry_session *sess[2];
	ferry_buf req[2], resp[2];
	/* Fix-up state learnt from what the raw endpoint received. */
	uint64_t srv_token;
	uint32_t srv_hint;
	uint8_t cli_hdr[2][FERRY_WIRE_HDR_BYTES]; /* last packet per client */
	bool have_cli_hdr[2];
	uint64_t cli_nonce[2];
} fz_world;

static void fz_echo(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_buf *req = ferry_rpc_request(rpc), *resp = ferry_rpc_response(rpc);
	size_t n = ferry_buf_len(req);
	if (n > 0) {
		void *p = ferry_buf_alloc(resp, n);
		if (p != NULL)
			ferry_buf_copy_out(req, 0, n, p);
	}
	ferry_rpc_reply(rpc, 0);
}

static void fz_fail(void *arg, ferry_rpc *rpc)
{
	(void)arg;
	ferry_rpc_reply(rpc, -5);
}

static bool fz_verbose; /* FUZZ_VERBOSE set: say what each input reached */

static void fz_call_cb(void *arg, int status, ferry_buf *resp)
{
	if (fz_verbose)
		fprintf(stderr, "  %s call: status %d, %zu response bytes\n",
		        (const char *)arg, status, ferry_buf_len(resp));
}

static void fz_stat(void *arg, const char *name, uint64_t v)
{
	(void)arg;
	if (v != 0 && (strncmp(name, "rpc.", 4) == 0 || strncmp(name, "fast.", 5) == 0))
		fprintf(stderr, "  %s = %llu\n", name, (unsigned long long)v);
}

/* The address a locator resolves to, seen from the raw endpoint. */
static int fz_resolve(fz_world *w, const char *text, ferry_addr *out)
{
	ferry_loc loc;
	char err[FERRY_LOC_ERR_BYTES];
	if (ferry__loc_parse(text, &loc, err, sizeof(err)) != 0)
		return -1;
	return w->raw->ep->drv->dgram->resolve(w->raw->ep, &loc, out);
}

static unsigned fz_lb_port(const char *bound)
{
	const char *p = strstr(bound, "port=");
	unsigned port = 0;
	if (p != NULL)
		sscanf(p, "port=%u", &port);
	return port;
}

static int fz_open(fz_world *w)
{
	memset(w, 0, sizeof(*w));
	char loc[FERRY_LOC_MAX_BYTES], err[FERRY_LOC_ERR_BYTES];
	if (ferry_ctx_create(NULL, &w->ctx) != 0 ||
	    ferry_ctx_create(NULL, &w->raw_ctx) != 0)
		return -1;
	if (ferry_server_create(w->ctx, &w->srv) != 0)
		return -1;
	ferry_server_handle(w->srv, FZ_OP_ECHO, fz_echo, NULL);
	ferry_server_handle(w->srv, FZ_OP_FAIL, fz_fail, NULL);
	if (ferry_server_listen(w->srv, "fast+loopback:maxmsg=65536," FZ_LB_KEYS) != 0 ||
	    ferry_server_listen(w->srv, "unreliable+loopback:maxmsg=65536," FZ_LB_KEYS) !=
	            0)
		return -1;

	ferry_loc rloc;
	if (ferry__loc_parse("unreliable+loopback:" FZ_LB_KEYS, &rloc, err,
	                     sizeof(err)) != 0 ||
	    ferry__port_open(w->raw_ctx, &rloc, false, &w->raw) != 0)
		return -1;
	unsigned raw_port = fz_lb_port(w->raw->bound);
	for (int i = 0; i < 2; i++) {
		if (ferry_server_locator(w->srv, i, loc, sizeof(loc)) <= 0 ||
		    fz_resolve(w, loc, &w->to[i]) != 0)
			return -1;
	}
	/* Sessions whose "server" is the raw endpoint, each with a call. */
	const char *tp[2] = {"fast", "unreliable"};
	for (int i = 0; i < 2; i++) {
		snprintf(loc, sizeof(loc), "%s+loopback:port=%u,maxmsg=65536," FZ_LB_KEYS,
		         tp[i], raw_port);
		ferry_buf_init(&w->req[i]);
		ferry_buf_init(&w->resp[i]);
		if (ferry_session_open(w->ctx, loc, &w->sess[i]) != 0)
			return -1;
		ferry__port *cp = w->sess[i]->port;
		snprintf(loc, sizeof(loc), "unreliable+loopback:port=%u",
		         fz_lb_port(cp->bound));
		if (fz_resolve(w, loc, &w->to[FZ_FAST_CLI + i]) != 0)
			return -1;
		ferry_buf_append(&w->req[i], "ping", 4);
		if (ferry_call(w->sess[i], FZ_OP_ECHO, &w->req[i], &w->resp[i],
		               FZ_CALL_TIMEOUT_US, fz_call_cb, (void *)tp[i]) != 0)
			return -1;
	}
	return 0;
}

static void fz_close(fz_world *w)
{
	/* Closing completes the calls (ECANCELED) and gives the buffers
	 * back; a response's loans then return before their context goes. */
	for (int i = 0; i < 2; i++) {
		if (w->sess[i] != NULL)
			ferry_session_close(w->sess[i]);
		ferry_buf_fini(&w->req[i]);
		ferry_buf_fini(&w->resp[i]);
	}
	ferry_ctx_destroy(w->ctx);
	ferry_ctx_destroy(w->raw_ctx);
}

static void fz_put(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Drain the raw endpoint, remembering what the fix-ups need. */
static void fz_raw_drain(fz_world *w)
{
	ferry_pkt *pkts[FERRY_POLL_BATCH];
	int n;
	while ((n = ferry__ep_poll(w->raw->ep, pkts, FERRY_POLL_BATCH)) > 0) {
		for (int i = 0; i < n; i++) {
			ferry_pkt *p = pkts[i];
			ferry_wire_hdr h;
			if (ferry__wire_decode(p->data, p->len, &h) == FERRY_WIRE_OK) {
				int cli = -1;
				for (int k = 0; k < 2; k++)
					if (p->src.len == w->to[FZ_FAST_CLI + k].len &&
					    memcmp(p->src.u.bytes,
					           w->to[FZ_FAST_CLI + k].u.bytes,
					           p->src.len) == 0)
						cli = k;
				if (h.type == FERRY_PKT_SESSION_OPEN_REPLY && cli < 0) {
					w->srv_token = h.token;
					w->srv_hint = h.server_hint;
				} else if (cli >= 0) {
					memcpy(w->cli_hdr[cli], p->data,
					       FERRY_WIRE_HDR_BYTES);
					w->have_cli_hdr[cli] = true;
					if (h.type == FERRY_PKT_SESSION_OPEN &&
					    p->len >= FERRY_WIRE_HDR_BYTES + 8)
						w->cli_nonce[cli] = ferry__get64(
						        p->data + FERRY_WIRE_HDR_BYTES);
				}
			}
			ferry__ep_release(p);
		}
	}
}

static void fz_fixup(fz_world *w, int target, uint8_t *pkt, size_t len)
{
	if (len < FERRY_WIRE_HDR_BYTES)
		return;
	if (target == FZ_FAST_SRV) {
		fz_put(pkt + 8, w->srv_token, 8);
		fz_put(pkt + 20, w->srv_hint, 4);
		return;
	}
	if (target == FZ_UNREL_SRV)
		return;
	int cli = target - FZ_FAST_CLI;
	if (w->have_cli_hdr[cli]) {
		pkt[5] = w->cli_hdr[cli][5];               /* channel */
		memcpy(pkt + 16, w->cli_hdr[cli] + 16, 4); /* client hint */
		memcpy(pkt + 24, w->cli_hdr[cli] + 24, 4); /* rpc id */
	}
	if (pkt[3] == FERRY_PKT_SESSION_OPEN_REPLY && len >= FERRY_WIRE_HDR_BYTES + 8)
		fz_put(pkt + FERRY_WIRE_HDR_BYTES, w->cli_nonce[cli], 8);
}

static void fz_passes(fz_world *w)
{
	for (int i = 0; i < FZ_POLL_PASSES; i++) {
		ferry_ctx_poll(w->ctx, 0);
		fz_raw_drain(w);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ferry_wire_hdr h;
	ferry__wire_decode(data, size, &h);
	if (size >= FERRY_WIRE_HDR_BYTES)
		ferry__wire_decode_stream(data, &h);

	static uint8_t pkt[65536];
	fz_verbose = getenv("FUZZ_VERBOSE") != NULL;
	fz_world w;
	if (fz_open(&w) != 0) {
		fprintf(stderr, "fuzz_packet: setup failed: %s\n",
		        ferry_ctx_errmsg(w.ctx));
		__builtin_trap();
	}
	fz_passes(&w); /* the sessions' handshakes reach the raw endpoint */
	size_t off = 0;
	for (int r = 0; r < FZ_RECORDS_MAX && off + 3 <= size; r++) {
		uint8_t ctl = data[off];
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
		off += 3;
		if (len > size - off)
			len = size - off;
		memcpy(pkt, data + off, len);
		off += len;
		int target = ctl & 3;
		if (ctl & 4)
			fz_fixup(&w, target, pkt, len);
		ferry__ep_send(w.raw->ep, &w.to[target], pkt, len, NULL);
		ferry__ep_flush(w.raw->ep);
		fz_passes(&w);
	}
	if (fz_verbose)
		ferry_ctx_stats(w.ctx, fz_stat, NULL);
	fz_close(&w);
	return 0;
}
