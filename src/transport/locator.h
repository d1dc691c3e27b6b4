/* Locators: "STACK:key=value,..." parsed once into a ferry_loc.
 *
 * STACK is '+'-joined layer names, outermost first: an optional transport
 * (fast, unreliable) then drivers (wrappers like lossy, then one datagram or
 * stream driver at the bottom). Parsing checks the grammar, the names
 * against the transports and the driver registry, the stack's shape, and
 * that every key is accepted by some layer; errors are FERRY_EBADLOC with a
 * message naming the bad part. */
#ifndef FERRY_LOCATOR_H
#define FERRY_LOCATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/loc.h"

/* Parse and validate. 0, or FERRY_EBADLOC with a message in err. */
int ferry__loc_parse(const char *text, ferry_loc *loc, char *err, size_t err_len);

#endif
