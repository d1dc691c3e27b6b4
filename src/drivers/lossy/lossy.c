/* lossy: wraps any datagram driver and injects faults on transmit, seeded
 * and deterministic: drop, duplicate, reorder (hold one packet back until
 * the next has gone), delay (hold for delay_us), corrupt (flip one random
 * bit). Every decision draws from one xorshift generator seeded by seed=,
 * so a run replays exactly over the loopback driver. It reaches the wrapped
 * driver only through its ops table. Fault injection lives here and only
 * here. */
#include <errno.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/alloc.h"
#include "base/loc.h"

#define LOSSY_HELD_SLOTS       256 /* packets held (delayed, reordered, copied) */
#define LOSSY_DELAY_US_DEFAULT 1000

enum {
	LOSSY_K_DROP,
	LOSSY_K_DUP,
	LOSSY_K_REORDER,
	LOSSY_K_DELAY,
	LOSSY_K_CORRUPT,
	LOSSY_K_DELAY_US,
	LOSSY_K_SEED,
	LOSSY_K_COUNT
};
/* Rates are probabilities per packet; delay_us how long a delayed one is
 * held; seed makes a run repeatable. */
static const ferry_loc_key lossy_keys[LOSSY_K_COUNT + 1] = {
        [LOSSY_K_DROP] = {.name = "drop", .kind = FERRY_LOC_REAL, .rmax = 1},
        [LOSSY_K_DUP] = {.name = "dup", .kind = FERRY_LOC_REAL, .rmax = 1},
        [LOSSY_K_REORDER] = {.name = "reorder", .kind = FERRY_LOC_REAL, .rmax = 1},
        [LOSSY_K_DELAY] = {.name = "delay", .kind = FERRY_LOC_REAL, .rmax = 1},
        [LOSSY_K_CORRUPT] = {.name = "corrupt", .kind = FERRY_LOC_REAL, .rmax = 1},
        [LOSSY_K_DELAY_US] = {.name = "delay_us",
                              .kind = FERRY_LOC_UINT,
                              .max = 10000000,
                              .dflt = LOSSY_DELAY_US_DEFAULT},
        [LOSSY_K_SEED] = {.name = "seed",
                          .kind = FERRY_LOC_UINT,
                          .max = UINT64_MAX,
                          .dflt = 1},
};
static const ferry_loc_key *const lossy_key_tables[] = {lossy_keys, NULL};

typedef struct lossy_held {
	uint8_t *data; /* hdr + payload copy, inner max_payload bytes */
	uint32_t hdr_len, len;
	uint64_t due_us; /* 0 = send at the next opportunity */
	ferry_addr to;
	uint8_t state; /* LOSSY_FREE / LOSSY_WAITING / LOSSY_SENT */
} lossy_held;

enum { LOSSY_FREE = 0, LOSSY_WAITING = 1, LOSSY_SENT = 2 };

typedef struct lossy_counters {
	uint64_t seen, dropped, duplicated, reordered, delayed, corrupted, held_full;
} lossy_counters;

typedef struct lossy_ep {
	ferry_ep base;
	double drop, dup, reorder, delay, corrupt;
	uint64_t delay_us;
	uint64_t rng;
	uint32_t inner_payload;
	int reorder_slot; /* held packet released after the next send, or -1 */
	uint32_t waiting; /* held packets not yet sent */
	lossy_held held[LOSSY_HELD_SLOTS];
	ferry_buf scratch; /* references held payloads until the inner flush */
	lossy_counters cnt;
} lossy_ep;

static lossy_ep *lossy_of(ferry_ep *ep)
{
	return ferry_container_of(ep, lossy_ep, base);
}

