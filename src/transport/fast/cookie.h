/* Stateless open cookies for fast servers (docs/FAST.md, "Opening a
 * session"): a keyed MAC over the client's address, its open nonce and
 * hint, and a coarse time slot, so a server allocates nothing for a
 * SESSION_OPEN until the client has shown it receives at its source
 * address. The MAC is SipHash-2-4 (Aumasson and Bernstein, 2012). */
#ifndef FERRY_FAST_COOKIE_H
#define FERRY_FAST_COOKIE_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/driver.h"

#define FAST_COOKIE_KEY_BYTES 16
#define FAST_COOKIE_SLOT_US   2000000u /* a cookie is good for 2-4 s */

/* SipHash-2-4 of msg[0..len) under a 16-byte key. */
uint64_t ferry__fast_siphash24(const uint8_t key[FAST_COOKIE_KEY_BYTES], const void *msg,
                               size_t len);

/* The cookie for an open from addr with this nonce and client hint in the
 * time slot now_us / FAST_COOKIE_SLOT_US. Never 0 (0 = "no cookie"). */
uint64_t ferry__fast_cookie_make(const uint8_t key[FAST_COOKIE_KEY_BYTES],
                                 const ferry_addr *addr, uint64_t nonce,
                                 uint32_t client_hint, uint64_t now_us);
/* Whether cookie was made for these inputs in the current or the previous
 * time slot. */
int ferry__fast_cookie_check(const uint8_t key[FAST_COOKIE_KEY_BYTES],
                             const ferry_addr *addr, uint64_t nonce, uint32_t client_hint,
                             uint64_t now_us, uint64_t cookie);

#endif
