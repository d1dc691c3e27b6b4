/* tcp transmit: messages queue per connection (header copied, payload
 * borrowed); flush gathers headers and memory pieces of successive messages
 * into one sendmsg (up to TCP_IOV_MAX iovecs, TCP_SEND_CHUNK bytes) and
 * resumes partial writes on the next flush or when epoll reports the
 * socket writable: the context never blocks. File regions are read with
 * pread into scratch memory and sent as bytes (tcp), or go disk -> socket
 * with sendfile (splice). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/alloc.h"
#include "buffer/seg.h"
#include "tcp.h"

int ferry__tcp_send_msg(ferry_conn *fc, const void *hdr, size_t hdr_len,
                        ferry_buf_iter *payload, void *cookie)
{
	tcp_conn *c = tcp_conn_of(fc);
	tcp_ep *t = tcp_of(fc->ep);
	if (c->state == TCP_DEAD)
		return FERRY_EPEERDEAD;
	if (hdr_len > TCP_HDR_MAX)
		return -EMSGSIZE;
	tcp_txm *m = t->txm_free;
	if (m != NULL)
		t->txm_free = m->next;
	else if ((m = ferry__malloc(sizeof(*m))) == NULL)
		return -ENOMEM;
	m->next = NULL;
	m->cookie = cookie;
	memcpy(m->hdr, hdr, hdr_len);
	m->hdr_len = (uint32_t)hdr_len;
	m->hdr_off = 0;
	if (payload != NULL)
		m->pay.it = *payload;
	else
		memset(&m->pay.it, 0, sizeof(m->pay.it));
	m->files = 0;
	m->detach_err = 0;
	ferry_buf_seg seg;
	if (hdr_len + m->pay.it.left <= TCP_INLINE_BYTES) {
		/* Small: copy it whole (file regions with pread). */
		uint32_t at = (uint32_t)hdr_len;
		while (m->pay.it.left > 0 && ferry_buf_iter_next(&m->pay.it, &seg)) {
			int rc = ferry__seg_copy(m->hdr + at, &seg);
			if (rc != 0) {
				/* Nothing is queued yet: refuse, as a datagram send
				 * would. */
				m->next = t->txm_free;
				t->txm_free = m;
				return rc;
			}
			at += (uint32_t)seg.len;
		}
		m->hdr_len = at;
		t->cnt.tx_inline++;
	} else {
		/* File regions: start the disk read now, so the sendfile or
		 * pread at write time finds the pages cached instead of
		 * stalling the context on the disk. */
		ferry_buf_iter peek = m->pay.it;
		while (peek.left > 0 && ferry_buf_iter_next(&peek, &seg))
			if (seg.kind == FERRY_CHUNK_FILE) {
				posix_fadvise(seg.fd, seg.file_off, (off_t)seg.len,
				              POSIX_FADV_WILLNEED);
				t->cnt.readahead_calls++;
				m->files++;
			}
	}
	m->pay.have_seg = false;
	m->pay.seg_off = 0;
	m->pay.own = NULL;
	m->pay.own_len = m->pay.own_off = 0;
	if (c->txq_tail != NULL)
		c->txq_tail->next = m;
	else
		c->txq = m;
	c->txq_tail = m;
	c->backlog += m->hdr_len + m->pay.it.left;
	t->base.tx_pending = true;
	return 0;
}

static bool txm_done(const tcp_txm *m)
{
	if (m->hdr_off < m->hdr_len || m->detach_err != 0)
		return false;
	if (m->pay.own != NULL)
		return m->pay.own_off == m->pay.own_len;
	return !m->pay.have_seg && m->pay.it.left == 0;
}

