/* ferryfs codec: file IDs (round trip, every malformed kind refused with
 * its own code, paths that stay in the hashed tree), CRC-32, and each
 * message's decoder against its encoder and against broken input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/fid.h"
#include "proto/wire.h"

static fs_fid sample(void)
{
	fs_fid f = {.store = 3,
	            .source = 7,
	            .ctime = 1700000000,
	            .size = 123456789,
	            .crc32 = 0xdeadbeef,
	            .rnd = 0x12345678};
	strcpy(f.group, "group_1-A");
	strcpy(f.ext, "jpg");
	return f;
}

static void test_fid_roundtrip(void **state)
{
	(void)state;
	for (int appender = 0; appender < 2; appender++) {
		fs_fid f = sample(), g;
		f.appender = appender;
		char id[FS_FID_MAX];
		int n = fs_fid_encode(&f, id, sizeof(id));
		assert_true(n > 0);
		assert_int_equal(strncmp(id, "group_1-A/M03/78/56/", 20), 0);
		assert_int_equal(fs_fid_decode(id, (size_t)n, &g), 0);
		assert_string_equal(g.group, f.group);
		assert_int_equal(g.store, 3);
		assert_int_equal(g.dir1, 0x78);
		assert_int_equal(g.dir2, 0x56);
		assert_int_equal(g.source, 7);
		assert_int_equal(g.ctime, 1700000000);
		assert_int_equal(g.size, 123456789);
		assert_int_equal(g.appender, appender);
		assert_int_equal(g.crc32, 0xdeadbeef);
		assert_int_equal(g.rnd, 0x12345678);
		assert_string_equal(g.ext, "jpg");
		char path[128];
		assert_true(fs_fid_path(&g, false, path, sizeof(path)) > 0);
		assert_int_equal(strncmp(path, "data/78/56/", 11), 0);
		assert_null(strstr(path, ".."));
		assert_true(fs_fid_path(&g, true, path, sizeof(path)) > 0);
		assert_string_equal(path, "data/78/56");
	}
	/* no extension, the largest size */
	fs_fid f = sample(), g;
	f.ext[0] = '\0';
	f.size = (1ull << 63) - 1;
	char id[FS_FID_MAX];
	assert_true(fs_fid_encode(&f, id, sizeof(id)) > 0);
	assert_int_equal(fs_fid_decode(id, strlen(id), &g), 0);
	assert_int_equal(g.size, f.size);
	assert_int_equal(g.appender, 0);
	assert_string_equal(g.ext, "");
	/* too small a buffer */
	assert_int_equal(fs_fid_encode(&f, id, 20), -1);
}

static void expect_bad(const char *id, int code)
{
	fs_fid g;
	int rc = fs_fid_decode(id, strlen(id), &g);
	if (rc != code)
		fail_msg("%s: got %d (%s), want %d", id, rc, fs_fid_strerror(rc), code);
}

