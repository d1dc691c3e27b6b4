/* Locator key getters (loc.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/err.h"
#include "loc.h"

int ferry__loc_fail(char *err, size_t err_len, const char *fmt, ...)
{
	if (err != NULL && err_len > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return FERRY_EBADLOC;
}

const char *ferry_loc_get(const ferry_loc *loc, const char *key)
{
	for (int i = 0; i < loc->nkeys; i++)
		if (strcmp(loc->kv[i].key, key) == 0)
			return loc->kv[i].val;
	return NULL;
}

/* Sizes and times may carry suffixes: k/m/g (x1024) for sizes; the getter
 * takes plain integers or those suffixes. */
int ferry__loc_u64(const ferry_loc *loc, const char *key, uint64_t min, uint64_t max,
                   uint64_t dflt, uint64_t *out, char *err, size_t err_len)
{
	const char *v = ferry_loc_get(loc, key);
	if (v == NULL) {
		*out = dflt;
		return 0;
	}
	if (v[0] < '0' || v[0] > '9') /* no sign, no whitespace */
		goto bad;
	errno = 0;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno != 0 || end == v)
		goto bad;
	uint64_t mult = 1;
	if (*end == 'k' || *end == 'K')
		mult = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mult = 1024 * 1024, end++;
	else if (*end == 'g' || *end == 'G')
		mult = 1024ull * 1024 * 1024, end++;
	if (*end != '\0' || (x != 0 && mult > UINT64_MAX / x))
		goto bad;
	x *= mult;
	if (x < min || x > max)
		return ferry__loc_fail(
		        err, err_len, "key '%s': value '%s' out of range [%llu, %llu]",
		        key, v, (unsigned long long)min, (unsigned long long)max);
	*out = x;
	return 0;
bad:
	return ferry__loc_fail(err, err_len, "key '%s': value '%s' is not a number", key,
	                       v);
}

int ferry__loc_double(const ferry_loc *loc, const char *key, double min, double max,
                      double dflt, double *out, char *err, size_t err_len)
{
	const char *v = ferry_loc_get(loc, key);
	if (v == NULL) {
		*out = dflt;
		return 0;
	}
	errno = 0;
	char *end;
	double x = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || isnan(x) ||
	    isspace((unsigned char)v[0]))
		return ferry__loc_fail(err, err_len,
		                       "key '%s': value '%s' is not a number", key, v);
	if (x < min || x > max)
		return ferry__loc_fail(err, err_len,
		                       "key '%s': value '%s' out of range [%g, %g]", key,
		                       v, min, max);
	*out = x;
	return 0;
}

void ferry__loc_sub(const ferry_loc *loc, int drv_index, ferry_loc *out)
{
	*out = *loc;
	/* Rebase the pointers into out's own store (offsets within one object:
	 * subtracting pointers into two different arrays is undefined). */
	for (int i = 0; i < out->nlayers; i++)
		out->layer[i] = out->store + (loc->layer[i] - loc->store);
	for (int i = 0; i < out->nkeys; i++) {
		out->kv[i].key = out->store + (loc->kv[i].key - loc->store);
		out->kv[i].val = out->store + (loc->kv[i].val - loc->store);
	}
	out->transport = NULL;
	out->ndrv = loc->ndrv - drv_index;
	for (int i = 0; i < out->ndrv; i++)
		out->drv[i] = loc->drv[drv_index + i];
}

/* One key's value against its declaration (loc.h / driver.h). */
int ferry__loc_check(const ferry_loc_key *k, const char *v, ferry_loc_val *out, char *err,
                     size_t err_len)
{
	ferry_loc_val val = {.set = v != NULL};
	int rc = 0;
	ferry_loc tmp = {.nkeys = 1};
	tmp.kv[0].key = k->name;
	tmp.kv[0].val = v;
	const ferry_loc *l = v != NULL ? &tmp : NULL;
	switch (k->kind) {
	case FERRY_LOC_UINT:
		if (l == NULL)
			val.u = k->dflt;
		else
			rc = ferry__loc_u64(l, k->name, k->min, k->max, k->dflt, &val.u,
			                    err, err_len);
		break;
	case FERRY_LOC_REAL:
		if (l == NULL)
			val.r = k->rdflt;
		else
			rc = ferry__loc_double(l, k->name, k->rmin, k->rmax, k->rdflt,
			                       &val.r, err, err_len);
		break;
	default:
		val.s = v != NULL ? v : k->sdflt;
		break;
	}
	if (rc == 0 && out != NULL)
		*out = val;
	return rc;
}

int ferry_loc_read(const ferry_loc *loc, const ferry_loc_key *table, ferry_loc_val *vals,
                   char *err, size_t err_len)
{
	for (int i = 0; table[i].name != NULL; i++) {
		int rc = ferry__loc_check(&table[i], ferry_loc_get(loc, table[i].name),
		                          &vals[i], err, err_len);
		if (rc != 0)
			return rc;
	}
	return 0;
}
