/* Unit tests for locator parsing (src/transport/locator.c).
 *
 * Acceptance criterion: every kind of bad input yields FERRY_EBADLOC with a
 * message naming the bad part. Each bad case below is a locator and the text
 * its message must contain. Good locators are checked field by field, then
 * the typed getters, the sub-locator a wrapper hands its inner driver, and
 * the same errors seen through the public API (ferry_ctx_errmsg). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/ferry.h"
#include "ferry/driver.h"
#include "transport/locator.h"
#include "transport/transport.h"

/* Big enough for every message locator.c writes, so a missing part is a
 * wording problem and not truncation (truncation has its own test). */
#define ERR_BYTES 1024

typedef struct bad_case {
	const char *loc;
	const char *part; /* the message must contain this */
} bad_case;

/* Parse loc expecting FERRY_EBADLOC and a message containing part. */
static void expect_bad(const char *loc, const char *part)
{
	ferry_loc l;
	char err[ERR_BYTES];
	memset(err, 0, sizeof(err));
	int rc = ferry__loc_parse(loc, &l, err, sizeof(err));
	if (rc != FERRY_EBADLOC)
		fail_msg("locator '%s': rc %d (%s), want FERRY_EBADLOC",
		         loc ? loc : "(null)", rc, ferry_err_name(rc));
	if (err[0] == '\0')
		fail_msg("locator '%s': empty message", loc ? loc : "(null)");
	if (part != NULL && strstr(err, part) == NULL)
		fail_msg("locator '%s': message \"%s\" does not name '%s'",
		         loc ? loc : "(null)", err, part);
}

static void expect_bad_all(const bad_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		expect_bad(cases[i].loc, cases[i].part);
}

static void parse_ok(const char *text, ferry_loc *l)
{
	char err[ERR_BYTES] = "";
	int rc = ferry__loc_parse(text, l, err, sizeof(err));
	if (rc != 0)
		fail_msg("locator '%s': rc %d, message \"%s\"", text, rc, err);
}

/* Bad input --------------------------------------------------------------*/

static void test_null_and_empty(void **state)
{
	(void)state;
	expect_bad(NULL, "empty");
	expect_bad("", "empty");
	/* A NULL message buffer must be tolerated too. */
	ferry_loc l;
	assert_int_equal(ferry__loc_parse("", &l, NULL, 0), FERRY_EBADLOC);
	assert_int_equal(ferry__loc_parse("unreliable+foo", &l, NULL, 0), FERRY_EBADLOC);
}

static void test_too_long(void **state)
{
	(void)state;
	char text[FERRY_LOC_MAX_BYTES + 16];
	/* Exactly FERRY_LOC_MAX_BYTES characters: one too many. */
	int n = snprintf(text, sizeof(text), "unreliable+udp:host=");
	memset(text + n, 'a', sizeof(text) - (size_t)n);
	text[FERRY_LOC_MAX_BYTES] = '\0';
	assert_int_equal(strlen(text), FERRY_LOC_MAX_BYTES);
	expect_bad(text, "511");
	/* Much longer. */
	memset(text + n, 'a', sizeof(text) - (size_t)n);
	text[sizeof(text) - 1] = '\0';
	expect_bad(text, "longer than");

	/* One byte shorter is within the limit (grammar-wise; host is a
	 * plain value). */
	char ok[FERRY_LOC_MAX_BYTES];
	memcpy(ok, text, FERRY_LOC_MAX_BYTES - 1);
	ok[FERRY_LOC_MAX_BYTES - 1] = '\0';
	ferry_loc l;
	parse_ok(ok, &l);
	assert_int_equal(strlen(ferry_loc_get(&l, "host")),
	                 FERRY_LOC_MAX_BYTES - 1 - (size_t)n);
}

