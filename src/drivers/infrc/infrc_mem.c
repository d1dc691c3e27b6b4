/* infrc registered memory: the shared receive pool behind the SRQ (one
 * region, one MR, reposted in batches), the plain-memory copy blocks that
 * take received bytes when too much of the pool is loaned out, and the
 * cache of registered staging/landing regions that pull-mode bodies travel
 * through (power-of-two classes, reused without registering again). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "base/alloc.h"
#include "infrc.h"

#define INFRC_MR_ACCESS                                                                  \
	(IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE)

/* Receive pool ------------------------------------------------------------*/
int ferry__infrc_rx_open(infrc_ep *e)
{
	char *msg = e->base.errmsg;
	size_t msz = sizeof(e->base.errmsg);
	e->rx_mem_bytes = (size_t)e->rxbufs * e->bufsize;
	void *m = mmap(NULL, e->rx_mem_bytes, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		e->rx_mem_bytes = 0;
		return -ENOMEM;
	}
	e->rx_mem = m;
	e->rx_mr =
	        ibv_reg_mr(e->dev.pd, e->rx_mem, e->rx_mem_bytes, IBV_ACCESS_LOCAL_WRITE);
	if (e->rx_mr == NULL) {
		int rc = errno ? -errno : -ENOMEM;
		snprintf(msg, msz, "rxbufs/bufsize: registering %zu receive bytes: %s",
		         e->rx_mem_bytes, strerror(-rc));
		return rc;
	}
	e->cnt.mr_registrations++;
	e->rxb = ferry__calloc(e->rxbufs, sizeof(*e->rxb));
	if (e->rxb == NULL)
		return -ENOMEM;
	struct ibv_srq_init_attr sa = {.attr = {.max_wr = e->rxbufs, .max_sge = 1}};
	e->srq = ibv_create_srq(e->dev.pd, &sa);
	if (e->srq == NULL) {
		int rc = errno ? -errno : -ENOMEM;
		snprintf(msg, msz, "rxbufs '%u': ibv_create_srq: %s", e->rxbufs,
		         strerror(-rc));
		return rc;
	}
	for (uint32_t i = 0; i < e->rxbufs; i++) {
		infrc_rxb *b = &e->rxb[i];
		b->l.kind = INFRC_LOAN_RXB;
		b->l.pkt.ep = &e->base;
		b->l.pkt.data = e->rx_mem + (size_t)i * e->bufsize;
		b->idx = i;
		b->refs = 1;
		ferry__infrc_rxb_put(e, b);
	}
	return ferry__infrc_repost(e, true) < 0 ? -EIO : 0;
}

void ferry__infrc_rx_close(infrc_ep *e)
{
	if (e->srq != NULL)
		(void)ibv_destroy_srq(e->srq);
	e->srq = NULL;
	if (e->rx_mr != NULL)
		(void)ibv_dereg_mr(e->rx_mr);
	e->rx_mr = NULL;
	if (e->rx_mem != NULL)
		munmap(e->rx_mem, e->rx_mem_bytes);
	e->rx_mem = NULL;
	ferry__free(e->rxb);
	e->rxb = NULL;
	while (e->blk_all != NULL) {
		infrc_blk *b = e->blk_all;
		e->blk_all = b->next_all;
		ferry__free(b->mem);
		ferry__free(b);
	}
	e->blk_free = e->blk_cur = NULL;
}

/* Drop one reference; the last one queues the buffer for reposting. */
void ferry__infrc_rxb_put(infrc_ep *e, infrc_rxb *b)
{
	if (--b->refs != 0)
		return;
	b->next = NULL;
	if (e->repost_tail != NULL)
		e->repost_tail->next = b;
	else
		e->repost = b;
	e->repost_tail = b;
	e->nrepost++;
}

/* Post waiting buffers to the SRQ: a batch at a time, or all of them.
 * Returns buffers posted or -errno. */
int ferry__infrc_repost(infrc_ep *e, bool all)
{
	int total = 0;
	while (e->nrepost > 0 && (all || e->nrepost >= INFRC_REPOST_BATCH)) {
		struct ibv_recv_wr wr[INFRC_REPOST_BATCH], *bad = NULL;
		struct ibv_sge sge[INFRC_REPOST_BATCH];
		int n = 0;
		infrc_rxb *b = e->repost;
		while (b != NULL && n < (int)INFRC_REPOST_BATCH) {
			sge[n] = (struct ibv_sge){.addr = (uintptr_t)b->l.pkt.data,
			                          .length = e->bufsize,
			                          .lkey = e->rx_mr->lkey};
			wr[n] = (struct ibv_recv_wr){
			        .wr_id = b->idx, .sg_list = &sge[n], .num_sge = 1};
			if (n > 0)
				wr[n - 1].next = &wr[n];
			b->refs = 1; /* the driver's, until the completion is consumed */
			b = b->next;
			n++;
		}
		int ok = n;
		if (ibv_post_srq_recv(e->srq, wr, &bad) != 0)
			ok = bad != NULL ? (int)(bad - wr) : 0;
		/* What was refused stays queued and is retried on the next poll. */
		b = e->repost;
		for (int i = 0; i < ok; i++)
			b = b->next;
		e->repost = b;
		if (b == NULL)
			e->repost_tail = NULL;
		n = ok;
		if (n == 0)
			return total > 0 ? total : -EIO;
		e->nrepost -= (uint32_t)n;
		e->posted += (uint32_t)n;
		e->cnt.rx_reposted += (uint64_t)n;
		e->cnt.repost_calls++;
		total += n;
	}
	return total;
}

