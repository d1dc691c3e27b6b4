/* Unit tests for the packet header (src/transport/wire.c): the exact byte
 * layout, encode/decode round trips of random headers, every rejection
 * verdict, fragment counts and status mapping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "ferry/err.h"
#include "transport/wire.h"

#define HDR     FERRY_WIRE_HDR_BYTES
#define PKT_MAX (HDR + 70000u)

static uint8_t pkt[PKT_MAX];

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static void assert_hdr_equal(const ferry_wire_hdr *a, const ferry_wire_hdr *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->channel, b->channel);
	assert_int_equal(a->opcode, b->opcode);
	assert_true(a->token == b->token);
	assert_int_equal(a->client_hint, b->client_hint);
	assert_int_equal(a->server_hint, b->server_hint);
	assert_int_equal(a->rpc_id, b->rpc_id);
	assert_int_equal(a->frag, b->frag);
	assert_int_equal(a->msg_len, b->msg_len);
	assert_int_equal(a->frag_bytes, b->frag_bytes);
	assert_int_equal(a->aux, b->aux);
}

/* Payload bytes a DATA fragment must carry. */
static size_t frag_payload(const ferry_wire_hdr *h)
{
	uint32_t n = ferry__wire_nfrags(h->msg_len, h->frag_bytes);
	if (h->frag + 1 < n)
		return h->frag_bytes;
	return h->msg_len - (size_t)h->frag * h->frag_bytes;
}

/* A valid single-fragment DATA header for msg_len bytes. */
static ferry_wire_hdr data_hdr(uint32_t msg_len)
{
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_DATA,
	        .flags = FERRY_FLAG_LAST,
	        .channel = 3,
	        .opcode = 100,
	        .rpc_id = 7,
	        .frag = 0,
	        .msg_len = msg_len,
	        .frag_bytes = 1400,
	};
	return h;
}

static int decode(const ferry_wire_hdr *h, size_t payload, ferry_wire_hdr *out)
{
	ferry__wire_encode(h, pkt);
	return ferry__wire_decode(pkt, HDR + payload, out);
}

static void test_layout(void **state)
{
	(void)state;
	assert_int_equal(HDR, 40);
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_ACK,
	        .flags = FERRY_FLAG_RESPONSE | FERRY_FLAG_RETX,
	        .channel = 0xab,
	        .opcode = 0x1234,
	        .token = 0x0102030405060708ull,
	        .client_hint = 0x11223344,
	        .server_hint = 0x55667788,
	        .rpc_id = 0x99aabbcc,
	        .frag = 0xddeeff00,
	        .msg_len = 0x0a0b0c0d,
	        .frag_bytes = 0x5678,
	        .aux = 0x9abc,
	};
	static const uint8_t want[40] = {
	        0x77, 0xFE, /* magic, little-endian 0xFE77 */
	        0x01,       /* version */
	        0x01,       /* type */
	        0x05,       /* flags */
	        0xab,       /* channel */
	        0x34, 0x12, /* opcode */
	        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* token */
	        0x44, 0x33, 0x22, 0x11,                         /* client_hint */
	        0x88, 0x77, 0x66, 0x55,                         /* server_hint */
	        0xcc, 0xbb, 0xaa, 0x99,                         /* rpc_id */
	        0x00, 0xff, 0xee, 0xdd,                         /* frag */
	        0x0d, 0x0c, 0x0b, 0x0a,                         /* msg_len */
	        0x78, 0x56,                                     /* frag_bytes */
	        0xbc, 0x9a,                                     /* aux */
	};
	uint8_t out[HDR + 8];
	memset(out, 0xee, sizeof(out));
	ferry__wire_encode(&h, out);
	assert_memory_equal(out, want, sizeof(want));
	/* Nothing written past the header. */
	for (size_t i = HDR; i < sizeof(out); i++)
		assert_int_equal(out[i], 0xee);
	assert_int_equal(out[0], 0x77);
	assert_int_equal(out[1], 0xFE);
	assert_int_equal(out[2], FERRY_WIRE_VERSION);

	ferry_wire_hdr back;
	memset(&back, 0x5a, sizeof(back));
	assert_int_equal(ferry__wire_decode(want, sizeof(want), &back), FERRY_WIRE_OK);
	assert_hdr_equal(&back, &h);
}

