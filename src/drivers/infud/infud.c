/* infud: the InfiniBand/RoCE unreliable-datagram driver. One UD QP per
 * endpoint; a ring of registered transmit slots posted as one linked
 * work-request list per flush with selective signaling (and inline sends for
 * small packets); a registered receive pool loaned up zero-copy and reposted
 * in batches; address handles cached per destination. A listener answers a
 * small UDP bootstrap query (ib.h) that tells clients its QPN and GID.
 *
 * Map: constants and state; address-handle cache; open/close; transmit
 * (send, flush, reap); receive (poll, release, block-mode arming);
 * resolve, caps, ctl. docs/drivers/infud.md has the design and numbers. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../../buffer/alloc.h"
#include "../../transport/locator.h"
#include "../ib/ib.h"
#include "../inet.h"

#define INFUD_QKEY 0x46525955u /* "FRYU"; high bit clear: not a controlled QKey */
#define INFUD_GRH_BYTES 40u    /* GRH (or 20 zero bytes + IPv4 header) before each datagram */
#define INFUD_MIN_MTU_BYTES 256u
#define INFUD_TX_SLOTS_DEFAULT 128
#define INFUD_RX_SLOTS_DEFAULT 512
#define INFUD_RX_SLOTS_MIN 16
/* Loans are held until the transport is done with a message, so a 16 MiB
 * request holds ~17k buffers: the pool grows in chunks (registered as they
 * are added) up to rxmax buffers. */
#define INFUD_RX_MAX_DEFAULT 32768
#define INFUD_RX_CHUNKS_MAX 64
#define INFUD_SIGNAL_EVERY 16      /* one signaled send WR per this many */
#define INFUD_TX_REAP_BATCH 32     /* send completions per ibv_poll_cq */
#define INFUD_RX_BATCH_MAX 64      /* receive completions per ibv_poll_cq */
#define INFUD_RX_REPOST_BATCH 32   /* released buffers per ibv_post_recv */
#define INFUD_INLINE_WANT_BYTES 256 /* max_inline_data asked of the QP */
#define INFUD_AH_SLOTS 256         /* AH cache table size (power of two) */
#define INFUD_AH_MAX 192           /* entries before the cache is emptied */
#define INFUD_BOOT_EVERY 64        /* spin mode: serve the bootstrap socket every Nth poll */
#define INFUD_BOOT_TIMEOUT_DEFAULT_MS 5000
#define INFUD_TX_WAIT_US 5000      /* full ring: spin this long for completions */
#define INFUD_DRAIN_WAIT_US 200000 /* AH eviction: wait this long for sends in flight */
#define INFUD_CQ_ACK_BATCH 64      /* CQ events acknowledged per ibv_ack_cq_events */
#define INFUD_SLOT_ALIGN_BYTES 64

static const char *const infud_keys[] = {FERRY_IB_KEYS, "host", "port", "mtu", "txslots",
                                         "rxslots", "rxmax", "boot_timeout", NULL};

typedef struct infud_ah {
	uint8_t gid[16];
	uint16_t lid;
	bool used;
	struct ibv_ah *ah;
} infud_ah;

typedef struct infud_rx_slot {
	ferry_pkt pkt;
	struct ibv_recv_wr wr;
	struct ibv_sge sge;
} infud_rx_slot;

typedef struct infud_rx_chunk {
	uint8_t *mem;
	size_t len;
	struct ibv_mr *mr;
	infud_rx_slot *slot;
} infud_rx_chunk;

typedef struct infud_counters {
	uint64_t ah_created, ah_cache_hits, ah_evictions, ah_create_errors;
	uint64_t tx_inline, tx_signaled, tx_unsignaled, tx_ring_waits, tx_ring_drops;
	uint64_t tx_post_errors, post_send_calls, post_recv_calls, rx_reposted, rx_post_errors;
	uint64_t cq_polls, wc_errors, rx_short, qp_recoveries, rx_pool_grows;
	uint64_t cq_arms, cq_events, boot_answers, boot_bad, boot_local;
} infud_counters;

typedef struct infud_ep infud_ep;
struct infud_ep {
	ferry_ep base;
	ferry_ib_dev dev;
	bool listening;
	uint32_t max_payload;
	unsigned boot_timeout_ms;
	ferry_ib_addr self;
	struct ibv_comp_channel *chan;
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *qp;
	/* transmit ring: sequence numbers, slot = seq % tx_slots; [tx_tail,
	 * tx_posted) posted and not known complete, [tx_posted, tx_head) queued */
	uint8_t *tx_mem;
	size_t tx_mem_len, tx_stride;
	struct ibv_mr *tx_mr;
	struct ibv_send_wr *tx_wr;
	struct ibv_sge *tx_sge;
	uint32_t tx_slots;
	uint64_t tx_head, tx_posted, tx_tail;
	/* receive pool: rx_slots buffers posted at most (the receive queue's
	 * depth), rx_total in the pool, the others loaned out or free */
	infud_rx_chunk rx_chunk[INFUD_RX_CHUNKS_MAX];
	uint32_t rx_nchunks, rx_chunk_slots;
	size_t rx_stride;
	uint32_t rx_slots, rx_nposted, rx_total, rx_max;
	infud_rx_slot *repost_head, *repost_tail; /* free list, linked through wr.next */
	uint32_t nrepost;
	/* block mode */
	bool armed;
	uint32_t unacked_events;
	/* address handles (open addressing, linear probing) */
	infud_ah ah[INFUD_AH_SLOTS];
	uint32_t nah;
	infud_ah *ah_last;
	struct ibv_ah *self_ah; /* fence target (infud_tx_drain) */
	/* bootstrap (listener) */
	int boot_fd;
	struct sockaddr_storage boot_addr;
	uint32_t boot_tick;
	infud_ep *local_next; /* process-wide list of listeners */
	bool local_listed;
	infud_counters cnt;
};

