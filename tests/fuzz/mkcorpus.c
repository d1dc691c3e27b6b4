/* Writes the fuzz harnesses' seed corpora from the real encoder:
 *   fuzz_mkcorpus DIR     (DIR = tests/fuzz/corpus; files DIR/<harness>/seed-*)
 * Record formats are those of fuzz_packet.c and fuzz_stream.c. Regression
 * inputs (crash-*, regress-*) live beside the seeds and are never
 * rewritten. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/wire.h"

#define OP_ECHO 0x100
#define OP_FAIL 0x101

typedef struct out {
	uint8_t b[8192];
	size_t n;
} out;

static void put(out *o, const void *p, size_t n)
{
	if (o->n + n > sizeof(o->b))
		abort();
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static void put_le(out *o, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++) {
		uint8_t c = (uint8_t)(v >> (8 * i));
		put(o, &c, 1);
	}
}

static void hdr(out *o, ferry_wire_hdr h)
{
	uint8_t b[FERRY_WIRE_HDR_BYTES];
	ferry__wire_encode(&h, b);
	put(o, b, sizeof(b));
}

/* fuzz_packet record: ctl, u16 length, then header and payload. */
static void rec(out *o, uint8_t ctl, ferry_wire_hdr h, const void *payload, size_t n)
{
	put(o, &ctl, 1);
	put_le(o, FERRY_WIRE_HDR_BYTES + n, 2);
	hdr(o, h);
	put(o, payload, n);
}

static void save(const char *dir, const char *harness, const char *name, const out *o)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s/%s", dir, harness, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(o->b, 1, o->n, f) != o->n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

enum { T_FAST_SRV = 0, T_UNREL_SRV = 1, T_FAST_CLI = 2, T_UNREL_CLI = 3, FIX = 4 };

static void fast_open(out *o)
{
	out p = {.n = 0};
	put_le(&p, 0x1122334455667788ull, 8); /* nonce */
	put_le(&p, 8, 2);                     /* channels */
	put_le(&p, 1400, 2);                  /* cap */
	rec(o, T_FAST_SRV,
	    (ferry_wire_hdr){.type = FERRY_PKT_SESSION_OPEN, .client_hint = 3}, p.b, p.n);
}

