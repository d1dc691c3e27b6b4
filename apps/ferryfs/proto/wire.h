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
	/* uploads over one message: a session, pieces in order, commit */
	FS_OP_UPLOAD_BEGIN = 0x4605,
	FS_OP_UPLOAD_PIECE = 0x4606,
	FS_OP_UPLOAD_COMMIT = 0x4607,
	FS_OP_UPLOAD_ABORT = 0x4608,
	/* appender objects */
	FS_OP_APPEND = 0x4609,
	FS_OP_WRITE = 0x460A,
	FS_OP_TRUNCATE = 0x460B,
	/* per-object metadata */
	FS_OP_META_SET = 0x460C,
	FS_OP_META_GET = 0x460D,
	/* tracker */
	FS_OP_BEAT = 0x4621,        /* storage -> tracker: who, where, how full */
	FS_OP_QUERY_STORE = 0x4622, /* client: a server to upload to */
	FS_OP_QUERY_FETCH = 0x4623, /* client: a server that holds an ID */
	FS_OP_LIST = 0x4624,        /* monitor: every server the tracker knows */
};

#define FS_LOCS_MAX     8
#define FS_LOC_MAX      200 /* bytes of one locator */
#define FS_BEAT_STORES  16
#define FS_LIST_SERVERS 256

/* A storage server as the tracker sees it: the heartbeat's content, and
 * what QUERY_* answer and LIST reports. */
typedef struct fs_server {
	char group[FS_GROUP_MAX + 1];
	uint32_t id;
	uint32_t load; /* calls in flight at the beat */
	uint64_t ops;  /* calls served since start */
	uint8_t nlocs, nstores;
	uint8_t store;   /* QUERY_STORE: the store path to use (FS_STORE_ANY) */
	uint8_t state;   /* LIST: FS_SERVER_* */
	uint32_t age_ms; /* LIST: since the last beat */
	char locs[FS_LOCS_MAX][FS_LOC_MAX + 1];
	uint64_t free_bytes[FS_BEAT_STORES], total_bytes[FS_BEAT_STORES];
} fs_server;

enum { FS_SERVER_OFFLINE = 0, FS_SERVER_ACTIVE = 1, FS_SERVER_READONLY = 2 };

/* Request flags (byte 1). */
#define FS_UPLOAD_APPENDER 0x01u

#define FS_REQ_HDR_BYTES      4  /* version, flags, reserved u16 */
#define FS_UPLOAD_FIXED_BYTES 16 /* + ext, then the body */
#define FS_ID_REQ_FIXED_BYTES 8  /* delete, info: + id */
#define FS_DL_FIXED_BYTES     24 /* download: + id */
#define FS_UPLOAD_RESP_FIXED  4  /* + id */
#define FS_INFO_RESP_BYTES    36
#define FS_HANDLE_REQ_BYTES   12 /* commit, abort: header + handle */
#define FS_PIECE_FIXED_BYTES  20 /* header, handle, offset; then the bytes */
#define FS_BEGIN_RESP_BYTES   16 /* version, 7 reserved, handle u64 */
/* What a client sends per piece, and asks per ranged download: well under
 * ferry's default message cap (64 MiB). */
#define FS_PIECE_BYTES (16u << 20)
#define FS_STORE_ANY   0xffu
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

/* Upload sessions. BEGIN is an upload request with no body (size = the
 * object's total); its answer is {version u8, 3 reserved, reserved u32}
 * then handle u64 (FS_BEGIN_RESP_BYTES).
 * PIECE: header, handle u64, offset u64, then the bytes (offset = what the
 * server has so far: pieces come in order). COMMIT, ABORT: header, handle;
 * COMMIT answers as an upload does. */
int fs_dec_upload_begin(const uint8_t *p, size_t have, uint64_t msg_len,
                        fs_upload_req *out);
