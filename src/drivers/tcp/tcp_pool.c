/* tcp memory pools: the 256 KiB receive blocks that bodies are loaned from
 * (refcounted: a block goes back to the free list when its last loan and
 * its reading connection are done with it) and the send-queue entries. */
#include "base/alloc.h"
#include "tcp.h"

tcp_blk *ferry__tcp_blk_get(tcp_ep *t)
{
	tcp_blk *b = t->blk_free;
	if (b != NULL) {
		t->blk_free = b->next_free;
	} else {
		b = ferry__calloc(1, sizeof(*b));
		if (b == NULL)
			return NULL;
		if ((b->mem = ferry__malloc(TCP_BLK_BYTES)) == NULL) {
			ferry__free(b);
			return NULL;
		}
		b->pkt.ep = &t->base;
		b->next_all = t->blk_all;
		t->blk_all = b;
		t->nblks++;
		t->cnt.rx_blocks++;
	}
	b->refs = 1;
	return b;
}

void ferry__tcp_blk_put(tcp_ep *t, tcp_blk *b)
{
	if (--b->refs == 0) {
		b->next_free = t->blk_free;
		t->blk_free = b;
	}
}

void ferry__tcp_release(ferry_ep *ep, ferry_pkt *pkt)
{
	ferry__tcp_blk_put(tcp_of(ep), ferry_container_of(pkt, tcp_blk, pkt));
}

void ferry__tcp_txm_put(tcp_ep *t, tcp_txm *m)
{
	ferry__free(m->pay.own);
	m->pay.own = NULL;
	m->next = t->txm_free;
	t->txm_free = m;
}