/* Copy blocks -------------------------------------------------------------*/
/* The current copy block with at least need bytes of room (a new one when
 * it is spent); the caller takes a reference per loan. */
infrc_blk *ferry__infrc_blk_room(infrc_ep *e, uint32_t need)
{
	infrc_blk *b = e->blk_cur;
	if (b != NULL && INFRC_COPY_BLK_BYTES - e->blk_off >= need)
		return b;
	if (b != NULL) {
		e->blk_cur = NULL;
		ferry__infrc_blk_put(e, b); /* the "current" reference */
	}
	b = e->blk_free;
	if (b != NULL) {
		e->blk_free = b->next_free;
	} else {
		b = ferry__calloc(1, sizeof(*b));
		if (b == NULL)
			return NULL;
		if ((b->mem = ferry__malloc(INFRC_COPY_BLK_BYTES)) == NULL) {
			ferry__free(b);
			return NULL;
		}
		b->l.kind = INFRC_LOAN_BLK;
		b->l.pkt.ep = &e->base;
		b->l.pkt.data = b->mem;
		b->next_all = e->blk_all;
		e->blk_all = b;
	}
	b->refs = 1;
	e->blk_cur = b;
	e->blk_off = 0;
	return b;
}

void ferry__infrc_blk_put(infrc_ep *e, infrc_blk *b)
{
	if (--b->refs == 0) {
		b->next_free = e->blk_free;
		e->blk_free = b;
	}
}

/* Regions -----------------------------------------------------------------*/
static int region_class(size_t len)
{
	int c = 0;
	while (c < INFRC_REGION_CLASSES - 1 &&
	       ((size_t)1 << (INFRC_REGION_MIN_SHIFT + c)) < len)
		c++;
	return ((size_t)1 << (INFRC_REGION_MIN_SHIFT + c)) >= len ? c : -1;
}

/* A registered region of at least len bytes (reused when one is idle). */
infrc_region *ferry__infrc_region_get(infrc_ep *e, size_t len)
{
	int c = region_class(len);
	if (c < 0)
		return NULL;
	infrc_region *r = e->regions[c];
	if (r != NULL) {
		e->regions[c] = r->next;
		e->region_idle_bytes -= r->size;
		r->refs = 1;
		return r;
	}
	r = ferry__calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->size = (size_t)1 << (INFRC_REGION_MIN_SHIFT + c);
	r->cls = c;
	void *m = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	               -1, 0);
	if (m == MAP_FAILED) {
		ferry__free(r);
		return NULL;
	}
	r->mem = m;
	r->mr = ibv_reg_mr(e->dev.pd, r->mem, r->size, INFRC_MR_ACCESS);
	if (r->mr == NULL) {
		munmap(r->mem, r->size);
		ferry__free(r);
		return NULL;
	}
	e->cnt.mr_registrations++;
	r->l.kind = INFRC_LOAN_REGION;
	r->l.pkt.ep = &e->base;
	r->l.pkt.data = r->mem;
	r->refs = 1;
	return r;
}

static void region_free(infrc_ep *e, infrc_region *r)
{
	(void)ibv_dereg_mr(r->mr);
	e->cnt.mr_deregistrations++;
	munmap(r->mem, r->size);
	ferry__free(r);
}

void ferry__infrc_region_put(infrc_ep *e, infrc_region *r)
{
	if (--r->refs != 0)
		return;
	if (e->region_idle_bytes + r->size > INFRC_REGION_CACHE_BYTES) {
		region_free(e, r);
		return;
	}
	r->next = e->regions[r->cls];
	e->regions[r->cls] = r;
	e->region_idle_bytes += r->size;
}

void ferry__infrc_regions_close(infrc_ep *e)
{
	for (int c = 0; c < INFRC_REGION_CLASSES; c++)
		while (e->regions[c] != NULL) {
			infrc_region *r = e->regions[c];
			e->regions[c] = r->next;
			region_free(e, r);
		}
	e->region_idle_bytes = 0;
}
