/* The verbs addressing shared by infud and infrc (src/drivers/kit/ib.c), without
 * a device: address-handle attributes for IB (LID, GRH across subnets) and
 * RoCE (always a GRH), ferry_addr round trips, and the UDP bootstrap
 * exchange over 127.0.0.1. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "drivers/kit/ib.h"
#include "transport/locator.h"

static const uint8_t prefix_a[8] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0};
static const uint8_t prefix_b[8] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7};

static void fake_dev(ferry_ib_dev *d, bool roce)
{
	memset(d, 0, sizeof(*d));
	d->port = 2;
	d->gid_index = 3;
	d->roce = roce;
	d->lid = roce ? 0 : 0x11;
	memcpy(d->gid.raw, prefix_a, 8);
	for (int i = 8; i < 16; i++)
		d->gid.raw[i] = (uint8_t)(0xa0 + i);
	d->mtu = IBV_MTU_1024;
	d->mtu_bytes = 1024;
}

static void fake_peer(ferry_ib_addr *p, const uint8_t prefix[8], uint16_t lid, bool roce)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->gid, prefix, 8);
	for (int i = 8; i < 16; i++)
		p->gid[i] = (uint8_t)(0x50 + i);
	p->lid = lid;
	p->qpn = 0x123456;
	p->qkey = 0x11223344;
	p->roce = roce;
}

/* IB, same subnet: a plain LID route, no GRH. */
static void test_ah_ib_local(void **s)
{
	(void)s;
	ferry_ib_dev d;
	fake_dev(&d, false);
	ferry_ib_addr peer;
	fake_peer(&peer, prefix_a, 0x2a, false);
	struct ibv_ah_attr a;
	memset(&a, 0x5a, sizeof(a));
	ferry__ib_ah_attr(&d, &peer, &a);
	assert_int_equal(a.is_global, 0);
	assert_int_equal(a.dlid, 0x2a);
	assert_int_equal(a.port_num, 2);
	assert_int_equal(a.sl, 0);
	assert_int_equal(a.src_path_bits, 0);
	assert_int_equal(a.grh.hop_limit, 0); /* filled entirely: no stale bytes */
}

/* IB, another subnet (GID prefix differs): a GRH towards the peer's GID
 * from our GID index, routed through the LID (of the router). */
static void test_ah_ib_remote_subnet(void **s)
{
	(void)s;
	ferry_ib_dev d;
	fake_dev(&d, false);
	ferry_ib_addr peer;
	fake_peer(&peer, prefix_b, 0x33, false);
	struct ibv_ah_attr a;
	ferry__ib_ah_attr(&d, &peer, &a);
	assert_int_equal(a.is_global, 1);
	assert_memory_equal(a.grh.dgid.raw, peer.gid, 16);
	assert_int_equal(a.grh.sgid_index, 3);
	assert_int_equal(a.grh.hop_limit, 64);
	assert_int_equal(a.dlid, 0x33);
	assert_int_equal(a.port_num, 2);
}

/* RoCE: always a GRH, never a LID, whatever the peer's prefix. */
static void test_ah_roce(void **s)
{
	(void)s;
	ferry_ib_dev d;
	fake_dev(&d, true);
	const uint8_t *prefixes[] = {prefix_a, prefix_b};
	for (int i = 0; i < 2; i++) {
		ferry_ib_addr peer;
		fake_peer(&peer, prefixes[i], 0x44, true);
		struct ibv_ah_attr a;
		ferry__ib_ah_attr(&d, &peer, &a);
		assert_int_equal(a.is_global, 1);
		assert_int_equal(a.dlid, 0);
		assert_memory_equal(a.grh.dgid.raw, peer.gid, 16);
		assert_int_equal(a.grh.sgid_index, 3);
		assert_true(a.grh.hop_limit > 1);
		assert_int_equal(a.port_num, 2);
	}
}

static void test_addr_round_trip(void **s)
{
	(void)s;
	ferry_ib_addr in, out;
	fake_peer(&in, prefix_b, 0x1234, false);
	ferry_addr fa;
	ferry__ib_to_addr(&in, &fa);
	assert_int_equal(fa.len, sizeof(ferry_ib_addr));
	assert_true(fa.len <= FERRY_ADDR_BYTES);
	assert_int_equal(ferry__ib_from_addr(&fa, &out), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	/* Two conversions of one address are byte-identical (the transports
	 * compare addresses with memcmp). */
	ferry_addr fb;
	ferry__ib_to_addr(&out, &fb);
	assert_memory_equal(&fa, &fb, sizeof(fa));
	/* Not an IB address: refused. */
	ferry_addr bad = fa;
	bad.len = 16;
	assert_int_equal(ferry__ib_from_addr(&bad, &out), -EINVAL);
	bad.len = 0;
	assert_int_equal(ferry__ib_from_addr(&bad, &out), -EINVAL);
	char text[128];
	assert_true(ferry__ib_addr_str(&in, text, sizeof(text)) > 0);
	assert_non_null(strstr(text, "qpn=1193046"));
	assert_non_null(strstr(text, "lid=4660"));
	assert_non_null(strstr(text, "2001:db8:0:7:5859:5a5b:5c5d:5e5f"));
}

static void test_mtu_bytes(void **s)
{
	(void)s;
	assert_int_equal(ferry__ib_mtu_bytes(IBV_MTU_256), 256);
	assert_int_equal(ferry__ib_mtu_bytes(IBV_MTU_1024), 1024);
	assert_int_equal(ferry__ib_mtu_bytes(IBV_MTU_4096), 4096);
	assert_int_equal(ferry__ib_mtu_bytes((enum ibv_mtu)0), 0);
}

/* A locator with host and port only (no stack needed by the helpers). */
static void loc_hostport(ferry_loc *loc, const char *host, const char *port)
{
	memset(loc, 0, sizeof(*loc));
	loc->nkeys = 2;
	loc->kv[0].key = "host";
	loc->kv[0].val = host;
	loc->kv[1].key = "port";
	loc->kv[1].val = port;
}

typedef struct server_thread {
	int fd;
	ferry_ib_addr self;
	atomic_int stop;
	uint64_t answered, bad;
} server_thread;

static void *serve_loop(void *arg)
{
	server_thread *t = arg;
	while (!atomic_load(&t->stop)) {
		struct pollfd p = {.fd = t->fd, .events = POLLIN};
		if (poll(&p, 1, 10) > 0)
			t->answered += (uint64_t)ferry__ib_boot_serve(t->fd, &t->self,
			                                              2048, &t->bad);
	}
	return NULL;
}

static void wait_readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 2000), 1);
}