static infud_ep *infud_of(ferry_ep *ep) { return ferry_container_of(ep, infud_ep, base); }

static uint64_t infud_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Listeners of this process. A client and a server on one thread (tests,
 * in-process services) would otherwise deadlock: resolve() blocks in the
 * bootstrap query while the server's poll(), which answers it, cannot run.
 * Touched only by open, close and resolve. */
static pthread_mutex_t infud_local_lock = PTHREAD_MUTEX_INITIALIZER;
static infud_ep *infud_local_head;

static void infud_local_add(infud_ep *u)
{
	pthread_mutex_lock(&infud_local_lock);
	u->local_next = infud_local_head;
	infud_local_head = u;
	u->local_listed = true;
	pthread_mutex_unlock(&infud_local_lock);
}

static void infud_local_remove(infud_ep *u)
{
	if (!u->local_listed)
		return;
	pthread_mutex_lock(&infud_local_lock);
	for (infud_ep **pp = &infud_local_head; *pp != NULL; pp = &(*pp)->local_next)
		if (*pp == u) {
			*pp = u->local_next;
			break;
		}
	u->local_listed = false;
	pthread_mutex_unlock(&infud_local_lock);
}

static bool infud_sa_match(const struct sockaddr_storage *bound, const struct sockaddr_storage *want)
{
	if (bound->ss_family != want->ss_family)
		return false;
	if (bound->ss_family == AF_INET) {
		const struct sockaddr_in *b = (const void *)bound, *w = (const void *)want;
		return b->sin_port == w->sin_port && (b->sin_addr.s_addr == w->sin_addr.s_addr ||
		                                      b->sin_addr.s_addr == htonl(INADDR_ANY));
	}
	const struct sockaddr_in6 *b = (const void *)bound, *w = (const void *)want;
	return b->sin6_port == w->sin6_port &&
	       (memcmp(&b->sin6_addr, &w->sin6_addr, 16) == 0 ||
	        memcmp(&b->sin6_addr, &in6addr_any, 16) == 0);
}

/* A listener of this process at want: its address and MTU. */
static bool infud_local_find(const struct sockaddr_storage *want, ferry_ib_addr *out,
                             uint32_t *mtu)
{
	bool found = false;
	pthread_mutex_lock(&infud_local_lock);
	for (infud_ep *u = infud_local_head; u != NULL && !found; u = u->local_next)
		if (infud_sa_match(&u->boot_addr, want)) {
			*out = u->self;
			*mtu = u->max_payload;
			found = true;
		}
	pthread_mutex_unlock(&infud_local_lock);
	return found;
}

/* Address handles -----------------------------------------------------------*/

static uint32_t infud_ah_hash(const uint8_t gid[16], uint16_t lid)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (int i = 0; i < 16; i++)
		h = (h ^ gid[i]) * 1099511628211ull;
	h = (h ^ lid) * 1099511628211ull;
	return (uint32_t)(h ^ (h >> 32)) & (INFUD_AH_SLOTS - 1);
}

static bool infud_tx_drain(infud_ep *u);

static void infud_ah_clear(infud_ep *u)
{
	for (uint32_t i = 0; i < INFUD_AH_SLOTS; i++) {
		if (u->ah[i].used && u->ah[i].ah != NULL)
			(void)ibv_destroy_ah(u->ah[i].ah);
		u->ah[i].used = false;
		u->ah[i].ah = NULL;
	}
	u->nah = 0;
	u->ah_last = NULL;
}


/* The AH for peer: cached, else created (and cached). NULL when the device
 * refuses it. */
static struct ibv_ah *infud_ah_get(infud_ep *u, const ferry_ib_addr *peer)
{
	uint16_t lid = u->dev.roce ? 0 : peer->lid;
	infud_ah *e = u->ah_last;
	if (e != NULL && e->lid == lid && memcmp(e->gid, peer->gid, 16) == 0) {
		u->cnt.ah_cache_hits++;
		return e->ah;
	}
	uint32_t i = infud_ah_hash(peer->gid, lid);
	for (;; i = (i + 1) & (INFUD_AH_SLOTS - 1)) {
		e = &u->ah[i];
		if (!e->used)
			break;
		if (e->lid == lid && memcmp(e->gid, peer->gid, 16) == 0) {
			u->cnt.ah_cache_hits++;
			u->ah_last = e;
			return e->ah;
		}
	}
	if (u->nah >= INFUD_AH_MAX) {
		/* Full: start over. Sends in flight name the old AHs, so they
		 * must complete first; when they do not in time, the cache stays
		 * as it is and this destination is refused for now. */
		if (!infud_tx_drain(u))
			return NULL;
		u->cnt.ah_evictions += u->nah;
		infud_ah_clear(u);
		i = infud_ah_hash(peer->gid, lid);
		e = &u->ah[i];
	}
	struct ibv_ah_attr attr;
	ferry__ib_ah_attr(&u->dev, peer, &attr);
	struct ibv_ah *ah = ibv_create_ah(u->dev.pd, &attr);
	if (ah == NULL) {
		u->cnt.ah_create_errors++;
		return NULL;
	}
	u->cnt.ah_created++;
	memcpy(e->gid, peer->gid, 16);
	e->lid = lid;
	e->ah = ah;
	e->used = true;
	u->nah++;
	u->ah_last = e;
	return ah;
}

/* Open/close ----------------------------------------------------------------*/

static size_t infud_round_up(size_t n) { return (n + INFUD_SLOT_ALIGN_BYTES - 1) & ~(size_t)(INFUD_SLOT_ALIGN_BYTES - 1); }

static void *infud_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void infud_repost(infud_ep *u);