static void test_roundtrip_random(void **state)
{
	(void)state;
	for (int iter = 0; iter < 20000; iter++) {
		ferry_wire_hdr h;
		memset(&h, 0, sizeof(h));
		h.type = (uint8_t)(rng() % FERRY_PKT_TYPE_COUNT);
		h.flags = (uint8_t)(rng() & FERRY_FLAG_KNOWN);
		h.channel = (uint8_t)rng();
		h.opcode = (uint16_t)rng();
		h.token = rng();
		h.client_hint = (uint32_t)rng();
		h.server_hint = (uint32_t)rng();
		h.rpc_id = (uint32_t)rng();
		h.aux = (uint16_t)rng();
		size_t payload;
		if (h.type == FERRY_PKT_DATA) {
			/* Consistent: a fragment of a message, payload to match. */
			switch (rng() % 4) {
			case 0: /* empty message */
				h.msg_len = 0;
				h.frag_bytes = (uint16_t)(rng() % 2 ? rng() : 0);
				break;
			case 1: /* small */
				h.frag_bytes = (uint16_t)(1 + rng() % 65535);
				h.msg_len = (uint32_t)(1 + rng() % 5000);
				break;
			case 2: /* tiny fragments, many of them */
				h.frag_bytes = (uint16_t)(1 + rng() % 16);
				h.msg_len = (uint32_t)(1 + rng() % 100000);
				break;
			default: /* large message */
				h.frag_bytes = (uint16_t)(1 + rng() % 65535);
				h.msg_len = (uint32_t)rng();
				break;
			}
			uint32_t n = ferry__wire_nfrags(h.msg_len, h.frag_bytes);
			h.frag = (uint32_t)(rng() % 3 == 0 ? n - 1 : rng() % n);
			if (h.frag + 1 == n)
				h.flags |= FERRY_FLAG_LAST;
			else
				h.flags &= (uint8_t)~FERRY_FLAG_LAST;
			payload = frag_payload(&h);
			assert_true(payload <= 65535);
		} else {
			h.frag = (uint32_t)rng();
			h.msg_len = (uint32_t)rng();
			h.frag_bytes = (uint16_t)rng();
			payload = rng() % 2000; /* not checked for other types */
		}
		ferry_wire_hdr back;
		memset(&back, 0, sizeof(back));
		int v = decode(&h, payload, &back);
		if (v != FERRY_WIRE_OK)
			fail_msg("iter %d: type %u frag %u/%u msg_len %u frag_bytes %u "
			         "payload %zu: verdict %d",
			         iter, h.type, h.frag,
			         ferry__wire_nfrags(h.msg_len, h.frag_bytes), h.msg_len,
			         h.frag_bytes, payload, v);
		assert_hdr_equal(&back, &h);
		/* Re-encoding the decoded header gives the same bytes. */
		uint8_t again[HDR];
		ferry__wire_encode(&back, again);
		assert_memory_equal(again, pkt, HDR);
	}
}

static void test_every_type_ok(void **state)
{
	(void)state;
	for (int t = 0; t < FERRY_PKT_TYPE_COUNT; t++) {
		ferry_wire_hdr h = data_hdr(10), back;
		h.type = (uint8_t)t;
		for (unsigned f = 0; f <= FERRY_FLAG_KNOWN; f++) {
			h.flags = (uint8_t)(f |
			                    (t == FERRY_PKT_DATA ? FERRY_FLAG_LAST : 0));
			assert_int_equal(decode(&h, 10, &back), FERRY_WIRE_OK);
		}
	}
}

