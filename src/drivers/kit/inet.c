/* Socket address helpers (see inet.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/loc.h"
#include "inet.h"

enum { INET_K_HOST, INET_K_PORT, INET_K_COUNT };
const ferry_loc_key ferry__inet_keys[INET_K_COUNT + 1] = {
        [INET_K_HOST] = {.name = "host", .kind = FERRY_LOC_STR},
        [INET_K_PORT] = {.name = "port", .kind = FERRY_LOC_UINT, .max = 65535},
};

int ferry__inet_resolve(const ferry_loc *loc, bool passive, int socktype,
                        struct sockaddr_storage *ss, socklen_t *len, char *err,
                        size_t err_len)
{
	ferry_loc_val v[INET_K_COUNT];
	int rc = ferry_loc_read(loc, ferry__inet_keys, v, err, err_len);
	if (rc != 0)
		return rc;
	const char *host = v[INET_K_HOST].s;
	if (host == NULL) {
		if (!passive) {
			snprintf(err, err_len, "missing key 'host'");
			return FERRY_EBADLOC;
		}
		host = "127.0.0.1";
	}
	if (!passive && !v[INET_K_PORT].set) {
		snprintf(err, err_len, "missing key 'port'");
		return FERRY_EBADLOC;
	}
	uint64_t port = v[INET_K_PORT].u;
	if (!passive && port == 0) {
		snprintf(err, err_len, "key 'port': value '0' out of range [1, 65535]");
		return FERRY_EBADLOC;
	}
	char name[256];
	size_t hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		snprintf(name, sizeof(name), "%.*s", (int)(hl - 2), host + 1);
	} else {
		snprintf(name, sizeof(name), "%s", host);
	}
	char serv[8];
	snprintf(serv, sizeof(serv), "%u", (unsigned)port);
	struct addrinfo hints = {.ai_socktype = socktype, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int g = getaddrinfo(name, serv, &hints, &res);
	if (g != 0 || res == NULL) {
		snprintf(err, err_len, "cannot resolve host '%s': %s", host,
		         gai_strerror(g));
		return FERRY_EBADLOC;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int ferry__inet_locator(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	unsigned port;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	} else {
		return -EAFNOSUPPORT;
	}
	int n = snprintf(out, len, "host=%s,port=%u", host, port);
	return n < 0 || (size_t)n >= len ? -ERANGE : n;
}

unsigned ferry__inet_path_payload(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	unsigned payload = 0;
	int mtu = 0;
	socklen_t ml = sizeof(mtu);
	/* Connecting a UDP socket sends nothing; it only picks the route. */
	if (connect(fd, sa, len) == 0) {
		if (sa->sa_family == AF_INET &&
		    getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &ml) == 0 && mtu > 28)
			payload = (unsigned)mtu - 28;
		else if (sa->sa_family == AF_INET6 &&
		         getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &ml) == 0 &&
		         mtu > 48)
			payload = (unsigned)mtu - 48;
	}
	close(fd);
	return payload;
}

/* A listener's datagrams leave through the interface that owns its
 * address, not through lo (the route to one's own address): the MTU of
 * that interface. 0 for a wildcard or an address no interface has. */
unsigned ferry__inet_if_payload(const struct sockaddr *sa)
{
	struct ifaddrs *ifs;
	if (getifaddrs(&ifs) != 0)
		return 0;
	unsigned payload = 0;
	for (struct ifaddrs *i = ifs; i != NULL && payload == 0; i = i->ifa_next) {
		const struct sockaddr *a = i->ifa_addr;
		if (a == NULL || a->sa_family != sa->sa_family)
			continue;
		bool same =
		        a->sa_family == AF_INET
		                ? ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		                          ((const struct sockaddr_in *)sa)
		                                  ->sin_addr.s_addr
		                : memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		                         &((const struct sockaddr_in6 *)sa)->sin6_addr,
		                         sizeof(struct in6_addr)) == 0;
		if (!same)
			continue;
		struct ifreq r;
		memset(&r, 0, sizeof(r));
		snprintf(r.ifr_name, sizeof(r.ifr_name), "%s", i->ifa_name);
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && ioctl(fd, SIOCGIFMTU, &r) == 0) {
			unsigned hdr = sa->sa_family == AF_INET ? 28 : 48;
			payload = r.ifr_mtu > (int)hdr ? (unsigned)r.ifr_mtu - hdr : 0;
		}
		if (fd >= 0)
			close(fd);
	}
	freeifaddrs(ifs);
	return payload;
}
