/* The transports a locator can name (the layer in front of a datagram
 * driver). One line per transport, like the driver registry. */
#include <string.h>

#include "transport.h"

static const ferry__transport_ops *const transports[] = {
	&ferry__unreliable_ops,
};

const ferry__transport_ops *ferry__transport_find(const char *name)
{
	for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++)
		if (strcmp(transports[i]->name, name) == 0)
			return transports[i];
	return NULL;
}
