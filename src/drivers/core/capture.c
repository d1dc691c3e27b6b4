/* Packet capture: the tap (ops-table interposition on a stack's bottom
 * endpoint) and the pcap writers it shares by path. See capture.h for the
 * contract and docs/CAPTURE.md for what lands in the file.
 *
 * Map: keys; the record written per packet; datagram ops; stream ops and
 * upcalls; attach/close/stats. The writers are capture_writer.c, the
 * synthetic headers capture_synth.c. */
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
#include "capture_int.h"

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

int ferry__cap_open(const ferry_loc *loc, ferry__cap_tap **out, char *err, size_t err_len)
{
	*out = NULL;
	const char *path = ferry_loc_get(loc, "pcap");
	if (path == NULL) {
		static const char *const extra[] = {"pcap_max", "pcap_files",
		                                    "pcap_snap"};
		for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
			if (ferry_loc_get(loc, extra[i]) != NULL) {
				snprintf(err, err_len, "key '%s' needs 'pcap=FILE'",
				         extra[i]);
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
	rc = ferry__cap_writer_get(path, max_bytes, (unsigned)files, (uint32_t)snap,
	                           &t->w, err, err_len);
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
		ferry__cap_writer_put(tap->w);
#endif
	ferry__free(tap);
}

#if FERRY_HAVE_PCAP
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
	ferry__log(FERRY_LOG_WARN, "ferry: capture to '%s' failed: %s", t->w->path,
	           strerror(-err));
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
	size_t ip_room = src->family == AF_INET
	                         ? CAP_IP_LEN_MAX - CAP_IP4_BYTES - CAP_UDP_BYTES
	                         : CAP_IP_LEN_MAX - CAP_UDP_BYTES;
	size_t room = w->snap < ip_room ? w->snap : ip_room;
	size_t hl = ferry__cap_l2l4(w->scratch, src, dst, b->len);
	size_t n = ferry__cap_gather(w->scratch + hl, room, b);
	struct pcap_pkthdr ph = {
	        .ts = {.tv_sec = ts.tv_sec, .tv_usec = ts.tv_nsec / 1000},
	        .caplen = (uint32_t)(hl + n),
	        .len = (uint32_t)(hl + b->len > UINT32_MAX ? UINT32_MAX : hl + b->len),
	};
	uint64_t rec = CAP_PCAP_REC_HDR_BYTES + ph.caplen;
	int rc = 0;
	if (w->file_bytes > CAP_PCAP_FILE_HDR_BYTES &&
	    w->file_bytes + rec > w->max_bytes) {
		rc = ferry__cap_rotate(w);
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
	if (t->real->kind == FERRY_DRIVER_DATAGRAM &&
	    t->real->dgram->ctl(t->ep, FERRY_CTL_LOCAL_ADDR, &a) == 0) {
		t->local = a.addr;
		cap_inet ci;
		ferry__cap_inet_of(&a.addr, AF_INET, &ci);
		t->local_final = !ferry__cap_ip_zero(&ci);
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
	ferry__cap_ends(cap_local(t), to, &l, &p);
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
		ferry__cap_ends(cap_local(t), &pkts[i]->src, &l, &p);
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
	ferry__cap_ends(&a.addr, &c->peer, l, p);
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
	bool tapped = ep->drv->kind == FERRY_DRIVER_DATAGRAM
	                      ? ep->drv->dgram->send == cap_send
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
