/* Packet capture: the tap (ops-table interposition on a stack's bottom
 * endpoint) and the pcap writers it shares by path. See capture.h for the
 * contract and docs/CAPTURE.md for what lands in the file.
 *
 * Map: keys and writer registry; record building (synthetic L2-L4 headers,
 * bytes gathered up to the snap length); datagram ops; stream ops and
 * upcalls; attach/close/stats. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if FERRY_HAVE_PCAP
#include <pcap/pcap.h>
#endif

#include "base/alloc.h"
#include "base/clock.h"
#include "base/loc.h"
#include "base/log.h"
#include "ep.h"
#include "capture.h"

#define CAP_MAX_BYTES_DEFAULT (64ull << 20) /* pcap_max: per file */
#define CAP_MAX_BYTES_MIN 4096ull
#define CAP_FILES_DEFAULT 4                  /* pcap_files: FILE + FILE.1..3 */
#define CAP_FILES_MAX 1000
#define CAP_SNAP_DEFAULT_BYTES 65535u        /* pcap_snap: ferry bytes kept */
#define CAP_SNAP_MIN_BYTES 40u               /* at least the ferry header */
#define CAP_SNAP_MAX_BYTES 65535u
#define CAP_FLUSH_INTERVAL_US 100000u        /* stdio buffer to the file */
#define CAP_LOCAL_RETRY_US 1000000u          /* re-ask a wildcard local address */
#define CAP_ETH_BYTES 14
#define CAP_IP4_BYTES 20
#define CAP_IP6_BYTES 40
#define CAP_UDP_BYTES 8
#define CAP_L2L4_MAX_BYTES (CAP_ETH_BYTES + CAP_IP6_BYTES + CAP_UDP_BYTES)
#define CAP_IP_LEN_MAX 65535u                /* 16-bit IP/UDP length fields */
#define CAP_PCAP_FILE_HDR_BYTES 24u
#define CAP_PCAP_REC_HDR_BYTES 16u
#define CAP_SYNTH_PORT_BASE 0xC000u          /* synthetic ports: 49152.. */

typedef struct cap_counters {
	uint64_t records, bytes, truncated, dropped, rotations, errors;
} cap_counters;

/* One open pcap file (and its rotated predecessors), shared by every tap
 * in the process that names the same path. The first opener's pcap_max,
 * pcap_files and pcap_snap win. */
typedef struct cap_writer {
	struct cap_writer *next;
	int refs;                /* guarded by cap_registry_lock */
	char path[PATH_MAX];
	pthread_mutex_t lock;    /* the rest: taps on several threads write */
#if FERRY_HAVE_PCAP
	pcap_t *pd;
	pcap_dumper_t *d;
#endif
	uint64_t max_bytes, file_bytes, last_flush_us;
	unsigned files;
	uint32_t snap;           /* ferry bytes kept per record */
	uint8_t *scratch;        /* one record: L2-L4 headers + snap bytes */
	int err;                 /* first write error (errno); the writer then
	                          * drops every record */
} cap_writer;

/* An address as the synthetic headers show it. */
typedef struct cap_inet {
	int family; /* AF_INET or AF_INET6 */
	uint8_t ip[16];
	uint16_t port;
} cap_inet;

struct ferry__cap_tap {
	ferry_driver_ops drv; /* the real driver's table, data ops replaced */
	ferry_dgram_ops dgram;
	ferry_stream_ops stream;
	ferry_stream_upcalls up;
	const ferry_driver_ops *real;
	const ferry_stream_upcalls *real_up;
	void *real_up_arg;
	ferry_ep *ep;
	cap_writer *w;
	ferry_addr local;        /* the endpoint's own address (datagrams) */
	uint64_t local_asked_us; /* 0 = never asked */
	bool local_final;        /* a specific (non-wildcard) address */
	bool reported;           /* the write error went to the context */
	cap_counters cnt;
};

/* Keys and writers -------------------------------------------------------*/

#if FERRY_HAVE_PCAP
static pthread_mutex_t cap_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static cap_writer *cap_writers;

static void cap_writer_free(cap_writer *w)
{
	if (w->d != NULL) {
		pcap_dump_flush(w->d);
		pcap_dump_close(w->d);
	}
	if (w->pd != NULL)
		pcap_close(w->pd);
	pthread_mutex_destroy(&w->lock);
	ferry__free(w->scratch);
	ferry__free(w);
}