static void test_short(void **state)
{
	(void)state;
	ferry_wire_hdr h = data_hdr(0), back;
	ferry__wire_encode(&h, pkt);
	assert_int_equal(ferry__wire_decode(pkt, HDR, &back), FERRY_WIRE_OK);
	assert_int_equal(ferry__wire_decode(pkt, 39, &back), FERRY_WIRE_SHORT);
	for (size_t len = 0; len < HDR; len++)
		assert_int_equal(ferry__wire_decode(pkt, len, &back), FERRY_WIRE_SHORT);
	/* Short wins over every other problem. */
	memset(pkt, 0, HDR);
	assert_int_equal(ferry__wire_decode(pkt, 39, &back), FERRY_WIRE_SHORT);
}

static void test_bad_magic_version(void **state)
{
	(void)state;
	ferry_wire_hdr h = data_hdr(0), back;
	ferry__wire_encode(&h, pkt);
	static const uint8_t magics[][2] = {{0xFE, 0x77}, {0x00, 0x00}, {0x77, 0x00},
	                                    {0x00, 0xFE}, {0x76, 0xFE}, {0xff, 0xff}};
	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
		ferry__wire_encode(&h, pkt);
		pkt[0] = magics[i][0];
		pkt[1] = magics[i][1];
		assert_int_equal(ferry__wire_decode(pkt, HDR, &back),
		                 FERRY_WIRE_BAD_MAGIC);
	}
	static const uint8_t versions[] = {0, 2, 0x81, 0xff};
	for (size_t i = 0; i < sizeof(versions); i++) {
		ferry__wire_encode(&h, pkt);
		pkt[2] = versions[i];
		assert_int_equal(ferry__wire_decode(pkt, HDR, &back),
		                 FERRY_WIRE_BAD_VERSION);
	}
	/* Magic is checked before version. */
	ferry__wire_encode(&h, pkt);
	pkt[0] = 0;
	pkt[2] = 9;
	assert_int_equal(ferry__wire_decode(pkt, HDR, &back), FERRY_WIRE_BAD_MAGIC);
}

/* VERSION_MISMATCH: 40 bytes, frozen at version 1, the refused version in
 * channel and our range in aux; recognised only with magic, version 1 and
 * type 8. A packet at another version reports its version byte. */
static void test_version_mismatch(void **state)
{
	(void)state;
	uint8_t p[HDR], q[HDR];
	ferry__wire_encode_mismatch(7, p);
	const uint8_t want[HDR] = {0x77,
	                           0xfe,
	                           1,
	                           FERRY_PKT_VERSION_MISMATCH,
	                           0x01,
	                           7,
	                           [38] = FERRY_WIRE_VERSION_MIN,
	                           [39] = FERRY_WIRE_VERSION_MAX};
	assert_memory_equal(p, want, HDR);
	uint8_t lo = 0, hi = 0, refused = 0;
	assert_true(ferry__wire_is_mismatch(p, HDR, &lo, &hi, &refused));
	assert_int_equal(lo, FERRY_WIRE_VERSION_MIN);
	assert_int_equal(hi, FERRY_WIRE_VERSION_MAX);
	assert_int_equal(refused, 7);
	assert_false(ferry__wire_is_mismatch(p, HDR - 1, NULL, NULL, NULL));
	ferry_wire_hdr back;
	assert_int_equal(ferry__wire_decode(p, HDR, &back), FERRY_WIRE_OK);
	assert_int_equal(back.type, FERRY_PKT_VERSION_MISMATCH);
	memcpy(q, p, HDR);
	q[2] = 2;
	assert_false(ferry__wire_is_mismatch(q, HDR, NULL, NULL, NULL));
	assert_int_equal(ferry__wire_decode(q, HDR, &back), FERRY_WIRE_BAD_VERSION);
	assert_int_equal(back.version, 2);
	memcpy(q, p, HDR);
	q[3] = FERRY_PKT_DATA;
	assert_false(ferry__wire_is_mismatch(q, HDR, NULL, NULL, NULL));
	memcpy(q, p, HDR);
	q[0] = 0;
	assert_false(ferry__wire_is_mismatch(q, HDR, NULL, NULL, NULL));
}