/* n bytes of m went out: advance. Returns bytes of n it used. */
static size_t txm_advance(tcp_txm *m, size_t n)
{
	size_t used = 0;
	size_t h = m->hdr_len - m->hdr_off;
	if (h > n)
		h = n;
	m->hdr_off += (uint32_t)h;
	used += h;
	if (m->pay.own != NULL) {
		size_t o = m->pay.own_len - m->pay.own_off;
		if (o > n - used)
			o = n - used;
		m->pay.own_off += o;
		return used + o;
	}
	while (used < n && ferry__txpay_seg(&m->pay)) {
		size_t k = m->pay.seg.len - m->pay.seg_off;
		if (k > n - used)
			k = n - used;
		m->pay.seg_off += k;
		used += k;
		if (m->pay.seg_off == m->pay.seg.len)
			m->pay.have_seg = false;
	}
	return used;
}

/* Messages at the head that are fully written leave the queue. */
static void conn_sent(tcp_ep *t, tcp_conn *c)
{
	while (c->txq != NULL && txm_done(c->txq)) {
		tcp_txm *m = c->txq;
		c->txq = m->next;
		if (c->txq == NULL)
			c->txq_tail = NULL;
		void *cookie = m->cookie;
		ferry__tcp_txm_put(t, m);
		t->base.up->on_sent(t->base.up_arg, &c->base, cookie);
	}
}

/* 0 when m may start (or has started), else the error it fails with.
 * Asked each time its header may be gathered, so the check is as late as
 * it can be. */
static int txm_ready(const tcp_txm *m)
{
	if (m->detach_err != 0)
		return m->detach_err;
	if (m->files == 0 || m->hdr_off > 0)
		return 0;
	return ferry__txpay_check_files(&m->pay);
}

/* The head message m cannot be sent whole: its payload could not be read
 * (err). on_send_failed runs with m still queued (so a connection closed
 * from it gives m its on_sent as usual). Nothing of m out: it leaves the
 * queue (on_sent) and the connection carries on. Part of it out: the peer
 * waits for bytes that will never come, so the connection is reset. No
 * upcall for a message whose detach failed: its call has ended. Returns
 * false when the connection is gone. */
static bool txm_fail(tcp_ep *t, tcp_conn *c, tcp_txm *m, int err)
{
	const ferry_stream_upcalls *up = t->base.up;
	bool tell = m->detach_err == 0 && up->on_send_failed != NULL;
	bool reset = m->hdr_off > 0;
	if (m->detach_err == 0 && err != -ENOMEM)
		t->cnt.tx_file_read_errors++; /* (detach counted its own) */
	m->detach_err = err; /* from here on nothing writes or detaches it */
	if (tell)
		up->on_send_failed(t->base.up_arg, &c->base, m->cookie, err, reset);
	if (c->state == TCP_DEAD)
		return false;
	if (reset) {
		ferry__tcp_conn_fail(t, c, err);
		return false;
	}
	if (c->txq != m)
		return true; /* a flush from inside the upcall dropped it */
	c->txq = m->next;
	if (c->txq == NULL)
		c->txq_tail = NULL;
	c->backlog -= m->hdr_len + ferry__txpay_left(&m->pay);
	void *cookie = m->cookie;
	ferry__tcp_txm_put(t, m);
	up->on_sent(t->base.up_arg, &c->base, cookie);
	return c->state != TCP_DEAD;
}

/* The head message's current piece is a file region: send it on its own.
 * Returns bytes sent, or -1: with *rerr = 0 the socket failed (errno);
 * otherwise the file could not be read and *rerr says why (-EIO: the file
 * ends before the region does). */
