/* libferryfs against a running storage server (fs_client.sh starts one and
 * passes its locators): uploads from memory of 0 B to 20 MiB (one message
 * and pieces) read back whole and in part into memory, stat, metadata
 * through the API, delete, and the errors a caller sees (-ENOENT for a
 * deleted object, -EINVAL for a malformed ID or bad options, -EPERM for an
 * appender operation on a plain object) with a message saying why. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferryfs/ferryfs.h"

static const char *locs[4];
static int nlocs;

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static void test_roundtrips(void **state)
{
	(void)state;
	static const size_t sizes[] = {0, 1, 1433, 100000, (20u << 20) + 5};
	uint8_t *in = malloc((20u << 20) + 5), *out = malloc((20u << 20) + 5);
	assert_non_null(in);
	assert_non_null(out);
	for (int l = 0; l < nlocs; l++) {
		ferryfs_opts o = {.size = sizeof(o), .server = locs[l]};
		ferryfs *fs;
		assert_int_equal(ferryfs_open(&o, &fs), 0);
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			size_t n = sizes[k];
			fill(in, n, (uint32_t)(k * 31 + (size_t)l));
			char id[FERRYFS_ID_MAX];
			ferryfs_upload_opts u = {.size = sizeof(u), .ext = "bin"};
			int rc = ferryfs_upload_mem(fs, in, n, &u, id);
			if (rc != 0)
				fail_msg("%s: upload %zu: %s", locs[l], n,
				         ferryfs_errmsg(fs));
			size_t got = 0;
			assert_int_equal(
			        ferryfs_download_mem(fs, id, 0, out, n + 10, &got), 0);
			assert_int_equal(got, n);
			assert_memory_equal(in, out, n);
			if (n > 10) {
				/* a part: from n/3, at most n/4 bytes */
				assert_int_equal(ferryfs_download_mem(fs, id, n / 3, out,
				                                      n / 4, &got),
				                 0);
				assert_int_equal(got, n / 4);
				assert_memory_equal(in + n / 3, out, n / 4);
			}
			/* into a file, byte-exact */
			char path[] = "/tmp/ferryfs-test-XXXXXX";
			int tfd = mkstemp(path);
			assert_true(tfd >= 0);
			close(tfd);
			assert_int_equal(ferryfs_download_path(fs, id, path, NULL, NULL),
			                 0);
			tfd = open(path, O_RDONLY);
			assert_true(tfd >= 0);
			assert_int_equal(read(tfd, out, n + 1), (ssize_t)n);
			close(tfd);
			assert_memory_equal(in, out, n);
			unlink(path);
			ferryfs_info st;
			assert_int_equal(ferryfs_stat(fs, id, &st), 0);
			assert_true(st.from_server);
			assert_int_equal(st.size, n);
			assert_int_equal(st.size_at_upload, n);
			assert_false(st.appender);
			assert_int_equal(ferryfs_delete(fs, id), 0);
			assert_int_equal(ferryfs_download_mem(fs, id, 0, out, 1, &got),
			                 -ENOENT);
			assert_non_null(strstr(ferryfs_errmsg(fs), id));
			/* a failed download into a file leaves no file */
			char gone[] = "/tmp/ferryfs-gone-XXXXXX";
			int gfd = mkstemp(gone);
			close(gfd);
			assert_int_equal(ferryfs_download_path(fs, id, gone, NULL, NULL),
			                 -ENOENT);
			assert_int_equal(access(gone, F_OK), -1);
		}
		ferryfs_close(fs);
	}
	free(in);
	free(out);
}

static void test_meta_and_errors(void **state)
{
	(void)state;
	ferryfs_opts o = {.size = sizeof(o), .server = locs[0]};
	ferryfs *fs;
	assert_int_equal(ferryfs_open(&o, &fs), 0);
	char id[FERRYFS_ID_MAX];
	assert_int_equal(ferryfs_upload_mem(fs, "hello", 5, NULL, id), 0);
	static ferryfs_meta m[3], back[8];
	strcpy(m[0].key, "a");
	m[0].len = 3;
	memcpy(m[0].value, "x\0y", 3); /* values are bytes, NUL included */
	strcpy(m[1].key, "b.c-d_e");
	m[1].len = 0;
	assert_int_equal(ferryfs_meta_set(fs, id, m, 2, false), 0);
	int n = 0;
	assert_int_equal(ferryfs_meta_get(fs, id, back, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(back[0].key, "a");
	assert_int_equal(back[0].len, 3);
	assert_memory_equal(back[0].value, "x\0y", 3);
	strcpy(m[2].key, "bad key");
	assert_int_equal(ferryfs_meta_set(fs, id, m + 2, 1, true), -EINVAL);
	/* appender operations on a plain object */
	assert_int_equal(ferryfs_truncate(fs, id, 1), -EPERM);
	assert_non_null(strstr(ferryfs_errmsg(fs), "appender"));
	/* malformed IDs never reach the server */
	assert_int_equal(ferryfs_delete(fs, "../etc/passwd"), -EINVAL);
	ferryfs_info st;
	assert_int_equal(ferryfs_stat(NULL, "g/M00/00/00/short", &st), -EINVAL);
	assert_int_equal(ferryfs_delete(fs, id), 0);
	ferryfs_close(fs);
	/* options: neither trackers nor a server, or no size */
	ferryfs_opts none = {.size = sizeof(none)}, nosize = {.server = locs[0]};
	assert_int_equal(ferryfs_open(&none, &fs), -EINVAL);
	assert_null(fs);
	assert_int_equal(ferryfs_open(&nosize, &fs), -EINVAL);
	/* a server that is not there: a transport error, said as such */
	ferryfs_opts gone = {.size = sizeof(gone),
	                     .server = "tcp:host=127.0.0.1,port=1",
	                     .timeout_us = 2000000};
	assert_int_equal(ferryfs_open(&gone, &fs), 0);
	assert_int_not_equal(ferryfs_upload_mem(fs, "x", 1, NULL, id), 0);
	assert_true(strlen(ferryfs_errmsg(fs)) > 0);
	ferryfs_close(fs);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc && nlocs < 4; i++)
		locs[nlocs++] = argv[i];
	if (nlocs == 0) {
		fprintf(stderr, "usage: test_client LOCATOR...\n");
		return 2;
	}
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_roundtrips),
	        cmocka_unit_test(test_meta_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
