/* Verbs plumbing shared by infud and infrc (see ib.h). */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/loc.h"
#include "inet.h"
#include "ib.h"

#define IB_BOOT_VERSION  1
#define IB_BOOT_QUERY    1
#define IB_BOOT_ANSWER   2
#define IB_BOOT_RETRY_MS 100
#define IB_GRH_HOP_LIMIT 64

uint32_t ferry__ib_mtu_bytes(enum ibv_mtu m)
{
	switch (m) {
	case IBV_MTU_256:
		return 256;
	case IBV_MTU_512:
		return 512;
	case IBV_MTU_1024:
		return 1024;
	case IBV_MTU_2048:
		return 2048;
	case IBV_MTU_4096:
		return 4096;
	}
	return 0;
}

/* A port is usable when it is ACTIVE. */
static bool ib_port_active(struct ibv_context *ctx, uint8_t port,
                           struct ibv_port_attr *pa)
{
	return ibv_query_port(ctx, port, pa) == 0 && pa->state == IBV_PORT_ACTIVE;
}

int ferry__ib_probe(char *why, size_t why_len)
{
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);
	if (list == NULL || n == 0) {
		snprintf(why, why_len, "no verbs device (ibv_get_device_list: %s)",
		         list == NULL ? strerror(errno) : "none");
		if (list != NULL)
			ibv_free_device_list(list);
		return -ENODEV;
	}
	int rc = -ENODEV;
	snprintf(why, why_len, "no verbs device with an active port");
	for (int i = 0; i < n && rc != 0; i++) {
		struct ibv_context *ctx = ibv_open_device(list[i]);
		if (ctx == NULL)
			continue;
		struct ibv_device_attr da;
		if (ibv_query_device(ctx, &da) == 0) {
			/* unsigned: a uint8_t counter never passes 255 ports */
			for (unsigned p = 1; p <= da.phys_port_cnt && rc != 0; p++) {
				struct ibv_port_attr pa;
				if (ib_port_active(ctx, (uint8_t)p, &pa))
					rc = 0;
			}
		}
		ibv_close_device(ctx);
	}
	ibv_free_device_list(list);
	return rc;
}

enum { IB_K_DEV, IB_K_IBPORT, IB_K_GID, IB_K_COUNT };
const ferry_loc_key ferry__ib_keys[IB_K_COUNT + 1] = {
        [IB_K_DEV] = {.name = "dev", .kind = FERRY_LOC_STR},
        [IB_K_IBPORT] = {.name = "ibport",
                         .kind = FERRY_LOC_UINT,
                         .min = 1,
                         .max = 255,
                         .dflt = 1},
        /* The device's table may be shorter: checked against it at open. */
        [IB_K_GID] = {.name = "gid", .kind = FERRY_LOC_UINT, .max = 255},
};

