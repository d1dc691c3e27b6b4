/* SipHash-2-4 and fast's open cookies (cookie.h). */
#include <string.h>

#include "base/le.h"
#include "cookie.h"

static uint64_t sip_rotl(uint64_t x, int b)
{
	return x << b | x >> (64 - b);
}

#define SIP_ROUND(v0, v1, v2, v3)                                                        \
	do {                                                                             \
		v0 += v1, v1 = sip_rotl(v1, 13), v1 ^= v0, v0 = sip_rotl(v0, 32);        \
		v2 += v3, v3 = sip_rotl(v3, 16), v3 ^= v2;                               \
		v0 += v3, v3 = sip_rotl(v3, 21), v3 ^= v0;                               \
		v2 += v1, v1 = sip_rotl(v1, 17), v1 ^= v2, v2 = sip_rotl(v2, 32);        \
	} while (0)

uint64_t ferry__fast_siphash24(const uint8_t key[FAST_COOKIE_KEY_BYTES], const void *msg,
                               size_t len)
{
	const uint8_t *in = msg;
	uint64_t k0 = ferry__get64(key), k1 = ferry__get64(key + 8);
	uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
	size_t full = len & ~(size_t)7;
	for (size_t i = 0; i < full; i += 8) {
		uint64_t m = ferry__get64(in + i);
		v3 ^= m;
		SIP_ROUND(v0, v1, v2, v3);
		SIP_ROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)in[full + i] << (8 * i);
	v3 ^= b;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		SIP_ROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/* MAC input: slot u64, nonce u64, client hint u32, address length u32,
 * the address bytes (a sockaddr for udp; its padding is zero as received). */
#define COOKIE_FIXED_BYTES 24

static uint64_t cookie_at(const uint8_t key[FAST_COOKIE_KEY_BYTES],
                          const ferry_addr *addr, uint64_t nonce, uint32_t client_hint,
                          uint64_t slot)
{
	uint8_t m[COOKIE_FIXED_BYTES + FERRY_ADDR_BYTES];
	uint32_t alen = addr->len <= FERRY_ADDR_BYTES ? addr->len : FERRY_ADDR_BYTES;
	for (int i = 0; i < 8; i++) {
		m[i] = (uint8_t)(slot >> (8 * i));
		m[8 + i] = (uint8_t)(nonce >> (8 * i));
	}
	for (int i = 0; i < 4; i++) {
		m[16 + i] = (uint8_t)(client_hint >> (8 * i));
		m[20 + i] = (uint8_t)(alen >> (8 * i));
	}
	memcpy(m + COOKIE_FIXED_BYTES, addr->u.bytes, alen);
	uint64_t c = ferry__fast_siphash24(key, m, COOKIE_FIXED_BYTES + alen);
	return c != 0 ? c : 1;
}

uint64_t ferry__fast_cookie_make(const uint8_t key[FAST_COOKIE_KEY_BYTES],
                                 const ferry_addr *addr, uint64_t nonce,
                                 uint32_t client_hint, uint64_t now_us)
{
	return cookie_at(key, addr, nonce, client_hint, now_us / FAST_COOKIE_SLOT_US);
}

int ferry__fast_cookie_check(const uint8_t key[FAST_COOKIE_KEY_BYTES],
                             const ferry_addr *addr, uint64_t nonce, uint32_t client_hint,
                             uint64_t now_us, uint64_t cookie)
{
	uint64_t slot = now_us / FAST_COOKIE_SLOT_US;
	if (cookie == 0)
		return 0;
	if (cookie_at(key, addr, nonce, client_hint, slot) == cookie)
		return 1;
	return slot > 0 && cookie_at(key, addr, nonce, client_hint, slot - 1) == cookie;
}
