/* Internal structures of the fast transport (see fast.c and docs/FAST.md). */
#ifndef FERRY_FAST_H
#define FERRY_FAST_H

#include <stdbool.h>
#include <stdint.h>

#include "transport/core.h"
#include "cookie.h"
#include "rto.h"

/* Short messages: what the receiver parks. */
#define FAST_WINDOW_FRAGS FERRY_REASM_WINDOW
/* Long messages (more than FAST_WINDOW_FRAGS fragments) are reassembled by
 * copy and may have up to this many fragments in flight, so that a small
 * MTU does not shrink the window in bytes: 64 x 1432 B is 90 KB, a fraction
 * of a fast link's bandwidth-delay product. The window in fragments is
 * FAST_WINDOW_BYTES / fragment size within [FAST_WINDOW_FRAGS, this]. */
#define FAST_WINDOW_MAX_FRAGS FERRY_REASM_COPY_WINDOW
#define FAST_WINDOW_BYTES     (2u << 20)
/* Ack bitmaps: up to this many 64-bit words after the first missing one
 * (aux says how many; short messages need one). */
#define FAST_ACK_WORDS_MAX       (FAST_WINDOW_MAX_FRAGS / 64)
#define FAST_CWND_INITIAL_FRAGS  8
#define FAST_CWND_MIN_FRAGS      2
#define FAST_LIVENESS_US_DEFAULT 1000000u /* silence before EPEERDEAD */
/* ... and as many timer resends or probes unanswered in it (or half an
 * interval more of silence): under 20% loss a live peer's answers to the
 * five probes a second held with a 200 ms backoff were all lost now and
 * then (0.36^5 a round), which failed calls of a peer that answered. The
 * timer waits at most liveness / FAST_LIVENESS_PROBES, so ten rounds
 * (p ~ 4e-5) fit in the interval of a dead peer. */
#define FAST_LIVENESS_PROBES          10u
#define FAST_EXPIRE_US_DEFAULT        60000000u /* idle server session lifetime */
#define FAST_KEEPALIVE_US_DEFAULT     0u        /* idle-session probes: off */
#define FAST_KEEPALIVE_US_MIN         1000u
#define FAST_CHANNELS_GRANT_MAX       FERRY_CHANNELS_MAX
#define FAST_SESSIONS_MAX             65536u /* per server port: sessions= bound */
#define FAST_SESSIONS_DEFAULT         4096u  /* sessions= */
#define FAST_REASM_BYTES_DEFAULT      (256ull << 20) /* reasm=: partial requests per port */
#define FAST_SESSION_LOANS_DEFAULT    4096u /* loans=: request fragments per session */
#define FAST_BAD_SESSION_RATE_DEFAULT 1000u /* bsrate=: BAD_SESSION per s per port */
#define FAST_BAD_SESSION_BURST        100u  /* token bucket depth */
/* SESSION_OPEN: nonce u64, channels u16, cap u16, features u32, cookie
 * u64. Padded so that neither answer to it (cookie, reply) is larger. */
#define FAST_OPEN_PAYLOAD_BYTES 24
/* nonce, epoch u64, channels, cap u16, features u32 (older servers sent
 * the first 20 bytes: no features) */
#define FAST_OPEN_REPLY_PAYLOAD_BYTES 24
#define FAST_OPEN_REPLY_MIN_BYTES     20
/* Features a side announces in its open or reply (docs/WIRE.md):
 * it ignores bytes after a datagram's content ("Padding"), so its peer may
 * pad datagrams to coalesce them (udp segmentation offload). */
#define FAST_FEAT_PAD             0x1u
#define FAST_FEATURES             FAST_FEAT_PAD
#define FAST_COOKIE_PAYLOAD_BYTES 16 /* nonce echoed, cookie u64 */
#define FAST_ACK_PAYLOAD_BYTES    8  /* at least one bitmap word */
/* A window-limited burst asks for an ack at its end, and halfway when it
 * is at least twice this long (so the window moves before it drains); a
 * long message's burst asks only if its previous request is answered or
 * this many fragments passed since. */
#define FAST_ACK_EVERY_FRAGS 8
/* A multi-fragment response's completion ack waits this long for the
 * channel's next request, which acks it implicitly (at most a quarter of
 * the RTO floor, so the server never resends for want of it). */
#define FAST_FIN_DELAY_US 200u
#define FAST_PORT_INFLIGHT_BYTES                                                         \
	(2u << 20)                     /* inflight=: response bytes in flight per port */
