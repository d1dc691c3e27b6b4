/* ferryfs messages: opcodes, layouts and one decoder per message
 * (docs/ferryfs/PROTOCOL.md). Every request starts with a version byte;
 * integers are little-endian; errors travel as the ferry call's status
 * (a negative errno, listed in PROTOCOL.md), never in a body. */
#ifndef FERRYFS_WIRE_H
#define FERRYFS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fid.h"

#define FS_PROTO_VERSION 1

/* Opcodes (ferry opcodes, above FERRY_OPCODE_USER_MIN). */
enum fs_op {
	FS_OP_UPLOAD = 0x4601,
	FS_OP_DOWNLOAD = 0x4602,
	FS_OP_DELETE = 0x4603,
	FS_OP_INFO = 0x4604,
};

/* Request flags (byte 1). */
#define FS_UPLOAD_APPENDER 0x01u

#define FS_REQ_HDR_BYTES      4  /* version, flags, reserved u16 */
#define FS_UPLOAD_FIXED_BYTES 16 /* + ext, then the body */
#define FS_ID_REQ_FIXED_BYTES 8  /* delete, info: + id */
#define FS_DL_FIXED_BYTES     24 /* download: + id */
#define FS_UPLOAD_RESP_FIXED  4  /* + id */
#define FS_INFO_RESP_BYTES    36
#define FS_STORE_ANY          0xffu
/* The most a decoder ever needs contiguous: the largest fixed part plus
 * an ID or an extension. */
#define FS_DECODE_MAX (FS_DL_FIXED_BYTES + FS_FID_MAX)

typedef struct fs_upload_req {
	uint8_t flags;
	uint8_t store; /* FS_STORE_ANY: the server picks */
	uint64_t size; /* body bytes, after the fixed part and ext */
	char ext[FS_EXT_MAX + 1];
	uint32_t body_off; /* where the body starts in the message */
} fs_upload_req;

typedef struct fs_id_req {
	fs_fid fid;
	char id[FS_FID_MAX];     /* the text, NUL-terminated */
	uint64_t offset, length; /* download only; length 0 = to the end */
} fs_id_req;

typedef struct fs_info {
	uint64_t size;     /* now (appender objects change) */
	uint64_t mtime_s;  /* last change */
	uint32_t crc32;    /* at upload (from the ID) */
	uint32_t source;   /* creating server */
	uint32_t ctime;    /* creation */
	uint32_t appender; /* 1 for an appender object */
} fs_info;

static inline void fs_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void fs_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void fs_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t fs_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t fs_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static inline uint64_t fs_get64(const uint8_t *p)
{
	return (uint64_t)fs_get32(p) | (uint64_t)fs_get32(p + 4) << 32;
}

/* Encoders: bytes written to out (cap bytes), or -1 if it does not fit.
 * The upload's body follows what fs_enc_upload wrote. */
int fs_enc_upload(uint8_t *out, size_t cap, uint8_t flags, uint8_t store, uint64_t size,
                  const char *ext);
int fs_enc_id_req(uint8_t *out, size_t cap, const char *id);
int fs_enc_download(uint8_t *out, size_t cap, const char *id, uint64_t offset,
                    uint64_t length);
int fs_enc_upload_resp(uint8_t *out, size_t cap, const char *id);
int fs_enc_info(uint8_t *out, size_t cap, const fs_info *in);

/* Decoders. p holds the message's first have bytes (at least
 * min(msg_len, FS_DECODE_MAX)), msg_len is the whole message's length.
 * 0, -EPROTONOSUPPORT (another version), -EBADMSG (malformed: lengths,
 * reserved bits, characters), or -EINVAL (a well-formed message naming a
 * malformed file ID; *fid_err then says which part). */
int fs_dec_upload(const uint8_t *p, size_t have, uint64_t msg_len, fs_upload_req *out);
int fs_dec_id_req(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *out,
                  int *fid_err);
int fs_dec_download(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *out,
                    int *fid_err);
int fs_dec_upload_resp(const uint8_t *p, size_t have, uint64_t msg_len, char *id,
                       size_t id_cap);
int fs_dec_info(const uint8_t *p, size_t have, uint64_t msg_len, fs_info *out);

/* The opcode's name ("upload"), or NULL. */
const char *fs_op_name(uint16_t op);

#endif
