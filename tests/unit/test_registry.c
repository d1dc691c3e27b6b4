/* Unit test for the driver registry (src/drivers/core/registry.c, generated from meson's
 * driver list): every driver meson built is registered. meson passes the built driver
 * names as arguments (tests/unit/meson.build: args : drivers_built), so a driver added to
 * the build but not to the registry array fails here instead of shipping unreachable. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ferry/driver.h"

static int built_argc;
static char **built_argv; /* driver names, built_argc of them */

static void test_count(void **state)
{
	(void)state;
	assert_int_equal(ferry_driver_count(), built_argc);
	assert_true(built_argc >= 1);
}

static void test_every_built_driver_found(void **state)
{
	(void)state;
	for (int i = 0; i < built_argc; i++) {
		const ferry_driver_ops *d = ferry_driver_find(built_argv[i]);
		if (d == NULL)
			fail_msg("driver '%s' is built but not registered",
			         built_argv[i]);
		assert_string_equal(d->name, built_argv[i]);
	}
	/* And every registered driver was built (listed by meson). */
	for (int i = 0; i < ferry_driver_count(); i++) {
		const ferry_driver_ops *d = ferry_driver_at(i);
		assert_non_null(d);
		int listed = 0;
		for (int j = 0; j < built_argc; j++)
			listed |= strcmp(built_argv[j], d->name) == 0;
		if (!listed)
			fail_msg("driver '%s' is registered but meson did not list it",
			         d->name);
		assert_ptr_equal(ferry_driver_find(d->name), d);
	}
}

static void test_names_unique(void **state)
{
	(void)state;
	for (int i = 0; i < ferry_driver_count(); i++)
		for (int j = 0; j < i; j++)
			assert_string_not_equal(ferry_driver_at(i)->name,
			                        ferry_driver_at(j)->name);
}

static void test_kinds(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int kind;
		bool wrapper;
	} known[] = {
	        {"udp", FERRY_DRIVER_DATAGRAM, false},
	        {"loopback", FERRY_DRIVER_DATAGRAM, false},
	        {"lossy", FERRY_DRIVER_DATAGRAM, true},
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		const ferry_driver_ops *d = ferry_driver_find(known[i].name);
		int built = 0;
		for (int j = 0; j < built_argc; j++)
			built |= strcmp(built_argv[j], known[i].name) == 0;
		if (!built) {
			assert_null(d);
			continue;
		}
		assert_non_null(d);
		assert_int_equal(d->kind, known[i].kind);
		assert_int_equal(d->wrapper, known[i].wrapper);
	}
}

static void test_ops_complete(void **state)
{
	(void)state;
	for (int i = 0; i < ferry_driver_count(); i++) {
		const ferry_driver_ops *d = ferry_driver_at(i);
		assert_non_null(d);
		assert_non_null(d->name);
		assert_true(d->name[0] != '\0');
		assert_true(d->keys != NULL || d->key_tables != NULL);
		for (const char *const *k = d->keys; k != NULL && *k != NULL; k++)
			assert_true((*k)[0] != '\0');
		for (const ferry_loc_key *const *t = d->key_tables;
		     t != NULL && *t != NULL; t++)
			for (const ferry_loc_key *k = *t; k->name != NULL; k++) {
				assert_true(k->name[0] != '\0');
				assert_true(k->kind <= FERRY_LOC_REAL);
				assert_true(k->min <= k->max ||
				            k->kind != FERRY_LOC_UINT);
				assert_true(k->rmin <= k->rmax ||
				            k->kind != FERRY_LOC_REAL);
			}
		assert_true(d->ep_size >= sizeof(ferry_ep));
		assert_non_null(d->open);
		assert_true(d->kind == FERRY_DRIVER_DATAGRAM ||
		            d->kind == FERRY_DRIVER_STREAM);
		if (d->wrapper)
			assert_int_equal(d->kind, FERRY_DRIVER_DATAGRAM);
		if (d->kind == FERRY_DRIVER_DATAGRAM) {
			const ferry_dgram_ops *o = d->dgram;
			if (o == NULL)
				fail_msg("datagram driver '%s' has no dgram ops",
				         d->name);
			assert_non_null(o->send);
			assert_non_null(o->flush);
			assert_non_null(o->poll);
			assert_non_null(o->release);
			assert_non_null(o->resolve);
			assert_non_null(o->caps);
			assert_non_null(o->ctl);
			assert_non_null(o->close);
		} else {
			const ferry_stream_ops *o = d->stream;
			if (o == NULL)
				fail_msg("stream driver '%s' has no stream ops", d->name);
			assert_non_null(o->connect);
			assert_non_null(o->send_msg);
			assert_non_null(o->flush);
			assert_non_null(o->poll);
			assert_non_null(o->detach);
			assert_non_null(o->conn_close);
			assert_non_null(o->release);
			assert_non_null(o->caps);
			assert_non_null(o->ctl);
			assert_non_null(o->close);
		}
	}
}

static void test_out_of_range(void **state)
{
	(void)state;
	assert_null(ferry_driver_at(-1));
	assert_null(ferry_driver_at(ferry_driver_count()));
	assert_null(ferry_driver_at(ferry_driver_count() + 1));
	assert_null(ferry_driver_at(1 << 30));
	assert_null(ferry_driver_find("nope"));
	assert_null(ferry_driver_find(""));
	assert_null(ferry_driver_find("UDP"));
	assert_null(ferry_driver_find("udp "));
	assert_null(ferry_driver_find("unreliable")); /* a transport, not a driver */
}

int main(int argc, char **argv)
{
	built_argc = argc - 1;
	built_argv = argv + 1;
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_count),
	        cmocka_unit_test(test_every_built_driver_found),
	        cmocka_unit_test(test_names_unique),
	        cmocka_unit_test(test_kinds),
	        cmocka_unit_test(test_ops_complete),
	        cmocka_unit_test(test_out_of_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
