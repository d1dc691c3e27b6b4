/* The transports a locator can name (the layer in front of a datagram
 * driver). One line per transport, like the driver registry. */
#include <string.h>

#include "transport.h"

const ferry__transport_ops *const ferry__transports[FERRY_TRANSPORTS_MAX + 1] = {
        &ferry__unreliable_ops,
        &ferry__fast_ops,
        &ferry__stream_ops,
        NULL,
};

const ferry__transport_ops *ferry__transport_find(const char *name)
{
	for (int i = 0; ferry__transports[i] != NULL; i++)
		if (!ferry__transports[i]->implicit &&
		    strcmp(ferry__transports[i]->name, name) == 0)
			return ferry__transports[i];
	return NULL;
}