static int cap_dump_open(cap_writer *w, char *err, size_t err_len)
{
	w->d = pcap_dump_open(w->pd, w->path);
	if (w->d == NULL) {
		snprintf(err, err_len, "key 'pcap': cannot open '%.100s': %s", w->path,
		         pcap_geterr(w->pd));
		return FERRY_EBADLOC;
	}
	w->file_bytes = CAP_PCAP_FILE_HDR_BYTES;
	return 0;
}

static int cap_writer_get(const char *path, uint64_t max_bytes, unsigned files,
                          uint32_t snap, cap_writer **out, char *err,
                          size_t err_len)
{
	char abs[PATH_MAX];
	if (path[0] == '/') {
		snprintf(abs, sizeof(abs), "%s", path);
	} else {
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			snprintf(err, err_len, "key 'pcap': getcwd: %s", strerror(errno));
			return FERRY_EBADLOC;
		}
		if ((size_t)snprintf(abs, sizeof(abs), "%s/%s", cwd, path) >= sizeof(abs)) {
			snprintf(err, err_len, "key 'pcap': path too long");
			return FERRY_EBADLOC;
		}
	}
	int rc = 0;
	pthread_mutex_lock(&cap_registry_lock);
	cap_writer *w;
	for (w = cap_writers; w != NULL; w = w->next)
		if (strcmp(w->path, abs) == 0)
			break;
	if (w != NULL) {
		w->refs++;
		goto out;
	}
	w = ferry__calloc(1, sizeof(*w));
	if (w == NULL || (w->scratch = ferry__malloc(CAP_L2L4_MAX_BYTES + snap)) == NULL) {
		ferry__free(w);
		w = NULL;
		rc = -ENOMEM;
		snprintf(err, err_len, "key 'pcap': out of memory");
		goto out;
	}
	pthread_mutex_init(&w->lock, NULL);
	snprintf(w->path, sizeof(w->path), "%s", abs);
	w->max_bytes = max_bytes;
	w->files = files;
	w->snap = snap;
	w->refs = 1;
	w->pd = pcap_open_dead_with_tstamp_precision(DLT_EN10MB,
	                                             (int)(snap + CAP_L2L4_MAX_BYTES),
	                                             PCAP_TSTAMP_PRECISION_MICRO);
	if (w->pd == NULL) {
		snprintf(err, err_len, "key 'pcap': pcap_open_dead failed");
		rc = FERRY_EBADLOC;
	} else {
		rc = cap_dump_open(w, err, err_len);
	}
	if (rc != 0) {
		cap_writer_free(w);
		w = NULL;
		goto out;
	}
	w->next = cap_writers;
	cap_writers = w;
out:
	pthread_mutex_unlock(&cap_registry_lock);
	*out = w;
	return rc;
}

static void cap_writer_put(cap_writer *w)
{
	pthread_mutex_lock(&cap_registry_lock);
	if (--w->refs == 0) {
		for (cap_writer **pp = &cap_writers; *pp != NULL; pp = &(*pp)->next)
			if (*pp == w) {
				*pp = w->next;
				break;
			}
		cap_writer_free(w);
	}
	pthread_mutex_unlock(&cap_registry_lock);
}
#endif /* FERRY_HAVE_PCAP */

int ferry__cap_open(const ferry_loc *loc, ferry__cap_tap **out, char *err,
                    size_t err_len)
{
	*out = NULL;
	const char *path = ferry_loc_get(loc, "pcap");
	if (path == NULL) {
		static const char *const extra[] = {"pcap_max", "pcap_files", "pcap_snap"};
		for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
			if (ferry_loc_get(loc, extra[i]) != NULL) {
				snprintf(err, err_len, "key '%s' needs 'pcap=FILE'", extra[i]);
				return FERRY_EBADLOC;
			}
		return 0;
	}
#if FERRY_HAVE_PCAP
	uint64_t max_bytes, files, snap;
	int rc;
	if ((rc = ferry__loc_u64(loc, "pcap_max", CAP_MAX_BYTES_MIN, UINT64_MAX / 2,
	                         CAP_MAX_BYTES_DEFAULT, &max_bytes, err, err_len)) != 0 ||
	    (rc = ferry__loc_u64(loc, "pcap_files", 1, CAP_FILES_MAX, CAP_FILES_DEFAULT,
	                         &files, err, err_len)) != 0 ||
	    (rc = ferry__loc_u64(loc, "pcap_snap", CAP_SNAP_MIN_BYTES, CAP_SNAP_MAX_BYTES,
	                         CAP_SNAP_DEFAULT_BYTES, &snap, err, err_len)) != 0)
		return rc;
	ferry__cap_tap *t = ferry__calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, err_len, "key 'pcap': out of memory");
		return -ENOMEM;
	}
	rc = cap_writer_get(path, max_bytes, (unsigned)files, (uint32_t)snap, &t->w, err,
	                    err_len);
	if (rc != 0) {
		ferry__free(t);
		return rc;
	}
	*out = t;
	return 0;