int ferry__ib_dev_open(ferry_ib_dev *d, const ferry_loc *loc, char *err, size_t err_len)
{
	ferry_loc_val v[IB_K_COUNT];
	int rc = ferry_loc_read(loc, ferry__ib_keys, v, err, err_len);
	if (rc != 0)
		return rc;
	uint64_t port = v[IB_K_IBPORT].u, gidx;
	const char *want = v[IB_K_DEV].s;
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);
	if (list == NULL) {
		rc = -errno;
		snprintf(err, err_len, "ibv_get_device_list: %s", strerror(errno));
		return rc;
	}
	struct ibv_port_attr pa;
	for (int i = 0; i < n && d->ctx == NULL; i++) {
		const char *name = ibv_get_device_name(list[i]);
		if (want != NULL && strcmp(name, want) != 0)
			continue;
		d->ctx = ibv_open_device(list[i]);
		if (d->ctx == NULL) {
			if (want != NULL) {
				rc = -errno;
				snprintf(err, err_len, "dev '%s': ibv_open_device: %s",
				         want, strerror(errno));
				ibv_free_device_list(list);
				return rc;
			}
			continue;
		}
		if (want == NULL && !ib_port_active(d->ctx, (uint8_t)port, &pa)) {
			ibv_close_device(d->ctx); /* default: the first active one */
			d->ctx = NULL;
			continue;
		}
		snprintf(d->name, sizeof(d->name), "%s", name);
	}
	ibv_free_device_list(list);
	if (d->ctx == NULL) {
		if (want != NULL)
			snprintf(err, err_len, "dev '%s': no such verbs device", want);
		else
			snprintf(err, err_len,
			         "ibport '%u': no verbs device with that port active",
			         (unsigned)port);
		return FERRY_EBADLOC;
	}
	if (ibv_query_device(d->ctx, &d->dattr) != 0) {
		rc = -errno;
		snprintf(err, err_len, "dev '%s': ibv_query_device: %s", d->name,
		         strerror(errno));
		return rc;
	}
	if (port > d->dattr.phys_port_cnt) {
		snprintf(err, err_len, "ibport '%u': dev '%s' has %u port(s)",
		         (unsigned)port, d->name, (unsigned)d->dattr.phys_port_cnt);
		return FERRY_EBADLOC;
	}
	d->port = (uint8_t)port;
	if (ibv_query_port(d->ctx, d->port, &pa) != 0) {
		rc = -errno;
		snprintf(err, err_len, "dev '%s' port %u: ibv_query_port: %s", d->name,
		         (unsigned)d->port, strerror(errno));
		return rc;
	}
	if (pa.state != IBV_PORT_ACTIVE) {
		snprintf(err, err_len,
		         "ibport '%u': port of dev '%s' is not active (state %d)",
		         (unsigned)d->port, d->name, (int)pa.state);
		return FERRY_EBADLOC;
	}
	d->roce = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
	d->lid = pa.lid;
	d->mtu = pa.active_mtu;
	d->mtu_bytes = ferry__ib_mtu_bytes(pa.active_mtu);
	gidx = v[IB_K_GID].set ? v[IB_K_GID].u : d->roce ? 1 : 0;
	uint64_t gid_max = (uint64_t)(pa.gid_tbl_len > 0 ? pa.gid_tbl_len - 1 : 0);
	if (gidx > gid_max) {
		snprintf(err, err_len,
		         "key 'gid': value '%llu' out of range [0, %llu] of dev '%s'",
		         (unsigned long long)gidx, (unsigned long long)gid_max, d->name);
		return FERRY_EBADLOC;
	}
	d->gid_index = (uint8_t)gidx;
	if (ibv_query_gid(d->ctx, d->port, d->gid_index, &d->gid) != 0) {
		rc = -errno;
		snprintf(err, err_len, "gid '%u': ibv_query_gid on dev '%s': %s",
		         (unsigned)d->gid_index, d->name, strerror(errno));
		return rc;
	}
	static const uint8_t zero[16];
	if (d->roce && memcmp(d->gid.raw, zero, sizeof(zero)) == 0) {
		snprintf(err, err_len,
		         "gid '%u': empty GID on RoCE dev '%s' (is an IP address set?)",
		         (unsigned)d->gid_index, d->name);
		return FERRY_EBADLOC;
	}
	d->pd = ibv_alloc_pd(d->ctx);
	if (d->pd == NULL) {
		rc = -errno;
		snprintf(err, err_len, "dev '%s': ibv_alloc_pd: %s", d->name,
		         strerror(errno));
		return rc != 0 ? rc : -ENOMEM;
	}
	return 0;
}

void ferry__ib_dev_close(ferry_ib_dev *d)
{
	if (d->pd != NULL)
		(void)ibv_dealloc_pd(d->pd);
	d->pd = NULL;
	if (d->ctx != NULL)
		(void)ibv_close_device(d->ctx);
	d->ctx = NULL;
}

void ferry__ib_self(const ferry_ib_dev *d, uint32_t qpn, uint32_t qkey,
                    ferry_ib_addr *out)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->gid, d->gid.raw, sizeof(out->gid));
	out->qpn = qpn;
	out->qkey = qkey;
	out->lid = d->lid;
	out->roce = d->roce;
}