static void packet_corpus(const char *dir)
{
	const char *H = "packet";
	out o;
	/* fast: open, then a one-fragment echo request, then an ack. */
	o.n = 0;
	fast_open(&o);
	rec(&o, T_FAST_SRV | FIX,
	    (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .flags = FERRY_FLAG_LAST | FERRY_FLAG_ACK_REQ,
	                     .opcode = OP_ECHO,
	                     .client_hint = 3,
	                     .rpc_id = 1,
	                     .msg_len = 5,
	                     .frag_bytes = 1000,
	                     .aux = 1400},
	    "hello", 5);
	uint8_t bitmap[8] = {1};
	rec(&o, T_FAST_SRV | FIX,
	    (ferry_wire_hdr){.type = FERRY_PKT_ACK,
	                     .flags = 0,
	                     .client_hint = 3,
	                     .rpc_id = 1,
	                     .frag = 1,
	                     .aux = 1},
	    bitmap, sizeof(bitmap));
	save(dir, H, "seed-fast-echo", &o);

	/* fast: a three-fragment request, out of order, one duplicate. */
	o.n = 0;
	fast_open(&o);
	uint8_t body[40];
	for (int i = 0; i < 40; i++)
		body[i] = (uint8_t)i;
	ferry_wire_hdr d = {.type = FERRY_PKT_DATA,
	                    .opcode = OP_ECHO,
	                    .channel = 1,
	                    .client_hint = 3,
	                    .rpc_id = 7,
	                    .msg_len = 40,
	                    .frag_bytes = 16,
	                    .aux = 16};
	d.frag = 2, d.flags = FERRY_FLAG_LAST;
	rec(&o, T_FAST_SRV | FIX, d, body + 32, 8);
	d.frag = 0, d.flags = 0;
	rec(&o, T_FAST_SRV | FIX, d, body, 16);
	rec(&o, T_FAST_SRV | FIX, d, body, 16);
	d.frag = 1, d.flags = FERRY_FLAG_ACK_REQ;
	rec(&o, T_FAST_SRV | FIX, d, body + 16, 16);
	save(dir, H, "seed-fast-frags", &o);

	/* fast: data under a session that does not exist; a failing handler. */
	o.n = 0;
	rec(&o, T_FAST_SRV,
	    (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .flags = FERRY_FLAG_LAST,
	                     .opcode = OP_ECHO,
	                     .token = 42,
	                     .server_hint = 9,
	                     .msg_len = 2,
	                     .frag_bytes = 100},
	    "hi", 2);
	fast_open(&o);
	rec(&o, T_FAST_SRV | FIX,
	    (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .flags = FERRY_FLAG_LAST,
	                     .opcode = OP_FAIL,
	                     .client_hint = 3,
	                     .rpc_id = 1,
	                     .msg_len = 0,
	                     .frag_bytes = 100},
	    "", 0);
	save(dir, H, "seed-fast-unknown-fail", &o);

	/* unreliable server: echo, fragments, failing handler. */
	o.n = 0;
	rec(&o, T_UNREL_SRV,
	    (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .flags = FERRY_FLAG_LAST,
	                     .opcode = OP_ECHO,
	                     .client_hint = 1,
	                     .rpc_id = 1,
	                     .msg_len = 5,
	                     .frag_bytes = 1000},
	    "hello", 5);
	d = (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .opcode = OP_ECHO,
	                     .client_hint = 1,
	                     .rpc_id = 2,
	                     .msg_len = 40,
	                     .frag_bytes = 16};
	d.frag = 1;
	rec(&o, T_UNREL_SRV, d, body + 16, 16);
	d.frag = 0;
	rec(&o, T_UNREL_SRV, d, body, 16);
	d.frag = 2, d.flags = FERRY_FLAG_LAST;
	rec(&o, T_UNREL_SRV, d, body + 32, 8);
	rec(&o, T_UNREL_SRV,
	    (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .flags = FERRY_FLAG_LAST,
	                     .opcode = OP_FAIL,
	                     .client_hint = 1,
	                     .rpc_id = 3,
	                     .msg_len = 0,
	                     .frag_bytes = 1000},
	    "", 0);
	save(dir, H, "seed-unrel-echo", &o);

	/* fast client: the raw endpoint plays the server: open reply (the
	 * nonce is fixed up), then the response to the call. */
	o.n = 0;
	out p = {.n = 0};
	put_le(&p, 0, 8);    /* nonce (fix-up) */
	put_le(&p, 77, 8);   /* epoch */
	put_le(&p, 8, 2);    /* channels */
	put_le(&p, 1000, 2); /* cap */
	rec(&o, T_FAST_CLI | FIX,
	    (ferry_wire_hdr){.type = FERRY_PKT_SESSION_OPEN_REPLY,
	                     .flags = FERRY_FLAG_RESPONSE,
	                     .token = 0xabcdef,
	                     .server_hint = 5},
	    p.b, p.n);
	rec(&o, T_FAST_CLI | FIX,
	    (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .flags = FERRY_FLAG_RESPONSE | FERRY_FLAG_LAST |
	                              FERRY_FLAG_ACK_REQ,
	                     .opcode = OP_ECHO,
	                     .token = 0xabcdef,
	                     .server_hint = 5,
	                     .msg_len = 4,
	                     .frag_bytes = 1000},
	    "ping", 4);
	save(dir, H, "seed-fast-client", &o);

	/* fast client: open reply, a two-fragment response, bad session. */
	o.n = 0;
	rec(&o, T_FAST_CLI | FIX,
	    (ferry_wire_hdr){.type = FERRY_PKT_SESSION_OPEN_REPLY,
	                     .flags = FERRY_FLAG_RESPONSE,
	                     .token = 0xabcdef,
	                     .server_hint = 5},
	    p.b, p.n);
	d = (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .flags = FERRY_FLAG_RESPONSE,
	                     .opcode = OP_ECHO,
	                     .token = 0xabcdef,
	                     .server_hint = 5,
	                     .msg_len = 24,
	                     .frag_bytes = 16};
	rec(&o, T_FAST_CLI | FIX, d, body, 16);
	d.frag = 1, d.flags |= FERRY_FLAG_LAST;
	rec(&o, T_FAST_CLI | FIX, d, body + 16, 8);
	out e = {.n = 0};
	put_le(&e, 78, 8);
	rec(&o, T_FAST_CLI | FIX,
	    (ferry_wire_hdr){.type = FERRY_PKT_BAD_SESSION,
	                     .flags = FERRY_FLAG_RESPONSE,
	                     .token = 0xabcdef},
	    e.b, e.n);
	save(dir, H, "seed-fast-client-frags", &o);

	/* unreliable client: a response, an error status, a late duplicate. */
	o.n = 0;
	ferry_wire_hdr r = {.type = FERRY_PKT_DATA,
	                    .flags = FERRY_FLAG_RESPONSE | FERRY_FLAG_LAST,
	                    .opcode = OP_ECHO,
	                    .msg_len = 4,
	                    .frag_bytes = 1000};
	rec(&o, T_UNREL_CLI | FIX, r, "pong", 4);
	rec(&o, T_UNREL_CLI | FIX, r, "pong", 4);
	save(dir, H, "seed-unrel-client", &o);
	o.n = 0;
	r.msg_len = 0, r.aux = 5;
	rec(&o, T_UNREL_CLI | FIX, r, "", 0);
	save(dir, H, "seed-unrel-client-status", &o);

	/* Tricky headers: huge message, one-byte fragments, unknown flags, a
	 * short packet, a bare header with nothing else. */
	o.n = 0;
	rec(&o, T_UNREL_SRV,
	    (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .opcode = OP_ECHO,
	                     .msg_len = 0xffffffffu,
	                     .frag_bytes = 1,
	                     .frag = 0xfffffffeu},
	    "x", 1);
	rec(&o, T_FAST_SRV | FIX,
	    (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                     .opcode = OP_ECHO,
	                     .msg_len = 0xffffffffu,
	                     .frag_bytes = 0xffff,
	                     .frag = 3},
	    "", 0);
	uint8_t shortpkt[3] = {0x77, 0xfe, 1};
	uint8_t c = T_UNREL_SRV;
	put(&o, &c, 1);
	put_le(&o, sizeof(shortpkt), 2);
	put(&o, shortpkt, sizeof(shortpkt));
	save(dir, H, "seed-tricky", &o);
}