static void test_fid_malformed(void **state)
{
	(void)state;
	fs_fid f = sample();
	char good[FS_FID_MAX], buf[256];
	fs_fid_encode(&f, good, sizeof(good));
	const char *name = strrchr(good, '/') + 1;
	expect_bad("", FS_FID_EMPTY);
	memset(buf, 'A', 200);
	buf[200] = '\0';
	expect_bad(buf, FS_FID_TOO_LONG);
	expect_bad("/M03/78/56/x", FS_FID_BAD_GROUP);   /* absolute */
	expect_bad("../M03/78/56/x", FS_FID_BAD_GROUP); /* .. */
	expect_bad("gr.oup/M03/78/56/x", FS_FID_BAD_GROUP);
	expect_bad("abcdefghijklmnopq/M03/78/56/x", FS_FID_BAD_GROUP); /* 17 */
	expect_bad("nogroupslash", FS_FID_BAD_GROUP);
	snprintf(buf, sizeof(buf), "g/X03/78/56/%s", name);
	expect_bad(buf, FS_FID_BAD_STORE);
	snprintf(buf, sizeof(buf), "g/M0g/78/56/%s", name);
	expect_bad(buf, FS_FID_BAD_STORE);
	snprintf(buf, sizeof(buf), "g/M03/../56/%s", name);
	expect_bad(buf, FS_FID_BAD_DIR);
	snprintf(buf, sizeof(buf), "g/M03/78/5a/%s", name); /* lowercase hex */
	expect_bad(buf, FS_FID_BAD_DIR);
	snprintf(buf, sizeof(buf), "g/M03/78/56//%s", name);
	expect_bad(buf, FS_FID_BAD_NAME);
	snprintf(buf, sizeof(buf), "g/M03/78/56/%.31s", name); /* short name */
	expect_bad(buf, FS_FID_BAD_NAME);
	snprintf(buf, sizeof(buf), "g/M03/78/56/%.31s.", name); /* '.' in the name */
	expect_bad(buf, FS_FID_BAD_NAME);
	snprintf(buf, sizeof(buf), "g/M03/78/56/%s.", name);
	*strchr(buf + 12, '.') = '\0';
	strcat(buf, ".");
	expect_bad(buf, FS_FID_BAD_EXT); /* empty extension */
	snprintf(buf, sizeof(buf), "g/M03/78/56/%.32s.jpegxyz", name);
	expect_bad(buf, FS_FID_BAD_EXT);
	snprintf(buf, sizeof(buf), "g/M03/78/56/%.32s/x", name);
	expect_bad(buf, FS_FID_BAD_EXT);
	snprintf(buf, sizeof(buf), "g/M03/78/56/%.32s.j/g", name);
	expect_bad(buf, FS_FID_BAD_EXT);
	snprintf(buf, sizeof(buf), "g/M03/79/56/%s", name); /* not the name's dirs */
	expect_bad(buf, FS_FID_DIR_MISMATCH);
	/* a NUL inside the text is not the end of it */
	fs_fid g;
	char withnul[FS_FID_MAX];
	size_t n = strlen(good);
	memcpy(withnul, good, n);
	withnul[n - 2] = '\0';
	assert_int_not_equal(fs_fid_decode(withnul, n, &g), 0);
	assert_int_equal(fs_fid_decode(good, n, &g), 0);
}

static void test_crc32(void **state)
{
	(void)state;
	assert_int_equal(fs_crc32(0, "123456789", 9), 0xCBF43926u);
	assert_int_equal(fs_crc32(0, "", 0), 0);
	/* incremental = whole */
	uint32_t c = fs_crc32(0, "1234", 4);
	assert_int_equal(fs_crc32(c, "56789", 5), 0xCBF43926u);
}

static void test_upload_msg(void **state)
{
	(void)state;
	uint8_t m[64];
	int n = fs_enc_upload(m, sizeof(m), FS_UPLOAD_APPENDER, 2, 5, "txt");
	assert_int_equal(n, FS_UPLOAD_FIXED_BYTES + 3);
	fs_upload_req u;
	assert_int_equal(fs_dec_upload(m, (size_t)n, (uint64_t)n + 5, &u), 0);
	assert_int_equal(u.flags, FS_UPLOAD_APPENDER);
	assert_int_equal(u.store, 2);
	assert_int_equal(u.size, 5);
	assert_string_equal(u.ext, "txt");
	assert_int_equal(u.body_off, n);
	/* the body must be exactly size bytes */
	assert_int_equal(fs_dec_upload(m, (size_t)n, (uint64_t)n + 4, &u), -EBADMSG);
	assert_int_equal(fs_dec_upload(m, (size_t)n, (uint64_t)n + 6, &u), -EBADMSG);
	assert_int_equal(fs_dec_upload(m, 10, 10, &u), -EBADMSG);
	uint8_t bad[64];
	memcpy(bad, m, (size_t)n);
	bad[0] = 2;
	assert_int_equal(fs_dec_upload(bad, (size_t)n, (uint64_t)n + 5, &u),
	                 -EPROTONOSUPPORT);
	memcpy(bad, m, (size_t)n);
	bad[1] = 0x80; /* unknown flag */
	assert_int_equal(fs_dec_upload(bad, (size_t)n, (uint64_t)n + 5, &u), -EBADMSG);
	memcpy(bad, m, (size_t)n);
	bad[3] = 1; /* reserved */
	assert_int_equal(fs_dec_upload(bad, (size_t)n, (uint64_t)n + 5, &u), -EBADMSG);
	memcpy(bad, m, (size_t)n);
	bad[FS_UPLOAD_FIXED_BYTES] = '/'; /* extension character */
	assert_int_equal(fs_dec_upload(bad, (size_t)n, (uint64_t)n + 5, &u), -EBADMSG);
	memcpy(bad, m, (size_t)n);
	bad[5] = 7; /* extension too long */
	assert_int_equal(fs_dec_upload(bad, 64, 64, &u), -EBADMSG);
	assert_int_equal(fs_enc_upload(m, sizeof(m), 0, 0, 0, "toolong"), -1);
}

