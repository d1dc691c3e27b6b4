/* Fuzz harness: the ferryfs codec (apps/ferryfs/proto). The first byte
 * picks the decoder (upload, id request, download, upload response, info,
 * file ID); the rest is the message. A message that decodes must
 * re-encode to the same bytes (the decoders accept exactly one spelling),
 * and a decoded file ID must re-encode to its text and give a path inside
 * the hashed tree. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/fid.h"
#include "proto/wire.h"

static void fz_fid(const fs_fid *f, const char *text, size_t len)
{
	fs_fid copy = *f;
	char again[FS_FID_MAX], path[128];
	if (fs_fid_encode(&copy, again, sizeof(again)) != (int)len ||
	    memcmp(again, text, len) != 0)
		abort(); /* one spelling per ID */
	if (fs_fid_path(f, false, path, sizeof(path)) < 0 ||
	    strncmp(path, "data/", 5) != 0 || strstr(path, "..") != NULL ||
	    strchr(path + 5, '/') != path + 7)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t kind = data[0] % 13;
	static fs_meta_pair pairs[FS_META_PAIRS_MAX];
	uint32_t off = 0;
	bool merge = false;
	int k;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	static uint8_t out[1 << 19];
	static fs_server sv;
	char group[FS_GROUP_MAX + 1];
	fs_upload_req u;
	fs_id_req r;
	fs_info in;
	fs_fid f;
	char id[FS_FID_MAX];
	int fe = 0;
	switch (kind) {
	case 0:
		if (fs_dec_upload(p, n, n, &u) == 0) {
			int k = fs_enc_upload(out, sizeof(out), u.flags, u.store, u.size,
			                      u.ext);
			if (k < 0 || (size_t)k != u.body_off ||
			    memcmp(out, p, (size_t)k) != 0)
				abort();
		}
		break;
	case 1:
		if (fs_dec_id_req(p, n, n, &r, &fe) == 0) {
			fz_fid(&r.fid, r.id, strlen(r.id));
			if (fs_enc_id_req(out, sizeof(out), r.id) != (int)n ||
			    memcmp(out, p, n) != 0)
				abort();
		}
		break;
	case 2:
		if (fs_dec_download(p, n, n, &r, &fe) == 0) {
			fz_fid(&r.fid, r.id, strlen(r.id));
			if (fs_enc_download(out, sizeof(out), r.id, r.offset, r.length) !=
			            (int)n ||
			    memcmp(out, p, n) != 0)
				abort();
		}
		break;
	case 3:
		if (fs_dec_upload_resp(p, n, n, id, sizeof(id)) == 0 &&
		    (fs_enc_upload_resp(out, sizeof(out), id) != (int)n ||
		     memcmp(out, p, n) != 0))
			abort();
		break;
	case 4:
		if (fs_dec_info(p, n, n, &in) == 0 &&
		    (fs_enc_info(out, sizeof(out), &in) != (int)n ||
		     memcmp(out, p, n) != 0))
			abort();
		break;
	case 5:
		if (fs_fid_decode((const char *)p, n, &f) == 0)
			fz_fid(&f, (const char *)p, n);
		break;
	case 6:
		if (fs_dec_beat(p, n, n, &sv) == 0 &&
		    (fs_enc_beat(out, sizeof(out), &sv) != (int)n ||
		     memcmp(out, p, n) != 0))
			abort();
		break;
	case 8:
		if (fs_dec_append(p, n, n, &r, &off, &fe) == 0) {
			fz_fid(&r.fid, r.id, strlen(r.id));
			if (off >= n ||
			    fs_enc_append(out, sizeof(out), r.id) != (int)off ||
			    memcmp(out, p, off) != 0)
				abort();
		}
		break;
	case 9:
	case 10:
		if (fs_dec_mod(p, n, n, kind == 9, &r, &off, &fe) == 0) {
			fz_fid(&r.fid, r.id, strlen(r.id));
			if ((kind == 9 ? off >= n : off != n) ||
			    fs_enc_mod(out, sizeof(out), r.id, r.offset) != (int)off ||
			    memcmp(out, p, off) != 0)
				abort();
		}
		break;
	case 11:
		k = fs_dec_meta(p, n, pairs, FS_META_PAIRS_MAX);
		if (k >= 0 &&
		    (fs_enc_meta(out, sizeof(out), pairs, (unsigned)k) != (int)n ||
		     memcmp(out, p, n) != 0))
			abort();
		break;
	case 12:
		if (fs_dec_meta_set(p, n, n, &r, &merge, &off, &fe) == 0) {
			fz_fid(&r.fid, r.id, strlen(r.id));
			if (fs_enc_meta_set_hdr(out, sizeof(out), r.id, merge) !=
			            (int)off ||
			    memcmp(out, p, off) != 0)
				abort();
		}
		break;
	default:
		if (fs_dec_query_store(p, n, n, group) == 0 &&
		    (fs_enc_query_store(out, sizeof(out), group) != (int)n ||
		     memcmp(out, p, n) != 0))
			abort();
		break;
	}
	return 0;
}
