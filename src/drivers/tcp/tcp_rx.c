/* tcp receive: reads fill pooled blocks; a header is collected (it may
 * straddle reads), the transport names the body's sink, and body bytes in
 * a block are appended to the sink buffer as loans of that block
 * (zero-copy past the kernel's). A body bound for an fd is written from the
 * block (tcp), or moved socket -> pipe -> fd with splice (splice) when the
 * transport asked for exact header reads. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drivers/kit/sink.h"
#include "tcp.h"

/* SO_RCVLOWAT: wake for want bytes (1: the default). It never stays above
 * want (the peer may send no more than that), and is raised only when that
 * doubles it (a system call each time); a failure leaves the default,
 * which is only slower. */
static void conn_lowat(tcp_conn *c, uint32_t want)
{
	if (want == c->lowat || (want > c->lowat && c->lowat > 1 && want < 2 * c->lowat))
		return;
	int v = (int)want;
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0)
		c->lowat = want;
}

static void body_finish(tcp_ep *t, tcp_conn *c)
{
	if (c->lowat > 1)
		conn_lowat(c, 1);
	c->in_body = false;
	c->hdr_have = 0;
	c->sink_fallback = false;
	t->base.up->on_body(t->base.up_arg, &c->base, c->hdr, &c->sink, c->sink_err);
}

/* Body bytes in the block go to the sink. */
static void body_take(tcp_ep *t, tcp_conn *c)
{
	uint32_t avail = c->wr - c->rd;
	uint32_t n = c->body_left < avail ? (uint32_t)c->body_left : avail;
	if (n == 0)
		return;
	uint8_t *p = c->blk->mem + c->rd;
	t->cnt.rx_user_bytes += n;
	if (c->sink_err == 0) {
		if (c->sink.buf != NULL) {
			c->blk->refs++;
			if (ferry_buf_append_pkt(c->sink.buf, &c->blk->pkt, p, n) != 0) {
				c->blk->refs--;
				c->sink_err = -ENOMEM;
			}
		} else if (c->sink.fd >= 0) {
			c->sink_err = ferry__sink_write(&c->sink, p, n,
			                                &t->cnt.rx_sink_copy_bytes);
		}
	}
	c->rd += n;
	c->body_left -= n;
}

/* The fd refused splice (O_APPEND, a socket without support, ...): what
 * sits in the pipe is copied out, the rest of the body takes the copy
 * path. */
static void body_unsplice(tcp_ep *t, tcp_conn *c)
{
	t->cnt.splice_fallbacks++;
	c->sink_fallback = true;
	if (c->lowat > 1)
		conn_lowat(c, 1);
	uint8_t buf[16384];
	while (c->pipe_fill > 0) {
		ssize_t r = read(c->pipe_r, buf, sizeof(buf));
		if (r <= 0)
			break;
		c->pipe_fill -= (uint32_t)r;
		c->body_left -= (uint64_t)r;
		t->cnt.rx_user_bytes += (uint64_t)r;
		if (c->sink_err == 0)
			c->sink_err = ferry__sink_write(&c->sink, buf, (size_t)r,
			                                &t->cnt.rx_sink_copy_bytes);
	}
}

/* Move body bytes socket -> pipe -> fd, in as few and as large steps as
 * the socket allows: the pipe is filled while the socket has body bytes
 * (several splices when it fills up meanwhile), then emptied into the fd;
 * once the socket has run dry the context goes back to sleep, and in block
 * mode SO_RCVLOWAT keeps it asleep until a large step is queued. Returns 1
 * progress and maybe more to read, 0 nothing more to read now, -1
 * connection failed (gone), -2 use the copy path from now on. */
static int body_splice(tcp_ep *t, tcp_conn *c)
{
	ferry_body_sink *k = &c->sink;
	if (c->pipe_r < 0) {
		int p[2];
		if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
			return -2;
		c->pipe_r = p[0];
		c->pipe_w = p[1];
		fcntl(c->pipe_w, F_SETPIPE_SZ, TCP_PIPE_BYTES);
		int cap = fcntl(c->pipe_w, F_GETPIPE_SZ);
		c->pipe_cap = cap > 0 ? (uint32_t)cap : 65536;
	}
	bool progress = false, dry = false;
	for (int i = 0; i < TCP_READS_PER_POLL && c->body_left > 0 && !dry; i++) {
		/* Fill. A splice that moves less than asked found the socket
		 * empty or the pipe's slots full (a slot per socket buffer
		 * fragment): then the pipe is emptied before asking again. */
		while (c->pipe_fill < c->pipe_cap && c->pipe_fill < c->body_left) {
			uint64_t want = c->body_left - c->pipe_fill;
			if (want > c->pipe_cap - c->pipe_fill)
				want = c->pipe_cap - c->pipe_fill;
			ssize_t n = splice(c->fd, NULL, c->pipe_w, NULL, want,
			                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			t->cnt.splice_calls++;
			if (n == 0) {
				ferry__tcp_conn_fail(t, c, FERRY_EPEERDEAD);
				return -1;
			}
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					dry = true;
					break;
				}
				if (errno == EINVAL && c->pipe_fill == 0)
					return -2;
				ferry__tcp_conn_fail(t, c, -errno);
				return -1;
			}
			c->pipe_fill += (uint32_t)n;
			if ((uint64_t)n < want)
				break;
		}
		/* Empty the pipe into the fd. */
		while (c->pipe_fill > 0) {
			loff_t o = k->off;
			ssize_t m =
			        splice(c->pipe_r, NULL, k->fd, k->off >= 0 ? &o : NULL,
			               c->pipe_fill, SPLICE_F_MOVE);
			t->cnt.splice_calls++;
			if (m < 0 && errno == EINTR)
				continue;
			if (m <= 0) {
				body_unsplice(t, c);
				return 1;
			}
			if (k->off >= 0)
				k->off = o;
			c->pipe_fill -= (uint32_t)m;
			c->body_left -= (uint64_t)m;
			t->cnt.splice_bytes += (uint64_t)m;
			progress = true;
		}
	}
	/* Sleep until the next large step is queued (or the rest of the
	 * body, which may be less). */
	if (t->base.sleeps && c->body_left > 0) {
		uint64_t lw = c->pipe_cap / 2 < TCP_SPLICE_LOWAT_BYTES
		                      ? c->pipe_cap / 2
		                      : TCP_SPLICE_LOWAT_BYTES;
		conn_lowat(c, (uint32_t)(c->body_left < lw ? c->body_left : lw));
	}
	return progress && !dry ? 1 : 0;
}