#define FAST_PORT_CREDIT_MIN_FRAGS 16u /* the port credit never goes below this */

/* Window state of a long message, pooled per context (fast_ctx.win_free):
 * taken when one starts, given back when it is acked or abandoned. */
typedef struct fast_win {
	struct fast_win *next;
	uint64_t acked[FAST_WINDOW_MAX_FRAGS / 64];
	uint64_t retx[FAST_WINDOW_MAX_FRAGS / 64];
	uint32_t sent_us[FAST_WINDOW_MAX_FRAGS];
} fast_win;

/* A message being sent: window state over its fragments. Bits and send
 * times of fragment f live at f & wmask of the inline arrays (short
 * messages) or of a pooled fast_win (long ones). */
typedef struct fast_out {
	ferry_buf *msg;
	uint32_t len, cap, nfrags;
	uint32_t base;     /* first fragment not acked */
	uint32_t next;     /* first fragment never sent */
	uint32_t wmask;    /* window slots - 1 */
	uint32_t wlimit;   /* fragments in flight at most (besides cwnd) */
	uint32_t nacked;   /* fragments past base acked (selectively) */
	uint64_t *acked;   /* bit f & wmask for f in [base, base + slots) */
	uint64_t *retx;    /* same indexing: sent more than once (Karn) */
	uint32_t *sent_us; /* low 32 bits of the last send time */
	fast_win *big;     /* pooled state of a long message, else NULL */
	struct fast_ctx *pool;
	uint64_t acked1, retx1;
	uint32_t sent1[FAST_WINDOW_FRAGS];
	uint32_t high;           /* one past the highest fragment known acked */
	uint32_t recover_until;  /* a loss episode lasts until base passes this */
	uint32_t sample_frag;    /* the fragment whose ack gives an RTT sample */
	uint32_t areq1;          /* last fragment sent with ACK_REQ, plus one (0: none) */
	uint64_t sample_sent_us; /* its send time; 0 = none pending */
	bool active;
} fast_out;

/* What both ends of a session share: addressing, estimator, window. */
typedef struct fast_link {
	ferry__port *port;
	ferry_addr *peer;
	uint64_t token;
	uint32_t client_hint, server_hint;
	uint8_t dir; /* FERRY_FLAG_RESPONSE on the server side */
	fast_rto rto;
	uint32_t cwnd, ssthresh, cwnd_acc;
	uint32_t cwnd_max;   /* window in fragments for this link's size */
	uint64_t last_rx_us; /* liveness */
	uint32_t unanswered; /* timer resends/probes since last_rx_us */
	uint32_t liveness_us;
} fast_link;

/* A progress ack a channel owes until the receive batch ends. echo: the
 * fragment that made it due, plus one; asked: that fragment asked for it
 * (ACK_REQ), so the sender times it and a later fragment must not replace
 * it. */
typedef struct fast_owed_ack {
	bool owed, asked;
	uint32_t echo;
} fast_owed_ack;

enum { FAST_CS_OPENING = 0, FAST_CS_OPEN = 1 };

struct fast_cs;

typedef struct fast_cchan {
	struct fast_cs *cs;
	uint8_t idx;
	fast_out out; /* the request */
	ferry__timer timer;
	bool req_delivered; /* the server has the whole request */
	bool got_response;  /* a response fragment arrived */
	uint32_t probes;
	uint32_t done_rpc_id, done_nfrags; /* last completed call: stale acks */
	/* The completion ack of the last response, not sent yet: the next
	 * request on the channel acks it implicitly, or the timer sends it
	 * FAST_FIN_DELAY_US after completion. */
	bool fin_owed;
	uint32_t fin_echo;
	/* A progress ack is due for the response being received; it leaves
	 * at the end of the receive batch (fast_acks_flush), one per channel
	 * however many fragments of the batch called for it. */
	fast_owed_ack ack;
} fast_cchan;

typedef struct fast_cs {
	fast_link l;
	ferry_session *s;
	int state;
	uint64_t nonce, epoch;
	uint64_t cookie; /* from the server's SESSION_COOKIE; 0 = none yet */
	bool have_epoch;
	uint32_t channels_wanted;
	ferry__timer open_timer;
	uint64_t open_started_us;
	uint32_t keepalive_us; /* 0: no keepalives */
	uint32_t features;     /* announced in the open (pad=) */
	ferry__timer ka_timer;
	fast_cchan ch[FERRY_CHANNELS_MAX];
} fast_cs;

