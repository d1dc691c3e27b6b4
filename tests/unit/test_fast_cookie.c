/* fast's open cookies: SipHash-2-4 against the reference vectors of its
 * paper (key 00..0f, message 00..len-1), and the cookie's binding to the
 * address, nonce, hint and time slot (valid in its slot and the next). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "transport/fast/cookie.h"

static void test_siphash_vectors(void **st)
{
	(void)st;
	uint8_t key[16], msg[16];
	for (int i = 0; i < 16; i++)
		key[i] = msg[i] = (uint8_t)i;
	assert_true(ferry__fast_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ull);
	assert_true(ferry__fast_siphash24(key, msg, 1) == 0x74f839c593dc67fdull);
	assert_true(ferry__fast_siphash24(key, msg, 8) == 0x93f5f5799a932462ull);
	assert_true(ferry__fast_siphash24(key, msg, 15) == 0xa129ca6149be45e5ull);
}

static void test_cookie_binding(void **st)
{
	(void)st;
	uint8_t key[16] = {1, 2, 3}, other[16] = {1, 2, 4};
	ferry_addr a = {.len = 16}, b;
	memset(a.u.bytes, 7, 16);
	b = a;
	b.u.bytes[5] ^= 1;
	uint64_t t = 1000u * FAST_COOKIE_SLOT_US + 5;
	uint64_t c = ferry__fast_cookie_make(key, &a, 42, 3, t);
	assert_true(c != 0);
	assert_true(ferry__fast_cookie_check(key, &a, 42, 3, t, c));
	assert_true(ferry__fast_cookie_check(key, &a, 42, 3, t + FAST_COOKIE_SLOT_US,
	                                     c)); /* next slot */
	assert_false(
	        ferry__fast_cookie_check(key, &a, 42, 3, t + 2 * FAST_COOKIE_SLOT_US, c));
	assert_false(
	        ferry__fast_cookie_check(key, &a, 42, 3, t - FAST_COOKIE_SLOT_US, c));
	assert_false(ferry__fast_cookie_check(key, &b, 42, 3, t, c));
	assert_false(ferry__fast_cookie_check(key, &a, 43, 3, t, c));
	assert_false(ferry__fast_cookie_check(key, &a, 42, 4, t, c));
	assert_false(ferry__fast_cookie_check(other, &a, 42, 3, t, c));
	assert_false(ferry__fast_cookie_check(key, &a, 42, 3, t, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_siphash_vectors),
	        cmocka_unit_test(test_cookie_binding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