/* Room to read into: a fresh block when the current one is spent. */
static int conn_room(tcp_ep *t, tcp_conn *c)
{
	if (c->blk != NULL && c->rd == c->wr && c->blk->refs == 1)
		c->rd = c->wr = 0; /* nobody else holds it: reuse in place */
	if (c->blk == NULL || TCP_BLK_BYTES - c->wr < TCP_BLK_MIN_ROOM) {
		/* Every byte is consumed before a read (headers are copied out,
		 * bodies taken), so nothing moves. */
		if (c->blk != NULL)
			ferry__tcp_blk_put(t, c->blk);
		c->blk = ferry__tcp_blk_get(t);
		c->rd = c->wr = 0;
		if (c->blk == NULL)
			return -ENOMEM;
	}
	return 0;
}

/* Read and parse what this connection has. Returns messages completed, or
 * -1 when the connection went away. */
int ferry__tcp_conn_read(tcp_ep *t, tcp_conn *c)
{
	const ferry_stream_upcalls *up = t->base.up;
	size_t hl = up->hdr_len;
	int done = 0;
	for (int reads = 0;;) {
		/* Consume what the block holds. */
		while (c->rd < c->wr || (c->in_body && c->body_left == 0)) {
			if (!c->in_body) {
				uint32_t k = (uint32_t)(hl - c->hdr_have);
				if (k > c->wr - c->rd)
					k = c->wr - c->rd;
				memcpy(c->hdr + c->hdr_have, c->blk->mem + c->rd, k);
				c->hdr_have += k;
				c->rd += k;
				if (c->hdr_have < hl)
					break;
				goto header;
			}
			body_take(t, c);
			if (c->body_left == 0) {
				body_finish(t, c);
				done++;
				if (c->state == TCP_DEAD)
					return done; /* closed by the upcall */
			}
		}
		if (c->state != TCP_UP)
			return -1;
		if (c->in_body && c->sink.fd >= 0 && t->zerocopy && !c->sink_fallback &&
		    c->sink_err == 0) {
			int r = body_splice(t, c);
			if (r == -1)
				return -1;
			if (r == -2) {
				t->cnt.splice_fallbacks++;
				c->sink_fallback = true;
				continue;
			}
			if (c->body_left == 0) {
				body_finish(t, c);
				done++;
				if (c->state == TCP_DEAD)
					return done;
				continue;
			}
			if (r == 0)
				return done;
			continue;
		}
		if (reads++ >= TCP_READS_PER_POLL)
			return done;
		/* A body that stopped being spliced (its call ended, the fd
		 * failed) must not keep the splice wake-up threshold: it could
		 * exceed what is left to come. */
		if (c->lowat > 1)
			conn_lowat(c, 1);
		/* Read. With exact headers asked for, never past the header or
		 * the body in progress. */
		if (conn_room(t, c) != 0)
			return done;
		size_t room = TCP_BLK_BYTES - c->wr;
		if (c->base.hdr_exact) {
			uint64_t lim = c->in_body ? c->body_left : hl - c->hdr_have;
			if (lim < room)
				room = (size_t)lim;
		}
		ssize_t n = recv(c->fd, c->blk->mem + c->wr, room, MSG_DONTWAIT);
		t->cnt.recv_calls++;
		if (n > 0) {
			c->wr += (uint32_t)n;
			t->cnt.recv_bytes += (uint64_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return done;
		if (n == 0 && !c->in_body && c->hdr_have == 0) {
			ferry__tcp_conn_destroy(t, c, FERRY_CONN_CLOSED, FERRY_EPEERDEAD,
			                        true);
			return -1;
		}
		ferry__tcp_conn_fail(
		        t, c, n == 0 || errno == ECONNRESET ? FERRY_EPEERDEAD : -errno);
		return -1;
	header:
		c->sink = (ferry_body_sink){.fd = -1, .off = -1};
		c->sink_err = 0;
		c->sink_fallback = false;
		int rc = up->on_header(t->base.up_arg, &c->base, c->hdr, &c->sink);
		if (c->state == TCP_DEAD)
			return done;
		if (rc != 0) {
			ferry__tcp_conn_fail(t, c, rc);
			return -1;
		}
		if (c->sink.buf == NULL && c->sink.fd < 0)
			c->sink.discard = true;
		c->in_body = true;
		c->body_left = c->sink.len;
	}
}