static void infud_repost_add(infud_ep *u, infud_rx_slot *s)
{
	s->wr.next = NULL;
	if (u->repost_tail != NULL)
		u->repost_tail->wr.next = &s->wr;
	else
		u->repost_head = s;
	u->repost_tail = s;
	u->nrepost++;
}

/* Add a chunk of registered receive buffers to the free list. Open, and
 * the receive path when loans hold nearly the whole pool (a big message
 * being reassembled): a rare, amortised cost, never per packet. */
static int infud_rx_grow(infud_ep *u)
{
	uint32_t n = u->rx_chunk_slots;
	if (u->rx_nchunks == INFUD_RX_CHUNKS_MAX || u->rx_total + n > u->rx_max)
		return -ENOBUFS;
	infud_rx_chunk *c = &u->rx_chunk[u->rx_nchunks];
	c->len = u->rx_stride * n;
	c->mem = infud_map(c->len);
	c->slot = ferry__calloc(n, sizeof(*c->slot));
	if (c->mem == NULL || c->slot == NULL)
		goto fail;
	c->mr = ibv_reg_mr(u->dev.pd, c->mem, c->len, IBV_ACCESS_LOCAL_WRITE);
	if (c->mr == NULL)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		infud_rx_slot *s = &c->slot[i];
		s->pkt.ep = &u->base;
		s->sge = (struct ibv_sge){.addr = (uintptr_t)(c->mem + i * u->rx_stride),
		                          .length = (uint32_t)(INFUD_GRH_BYTES + u->dev.mtu_bytes),
		                          .lkey = c->mr->lkey};
		s->wr = (struct ibv_recv_wr){.wr_id = (uintptr_t)s, .sg_list = &s->sge, .num_sge = 1};
		infud_repost_add(u, s);
	}
	u->rx_nchunks++;
	u->rx_total += n;
	u->cnt.rx_pool_grows++;
	return 0;
fail:;
	int rc = errno != 0 ? -errno : -ENOMEM;
	if (c->mem != NULL)
		munmap(c->mem, c->len);
	ferry__free(c->slot);
	*c = (infud_rx_chunk){0};
	return rc;
}

/* RESET -> INIT -> RTR -> RTS: a UD QP needs no peer. */
static int infud_qp_up(infud_ep *u)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT,
	                        .pkey_index = 0,
	                        .port_num = u->dev.port,
	                        .qkey = INFUD_QKEY};
	if (ibv_modify_qp(u->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY))
		return -errno;
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTR};
	if (ibv_modify_qp(u->qp, &a, IBV_QP_STATE))
		return -errno;
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .sq_psn = 0};
	if (ibv_modify_qp(u->qp, &a, IBV_QP_STATE | IBV_QP_SQ_PSN))
		return -errno;
	return 0;
}

static int infud_open_verbs(infud_ep *u)
{
	ferry_ep *ep = &u->base;
	char *msg = ep->errmsg;
	size_t ml = sizeof(ep->errmsg);
	struct ibv_context *ctx = u->dev.ctx;
	if (ep->sleeps) {
		u->chan = ibv_create_comp_channel(ctx);
		if (u->chan == NULL) {
			snprintf(msg, ml, "dev '%s': ibv_create_comp_channel: %s", u->dev.name, strerror(errno));
			return -errno;
		}
		int fl = fcntl(u->chan->fd, F_GETFL);
		if (fl < 0 || fcntl(u->chan->fd, F_SETFL, fl | O_NONBLOCK) != 0)
			return -errno;
	}
	u->scq = ibv_create_cq(ctx, (int)u->tx_slots, NULL, NULL, 0);
	u->rcq = ibv_create_cq(ctx, (int)u->rx_slots, u, u->chan, 0);
	if (u->scq == NULL || u->rcq == NULL) {
		snprintf(msg, ml, "dev '%s': ibv_create_cq: %s", u->dev.name, strerror(errno));
		return -errno != 0 ? -errno : -ENOMEM;
	}
	struct ibv_qp_init_attr qa = {
		.send_cq = u->scq,
		.recv_cq = u->rcq,
		.cap = {.max_send_wr = u->tx_slots,
		        .max_recv_wr = u->rx_slots,
		        .max_send_sge = 1,
		        .max_recv_sge = 1,
		        .max_inline_data = INFUD_INLINE_WANT_BYTES},
		.qp_type = IBV_QPT_UD,
		.sq_sig_all = 0,
	};
	u->qp = ibv_create_qp(u->dev.pd, &qa);
	if (u->qp == NULL) { /* some devices have no inline sends */
		qa.cap.max_inline_data = 0;
		u->qp = ibv_create_qp(u->dev.pd, &qa);
	}
	if (u->qp == NULL) {
		snprintf(msg, ml, "dev '%s': ibv_create_qp (UD, %u/%u WRs): %s", u->dev.name,
		         u->tx_slots, u->rx_slots, strerror(errno));
		return -errno != 0 ? -errno : -ENOMEM;
	}
	u->dev.max_inline = qa.cap.max_inline_data;
	int rc = infud_qp_up(u);
	if (rc != 0) {
		snprintf(msg, ml, "dev '%s': ibv_modify_qp to RTS: %s", u->dev.name, strerror(-rc));
		return rc;
	}
	ferry__ib_self(&u->dev, u->qp->qp_num, INFUD_QKEY, &u->self);

	/* Transmit ring: one registered mapping, max_payload bytes per slot. */
	u->tx_stride = infud_round_up(u->max_payload);
	u->tx_mem_len = u->tx_stride * u->tx_slots;
	u->tx_mem = infud_map(u->tx_mem_len);
	u->tx_wr = ferry__calloc(u->tx_slots, sizeof(*u->tx_wr));
	u->tx_sge = ferry__calloc(u->tx_slots, sizeof(*u->tx_sge));
	if (u->tx_mem == NULL || u->tx_wr == NULL || u->tx_sge == NULL)
		return -ENOMEM;
	u->tx_mr = ibv_reg_mr(u->dev.pd, u->tx_mem, u->tx_mem_len, IBV_ACCESS_LOCAL_WRITE);
	if (u->tx_mr == NULL) {
		snprintf(msg, ml, "dev '%s': ibv_reg_mr: %s (memlock limit?)", u->dev.name,
		         strerror(errno));
		return -errno != 0 ? -errno : -ENOMEM;
	}
	for (uint32_t i = 0; i < u->tx_slots; i++) {
		u->tx_sge[i] = (struct ibv_sge){.addr = (uintptr_t)(u->tx_mem + i * u->tx_stride),
		                                .lkey = u->tx_mr->lkey};
		u->tx_wr[i].sg_list = &u->tx_sge[i];
		u->tx_wr[i].num_sge = 1;
		u->tx_wr[i].opcode = IBV_WR_SEND;
	}
	/* Receive pool: GRH room plus the port MTU per buffer (a peer with a
	 * larger mtu= than ours still fits). */
	u->rx_stride = infud_round_up(INFUD_GRH_BYTES + u->dev.mtu_bytes);
	u->rx_chunk_slots = (u->rx_max + INFUD_RX_CHUNKS_MAX - 1) / INFUD_RX_CHUNKS_MAX;
	if (u->rx_chunk_slots < u->rx_slots)
		u->rx_chunk_slots = u->rx_slots;
	if ((rc = infud_rx_grow(u)) != 0) {
		snprintf(msg, ml, "dev '%s': receive pool of %u buffers: %s (memlock limit?)",
		         u->dev.name, u->rx_chunk_slots, strerror(-rc));
		return rc;
	}
	u->cnt.rx_pool_grows = 0;
	infud_repost(u);
	if (u->rx_nposted != u->rx_slots) {
		snprintf(msg, ml, "dev '%s': ibv_post_recv: %s", u->dev.name, strerror(errno));
		return -EIO;
	}
	u->cnt.rx_reposted = 0;
	u->cnt.post_recv_calls = 0;
	if (ep->sleeps) {
		if (ibv_req_notify_cq(u->rcq, 0) != 0)
			return -errno;
		u->armed = true;
	}
	return 0;
}

