/* Packet capture's private parts, shared by the tap (capture.c), the pcap
 * writers (capture_writer.c) and the record synthesiser (capture_synth.c). */
#ifndef FERRY_DRIVERS_CAPTURE_INT_H
#define FERRY_DRIVERS_CAPTURE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if FERRY_HAVE_PCAP
#include <pcap/pcap.h>
#endif

#include "ferry/driver.h"

#define CAP_MAX_BYTES_DEFAULT   (64ull << 20) /* pcap_max: per file */
#define CAP_MAX_BYTES_MIN       4096ull
#define CAP_FILES_DEFAULT       4 /* pcap_files: FILE + FILE.1..3 */
#define CAP_FILES_MAX           1000
#define CAP_SNAP_DEFAULT_BYTES  65535u /* pcap_snap: ferry bytes kept */
#define CAP_SNAP_MIN_BYTES      40u    /* at least the ferry header */
#define CAP_SNAP_MAX_BYTES      65535u
#define CAP_FLUSH_INTERVAL_US   100000u  /* stdio buffer to the file */
#define CAP_LOCAL_RETRY_US      1000000u /* re-ask a wildcard local address */
#define CAP_ETH_BYTES           14
#define CAP_IP4_BYTES           20
#define CAP_IP6_BYTES           40
#define CAP_UDP_BYTES           8
#define CAP_L2L4_MAX_BYTES      (CAP_ETH_BYTES + CAP_IP6_BYTES + CAP_UDP_BYTES)
#define CAP_IP_LEN_MAX          65535u /* 16-bit IP/UDP length fields */
#define CAP_PCAP_FILE_HDR_BYTES 24u
#define CAP_PCAP_REC_HDR_BYTES  16u
#define CAP_SYNTH_PORT_BASE     0xC000u /* synthetic ports: 49152.. */

typedef struct cap_counters {
	uint64_t records, bytes, truncated, dropped, rotations, errors;
} cap_counters;

/* One open pcap file (and its rotated predecessors), shared by every tap
 * in the process that names the same path. The first opener's pcap_max,
 * pcap_files and pcap_snap win. */
typedef struct cap_writer {
	struct cap_writer *next;
	int refs; /* guarded by cap_registry_lock */
	char path[PATH_MAX];
	pthread_mutex_t lock; /* the rest: taps on several threads write */
#if FERRY_HAVE_PCAP
	pcap_t *pd;
	pcap_dumper_t *d;
#endif
	uint64_t max_bytes, file_bytes, last_flush_us;
	unsigned files;
	uint32_t snap;    /* ferry bytes kept per record */
	uint8_t *scratch; /* one record: L2-L4 headers + snap bytes */
	int err;          /* first write error (errno); the writer then
	                   * drops every record */
} cap_writer;

/* An address as the synthetic headers show it. */
typedef struct cap_inet {
	int family; /* AF_INET or AF_INET6 */
	uint8_t ip[16];
	uint16_t port;
} cap_inet;

/* The ferry bytes of one record: a flat piece, then an iterator's bytes
 * (NULL: none); len is the message's full length on the wire. */
typedef struct cap_bytes {
	const void *a;
	size_t a_len;
	ferry_buf_iter *it;
	uint64_t len;
} cap_bytes;

#if FERRY_HAVE_PCAP
/* capture_writer.c: one writer per path, shared by reference. */
int ferry__cap_dump_open(cap_writer *w, char *err, size_t err_len);
int ferry__cap_writer_get(const char *path, uint64_t max_bytes, unsigned files,
                          uint32_t snap, cap_writer **out, char *err, size_t err_len);
void ferry__cap_writer_put(cap_writer *w);
int ferry__cap_rotate(cap_writer *w);
void ferry__cap_writer_free(cap_writer *w);

/* capture_synth.c: synthetic Ethernet/IP/UDP headers and record bytes. */
uint32_t ferry__cap_hash(const ferry_addr *a);
void ferry__cap_inet_of(const ferry_addr *a, int want_family, cap_inet *out);
bool ferry__cap_ip_zero(const cap_inet *a);
bool ferry__cap_ip_loopback(const cap_inet *a);
void ferry__cap_ends(const ferry_addr *local, const ferry_addr *peer, cap_inet *l,
                     cap_inet *p);
uint16_t ferry__cap_csum(const uint8_t *p, size_t n);
void ferry__cap_put16be(uint8_t *p, uint32_t v);
size_t ferry__cap_l2l4(uint8_t *o, const cap_inet *src, const cap_inet *dst,
                       uint64_t len);
size_t ferry__cap_gather(uint8_t *o, size_t room, const cap_bytes *b);
#endif

#endif
