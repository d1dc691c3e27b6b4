/* Locator parsing: grammar, stack shape and key ownership are checked once,
 * here, so every later failure is about the network and not the text. Every
 * error message quotes the part of the locator that is wrong. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "locator.h"
#include "transport.h"

/* Keys every stack accepts. */
static const char *const loc_common_keys[] = {"pcap", "pcap_max", "pcap_files",
                                              "pcap_snap", NULL};

static bool loc_name_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static bool loc_in_list(const char *const *list, const char *key)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(*list, key) == 0)
			return true;
	return false;
}

/* The declaration of key in a driver's key tables, or NULL. */
static const ferry_loc_key *loc_key_decl(const ferry_driver_ops *d, const char *key)
{
	for (const ferry_loc_key *const *t = d->key_tables; t != NULL && *t != NULL; t++)
		for (const ferry_loc_key *k = *t; k->name != NULL; k++)
			if (strcmp(k->name, key) == 0)
				return k;
	return NULL;
}

/* Is key accepted by some layer? A declared key's value is checked
 * against its declaration here, so a bad value is refused at parse time
 * with the key named (FERRY_EBADLOC in *rc and err). */
static bool loc_key_accepted(const ferry_loc *loc, const char *key, const char *val,
                             int *rc, char *err, size_t err_len)
{
	*rc = 0;
	if (loc_in_list(loc_common_keys, key))
		return true;
	if (loc->transport != NULL && loc_in_list(loc->transport->keys, key))
		return true;
	for (int i = 0; i < loc->ndrv; i++) {
		const ferry_loc_key *k = loc_key_decl(loc->drv[i], key);
		if (k != NULL) {
			*rc = ferry__loc_check(k, val, NULL, err, err_len);
			return true;
		}
		if (loc_in_list(loc->drv[i]->keys, key))
			return true;
	}
	return false;
}

/* Resolve layer names and check the stack's shape: [transport] wrappers*
 * bottom-driver, a datagram bottom needs a transport, a stream bottom takes
 * none, wrappers only wrap datagram drivers. */
static int loc_stack(ferry_loc *loc, const char *stack, char *err, size_t err_len)
{
	loc->transport = NULL;
	loc->ndrv = 0;
	for (int i = 0; i < loc->nlayers; i++) {
		const char *name = loc->layer[i];
		const ferry__transport_ops *t = ferry__transport_find(name);
		if (t != NULL) {
			if (i != 0)
				return ferry__loc_fail(
				        err, err_len,
				        "transport '%s' must come first in stack '%s'",
				        name, stack);
			loc->transport = t;
			continue;
		}
		const ferry_driver_ops *d = ferry_driver_find(name);
		if (d == NULL)
			return ferry__loc_fail(
			        err, err_len,
			        "unknown transport or driver '%s' in stack '%s'", name,
			        stack);
		if (loc->ndrv > 0 && !loc->drv[loc->ndrv - 1]->wrapper)
			return ferry__loc_fail(
			        err, err_len,
			        "driver '%s' cannot wrap '%s' in stack '%s'",
			        loc->drv[loc->ndrv - 1]->name, name, stack);
		loc->drv[loc->ndrv++] = d;
	}
	if (loc->ndrv == 0)
		return ferry__loc_fail(err, err_len, "stack '%s' names no driver", stack);
	const ferry_driver_ops *bottom = loc->drv[loc->ndrv - 1];
	if (bottom->wrapper)
		return ferry__loc_fail(err, err_len,
		                       "'%s' wraps a driver but none follows it in '%s'",
		                       bottom->name, stack);
	if (bottom->kind == FERRY_DRIVER_DATAGRAM && loc->transport == NULL)
		return ferry__loc_fail(err, err_len,
		                       "datagram driver '%s' needs a transport in front "
		                       "(fast+%s or unreliable+%s)",
		                       bottom->name, stack, stack);
	if (bottom->kind == FERRY_DRIVER_STREAM && loc->transport != NULL)
		return ferry__loc_fail(err, err_len,
		                       "stream driver '%s' takes no transport in front "
		                       "(use '%s' alone)",
		                       bottom->name, bottom->name);
	if (bottom->kind == FERRY_DRIVER_STREAM && loc->ndrv > 1)
		return ferry__loc_fail(err, err_len,
		                       "'%s' wraps datagram drivers only, not '%s'",
		                       loc->drv[0]->name, bottom->name);
	if (bottom->kind == FERRY_DRIVER_STREAM)
		loc->transport = &ferry__stream_ops;
	return 0;
}