void ferry__ib_ah_attr(const ferry_ib_dev *d, const ferry_ib_addr *peer,
                       struct ibv_ah_attr *out)
{
	memset(out, 0, sizeof(*out));
	out->port_num = d->port;
	out->sl = 0;
	out->src_path_bits = 0;
	out->static_rate = 0;
	/* IB: route on the LID; a GRH only when the peer is in another subnet
	 * (its GID prefix differs from ours). RoCE: always a GRH. */
	bool global = d->roce || memcmp(peer->gid, d->gid.raw, 8) != 0;
	out->dlid = d->roce ? 0 : peer->lid;
	if (global) {
		out->is_global = 1;
		memcpy(out->grh.dgid.raw, peer->gid, 16);
		out->grh.sgid_index = d->gid_index;
		out->grh.hop_limit = IB_GRH_HOP_LIMIT;
		out->grh.flow_label = 0;
		out->grh.traffic_class = 0;
	}
}

void ferry__ib_to_addr(const ferry_ib_addr *a, ferry_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->len = sizeof(*a);
	memcpy(out->u.bytes, a, sizeof(*a));
}

int ferry__ib_from_addr(const ferry_addr *in, ferry_ib_addr *out)
{
	if (in->len != sizeof(*out))
		return -EINVAL;
	memcpy(out, in->u.bytes, sizeof(*out));
	return 0;
}

int ferry__ib_addr_str(const ferry_ib_addr *a, char *out, size_t len)
{
	char g[INET6_ADDRSTRLEN];
	if (inet_ntop(AF_INET6, a->gid, g, sizeof(g)) == NULL)
		snprintf(g, sizeof(g), "?");
	return snprintf(out, len, "gid=%s,lid=%u,qpn=%u", g, (unsigned)a->lid,
	                (unsigned)a->qpn);
}

/* Bootstrap ----------------------------------------------------------------*/

static void ib_boot_pack(uint8_t *p, int kind, const ferry_ib_addr *a, uint32_t mtu,
                         uint32_t nonce)
{
	memset(p, 0, FERRY_IB_BOOT_BYTES);
	uint32_t v32 = htobe32(FERRY_IB_BOOT_MAGIC);
	memcpy(p, &v32, 4);
	p[4] = IB_BOOT_VERSION;
	p[5] = (uint8_t)kind;
	if (a != NULL) {
		v32 = htobe32(a->qpn);
		memcpy(p + 8, &v32, 4);
		v32 = htobe32(a->qkey);
		memcpy(p + 12, &v32, 4);
		uint16_t v16 = htobe16(a->lid);
		memcpy(p + 16, &v16, 2);
		p[18] = a->roce;
		memcpy(p + 20, a->gid, 16);
	}
	v32 = htobe32(mtu);
	memcpy(p + 36, &v32, 4);
	v32 = htobe32(nonce);
	memcpy(p + 40, &v32, 4);
}

/* Returns the kind, or -1 when p is not a bootstrap message. */
static int ib_boot_unpack(const uint8_t *p, size_t n, ferry_ib_addr *a, uint32_t *mtu,
                          uint32_t *nonce)
{
	uint32_t v32;
	if (n != FERRY_IB_BOOT_BYTES)
		return -1;
	memcpy(&v32, p, 4);
	if (be32toh(v32) != FERRY_IB_BOOT_MAGIC || p[4] != IB_BOOT_VERSION ||
	    (p[5] != IB_BOOT_QUERY && p[5] != IB_BOOT_ANSWER))
		return -1;
	memset(a, 0, sizeof(*a));
	memcpy(&v32, p + 8, 4);
	a->qpn = be32toh(v32) & 0xffffffu;
	memcpy(&v32, p + 12, 4);
	a->qkey = be32toh(v32);
	uint16_t v16;
	memcpy(&v16, p + 16, 2);
	a->lid = be16toh(v16);
	a->roce = p[18] != 0;
	memcpy(a->gid, p + 20, 16);
	memcpy(&v32, p + 36, 4);
	*mtu = be32toh(v32);
	memcpy(&v32, p + 40, 4);
	*nonce = be32toh(v32);
	return p[5];
}