#else
	(void)path;
	snprintf(err, err_len,
	         "key 'pcap': capture is not built in (libpcap was missing at "
	         "build time: install libpcap-dev and reconfigure)");
	return FERRY_EBADLOC;
#endif
}

void ferry__cap_close(ferry__cap_tap *tap)
{
	if (tap == NULL)
		return;
#if FERRY_HAVE_PCAP
	if (tap->w != NULL)
		cap_writer_put(tap->w);
#endif
	ferry__free(tap);
}

#if FERRY_HAVE_PCAP
/* Records ----------------------------------------------------------------*/

/* FNV-1a: a stable label for an address that is not a sockaddr. */
static uint32_t cap_hash(const ferry_addr *a)
{
	uint32_t h = 2166136261u;
	for (uint32_t i = 0; i < a->len && i < FERRY_ADDR_BYTES; i++)
		h = (h ^ a->u.bytes[i]) * 16777619u;
	return h;
}

/* sockaddr bytes (udp, tcp) as they are; anything else (loopback, infud,
 * an unknown local address) as 127.77.x.y / fd77::x:y and port
 * 49152 + (h mod 16384), from a hash of its bytes, so both ends of a
 * conversation label it alike. */
static void cap_inet_of(const ferry_addr *a, int want_family, cap_inet *out)
{
	memset(out, 0, sizeof(*out));
	sa_family_t fam = 0;
	if (a->len >= sizeof(sa_family_t))
		memcpy(&fam, a->u.bytes, sizeof(fam));
	if (fam == AF_INET && a->len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;
		memcpy(&sin, a->u.bytes, sizeof(sin));
		out->family = AF_INET;
		memcpy(out->ip, &sin.sin_addr, 4);
		out->port = ntohs(sin.sin_port);
		return;
	}
	if (fam == AF_INET6 && a->len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, a->u.bytes, sizeof(sin6));
		out->family = AF_INET6;
		memcpy(out->ip, &sin6.sin6_addr, 16);
		out->port = ntohs(sin6.sin6_port);
		return;
	}
	uint32_t h = cap_hash(a);
	out->port = (uint16_t)(CAP_SYNTH_PORT_BASE + (h >> 18));
	if (want_family == AF_INET6) {
		out->family = AF_INET6;
		out->ip[0] = 0xfd;
		out->ip[1] = 0x77;
		out->ip[14] = (uint8_t)(h >> 8);
		out->ip[15] = (uint8_t)h;
	} else {
		out->family = AF_INET;
		out->ip[0] = 127;
		out->ip[1] = 77;
		out->ip[2] = (uint8_t)(h >> 8);
		out->ip[3] = (uint8_t)h;
	}
}

static bool cap_ip_zero(const cap_inet *a)
{
	static const uint8_t zero[16];
	return memcmp(a->ip, zero, a->family == AF_INET ? 4 : 16) == 0;
}

static bool cap_ip_loopback(const cap_inet *a)
{
	static const uint8_t v6lo[16] = {[15] = 1};
	return a->family == AF_INET ? a->ip[0] == 127 : memcmp(a->ip, v6lo, 16) == 0;
}

/* Local and remote labels for one record: the same family on both sides
 * (a synthetic label follows the real one's), and a wildcard local
 * address shown as the peer's when the peer is on this host. */
static void cap_ends(const ferry_addr *local, const ferry_addr *peer, cap_inet *l,
                     cap_inet *p)
{
	cap_inet_of(peer, AF_INET, p);
	cap_inet_of(local, p->family, l);
	if (l->family != p->family)
		cap_inet_of(peer, l->family, p);
	if (cap_ip_zero(l) && cap_ip_loopback(p))
		memcpy(l->ip, p->ip, sizeof(l->ip));
}

