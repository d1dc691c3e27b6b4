/* The driver registry: one static array, entries guarded by the build
 * configuration. tests/unit/test_registry.c checks that every driver meson
 * built is here (transports have shipped unreachable for want of this). */
#include <string.h>

#include "ferry/driver.h"
#include "ferry_config.h"

extern const ferry_driver_ops ferry__udp_driver;
extern const ferry_driver_ops ferry__loopback_driver;
extern const ferry_driver_ops ferry__lossy_driver;
extern const ferry_driver_ops ferry__tcp_driver;
extern const ferry_driver_ops ferry__splice_driver;
extern const ferry_driver_ops ferry__infud_driver;
extern const ferry_driver_ops ferry__infrc_driver;

static const ferry_driver_ops *const registry[] = {
#if FERRY_HAVE_UDP
	&ferry__udp_driver,
#endif
#if FERRY_HAVE_LOOPBACK
	&ferry__loopback_driver,
#endif
#if FERRY_HAVE_LOSSY
	&ferry__lossy_driver,
#endif
#if FERRY_HAVE_TCP
	&ferry__tcp_driver,
#endif
#if FERRY_HAVE_SPLICE
	&ferry__splice_driver,
#endif
#if FERRY_HAVE_INFUD
	&ferry__infud_driver,
#endif
#if FERRY_HAVE_INFRC
	&ferry__infrc_driver,
#endif
};

#define REGISTRY_LEN ((int)(sizeof(registry) / sizeof(registry[0])))

const ferry_driver_ops *ferry_driver_find(const char *name)
{
	for (int i = 0; i < REGISTRY_LEN; i++)
		if (strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}

int ferry_driver_count(void) { return REGISTRY_LEN; }

const ferry_driver_ops *ferry_driver_at(int i)
{
	return i >= 0 && i < REGISTRY_LEN ? registry[i] : NULL;
}
