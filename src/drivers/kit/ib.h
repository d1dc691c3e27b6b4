/* Verbs plumbing shared by the InfiniBand drivers (infud, infrc): the
 * device/port/PD an endpoint opens, the wire form of a peer's verbs address,
 * address-handle attributes for RoCE (GID) and IB (LID) fabrics, and the
 * small UDP bootstrap exchange that tells a client a server's QPN and GID.
 *
 * Locator keys read here (both drivers):
 *   dev=NAME   verbs device (default: the first one with an active port)
 *   ibport=N   port number on it (default 1)
 *   gid=N      GID table index (default: 1 on RoCE — the RoCEv2 IPv4 GID
 *              Soft-RoCE and most NICs put there — and 0 on InfiniBand)
 * The bootstrap uses host/port (ferry__inet_resolve rules). */
#ifndef FERRY_IB_H
#define FERRY_IB_H

#include <infiniband/verbs.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "ferry/driver.h"

/* One opened device port and its protection domain. */
typedef struct ferry_ib_dev {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	uint8_t port;
	uint8_t gid_index;
	bool roce;           /* link layer Ethernet: GRH/GID addressing */
	uint16_t lid;        /* our LID (0 on RoCE) */
	union ibv_gid gid;   /* our GID at gid_index */
	enum ibv_mtu mtu;    /* active MTU of the port */
	uint32_t mtu_bytes;  /* ... in bytes */
	uint32_t max_inline; /* filled by the driver after creating its QP */
	struct ibv_device_attr dattr;
	char name[IBV_SYSFS_NAME_MAX];
} ferry_ib_dev;

/* A peer's verbs address as it travels in ferry_addr (and in the bootstrap
 * exchange, in network byte order there). */
typedef struct ferry_ib_addr {
	uint8_t gid[16];
	uint32_t qpn;
	uint32_t qkey; /* UD only */
	uint16_t lid;
	uint8_t roce;
	uint8_t pad_;
} ferry_ib_addr;

_Static_assert(sizeof(ferry_ib_addr) <= FERRY_ADDR_BYTES, "ib addr fits ferry_addr");

/* Keys every IB driver accepts (dev, ibport, gid); the driver appends its
 * own. */
/* The verbs keys both drivers accept (their key_tables list this one):
 * dev (default: the first device with an active port), ibport (the HCA
 * port), gid (GID table index; default 1 on RoCE, 0 on InfiniBand). */
extern const ferry_loc_key ferry__ib_keys[];

/* Open the device/port the locator names, query it and allocate a PD.
 * FERRY_EBADLOC (bad key, no such device, port not active) or -errno with
 * the reason in err. On failure d is left for ferry__ib_dev_close. */
int ferry__ib_dev_open(ferry_ib_dev *d, const ferry_loc *loc, char *err, size_t err_len);
/* Free what open allocated (safe on a zeroed or half-opened d). */
void ferry__ib_dev_close(ferry_ib_dev *d);

/* Driver probe: 0 when some verbs device has an active port, else a reason. */
int ferry__ib_probe(char *why, size_t why_len);

/* Address-handle attributes to reach peer from d: on RoCE (or when the
 * peer's GID is on another subnet) a GRH with sgid_index = d->gid_index and
 * hop limit 64; on IB a plain LID route. Fills *out entirely. */
void ferry__ib_ah_attr(const ferry_ib_dev *d, const ferry_ib_addr *peer,
                       struct ibv_ah_attr *out);

/* Our address with qpn/qkey. */
void ferry__ib_self(const ferry_ib_dev *d, uint32_t qpn, uint32_t qkey,
                    ferry_ib_addr *out);

/* ferry_addr <-> ferry_ib_addr. from_addr returns -EINVAL for a length
 * that is not an IB address. */
void ferry__ib_to_addr(const ferry_ib_addr *a, ferry_addr *out);
int ferry__ib_from_addr(const ferry_addr *in, ferry_ib_addr *out);

/* "gid=fe80::...,lid=N,qpn=N" for logs and errors. */
int ferry__ib_addr_str(const ferry_ib_addr *a, char *out, size_t len);

/* ibv_mtu enum to bytes (0 for an unknown value). */
uint32_t ferry__ib_mtu_bytes(enum ibv_mtu m);

/* Bootstrap exchange (UDP). The wire form, 44 bytes, integers big-endian:
 *   u32 magic "FRYB", u8 version 1, u8 kind (1 query, 2 answer), u16 zero,
 *   u32 qpn, u32 qkey, u16 lid, u8 roce, u8 zero, u8 gid[16], u32 mtu bytes,
 *   u32 nonce (the query's, echoed in the answer)
 * A query's address fields are zero. */
#define FERRY_IB_BOOT_BYTES 44
#define FERRY_IB_BOOT_MAGIC 0x46525942u /* "FRYB" */

/* A listener's bootstrap socket: non-blocking UDP bound to loc's host/port
 * (port=0 picks one). Returns the fd or FERRY_EBADLOC/-errno; *bound gets
 * the bound address. */
int ferry__ib_boot_listen(const ferry_loc *loc, struct sockaddr_storage *bound, char *err,
                          size_t err_len);
/* Answer every query waiting on fd with self (never blocks). Returns the
 * number answered; malformed datagrams are counted in *bad. */
int ferry__ib_boot_serve(int fd, const ferry_ib_addr *self, uint32_t mtu_bytes,
                         uint64_t *bad);
/* Ask the server at loc's host/port for its address: up to timeout_ms,
 * re-asking every 100 ms. Blocks (resolve may). FERRY_EBADLOC (bad
 * host/port), FERRY_ETIMEDOUT (no answer), -errno. *mtu_bytes: the
 * server's MTU. */
int ferry__ib_boot_query(const ferry_loc *loc, unsigned timeout_ms, ferry_ib_addr *out,
                         uint32_t *mtu_bytes, char *err, size_t err_len);

#endif
