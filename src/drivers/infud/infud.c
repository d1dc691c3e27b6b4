/* infud: the InfiniBand/RoCE unreliable-datagram driver. One UD QP per
 * endpoint; a ring of registered transmit slots posted as one linked
 * work-request list per flush with selective signaling (and inline sends for
 * small packets); a registered receive pool loaned up zero-copy and reposted
 * in batches; address handles cached per destination. A listener answers a
 * small UDP bootstrap query (ib.h) that tells clients its QPN and GID.
 *
 * Here: the process's listeners, the address-handle cache, open/close,
 * resolve, caps, ctl. infud_io.c: transmit (send, flush, reap) and receive
 * (poll, release, block-mode arming); infud.h: constants and state.
 * docs/drivers/infud.md has the design and numbers. */
#include "infud.h"

enum {
	INFUD_K_MTU,
	INFUD_K_TXSLOTS,
	INFUD_K_RXSLOTS,
	INFUD_K_RXMAX,
	INFUD_K_BOOT_TIMEOUT,
	INFUD_K_REUSEPORT,
	INFUD_K_COUNT
};
/* infud's keys; the verbs keys are kit/ib's, host/port (the bootstrap
 * exchange) kit/inet's. mtu: 0 = the port's active MTU. */
static const ferry_loc_key infud_keys[INFUD_K_COUNT + 1] = {
        [INFUD_K_MTU] = {.name = "mtu",
                         .kind = FERRY_LOC_UINT,
                         .min = INFUD_MIN_MTU_BYTES,
                         .max = 4096},
        [INFUD_K_TXSLOTS] = {.name = "txslots",
                             .kind = FERRY_LOC_UINT,
                             .min = 1,
                             .max = 1u << 15,
                             .dflt = INFUD_TX_SLOTS_DEFAULT},
        [INFUD_K_RXSLOTS] = {.name = "rxslots",
                             .kind = FERRY_LOC_UINT,
                             .min = INFUD_RX_SLOTS_MIN,
                             .max = 1u << 16,
                             .dflt = INFUD_RX_SLOTS_DEFAULT},
        [INFUD_K_RXMAX] = {.name = "rxmax",
                           .kind = FERRY_LOC_UINT,
                           .min = INFUD_RX_SLOTS_MIN,
                           .max = 1u << 22,
                           .dflt = INFUD_RX_MAX_DEFAULT},
        [INFUD_K_BOOT_TIMEOUT] = {.name = "boot_timeout",
                                  .kind = FERRY_LOC_UINT,
                                  .min = 1,
                                  .max = 600000,
                                  .dflt = INFUD_BOOT_TIMEOUT_DEFAULT_MS},
        [INFUD_K_REUSEPORT] = {.name = "reuseport", .kind = FERRY_LOC_UINT, .max = 1},
};
static const ferry_loc_key *const infud_key_tables[] = {infud_keys, ferry__ib_keys,
                                                        ferry__inet_keys, NULL};

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

static bool infud_sa_match(const struct sockaddr_storage *bound,
                           const struct sockaddr_storage *want)
{
	if (bound->ss_family != want->ss_family)
		return false;
	if (bound->ss_family == AF_INET) {
		const struct sockaddr_in *b = (const void *)bound,
		                         *w = (const void *)want;
		return b->sin_port == w->sin_port &&
		       (b->sin_addr.s_addr == w->sin_addr.s_addr ||
		        b->sin_addr.s_addr == htonl(INADDR_ANY));
	}
	const struct sockaddr_in6 *b = (const void *)bound, *w = (const void *)want;
	return b->sin6_port == w->sin6_port &&
	       (memcmp(&b->sin6_addr, &w->sin6_addr, 16) == 0 ||
	        memcmp(&b->sin6_addr, &in6addr_any, 16) == 0);
}

/* A listener of this process at want: its address and MTU. Several
 * (a reuseport server group) take turns, as the kernel's hash spreads
 * queries from other processes over them. */
