/* The ferry packet header (docs/WIRE.md is authoritative). Encoding is
 * explicit little-endian byte packing, so the layout never depends on the
 * compiler's struct padding or the host's byte order. */
#ifndef FERRY_WIRE_H
#define FERRY_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/le.h"
#include "ferry/err.h"

#define FERRY_WIRE_MAGIC     0xFE77u /* bytes 0x77 0xFE on the wire */
#define FERRY_WIRE_VERSION   1u
#define FERRY_WIRE_HDR_BYTES 40u

enum ferry_wire_type {
	FERRY_PKT_DATA = 0,
	FERRY_PKT_ACK = 1,
	FERRY_PKT_SESSION_OPEN = 2,
	FERRY_PKT_SESSION_OPEN_REPLY = 3,
	FERRY_PKT_BAD_SESSION = 4,
	FERRY_PKT_CANCEL = 5,           /* client gave up on a call (fast, stream) */
	FERRY_PKT_KEEPALIVE = 6,        /* fast: idle-session probe; RESPONSE = answer */
	FERRY_PKT_SESSION_COOKIE = 7,   /* fast: prove your address (stateless open) */
	FERRY_PKT_VERSION_MISMATCH = 8, /* frozen: a peer refused our wire version */
	FERRY_PKT_TYPE_COUNT = 9,
};

/* Version negotiation (docs/WIRE.md, "Versions"). Bytes 0-2 (magic and
 * version) mean the same in every version, and the VERSION_MISMATCH packet
 * is frozen in the version-1 layout: every implementation, of any version,
 * must recognise it and must never answer it. */
#define FERRY_WIRE_VERSION_MIN 1u /* oldest version this library speaks */
#define FERRY_WIRE_VERSION_MAX 1u /* newest */

enum ferry_wire_flag {
	FERRY_FLAG_RESPONSE = 0x01, /* server to client */
	FERRY_FLAG_ACK_REQ = 0x02,  /* receiver must reply with an ACK */
	FERRY_FLAG_RETX = 0x04,     /* this packet is a retransmission */
	FERRY_FLAG_LAST = 0x08,     /* last fragment of the message */
};
#define FERRY_FLAG_KNOWN 0x0fu

typedef struct ferry_wire_hdr {
	uint8_t version; /* decode: the packet's version byte (also set on
	                  * BAD_VERSION); encode always writes ours */
	uint8_t type;    /* enum ferry_wire_type */
	uint8_t flags;   /* enum ferry_wire_flag */
	uint8_t channel;
	uint16_t opcode;
	uint64_t token;       /* session token; 0 in unreliable */
	uint32_t client_hint; /* client's session slot, echoed by the server */
	uint32_t server_hint; /* server's session slot; 0 in unreliable */
	uint32_t rpc_id;      /* per-channel call sequence number */
	uint32_t frag;        /* fragment index */
	uint32_t msg_len;     /* message payload bytes (all fragments) */
	uint16_t frag_bytes;  /* sender's payload bytes per full fragment */
	uint16_t aux;         /* DATA request: sender's fragment cap; DATA
	                       * response: status; ACK: bitmap words */
} ferry_wire_hdr;

void ferry__wire_encode(const ferry_wire_hdr *h, uint8_t out[FERRY_WIRE_HDR_BYTES]);
/* Rewrite the flags and frag fields of an encoded header: consecutive
 * fragments of one message differ only there. */
static inline void ferry__wire_patch_frag(uint8_t out[FERRY_WIRE_HDR_BYTES],
                                          uint8_t flags, uint32_t frag)
{
	out[4] = flags;
	ferry__put32(out + 28, frag);
}

/* Why a packet was refused (each counted separately). */
enum ferry_wire_verdict {
	FERRY_WIRE_OK = 0,
	FERRY_WIRE_SHORT, /* shorter than the header */
	FERRY_WIRE_BAD_MAGIC,
	FERRY_WIRE_BAD_VERSION,
	FERRY_WIRE_BAD_TYPE,
	FERRY_WIRE_BAD_LENGTH, /* payload length inconsistent with fields */
};

/* Decode and check the header of a len-byte packet, including that a DATA
 * packet's payload length matches its fragment's place in the message.
 * Returns a verdict. */
int ferry__wire_decode(const uint8_t *pkt, size_t len, ferry_wire_hdr *h);

/* Decode a stream message header (FERRY_WIRE_HDR_BYTES at p): DATA, one
 * whole message (frag 0, LAST set, frag_bytes 0, no ACK_REQ/RETX), or a
 * CANCEL (the same, request direction, msg_len 0). */
int ferry__wire_decode_stream(const uint8_t *p, ferry_wire_hdr *h);

/* The 40-byte VERSION_MISMATCH packet a server sends to the source of a
 * packet refused with BAD_VERSION: version 1, flags RESPONSE, channel = the
 * refused packet's version, aux = the range this library speaks (low byte
 * oldest, high byte newest), every other field zero, no payload. */
void ferry__wire_encode_mismatch(uint8_t refused_version,
                                 uint8_t out[FERRY_WIRE_HDR_BYTES]);

/* Is this len-byte packet a VERSION_MISMATCH? If so, the peer's range and
 * the version it refused are stored (any pointer may be NULL). */
bool ferry__wire_is_mismatch(const uint8_t *pkt, size_t len, uint8_t *peer_min,
                             uint8_t *peer_max, uint8_t *refused);

/* Fragments of a message: at least one, even for an empty message. */
static inline uint32_t ferry__wire_nfrags(uint32_t msg_len, uint32_t frag_bytes)
{
	if (msg_len == 0 || frag_bytes == 0)
		return 1;
	return (uint32_t)(((uint64_t)msg_len + frag_bytes - 1) / frag_bytes);
}

/* Status <-> wire: 0 ok; errno values and library codes travel as their
 * absolute value (library codes stay below 65536). */
static inline uint16_t ferry__wire_status(int status)
{
	if (status >= 0)
		return 0;
	/* A code that does not fit must not travel as success. */
	return status < -65535 ? (uint16_t)-FERRY_EPROTO : (uint16_t)-status;
}
static inline int ferry__wire_unstatus(uint16_t aux)
{
	return -(int)aux;
}

#endif
