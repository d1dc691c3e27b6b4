/* Header encode/decode shared by every datagram transport. */
#include <string.h>

#include "base/le.h"
#include "wire.h"

void ferry__wire_encode(const ferry_wire_hdr *h, uint8_t out[FERRY_WIRE_HDR_BYTES])
{
	ferry__put16(out + 0, FERRY_WIRE_MAGIC);
	out[2] = FERRY_WIRE_VERSION;
	out[3] = h->type;
	out[4] = h->flags;
	out[5] = h->channel;
	ferry__put16(out + 6, h->opcode);
	ferry__put64(out + 8, h->token);
	ferry__put32(out + 16, h->client_hint);
	ferry__put32(out + 20, h->server_hint);
	ferry__put32(out + 24, h->rpc_id);
	ferry__put32(out + 28, h->frag);
	ferry__put32(out + 32, h->msg_len);
	ferry__put16(out + 36, h->frag_bytes);
	ferry__put16(out + 38, h->aux);
}

static int wire_fields(const uint8_t *p, ferry_wire_hdr *h)
{
	if (ferry__get16(p) != FERRY_WIRE_MAGIC)
		return FERRY_WIRE_BAD_MAGIC;
	h->version = p[2];
	if (p[2] != FERRY_WIRE_VERSION)
		return FERRY_WIRE_BAD_VERSION;
	h->type = p[3];
	h->flags = p[4];
	h->channel = p[5];
	h->opcode = ferry__get16(p + 6);
	h->token = ferry__get64(p + 8);
	h->client_hint = ferry__get32(p + 16);
	h->server_hint = ferry__get32(p + 20);
	h->rpc_id = ferry__get32(p + 24);
	h->frag = ferry__get32(p + 28);
	h->msg_len = ferry__get32(p + 32);
	h->frag_bytes = ferry__get16(p + 36);
	h->aux = ferry__get16(p + 38);
	if (h->type >= FERRY_PKT_TYPE_COUNT || (h->flags & ~FERRY_FLAG_KNOWN) != 0)
		return FERRY_WIRE_BAD_TYPE;
	return FERRY_WIRE_OK;
}

int ferry__wire_decode_stream(const uint8_t *p, ferry_wire_hdr *h)
{
	int v = wire_fields(p, h);
	if (v != FERRY_WIRE_OK)
		return v;
	if (h->type != FERRY_PKT_DATA && h->type != FERRY_PKT_CANCEL)
		return FERRY_WIRE_BAD_TYPE;
	if (h->type == FERRY_PKT_CANCEL &&
	    (h->msg_len != 0 || (h->flags & FERRY_FLAG_RESPONSE) != 0))
		return FERRY_WIRE_BAD_LENGTH;
	if (h->frag != 0 || h->frag_bytes != 0 || (h->flags & FERRY_FLAG_LAST) == 0 ||
	    (h->flags & (FERRY_FLAG_ACK_REQ | FERRY_FLAG_RETX)) != 0)
		return FERRY_WIRE_BAD_LENGTH;
	return FERRY_WIRE_OK;
}

int ferry__wire_decode(const uint8_t *p, size_t len, ferry_wire_hdr *h)
{
	if (len < FERRY_WIRE_HDR_BYTES)
		return FERRY_WIRE_SHORT;
	int v = wire_fields(p, h);
	if (v != FERRY_WIRE_OK)
		return v;
	if (h->type == FERRY_PKT_DATA) {
		size_t payload = len - FERRY_WIRE_HDR_BYTES;
		uint32_t n = ferry__wire_nfrags(h->msg_len, h->frag_bytes);
		if (h->msg_len != 0 && h->frag_bytes == 0)
			return FERRY_WIRE_BAD_LENGTH;
		if (h->frag >= n)
			return FERRY_WIRE_BAD_LENGTH;
		uint64_t off = (uint64_t)h->frag * h->frag_bytes;
		uint64_t want = h->frag + 1 == n ? h->msg_len - off : h->frag_bytes;
		/* Bytes past the fragment are padding ("Padding" in WIRE.md). */
		if (payload < want)
			return FERRY_WIRE_BAD_LENGTH;
		if (((h->flags & FERRY_FLAG_LAST) != 0) != (h->frag + 1 == n))
			return FERRY_WIRE_BAD_LENGTH;
	}
	return FERRY_WIRE_OK;
}

void ferry__wire_encode_mismatch(uint8_t refused_version,
                                 uint8_t out[FERRY_WIRE_HDR_BYTES])
{
	ferry_wire_hdr h = {
	        .type = FERRY_PKT_VERSION_MISMATCH,
	        .flags = FERRY_FLAG_RESPONSE,
	        .channel = refused_version,
	        .aux = (uint16_t)(FERRY_WIRE_VERSION_MIN | FERRY_WIRE_VERSION_MAX << 8),
	};
	ferry__wire_encode(&h, out);
	out[2] = 1; /* frozen at version 1, whatever this library's own */
}

bool ferry__wire_is_mismatch(const uint8_t *p, size_t len, uint8_t *peer_min,
                             uint8_t *peer_max, uint8_t *refused)
{
	if (len < FERRY_WIRE_HDR_BYTES || ferry__get16(p) != FERRY_WIRE_MAGIC ||
	    p[2] != 1 || p[3] != FERRY_PKT_VERSION_MISMATCH)
		return false;
	uint16_t range = ferry__get16(p + 38);
	if (peer_min != NULL)
		*peer_min = (uint8_t)range;
	if (peer_max != NULL)
		*peer_max = (uint8_t)(range >> 8);
	if (refused != NULL)
		*refused = p[5];
	return true;
}
