/* loopback: the in-process reference driver. Endpoints live in one table
 * keyed by a port number; send() copies the packet into a free slot of the
 * destination's pool and appends it to its inbox, poll() hands inbox packets
 * up as loans. Delivery is immediate and in order, so runs are
 * deterministic. It is the template for a new driver: open, close, send,
 * flush, poll, release, resolve, caps, ctl, in that order.
 *
 * Locking: the endpoint table and every inbox are guarded by one mutex, so
 * endpoints on different threads can talk; an eventfd per endpoint, written
 * when its inbox goes from empty to non-empty, wakes a context in block
 * mode. This driver is for tests and examples; the real drivers keep locks
 * off the fast path. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/loc.h"

#define LB_PORTS_MAX             1024
#define LB_EPHEMERAL_MIN         49152u
#define LB_PAYLOAD_DEFAULT_BYTES 16384u
#define LB_PAYLOAD_MAX_BYTES     65535u
#define LB_SLOTS_DEFAULT         1024u

enum { LB_K_PORT, LB_K_MTU, LB_K_RXSLOTS, LB_K_COUNT };
/* port: a listener's (0 = pick one) or the peer's; mtu: payload bytes. */
static const ferry_loc_key lb_keys[LB_K_COUNT + 1] = {
        [LB_K_PORT] = {.name = "port", .kind = FERRY_LOC_UINT, .max = UINT32_MAX},
        [LB_K_MTU] = {.name = "mtu",
                      .kind = FERRY_LOC_UINT,
                      .min = 64,
                      .max = LB_PAYLOAD_MAX_BYTES,
                      .dflt = LB_PAYLOAD_DEFAULT_BYTES},
        [LB_K_RXSLOTS] = {.name = "rxslots",
                          .kind = FERRY_LOC_UINT,
                          .min = 16,
                          .max = 1u << 20,
                          .dflt = LB_SLOTS_DEFAULT},
};
static const ferry_loc_key *const lb_key_tables[] = {lb_keys, NULL};

typedef struct lb_slot {
	ferry_pkt pkt;
	struct lb_slot *next; /* free list or inbox */
} lb_slot;

typedef struct lb_counters {
	uint64_t delivered, no_peer, pool_full, too_big, copy_bytes;
} lb_counters;

typedef struct lb_ep {
	ferry_ep base;
	uint32_t port;
	uint32_t max_payload;
	uint8_t *mem;
	size_t mem_len;
	lb_slot *slots;
	uint32_t nslots;
	lb_slot *free;               /* guarded by lb_lock */
	lb_slot *inbox, *inbox_tail; /* guarded by lb_lock */
	uint32_t since_flush;        /* packets sent since the last flush */
	bool signalled;              /* eventfd written and not yet read
	                              * (guarded by lb_lock) */
	lb_counters cnt;
} lb_ep;

static pthread_mutex_t lb_lock = PTHREAD_MUTEX_INITIALIZER;
static lb_ep *lb_table[LB_PORTS_MAX]; /* open endpoints, any order */

static lb_ep *lb_of(ferry_ep *ep)
{
	return ferry_container_of(ep, lb_ep, base);
}

/* Linear table scan: the table is small and this is a test driver. */
static lb_ep *lb_find(uint32_t port)
{
	for (int i = 0; i < LB_PORTS_MAX; i++)
		if (lb_table[i] != NULL && lb_table[i]->port == port)
			return lb_table[i];
	return NULL;
}