int ferry__ib_boot_listen(const ferry_loc *loc, struct sockaddr_storage *bound, char *err,
                          size_t err_len)
{
	socklen_t sl;
	int rc = ferry__inet_resolve(loc, true, SOCK_DGRAM, bound, &sl, err, err_len);
	if (rc != 0)
		return rc;
	uint64_t reuseport;
	if ((rc = ferry__loc_u64(loc, "reuseport", 0, 1, 0, &reuseport, err, err_len)) !=
	    0)
		return rc;
	int fd = socket(bound->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "bootstrap socket: %s", strerror(errno));
		return rc;
	}
	/* reuseport=1: the bootstrap listeners of several contexts (a server
	 * group) share the port; the kernel hands each query to one of them by
	 * a hash of its 4-tuple, and the answer names that context's QP. */
	int one = 1;
	if (reuseport &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
		rc = -errno;
		snprintf(err, err_len, "reuseport: %s", strerror(errno));
		close(fd);
		return rc;
	}
	if (bind(fd, (struct sockaddr *)bound, sl) != 0 ||
	    getsockname(fd, (struct sockaddr *)bound, &sl) != 0) {
		rc = -errno;
		snprintf(err, err_len, "bootstrap bind (host/port): %s", strerror(errno));
		close(fd);
		return rc;
	}
	return fd;
}

int ferry__ib_boot_serve(int fd, const ferry_ib_addr *self, uint32_t mtu_bytes,
                         uint64_t *bad)
{
	int answered = 0;
	for (int i = 0; i < 64; i++) { /* bounded: a flood cannot hold the poll */
		uint8_t in[FERRY_IB_BOOT_BYTES + 1], out[FERRY_IB_BOOT_BYTES];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, in, sizeof(in), MSG_DONTWAIT,
		                     (struct sockaddr *)&from, &fl);
		if (n < 0)
			break;
		ferry_ib_addr dummy;
		uint32_t mtu, nonce;
		if (ib_boot_unpack(in, (size_t)n, &dummy, &mtu, &nonce) !=
		    IB_BOOT_QUERY) {
			(*bad)++;
			continue;
		}
		ib_boot_pack(out, IB_BOOT_ANSWER, self, mtu_bytes, nonce);
		if (sendto(fd, out, sizeof(out), MSG_DONTWAIT, (struct sockaddr *)&from,
		           fl) == (ssize_t)sizeof(out))
			answered++;
	}
	return answered;
}

static uint64_t ib_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int ferry__ib_boot_query(const ferry_loc *loc, unsigned timeout_ms, ferry_ib_addr *out,
                         uint32_t *mtu_bytes, char *err, size_t err_len)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = ferry__inet_resolve(loc, false, SOCK_DGRAM, &ss, &sl, err, err_len);
	if (rc != 0)
		return rc;
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "bootstrap socket: %s", strerror(errno));
		return rc;
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
		rc = -errno;
		snprintf(err, err_len, "bootstrap connect (host/port): %s",
		         strerror(errno));
		close(fd);
		return rc;
	}
	uint32_t nonce = (uint32_t)ib_now_ms() ^ ((uint32_t)getpid() << 12);
	uint8_t q[FERRY_IB_BOOT_BYTES];
	ib_boot_pack(q, IB_BOOT_QUERY, NULL, 0, nonce);
	uint64_t deadline = ib_now_ms() + timeout_ms;
	rc = FERRY_ETIMEDOUT;
	for (;;) {
		uint64_t now = ib_now_ms();
		if (now >= deadline)
			break;
		(void)send(fd, q, sizeof(q), 0); /* refused: retried until the deadline */
		uint64_t until = now + IB_BOOT_RETRY_MS < deadline
		                         ? now + IB_BOOT_RETRY_MS
		                         : deadline;
		for (;;) {
			now = ib_now_ms();
			if (now >= until)
				break;
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			if (poll(&pfd, 1, (int)(until - now)) <= 0)
				continue;
			uint8_t a[FERRY_IB_BOOT_BYTES + 1];
			ssize_t n = recv(fd, a, sizeof(a), MSG_DONTWAIT);
			uint32_t got_nonce, got_mtu;
			ferry_ib_addr got;
			/* *out changes only for the answer to this query. */
			if (n > 0 &&
			    ib_boot_unpack(a, (size_t)n, &got, &got_mtu, &got_nonce) ==
			            IB_BOOT_ANSWER &&
			    got_nonce == nonce) {
				*out = got;
				*mtu_bytes = got_mtu;
				close(fd);
				return 0;
			}
		}
	}
	snprintf(err, err_len, "no bootstrap answer from host/port within %u ms",
	         timeout_ms);
	close(fd);
	return rc;
}
