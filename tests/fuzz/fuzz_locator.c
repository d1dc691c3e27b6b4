/* Fuzz harness: locator parsing (ferry__loc_parse, the typed getters,
 * ferry__loc_sub) and the error paths of ferry_session_open and
 * ferry_server_listen with whatever text the parser accepts.
 *
 * Input: the locator text (up to the first NUL). The open calls only run
 * for locators that stay on this host and stay small: a host must be a
 * loopback address (no DNS, no packets leave the host), a listener's port must be absent
 * or 0 (no fixed ports taken from other programs), and ring and socket buffer sizes are
 * capped (a million slots would be a slow, not a wrong, input). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ferry/ferry.h"
#include "transport/core.h"
#include "transport/locator.h"

#define FZ_SLOTS_MAX   1024
#define FZ_SOCKBUF_MAX (1u << 20)

static bool fz_loopback_host(const char *host)
{
	char name[256];
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
		snprintf(name, sizeof(name), "%.*s", (int)(n - 2), host + 1);
	else
		snprintf(name, sizeof(name), "%s", host);
	/* Loopback only: a session may send its handshake before it closes. */
	unsigned char a[16];
	if (inet_pton(AF_INET, name, a) == 1)
		return a[0] == 127;
	return inet_pton(AF_INET6, name, a) == 1 && memcmp(a, &in6addr_loopback, 16) == 0;
}

static bool fz_capped(const ferry_loc *loc, const char *key, uint64_t max)
{
	uint64_t v;
	char err[FERRY_LOC_ERR_BYTES];
	/* A malformed value is fine: the open refuses it. */
	return ferry__loc_u64(loc, key, 0, UINT64_MAX, 0, &v, err, sizeof(err)) != 0 ||
	       v <= max;
}

static bool fz_safe_to_open(const ferry_loc *loc)
{
	const char *host = ferry_loc_get(loc, "host");
	if (host != NULL && !fz_loopback_host(host))
		return false;
	if (ferry_loc_get(loc, "pcap") != NULL || ferry_loc_get(loc, "dev") != NULL)
		return false;
	return fz_capped(loc, "rxslots", FZ_SLOTS_MAX) &&
	       fz_capped(loc, "txslots", FZ_SLOTS_MAX) &&
	       fz_capped(loc, "sndbuf", FZ_SOCKBUF_MAX) &&
	       fz_capped(loc, "rcvbuf", FZ_SOCKBUF_MAX);
}

/* A datagram session over a real network driver sends its handshake at
 * once, to whatever local port the input names, which may belong to
 * another program's test server: those locators get the parse only (a
 * port of 0 or none is refused before anything is sent, so that error
 * path still runs). Stream drivers connect at the first call; loopback
 * stays in this process. */
static bool fz_session_sends(const ferry_loc *loc)
{
	const char *bottom = loc->drv[loc->ndrv - 1]->name;
	if (strcmp(bottom, "udp") != 0 && strcmp(bottom, "infud") != 0)
		return false;
	uint64_t port = 0;
	char err[FERRY_LOC_ERR_BYTES];
	return ferry__loc_u64(loc, "port", 0, UINT64_MAX, 0, &port, err, sizeof(err)) !=
	               0 ||
	       port != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[2 * FERRY_LOC_MAX_BYTES];
	if (size >= sizeof(text))
		size = sizeof(text) - 1;
	memcpy(text, data, size);
	text[size] = '\0';

	ferry_loc loc, sub;
	char err[FERRY_LOC_ERR_BYTES];
	if (ferry__loc_parse(text, &loc, err, sizeof(err)) != 0)
		return 0;
	/* Every key through both getters; every sub-stack. */
	for (int i = 0; i < loc.nkeys; i++) {
		uint64_t u;
		double d;
		ferry__loc_u64(&loc, loc.kv[i].key, 0, UINT64_MAX, 0, &u, err,
		               sizeof(err));
		ferry__loc_u64(&loc, loc.kv[i].key, 1, 65535, 0, &u, err, sizeof(err));
		ferry__loc_double(&loc, loc.kv[i].key, 0.0, 1.0, 0.0, &d, err,
		                  sizeof(err));
	}
	for (int i = 0; i < loc.ndrv; i++) {
		ferry__loc_sub(&loc, i, &sub);
		for (int k = 0; k < sub.nkeys; k++)
			if (ferry_loc_get(&sub, sub.kv[k].key) == NULL)
				__builtin_trap(); /* the rebased pointers lost a key */
	}
	if (!fz_safe_to_open(&loc))
		return 0;

	ferry_ctx *ctx;
	ferry_server *srv;
	ferry_session *s;
	if (ferry_ctx_create(NULL, &ctx) != 0)
		__builtin_trap();
	if (!fz_session_sends(&loc) && ferry_session_open(ctx, text, &s) == 0)
		ferry_session_close(s);
	uint64_t port = 0;
	if (ferry__loc_u64(&loc, "port", 0, UINT64_MAX, 0, &port, err, sizeof(err)) ==
	            0 &&
	    port == 0 && ferry_server_create(ctx, &srv) == 0) {
		if (ferry_server_listen(srv, text) == 0) {
			char bound[FERRY_LOC_MAX_BYTES];
			ferry_server_locator(srv, 0, bound, sizeof(bound));
			ferry_ctx_poll(ctx, 0);
		}
		ferry_server_destroy(srv);
	}
	ferry_ctx_poll(ctx, 0);
	ferry_ctx_destroy(ctx);
	return 0;
}