static void test_bad_type(void **state)
{
	(void)state;
	ferry_wire_hdr h = data_hdr(0), back;
	for (unsigned t = FERRY_PKT_TYPE_COUNT; t < 256; t++) {
		h.type = (uint8_t)t;
		assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_TYPE);
	}
	h.type = FERRY_PKT_TYPE_COUNT; /* the first unassigned type */
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_TYPE);
	/* CANCEL and KEEPALIVE decode (header only, no length rules). */
	h.type = FERRY_PKT_CANCEL;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_OK);
	h.type = FERRY_PKT_KEEPALIVE;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_OK);
	/* Unknown flag bits, on DATA and on other types. */
	for (unsigned bit = 0x10; bit <= 0x80; bit <<= 1) {
		h = data_hdr(0);
		h.flags |= (uint8_t)bit;
		assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_TYPE);
		h.type = FERRY_PKT_ACK;
		assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_TYPE);
	}
	h = data_hdr(0);
	h.flags = 0x80 | FERRY_FLAG_LAST;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_TYPE);
	h.flags = 0xff;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_TYPE);
}

static void test_bad_length(void **state)
{
	(void)state;
	ferry_wire_hdr h, back;

	/* One fragment of 100 bytes: payload at least 100; more is padding
	 * (WIRE.md "Padding"), which receivers ignore. */
	h = data_hdr(100);
	assert_int_equal(decode(&h, 100, &back), FERRY_WIRE_OK);
	assert_int_equal(decode(&h, 99, &back), FERRY_WIRE_BAD_LENGTH);
	assert_int_equal(decode(&h, 101, &back), FERRY_WIRE_OK);
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);

	/* 2500 bytes in 1000-byte fragments: 1000, 1000, 500. */
	h = data_hdr(2500);
	h.frag_bytes = 1000;
	h.flags = 0;
	h.frag = 0;
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_OK);
	assert_int_equal(decode(&h, 500, &back), FERRY_WIRE_BAD_LENGTH);
	assert_int_equal(decode(&h, 999, &back), FERRY_WIRE_BAD_LENGTH);
	h.frag = 1;
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_OK);
	assert_int_equal(decode(&h, 1001, &back), FERRY_WIRE_OK); /* padded */
	h.frag = 2;
	h.flags = FERRY_FLAG_LAST;
	assert_int_equal(decode(&h, 500, &back), FERRY_WIRE_OK);
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_OK); /* padded */
	assert_int_equal(decode(&h, 499, &back), FERRY_WIRE_BAD_LENGTH);

	/* frag >= nfrags, whatever the payload and flags. */
	h.frag = 3;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);
	assert_int_equal(decode(&h, 500, &back), FERRY_WIRE_BAD_LENGTH);
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_BAD_LENGTH);
	h.flags = 0;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);
	assert_int_equal(decode(&h, 500, &back), FERRY_WIRE_BAD_LENGTH);
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_BAD_LENGTH);
	h.frag = 4;
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_BAD_LENGTH);
	h.frag = UINT32_MAX;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);
	h = data_hdr(0);
	h.frag = 1;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);

	/* LAST on a non-last fragment, and missing on the last one. */
	h = data_hdr(2500);
	h.frag_bytes = 1000;
	h.frag = 0;
	h.flags = FERRY_FLAG_LAST;
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_BAD_LENGTH);
	h.frag = 1;
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_BAD_LENGTH);
	h.frag = 2;
	h.flags = 0;
	assert_int_equal(decode(&h, 500, &back), FERRY_WIRE_BAD_LENGTH);
	h = data_hdr(10);
	h.flags = 0;
	assert_int_equal(decode(&h, 10, &back), FERRY_WIRE_BAD_LENGTH);

	/* msg_len > 0 with frag_bytes 0. */
	h = data_hdr(10);
	h.frag_bytes = 0;
	assert_int_equal(decode(&h, 10, &back), FERRY_WIRE_BAD_LENGTH);
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);

	/* Exact multiple: the last fragment is full. */
	h = data_hdr(2000);
	h.frag_bytes = 1000;
	h.frag = 1;
	assert_int_equal(decode(&h, 1000, &back), FERRY_WIRE_OK);
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);

	/* The largest message: 2^32-1 = 65537 * 65535, so 65537 full
	 * fragments of 65535 bytes. */
	h = data_hdr(UINT32_MAX);
	h.frag_bytes = 65535;
	h.frag = ferry__wire_nfrags(UINT32_MAX, 65535) - 1;
	assert_int_equal(h.frag, 65536);
	assert_int_equal(decode(&h, 65535, &back), FERRY_WIRE_OK);
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);
	h.frag = 65535;
	h.flags = 0;
	assert_int_equal(decode(&h, 65535, &back), FERRY_WIRE_OK);
	h.frag = 65537;
	h.flags = FERRY_FLAG_LAST;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);
	h.flags = 0;
	assert_int_equal(decode(&h, 65535, &back), FERRY_WIRE_BAD_LENGTH);
	h = data_hdr(0);
	h.frag = 1;
	h.flags = 0;
	h.frag_bytes = 0;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);

	/* Other types carry any payload. */
	h = data_hdr(10);
	h.type = FERRY_PKT_ACK;
	h.flags = 0;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_OK);
	assert_int_equal(decode(&h, 777, &back), FERRY_WIRE_OK);
}