static bool infud_local_find(const struct sockaddr_storage *want, ferry_ib_addr *out,
                             uint32_t *mtu)
{
	static unsigned turn;
	unsigned n = 0;
	pthread_mutex_lock(&infud_local_lock);
	for (infud_ep *u = infud_local_head; u != NULL; u = u->local_next)
		n += infud_sa_match(&u->boot_addr, want);
	unsigned pick = n > 0 ? turn++ % n : 0;
	for (infud_ep *u = infud_local_head; u != NULL && n > 0; u = u->local_next)
		if (infud_sa_match(&u->boot_addr, want) && pick-- == 0) {
			*out = u->self;
			*mtu = u->max_payload;
			break;
		}
	pthread_mutex_unlock(&infud_local_lock);
	return n > 0;
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
struct ibv_ah *ferry__infud_ah_get(infud_ep *u, const ferry_ib_addr *peer)
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
		if (!ferry__infud_tx_drain(u))
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

/* RESET -> INIT -> RTR -> RTS: a UD QP needs no peer. */
static int infud_qp_up(infud_ep *u)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT,
	                        .pkey_index = 0,
	                        .port_num = u->dev.port,
	                        .qkey = INFUD_QKEY};
	if (ibv_modify_qp(u->qp, &a,
	                  IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY))
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
			int e = errno;
			snprintf(msg, ml, "dev '%s': ibv_create_comp_channel: %s",
			         u->dev.name, strerror(e));
			return -e;
		}
		int fl = fcntl(u->chan->fd, F_GETFL);
		if (fl < 0 || fcntl(u->chan->fd, F_SETFL, fl | O_NONBLOCK) != 0)
			return -errno;
	}
	u->scq = ibv_create_cq(ctx, (int)u->tx_slots, NULL, NULL, 0);
	u->rcq = ibv_create_cq(ctx, (int)u->rx_slots, u, u->chan, 0);
	if (u->scq == NULL || u->rcq == NULL) {
		int e = errno;
		snprintf(msg, ml, "dev '%s': ibv_create_cq: %s", u->dev.name,
		         strerror(e));
		return e != 0 ? -e : -ENOMEM;
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
		int e = errno;
		snprintf(msg, ml, "dev '%s': ibv_create_qp (UD, %u/%u WRs): %s",
		         u->dev.name, u->tx_slots, u->rx_slots, strerror(e));
		return e != 0 ? -e : -ENOMEM;
	}
	u->dev.max_inline = qa.cap.max_inline_data;
	int rc = infud_qp_up(u);
	if (rc != 0) {
		snprintf(msg, ml, "dev '%s': ibv_modify_qp to RTS: %s", u->dev.name,
		         strerror(-rc));
		return rc;
	}
	ferry__ib_self(&u->dev, u->qp->qp_num, INFUD_QKEY, &u->self);

	/* Transmit ring: one registered mapping, max_payload bytes per slot. */
	u->tx_stride = ferry__infud_round_up(u->max_payload);
	u->tx_mem_len = u->tx_stride * u->tx_slots;
	u->tx_mem = ferry__infud_map(u->tx_mem_len);
	u->tx_wr = ferry__calloc(u->tx_slots, sizeof(*u->tx_wr));
	u->tx_sge = ferry__calloc(u->tx_slots, sizeof(*u->tx_sge));
	if (u->tx_mem == NULL || u->tx_wr == NULL || u->tx_sge == NULL)
		return -ENOMEM;
	u->tx_mr =
	        ibv_reg_mr(u->dev.pd, u->tx_mem, u->tx_mem_len, IBV_ACCESS_LOCAL_WRITE);
	if (u->tx_mr == NULL) {
		int e = errno;
		snprintf(msg, ml, "dev '%s': ibv_reg_mr: %s (memlock limit?)",
		         u->dev.name, strerror(e));
		return e != 0 ? -e : -ENOMEM;
	}
	for (uint32_t i = 0; i < u->tx_slots; i++) {
		u->tx_sge[i] = (struct ibv_sge){
		        .addr = (uintptr_t)(u->tx_mem + i * u->tx_stride),
		        .lkey = u->tx_mr->lkey};
		u->tx_wr[i].sg_list = &u->tx_sge[i];
		u->tx_wr[i].num_sge = 1;
		u->tx_wr[i].opcode = IBV_WR_SEND;
	}
	/* Receive pool: GRH room plus the port MTU per buffer (a peer with a
	 * larger mtu= than ours still fits). */
	u->rx_stride = ferry__infud_round_up(INFUD_GRH_BYTES + u->dev.mtu_bytes);
	u->rx_chunk_slots = (u->rx_max + INFUD_RX_CHUNKS_MAX - 1) / INFUD_RX_CHUNKS_MAX;
	if (u->rx_chunk_slots < u->rx_slots)
		u->rx_chunk_slots = u->rx_slots;
	if ((rc = ferry__infud_rx_grow(u)) != 0) {
		snprintf(msg, ml,
		         "dev '%s': receive pool of %u buffers: %s (memlock limit?)",
		         u->dev.name, u->rx_chunk_slots, strerror(-rc));
		return rc;
	}
	u->cnt.rx_pool_grows = 0;
	ferry__infud_repost(u);
	if (u->rx_nposted != u->rx_slots) {
		snprintf(msg, ml, "dev '%s': ibv_post_recv: %s", u->dev.name,
		         strerror(errno));
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
	ferry_loc_val v[INFUD_K_COUNT];
	int rc = ferry_loc_read(loc, infud_keys, v, msg, ml);
	if (rc != 0)
		return rc;
	uint64_t mtu = v[INFUD_K_MTU].u, txslots = v[INFUD_K_TXSLOTS].u;
	uint64_t rxslots = v[INFUD_K_RXSLOTS].u, rxmax = v[INFUD_K_RXMAX].u;
	uint64_t boot_ms = v[INFUD_K_BOOT_TIMEOUT].u;
	u->boot_timeout_ms = (unsigned)boot_ms;
	if ((rc = ferry__ib_dev_open(&u->dev, loc, msg, ml)) != 0)
		return rc;
	if (mtu > u->dev.mtu_bytes) {
		snprintf(msg, ml,
		         "mtu '%llu' is above the active MTU %u of dev '%s' port %u",
		         (unsigned long long)mtu, u->dev.mtu_bytes, u->dev.name,
		         (unsigned)u->dev.port);
		return FERRY_EBADLOC;
	}
	u->max_payload = mtu != 0 ? (uint32_t)mtu : u->dev.mtu_bytes;
	/* The device bounds the queue depths. */
	uint32_t maxwr =
	        u->dev.dattr.max_qp_wr > 0 ? (uint32_t)u->dev.dattr.max_qp_wr : 1;
	uint32_t maxcqe = u->dev.dattr.max_cqe > 0 ? (uint32_t)u->dev.dattr.max_cqe : 1;
	if (maxcqe < maxwr)
		maxwr = maxcqe;
	if (txslots > maxwr || rxslots > maxwr) {
		snprintf(msg, ml, "%s '%llu' exceeds dev '%s' queue depth %u",
		         txslots > maxwr ? "txslots" : "rxslots",
		         (unsigned long long)(txslots > maxwr ? txslots : rxslots),
		         u->dev.name, maxwr);
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
		if (u->boot_fd >= 0 &&
		    epoll_ctl(ep->fd, EPOLL_CTL_ADD, u->boot_fd, &ev) != 0)
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
	} else if ((rc = ferry__ib_boot_query(peer, u->boot_timeout_ms, &a, &mtu, msg,
	                                      ml)) != 0) {
		return rc;
	}
	char who[128];
	ferry__ib_addr_str(&a, who, sizeof(who));
	if ((a.roce != 0) != u->dev.roce) {
		snprintf(msg, ml, "peer %.80s is on %s, dev '%.32s' on %s", who,
		         a.roce ? "RoCE" : "IB", u->dev.name,
		         u->dev.roce ? "RoCE" : "IB");
		return FERRY_EBADLOC;
	}
	if (mtu != u->max_payload) {
		snprintf(
		        msg, ml,
		        "mtu: the peer's is %u, this endpoint's %u (set the same mtu= on both)",
		        mtu, u->max_payload);
		return FERRY_EBADLOC;
	}
	if (ferry__infud_ah_get(u, &a) == NULL) {
		snprintf(msg, ml, "no address handle to peer %.80s on dev '%.32s': %s",
		         who, u->dev.name, strerror(errno));
		return FERRY_EBADLOC;
	}
	ferry__ib_to_addr(&a, out);
	return 0;
}

static void infud_caps(ferry_ep *ep, ferry_caps *out)
{
	infud_ep *u = infud_of(ep);
	*out = (ferry_caps){.max_payload = u->max_payload,
	                    .inline_bytes = u->dev.max_inline < u->max_payload
	                                            ? u->dev.max_inline
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
			if (ferry__inet_locator((struct sockaddr *)&u->boot_addr,
			                        l->out + n, l->len - (size_t)n) < 0)
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
        .send = ferry__infud_send,
        .flush = ferry__infud_flush,
        .poll = ferry__infud_poll,
        .release = ferry__infud_release,
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
        .key_tables = infud_key_tables,
        .probe = ferry__ib_probe,
        .open = infud_open,
        .dgram = &infud_dgram_ops,
};