static int infud_open(ferry_ep *ep, const ferry_loc *loc, unsigned flags)
{
	infud_ep *u = infud_of(ep);
	char *msg = ep->errmsg;
	size_t ml = sizeof(ep->errmsg);
	u->boot_fd = -1;
	u->listening = (flags & FERRY_EP_LISTEN) != 0;
	uint64_t mtu, txslots, rxslots, rxmax, boot_ms;
	int rc;
	if ((rc = ferry__loc_u64(loc, "mtu", INFUD_MIN_MTU_BYTES, 4096, 0, &mtu, msg, ml)) != 0 ||
	    (rc = ferry__loc_u64(loc, "txslots", 1, 1u << 15, INFUD_TX_SLOTS_DEFAULT, &txslots,
	                         msg, ml)) != 0 ||
	    (rc = ferry__loc_u64(loc, "rxslots", INFUD_RX_SLOTS_MIN, 1u << 16,
	                         INFUD_RX_SLOTS_DEFAULT, &rxslots, msg, ml)) != 0 ||
	    (rc = ferry__loc_u64(loc, "rxmax", INFUD_RX_SLOTS_MIN, 1u << 22, INFUD_RX_MAX_DEFAULT,
	                         &rxmax, msg, ml)) != 0 ||
	    (rc = ferry__loc_u64(loc, "boot_timeout", 1, 600000, INFUD_BOOT_TIMEOUT_DEFAULT_MS,
	                         &boot_ms, msg, ml)) != 0)
		return rc;
	u->boot_timeout_ms = (unsigned)boot_ms;
	if ((rc = ferry__ib_dev_open(&u->dev, loc, msg, ml)) != 0)
		return rc;
	if (mtu > u->dev.mtu_bytes) {
		snprintf(msg, ml, "mtu '%llu' is above the active MTU %u of dev '%s' port %u",
		         (unsigned long long)mtu, u->dev.mtu_bytes, u->dev.name, (unsigned)u->dev.port);
		return FERRY_EBADLOC;
	}
	u->max_payload = mtu != 0 ? (uint32_t)mtu : u->dev.mtu_bytes;
	/* The device bounds the queue depths. */
	uint32_t maxwr = u->dev.dattr.max_qp_wr > 0 ? (uint32_t)u->dev.dattr.max_qp_wr : 1;
	uint32_t maxcqe = u->dev.dattr.max_cqe > 0 ? (uint32_t)u->dev.dattr.max_cqe : 1;
	if (maxcqe < maxwr)
		maxwr = maxcqe;
	if (txslots > maxwr || rxslots > maxwr) {
		snprintf(msg, ml, "%s '%llu' exceeds dev '%s' queue depth %u",
		         txslots > maxwr ? "txslots" : "rxslots",
		         (unsigned long long)(txslots > maxwr ? txslots : rxslots), u->dev.name, maxwr);
		return FERRY_EBADLOC;
	}
	u->tx_slots = (uint32_t)txslots;
	u->rx_slots = (uint32_t)rxslots;
	u->rx_max = rxmax > rxslots ? (uint32_t)rxmax : (uint32_t)rxslots;
	if (u->listening) {
		u->boot_fd = ferry__ib_boot_listen(loc, &u->boot_addr, msg, ml);
		if (u->boot_fd < 0) {
			rc = u->boot_fd;
			u->boot_fd = -1;
			return rc;
		}
	}
	if ((rc = infud_open_verbs(u)) != 0)
		return rc;
	if (ep->sleeps) {
		/* Block mode: one fd for the context to sleep on, readable when
		 * a receive completion is signalled or a bootstrap query waits. */
		ep->fd = epoll_create1(EPOLL_CLOEXEC);
		if (ep->fd < 0)
			return -errno;
		struct epoll_event ev = {.events = EPOLLIN};
		if (epoll_ctl(ep->fd, EPOLL_CTL_ADD, u->chan->fd, &ev) != 0)
			return -errno;
		if (u->boot_fd >= 0 && epoll_ctl(ep->fd, EPOLL_CTL_ADD, u->boot_fd, &ev) != 0)
			return -errno;
	}
	if (u->listening)
		infud_local_add(u);
	return 0;
}