/* xorshift64*: small, fast, and identical on every platform. */
static double lossy_draw(lossy_ep *l)
{
	l->rng ^= l->rng >> 12;
	l->rng ^= l->rng << 25;
	l->rng ^= l->rng >> 27;
	return (double)((l->rng * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

static uint64_t lossy_now(lossy_ep *l)
{
	(void)l;
	return ferry__clock_us();
}

static int lossy_open(ferry_ep *ep, const ferry_loc *loc, unsigned flags)
{
	(void)flags;
	lossy_ep *l = lossy_of(ep);
	ferry_buf_init(&l->scratch);
	ferry_loc_val v[LOSSY_K_COUNT];
	int rc = ferry_loc_read(loc, lossy_keys, v, ep->errmsg, sizeof(ep->errmsg));
	if (rc != 0)
		return rc;
	l->drop = v[LOSSY_K_DROP].r;
	l->dup = v[LOSSY_K_DUP].r;
	l->reorder = v[LOSSY_K_REORDER].r;
	l->delay = v[LOSSY_K_DELAY].r;
	l->corrupt = v[LOSSY_K_CORRUPT].r;
	l->delay_us = v[LOSSY_K_DELAY_US].u;
	uint64_t seed = v[LOSSY_K_SEED].u;
	/* splitmix64 of the seed; xorshift must not start from zero. */
	uint64_t z = seed + 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	l->rng = z != 0 ? z : 0x9E3779B97F4A7C15ull;
	l->reorder_slot = -1;
	ferry_caps ic;
	ep->inner->drv->dgram->caps(ep->inner, &ic);
	l->inner_payload = ic.max_payload;
	ep->fd = ep->inner->fd;
	return 0;
}

static void lossy_close(ferry_ep *ep)
{
	lossy_ep *l = lossy_of(ep);
	for (int i = 0; i < LOSSY_HELD_SLOTS; i++)
		ferry__free(l->held[i].data);
	ferry_buf_fini(&l->scratch);
}

/* Copy a packet into a free held slot. NULL when all are busy. */
static lossy_held *lossy_hold(lossy_ep *l, const ferry_addr *to, const void *hdr,
                              size_t hdr_len, ferry_buf_iter *payload)
{
	for (int i = 0; i < LOSSY_HELD_SLOTS; i++) {
		lossy_held *h = &l->held[i];
		if (h->state != LOSSY_FREE)
			continue;
		if (h->data == NULL &&
		    (h->data = ferry__malloc(l->inner_payload)) == NULL)
			return NULL;
		memcpy(h->data, hdr, hdr_len);
		size_t off = hdr_len;
		ferry_buf_seg seg;
		while (payload != NULL && ferry_buf_iter_next(payload, &seg)) {
			if (seg.kind == FERRY_CHUNK_FILE) {
				if (ferry_buf_copy_out(payload->buf, seg.offset, seg.len,
				                       h->data + off) < 0)
					return NULL;
			} else {
				memcpy(h->data + off, seg.data, seg.len);
			}
			off += seg.len;
		}
		h->hdr_len = (uint32_t)hdr_len;
		h->len = (uint32_t)off;
		h->to = *to;
		h->due_us = 0;
		h->state = LOSSY_WAITING;
		l->waiting++;
		return h;
	}
	l->cnt.held_full++;
	return NULL;
}

/* Pass a held copy to the inner driver; its memory stays busy until the
 * inner flush. */
static int lossy_send_held(lossy_ep *l, lossy_held *h)
{
	ferry_ep *in = l->base.inner;
	size_t off = ferry_buf_len(&l->scratch);
	if (ferry_buf_append_ref(&l->scratch, h->data + h->hdr_len,
	                         h->len - h->hdr_len) != 0)
		return -ENOMEM;
	ferry_buf_iter it;
	ferry_buf_iter_init(&it, &l->scratch, off, h->len - h->hdr_len);
	h->state = LOSSY_SENT;
	l->waiting--;
	l->base.tx_pending = true;
	return in->drv->dgram->send(in, &h->to, h->data, h->hdr_len, &it);
}

static int lossy_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                      ferry_buf_iter *payload)
{
	lossy_ep *l = lossy_of(ep);
	ferry_ep *in = ep->inner;
	size_t plen = payload != NULL ? payload->left : 0;
	if (hdr_len > FERRY_DRIVER_HDR_MAX || hdr_len + plen > l->inner_payload)
		return -EMSGSIZE;
	l->cnt.seen++;
	int rc = 0;
	/* One draw per fault kind, always in this order (a corruption takes one
	 * more, for the bit), so decisions depend only on the seed and the
	 * sequence of packets. */
	double d_drop = lossy_draw(l), d_dup = lossy_draw(l), d_corrupt = lossy_draw(l),
	       d_delay = lossy_draw(l), d_reorder = lossy_draw(l);
	int held_before = l->reorder_slot;
	if (d_drop < l->drop) {
		l->cnt.dropped++;
	} else if (d_corrupt < l->corrupt || d_delay < l->delay ||
	           d_reorder < l->reorder) {
		ferry_buf_iter saved = payload != NULL ? *payload : (ferry_buf_iter){0};
		lossy_held *h = lossy_hold(l, to, hdr, hdr_len, payload);
		if (h == NULL) {
			rc = in->drv->dgram->send(in, to, hdr, hdr_len,
			                          payload != NULL ? &saved : NULL);
		} else if (d_corrupt < l->corrupt) {
			uint64_t bit = (uint64_t)(lossy_draw(l) * h->len * 8);
			h->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			l->cnt.corrupted++;
			rc = lossy_send_held(l, h);
		} else if (d_delay < l->delay) {
			h->due_us = lossy_now(l) + l->delay_us;
			l->cnt.delayed++;
			ep->wake_at_us = ep->wake_at_us == 0 || h->due_us < ep->wake_at_us
			                         ? h->due_us
			                         : ep->wake_at_us;
		} else {
			l->cnt.reordered++;
			if (l->reorder_slot < 0) {
				/* Held until the next send, or delay_us if none comes. */
				l->reorder_slot = (int)(h - l->held);
				h->due_us = lossy_now(l) + l->delay_us;
				ep->wake_at_us =
				        ep->wake_at_us == 0 || h->due_us < ep->wake_at_us
				                ? h->due_us
				                : ep->wake_at_us;
			} else { /* already holding one back: this one goes now */
				rc = lossy_send_held(l, h);
			}
		}
	} else {
		ferry_buf_iter saved = payload != NULL ? *payload : (ferry_buf_iter){0};
		rc = in->drv->dgram->send(in, to, hdr, hdr_len, payload);
		if (rc == 0 && d_dup < l->dup) {
			l->cnt.duplicated++;
			rc = in->drv->dgram->send(in, to, hdr, hdr_len,
			                          payload != NULL ? &saved : NULL);
		}
	}
	/* A packet held back for reordering leaves after the one that follows
	 * it (dropped or not), so it arrives late. */
	if (held_before >= 0 && l->reorder_slot == held_before) {
		lossy_held *h = &l->held[held_before];
		l->reorder_slot = -1;
		if (h->state == LOSSY_WAITING)
			lossy_send_held(l, h);
	}
	return rc;
}

static void lossy_send_due(lossy_ep *l)
{
	if (l->waiting == 0)
		return;
	uint64_t now = lossy_now(l), next = 0;
	for (int i = 0; i < LOSSY_HELD_SLOTS; i++) {
		lossy_held *h = &l->held[i];
		if (h->state != LOSSY_WAITING)
			continue;
		if (h->due_us <= now) {
			if (i == l->reorder_slot)
				l->reorder_slot = -1;
			lossy_send_held(l, h);
		} else if (next == 0 || h->due_us < next)
			next = h->due_us;
	}
	l->base.wake_at_us = next;
}

static int lossy_flush(ferry_ep *ep)
{
	lossy_ep *l = lossy_of(ep);
	lossy_send_due(l);
	int rc = ep->inner->drv->dgram->flush(ep->inner);
	/* The inner driver is done with every copy it was handed. */
	for (int i = 0; i < LOSSY_HELD_SLOTS; i++)
		if (l->held[i].state == LOSSY_SENT)
			l->held[i].state = LOSSY_FREE;
	ferry_buf_reset(&l->scratch);
	return rc;
}

static int lossy_poll(ferry_ep *ep, ferry_pkt **pkts, int max)
{
	lossy_ep *l = lossy_of(ep);
	lossy_send_due(l);
	return ep->inner->drv->dgram->poll(ep->inner, pkts, max);
}

static void lossy_release(ferry_ep *ep, ferry_pkt *pkt)
{
	/* Packets are the inner driver's (pkt->ep is the inner endpoint); the
	 * core releases them there. Nothing reaches this op. */
	(void)ep;
	(void)pkt;
}

static int lossy_resolve(ferry_ep *ep, const ferry_loc *peer, ferry_addr *out)
{
	int rc = ep->inner->drv->dgram->resolve(ep->inner, peer, out);
	if (rc != 0)
		memcpy(ep->errmsg, ep->inner->errmsg, sizeof(ep->errmsg));
	return rc;
}

static void lossy_caps(ferry_ep *ep, ferry_caps *out)
{
	ep->inner->drv->dgram->caps(ep->inner, out);
}

static int lossy_ctl(ferry_ep *ep, int op, void *arg)
{
	lossy_ep *l = lossy_of(ep);
	if (op == FERRY_CTL_COUNTERS) {
		struct ferry_ctl_counters *c = arg;
#define LOSSY_CNT(f) c->cb(c->arg, #f, l->cnt.f)
		LOSSY_CNT(seen);
		LOSSY_CNT(dropped);
		LOSSY_CNT(duplicated);
		LOSSY_CNT(reordered);
		LOSSY_CNT(delayed);
		LOSSY_CNT(corrupted);
		LOSSY_CNT(held_full);
#undef LOSSY_CNT
		return 0;
	}
	return ep->inner->drv->dgram->ctl(ep->inner, op, arg);
}

static const ferry_dgram_ops lossy_dgram_ops = {
        .send = lossy_send,
        .flush = lossy_flush,
        .poll = lossy_poll,
        .release = lossy_release,
        .resolve = lossy_resolve,
        .caps = lossy_caps,
        .ctl = lossy_ctl,
        .close = lossy_close,
};

const ferry_driver_ops ferry__lossy_driver = {
        .name = "lossy",
        .kind = FERRY_DRIVER_DATAGRAM,
        .wrapper = true,
        .ep_size = sizeof(lossy_ep),
        .key_tables = lossy_key_tables,
        .open = lossy_open,
        .dgram = &lossy_dgram_ops,
};