static ssize_t conn_write_file(tcp_ep *t, tcp_conn *c, tcp_txm *m, int *rerr)
{
	size_t len = m->pay.seg.len - m->pay.seg_off;
	off_t off = m->pay.seg.file_off + (off_t)m->pay.seg_off;
	*rerr = 0;
	if (t->zerocopy) {
		ssize_t n = sendfile(c->fd, m->pay.seg.fd, &off, len);
		t->cnt.sendfile_calls++;
		if (n > 0)
			t->cnt.sendfile_bytes += (uint64_t)n;
		if (n == 0 && len > 0)
			*rerr = -EIO; /* the file is shorter than the region */
		else if (n < 0 && errno != EAGAIN && errno != EINTR && errno != EPIPE &&
		         errno != ECONNRESET && errno != ENOTCONN)
			*rerr = -errno; /* the file side: EIO, EINVAL, ... */
		return *rerr != 0 ? -1 : n;
	}
	if (t->scratch == NULL &&
	    (t->scratch = ferry__malloc(TCP_SCRATCH_BYTES)) == NULL) {
		*rerr = -ENOMEM;
		return -1;
	}
	/* What an earlier pread left unsent (a full socket) is sent first:
	 * each file byte is read once. */
	if (t->scr_conn != c || t->scr_fd != m->pay.seg.fd || t->scr_foff != off ||
	    t->scr_pos == t->scr_len) {
		if (len > TCP_SCRATCH_BYTES)
			len = TCP_SCRATCH_BYTES;
		ssize_t r;
		do
			r = pread(m->pay.seg.fd, t->scratch, len, off);
		while (r < 0 && errno == EINTR);
		if (r <= 0) {
			/* A short read is sent and the rest read next time;
			 * none at all means the file ended (or failed). */
			*rerr = r == 0 ? -EIO : -errno;
			return -1;
		}
		t->cnt.tx_file_copy_bytes += (uint64_t)r;
		t->scr_conn = c;
		t->scr_fd = m->pay.seg.fd;
		t->scr_foff = off;
		t->scr_pos = 0;
		t->scr_len = (size_t)r;
	}
	ssize_t n = send(c->fd, t->scratch + t->scr_pos, t->scr_len - t->scr_pos,
	                 MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n > 0) {
		t->cnt.tx_user_bytes += (uint64_t)n;
		t->scr_pos += (size_t)n;
		t->scr_foff += n;
	}
	return n;
}

/* The piece just gathered ends the call if it reaches TCP_SEND_CHUNK: it is
 * cut there, and true says stop gathering. */
static bool iov_capped(struct iovec *last, size_t *want)
{
	if (*want < TCP_SEND_CHUNK)
		return false;
	last->iov_len -= *want - TCP_SEND_CHUNK;
	*want = TCP_SEND_CHUNK;
	return true;
}

/* Write as much of the queue as the socket takes. Returns bytes written;
 * -1 when the connection failed (it is gone). */
