/* ferryfs file IDs (docs/ferryfs/PROTOCOL.md, "File IDs").
 *
 *   GROUP/Mxx/hh/hh/NAME[.ext]
 *
 * GROUP: 1-16 of [A-Za-z0-9_-]. Mxx: the store path, two uppercase hex
 * digits. hh/hh: two levels of hashed directories (uppercase hex), taken
 * from NAME's random part, so a decoded ID can be checked against its
 * own name. NAME: 32 characters of base64url (no padding) encoding 24
 * bytes, little-endian: source server id (u32), creation time in seconds
 * (u32), size (u64; bit 63 marks an appender object), CRC32 of the
 * content at upload (u32), random (u32). ext: 1-6 of [A-Za-z0-9].
 *
 * The decoder is strict: every character is checked against its field's
 * alphabet, so no decoded ID can hold "/", "..", or anything outside the
 * store's hashed tree; the relative path a storage server opens is built
 * from the decoded fields, never from the text. */
#ifndef FERRYFS_FID_H
#define FERRYFS_FID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FS_GROUP_MAX      16
#define FS_EXT_MAX        6
#define FS_FID_NAME_CHARS 32
#define FS_FID_MAX        80 /* longest ID text, with its NUL */
#define FS_APPENDER_BIT   (1ull << 63)

typedef struct fs_fid {
	char group[FS_GROUP_MAX + 1];
	uint8_t store;      /* store path index (Mxx) */
	uint8_t dir1, dir2; /* hashed directories */
	uint32_t source;    /* storage server that created it */
	uint32_t ctime;     /* creation, seconds since the epoch */
	uint64_t size;      /* size at upload (without FS_APPENDER_BIT) */
	bool appender;      /* appender object: append, write, truncate allowed */
	uint32_t crc32;     /* of the content at upload */
	uint32_t rnd;
	char ext[FS_EXT_MAX + 1];
} fs_fid;

/* Why an ID was refused (fs_fid_decode's negative returns). */
enum {
	FS_FID_EMPTY = -1,
	FS_FID_TOO_LONG = -2,
	FS_FID_BAD_GROUP = -3,
	FS_FID_BAD_STORE = -4,
	FS_FID_BAD_DIR = -5,
	FS_FID_BAD_NAME = -6,
	FS_FID_BAD_EXT = -7,
	FS_FID_DIR_MISMATCH = -8, /* hashed directories disagree with the name */
};

/* Parse len bytes of text (not NUL-terminated necessarily). 0 or one of
 * the FS_FID_* codes above. */
int fs_fid_decode(const char *text, size_t len, fs_fid *out);
/* A short reason for a FS_FID_* code. */
const char *fs_fid_strerror(int code);
/* Write the ID's text (NUL-terminated). Bytes written without the NUL, or
 * -1 if cap is too small. The directories are set from rnd. */
int fs_fid_encode(fs_fid *f, char *out, size_t cap);
/* The object's path below its store path: "data/hh/hh/NAME[.ext]" (and
 * the directory part alone with dir_only). Bytes written or -1. */
int fs_fid_path(const fs_fid *f, bool dir_only, char *out, size_t cap);
/* A valid group name? */
bool fs_group_valid(const char *g, size_t len);
/* A valid extension (may be empty)? */
bool fs_ext_valid(const char *e, size_t len);

/* CRC-32 (IEEE 802.3, as zlib's crc32): crc = fs_crc32(crc, p, n), from 0. */
uint32_t fs_crc32(uint32_t crc, const void *p, size_t n);

#endif