static uint16_t cap_csum(const uint8_t *p, size_t n)
{
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void cap_put16be(uint8_t *p, uint32_t v)
{
	v = v > CAP_IP_LEN_MAX ? CAP_IP_LEN_MAX : v;
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Ethernet + IP + UDP for a UDP payload of len bytes (the lengths in the
 * headers saturate at 65535: a stream message may be longer; the pcap
 * record's original length is always exact). Returns header bytes. */
static size_t cap_l2l4(uint8_t *o, const cap_inet *src, const cap_inet *dst, uint64_t len)
{
	static const uint8_t macs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
	memcpy(o, macs, sizeof(macs));
	uint8_t *ip = o + CAP_ETH_BYTES;
	uint8_t *udp;
	uint64_t udp_len = len + CAP_UDP_BYTES;
	if (src->family == AF_INET) {
		o[12] = 0x08, o[13] = 0x00;
		memset(ip, 0, CAP_IP4_BYTES);
		ip[0] = 0x45;
		cap_put16be(ip + 2, (uint32_t)(udp_len + CAP_IP4_BYTES > CAP_IP_LEN_MAX
		                                   ? CAP_IP_LEN_MAX
		                                   : udp_len + CAP_IP4_BYTES));
		ip[6] = 0x40; /* DF */
		ip[8] = 64;   /* TTL */
		ip[9] = IPPROTO_UDP;
		memcpy(ip + 12, src->ip, 4);
		memcpy(ip + 16, dst->ip, 4);
		uint16_t c = cap_csum(ip, CAP_IP4_BYTES);
		ip[10] = (uint8_t)(c >> 8);
		ip[11] = (uint8_t)c;
		udp = ip + CAP_IP4_BYTES;
	} else {
		o[12] = 0x86, o[13] = 0xdd;
		memset(ip, 0, CAP_IP6_BYTES);
		ip[0] = 0x60;
		cap_put16be(ip + 4, (uint32_t)(udp_len > CAP_IP_LEN_MAX ? CAP_IP_LEN_MAX : udp_len));
		ip[6] = IPPROTO_UDP;
		ip[7] = 64;
		memcpy(ip + 8, src->ip, 16);
		memcpy(ip + 24, dst->ip, 16);
		udp = ip + CAP_IP6_BYTES;
	}
	cap_put16be(udp, src->port);
	cap_put16be(udp + 2, dst->port);
	cap_put16be(udp + 4, (uint32_t)(udp_len > CAP_IP_LEN_MAX ? CAP_IP_LEN_MAX : udp_len));
	udp[6] = udp[7] = 0; /* no checksum (legal on IPv4; docs/CAPTURE.md) */
	return (size_t)(udp + CAP_UDP_BYTES - o);
}

/* The ferry bytes of one record: a flat piece, then an iterator's bytes
 * (NULL: none); len is the message's full length on the wire. */
typedef struct cap_bytes {
	const void *a;
	size_t a_len;
	ferry_buf_iter *it;
	uint64_t len;
} cap_bytes;

static size_t cap_gather(uint8_t *o, size_t room, const cap_bytes *b)
{
	size_t n = b->a_len < room ? b->a_len : room;
	memcpy(o, b->a, n);
	if (b->it == NULL)
		return n;
	ferry_buf_iter it = *b->it; /* a copy: the caller's cursor stays */
	ferry_buf_seg seg;
	while (n < room && ferry_buf_iter_next(&it, &seg)) {
		size_t k = seg.len < room - n ? seg.len : room - n;
		if (seg.kind == FERRY_CHUNK_FILE) {
			ssize_t r = pread(seg.fd, o + n, k, seg.file_off);
			if (r < 0)
				r = 0;
			n += (size_t)r;
			if ((size_t)r < k)
				break;
		} else {
			memcpy(o + n, seg.data, k);
			n += k;
		}
	}
	return n;
}

/* Close FILE, shift FILE.i to FILE.i+1 (the oldest falls off), reopen. */
static int cap_rotate(cap_writer *w)
{
	pcap_dump_close(w->d);
	w->d = NULL;
	char from[PATH_MAX + 16], to[PATH_MAX + 16];
	if (w->files > 1) {
		for (unsigned i = w->files - 1; i >= 1; i--) {
			if (i == 1)
				snprintf(from, sizeof(from), "%s", w->path);
			else
				snprintf(from, sizeof(from), "%s.%u", w->path, i - 1);
			snprintf(to, sizeof(to), "%s.%u", w->path, i);
			if (rename(from, to) != 0 && errno != ENOENT)
				return -errno;
		}
	}
	char err[160];
	if (cap_dump_open(w, err, sizeof(err)) != 0)
		return errno != 0 ? -errno : -EIO;
	return 0;
}

static void cap_report(ferry__cap_tap *t, int err)
{
	t->cnt.errors++;
	if (t->reported)
		return;
	t->reported = true;
	char msg[256];
	snprintf(msg, sizeof(msg),
	         "capture to '%.100s' failed: %s; records are dropped from now on "
	         "(capture.dropped)",
	         t->w->path, strerror(-err));
	t->ep->host->report(t->ep->ctx, err, msg);
	ferry__log(FERRY_LOG_WARN, "ferry: capture to '%s' failed: %s", t->w->path, strerror(-err));
}

static void cap_record(ferry__cap_tap *t, const cap_inet *src, const cap_inet *dst,
                       const cap_bytes *b)
{
	cap_writer *w = t->w;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&w->lock);
	if (w->err != 0) {
		t->cnt.dropped++;
		if (!t->reported)
			cap_report(t, -w->err);
		pthread_mutex_unlock(&w->lock);
		return;
	}
	/* The IP length fields bound what one synthetic datagram can carry. */
	size_t ip_room = src->family == AF_INET ? CAP_IP_LEN_MAX - CAP_IP4_BYTES - CAP_UDP_BYTES
	                                        : CAP_IP_LEN_MAX - CAP_UDP_BYTES;
	size_t room = w->snap < ip_room ? w->snap : ip_room;
	size_t hl = cap_l2l4(w->scratch, src, dst, b->len);
	size_t n = cap_gather(w->scratch + hl, room, b);
	struct pcap_pkthdr ph = {
		.ts = {.tv_sec = ts.tv_sec, .tv_usec = ts.tv_nsec / 1000},
		.caplen = (uint32_t)(hl + n),
		.len = (uint32_t)(hl + b->len > UINT32_MAX ? UINT32_MAX : hl + b->len),
	};
	uint64_t rec = CAP_PCAP_REC_HDR_BYTES + ph.caplen;
	int rc = 0;
	if (w->file_bytes > CAP_PCAP_FILE_HDR_BYTES && w->file_bytes + rec > w->max_bytes) {
		rc = cap_rotate(w);
		t->cnt.rotations++;
	}
	if (rc == 0) {
		pcap_dump((u_char *)w->d, &ph, w->scratch);
		w->file_bytes += rec;
		uint64_t now = ferry__clock_us();
		if (now - w->last_flush_us >= CAP_FLUSH_INTERVAL_US) {
			w->last_flush_us = now;
			if (pcap_dump_flush(w->d) != 0)
				rc = errno != 0 ? -errno : -EIO;
		}
		if (rc == 0 && ferror(pcap_dump_file(w->d)))
			rc = -EIO;
	}
	if (rc != 0) {
		w->err = -rc;
		t->cnt.dropped++;
		cap_report(t, rc);
	} else {
		t->cnt.records++;
		t->cnt.bytes += ph.caplen;
		if (n < b->len)
			t->cnt.truncated++;
	}
	pthread_mutex_unlock(&w->lock);
}

static ferry__cap_tap *cap_of_ep(ferry_ep *ep)
{
	return ferry_container_of(ep->drv, ferry__cap_tap, drv);
}

/* The endpoint's own address, asked once it is likely final (the first
 * packet: a client's udp socket is connected by then) and again, at most
 * once a second, while it is still the wildcard. */
static const ferry_addr *cap_local(ferry__cap_tap *t)
{
	if (t->local_final)
		return &t->local;
	uint64_t now = ferry__clock_us();
	if (t->local_asked_us != 0 && now - t->local_asked_us < CAP_LOCAL_RETRY_US)
		return &t->local;
	t->local_asked_us = now;
	struct ferry_ctl_addr a = {.conn = NULL};
	if (t->real->kind == FERRY_DRIVER_DATAGRAM && t->real->dgram->ctl(t->ep, FERRY_CTL_LOCAL_ADDR, &a) == 0) {
		t->local = a.addr;
		cap_inet ci;
		cap_inet_of(&a.addr, AF_INET, &ci);
		t->local_final = !cap_ip_zero(&ci);
	} else {
		/* Nothing to ask: label the endpoint by the order taps were
		 * attached in this process. */
		static atomic_uint cap_synth_ids;
		uint32_t id = atomic_fetch_add(&cap_synth_ids, 1) + 1;
		memset(&t->local, 0, sizeof(t->local));
		memcpy(t->local.u.bytes, "FCAP", 4);
		memcpy(t->local.u.bytes + 4, &id, sizeof(id));
		t->local.len = 4 + sizeof(id);
		t->local_final = true;
	}
	return &t->local;
}

/* Datagram ops -----------------------------------------------------------*/

static int cap_send(ferry_ep *ep, const ferry_addr *to, const void *hdr, size_t hdr_len,
                    ferry_buf_iter *payload)
{
	ferry__cap_tap *t = cap_of_ep(ep);
	ferry_buf_iter copy;
	if (payload != NULL)
		copy = *payload;
	int rc = t->real->dgram->send(ep, to, hdr, hdr_len, payload);
	if (rc < 0)
		return rc;
	cap_inet l, p;
	cap_ends(cap_local(t), to, &l, &p);
	cap_bytes b = {hdr, hdr_len, payload != NULL ? &copy : NULL,
	               hdr_len + (payload != NULL ? copy.left : 0)};
	cap_record(t, &l, &p, &b);
	return rc;
}

static int cap_poll(ferry_ep *ep, ferry_pkt **pkts, int max)
{
	ferry__cap_tap *t = cap_of_ep(ep);
	int n = t->real->dgram->poll(ep, pkts, max);
	for (int i = 0; i < n; i++) {
		cap_inet l, p;
		cap_ends(cap_local(t), &pkts[i]->src, &l, &p);
		cap_bytes b = {pkts[i]->data, pkts[i]->len, NULL, pkts[i]->len};
		cap_record(t, &p, &l, &b);
	}
	return n;
}

static void cap_detach(ferry_ep *ep, ferry__cap_tap *t)
{
	ep->drv = t->real;
	if (t->real_up != NULL) {
		ep->up = t->real_up;
		ep->up_arg = t->real_up_arg;
	}
	ferry__cap_close(t);
}

static void cap_dgram_close(ferry_ep *ep)
{
	ferry__cap_tap *t = cap_of_ep(ep);
	t->real->dgram->close(ep);
	cap_detach(ep, t);
}

/* Stream ops and upcalls -------------------------------------------------*/

static void cap_conn_ends(ferry__cap_tap *t, ferry_conn *c, cap_inet *l, cap_inet *p)
{
	struct ferry_ctl_addr a = {.conn = c};
	if (t->real->stream->ctl(t->ep, FERRY_CTL_LOCAL_ADDR, &a) != 0)
		a.addr = *cap_local(t);
	cap_ends(&a.addr, &c->peer, l, p);
}

static int cap_send_msg(ferry_conn *c, const void *hdr, size_t hdr_len,
                        ferry_buf_iter *payload, void *cookie)
{
	ferry__cap_tap *t = cap_of_ep(c->ep);
	ferry_buf_iter copy;
	if (payload != NULL)
		copy = *payload;
	int rc = t->real->stream->send_msg(c, hdr, hdr_len, payload, cookie);
	if (rc < 0)
		return rc;
	cap_inet l, p;
	cap_conn_ends(t, c, &l, &p);
	cap_bytes b = {hdr, hdr_len, payload != NULL ? &copy : NULL,
	               hdr_len + (payload != NULL ? copy.left : 0)};
	cap_record(t, &l, &p, &b);
	return rc;
}

static void cap_stream_close(ferry_ep *ep)
{
	ferry__cap_tap *t = cap_of_ep(ep);
	t->real->stream->close(ep);
	cap_detach(ep, t);
}

static void cap_up_conn_event(void *arg, ferry_conn *c, int event, int err)
{
	ferry__cap_tap *t = arg;
	t->real_up->conn_event(t->real_up_arg, c, event, err);
}

static int cap_up_on_header(void *arg, ferry_conn *c, const uint8_t *hdr,
                            ferry_body_sink *sink)
{
	ferry__cap_tap *t = arg;
	int rc = t->real_up->on_header(t->real_up_arg, c, hdr, sink);
	if (rc != 0) {
		/* Malformed: the connection resets; keep the header for the
		 * post-mortem (length unknown: just the header). */
		cap_inet l, p;
		cap_conn_ends(t, c, &l, &p);
		cap_bytes b = {hdr, t->up.hdr_len, NULL, t->up.hdr_len};
		cap_record(t, &p, &l, &b);
	}
	return rc;
}

/* Recorded here, before the transport takes the body: header plus what is
 * in memory (nothing for an fd sink or a discard); original length =
 * header + the whole body. */
static void cap_up_on_body(void *arg, ferry_conn *c, const uint8_t *hdr,
                           ferry_body_sink *sink, int status)
{
	ferry__cap_tap *t = arg;
	cap_inet l, p;
	cap_conn_ends(t, c, &l, &p);
	cap_bytes b = {hdr, t->up.hdr_len, NULL, t->up.hdr_len + sink->len};
	ferry_buf_iter it;
	if (status == 0 && sink->buf != NULL && sink->fd < 0 && !sink->discard) {
		size_t have = ferry_buf_len(sink->buf);
		if (have >= sink->len) {
			ferry_buf_iter_init(&it, sink->buf, have - sink->len, sink->len);
			b.it = &it;
		}
	}
	cap_record(t, &p, &l, &b);
	t->real_up->on_body(t->real_up_arg, c, hdr, sink, status);
}

static void cap_up_on_sent(void *arg, ferry_conn *c, void *cookie)
{
	ferry__cap_tap *t = arg;
	t->real_up->on_sent(t->real_up_arg, c, cookie);
}

static void cap_up_on_send_failed(void *arg, ferry_conn *c, void *cookie, int err,
                                  bool reset)
{
	ferry__cap_tap *t = arg;
	t->real_up->on_send_failed(t->real_up_arg, c, cookie, err, reset);
}
#endif /* FERRY_HAVE_PCAP */

/* Attach, stats ----------------------------------------------------------*/

void ferry__cap_attach(ferry__cap_tap *t, ferry_ep *ep)
{
#if FERRY_HAVE_PCAP
	t->ep = ep;
	t->real = ep->drv;
	t->drv = *ep->drv;
	if (ep->drv->kind == FERRY_DRIVER_DATAGRAM) {
		t->dgram = *ep->drv->dgram;
		t->dgram.send = cap_send;
		t->dgram.poll = cap_poll;
		t->dgram.close = cap_dgram_close;
		t->drv.dgram = &t->dgram;
	} else {
		t->stream = *ep->drv->stream;
		t->stream.send_msg = cap_send_msg;
		t->stream.close = cap_stream_close;
		t->drv.stream = &t->stream;
		t->real_up = ep->up;
		t->real_up_arg = ep->up_arg;
		t->up = *ep->up;
		t->up.conn_event = cap_up_conn_event;
		t->up.on_header = cap_up_on_header;
		t->up.on_body = cap_up_on_body;
		t->up.on_sent = cap_up_on_sent;
		if (t->up.on_send_failed != NULL)
			t->up.on_send_failed = cap_up_on_send_failed;
		ep->up = &t->up;
		ep->up_arg = t;
	}
	ep->drv = &t->drv;
#else
	(void)ep;
	ferry__cap_close(t);
#endif
}

void ferry__cap_stats(ferry_ep *ep, ferry_stat_cb cb, void *arg)
{
#if FERRY_HAVE_PCAP
	bool tapped = ep->drv->kind == FERRY_DRIVER_DATAGRAM ? ep->drv->dgram->send == cap_send
	                                                      : ep->drv->stream->send_msg == cap_send_msg;
	if (!tapped)
		return;
	ferry__cap_tap *t = cap_of_ep(ep);
	cb(arg, "capture.records", t->cnt.records);
	cb(arg, "capture.bytes", t->cnt.bytes);
	cb(arg, "capture.truncated", t->cnt.truncated);
	cb(arg, "capture.dropped", t->cnt.dropped);
	cb(arg, "capture.rotations", t->cnt.rotations);
	cb(arg, "capture.errors", t->cnt.errors);
#else
	(void)ep, (void)cb, (void)arg;
#endif
}