/* Reverse order of acquisition; any field may be unset (failed open). */
static void infud_close(ferry_ep *ep)
{
	infud_ep *u = infud_of(ep);
	infud_local_remove(u);
	if (u->qp != NULL)
		(void)ibv_destroy_qp(u->qp); /* nothing in flight names an AH or MR now */
	u->qp = NULL;
	infud_ah_clear(u);
	if (u->self_ah != NULL)
		(void)ibv_destroy_ah(u->self_ah);
	u->self_ah = NULL;
	for (uint32_t i = 0; i < u->rx_nchunks; i++)
		if (u->rx_chunk[i].mr != NULL)
			(void)ibv_dereg_mr(u->rx_chunk[i].mr);
	if (u->tx_mr != NULL)
		(void)ibv_dereg_mr(u->tx_mr);
	u->tx_mr = NULL;
	if (u->rcq != NULL) {
		if (u->unacked_events > 0)
			ibv_ack_cq_events(u->rcq, u->unacked_events);
		(void)ibv_destroy_cq(u->rcq);
	}
	if (u->scq != NULL)
		(void)ibv_destroy_cq(u->scq);
	u->rcq = u->scq = NULL;
	if (u->chan != NULL)
		(void)ibv_destroy_comp_channel(u->chan);
	u->chan = NULL;
	ferry__ib_dev_close(&u->dev);
	if (u->boot_fd >= 0)
		close(u->boot_fd);
	u->boot_fd = -1;
	if (ep->fd >= 0)
		close(ep->fd);
	ep->fd = -1;
	for (uint32_t i = 0; i < u->rx_nchunks; i++) {
		munmap(u->rx_chunk[i].mem, u->rx_chunk[i].len);
		ferry__free(u->rx_chunk[i].slot);
		u->rx_chunk[i] = (infud_rx_chunk){0};
	}
	u->rx_nchunks = 0;
	if (u->tx_mem != NULL)
		munmap(u->tx_mem, u->tx_mem_len);
	u->tx_mem = NULL;
	ferry__free(u->tx_wr);
	ferry__free(u->tx_sge);
	u->tx_wr = NULL;
	u->tx_sge = NULL;
}

/* Transmit ------------------------------------------------------------------*/

/* After a send error a UD QP sits in SQE: back to RTS. */
static void infud_qp_recover(infud_ep *u)
{
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;
	if (ibv_query_qp(u->qp, &a, IBV_QP_STATE, &ia) != 0 || a.qp_state != IBV_QPS_SQE)
		return;
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .cur_qp_state = IBV_QPS_SQE};
	if (ibv_modify_qp(u->qp, &a, IBV_QP_STATE | IBV_QP_CUR_STATE) == 0)
		u->cnt.qp_recoveries++;
}

/* Reap send completions in batches. A signaled completion for sequence s
 * means every WR up to s is done (a send queue completes in order). */
static void infud_reap(infud_ep *u)
{
	struct ibv_wc wc[INFUD_TX_REAP_BATCH];
	bool failed = false;
	for (;;) {
		int n = ibv_poll_cq(u->scq, INFUD_TX_REAP_BATCH, wc);
		u->cnt.cq_polls++;
		for (int i = 0; i < n; i++) {
			if (wc[i].status != IBV_WC_SUCCESS) {
				u->cnt.wc_errors++;
				failed = true;
			}
			if (wc[i].wr_id + 1 > u->tx_tail)
				u->tx_tail = wc[i].wr_id + 1;
		}
		if (n < INFUD_TX_REAP_BATCH)
			break;
	}
	if (failed)
		infud_qp_recover(u);
}

/* Post everything queued as one linked list: one ibv_post_send. */
static int infud_flush(ferry_ep *ep)
{
	infud_ep *u = infud_of(ep);
	if (u->tx_head - u->tx_tail >= INFUD_SIGNAL_EVERY)
		infud_reap(u);
	if (u->tx_posted == u->tx_head)
		return 0;
	uint32_t n = u->tx_slots;
	for (uint64_t s = u->tx_posted; s < u->tx_head; s++)
		u->tx_wr[s % n].next = s + 1 < u->tx_head ? &u->tx_wr[(s + 1) % n] : NULL;
	struct ibv_send_wr *bad = NULL;
	u->cnt.post_send_calls++;
	if (ibv_post_send(u->qp, &u->tx_wr[u->tx_posted % n], &bad) != 0) {
		/* bad and what follows were not posted: dropped like a full NIC
		 * queue (the transports recover); their slots are reused. */
		uint64_t first = bad != NULL ? bad->wr_id : u->tx_posted;
		u->cnt.tx_post_errors += u->tx_head - first;
		u->tx_head = first;
	}
	int sent = (int)(u->tx_head - u->tx_posted);
	u->tx_posted = u->tx_head;
	return sent;
}

/* A free slot, reaping (and briefly spinning) when the ring is full. Every
 * tx_slots consecutive WRs hold a signaled one, so once everything queued
 * is posted, completions do come. */
