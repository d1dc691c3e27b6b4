/* ferryfs message codec (wire.h, docs/ferryfs/PROTOCOL.md). */
#include "wire.h"

#include <errno.h>
#include <string.h>

static void req_hdr(uint8_t *out, uint8_t flags)
{
	out[0] = FS_PROTO_VERSION;
	out[1] = flags;
	fs_put16(out + 2, 0);
}

/* The common request header: version, flags within allowed, reserved 0. */
static int req_check(const uint8_t *p, size_t have, uint8_t allowed_flags)
{
	if (have < FS_REQ_HDR_BYTES)
		return -EBADMSG;
	if (p[0] != FS_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if ((p[1] & ~allowed_flags) != 0 || fs_get16(p + 2) != 0)
		return -EBADMSG;
	return 0;
}

int fs_enc_upload(uint8_t *out, size_t cap, uint8_t flags, uint8_t store, uint64_t size,
                  const char *ext)
{
	size_t el = ext != NULL ? strlen(ext) : 0;
	if (el > FS_EXT_MAX || cap < FS_UPLOAD_FIXED_BYTES + el)
		return -1;
	req_hdr(out, flags);
	out[4] = store;
	out[5] = (uint8_t)el;
	fs_put16(out + 6, 0);
	fs_put64(out + 8, size);
	memcpy(out + FS_UPLOAD_FIXED_BYTES, ext, el);
	return (int)(FS_UPLOAD_FIXED_BYTES + el);
}

int fs_dec_upload(const uint8_t *p, size_t have, uint64_t msg_len, fs_upload_req *out)
{
	memset(out, 0, sizeof(*out));
	int rc = req_check(p, have, FS_UPLOAD_APPENDER);
	if (rc != 0)
		return rc;
	if (have < FS_UPLOAD_FIXED_BYTES || msg_len < FS_UPLOAD_FIXED_BYTES)
		return -EBADMSG;
	uint8_t el = p[5];
	if (fs_get16(p + 6) != 0 || el > FS_EXT_MAX ||
	    have < FS_UPLOAD_FIXED_BYTES + (size_t)el ||
	    !fs_ext_valid((const char *)p + FS_UPLOAD_FIXED_BYTES, el))
		return -EBADMSG;
	out->flags = p[1];
	out->store = p[4];
	out->size = fs_get64(p + 8);
	out->body_off = FS_UPLOAD_FIXED_BYTES + el;
	/* the body is exactly the rest of the message */
	if (msg_len < out->body_off || out->size != msg_len - out->body_off)
		return -EBADMSG;
	memcpy(out->ext, p + FS_UPLOAD_FIXED_BYTES, el);
	return 0;
}

int fs_enc_id_req(uint8_t *out, size_t cap, const char *id)
{
	size_t il = strlen(id);
	if (il >= FS_FID_MAX || cap < FS_ID_REQ_FIXED_BYTES + il)
		return -1;
	req_hdr(out, 0);
	fs_put16(out + 4, (uint16_t)il);
	fs_put16(out + 6, 0);
	memcpy(out + FS_ID_REQ_FIXED_BYTES, id, il);
	return (int)(FS_ID_REQ_FIXED_BYTES + il);
}

/* The ID at p + off (il bytes): text copied out, then decoded. */
static int take_id(const uint8_t *p, size_t off, size_t il, fs_id_req *out, int *fid_err)
{
	if (il == 0 || il >= FS_FID_MAX)
		return -EBADMSG;
	memcpy(out->id, p + off, il);
	out->id[il] = '\0';
	if (memchr(out->id, '\0', il) != NULL)
		return -EBADMSG;
	int e = fs_fid_decode(out->id, il, &out->fid);
	if (fid_err != NULL)
		*fid_err = e;
	return e == 0 ? 0 : -EINVAL;
}

int fs_dec_id_req(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *out,
                  int *fid_err)
{
	memset(out, 0, sizeof(*out));
	int rc = req_check(p, have, 0);
	if (rc != 0)
		return rc;
	if (have < FS_ID_REQ_FIXED_BYTES || fs_get16(p + 6) != 0)
		return -EBADMSG;
	size_t il = fs_get16(p + 4);
	if (msg_len != FS_ID_REQ_FIXED_BYTES + il || have < msg_len)
		return -EBADMSG;
	return take_id(p, FS_ID_REQ_FIXED_BYTES, il, out, fid_err);
}

int fs_enc_download(uint8_t *out, size_t cap, const char *id, uint64_t offset,
                    uint64_t length)
{
	size_t il = strlen(id);
	if (il >= FS_FID_MAX || cap < FS_DL_FIXED_BYTES + il)
		return -1;
	req_hdr(out, 0);
	fs_put16(out + 4, (uint16_t)il);
	fs_put16(out + 6, 0);
	fs_put64(out + 8, offset);
	fs_put64(out + 16, length);
	memcpy(out + FS_DL_FIXED_BYTES, id, il);
	return (int)(FS_DL_FIXED_BYTES + il);
}

int fs_dec_download(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *out,
                    int *fid_err)
{
	memset(out, 0, sizeof(*out));
	int rc = req_check(p, have, 0);
	if (rc != 0)
		return rc;
	if (have < FS_DL_FIXED_BYTES || fs_get16(p + 6) != 0)
		return -EBADMSG;
	size_t il = fs_get16(p + 4);
	if (msg_len != FS_DL_FIXED_BYTES + il || have < msg_len)
		return -EBADMSG;
	out->offset = fs_get64(p + 8);
	out->length = fs_get64(p + 16);
	return take_id(p, FS_DL_FIXED_BYTES, il, out, fid_err);
}

int fs_enc_upload_resp(uint8_t *out, size_t cap, const char *id)
{
	size_t il = strlen(id);
	if (il >= FS_FID_MAX || cap < FS_UPLOAD_RESP_FIXED + il)
		return -1;
	out[0] = FS_PROTO_VERSION;
	out[1] = 0;
	fs_put16(out + 2, (uint16_t)il);
	memcpy(out + FS_UPLOAD_RESP_FIXED, id, il);
	return (int)(FS_UPLOAD_RESP_FIXED + il);
}

int fs_dec_upload_resp(const uint8_t *p, size_t have, uint64_t msg_len, char *id,
                       size_t id_cap)
{
	if (have < FS_UPLOAD_RESP_FIXED || msg_len < FS_UPLOAD_RESP_FIXED)
		return -EBADMSG;
	if (p[0] != FS_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	size_t il = fs_get16(p + 2);
	if (p[1] != 0 || il == 0 || msg_len != FS_UPLOAD_RESP_FIXED + il ||
	    have < msg_len || il >= id_cap)
		return -EBADMSG;
	memcpy(id, p + FS_UPLOAD_RESP_FIXED, il);
	id[il] = '\0';
	fs_fid f;
	return fs_fid_decode(id, il, &f) == 0 ? 0 : -EBADMSG;
}

int fs_enc_info(uint8_t *out, size_t cap, const fs_info *in)
{
	if (cap < FS_INFO_RESP_BYTES)
		return -1;
	memset(out, 0, 4);
	out[0] = FS_PROTO_VERSION;
	fs_put64(out + 4, in->size);
	fs_put64(out + 12, in->mtime_s);
	fs_put32(out + 20, in->crc32);
	fs_put32(out + 24, in->source);
	fs_put32(out + 28, in->ctime);
	fs_put32(out + 32, in->appender);
	return FS_INFO_RESP_BYTES;
}

int fs_dec_info(const uint8_t *p, size_t have, uint64_t msg_len, fs_info *out)
{
	memset(out, 0, sizeof(*out));
	if (msg_len != FS_INFO_RESP_BYTES || have < FS_INFO_RESP_BYTES)
		return -EBADMSG;
	if (p[0] != FS_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (p[1] != 0 || fs_get16(p + 2) != 0 || fs_get32(p + 32) > 1)
		return -EBADMSG;
	out->size = fs_get64(p + 4);
	out->mtime_s = fs_get64(p + 12);
	out->crc32 = fs_get32(p + 20);
	out->source = fs_get32(p + 24);
	out->ctime = fs_get32(p + 28);
	out->appender = fs_get32(p + 32);
	return 0;
}

int fs_dec_upload_begin(const uint8_t *p, size_t have, uint64_t msg_len,
                        fs_upload_req *out)
{
	/* an upload request whose body is not here: check it as one with the
	 * body's length added, then require the message to end at the ext */
	if (have < FS_UPLOAD_FIXED_BYTES)
		return -EBADMSG;
	uint64_t size = fs_get64(p + 8);
	if (size > UINT64_MAX - msg_len)
		return -EBADMSG;
	int rc = fs_dec_upload(p, have, msg_len + size, out);
	if (rc != 0)
		return rc;
	return out->body_off == msg_len ? 0 : -EBADMSG;
}

int fs_enc_handle_req(uint8_t *out, size_t cap, uint64_t handle)
{
	if (cap < FS_HANDLE_REQ_BYTES)
		return -1;
	req_hdr(out, 0);
	fs_put64(out + 4, handle);
	return FS_HANDLE_REQ_BYTES;
}

int fs_dec_handle_req(const uint8_t *p, size_t have, uint64_t msg_len, uint64_t *handle)
{
	int rc = req_check(p, have, 0);
	if (rc != 0)
		return rc;
	if (msg_len != FS_HANDLE_REQ_BYTES || have < FS_HANDLE_REQ_BYTES)
		return -EBADMSG;
	*handle = fs_get64(p + 4);
	return *handle != 0 ? 0 : -EBADMSG;
}

int fs_enc_piece(uint8_t *out, size_t cap, uint64_t handle, uint64_t offset)
{
	if (cap < FS_PIECE_FIXED_BYTES)
		return -1;
	req_hdr(out, 0);
	fs_put64(out + 4, handle);
	fs_put64(out + 12, offset);
	return FS_PIECE_FIXED_BYTES;
}

int fs_dec_piece(const uint8_t *p, size_t have, uint64_t msg_len, uint64_t *handle,
                 uint64_t *offset, uint64_t *bytes)
{
	int rc = req_check(p, have, 0);
	if (rc != 0)
		return rc;
	if (msg_len <= FS_PIECE_FIXED_BYTES || have < FS_PIECE_FIXED_BYTES)
		return -EBADMSG; /* a piece carries at least one byte */
	*handle = fs_get64(p + 4);
	*offset = fs_get64(p + 12);
	*bytes = msg_len - FS_PIECE_FIXED_BYTES;
	return *handle != 0 ? 0 : -EBADMSG;
}

int fs_enc_begin_resp(uint8_t *out, size_t cap, uint64_t handle)
{
	if (cap < 16)
		return -1;
	memset(out, 0, 8);
	out[0] = FS_PROTO_VERSION;
	fs_put64(out + 8, handle);
	return 16;
}

int fs_dec_begin_resp(const uint8_t *p, size_t have, uint64_t msg_len, uint64_t *handle)
{
	if (msg_len != 16 || have < 16)
		return -EBADMSG;
	if (p[0] != FS_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	for (int i = 1; i < 8; i++)
		if (p[i] != 0)
			return -EBADMSG;
	*handle = fs_get64(p + 8);
	return *handle != 0 ? 0 : -EBADMSG;
}

int fs_enc_append(uint8_t *out, size_t cap, const char *id)
{
	return fs_enc_id_req(out, cap, id);
}

int fs_dec_append(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *r,
                  uint32_t *body_off, int *fid_err)
{
	memset(r, 0, sizeof(*r));
	int rc = req_check(p, have, 0);
	if (rc != 0)
		return rc;
	if (have < FS_ID_REQ_FIXED_BYTES || fs_get16(p + 6) != 0)
		return -EBADMSG;
	size_t il = fs_get16(p + 4);
	/* at least one byte to append */
	if (msg_len <= FS_ID_REQ_FIXED_BYTES + il || have < FS_ID_REQ_FIXED_BYTES + il)
		return -EBADMSG;
	*body_off = (uint32_t)(FS_ID_REQ_FIXED_BYTES + il);
	return take_id(p, FS_ID_REQ_FIXED_BYTES, il, r, fid_err);
}

int fs_enc_mod(uint8_t *out, size_t cap, const char *id, uint64_t value)
{
	size_t il = strlen(id);
	if (il >= FS_FID_MAX || cap < FS_MOD_FIXED_BYTES + il)
		return -1;
	req_hdr(out, 0);
	fs_put16(out + 4, (uint16_t)il);
	fs_put16(out + 6, 0);
	fs_put64(out + 8, value);
	memcpy(out + FS_MOD_FIXED_BYTES, id, il);
	return (int)(FS_MOD_FIXED_BYTES + il);
}

int fs_dec_mod(const uint8_t *p, size_t have, uint64_t msg_len, bool with_body,
               fs_id_req *r, uint32_t *body_off, int *fid_err)
{
	memset(r, 0, sizeof(*r));
	int rc = req_check(p, have, 0);
	if (rc != 0)
		return rc;
	if (have < FS_MOD_FIXED_BYTES || fs_get16(p + 6) != 0)
		return -EBADMSG;
	size_t il = fs_get16(p + 4), end = FS_MOD_FIXED_BYTES + il;
	if (have < end || (with_body ? msg_len <= end : msg_len != end))
		return -EBADMSG;
	r->offset = fs_get64(p + 8);
	*body_off = (uint32_t)end;
	return take_id(p, FS_MOD_FIXED_BYTES, il, r, fid_err);
}

bool fs_meta_key_valid(const char *k, size_t len)
{
	if (len == 0 || len > FS_META_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= 'a' && k[i] <= 'z') ||
		      (k[i] >= '0' && k[i] <= '9') || k[i] == '_' || k[i] == '.' ||
		      k[i] == '-'))
			return false;
	return true;
}

int fs_enc_meta(uint8_t *out, size_t cap, const fs_meta_pair *pairs, unsigned n)
{
	if (n > FS_META_PAIRS_MAX || cap < 2)
		return -1;
	fs_put16(out, (uint16_t)n);
	size_t off = 2;
	for (unsigned i = 0; i < n; i++) {
		size_t kl = strlen(pairs[i].key);
		if (kl == 0 || kl > FS_META_KEY_MAX ||
		    pairs[i].vlen > FS_META_VALUE_MAX ||
		    cap < off + 3 + kl + pairs[i].vlen)
			return -1;
		out[off] = (uint8_t)kl;
		fs_put16(out + off + 1, pairs[i].vlen);
		memcpy(out + off + 3, pairs[i].key, kl);
		memcpy(out + off + 3 + kl, pairs[i].value, pairs[i].vlen);
		off += 3 + kl + pairs[i].vlen;
	}
	return (int)off;
}

int fs_dec_meta(const uint8_t *p, size_t len, fs_meta_pair *pairs, unsigned max)
{
	if (len < 2)
		return -EBADMSG;
	unsigned n = fs_get16(p);
	if (n > max || n > FS_META_PAIRS_MAX)
		return -EBADMSG;
	size_t off = 2;
	for (unsigned i = 0; i < n; i++) {
		if (len < off + 3)
			return -EBADMSG;
		size_t kl = p[off], vl = fs_get16(p + off + 1);
		if (vl > FS_META_VALUE_MAX || len < off + 3 + kl + vl ||
		    !fs_meta_key_valid((const char *)p + off + 3, kl))
			return -EBADMSG;
		memcpy(pairs[i].key, p + off + 3, kl);
		pairs[i].key[kl] = '\0';
		pairs[i].vlen = (uint16_t)vl;
		memcpy(pairs[i].value, p + off + 3 + kl, vl);
		for (unsigned j = 0; j < i; j++)
			if (strcmp(pairs[j].key, pairs[i].key) == 0)
				return -EBADMSG;
		off += 3 + kl + vl;
	}
	return off == len ? (int)n : -EBADMSG;
}

int fs_enc_meta_set_hdr(uint8_t *out, size_t cap, const char *id, bool merge)
{
	int n = fs_enc_id_req(out, cap, id);
	if (n > 0 && merge)
		out[1] = FS_META_MERGE;
	return n;
}

int fs_dec_meta_set(const uint8_t *p, size_t have, uint64_t msg_len, fs_id_req *r,
                    bool *merge, uint32_t *pairs_off, int *fid_err)
{
	memset(r, 0, sizeof(*r));
	int rc = req_check(p, have, FS_META_MERGE);
	if (rc != 0)
		return rc;
	if (have < FS_ID_REQ_FIXED_BYTES || fs_get16(p + 6) != 0)
		return -EBADMSG;
	size_t il = fs_get16(p + 4), end = FS_ID_REQ_FIXED_BYTES + il;
	if (have < end || msg_len < end + 2)
		return -EBADMSG;
	*merge = (p[1] & FS_META_MERGE) != 0;
	*pairs_off = (uint32_t)end;
	return take_id(p, FS_ID_REQ_FIXED_BYTES, il, r, fid_err);
}

#define FS_SERVER_FIXED 28

int fs_enc_server(uint8_t *out, size_t cap, const fs_server *sv)
{
	size_t gl = strlen(sv->group), n = FS_SERVER_FIXED + gl;
	if (gl > FS_GROUP_MAX || sv->nlocs > FS_LOCS_MAX || sv->nstores > FS_BEAT_STORES)
		return -1;
	for (int i = 0; i < sv->nlocs; i++)
		n += 2 + strlen(sv->locs[i]);
	n += 16u * sv->nstores;
	if (n > cap)
		return -1;
	out[0] = (uint8_t)gl;
	out[1] = sv->nlocs;
	out[2] = sv->nstores;
	out[3] = sv->store;
	fs_put32(out + 4, sv->id);
	fs_put32(out + 8, sv->load);
	out[12] = sv->state;
	out[13] = out[14] = out[15] = 0;
	fs_put32(out + 16, sv->age_ms);
	fs_put64(out + 20, sv->ops);
	uint8_t *p = out + FS_SERVER_FIXED;
	memcpy(p, sv->group, gl);
	p += gl;
	for (int i = 0; i < sv->nlocs; i++) {
		size_t l = strlen(sv->locs[i]);
		fs_put16(p, (uint16_t)l);
		memcpy(p + 2, sv->locs[i], l);
		p += 2 + l;
	}
	for (int i = 0; i < sv->nstores; i++, p += 16) {
		fs_put64(p, sv->free_bytes[i]);
		fs_put64(p + 8, sv->total_bytes[i]);
	}
	return (int)(p - out);
}

int fs_dec_server(const uint8_t *p, size_t have, fs_server *sv)
{
	memset(sv, 0, sizeof(*sv));
	if (have < FS_SERVER_FIXED)
		return -EBADMSG;
	size_t gl = p[0];
	sv->nlocs = p[1];
	sv->nstores = p[2];
	sv->store = p[3];
	sv->id = fs_get32(p + 4);
	sv->load = fs_get32(p + 8);
	sv->state = p[12];
	sv->age_ms = fs_get32(p + 16);
	sv->ops = fs_get64(p + 20);
	if (gl > FS_GROUP_MAX || sv->nlocs > FS_LOCS_MAX ||
	    sv->nstores > FS_BEAT_STORES || sv->state > FS_SERVER_READONLY ||
	    p[13] != 0 || p[14] != 0 || p[15] != 0 || have < FS_SERVER_FIXED + gl ||
	    (gl > 0 && !fs_group_valid((const char *)p + FS_SERVER_FIXED, gl)))
		return -EBADMSG;
	memcpy(sv->group, p + FS_SERVER_FIXED, gl);
	size_t off = FS_SERVER_FIXED + gl;
	for (int i = 0; i < sv->nlocs; i++) {
		if (have < off + 2)
			return -EBADMSG;
		size_t l = fs_get16(p + off);
		if (l == 0 || l > FS_LOC_MAX || have < off + 2 + l ||
		    memchr(p + off + 2, '\0', l) != NULL)
			return -EBADMSG;
		memcpy(sv->locs[i], p + off + 2, l);
		off += 2 + l;
	}
	if (have < off + 16u * sv->nstores)
		return -EBADMSG;
	for (int i = 0; i < sv->nstores; i++, off += 16) {
		sv->free_bytes[i] = fs_get64(p + off);
		sv->total_bytes[i] = fs_get64(p + off + 8);
		if (sv->free_bytes[i] > sv->total_bytes[i])
			return -EBADMSG;
	}
	return (int)off;
}

int fs_enc_beat(uint8_t *out, size_t cap, const fs_server *sv)
{
	if (cap < FS_REQ_HDR_BYTES)
		return -1;
	req_hdr(out, 0);
	int n = fs_enc_server(out + FS_REQ_HDR_BYTES, cap - FS_REQ_HDR_BYTES, sv);
	return n < 0 ? -1 : n + FS_REQ_HDR_BYTES;
}

int fs_dec_beat(const uint8_t *p, size_t have, uint64_t msg_len, fs_server *sv)
{
	int rc = req_check(p, have, 0);
	if (rc != 0)
		return rc;
	if (have < msg_len)
		return -EBADMSG;
	int n = fs_dec_server(p + FS_REQ_HDR_BYTES, have - FS_REQ_HDR_BYTES, sv);
	if (n < 0 || (uint64_t)n + FS_REQ_HDR_BYTES != msg_len || sv->group[0] == '\0' ||
	    sv->id == 0 || sv->nlocs == 0)
		return -EBADMSG;
	return 0;
}

int fs_enc_query_store(uint8_t *out, size_t cap, const char *group)
{
	size_t gl = strlen(group);
	if (gl > FS_GROUP_MAX || cap < FS_REQ_HDR_BYTES + 4 + gl)
		return -1;
	req_hdr(out, 0);
	out[4] = (uint8_t)gl;
	out[5] = out[6] = out[7] = 0;
	memcpy(out + 8, group, gl);
	return (int)(8 + gl);
}

int fs_dec_query_store(const uint8_t *p, size_t have, uint64_t msg_len, char *group)
{
	int rc = req_check(p, have, 0);
	if (rc != 0)
		return rc;
	if (have < 8 || p[5] != 0 || p[6] != 0 || p[7] != 0)
		return -EBADMSG;
	size_t gl = p[4];
	if (msg_len != 8 + gl || have < msg_len ||
	    (gl > 0 && !fs_group_valid((const char *)p + 8, gl)))
		return -EBADMSG;
	memcpy(group, p + 8, gl);
	group[gl] = '\0';
	return 0;
}

const char *fs_op_name(uint16_t op)
{
	switch (op) {
	case FS_OP_UPLOAD:
		return "upload";
	case FS_OP_DOWNLOAD:
		return "download";
	case FS_OP_DELETE:
		return "delete";
	case FS_OP_INFO:
		return "info";
	case FS_OP_UPLOAD_BEGIN:
		return "upload-begin";
	case FS_OP_UPLOAD_PIECE:
		return "upload-piece";
	case FS_OP_UPLOAD_COMMIT:
		return "upload-commit";
	case FS_OP_UPLOAD_ABORT:
		return "upload-abort";
	case FS_OP_APPEND:
		return "append";
	case FS_OP_WRITE:
		return "write";
	case FS_OP_TRUNCATE:
		return "truncate";
	case FS_OP_META_SET:
		return "meta-set";
	case FS_OP_META_GET:
		return "meta-get";
	case FS_OP_BEAT:
		return "beat";
	case FS_OP_QUERY_STORE:
		return "query-store";
	case FS_OP_QUERY_FETCH:
		return "query-fetch";
	case FS_OP_LIST:
		return "list";
	default:
		return NULL;
	}
}
