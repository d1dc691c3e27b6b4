/* Sending side of fast: links, windows, acks, congestion (window.c). */
#ifndef FERRY_FAST_WINDOW_H
#define FERRY_FAST_WINDOW_H

#include "transport/wire.h"
#include "fast.h"

fast_ctx *ferry__fast_ctx_of(ferry_ctx *ctx);
void ferry__fast_link_init(fast_link *l, ferry__port *port, ferry_addr *peer, uint8_t dir,
                           uint32_t liveness_us, uint64_t now_us);
/* A header for this link: type, direction, token, hints, channel, rpc id. */
void ferry__fast_hdr(const fast_link *l, ferry_wire_hdr *h, uint8_t type, uint8_t ch,
                     uint32_t rpc_id, uint16_t opcode);
uint32_t ferry__fast_win_frags(uint32_t cap);
void ferry__fast_link_set_cap(fast_link *l, uint32_t cap);
void ferry__fast_out_start(fast_link *l, fast_out *o, ferry_buf *msg, uint32_t cap);
/* The message is done with (acked, abandoned): its pooled window goes back. */
void ferry__fast_out_stop(fast_out *o);
void ferry__fast_win_pool_fini(fast_ctx *f);
/* When fragment f was last sent (full clock, from the 32 bits kept). */
uint64_t ferry__fast_out_sent_at(const fast_out *o, uint32_t f, uint64_t now_us);
bool ferry__fast_out_more(const fast_link *l, const fast_out *o);
int ferry__fast_out_send(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id,
                         uint16_t opcode, uint16_t aux, uint32_t f, uint8_t flags);
uint32_t ferry__fast_out_pump(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id,
                              uint16_t opcode, uint16_t aux, uint32_t max_new);
uint32_t ferry__fast_out_inflight(const fast_out *o);
uint32_t ferry__fast_out_ack(fast_link *l, fast_out *o, uint32_t first_missing,
                             const uint64_t *words, uint32_t nwords, uint32_t echo);
uint32_t ferry__fast_out_recover(fast_link *l, fast_out *o, uint8_t ch, uint32_t rpc_id,
                                 uint16_t opcode, uint16_t aux);
bool ferry__fast_out_done(const fast_out *o);
/* A loss: halve the window (to the minimum on a timeout). */
void ferry__fast_link_loss(fast_link *l, bool timeout);
void ferry__fast_link_sample(fast_link *l, uint64_t sent_us);

#endif