static void test_id_msgs(void **state)
{
	(void)state;
	fs_fid f = sample();
	char id[FS_FID_MAX];
	fs_fid_encode(&f, id, sizeof(id));
	uint8_t m[FS_DECODE_MAX];
	fs_id_req r;
	int fe = 0;
	int n = fs_enc_id_req(m, sizeof(m), id);
	assert_int_equal(fs_dec_id_req(m, (size_t)n, (uint64_t)n, &r, &fe), 0);
	assert_string_equal(r.id, id);
	assert_int_equal(r.fid.rnd, f.rnd);
	assert_int_equal(fs_dec_id_req(m, (size_t)n, (uint64_t)n + 1, &r, &fe), -EBADMSG);
	n = fs_enc_download(m, sizeof(m), id, 10, 20);
	assert_int_equal(fs_dec_download(m, (size_t)n, (uint64_t)n, &r, &fe), 0);
	assert_int_equal(r.offset, 10);
	assert_int_equal(r.length, 20);
	/* a well-formed message with a malformed ID: -EINVAL and why */
	n = fs_enc_id_req(m, sizeof(m), "../M00/00/00/x");
	assert_int_equal(fs_dec_id_req(m, (size_t)n, (uint64_t)n, &r, &fe), -EINVAL);
	assert_int_equal(fe, FS_FID_BAD_GROUP);
	/* an ID length of zero, or past the message */
	n = fs_enc_id_req(m, sizeof(m), id);
	m[4] = 0;
	m[5] = 0;
	assert_int_equal(
	        fs_dec_id_req(m, FS_ID_REQ_FIXED_BYTES, FS_ID_REQ_FIXED_BYTES, &r, &fe),
	        -EBADMSG);
	/* upload response and info */
	n = fs_enc_upload_resp(m, sizeof(m), id);
	char back[FS_FID_MAX];
	assert_int_equal(
	        fs_dec_upload_resp(m, (size_t)n, (uint64_t)n, back, sizeof(back)), 0);
	assert_string_equal(back, id);
	m[FS_UPLOAD_RESP_FIXED] = '.';
	assert_int_equal(
	        fs_dec_upload_resp(m, (size_t)n, (uint64_t)n, back, sizeof(back)),
	        -EBADMSG);
	fs_info in = {.size = 99,
	              .mtime_s = 5,
	              .crc32 = 1,
	              .source = 2,
	              .ctime = 3,
	              .appender = 1},
	        out;
	n = fs_enc_info(m, sizeof(m), &in);
	assert_int_equal(fs_dec_info(m, (size_t)n, (uint64_t)n, &out), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	m[32] = 2;
	assert_int_equal(fs_dec_info(m, (size_t)n, (uint64_t)n, &out), -EBADMSG);
	assert_string_equal(fs_op_name(FS_OP_DOWNLOAD), "download");
	assert_null(fs_op_name(1));
}

static void test_tracker_msgs(void **state)
{
	(void)state;
	fs_server sv = {.id = 5,
	                .load = 2,
	                .ops = 99,
	                .nlocs = 2,
	                .nstores = 2,
	                .store = 1},
	          back;
	strcpy(sv.group, "g1");
	strcpy(sv.locs[0], "tcp:host=10.0.0.5,port=23000");
	strcpy(sv.locs[1], "fast+udp:host=10.0.0.5,port=23001");
	sv.free_bytes[0] = 10;
	sv.total_bytes[0] = 20;
	sv.free_bytes[1] = 30;
	sv.total_bytes[1] = 30;
	static uint8_t m[8192];
	int n = fs_enc_beat(m, sizeof(m), &sv);
	assert_true(n > 0);
	assert_int_equal(fs_dec_beat(m, (size_t)n, (uint64_t)n, &back), 0);
	assert_string_equal(back.group, "g1");
	assert_int_equal(back.id, 5);
	assert_int_equal(back.ops, 99);
	assert_string_equal(back.locs[1], sv.locs[1]);
	assert_int_equal(back.free_bytes[1], 30);
	/* trailing bytes, free over total, no locator, id 0, bad group: refused */
	assert_int_equal(fs_dec_beat(m, (size_t)n + 1, (uint64_t)n + 1, &back), -EBADMSG);
	sv.free_bytes[0] = 21;
	n = fs_enc_beat(m, sizeof(m), &sv);
	assert_int_equal(fs_dec_beat(m, (size_t)n, (uint64_t)n, &back), -EBADMSG);
	sv.free_bytes[0] = 10;
	sv.nlocs = 0;
	n = fs_enc_beat(m, sizeof(m), &sv);
	assert_int_equal(fs_dec_beat(m, (size_t)n, (uint64_t)n, &back), -EBADMSG);
	sv.nlocs = 2;
	sv.id = 0;
	n = fs_enc_beat(m, sizeof(m), &sv);
	assert_int_equal(fs_dec_beat(m, (size_t)n, (uint64_t)n, &back), -EBADMSG);
	sv.id = 5;
	n = fs_enc_beat(m, sizeof(m), &sv);
	m[4 + 28] = '/'; /* the group's first character */
	assert_int_equal(fs_dec_beat(m, (size_t)n, (uint64_t)n, &back), -EBADMSG);
	/* a locator with a NUL, or running past the message */
	n = fs_enc_beat(m, sizeof(m), &sv);
	m[4 + 28 + 2 + 2 + 3] = '\0';
	assert_int_equal(fs_dec_beat(m, (size_t)n, (uint64_t)n, &back), -EBADMSG);
	n = fs_enc_beat(m, sizeof(m), &sv);
	assert_int_equal(fs_dec_beat(m, (size_t)n - 1, (uint64_t)n - 1, &back), -EBADMSG);
	char g[FS_GROUP_MAX + 1];
	n = fs_enc_query_store(m, sizeof(m), "g1");
	assert_int_equal(fs_dec_query_store(m, (size_t)n, (uint64_t)n, g), 0);
	assert_string_equal(g, "g1");
	n = fs_enc_query_store(m, sizeof(m), "");
	assert_int_equal(fs_dec_query_store(m, (size_t)n, (uint64_t)n, g), 0);
	assert_string_equal(g, "");
	m[5] = 1;
	assert_int_equal(fs_dec_query_store(m, (size_t)n, (uint64_t)n, g), -EBADMSG);
}

static void test_appender_meta_msgs(void **state)
{
	(void)state;
	fs_fid f = sample();
	f.appender = true;
	char id[FS_FID_MAX];
	fs_fid_encode(&f, id, sizeof(id));
	uint8_t m[FS_DECODE_MAX + 64];
	fs_id_req r;
	uint32_t off;
	int fe = 0;
	int n = fs_enc_append(m, sizeof(m), id);
	assert_int_equal(fs_dec_append(m, (size_t)n, (uint64_t)n + 10, &r, &off, &fe), 0);
	assert_int_equal(off, n);
	assert_true(r.fid.appender);
	/* nothing to append */
	assert_int_equal(fs_dec_append(m, (size_t)n, (uint64_t)n, &r, &off, &fe),
	                 -EBADMSG);
	n = fs_enc_mod(m, sizeof(m), id, 12345);
	assert_int_equal(fs_dec_mod(m, (size_t)n, (uint64_t)n + 1, true, &r, &off, &fe),
	                 0);
	assert_int_equal(r.offset, 12345);
	assert_int_equal(fs_dec_mod(m, (size_t)n, (uint64_t)n, true, &r, &off, &fe),
	                 -EBADMSG);
	assert_int_equal(fs_dec_mod(m, (size_t)n, (uint64_t)n, false, &r, &off, &fe), 0);
	assert_int_equal(fs_dec_mod(m, (size_t)n, (uint64_t)n + 1, false, &r, &off, &fe),
	                 -EBADMSG);
	/* metadata pairs */
	static fs_meta_pair in[3], out[FS_META_PAIRS_MAX];
	strcpy(in[0].key, "w");
	in[0].vlen = 3;
	memcpy(in[0].value, "640", 3);
	strcpy(in[1].key, "title.en-GB_1");
	in[1].vlen = 0;
	static uint8_t buf[4096];
	int k = fs_enc_meta(buf, sizeof(buf), in, 2);
	assert_int_equal(fs_dec_meta(buf, (size_t)k, out, FS_META_PAIRS_MAX), 2);
	assert_string_equal(out[1].key, "title.en-GB_1");
	assert_int_equal(out[0].vlen, 3);
	assert_memory_equal(out[0].value, "640", 3);
	assert_int_equal(fs_dec_meta(buf, (size_t)k + 1, out, FS_META_PAIRS_MAX),
	                 -EBADMSG);
	assert_int_equal(fs_dec_meta(buf, (size_t)k - 1, out, FS_META_PAIRS_MAX),
	                 -EBADMSG);
	assert_int_equal(fs_dec_meta(buf, (size_t)k, out, 1), -EBADMSG); /* too many */
	strcpy(in[1].key, "w");                                          /* a key twice */
	k = fs_enc_meta(buf, sizeof(buf), in, 2);
	assert_int_equal(fs_dec_meta(buf, (size_t)k, out, FS_META_PAIRS_MAX), -EBADMSG);
	strcpy(in[1].key, "a b"); /* a bad key */
	k = fs_enc_meta(buf, sizeof(buf), in, 2);
	assert_int_equal(fs_dec_meta(buf, (size_t)k, out, FS_META_PAIRS_MAX), -EBADMSG);
	assert_false(fs_meta_key_valid("", 0));
	assert_true(fs_meta_key_valid("a", 1));
	bool merge;
	n = fs_enc_meta_set_hdr(m, sizeof(m), id, true);
	assert_int_equal(
	        fs_dec_meta_set(m, (size_t)n, (uint64_t)n + 2, &r, &merge, &off, &fe), 0);
	assert_true(merge);
	assert_int_equal(off, n);
	m[1] = 0x02; /* an unknown flag */
	assert_int_equal(
	        fs_dec_meta_set(m, (size_t)n, (uint64_t)n + 2, &r, &merge, &off, &fe),
	        -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_fid_roundtrip),
	        cmocka_unit_test(test_fid_malformed),
	        cmocka_unit_test(test_crc32),
	        cmocka_unit_test(test_upload_msg),
	        cmocka_unit_test(test_id_msgs),
	        cmocka_unit_test(test_tracker_msgs),
	        cmocka_unit_test(test_appender_meta_msgs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