static ssize_t conn_write(tcp_ep *t, tcp_conn *c)
{
	ssize_t total = 0;
	while (c->txq != NULL) {
		struct iovec iov[TCP_IOV_MAX];
		int n = 0;
		size_t want = 0;
		tcp_txm *head = c->txq;
		bool file_first = false;
		int more = 0;
		int err = txm_ready(head);
		if (err != 0) {
			if (!txm_fail(t, c, head, err))
				return total > 0 ? total : -1;
			continue;
		}
		for (tcp_txm *m = head; m != NULL && n < TCP_IOV_MAX; m = m->next) {
			/* A message that cannot go fails as the head, later. */
			if (m != head && txm_ready(m) != 0)
				break;
			if (m->hdr_off < m->hdr_len) {
				iov[n++] = (struct iovec){m->hdr + m->hdr_off,
				                          m->hdr_len - m->hdr_off};
				want += m->hdr_len - m->hdr_off;
				if (iov_capped(&iov[n - 1], &want))
					break;
			}
			if (m->pay.own != NULL) {
				if (m->pay.own_off < m->pay.own_len && n < TCP_IOV_MAX) {
					iov[n++] = (struct iovec){
					        m->pay.own + m->pay.own_off,
					        m->pay.own_len - m->pay.own_off};
					want += m->pay.own_len - m->pay.own_off;
					if (iov_capped(&iov[n - 1], &want))
						break;
				}
				continue;
			}
			/* Peek through the payload without consuming it. */
			ferry_buf_iter it = m->pay.it;
			ferry_buf_seg seg = m->pay.seg;
			size_t off = m->pay.seg_off;
			bool have = m->pay.have_seg;
			bool stop = false;
			while (n < TCP_IOV_MAX) {
				if (!have) {
					if (it.left == 0 ||
					    !ferry_buf_iter_next(&it, &seg))
						break;
					off = 0;
				}
				have = false;
				if (seg.kind == FERRY_CHUNK_FILE) {
					stop = true;
					if (n == 0 && m == head) {
						ferry__txpay_seg(&m->pay);
						file_first = true;
					} else {
						/* The file region follows at
						 * once: hold what goes now for
						 * it (TCP_NODELAY would send a
						 * header-sized segment). */
						more = MSG_MORE;
					}
					break;
				}
				iov[n++] = (struct iovec){(void *)(seg.data + off),
				                          seg.len - off};
				want += seg.len - off;
				if ((stop = iov_capped(&iov[n - 1], &want)))
					break;
			}
			if (stop || n == TCP_IOV_MAX)
				break;
		}
		ssize_t w;
		int rerr = 0;
		if (file_first) {
			w = conn_write_file(t, c, head, &rerr);
			if (rerr != 0) {
				txm_fail(t, c, head,
				         rerr); /* the header is out: a reset */
				return total > 0 ? total : -1;
			}
		} else if (n == 1) {
			w = send(c->fd, iov[0].iov_base, iov[0].iov_len,
			         MSG_NOSIGNAL | MSG_DONTWAIT | more);
			t->cnt.send_calls++;
			if (w > 0) {
				t->cnt.sendmsg_bytes += (uint64_t)w;
				t->cnt.tx_user_bytes += (uint64_t)w;
			}
		} else {
			struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
			w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT | more);
			t->cnt.sendmsg_calls++;
			if (w > 0) {
				t->cnt.sendmsg_bytes += (uint64_t)w;
				t->cnt.tx_user_bytes += (uint64_t)w;
			}
		}
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				t->cnt.tx_blocked++;
				break;
			}
			ferry__tcp_conn_fail(t, c,
			                     errno == EPIPE || errno == ECONNRESET
			                             ? FERRY_EPEERDEAD
			                             : -errno);
			return -1;
		}
		if (w == 0)
			break; /* no progress: try again on the next flush */
		size_t left = (size_t)w;
		c->backlog -= (uint64_t)w;
		total += w;
		for (tcp_txm *m = head; m != NULL && left > 0; m = m->next)
			left -= txm_advance(m, left);
		conn_sent(t, c);
		if (c->state == TCP_DEAD)
			return total;
		if (!file_first && (size_t)w < want) {
			t->cnt.tx_partial++;
			break; /* the socket buffer is full */
		}
	}
	ferry__tcp_conn_want_out(t, c, c->txq != NULL);
	return total;
}

int ferry__tcp_flush(ferry_ep *ep)
{
	tcp_ep *t = tcp_of(ep);
	int total = 0;
	bool more = false;
	for (tcp_conn *c = t->conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->state != TCP_UP || c->txq == NULL)
			continue;
		ssize_t w = conn_write(t, c);
		if (w > 0)
			total += w > INT32_MAX - total ? 0 : (int)w;
		if (w >= 0 && c->txq != NULL)
			more = true;
	}
	/* Anything left waits for writability: flush again next pass. */
	ep->tx_pending = more;
	ferry__tcp_reap(t);
	return total;
}

int ferry__tcp_detach(ferry_conn *fc, void *cookie)
{
	tcp_conn *c = tcp_conn_of(fc);
	tcp_ep *t = tcp_of(fc->ep);
	for (tcp_txm *m = c->txq; m != NULL; m = m->next) {
		if (m->cookie != cookie || m->pay.own != NULL || m->detach_err != 0)
			continue;
		size_t rest = ferry__txpay_left(&m->pay);
		long copied = ferry__txpay_detach(&m->pay);
		if (copied < 0) {
			/* Never sent as anything but what it was: dropped, or
			 * the connection reset, at the next flush. */
			c->backlog -= rest;
			m->detach_err = (int)copied;
			t->cnt.tx_file_read_errors += copied != -ENOMEM;
			t->base.tx_pending = true;
			return (int)copied;
		}
		t->cnt.detach_copy_bytes += (uint64_t)copied;
		return 1;
	}
	return 0;
}