static void test_stack_grammar(void **state)
{
	(void)state;
	static const bad_case cases[] = {
	        /* no stack before ':' */
	        {":port=1", ":port=1"},
	        {":", "no stack"},
	        /* empty layer names */
	        {"unreliable++udp", "unreliable++udp"},
	        {"+udp", "+udp"},
	        {"udp+", "udp+"},
	        {"+", "empty layer"},
	        {"unreliable+udp+:port=1", "unreliable+udp+"},
	        /* bad characters in a name */
	        {"unreliable+UDP", "UDP"},
	        {"unreliable+u-dp", "u-dp"},
	        {"unreliable+u dp", "u dp"},
	        {"unre.liable+udp", "unre.liable"},
	        {"unreliable+udp=1", "udp=1"},
	        {"unreliable+udp,port=1", "udp,port=1"},
	        {"unreliable+\xc3\xa9", "\xc3\xa9"},
	        /* the grammar rejects these, not the registry lookup */
	        {"unreliable+u-dp", "bad character in layer name 'u-dp'"},
	        {"unreliable+Udp", "bad character in layer name 'Udp'"},
	        {"unre.liable+udp", "bad character in layer name 'unre.liable'"},
	};
	expect_bad_all(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_too_many_layers(void **state)
{
	(void)state;
	/* FERRY_LOC_MAX_LAYERS + 1 layers. */
	char text[256] = "unreliable";
	for (int i = 1; i < FERRY_LOC_MAX_LAYERS; i++)
		strcat(text, "+lossy");
	strcat(text, "+loopback");
	expect_bad(text, text);
	expect_bad(text, "more than 6 layers");

	/* Exactly FERRY_LOC_MAX_LAYERS is fine. */
	char ok[256] = "unreliable";
	for (int i = 2; i < FERRY_LOC_MAX_LAYERS; i++)
		strcat(ok, "+lossy");
	strcat(ok, "+loopback");
	ferry_loc l;
	parse_ok(ok, &l);
	assert_int_equal(l.nlayers, FERRY_LOC_MAX_LAYERS);
	assert_int_equal(l.ndrv, FERRY_LOC_MAX_LAYERS - 1);
	assert_string_equal(l.drv[l.ndrv - 1]->name, "loopback");
}

static void test_stack_shape(void **state)
{
	(void)state;
	static const bad_case cases[] = {
	        /* unknown names */
	        {"unreliable+foo", "foo"},
	        {"foo", "foo"},
	        {"unreliable+lossy+foo_2", "foo_2"},
	        {"fast+unreliable+udp", "unreliable"}, /* two transports */
	        /* transport not first */
	        {"udp+unreliable", "unreliable"},
	        {"unreliable+unreliable+udp", "unreliable"},
	        {"lossy+unreliable+udp", "must come first"},
	        /* datagram driver without a transport */
	        {"udp:host=1.2.3.4,port=1", "udp"},
	        {"loopback", "loopback"},
	        {"lossy+loopback", "loopback"},
	        {"udp", "needs a transport"},
	        /* a transport alone */
	        {"unreliable", "unreliable"},
	        {"unreliable:maxmsg=5", "names no driver"},
	        /* a wrapper at the bottom */
	        {"unreliable+lossy", "lossy"},
	        {"unreliable+lossy+lossy", "lossy"},
	        {"unreliable+lossy:drop=0.5", "wraps a driver"},
	        /* a non-wrapper wrapping */
	        {"unreliable+udp+loopback", "udp"},
	        {"unreliable+udp+loopback", "loopback"},
	        {"unreliable+loopback+udp", "cannot wrap"},
	        {"unreliable+lossy+udp+loopback", "'udp' cannot wrap 'loopback'"},
	};
	expect_bad_all(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_key_grammar(void **state)
{
	(void)state;
	static const bad_case cases[] = {
	        /* key without '=' */
	        {"unreliable+udp:host", "host"},
	        {"unreliable+udp:host=a,port", "port"},
	        {"unreliable+udp:port", "has no '=value'"},
	        /* empty key */
	        {"unreliable+udp:=5", "=5"},
	        {"unreliable+udp:host=a,=5", "empty key"},
	        {"unreliable+udp:=", "empty key"},
	        /* empty value */
	        {"unreliable+udp:host=", "host"},
	        {"unreliable+udp:host=a,port=", "port"},
	        {"unreliable+udp:port=", "empty value"},
	        /* empty items */
	        {"unreliable+udp:host=a,,port=1", ",,"},
	        {"unreliable+udp:,host=a", ":,"},
	        {"unreliable+udp:host=a,", "host=a,"},
	        {"unreliable+udp:,", "empty key=value item"},
	        /* duplicate keys */
	        {"unreliable+udp:port=1,port=2", "port"},
	        {"unreliable+udp:host=a,port=1,host=b", "duplicate key 'host'"},
	        /* unknown keys */
	        {"unreliable+udp:colour=red", "colour"},
	        {"unreliable+udp:host=a,colour=red", "colour"},
	        {"unreliable+loopback:host=a", "host"}, /* udp's, not loopback's */
	        {"unreliable+udp:drop=0.5", "drop"},    /* lossy's, not in stack */
	        {"unreliable+udp:colour=red", "unknown key"},
	        /* bad characters in a key */
	        {"unreliable+udp:Host=a", "Host"},
	        {"unreliable+udp:ho-st=a", "ho-st"},
	        {"unreliable+udp:ho st=a", "ho st"},
	        {"unreliable+udp:ho+st=a", "ho+st"},
	        {"unreliable+udp:ho:st=a", "ho:st"},
	        {"unreliable+udp:host=a,P=1", "bad character in key 'P'"},
	        {"unreliable+udp:ho-st=a", "bad character in key 'ho-st'"},
	        {"unreliable+udp:ho.st=a", "bad character in key 'ho.st'"},
	};
	expect_bad_all(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Short and absent message buffers are handled. */
static void test_small_err_buffer(void **state)
{
	(void)state;
	ferry_loc l;
	char err[ERR_BYTES];
	assert_int_equal(ferry__loc_parse("unreliable+udp:port=1,colour=red", &l, err,
	                                  sizeof(err)),
	                 FERRY_EBADLOC);
	/* The message is NUL-terminated within the buffer even when small. */
	char small[8];
	memset(small, 'x', sizeof(small));
	assert_int_equal(
	        ferry__loc_parse("unreliable+udp:colour=red", &l, small, sizeof(small)),
	        FERRY_EBADLOC);
	assert_true(memchr(small, '\0', sizeof(small)) != NULL);
}

/* Good input -------------------------------------------------------------*/

static void test_good_udp(void **state)
{
	(void)state;
	ferry_loc l;
	parse_ok("unreliable+udp:host=127.0.0.1,port=5", &l);
	assert_string_equal(l.text, "unreliable+udp:host=127.0.0.1,port=5");
	assert_int_equal(l.nlayers, 2);
	assert_string_equal(l.layer[0], "unreliable");
	assert_string_equal(l.layer[1], "udp");
	assert_non_null(l.transport);
	assert_ptr_equal(l.transport, &ferry__unreliable_ops);
	assert_string_equal(l.transport->name, "unreliable");
	assert_int_equal(l.ndrv, 1);
	assert_ptr_equal(l.drv[0], ferry_driver_find("udp"));
	assert_string_equal(l.drv[0]->name, "udp");
	assert_int_equal(l.nkeys, 2);
	assert_string_equal(ferry_loc_get(&l, "host"), "127.0.0.1");
	assert_string_equal(ferry_loc_get(&l, "port"), "5");
	assert_null(ferry_loc_get(&l, "mtu"));
	assert_null(ferry_loc_get(&l, "colour"));
	assert_null(ferry_loc_get(&l, ""));
}

static void test_good_lossy(void **state)
{
	(void)state;
	ferry_loc l;
	parse_ok("unreliable+lossy+loopback:drop=0.1,seed=3,port=7", &l);
	assert_int_equal(l.nlayers, 3);
	assert_string_equal(l.transport->name, "unreliable");
	assert_int_equal(l.ndrv, 2);
	assert_string_equal(l.drv[0]->name, "lossy");
	assert_string_equal(l.drv[1]->name, "loopback");
	assert_true(l.drv[0]->wrapper);
	assert_false(l.drv[1]->wrapper);
	assert_int_equal(l.nkeys, 3);
	assert_string_equal(ferry_loc_get(&l, "drop"), "0.1");
	assert_string_equal(ferry_loc_get(&l, "seed"), "3");
	assert_string_equal(ferry_loc_get(&l, "port"), "7");
	/* Key order is kept. */
	assert_string_equal(l.kv[0].key, "drop");
	assert_string_equal(l.kv[1].key, "seed");
	assert_string_equal(l.kv[2].key, "port");
}

static void test_good_no_keys(void **state)
{
	(void)state;
	ferry_loc l;
	parse_ok("unreliable+loopback", &l);
	assert_int_equal(l.nlayers, 2);
	assert_int_equal(l.ndrv, 1);
	assert_string_equal(l.drv[0]->name, "loopback");
	assert_string_equal(l.transport->name, "unreliable");
	assert_int_equal(l.nkeys, 0);
	assert_null(ferry_loc_get(&l, "port"));

	/* An empty key list after ':' is allowed. */
	parse_ok("unreliable+udp:", &l);
	assert_int_equal(l.nlayers, 2);
	assert_int_equal(l.ndrv, 1);
	assert_string_equal(l.drv[0]->name, "udp");
	assert_int_equal(l.nkeys, 0);
	assert_string_equal(l.text, "unreliable+udp:");
}

static void test_good_ipv6(void **state)
{
	(void)state;
	ferry_loc l;
	/* Only the first ':' splits the stack from the keys. */
	parse_ok("unreliable+udp:host=::1,port=9", &l);
	assert_int_equal(l.nlayers, 2);
	assert_string_equal(l.drv[0]->name, "udp");
	assert_int_equal(l.nkeys, 2);
	assert_string_equal(ferry_loc_get(&l, "host"), "::1");
	assert_string_equal(ferry_loc_get(&l, "port"), "9");

	parse_ok("unreliable+udp:host=[fe80::1:2]", &l);
	assert_string_equal(ferry_loc_get(&l, "host"), "[fe80::1:2]");
	/* '=' inside a value belongs to the value. */
	parse_ok("unreliable+udp:host=a=b", &l);
	assert_string_equal(ferry_loc_get(&l, "host"), "a=b");
}

static void test_good_common_and_transport_keys(void **state)
{
	(void)state;
	ferry_loc l;
	/* pcap is accepted by every stack. */
	parse_ok("unreliable+udp:pcap=/tmp/x.pcap,port=1", &l);
	assert_string_equal(ferry_loc_get(&l, "pcap"), "/tmp/x.pcap");
	parse_ok("unreliable+loopback:pcap=1", &l);
	assert_string_equal(ferry_loc_get(&l, "pcap"), "1");
	parse_ok("unreliable+lossy+udp:pcap=p", &l);
	assert_string_equal(ferry_loc_get(&l, "pcap"), "p");
	/* The transport's keys, and every layer's keys, are accepted. */
	parse_ok("unreliable+lossy+udp:maxmsg=1m,drop=0.5,host=h,mtu=1000", &l);
	assert_int_equal(l.nkeys, 4);
	assert_string_equal(ferry_loc_get(&l, "maxmsg"), "1m");
	assert_string_equal(ferry_loc_get(&l, "drop"), "0.5");
	assert_string_equal(ferry_loc_get(&l, "host"), "h");
	assert_string_equal(ferry_loc_get(&l, "mtu"), "1000");
	/* Names with digits and underscores. */
	parse_ok("unreliable+lossy+loopback:delay_us=5", &l);
	assert_string_equal(ferry_loc_get(&l, "delay_us"), "5");
}

/* Every key a layer declares is accepted for a stack containing it. */
static void test_every_declared_key_accepted(void **state)
{
	(void)state;
	for (int i = 0; i < ferry_driver_count(); i++) {
		const ferry_driver_ops *d = ferry_driver_at(i);
		/* Declared keys: a value inside the declared range parses, one
		 * outside is refused at parse time, naming the key. */
		for (const ferry_loc_key *const *t = d->key_tables;
		     t != NULL && *t != NULL; t++)
			for (const ferry_loc_key *k = *t; k->name != NULL; k++) {
				char text[160], val[40];
				const char *stack = d->kind == FERRY_DRIVER_STREAM
				                            ? ""
				                            : "unreliable+";
				const char *inner = d->wrapper ? "+loopback" : "";
				if (k->kind == FERRY_LOC_UINT)
					snprintf(val, sizeof(val), "%llu",
					         (unsigned long long)k->max);
				else if (k->kind == FERRY_LOC_REAL)
					snprintf(val, sizeof(val), "%g", k->rmax);
				else
					snprintf(val, sizeof(val), "x");
				snprintf(text, sizeof(text), "%s%s%s:%s=%s", stack,
				         d->name, inner, k->name, val);
				ferry_loc l;
				parse_ok(text, &l);
				assert_string_equal(ferry_loc_get(&l, k->name), val);
				if (k->kind == FERRY_LOC_UINT && k->max < UINT64_MAX) {
					snprintf(text, sizeof(text), "%s%s%s:%s=%llu",
					         stack, d->name, inner, k->name,
					         (unsigned long long)k->max + 1);
					expect_bad(text, k->name);
				}
				if (k->kind == FERRY_LOC_REAL) {
					snprintf(text, sizeof(text), "%s%s%s:%s=%g",
					         stack, d->name, inner, k->name,
					         k->rmax + 1);
					expect_bad(text, "out of range");
				}
			}
		for (const char *const *k = d->keys; k != NULL && *k != NULL; k++) {
			char text[128];
			snprintf(text, sizeof(text), "%s%s%s:%s=1",
			         d->kind == FERRY_DRIVER_STREAM ? "" : "unreliable+",
			         d->name, d->wrapper ? "+loopback" : "", *k);
			ferry_loc l;
			parse_ok(text, &l);
			assert_string_equal(ferry_loc_get(&l, *k), "1");
		}
	}
	for (const char *const *k = ferry__unreliable_ops.keys; *k != NULL; k++) {
		char text[128];
		snprintf(text, sizeof(text), "unreliable+loopback:%s=1", *k);
		ferry_loc l;
		parse_ok(text, &l);
	}
#if FERRY_HAVE_TCP
	/* A stream driver brings the stream transport and its keys. */
	for (const char *const *k = ferry__stream_ops.keys; *k != NULL; k++) {
		char text[128];
		snprintf(text, sizeof(text), "tcp:%s=1", *k);
		ferry_loc l;
		parse_ok(text, &l);
		assert_ptr_equal(l.transport, &ferry__stream_ops);
	}
	char err[ERR_BYTES];
	ferry_loc l;
	assert_int_equal(ferry__loc_parse("stream+tcp:port=1", &l, err, sizeof(err)),
	                 FERRY_EBADLOC);
	assert_int_equal(ferry__loc_parse("fast+tcp:port=1", &l, err, sizeof(err)),
	                 FERRY_EBADLOC);
	assert_non_null(strstr(err, "takes no transport"));
#endif
}

/* Typed getters ----------------------------------------------------------*/

/* A locator holding exactly text's key=value items, unchecked: what the
 * getters see without the parser's checks against the drivers' declared
 * key tables (which would refuse most of the values these tests feed). */
static void raw_loc(const char *text, ferry_loc *l)
{
	static char kvbuf[FERRY_LOC_MAX_BYTES];
	const char *colon = strchr(text, ':');
	char stack[64];
	snprintf(stack, sizeof(stack), "%.*s",
	         colon != NULL ? (int)(colon - text) : (int)strlen(text), text);
	parse_ok(stack, l);
	if (colon == NULL)
		return;
	snprintf(kvbuf, sizeof(kvbuf), "%s", colon + 1);
	for (char *p = kvbuf; p != NULL && *p != '\0';) {
		char *c = strchr(p, ',');
		if (c != NULL)
			*c++ = '\0';
		char *eq = strchr(p, '=');
		assert_non_null(eq);
		*eq++ = '\0';
		l->kv[l->nkeys].key = p;
		l->kv[l->nkeys].val = eq;
		l->nkeys++;
		p = c;
	}
}

static int get_u64(const char *text, const char *key, uint64_t min, uint64_t max,
                   uint64_t dflt, uint64_t *out, char *err)
{
	ferry_loc l;
	raw_loc(text, &l);
	*out = 0xdeadbeef;
	err[0] = '\0';
	return ferry__loc_u64(&l, key, min, max, dflt, out, err, ERR_BYTES);
}

static void expect_u64(const char *text, uint64_t min, uint64_t max, uint64_t want)
{
	char err[ERR_BYTES];
	uint64_t v;
	int rc = get_u64(text, "mtu", min, max, 77, &v, err);
	if (rc != 0)
		fail_msg("'%s': rc %d, message \"%s\"", text, rc, err);
	if (v != want)
		fail_msg("'%s': got %llu, want %llu", text, (unsigned long long)v,
		         (unsigned long long)want);
}

static void expect_u64_bad(const char *text, uint64_t min, uint64_t max, const char *val,
                           const char *part)
{
	char err[ERR_BYTES];
	uint64_t v;
	int rc = get_u64(text, "mtu", min, max, 77, &v, err);
	if (rc != FERRY_EBADLOC)
		fail_msg("'%s': rc %d (value %llu), want FERRY_EBADLOC", text, rc,
		         (unsigned long long)v);
	if (strstr(err, "mtu") == NULL || strstr(err, val) == NULL ||
	    (part != NULL && strstr(err, part) == NULL))
		fail_msg("'%s': message \"%s\" should name 'mtu', '%s'%s%s", text, err,
		         val, part ? " and " : "", part ? part : "");
}

static void test_u64(void **state)
{
	(void)state;
	char err[ERR_BYTES];
	uint64_t v;
	/* Absent: the default. */
	assert_int_equal(get_u64("unreliable+udp:port=1", "mtu", 0, 100, 42, &v, err), 0);
	assert_int_equal(v, 42);
	assert_int_equal(get_u64("unreliable+udp", "mtu", 0, 100, 42, &v, err), 0);
	assert_int_equal(v, 42);

	expect_u64("unreliable+udp:mtu=0", 0, UINT64_MAX, 0);
	expect_u64("unreliable+udp:mtu=1500", 0, UINT64_MAX, 1500);
	expect_u64("unreliable+udp:mtu=007", 0, UINT64_MAX, 7);
	expect_u64("unreliable+udp:mtu=12k", 0, UINT64_MAX, 12288);
	expect_u64("unreliable+udp:mtu=12K", 0, UINT64_MAX, 12288);
	expect_u64("unreliable+udp:mtu=1m", 0, UINT64_MAX, 1048576);
	expect_u64("unreliable+udp:mtu=3M", 0, UINT64_MAX, 3u << 20);
	expect_u64("unreliable+udp:mtu=2g", 0, UINT64_MAX, 2ull << 30);
	expect_u64("unreliable+udp:mtu=0k", 0, UINT64_MAX, 0);
	expect_u64("unreliable+udp:mtu=18446744073709551615", 0, UINT64_MAX, UINT64_MAX);
	/* Largest value that survives the g suffix. */
	expect_u64("unreliable+udp:mtu=17179869183g", 0, UINT64_MAX,
	           17179869183ull << 30);
	/* Bounds are inclusive. */
	expect_u64("unreliable+udp:mtu=10", 10, 20, 10);
	expect_u64("unreliable+udp:mtu=20", 10, 20, 20);

	/* Malformed: message names key and value. */
	expect_u64_bad("unreliable+udp:mtu=abc", 0, UINT64_MAX, "abc", "not a number");
	expect_u64_bad("unreliable+udp:mtu=12x", 0, UINT64_MAX, "12x", NULL);
	expect_u64_bad("unreliable+udp:mtu=12kb", 0, UINT64_MAX, "12kb", NULL);
	expect_u64_bad("unreliable+udp:mtu=k", 0, UINT64_MAX, "k", NULL);
	expect_u64_bad("unreliable+udp:mtu=1.5", 0, UINT64_MAX, "1.5", NULL);
	expect_u64_bad("unreliable+udp:mtu=0x10", 0, UINT64_MAX, "0x10", NULL);
	expect_u64_bad("unreliable+udp:mtu= 5", 0, UINT64_MAX, " 5", NULL);
	expect_u64_bad("unreliable+udp:mtu=5 ", 0, UINT64_MAX, "5 ", NULL);
	/* Signs are not numbers here. */
	expect_u64_bad("unreliable+udp:mtu=-1", 0, UINT64_MAX, "-1", NULL);
	expect_u64_bad("unreliable+udp:mtu=-0", 0, UINT64_MAX, "-0", NULL);
	expect_u64_bad("unreliable+udp:mtu=+1", 0, UINT64_MAX, "+1", NULL);
	/* Overflow, with and without a suffix. */
	expect_u64_bad("unreliable+udp:mtu=99999999999999999999", 0, UINT64_MAX,
	               "99999999999999999999", NULL);
	expect_u64_bad("unreliable+udp:mtu=18446744073709551616", 0, UINT64_MAX,
	               "18446744073709551616", NULL);
	expect_u64_bad("unreliable+udp:mtu=17179869184g", 0, UINT64_MAX, "17179869184g",
	               NULL);
	expect_u64_bad("unreliable+udp:mtu=18446744073709551615k", 0, UINT64_MAX,
	               "18446744073709551615k", NULL);
	/* Out of range. */
	expect_u64_bad("unreliable+udp:mtu=9", 10, 20, "9", "out of range");
	expect_u64_bad("unreliable+udp:mtu=21", 10, 20, "21", "out of range");
	expect_u64_bad("unreliable+udp:mtu=1k", 10, 20, "1k", "out of range");
	expect_u64_bad("unreliable+udp:mtu=70000", 1, 65535, "70000", "65535");
	/* A failed get leaves *out alone. */
	assert_int_equal(get_u64("unreliable+udp:mtu=abc", "mtu", 0, 9, 1, &v, err),
	                 FERRY_EBADLOC);
	assert_int_equal(v, 0xdeadbeef);
}

/* Whitespace other than ' ' must not smuggle a sign past the check:
 * strtoull skips leading isspace() and then accepts '-'. */
static void test_u64_leading_space(void **state)
{
	(void)state;
	static const char *const vals[] = {"\t-1", "\t5", "\n7", "\v1", "\f1", "\r1"};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char text[64], err[ERR_BYTES];
		uint64_t v;
		snprintf(text, sizeof(text), "unreliable+udp:mtu=%s", vals[i]);
		int rc = get_u64(text, "mtu", 0, UINT64_MAX, 0, &v, err);
		if (rc != FERRY_EBADLOC)
			fail_msg("value '%s' accepted as %llu", text + 19,
			         (unsigned long long)v);
	}
	/* Same for the double getter: strtod skips leading whitespace. */
	static const char *const dvals[] = {" 0.5", "\t0.5", "\n-0"};
	for (size_t i = 0; i < sizeof(dvals) / sizeof(dvals[0]); i++) {
		char text[64], err[ERR_BYTES];
		ferry_loc l;
		double d;
		snprintf(text, sizeof(text), "unreliable+lossy+loopback:drop=%s",
		         dvals[i]);
		raw_loc(text, &l);
		int rc = ferry__loc_double(&l, "drop", 0, 1, 0, &d, err, sizeof(err));
		if (rc != FERRY_EBADLOC)
			fail_msg("value '%s' accepted as %g", dvals[i], d);
	}
}

static int get_double(const char *text, double min, double max, double *out, char *err)
{
	ferry_loc l;
	raw_loc(text, &l);
	*out = -12345;
	err[0] = '\0';
	return ferry__loc_double(&l, "drop", min, max, 0.25, out, err, ERR_BYTES);
}

static void expect_double_bad(const char *text, double min, double max, const char *val,
                              const char *part)
{
	char err[ERR_BYTES];
	double v;
	int rc = get_double(text, min, max, &v, err);
	if (rc != FERRY_EBADLOC)
		fail_msg("'%s': rc %d (value %g), want FERRY_EBADLOC", text, rc, v);
	if (strstr(err, "drop") == NULL || strstr(err, val) == NULL ||
	    (part != NULL && strstr(err, part) == NULL))
		fail_msg("'%s': message \"%s\" should name 'drop', '%s'%s%s", text, err,
		         val, part ? " and " : "", part ? part : "");
}

static void test_double(void **state)
{
	(void)state;
	char err[ERR_BYTES];
	double v;
	assert_int_equal(get_double("unreliable+lossy+loopback:port=1", 0, 1, &v, err),
	                 0);
	assert_true(v == 0.25);
	assert_int_equal(get_double("unreliable+lossy+loopback:drop=0.1", 0, 1, &v, err),
	                 0);
	assert_true(v == 0.1);
	assert_int_equal(get_double("unreliable+lossy+loopback:drop=0", 0, 1, &v, err),
	                 0);
	assert_true(v == 0);
	assert_int_equal(get_double("unreliable+lossy+loopback:drop=1", 0, 1, &v, err),
	                 0);
	assert_true(v == 1);
	assert_int_equal(get_double("unreliable+lossy+loopback:drop=1e-3", 0, 1, &v, err),
	                 0);
	assert_true(v == 1e-3);
	assert_int_equal(get_double("unreliable+lossy+loopback:drop=.5", 0, 1, &v, err),
	                 0);
	assert_true(v == 0.5);

	expect_double_bad("unreliable+lossy+loopback:drop=nan", 0, 1, "nan",
	                  "not a number");
	expect_double_bad("unreliable+lossy+loopback:drop=NAN", -INFINITY, INFINITY,
	                  "NAN", NULL);
	expect_double_bad("unreliable+lossy+loopback:drop=-nan", -INFINITY, INFINITY,
	                  "-nan", NULL);
	expect_double_bad("unreliable+lossy+loopback:drop=abc", 0, 1, "abc", NULL);
	expect_double_bad("unreliable+lossy+loopback:drop=0.5x", 0, 1, "0.5x", NULL);
	expect_double_bad("unreliable+lossy+loopback:drop=1e999", 0, INFINITY, "1e999",
	                  NULL);
	expect_double_bad("unreliable+lossy+loopback:drop=1.5", 0, 1, "1.5",
	                  "out of range");
	expect_double_bad("unreliable+lossy+loopback:drop=-0.1", 0, 1, "-0.1",
	                  "out of range");
	expect_double_bad("unreliable+lossy+loopback:drop=inf", 0, 1, "inf",
	                  "out of range");
	expect_double_bad("unreliable+lossy+loopback:drop=-inf", 0, 1, "-inf",
	                  "out of range");
	/* A failed get leaves *out alone. */
	assert_int_equal(get_double("unreliable+lossy+loopback:drop=2", 0, 1, &v, err),
	                 FERRY_EBADLOC);
	assert_true(v == -12345);
}

/* Sub-locators -----------------------------------------------------------*/

static void test_sub(void **state)
{
	(void)state;
	ferry_loc l, sub;
	parse_ok("unreliable+lossy+loopback:port=3", &l);
	ferry__loc_sub(&l, 1, &sub);
	assert_int_equal(sub.ndrv, 1);
	assert_ptr_equal(sub.drv[0], ferry_driver_find("loopback"));
	assert_string_equal(sub.drv[0]->name, "loopback");
	assert_null(sub.transport);
	assert_string_equal(ferry_loc_get(&sub, "port"), "3");
	/* The copy's pointers point into its own store, not the original's. */
	for (int i = 0; i < sub.nkeys; i++) {
		assert_true(sub.kv[i].key >= sub.store &&
		            sub.kv[i].key < sub.store + sizeof(sub.store));
		assert_true(sub.kv[i].val >= sub.store &&
		            sub.kv[i].val < sub.store + sizeof(sub.store));
	}
	for (int i = 0; i < sub.nlayers; i++)
		assert_true(sub.layer[i] >= sub.store &&
		            sub.layer[i] < sub.store + sizeof(sub.store));
	/* Wiping the original does not disturb the copy. */
	memset(&l, 0, sizeof(l));
	assert_string_equal(ferry_loc_get(&sub, "port"), "3");

	/* Index 0: every driver, still no transport. */
	parse_ok("unreliable+lossy+loopback:drop=0.5,port=3", &l);
	ferry__loc_sub(&l, 0, &sub);
	assert_int_equal(sub.ndrv, 2);
	assert_string_equal(sub.drv[0]->name, "lossy");
	assert_string_equal(sub.drv[1]->name, "loopback");
	assert_null(sub.transport);
	assert_int_equal(sub.nkeys, 2);
	assert_string_equal(ferry_loc_get(&sub, "drop"), "0.5");
	assert_string_equal(ferry_loc_get(&sub, "port"), "3");
	/* Getters work on the copy. */
	char err[ERR_BYTES];
	uint64_t port;
	assert_int_equal(ferry__loc_u64(&sub, "port", 1, 9, 0, &port, err, sizeof(err)),
	                 0);
	assert_int_equal(port, 3);
}

/* Through the public API -------------------------------------------------*/

static int ctx_setup(void **state)
{
	ferry_ctx *ctx = NULL;
	if (ferry_ctx_create(NULL, &ctx) != 0)
		return -1;
	*state = ctx;
	return 0;
}

static int ctx_teardown(void **state)
{
	ferry_ctx_destroy(*state);
	return 0;
}

static void expect_session_bad(ferry_ctx *ctx, const char *loc, const char *part)
{
	ferry_session *s = NULL;
	int rc = ferry_session_open(ctx, loc, &s);
	if (rc != FERRY_EBADLOC) {
		if (rc == 0)
			ferry_session_close(s);
		fail_msg("session '%s': rc %d (%s), want FERRY_EBADLOC (\"%s\")", loc, rc,
		         ferry_err_name(rc), ferry_ctx_errmsg(ctx));
	}
	const char *m = ferry_ctx_errmsg(ctx);
	assert_non_null(m);
	if (strstr(m, part) == NULL)
		fail_msg("session '%s': message \"%s\" does not name '%s'", loc, m, part);
}

static void test_api_session(void **state)
{
	ferry_ctx *ctx = *state;
	/* Parse errors. */
	expect_session_bad(ctx, "unreliable+udp:host=127.0.0.1,port=1,colour=red",
	                   "colour");
	expect_session_bad(ctx, "unreliable+foo:port=1", "foo");
	expect_session_bad(ctx, "udp:host=1.2.3.4,port=1", "udp");
	expect_session_bad(ctx, "", "empty");
	expect_session_bad(ctx, NULL, "empty");
	/* Driver errors: bad values, unresolvable hosts, missing keys. */
	expect_session_bad(ctx, "unreliable+udp:host=127.0.0.1,port=70000", "port");
	expect_session_bad(ctx, "unreliable+udp:host=127.0.0.1,port=70000", "70000");
	expect_session_bad(ctx, "unreliable+udp:host=127.0.0.1,port=0", "port");
	expect_session_bad(ctx, "unreliable+udp:host=127.0.0.1,port=x1", "x1");
	expect_session_bad(ctx, "unreliable+udp:host=no.such.host.invalid,port=1",
	                   "no.such.host.invalid");
	expect_session_bad(ctx, "unreliable+udp:host=127.0.0.1", "port");
	expect_session_bad(ctx, "unreliable+udp:port=1", "host");
	expect_session_bad(ctx, "unreliable+udp:host=127.0.0.1,port=1,mtu=5", "mtu");
	expect_session_bad(ctx, "unreliable+udp:host=127.0.0.1,port=1,maxmsg=z",
	                   "maxmsg");
	expect_session_bad(ctx, "unreliable+loopback", "port");
	expect_session_bad(ctx, "unreliable+lossy+loopback:port=1,drop=2", "drop");
	expect_session_bad(ctx, "unreliable+lossy+loopback:port=1,drop=nan", "nan");
	/* The context is still usable after all that. */
	expect_session_bad(ctx, "unreliable+udp:colour=red", "colour");
}

static void test_api_listen(void **state)
{
	ferry_ctx *ctx = *state;
	ferry_server *srv = NULL;
	assert_int_equal(ferry_server_create(ctx, &srv), 0);
	static const bad_case cases[] = {
	        {"unreliable+udp:host", "host"},
	        {"unreliable+udp:colour=red", "colour"},
	        {"udp+unreliable:port=0", "unreliable"},
	        {"unreliable+lossy", "lossy"},
	        {"unreliable+udp:host=127.0.0.1,port=65536", "65536"},
	        {"unreliable+udp:host=no.such.host.invalid,port=0",
	         "no.such.host.invalid"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = ferry_server_listen(srv, cases[i].loc);
		if (rc != FERRY_EBADLOC)
			fail_msg("listen '%s': rc %d (%s), want FERRY_EBADLOC",
			         cases[i].loc, rc, ferry_err_name(rc));
		const char *m = ferry_ctx_errmsg(ctx);
		if (strstr(m, cases[i].part) == NULL)
			fail_msg("listen '%s': message \"%s\" does not name '%s'",
			         cases[i].loc, m, cases[i].part);
	}
	char out[64];
	assert_int_equal(ferry_server_locator(srv, 0, out, sizeof(out)), -ERANGE);
	ferry_server_destroy(srv);
}

/* The bad part must survive the message buffer's size: the API reports into
 * a fixed buffer (FERRY_ERRMSG_BYTES, 256), so a long locator must not push
 * the bad part out of the message. */
static void test_bad_part_survives_truncation(void **state)
{
	(void)state;
	char host[300];
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	char text[FERRY_LOC_MAX_BYTES];
	snprintf(text, sizeof(text), "unreliable+udp:host=%s,,port=1", host);
	ferry_loc l;
	char err[256];
	assert_int_equal(ferry__loc_parse(text, &l, err, sizeof(err)), FERRY_EBADLOC);
	if (strstr(err, ",,") == NULL && strstr(err, "after 'host") == NULL &&
	    strstr(err, "byte") == NULL)
		fail_msg("message \"%s\" does not locate the empty item", err);

	/* A long bad value must not push the key's name out of a driver's
	 * message buffer (ferry_ep.errmsg, 160 bytes). */
	char zeros[200];
	memset(zeros, '0', sizeof(zeros) - 1);
	zeros[sizeof(zeros) - 1] = '\0';
	snprintf(text, sizeof(text), "unreliable+udp:port=%s70000", zeros);
	raw_loc(text, &l);
	char small[160];
	uint64_t port;
	assert_int_equal(
	        ferry__loc_u64(&l, "port", 1, 65535, 0, &port, small, sizeof(small)),
	        FERRY_EBADLOC);
	if (strstr(small, "port") == NULL)
		fail_msg("message \"%s\" does not name the key 'port'", small);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_null_and_empty),
	        cmocka_unit_test(test_too_long),
	        cmocka_unit_test(test_stack_grammar),
	        cmocka_unit_test(test_too_many_layers),
	        cmocka_unit_test(test_stack_shape),
	        cmocka_unit_test(test_key_grammar),
	        cmocka_unit_test(test_small_err_buffer),
	        cmocka_unit_test(test_good_udp),
	        cmocka_unit_test(test_good_lossy),
	        cmocka_unit_test(test_good_no_keys),
	        cmocka_unit_test(test_good_ipv6),
	        cmocka_unit_test(test_good_common_and_transport_keys),
	        cmocka_unit_test(test_every_declared_key_accepted),
	        cmocka_unit_test(test_u64),
	        cmocka_unit_test(test_u64_leading_space),
	        cmocka_unit_test(test_double),
	        cmocka_unit_test(test_sub),
	        cmocka_unit_test(test_bad_part_survives_truncation),
	        cmocka_unit_test_setup_teardown(test_api_session, ctx_setup,
	                                        ctx_teardown),
	        cmocka_unit_test_setup_teardown(test_api_listen, ctx_setup, ctx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
