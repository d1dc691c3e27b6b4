/* Unit tests for error codes (src/base/err.c): names and descriptions
 * of success, every library code (iterated with the FERRY_ERRORS X-macro),
 * -errno values and unknown codes, plus the version string. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/ferry.h"

typedef struct err_entry {
	int code;
	int off;
	const char *name; /* "FERRY_" #name */
	const char *desc; /* the X-macro's description */
} err_entry;

static const err_entry all_errors[] = {
#define ERR_ENTRY_(name, off, desc) {FERRY_##name, off, "FERRY_" #name, desc},
        FERRY_ERRORS(ERR_ENTRY_)
#undef ERR_ENTRY_
};
#define NERRORS ((int)(sizeof(all_errors) / sizeof(all_errors[0])))

static void test_success(void **state)
{
	(void)state;
	assert_string_equal(ferry_err_name(0), "OK");
	assert_non_null(ferry_strerror(0));
	assert_true(strlen(ferry_strerror(0)) > 0);
	assert_string_not_equal(ferry_strerror(0), "unknown error");
}

static void test_library_codes(void **state)
{
	(void)state;
	assert_true(NERRORS >= 13);
	for (int i = 0; i < NERRORS; i++) {
		const err_entry *e = &all_errors[i];
		assert_int_equal(e->code, -(FERRY_ERR_BASE + e->off));
		assert_true(e->code <= -FERRY_ERR_BASE);
		const char *name = ferry_err_name(e->code);
		const char *desc = ferry_strerror(e->code);
		assert_non_null(name);
		assert_non_null(desc);
		assert_string_equal(name, e->name);
		assert_string_equal(desc, e->desc);
		assert_true(strlen(desc) > 0);
		assert_string_not_equal(desc, "unknown error");
		assert_string_not_equal(name, "EUNKNOWN");
		/* Distinct codes, names and descriptions. */
		for (int j = 0; j < i; j++) {
			assert_int_not_equal(all_errors[j].code, e->code);
			assert_string_not_equal(ferry_err_name(all_errors[j].code), name);
			assert_string_not_equal(ferry_strerror(all_errors[j].code), desc);
		}
	}
	/* Spot checks, so the X-macro cannot silently generate nonsense. */
	assert_string_equal(ferry_err_name(FERRY_ETIMEDOUT), "FERRY_ETIMEDOUT");
	assert_string_equal(ferry_err_name(FERRY_EBADLOC), "FERRY_EBADLOC");
	assert_string_equal(ferry_err_name(FERRY_EWRONGTHREAD), "FERRY_EWRONGTHREAD");
	assert_int_equal(FERRY_ETIMEDOUT, -10001);
	assert_string_equal(ferry_strerror(FERRY_EBADLOC), "bad locator");
}

/* Library codes never collide with errno values (Linux keeps those below
 * 4096), and the -errno range never names a library code. */
static void test_no_errno_collision(void **state)
{
	(void)state;
	assert_true(FERRY_ERR_BASE >= 4096);
	for (int e = 1; e < 4096; e++) {
		const char *name = ferry_err_name(-e);
		assert_non_null(name);
		assert_non_null(ferry_strerror(-e));
		assert_true(strncmp(name, "FERRY_", 6) != 0);
	}
}

static void test_errno(void **state)
{
	(void)state;
	assert_string_equal(ferry_err_name(-ECONNREFUSED), "ECONNREFUSED");
	assert_string_equal(ferry_err_name(-ENOENT), "ENOENT");
	assert_string_equal(ferry_err_name(-ENOMEM), "ENOMEM");
	assert_string_equal(ferry_err_name(-EINVAL), "EINVAL");
	assert_string_equal(ferry_err_name(-EAGAIN), "EAGAIN");
	assert_string_equal(ferry_err_name(-ETIMEDOUT), "ETIMEDOUT");
	assert_string_equal(ferry_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(ferry_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
	assert_string_equal(ferry_strerror(-EMSGSIZE), strerror(EMSGSIZE));
	/* errno-like and library codes with the same word differ. */
	assert_string_not_equal(ferry_err_name(-ETIMEDOUT),
	                        ferry_err_name(FERRY_ETIMEDOUT));
	assert_string_not_equal(ferry_err_name(-EAGAIN), ferry_err_name(FERRY_EAGAIN));
}

static void test_unknown(void **state)
{
	(void)state;
	static const int codes[] = {-99999,
	                            -FERRY_ERR_BASE,
	                            -(FERRY_ERR_BASE + 9999),
	                            -4095 - 1 - 5000,
	                            1,
	                            5,
	                            12345,
	                            INT_MAX,
	                            INT_MIN,
	                            -65536};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *name = ferry_err_name(codes[i]);
		const char *desc = ferry_strerror(codes[i]);
		if (strcmp(name, "EUNKNOWN") != 0 || strcmp(desc, "unknown error") != 0)
			fail_msg("code %d: name '%s', description '%s'", codes[i], name,
			         desc);
	}
	/* One past the last library code. */
	int past = -(FERRY_ERR_BASE + all_errors[NERRORS - 1].off + 1);
	assert_string_equal(ferry_err_name(past), "EUNKNOWN");
	assert_string_equal(ferry_strerror(past), "unknown error");
	/* An errno number Linux does not define. */
	assert_string_equal(ferry_err_name(-4000), "EUNKNOWN");
	assert_non_null(ferry_strerror(-4000));
}

static void test_version(void **state)
{
	(void)state;
	const char *v = ferry_version();
	assert_non_null(v);
	/* MAJOR.MINOR.PATCH: three dot-separated decimal integers. */
	const char *p = v;
	for (int part = 0; part < 3; part++) {
		if (!isdigit((unsigned char)*p))
			fail_msg("version '%s' is not MAJOR.MINOR.PATCH", v);
		while (isdigit((unsigned char)*p))
			p++;
		if (part < 2) {
			if (*p != '.')
				fail_msg("version '%s' is not MAJOR.MINOR.PATCH", v);
			p++;
		}
	}
	if (*p != '\0')
		fail_msg("version '%s' has trailing text", v);
	/* Stable pointer to a static string. */
	assert_ptr_equal(ferry_version(), v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_success),
	        cmocka_unit_test(test_library_codes),
	        cmocka_unit_test(test_no_errno_collision),
	        cmocka_unit_test(test_errno),
	        cmocka_unit_test(test_unknown),
	        cmocka_unit_test(test_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