enum { FAST_SCH_IDLE = 0, FAST_SCH_RECEIVING, FAST_SCH_PROCESSING, FAST_SCH_REPLIED };

struct fast_ss;

typedef struct fast_sch {
	struct fast_ss *ss;
	uint8_t idx;
	uint8_t state;
	uint32_t rpc_id;
	ferry_rpc *rpc;
	fast_out out;           /* the response */
	uint16_t status;        /* response status on the wire */
	bool waiting;           /* queued for port credit */
	uint32_t charged;       /* response fragments counted in the port's inflight */
	uint32_t reasm_bytes;   /* charged to the port while RECEIVING */
	uint32_t loans;         /* request fragments charged to the session */
	struct fast_sch *wnext; /* the port's credit queue */
	ferry__timer timer;
	fast_owed_ack ack; /* as fast_cchan's, for the request */
} fast_sch;

typedef struct fast_ss {
	fast_link l;
	ferry_addr peer;
	uint64_t nonce; /* of the open that created it: retried opens */
	uint32_t index, nchan;
	uint32_t client_cap;
	uint32_t loans; /* request fragments held by its channels */
	bool nopad;     /* its client did not announce FAST_FEAT_PAD */
	fast_sch ch[FERRY_CHANNELS_MAX];
} fast_ss;

typedef struct fast_sport {
	ferry__port *port;
	uint64_t epoch;
	uint32_t expire_us, liveness_us;
	fast_ss **table;
	uint32_t cap, used;
	uint32_t *free;
	uint32_t nfree;
	/* Limits (docs/FAST.md "Limits") and what they are charged with. */
	uint32_t sessions_max, loans_max;
	uint64_t reasm_max, reasm_bytes;
	/* Opens cost nothing until a cookie made with this key comes back. */
	uint8_t cookie_key[FAST_COOKIE_KEY_BYTES];
	/* BAD_SESSION token bucket: credit in microseconds of rate. */
	uint32_t bs_rate;
	uint64_t bs_credit_us, bs_last_us;
	/* Incast bound: response fragments in flight across all sessions of
	 * the port, and channels waiting for some of that credit (FIFO). */
	uint32_t inflight, credit;
	fast_sch *whead, *wtail;
	/* Sessions whose client takes no padding: the port's endpoint pads
	 * (ferry_ep.tx_pad) only while there are none. */
	uint32_t nopad;
	uint32_t features; /* announced in open replies (pad=) */
	ferry__timer sweep;
} fast_sport;

/* clang-format off */
#define FAST_COUNTERS(X)                                                        \
	X(sessions_opened, "fast.sessions_opened")                             \
	X(sessions_expired, "fast.sessions_expired")                           \
	X(open_sent, "fast.open_sent")                                         \
	X(cookies_sent, "fast.cookies.sent")                                   \
	X(cookies_verified, "fast.cookies.verified")                           \
	X(cookies_failed, "fast.cookies.failed")                               \
	X(cookies_received, "fast.cookies.received")                           \
	X(opens_dropped, "fast.opens_dropped")                                 \
	X(opens_refused, "fast.opens_refused")                                 \
	X(open_refused_received, "fast.open_refused_received")                 \
	X(bad_session_suppressed, "fast.bad_session_suppressed")               \
	X(limit_reasm, "fast.limit.reasm_bytes")                               \
	X(limit_loans, "fast.limit.loans")                                     \
	X(bad_session_sent, "fast.bad_session_sent")                           \
	X(bad_session_received, "fast.bad_session_received")                   \
	X(data_sent, "fast.data_sent")                                         \
	X(retx_timeout, "fast.retx.timeout")                                   \
	X(retx_fast, "fast.retx.fast")                                         \
	X(retx_probe, "fast.retx.probe")                                       \
	X(retx_dup_request, "fast.retx.dup_request")                           \
	X(acks_deferred, "fast.acks_deferred")                                 \
	X(probes_answered, "fast.probes_answered")                             \
	X(acks_sent, "fast.acks_sent")                                         \
	X(acks_implicit, "fast.acks_implicit")                                 \
	X(acks_fin_timer, "fast.acks_fin_timer")                               \
	X(acks_coalesced, "fast.acks_coalesced")                               \
	X(acks_received, "fast.acks_received")                                 \
	X(frag_dup, "fast.frag.dup")                                           \
	X(frag_out_of_window, "fast.frag.out_of_window")                       \
	X(rto_backoffs, "fast.rto.backoffs")                                   \
	X(calls_peerdead, "fast.calls.peerdead")                               \
	X(calls_restarted, "fast.calls.restarted")                             \
	X(reopens, "fast.reopens")                                             \
	X(cancels_sent, "fast.cancels_sent")                                   \
	X(keepalives_sent, "fast.keepalives_sent")                             \
	X(keepalives_answered, "fast.keepalives_answered")                     \
	X(keepalives_received, "fast.keepalives_received")                     \
	X(wins_allocated, "fast.windows_allocated")                            \
	X(ack_words_sent, "fast.ack_words_sent")