static bool infud_tx_room(infud_ep *u)
{
	if (u->tx_head - u->tx_tail < u->tx_slots)
		return true;
	if (u->tx_posted != u->tx_head)
		infud_flush(&u->base);
	infud_reap(u);
	if (u->tx_head - u->tx_tail < u->tx_slots)
		return true;
	u->cnt.tx_ring_waits++;
	uint64_t until = infud_now_us() + INFUD_TX_WAIT_US;
	do {
		infud_reap(u);
		if (u->tx_head - u->tx_tail < u->tx_slots)
			return true;
	} while (infud_now_us() < until);
	return false;
}

static void infud_tx_queue(infud_ep *u, struct ibv_ah *ah, uint32_t qpn, uint32_t qkey,
                           uint32_t len)
{
	uint64_t seq = u->tx_head;
	uint32_t slot = (uint32_t)(seq % u->tx_slots);
	struct ibv_send_wr *wr = &u->tx_wr[slot];
	wr->wr_id = seq;
	u->tx_sge[slot].length = len;
	wr->wr.ud.ah = ah;
	wr->wr.ud.remote_qpn = qpn;
	wr->wr.ud.remote_qkey = qkey;
	unsigned fl = 0;
	if (len <= u->dev.max_inline) {
		fl |= IBV_SEND_INLINE;
		u->cnt.tx_inline++;
	}
	/* Selective signaling: every Nth WR, and the ring's last slot so
	 * that a full ring always holds a signaled WR. */
	if (seq % INFUD_SIGNAL_EVERY == INFUD_SIGNAL_EVERY - 1 || slot == u->tx_slots - 1) {
		fl |= IBV_SEND_SIGNALED;
		u->cnt.tx_signaled++;
	} else {
		u->cnt.tx_unsignaled++;
	}
	wr->send_flags = fl;
	u->tx_head++;
}

/* Wait (bounded) until every send posted so far completed, so that the AHs
 * they name may be destroyed: a signaled zero-byte fence goes to our own QP
 * with a QKey it rejects (the device drops it silently). */
static bool infud_tx_drain(infud_ep *u)
{
	if (!infud_tx_room(u))
		return false;
	if (u->self_ah == NULL) {
		struct ibv_ah_attr attr;
		ferry__ib_ah_attr(&u->dev, &u->self, &attr);
		if ((u->self_ah = ibv_create_ah(u->dev.pd, &attr)) == NULL)
			return false;
	}
	infud_tx_queue(u, u->self_ah, u->self.qpn, ~INFUD_QKEY, 0);
	u->tx_wr[(u->tx_head - 1) % u->tx_slots].send_flags |= IBV_SEND_SIGNALED;
	infud_flush(&u->base);
	uint64_t until = infud_now_us() + INFUD_DRAIN_WAIT_US;
	do {
		infud_reap(u);
		if (u->tx_tail == u->tx_posted)
			return true;
	} while (infud_now_us() < until);
	return false;
}

/* Copy one payload piece to dst: memory with memcpy, file regions with
 * pread. */