static int lb_open(ferry_ep *ep, const ferry_loc *loc, unsigned flags)
{
	lb_ep *l = lb_of(ep);
	ferry_loc_val v[LB_K_COUNT];
	int rc = ferry_loc_read(loc, lb_keys, v, ep->errmsg, sizeof(ep->errmsg));
	if (rc != 0)
		return rc;
	uint64_t port = v[LB_K_PORT].u, mtu = v[LB_K_MTU].u, slots = v[LB_K_RXSLOTS].u;
	ep->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ep->fd < 0)
		return -errno;
	l->max_payload = (uint32_t)mtu;
	l->nslots = (uint32_t)slots;
	l->mem_len = (size_t)l->nslots * l->max_payload;
	l->mem = mmap(NULL, l->mem_len, PROT_READ | PROT_WRITE,
	              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (l->mem == MAP_FAILED) {
		l->mem = NULL;
		return -ENOMEM;
	}
	l->slots = ferry__calloc(l->nslots, sizeof(*l->slots));
	if (l->slots == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < l->nslots; i++) {
		l->slots[i].pkt.data = l->mem + (size_t)i * l->max_payload;
		l->slots[i].pkt.ep = ep;
		l->slots[i].next = i + 1 < l->nslots ? &l->slots[i + 1] : NULL;
	}
	l->free = &l->slots[0];

	pthread_mutex_lock(&lb_lock);
	int slot = -1;
	for (int i = 0; i < LB_PORTS_MAX && slot < 0; i++)
		if (lb_table[i] == NULL)
			slot = i;
	if (!(flags & FERRY_EP_LISTEN) || port == 0) {
		/* Ephemeral: the lowest free port from LB_EPHEMERAL_MIN. */
		port = LB_EPHEMERAL_MIN;
		while (lb_find((uint32_t)port) != NULL)
			port++;
	} else if (lb_find((uint32_t)port) != NULL) {
		slot = -2;
	}
	if (slot >= 0) {
		l->port = (uint32_t)port;
		lb_table[slot] = l;
	}
	pthread_mutex_unlock(&lb_lock);
	if (slot == -2) {
		snprintf(ep->errmsg, sizeof(ep->errmsg), "port %llu is in use",
		         (unsigned long long)port);
		return -EADDRINUSE;
	}
	return slot < 0 ? -EMFILE : 0;
}

static void lb_close(ferry_ep *ep)
{
	lb_ep *l = lb_of(ep);
	pthread_mutex_lock(&lb_lock);
	for (int i = 0; i < LB_PORTS_MAX; i++)
		if (lb_table[i] == l)
			lb_table[i] = NULL;
	pthread_mutex_unlock(&lb_lock);
	if (l->mem != NULL)
		munmap(l->mem, l->mem_len);
	ferry__free(l->slots);
	if (ep->fd >= 0)
		close(ep->fd);
	ep->fd = -1;
}

static int lb_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                   ferry_buf_iter *payload)
{
	lb_ep *l = lb_of(ep);
	size_t plen = payload != NULL ? payload->left : 0;
	if (hdr_len + plen > l->max_payload)
		return -EMSGSIZE;
	if (to->len != sizeof(uint32_t))
		return -EINVAL;
	uint32_t port;
	memcpy(&port, to->u.bytes, sizeof(port));
	pthread_mutex_lock(&lb_lock);
	lb_ep *dst = lb_find(port);
	if (dst == NULL) {
		/* Nobody listening: the packet vanishes, as on a network. */
		l->cnt.no_peer++;
		pthread_mutex_unlock(&lb_lock);
		return 0;
	}
	if (hdr_len + plen > dst->max_payload) {
		dst->cnt.too_big++;
		pthread_mutex_unlock(&lb_lock);
		return 0;
	}
	lb_slot *s = dst->free;
	if (s == NULL) {
		dst->cnt.pool_full++;
		pthread_mutex_unlock(&lb_lock);
		return 0;
	}
	dst->free = s->next;
	memcpy(s->pkt.data, hdr, hdr_len);
	size_t off = hdr_len;
	ferry_buf_seg seg;
	while (payload != NULL && ferry_buf_iter_next(payload, &seg)) {
		if (seg.kind == FERRY_CHUNK_FILE) {
			ssize_t r = ferry_buf_copy_out(payload->buf, seg.offset, seg.len,
			                               s->pkt.data + off);
			if (r < 0) {
				s->next = dst->free;
				dst->free = s;
				pthread_mutex_unlock(&lb_lock);
				return (int)r;
			}
		} else {
			memcpy(s->pkt.data + off, seg.data, seg.len);
		}
		off += seg.len;
	}
	s->pkt.len = (uint32_t)off;
	l->cnt.copy_bytes += off; /* the one user-space copy of this driver */
	s->pkt.src.len = sizeof(uint32_t);
	memcpy(s->pkt.src.u.bytes, &l->port, sizeof(uint32_t));
	s->next = NULL;
	if (dst->inbox_tail != NULL) {
		dst->inbox_tail->next = s;
	} else {
		dst->inbox = s;
		if (!dst->signalled && dst->base.sleeps) {
			uint64_t one = 1;
			ssize_t w = write(dst->base.fd, &one, sizeof(one));
			(void)w;
			dst->signalled = true;
		}
	}
	dst->inbox_tail = s;
	dst->cnt.delivered++;
	pthread_mutex_unlock(&lb_lock);
	l->since_flush++;
	return 0;
}

