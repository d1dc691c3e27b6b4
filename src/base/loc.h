/* A parsed locator (ferry_loc) and the typed key getters every layer uses:
 * drivers read their keys with these, the transport's parser
 * (transport/locator.c) fills the struct. Keys are "key=value" pairs after
 * the ':' of "STACK:key=value,..."; the stack names resolve to the driver
 * and transport tables above this layer, which the struct only points to. */
#ifndef FERRY_BASE_LOC_H
#define FERRY_BASE_LOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/driver.h"

#define FERRY_LOC_MAX_BYTES  512
#define FERRY_LOC_MAX_LAYERS 6
#define FERRY_LOC_MAX_KEYS   24
#define FERRY_LOC_ERR_BYTES  160

struct ferry__transport_ops; /* transport/transport.h */

struct ferry_loc {
	char text[FERRY_LOC_MAX_BYTES];  /* the locator as given */
	char store[FERRY_LOC_MAX_BYTES]; /* NUL-split copy the pointers use */
	int nlayers;
	const char *layer[FERRY_LOC_MAX_LAYERS];
	/* Resolved stack: transport (NULL for stream drivers) and drivers,
	 * outermost first; drv[ndrv-1] is the bottom driver. */
	const struct ferry__transport_ops *transport;
	int ndrv;
	const ferry_driver_ops *drv[FERRY_LOC_MAX_LAYERS];
	int nkeys;
	struct {
		const char *key;
		const char *val;
	} kv[FERRY_LOC_MAX_KEYS];
};

/* Typed getters. Absent key: *out = dflt and 0. Present but malformed or
 * out of [min,max]: FERRY_EBADLOC with a message naming key and value. */
int ferry__loc_u64(const ferry_loc *loc, const char *key, uint64_t min, uint64_t max,
                   uint64_t dflt, uint64_t *out, char *err, size_t err_len);
int ferry__loc_double(const ferry_loc *loc, const char *key, double min, double max,
                      double dflt, double *out, char *err, size_t err_len);

/* Write a message to err (when err_len > 0) and return FERRY_EBADLOC: how
 * every locator error is reported. */
int ferry__loc_fail(char *err, size_t err_len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Check one value v (NULL: absent) against its declaration k; the parsed
 * value (or the default) in *out when out is not NULL. 0 or FERRY_EBADLOC
 * with err naming key and value. */
int ferry__loc_check(const ferry_loc_key *k, const char *v, ferry_loc_val *out, char *err,
                     size_t err_len);

/* A copy of loc whose stack starts at driver index i (drops the transport
 * and the layers above it): what a wrapper passes to its inner driver. */
void ferry__loc_sub(const ferry_loc *loc, int drv_index, ferry_loc *out);

#endif