int fs_enc_handle_req(uint8_t *out, size_t cap, uint64_t handle);
int fs_dec_handle_req(const uint8_t *p, size_t have, uint64_t msg_len, uint64_t *handle);
int fs_enc_piece(uint8_t *out, size_t cap, uint64_t handle, uint64_t offset);
int fs_dec_piece(const uint8_t *p, size_t have, uint64_t msg_len, uint64_t *handle,
                 uint64_t *offset, uint64_t *bytes);
int fs_enc_begin_resp(uint8_t *out, size_t cap, uint64_t handle);
int fs_dec_begin_resp(const uint8_t *p, size_t have, uint64_t msg_len, uint64_t *handle);

/* A server record (BEAT's body, QUERY_*'s answer, LIST's entries):
 * group_len u8, nlocs u8, nstores u8, store u8, id u32, load u32, state
 * u8, 3 reserved, age_ms u32, ops u64, group, nlocs x (u16 len, text),
 * nstores x (free u64, total u64). fs_enc_server: bytes or -1;
 * fs_dec_server: bytes consumed or -EBADMSG. */
int fs_enc_server(uint8_t *out, size_t cap, const fs_server *sv);
int fs_dec_server(const uint8_t *p, size_t have, fs_server *sv);
/* BEAT, QUERY_STORE (group may be ""), QUERY_FETCH requests; the answer
 * of the queries is one server record, LIST's a u16 count and records. */
int fs_enc_beat(uint8_t *out, size_t cap, const fs_server *sv);
int fs_dec_beat(const uint8_t *p, size_t have, uint64_t msg_len, fs_server *sv);
int fs_enc_query_store(uint8_t *out, size_t cap, const char *group);
int fs_dec_query_store(const uint8_t *p, size_t have, uint64_t msg_len, char *group);

/* Appender operations. APPEND: an ID request, then the bytes. WRITE: id_len
 * u16, reserved u16, offset u64, id, then the bytes. TRUNCATE: id_len u16,
 * reserved u16, size u64, id. (The ID is r->id/r->fid; r->offset is the
 * offset or size; *body_off where the bytes start.) */
#define FS_MOD_FIXED_BYTES 16 /* write, truncate: + id */
int fs_enc_append(uint8_t *out, size_t cap, const char *id);
int fs_dec_append(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *r,
                  uint32_t *body_off, int *fid_err);
int fs_enc_mod(uint8_t *out, size_t cap, const char *id, uint64_t value);
/* WRITE (with_body) or TRUNCATE */
int fs_dec_mod(const uint8_t *p, size_t have, uint64_t msg_len, bool with_body,
               fs_id_req *r, uint32_t *body_off, int *fid_err);

/* Metadata: pairs of key (1-64 of A-Z a-z 0-9 _ . -) and value (0-1024
 * bytes, any), encoded as count u16 then count x (klen u8, vlen u16, key,
 * value). META_SET: header (flag 0x01: merge, else overwrite), id_len u16,
 * reserved u16, id, pairs. META_GET: an ID request; its answer: pairs. */
#define FS_META_MERGE     0x01u
#define FS_META_KEY_MAX   64
#define FS_META_VALUE_MAX 1024
#define FS_META_PAIRS_MAX 256
typedef struct fs_meta_pair {
	char key[FS_META_KEY_MAX + 1];
	uint16_t vlen;
	uint8_t value[FS_META_VALUE_MAX];
} fs_meta_pair;
bool fs_meta_key_valid(const char *k, size_t len);
/* Bytes written, or -1. */
int fs_enc_meta(uint8_t *out, size_t cap, const fs_meta_pair *pairs, unsigned n);
/* Pairs decoded from p[0..len) (exactly): count, or -EBADMSG (also for a
 * key twice). */
int fs_dec_meta(const uint8_t *p, size_t len, fs_meta_pair *pairs, unsigned max);
int fs_enc_meta_set_hdr(uint8_t *out, size_t cap, const char *id, bool merge);
/* The pairs start at *pairs_off. */
int fs_dec_meta_set(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *r,
                    bool *merge, uint32_t *pairs_off, int *fid_err);

/* The opcode's name ("upload"), or NULL. */
const char *fs_op_name(uint16_t op);

#endif
