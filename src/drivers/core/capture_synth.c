/* Packet capture's records: synthetic Ethernet/IP/UDP headers that label
 * each record with its endpoints (real addresses where they are sockaddrs,
 * stable synthetic ones otherwise), and the ferry bytes gathered up to the
 * snap length. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "capture_int.h"

#if FERRY_HAVE_PCAP
/* FNV-1a: a stable label for an address that is not a sockaddr. */
uint32_t ferry__cap_hash(const ferry_addr *a)
{
	uint32_t h = 2166136261u;
	for (uint32_t i = 0; i < a->len && i < FERRY_ADDR_BYTES; i++)
		h = (h ^ a->u.bytes[i]) * 16777619u;
	return h;
}

/* sockaddr bytes (udp, tcp) as they are; anything else (loopback, infud,
 * an unknown local address) as 127.77.x.y / fd77::x:y and port
 * 49152 + (h mod 16384), from a hash of its bytes, so both ends of a
 * conversation label it alike. */
void ferry__cap_inet_of(const ferry_addr *a, int want_family, cap_inet *out)
{
	memset(out, 0, sizeof(*out));
	sa_family_t fam = 0;
	if (a->len >= sizeof(sa_family_t))
		memcpy(&fam, a->u.bytes, sizeof(fam));
	if (fam == AF_INET && a->len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;
		memcpy(&sin, a->u.bytes, sizeof(sin));
		out->family = AF_INET;
		memcpy(out->ip, &sin.sin_addr, 4);
		out->port = ntohs(sin.sin_port);
		return;
	}
	if (fam == AF_INET6 && a->len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, a->u.bytes, sizeof(sin6));
		out->family = AF_INET6;
		memcpy(out->ip, &sin6.sin6_addr, 16);
		out->port = ntohs(sin6.sin6_port);
		return;
	}
	uint32_t h = ferry__cap_hash(a);
	out->port = (uint16_t)(CAP_SYNTH_PORT_BASE + (h >> 18));
	if (want_family == AF_INET6) {
		out->family = AF_INET6;
		out->ip[0] = 0xfd;
		out->ip[1] = 0x77;
		out->ip[14] = (uint8_t)(h >> 8);
		out->ip[15] = (uint8_t)h;
	} else {
		out->family = AF_INET;
		out->ip[0] = 127;
		out->ip[1] = 77;
		out->ip[2] = (uint8_t)(h >> 8);
		out->ip[3] = (uint8_t)h;
	}
}

bool ferry__cap_ip_zero(const cap_inet *a)
{
	static const uint8_t zero[16];
	return memcmp(a->ip, zero, a->family == AF_INET ? 4 : 16) == 0;
}

bool ferry__cap_ip_loopback(const cap_inet *a)
{
	static const uint8_t v6lo[16] = {[15] = 1};
	return a->family == AF_INET ? a->ip[0] == 127 : memcmp(a->ip, v6lo, 16) == 0;
}

/* Local and remote labels for one record: the same family on both sides
 * (a synthetic label follows the real one's), and a wildcard local
 * address shown as the peer's when the peer is on this host. */
void ferry__cap_ends(const ferry_addr *local, const ferry_addr *peer, cap_inet *l,
                     cap_inet *p)
{
	ferry__cap_inet_of(peer, AF_INET, p);
	ferry__cap_inet_of(local, p->family, l);
	if (l->family != p->family)
		ferry__cap_inet_of(peer, l->family, p);
	if (ferry__cap_ip_zero(l) && ferry__cap_ip_loopback(p))
		memcpy(l->ip, p->ip, sizeof(l->ip));
}

uint16_t ferry__cap_csum(const uint8_t *p, size_t n)
{
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

void ferry__cap_put16be(uint8_t *p, uint32_t v)
{
	v = v > CAP_IP_LEN_MAX ? CAP_IP_LEN_MAX : v;
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Ethernet + IP + UDP for a UDP payload of len bytes (the lengths in the
 * headers saturate at 65535: a stream message may be longer; the pcap
 * record's original length is always exact). Returns header bytes. */
size_t ferry__cap_l2l4(uint8_t *o, const cap_inet *src, const cap_inet *dst, uint64_t len)
{
	static const uint8_t macs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
	memcpy(o, macs, sizeof(macs));
	uint8_t *ip = o + CAP_ETH_BYTES;
	uint8_t *udp;
	uint64_t udp_len = len + CAP_UDP_BYTES;
	if (src->family == AF_INET) {
		o[12] = 0x08, o[13] = 0x00;
		memset(ip, 0, CAP_IP4_BYTES);
		ip[0] = 0x45;
		ferry__cap_put16be(ip + 2,
		                   (uint32_t)(udp_len + CAP_IP4_BYTES > CAP_IP_LEN_MAX
		                                      ? CAP_IP_LEN_MAX
		                                      : udp_len + CAP_IP4_BYTES));
		ip[6] = 0x40; /* DF */
		ip[8] = 64;   /* TTL */
		ip[9] = IPPROTO_UDP;
		memcpy(ip + 12, src->ip, 4);
		memcpy(ip + 16, dst->ip, 4);
		uint16_t c = ferry__cap_csum(ip, CAP_IP4_BYTES);
		ip[10] = (uint8_t)(c >> 8);
		ip[11] = (uint8_t)c;
		udp = ip + CAP_IP4_BYTES;
	} else {
		o[12] = 0x86, o[13] = 0xdd;
		memset(ip, 0, CAP_IP6_BYTES);
		ip[0] = 0x60;
		ferry__cap_put16be(
		        ip + 4,
		        (uint32_t)(udp_len > CAP_IP_LEN_MAX ? CAP_IP_LEN_MAX : udp_len));
		ip[6] = IPPROTO_UDP;
		ip[7] = 64;
		memcpy(ip + 8, src->ip, 16);
		memcpy(ip + 24, dst->ip, 16);
		udp = ip + CAP_IP6_BYTES;
	}
	ferry__cap_put16be(udp, src->port);
	ferry__cap_put16be(udp + 2, dst->port);
	ferry__cap_put16be(
	        udp + 4, (uint32_t)(udp_len > CAP_IP_LEN_MAX ? CAP_IP_LEN_MAX : udp_len));
	udp[6] = udp[7] = 0; /* no checksum (legal on IPv4; docs/CAPTURE.md) */
	return (size_t)(udp + CAP_UDP_BYTES - o);
}

size_t ferry__cap_gather(uint8_t *o, size_t room, const cap_bytes *b)
{
	size_t n = b->a_len < room ? b->a_len : room;
	memcpy(o, b->a, n);
	if (b->it == NULL)
		return n;
	ferry_buf_iter it = *b->it; /* a copy: the caller's cursor stays */
	ferry_buf_seg seg;
	while (n < room && ferry_buf_iter_next(&it, &seg)) {
		size_t k = seg.len < room - n ? seg.len : room - n;
		if (seg.kind == FERRY_CHUNK_FILE) {
			ssize_t r = pread(seg.fd, o + n, k, seg.file_off);
			if (r < 0)
				r = 0;
			n += (size_t)r;
			if ((size_t)r < k)
				break;
		} else {
			memcpy(o + n, seg.data, k);
			n += k;
		}
	}
	return n;
}

#endif /* FERRY_HAVE_PCAP */
