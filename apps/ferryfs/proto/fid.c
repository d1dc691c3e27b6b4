/* ferryfs file IDs: encode, strict decode, paths, CRC-32 (fid.h). */
#include "fid.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "wire.h"

static const char b64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* lowercase is refused: one spelling per ID */
}

static bool alnum(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool fs_group_valid(const char *g, size_t len)
{
	if (len == 0 || len > FS_GROUP_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!alnum(g[i]) && g[i] != '_' && g[i] != '-')
			return false;
	return true;
}

bool fs_ext_valid(const char *e, size_t len)
{
	if (len > FS_EXT_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!alnum(e[i]))
			return false;
	return true;
}

/* Two uppercase hex digits at p. */
static int hex2(const char *p)
{
	int a = hexval(p[0]), b = hexval(p[1]);
	return a < 0 || b < 0 ? -1 : a << 4 | b;
}

int fs_fid_decode(const char *t, size_t len, fs_fid *f)
{
	memset(f, 0, sizeof(*f));
	if (len == 0)
		return FS_FID_EMPTY;
	if (len >= FS_FID_MAX)
		return FS_FID_TOO_LONG;
	const char *slash = memchr(t, '/', len);
	if (slash == NULL || !fs_group_valid(t, (size_t)(slash - t)))
		return FS_FID_BAD_GROUP;
	memcpy(f->group, t, (size_t)(slash - t));
	const char *p = slash + 1, *end = t + len;
	/* "Mxx/" */
	if (end - p < 4 || p[0] != 'M' || p[3] != '/')
		return FS_FID_BAD_STORE;
	int v = hex2(p + 1);
	if (v < 0)
		return FS_FID_BAD_STORE;
	f->store = (uint8_t)v;
	p += 4;
	/* "hh/hh/" */
	if (end - p < 6 || p[2] != '/' || p[5] != '/')
		return FS_FID_BAD_DIR;
	int d1 = hex2(p), d2 = hex2(p + 3);
	if (d1 < 0 || d2 < 0)
		return FS_FID_BAD_DIR;
	p += 6;
	/* NAME */
	if (end - p < FS_FID_NAME_CHARS)
		return FS_FID_BAD_NAME;
	uint8_t raw[24];
	for (int i = 0; i < FS_FID_NAME_CHARS; i += 4) {
		int a = b64url_val(p[i]), b = b64url_val(p[i + 1]),
		    c = b64url_val(p[i + 2]), d = b64url_val(p[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return FS_FID_BAD_NAME;
		uint32_t w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 |
		             (uint32_t)d;
		raw[i / 4 * 3] = (uint8_t)(w >> 16);
		raw[i / 4 * 3 + 1] = (uint8_t)(w >> 8);
		raw[i / 4 * 3 + 2] = (uint8_t)w;
	}
	p += FS_FID_NAME_CHARS;
	/* ".ext" or nothing */
	if (p < end) {
		if (*p != '.' || end - p < 2 ||
		    !fs_ext_valid(p + 1, (size_t)(end - p - 1)))
			return FS_FID_BAD_EXT;
		memcpy(f->ext, p + 1, (size_t)(end - p - 1));
	}
	f->source = fs_get32(raw);
	f->ctime = fs_get32(raw + 4);
	uint64_t size = fs_get64(raw + 8);
	f->appender = (size & FS_APPENDER_BIT) != 0;
	f->size = size & ~FS_APPENDER_BIT;
	f->crc32 = fs_get32(raw + 16);
	f->rnd = fs_get32(raw + 20);
	f->dir1 = (uint8_t)d1;
	f->dir2 = (uint8_t)d2;
	if (f->dir1 != (uint8_t)f->rnd || f->dir2 != (uint8_t)(f->rnd >> 8))
		return FS_FID_DIR_MISMATCH;
	return 0;
}

const char *fs_fid_strerror(int code)
{
	switch (code) {
	case 0:
		return "ok";
	case FS_FID_EMPTY:
		return "empty file ID";
	case FS_FID_TOO_LONG:
		return "file ID too long";
	case FS_FID_BAD_GROUP:
		return "bad group (1-16 of A-Z a-z 0-9 _ -, then '/')";
	case FS_FID_BAD_STORE:
		return "bad store path part (Mxx/, two uppercase hex digits)";
	case FS_FID_BAD_DIR:
		return "bad directory part (hh/hh/, uppercase hex)";
	case FS_FID_BAD_NAME:
		return "bad name (32 base64url characters)";
	case FS_FID_BAD_EXT:
		return "bad extension (.ext, 1-6 of A-Z a-z 0-9)";
	case FS_FID_DIR_MISMATCH:
		return "directories do not match the name";
	default:
		return "bad file ID";
	}
}

int fs_fid_encode(fs_fid *f, char *out, size_t cap)
{
	uint8_t raw[24];
	f->dir1 = (uint8_t)f->rnd;
	f->dir2 = (uint8_t)(f->rnd >> 8);
	fs_put32(raw, f->source);
	fs_put32(raw + 4, f->ctime);
	fs_put64(raw + 8,
	         (f->size & ~FS_APPENDER_BIT) | (f->appender ? FS_APPENDER_BIT : 0));
	fs_put32(raw + 16, f->crc32);
	fs_put32(raw + 20, f->rnd);
	char name[FS_FID_NAME_CHARS + 1];
	for (int i = 0; i < 8; i++) {
		uint32_t w = (uint32_t)raw[3 * i] << 16 | (uint32_t)raw[3 * i + 1] << 8 |
		             raw[3 * i + 2];
		name[4 * i] = b64url[w >> 18 & 63];
		name[4 * i + 1] = b64url[w >> 12 & 63];
		name[4 * i + 2] = b64url[w >> 6 & 63];
		name[4 * i + 3] = b64url[w & 63];
	}
	name[FS_FID_NAME_CHARS] = '\0';
	int n = snprintf(out, cap, "%s/M%02X/%02X/%02X/%s%s%s", f->group, f->store,
	                 f->dir1, f->dir2, name, f->ext[0] ? "." : "", f->ext);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

int fs_fid_path(const fs_fid *f, bool dir_only, char *out, size_t cap)
{
	char id[FS_FID_MAX];
	fs_fid copy = *f;
	if (fs_fid_encode(&copy, id, sizeof(id)) < 0)
		return -1;
	/* data/hh/hh[/NAME.ext]: the ID's text after "GROUP/Mxx/" */
	const char *rel = strchr(id, '/') + 5;
	int n = dir_only ? snprintf(out, cap, "data/%.5s", rel)
	                 : snprintf(out, cap, "data/%s", rel);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t fs_crc32(uint32_t crc, const void *p, size_t n)
{
	pthread_once(&crc_once, crc_init);
	const uint8_t *b = p;
	crc = ~crc;
	while (n-- > 0)
		crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}