/* clang-format on */

/* Channels owed a progress ack in the receive batch being handled. */
#define FAST_ACKS_OWED_MAX 64
typedef struct fast_owed {
	void *owner; /* fast_cs (client) or fast_ss (server) */
	bool server;
	uint8_t ch;
} fast_owed;

typedef struct fast_ctx {
#define FAST_CNT_FIELD_(f, n) uint64_t f;
	FAST_COUNTERS(FAST_CNT_FIELD_)
#undef FAST_CNT_FIELD_
	fast_owed owed[FAST_ACKS_OWED_MAX];
	uint32_t nowed;
	fast_win *win_free;   /* pooled long-message windows */
	uint32_t wins_out;    /* taken from the pool now */
	ferry_hist hist_cwnd; /* fragments in the window when a burst starts */
	ferry_hist hist_rtt;  /* us */
} fast_ctx;

/* fast.c: what both sides share -------------------------------------------*/
uint64_t ferry__fast_random64(void);
/* Send a control packet (ack, open, BAD_SESSION...): header and small payload
 * as one header block. */
void ferry__fast_send_ctl(ferry__port *port, const ferry_addr *to, ferry_wire_hdr *h,
                          const uint8_t *payload, size_t len);
/* An ack for a message being received: first missing + bitmap. */
void ferry__fast_send_ack(fast_link *l, uint8_t ch, uint32_t rpc_id,
                          const ferry__reasm *r, uint32_t first_missing, uint8_t flags,
                          uint32_t echo);
/* Owe channel ch of owner an ack, sent once at the end of the receive
 * batch (asked: the sender requested it). */
void ferry__fast_owe(ferry_ctx *ctx, void *owner, bool server, uint8_t ch,
                     fast_owed_ack *a, uint32_t echo, bool asked);
/* A session going away takes its owed acks with it. */
void ferry__fast_owed_forget(ferry_ctx *ctx, const void *owner);
void ferry__fast_rx_batch_end(ferry__port *port);
/* The bitmap words of an ack (aux of them, as many as came). */
uint32_t ferry__fast_ack_words(const ferry_wire_hdr *h, const uint8_t *p, uint32_t len,
                               uint64_t *words);
/* Does the fragment just offered to r call for an ack now? */
bool ferry__fast_ack_due(const ferry__reasm *r, uint32_t next0, uint32_t high0,
                         uint32_t frag, bool req, int v);
/* A fragment reassembly refused: counted and logged (rate-limited). */
void ferry__fast_refused(ferry__port *port, ferry_pkt *pkt, int verdict);
uint32_t ferry__fast_loc_u32(const ferry_loc *loc, const char *key, uint64_t min,
                             uint64_t max, uint64_t dflt, int *rc, char *err,
                             size_t err_len);
/* The features a side announces (pad=0 turns FAST_FEAT_PAD off). */
uint32_t ferry__fast_loc_features(const ferry_loc *loc, int *rc, char *err,
                                  size_t err_len);

/* client.c: the client side ----------------------------------------------*/
int ferry__fast_session_init(ferry_session *s);
void ferry__fast_session_fini(ferry_session *s);
int ferry__fast_call_start(ferry__call *c);
void ferry__fast_call_cancel(ferry__call *c);
void ferry__fast_call_end(ferry__call *c, int status);
void ferry__fast_client_pkt(ferry__port *port, ferry_pkt *pkt);

/* server.c: the server side ----------------------------------------------*/
int ferry__fast_server_port_init(ferry__port *port, const ferry_loc *loc);
void ferry__fast_server_port_fini(ferry__port *port);
bool ferry__fast_server_reply(ferry_rpc *rpc);
bool ferry__fast_server_port_busy(ferry__port *port);
void ferry__fast_server_pkt(ferry__port *port, ferry_pkt *pkt);

#endif