static void test_empty_message(void **state)
{
	(void)state;
	ferry_wire_hdr h = data_hdr(0), back;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_OK);
	assert_int_equal(back.msg_len, 0);
	assert_int_equal(back.frag, 0);
	assert_true(back.flags & FERRY_FLAG_LAST);
	/* frag_bytes 0 is fine for an empty message. */
	h.frag_bytes = 0;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_OK);
	/* Bytes after an empty message are padding; LAST is required. */
	assert_int_equal(decode(&h, 1, &back), FERRY_WIRE_OK);
	h.flags = 0;
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_BAD_LENGTH);
}

static void test_nfrags(void **state)
{
	(void)state;
	assert_int_equal(ferry__wire_nfrags(0, 0), 1);
	assert_int_equal(ferry__wire_nfrags(0, 1000), 1);
	assert_int_equal(ferry__wire_nfrags(5, 0), 1);
	assert_int_equal(ferry__wire_nfrags(1, 1000), 1);
	assert_int_equal(ferry__wire_nfrags(999, 1000), 1);
	assert_int_equal(ferry__wire_nfrags(1000, 1000), 1);
	assert_int_equal(ferry__wire_nfrags(1001, 1000), 2);
	assert_int_equal(ferry__wire_nfrags(2000, 1000), 2);
	assert_int_equal(ferry__wire_nfrags(2001, 1000), 3);
	assert_int_equal(ferry__wire_nfrags(7, 1), 7);
	/* No overflow at the top of the range. */
	assert_int_equal(ferry__wire_nfrags(UINT32_MAX, 1), UINT32_MAX);
	assert_int_equal(ferry__wire_nfrags(UINT32_MAX, 2), 1u << 31);
	assert_int_equal(ferry__wire_nfrags(UINT32_MAX, UINT32_MAX), 1);
	assert_int_equal(ferry__wire_nfrags(UINT32_MAX - 1, UINT32_MAX), 1);
	assert_int_equal(ferry__wire_nfrags(UINT32_MAX, 65535), 65537);
	assert_int_equal(ferry__wire_nfrags(UINT32_MAX, 65536), 65536);
	for (uint32_t fb = 1; fb < 300; fb++)
		for (uint32_t len = 1; len < 1000; len += 7) {
			uint32_t n = ferry__wire_nfrags(len, fb);
			assert_true((uint64_t)n * fb >= len);
			assert_true((uint64_t)(n - 1) * fb < len);
		}
}