/* Query and answer over 127.0.0.1: the answer carries the server's address
 * and MTU; malformed datagrams are counted and get no answer. */
static void test_boot_exchange(void **s)
{
	(void)s;
	ferry_loc loc;
	loc_hostport(&loc, "127.0.0.1", "0");
	struct sockaddr_storage bound;
	char err[160] = "";
	int fd = ferry__ib_boot_listen(&loc, &bound, err, sizeof(err));
	assert_true(fd >= 0);
	uint16_t port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	assert_true(port != 0);

	/* Malformed: wrong size, then right size with a bad magic. */
	int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(c >= 0);
	uint8_t junk[FERRY_IB_BOOT_BYTES];
	memset(junk, 0x77, sizeof(junk));
	assert_int_equal(sendto(c, junk, 5, 0, (struct sockaddr *)&bound,
	                        sizeof(struct sockaddr_in)),
	                 5);
	assert_int_equal(sendto(c, junk, sizeof(junk), 0, (struct sockaddr *)&bound,
	                        sizeof(struct sockaddr_in)),
	                 (ssize_t)sizeof(junk));
	ferry_ib_addr self;
	fake_peer(&self, prefix_b, 0x99, true);
	uint64_t bad = 0;
	wait_readable(fd);
	usleep(20000); /* both datagrams queued */
	assert_int_equal(ferry__ib_boot_serve(fd, &self, 2048, &bad), 0);
	assert_int_equal(bad, 2);
	/* no answer went back */
	struct pollfd p = {.fd = c, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 50), 0);
	close(c);

	server_thread t = {.fd = fd, .self = self};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, serve_loop, &t), 0);
	char ps[16];
	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	ferry_loc q;
	loc_hostport(&q, "127.0.0.1", ps);
	ferry_ib_addr got;
	uint32_t mtu = 0;
	assert_int_equal(ferry__ib_boot_query(&q, 2000, &got, &mtu, err, sizeof(err)), 0);
	assert_int_equal(mtu, 2048);
	assert_int_equal(got.qpn, self.qpn);
	assert_int_equal(got.qkey, self.qkey);
	assert_int_equal(got.lid, self.lid);
	assert_int_equal(got.roce, 1);
	assert_memory_equal(got.gid, self.gid, 16);
	assert_memory_equal(&got, &self,
	                    sizeof(got)); /* identical as ferry_addr bytes too */
	atomic_store(&t.stop, 1);
	pthread_join(th, NULL);
	assert_int_equal(t.answered, 1);
	assert_int_equal(t.bad, 0);
	close(fd);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A port that never answers: FERRY_ETIMEDOUT at the deadline, with a
 * message. */
static void test_boot_timeout(void **s)
{
	(void)s;
	ferry_loc loc;
	loc_hostport(&loc, "127.0.0.1", "0");
	struct sockaddr_storage bound;
	char err[160] = "";
	int fd = ferry__ib_boot_listen(&loc, &bound, err, sizeof(err));
	assert_true(fd >= 0);
	char ps[16];
	snprintf(ps, sizeof(ps), "%u",
	         (unsigned)ntohs(((struct sockaddr_in *)&bound)->sin_port));
	ferry_loc q;
	loc_hostport(&q, "127.0.0.1", ps);
	ferry_ib_addr got;
	uint32_t mtu;
	uint64_t t0 = mono_ms();
	assert_int_equal(ferry__ib_boot_query(&q, 300, &got, &mtu, err, sizeof(err)),
	                 FERRY_ETIMEDOUT);
	uint64_t took = mono_ms() - t0;
	assert_true(took >= 300 && took < 2000);
	assert_non_null(strstr(err, "300 ms"));
	/* It asked more than once (every 100 ms). */
	uint64_t bad = 0;
	int answered = ferry__ib_boot_serve(fd, &(ferry_ib_addr){0}, 1024, &bad);
	assert_true(answered >= 2);
	close(fd);
	/* A bad port is a locator error. */
	loc_hostport(&q, "127.0.0.1", "99999");
	assert_int_equal(ferry__ib_boot_query(&q, 300, &got, &mtu, err, sizeof(err)),
	                 FERRY_EBADLOC);
	assert_non_null(strstr(err, "port"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ah_ib_local),
	        cmocka_unit_test(test_ah_ib_remote_subnet),
	        cmocka_unit_test(test_ah_roce),
	        cmocka_unit_test(test_addr_round_trip),
	        cmocka_unit_test(test_mtu_bytes),
	        cmocka_unit_test(test_boot_exchange),
	        cmocka_unit_test(test_boot_timeout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