int ferry__loc_parse(const char *text, ferry_loc *loc, char *err, size_t err_len)
{
	memset(loc, 0, sizeof(*loc));
	if (text == NULL || text[0] == '\0')
		return ferry__loc_fail(err, err_len, "empty locator");
	size_t n = strlen(text);
	if (n >= FERRY_LOC_MAX_BYTES)
		return ferry__loc_fail(err, err_len, "locator longer than %d bytes",
		                       FERRY_LOC_MAX_BYTES - 1);
	memcpy(loc->text, text, n + 1);
	memcpy(loc->store, text, n + 1);

	char *stack = loc->store;
	char *keys = strchr(stack, ':');
	if (keys != NULL)
		*keys++ = '\0';
	if (stack[0] == '\0')
		return ferry__loc_fail(err, err_len,
		                       "locator '%s' has no stack before ':'", text);

	/* Split the stack on '+'. Keep an unsplit copy for messages. */
	char stack_copy[FERRY_LOC_MAX_BYTES];
	snprintf(stack_copy, sizeof(stack_copy), "%s", stack);
	for (char *p = stack;;) {
		char *plus = strchr(p, '+');
		if (plus != NULL)
			*plus = '\0';
		if (p[0] == '\0')
			return ferry__loc_fail(err, err_len,
			                       "empty layer name in stack '%s'",
			                       stack_copy);
		if (!loc_name_ok(p))
			return ferry__loc_fail(err, err_len,
			                       "bad character in layer name '%s'", p);
		if (loc->nlayers == FERRY_LOC_MAX_LAYERS)
			return ferry__loc_fail(err, err_len,
			                       "stack '%s' has more than %d layers",
			                       stack_copy, FERRY_LOC_MAX_LAYERS);
		loc->layer[loc->nlayers++] = p;
		if (plus == NULL)
			break;
		p = plus + 1;
	}
	int rc = loc_stack(loc, stack_copy, err, err_len);
	if (rc != 0)
		return rc;

	/* Keys: "k=v,k=v". A trailing empty list ("udp:") is allowed. */
	if (keys == NULL || keys[0] == '\0')
		return 0;
	for (char *p = keys;;) {
		char *comma = strchr(p, ',');
		if (comma != NULL)
			*comma = '\0';
		char *eq = strchr(p, '=');
		if (p[0] == '\0')
			return ferry__loc_fail(err, err_len,
			                       "empty key=value item at byte %d of '%s'",
			                       (int)(p - loc->store), text);
		if (eq == NULL)
			return ferry__loc_fail(err, err_len, "key '%s' has no '=value'",
			                       p);
		*eq = '\0';
		if (p[0] == '\0')
			return ferry__loc_fail(err, err_len, "empty key before '=%s'",
			                       eq + 1);
		if (!loc_name_ok(p))
			return ferry__loc_fail(err, err_len, "bad character in key '%s'",
			                       p);
		if (eq[1] == '\0')
			return ferry__loc_fail(err, err_len,
			                       "key '%s' has an empty value", p);
		if (ferry_loc_get(loc, p) != NULL)
			return ferry__loc_fail(err, err_len, "duplicate key '%s'", p);
		int vrc;
		if (!loc_key_accepted(loc, p, eq + 1, &vrc, err, err_len))
			return ferry__loc_fail(err, err_len,
			                       "unknown key '%s' for stack '%s'", p,
			                       stack_copy);
		if (vrc != 0)
			return vrc;
		if (loc->nkeys == FERRY_LOC_MAX_KEYS)
			return ferry__loc_fail(err, err_len, "more than %d keys",
			                       FERRY_LOC_MAX_KEYS);
		loc->kv[loc->nkeys].key = p;
		loc->kv[loc->nkeys].val = eq + 1;
		loc->nkeys++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return 0;
}