static void test_status(void **state)
{
	(void)state;
	static const int codes[] = {0,
	                            -ECONNRESET,
	                            -ENOENT,
	                            -EINVAL,
	                            -1,
	                            -4095,
	                            FERRY_ETIMEDOUT,
	                            FERRY_EBADLOC,
	                            FERRY_EWRONGTHREAD,
	                            FERRY_ENOHANDLER,
	                            -65535};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		uint16_t w = ferry__wire_status(codes[i]);
		assert_int_equal(ferry__wire_unstatus(w), codes[i]);
	}
	assert_int_equal(ferry__wire_status(0), 0);
	assert_int_equal(ferry__wire_status(-ECONNRESET), ECONNRESET);
	assert_int_equal(ferry__wire_status(FERRY_ETIMEDOUT), 10001);
	assert_int_equal(ferry__wire_unstatus(0), 0);
	assert_int_equal(ferry__wire_unstatus(10001), FERRY_ETIMEDOUT);
	/* Positive values (counts) travel as success. */
	assert_int_equal(ferry__wire_status(5), 0);
	/* Every wire value maps back and forth. */
	for (uint32_t w = 0; w <= 65535; w++)
		assert_int_equal(ferry__wire_status(ferry__wire_unstatus((uint16_t)w)),
		                 w);
	/* Status survives the header. */
	ferry_wire_hdr h = data_hdr(0), back;
	h.flags |= FERRY_FLAG_RESPONSE;
	h.aux = ferry__wire_status(FERRY_ETIMEDOUT);
	assert_int_equal(decode(&h, 0, &back), FERRY_WIRE_OK);
	assert_int_equal(ferry__wire_unstatus(back.aux), FERRY_ETIMEDOUT);
}

/* Stream headers: CANCEL is a header-only request; DATA rules unchanged. */
static void test_stream_cancel(void **state)
{
	(void)state;
	uint8_t p[FERRY_WIRE_HDR_BYTES];
	ferry_wire_hdr h = {.type = FERRY_PKT_CANCEL,
	                    .flags = FERRY_FLAG_LAST,
	                    .channel = 3,
	                    .client_hint = 2,
	                    .rpc_id = 9},
	               back;
	ferry__wire_encode(&h, p);
	assert_int_equal(ferry__wire_decode_stream(p, &back), FERRY_WIRE_OK);
	assert_int_equal(back.type, FERRY_PKT_CANCEL);
	assert_int_equal(back.rpc_id, 9);
	h.msg_len = 1; /* a CANCEL carries no body */
	ferry__wire_encode(&h, p);
	assert_int_equal(ferry__wire_decode_stream(p, &back), FERRY_WIRE_BAD_LENGTH);
	h.msg_len = 0;
	h.flags |= FERRY_FLAG_RESPONSE; /* only clients cancel */
	ferry__wire_encode(&h, p);
	assert_int_equal(ferry__wire_decode_stream(p, &back), FERRY_WIRE_BAD_LENGTH);
	h.flags = FERRY_FLAG_LAST;
	h.type = FERRY_PKT_KEEPALIVE; /* fast only */
	ferry__wire_encode(&h, p);
	assert_int_equal(ferry__wire_decode_stream(p, &back), FERRY_WIRE_BAD_TYPE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_layout),
	        cmocka_unit_test(test_roundtrip_random),
	        cmocka_unit_test(test_every_type_ok),
	        cmocka_unit_test(test_short),
	        cmocka_unit_test(test_bad_magic_version),
	        cmocka_unit_test(test_version_mismatch),
	        cmocka_unit_test(test_bad_type),
	        cmocka_unit_test(test_bad_length),
	        cmocka_unit_test(test_empty_message),
	        cmocka_unit_test(test_nfrags),
	        cmocka_unit_test(test_status),
	        cmocka_unit_test(test_stream_cancel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