static int infud_copy_seg(uint8_t *dst, const ferry_buf_seg *seg)
{
	if (seg->kind != FERRY_CHUNK_FILE) {
		memcpy(dst, seg->data, seg->len);
		return 0;
	}
	size_t got = 0;
	while (got < seg->len) {
		ssize_t r = pread(seg->fd, dst + got, seg->len - got, seg->file_off + (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		got += (size_t)r;
	}
	return 0;
}

static int infud_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                      ferry_buf_iter *payload)
{
	infud_ep *u = infud_of(ep);
	size_t plen = payload != NULL ? payload->left : 0;
	if (hdr_len + plen > u->max_payload)
		return -EMSGSIZE;
	ferry_ib_addr peer;
	if (ferry__ib_from_addr(to, &peer) != 0 || peer.roce != u->dev.roce)
		return -EINVAL;
	struct ibv_ah *ah = infud_ah_get(u, &peer);
	if (ah == NULL)
		return -ENOMEM;
	if (!infud_tx_room(u)) {
		u->cnt.tx_ring_drops++; /* the NIC is stuck: a loss on the wire */
		return 0;
	}
	uint8_t *dst = u->tx_mem + (u->tx_head % u->tx_slots) * u->tx_stride;
	memcpy(dst, hdr, hdr_len);
	uint8_t *p = dst + hdr_len;
	ferry_buf_seg seg;
	while (payload != NULL && ferry_buf_iter_next(payload, &seg)) {
		int rc = infud_copy_seg(p, &seg);
		if (rc != 0)
			return rc;
		p += seg.len;
	}
	infud_tx_queue(u, ah, peer.qpn, peer.qkey, (uint32_t)(p - dst));
	return 0;
}

/* Receive -------------------------------------------------------------------*/

/* Post free buffers, as many as the receive queue has room for: one
 * ibv_post_recv for the whole list. */
static void infud_repost(infud_ep *u)
{
	uint32_t k = u->rx_slots - u->rx_nposted;
	if (k > u->nrepost)
		k = u->nrepost;
	if (k == 0)
		return;
	/* Cut the free list after k buffers. */
	infud_rx_slot *first = u->repost_head, *last = first;
	for (uint32_t i = 1; i < k; i++)
		last = ferry_container_of(last->wr.next, infud_rx_slot, wr);
	struct ibv_recv_wr *rest = last->wr.next;
	last->wr.next = NULL;
	struct ibv_recv_wr *bad = NULL;
	u->cnt.post_recv_calls++;
	uint32_t done = k;
	if (ibv_post_recv(u->qp, &first->wr, &bad) != 0) {
		/* Those before bad went in; bad and the rest stay free. */
		u->cnt.rx_post_errors++;
		done = 0;
		for (struct ibv_recv_wr *w = &first->wr; w != bad && w != NULL; w = w->next)
			done++;
		last->wr.next = rest;
		rest = bad != NULL ? bad : rest;
	}
	u->cnt.rx_reposted += done;
	u->rx_nposted += done;
	u->nrepost -= done;
	u->repost_head = rest != NULL ? ferry_container_of(rest, infud_rx_slot, wr) : NULL;
	if (u->repost_head == NULL)
		u->repost_tail = NULL;
}

/* Keep the receive queue full: released buffers go back in batches; when
 * loans hold the pool and the queue runs low, the pool grows. */
static void infud_refill(infud_ep *u)
{
	uint32_t room = u->rx_slots - u->rx_nposted;
	if (room == 0)
		return;
	if (u->nrepost < room && u->rx_nposted < u->rx_slots / 4)
		(void)infud_rx_grow(u);
	if (u->nrepost >= INFUD_RX_REPOST_BATCH || u->rx_nposted < u->rx_slots / 2)
		infud_repost(u);
}

/* The sender's GID from the 40 bytes before the datagram. RoCEv2 over IPv4
 * puts 20 zero bytes and the IPv4 header there (the GID is then the
 * IPv4-mapped address); otherwise it is a GRH, source GID at byte 8. The
 * test is rdma-core's (ibv_init_ah_from_wc): an IPv4 header with a valid
 * checksum wins. */
static bool infud_ipv4_hdr(const uint8_t *ip)
{
	if (ip[0] != 0x45)
		return false;
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)ip[i] << 8 | ip[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

static void infud_src_gid(const infud_ep *u, const uint8_t *grh, uint8_t gid[16])
{
	const uint8_t *ip4 = grh + 20;
	if (u->dev.roce && ((grh[0] >> 4) != 6 || infud_ipv4_hdr(ip4))) {
		memset(gid, 0, 10);
		gid[10] = gid[11] = 0xff;
		memcpy(gid + 12, ip4 + 12, 4);
		return;
	}
	memcpy(gid, grh + 8, 16);
}

static int infud_rx_poll(infud_ep *u, ferry_pkt **pkts, int max)
{
	struct ibv_wc wc[INFUD_RX_BATCH_MAX];
	if (max > INFUD_RX_BATCH_MAX)
		max = INFUD_RX_BATCH_MAX;
	int n = ibv_poll_cq(u->rcq, max, wc);
	u->cnt.cq_polls++;
	if (n <= 0)
		return n < 0 ? -EIO : 0;
	int out = 0;
	for (int i = 0; i < n; i++) {
		infud_rx_slot *s = (infud_rx_slot *)(uintptr_t)wc[i].wr_id;
		u->rx_nposted--;
		if (wc[i].status != IBV_WC_SUCCESS || wc[i].byte_len < INFUD_GRH_BYTES) {
			if (wc[i].status != IBV_WC_SUCCESS)
				u->cnt.wc_errors++;
			else
				u->cnt.rx_short++;
			infud_repost_add(u, s);
			continue;
		}
		uint8_t *mem = (uint8_t *)(uintptr_t)s->sge.addr;
		ferry_ib_addr src;
		memset(&src, 0, sizeof(src));
		if (wc[i].wc_flags & IBV_WC_GRH)
			infud_src_gid(u, mem, src.gid);
		else /* same IB subnet, no GRH: our prefix routes on the LID */
			memcpy(src.gid, u->dev.gid.raw, 8);
		src.qpn = wc[i].src_qp;
		src.qkey = INFUD_QKEY;
		src.lid = u->dev.roce ? 0 : wc[i].slid;
		src.roce = u->dev.roce;
		s->pkt.src.len = sizeof(src);
		memcpy(s->pkt.src.u.bytes, &src, sizeof(src));
		s->pkt.data = mem + INFUD_GRH_BYTES;
		s->pkt.len = wc[i].byte_len - INFUD_GRH_BYTES;
		pkts[out++] = &s->pkt;
	}
	return out;
}

static void infud_boot_serve(infud_ep *u)
{
	u->cnt.boot_answers +=
		(uint64_t)ferry__ib_boot_serve(u->boot_fd, &u->self, u->max_payload, &u->cnt.boot_bad);
}

/* Block mode, nothing received: consume the channel's events, re-arm the
 * CQ, and poll once more (a completion that landed before the arm raised
 * no event). */
static int infud_idle(infud_ep *u, ferry_pkt **pkts, int max)
{
	if (u->boot_fd >= 0)
		infud_boot_serve(u);
	infud_repost(u);
	if (u->armed) {
		struct ibv_cq *cq;
		void *cq_ctx;
		while (ibv_get_cq_event(u->chan, &cq, &cq_ctx) == 0) {
			u->cnt.cq_events++;
			u->unacked_events++;
			u->armed = false;
		}
		if (u->unacked_events >= INFUD_CQ_ACK_BATCH) {
			ibv_ack_cq_events(u->rcq, u->unacked_events);
			u->unacked_events = 0;
		}
	}
	if (u->armed)
		return 0;
	if (ibv_req_notify_cq(u->rcq, 0) != 0)
		return -errno;
	u->armed = true;
	u->cnt.cq_arms++;
	return infud_rx_poll(u, pkts, max);
}

static int infud_poll(ferry_ep *ep, ferry_pkt **pkts, int max)
{
	infud_ep *u = infud_of(ep);
	if (u->boot_fd >= 0 && ++u->boot_tick % INFUD_BOOT_EVERY == 0)
		infud_boot_serve(u);
	infud_refill(u);
	int n = infud_rx_poll(u, pkts, max);
	if (n != 0 || !ep->sleeps)
		return n;
	return infud_idle(u, pkts, max);
}

static void infud_release(ferry_ep *ep, ferry_pkt *pkt)
{
	infud_ep *u = infud_of(ep);
	infud_repost_add(u, ferry_container_of(pkt, infud_rx_slot, pkt));
	if (u->nrepost >= INFUD_RX_REPOST_BATCH && u->rx_slots - u->rx_nposted >= INFUD_RX_REPOST_BATCH)
		infud_repost(u);
}

/* Resolve, caps, ctl --------------------------------------------------------*/

static int infud_resolve(ferry_ep *ep, const ferry_loc *peer, ferry_addr *out)
{
	infud_ep *u = infud_of(ep);
	char *msg = ep->errmsg;
	size_t ml = sizeof(ep->errmsg);
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = ferry__inet_resolve(peer, false, SOCK_DGRAM, &ss, &sl, msg, ml);
	if (rc != 0)
		return rc;
	ferry_ib_addr a;
	uint32_t mtu = 0;
	if (infud_local_find(&ss, &a, &mtu)) {
		u->cnt.boot_local++;
	} else if ((rc = ferry__ib_boot_query(peer, u->boot_timeout_ms, &a, &mtu, msg, ml)) != 0) {
		return rc;
	}
	char who[128];
	ferry__ib_addr_str(&a, who, sizeof(who));
	if ((a.roce != 0) != u->dev.roce) {
		snprintf(msg, ml, "peer %.80s is on %s, dev '%.32s' on %s", who, a.roce ? "RoCE" : "IB",
		         u->dev.name, u->dev.roce ? "RoCE" : "IB");
		return FERRY_EBADLOC;
	}
	if (mtu != u->max_payload) {
		snprintf(msg, ml, "mtu: the peer's is %u, this endpoint's %u (set the same mtu= on both)",
		         mtu, u->max_payload);
		return FERRY_EBADLOC;
	}
	if (infud_ah_get(u, &a) == NULL) {
		snprintf(msg, ml, "no address handle to peer %.80s on dev '%.32s': %s", who, u->dev.name,
		         strerror(errno));
		return FERRY_EBADLOC;
	}
	ferry__ib_to_addr(&a, out);
	return 0;
}

static void infud_caps(ferry_ep *ep, ferry_caps *out)
{
	infud_ep *u = infud_of(ep);
	*out = (ferry_caps){.max_payload = u->max_payload,
	                    .inline_bytes = u->dev.max_inline < u->max_payload ? u->dev.max_inline
	                                                                       : u->max_payload,
	                    .tx_slots = u->tx_slots,
	                    .rx_batch = INFUD_RX_BATCH_MAX};
}

static int infud_ctl(ferry_ep *ep, int op, void *arg)
{
	infud_ep *u = infud_of(ep);
	if (op == FERRY_CTL_BOUND_LOCATOR) {
		struct ferry_ctl_locator *l = arg;
		int n = snprintf(l->out, l->len, "dev=%s,ibport=%u,gid=%u", u->dev.name,
		                 (unsigned)u->dev.port, (unsigned)u->dev.gid_index);
		if (n < 0 || (size_t)n >= l->len)
			return -ERANGE;
		if (u->boot_fd >= 0) {
			l->out[n++] = ',';
			if (ferry__inet_locator((struct sockaddr *)&u->boot_addr, l->out + n,
			                        l->len - (size_t)n) < 0)
				return -ERANGE;
		}
		return 0;
	}
	if (op == FERRY_CTL_COUNTERS) {
		struct ferry_ctl_counters *c = arg;
#define INFUD_CNT(f) c->cb(c->arg, #f, u->cnt.f)
		INFUD_CNT(ah_created);
		INFUD_CNT(ah_cache_hits);
		INFUD_CNT(ah_evictions);
		INFUD_CNT(ah_create_errors);
		INFUD_CNT(tx_inline);
		INFUD_CNT(tx_signaled);
		INFUD_CNT(tx_unsignaled);
		INFUD_CNT(tx_ring_waits);
		INFUD_CNT(tx_ring_drops);
		INFUD_CNT(tx_post_errors);
		INFUD_CNT(post_send_calls);
		INFUD_CNT(post_recv_calls);
		INFUD_CNT(rx_reposted);
		INFUD_CNT(rx_post_errors);
		INFUD_CNT(cq_polls);
		INFUD_CNT(wc_errors);
		INFUD_CNT(rx_short);
		INFUD_CNT(qp_recoveries);
		INFUD_CNT(rx_pool_grows);
		INFUD_CNT(cq_arms);
		INFUD_CNT(cq_events);
		INFUD_CNT(boot_answers);
		INFUD_CNT(boot_bad);
		INFUD_CNT(boot_local);
#undef INFUD_CNT
		c->cb(c->arg, "max_payload", u->max_payload);
		c->cb(c->arg, "max_inline", u->dev.max_inline);
		c->cb(c->arg, "rx_posted", u->rx_nposted);
		c->cb(c->arg, "rx_buffers", u->rx_total);
		return 0;
	}
	return -ENOTSUP;
}

static const ferry_dgram_ops infud_dgram_ops = {
	.send = infud_send,
	.flush = infud_flush,
	.poll = infud_poll,
	.release = infud_release,
	.resolve = infud_resolve,
	.caps = infud_caps,
	.ctl = infud_ctl,
	.close = infud_close,
};

const ferry_driver_ops ferry__infud_driver = {
	.name = "infud",
	.kind = FERRY_DRIVER_DATAGRAM,
	.wrapper = false,
	.ep_size = sizeof(infud_ep),
	.keys = infud_keys,
	.probe = ferry__ib_probe,
	.open = infud_open,
	.dgram = &infud_dgram_ops,
};