/* fuzz_stream: ctl, chunk, then the stream's bytes. */
static void stream_msg(out *o, uint8_t flags, uint16_t opcode, uint16_t aux,
                       const void *body, uint32_t n, uint32_t msg_len)
{
	hdr(o, (ferry_wire_hdr){.type = FERRY_PKT_DATA,
	                        .flags = FERRY_FLAG_LAST | flags,
	                        .opcode = opcode,
	                        .rpc_id = 1,
	                        .msg_len = msg_len,
	                        .aux = aux});
	put(o, body, n);
}

static void stream_corpus(const char *dir)
{
	const char *H = "stream";
	out o;
	static uint8_t big[3000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	struct {
		const char *name;
		uint8_t ctl, chunk;
	} server[] = {{"seed-server-echo", 0, 0},
	              {"seed-server-echo-chunked", 0, 7},
	              {"seed-server-splice", 4, 13}};
	for (size_t i = 0; i < sizeof(server) / sizeof(server[0]); i++) {
		o.n = 0;
		put(&o, &server[i].ctl, 1);
		put(&o, &server[i].chunk, 1);
		stream_msg(&o, 0, OP_ECHO, 0, "hello", 5, 5);
		stream_msg(&o, 0, OP_FAIL, 0, "", 0, 0);
		stream_msg(&o, 0, OP_ECHO, 0, big, sizeof(big), sizeof(big));
		save(dir, H, server[i].name, &o);
	}
	/* Over the server's cap (65536): refused, the body read and dropped;
	 * then a truncated body. */
	o.n = 0;
	put_le(&o, 0, 1);
	put_le(&o, 0, 1);
	stream_msg(&o, 0, OP_ECHO, 0, big, sizeof(big), 100000);
	save(dir, H, "seed-server-toobig", &o);
	o.n = 0;
	put_le(&o, 0, 2);
	stream_msg(&o, 0, OP_ECHO, 0, "abc", 3, 50);
	save(dir, H, "seed-server-truncated", &o);
	/* A response where the server expects a request; bad magic. */
	o.n = 0;
	put_le(&o, 0, 2);
	stream_msg(&o, FERRY_FLAG_RESPONSE, OP_ECHO, 0, "", 0, 0);
	save(dir, H, "seed-server-response", &o);
	o.n = 0;
	put_le(&o, 0, 2);
	stream_msg(&o, 0, OP_ECHO, 0, "", 0, 0);
	o.b[2] ^= 0xff;
	save(dir, H, "seed-server-badmagic", &o);

	/* Client side (ctl 1|2: the header fixed up to match the call). */
	struct {
		const char *name;
		uint8_t ctl, chunk;
		uint16_t aux;
		uint32_t n;
	} client[] = {
	        {"seed-client-pong", 1 | 2, 0, 0, 4},
	        {"seed-client-chunked", 1 | 2, 5, 0, 3000},
	        {"seed-client-status", 1 | 2, 0, 5, 0},
	        {"seed-client-fd", 1 | 2 | 8, 0, 0, 3000},
	        {"seed-client-splice-fd", 1 | 2 | 4 | 8, 11, 0, 3000},
	        {"seed-client-unmatched", 1, 0, 0, 4},
	};
	for (size_t i = 0; i < sizeof(client) / sizeof(client[0]); i++) {
		o.n = 0;
		put(&o, &client[i].ctl, 1);
		put(&o, &client[i].chunk, 1);
		stream_msg(&o, FERRY_FLAG_RESPONSE, OP_ECHO, client[i].aux, big,
		           client[i].n, client[i].n);
		save(dir, H, client[i].name, &o);
	}
}

static void locator_corpus(const char *dir)
{
	const char *locs[] = {
	        "unreliable+udp:host=127.0.0.1,port=0",
	        "fast+udp:host=::1,port=0,maxmsg=1m,channels=16,liveness=500000",
	        "unreliable+loopback:port=0,mtu=2048,rxslots=64",
	        "fast+lossy+loopback:drop=0.1,dup=0.01,reorder=0.2,delay=0.1,delay_us=100,corrupt=0,seed=7",
	        "tcp:host=127.0.0.1,port=0,sndbuf=65536,connect_timeout=100",
	        "splice:host=[::1],port=0,maxmsg=64k",
	        "infud:dev=mlx5_0,ibport=1,gid=0,host=127.0.0.1,port=0",
	        "fast+udp:host=127.0.0.1,port=0,pcap=/dev/null",
	        "udp:host=127.0.0.1,port=1",
	        "fast+tcp:host=127.0.0.1",
	        "lossy+lossy+loopback",
	        "fast+unreliable+loopback",
	        "unreliable+loopback:port=1,port=2",
	        "unreliable+loopback:,",
	        "unreliable+loopback:mtu=18446744073709551616",
	        "unreliable+loopback:mtu=16g",
	        ":",
	        "a+b+c+d+e+f+g",
	};
	for (size_t i = 0; i < sizeof(locs) / sizeof(locs[0]); i++) {
		out o = {.n = 0};
		put(&o, locs[i], strlen(locs[i]));
		char name[32];
		snprintf(name, sizeof(name), "seed-%02zu", i);
		save(dir, "locator", name, &o);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	packet_corpus(argv[1]);
	stream_corpus(argv[1]);
	locator_corpus(argv[1]);
	return 0;
}
