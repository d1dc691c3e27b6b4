/* Little-endian loads and stores: the one copy every layer uses for wire
 * and file formats (ferry's wire is little-endian, docs/WIRE.md). Byte at a
 * time, so any alignment is fine; compilers fold these into single moves. */
#ifndef FERRY_BASE_LE_H
#define FERRY_BASE_LE_H
#include <stdint.h>

static inline void ferry__put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void ferry__put32(uint8_t *p, uint32_t v)
{
	ferry__put16(p, (uint16_t)v);
	ferry__put16(p + 2, (uint16_t)(v >> 16));
}

static inline void ferry__put64(uint8_t *p, uint64_t v)
{
	ferry__put32(p, (uint32_t)v);
	ferry__put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t ferry__get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t ferry__get32(const uint8_t *p)
{
	return ferry__get16(p) | (uint32_t)ferry__get16(p + 2) << 16;
}

static inline uint64_t ferry__get64(const uint8_t *p)
{
	return ferry__get32(p) | (uint64_t)ferry__get32(p + 4) << 32;
}

#endif
