/* Framing shared by the datagram transports: a message goes out as
 * fragments of frag_bytes payload each, every one with its own header. */
#ifndef FERRY_FRAME_H
#define FERRY_FRAME_H

#include "core.h"
#include "wire.h"

/* Send fragments [first, last] of msg (all of them: 0, UINT32_MAX) with
 * header template h (frag, flags LAST, msg_len and frag_bytes filled in
 * here). frag_bytes is the cap: a message is cut into the fewest fragments
 * under it, all of equal size but the last (at most n-1 bytes shorter). Returns
 * packets queued, or the first driver error (later fragments not sent). */
int ferry__frame_send(ferry__port *port, const ferry_addr *to, ferry_wire_hdr *h,
                      ferry_buf *msg, uint32_t frag_bytes, uint32_t first, uint32_t last);

/* Count a refused packet or message under its reason (rpc.drop.*). */
void ferry__frame_count_drop(ferry__port *port, int verdict);

/* Count a refused packet under its reason and give it back. */
void ferry__frame_drop(ferry__port *port, ferry_pkt *pkt, int verdict);

/* Count a fragment reassembly refused (enum ferry_reasm_verdict < 0) and
 * give it back. */
void ferry__frame_refused(ferry__port *port, ferry_pkt *pkt, int reasm_verdict);

/* Version negotiation: pkt was refused with verdict BAD_VERSION (h holds its
 * version byte) or is a VERSION_MISMATCH. A server port answers the former
 * with a VERSION_MISMATCH; a client port fails its session with
 * FERRY_EVERSION when the packet comes from the session's peer. Returns true
 * when it took (released) the packet, false when it is neither. */
bool ferry__frame_version(ferry__port *port, ferry_pkt *pkt, int verdict,
                          const ferry_wire_hdr *h);

/* Does decoding verdict v with header h call for ferry__frame_version? */
static inline bool ferry__frame_is_version(int v, const ferry_wire_hdr *h)
{
	return v == FERRY_WIRE_BAD_VERSION ||
	       (v == FERRY_WIRE_OK && h->type == FERRY_PKT_VERSION_MISMATCH);
}

/* Payload bytes per fragment for a port: what fits after the header, capped
 * by the 16-bit frag_bytes field. */
uint32_t ferry__frame_bytes(const ferry__port *port);

#endif