static int lb_flush(ferry_ep *ep)
{
	/* send() delivered already; report what went out, as drivers do. */
	lb_ep *l = lb_of(ep);
	int n = (int)l->since_flush;
	l->since_flush = 0;
	return n;
}

static int lb_poll(ferry_ep *ep, ferry_pkt **pkts, int max)
{
	lb_ep *l = lb_of(ep);
	int n = 0;
	pthread_mutex_lock(&lb_lock);
	while (n < max && l->inbox != NULL) {
		lb_slot *s = l->inbox;
		l->inbox = s->next;
		pkts[n++] = &s->pkt;
	}
	if (l->inbox == NULL) {
		l->inbox_tail = NULL;
		if (l->signalled) { /* re-arm the wake-up: syscalls only when used */
			uint64_t v;
			ssize_t r = read(ep->fd, &v, sizeof(v));
			(void)r;
			l->signalled = false;
		}
	}
	pthread_mutex_unlock(&lb_lock);
	return n;
}

static void lb_release(ferry_ep *ep, ferry_pkt *pkt)
{
	lb_ep *l = lb_of(ep);
	lb_slot *s = ferry_container_of(pkt, lb_slot, pkt);
	pthread_mutex_lock(&lb_lock);
	s->next = l->free;
	l->free = s;
	pthread_mutex_unlock(&lb_lock);
}

static int lb_resolve(ferry_ep *ep, const ferry_loc *peer, ferry_addr *out)
{
	ferry_loc_val v[LB_K_COUNT];
	int rc = ferry_loc_read(peer, lb_keys, v, ep->errmsg, sizeof(ep->errmsg));
	if (rc != 0)
		return rc;
	if (!v[LB_K_PORT].set || v[LB_K_PORT].u == 0) {
		snprintf(ep->errmsg, sizeof(ep->errmsg),
		         v[LB_K_PORT].set ? "key 'port': value '0' out of range [1, %u]"
		                          : "missing key 'port'",
		         UINT32_MAX);
		return FERRY_EBADLOC;
	}
	uint32_t p = (uint32_t)v[LB_K_PORT].u;
	memset(out, 0, sizeof(*out));
	out->len = sizeof(p);
	memcpy(out->u.bytes, &p, sizeof(p));
	return 0;
}

static void lb_caps(ferry_ep *ep, ferry_caps *out)
{
	lb_ep *l = lb_of(ep);
	*out = (ferry_caps){.max_payload = l->max_payload,
	                    .inline_bytes = l->max_payload,
	                    .tx_slots = UINT32_MAX,
	                    .rx_batch = UINT32_MAX};
}

static int lb_ctl(ferry_ep *ep, int op, void *arg)
{
	lb_ep *l = lb_of(ep);
	if (op == FERRY_CTL_LOCAL_ADDR) {
		/* The same bytes lb_resolve makes for this port. */
		struct ferry_ctl_addr *a = arg;
		if (a->conn != NULL)
			return -EINVAL;
		memset(&a->addr, 0, sizeof(a->addr));
		a->addr.len = sizeof(l->port);
		memcpy(a->addr.u.bytes, &l->port, sizeof(l->port));
		return 0;
	}
	if (op == FERRY_CTL_BOUND_LOCATOR) {
		struct ferry_ctl_locator *b = arg;
		int n = snprintf(b->out, b->len, "port=%u", l->port);
		return n < 0 || (size_t)n >= b->len ? -ERANGE : 0;
	}
	if (op == FERRY_CTL_COUNTERS) {
		struct ferry_ctl_counters *c = arg;
		c->cb(c->arg, "delivered", l->cnt.delivered);
		c->cb(c->arg, "no_peer", l->cnt.no_peer);
		c->cb(c->arg, "pool_full", l->cnt.pool_full);
		c->cb(c->arg, "too_big", l->cnt.too_big);
		c->cb(c->arg, "copy_bytes", l->cnt.copy_bytes);
		return 0;
	}
	return -ENOTSUP;
}

static const ferry_dgram_ops lb_dgram_ops = {
        .send = lb_send,
        .flush = lb_flush,
        .poll = lb_poll,
        .release = lb_release,
        .resolve = lb_resolve,
        .caps = lb_caps,
        .ctl = lb_ctl,
        .close = lb_close,
};

const ferry_driver_ops ferry__loopback_driver = {
        .name = "loopback",
        .kind = FERRY_DRIVER_DATAGRAM,
        .ep_size = sizeof(lb_ep),
        .key_tables = lb_key_tables,
        .open = lb_open,
        .dgram = &lb_dgram_ops,
};
