/* Packet capture's pcap writers: one per path, shared by every tap in the
 * process that names it, rotated at pcap_max into FILE.1..FILE.n. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "capture_int.h"

#if FERRY_HAVE_PCAP
static pthread_mutex_t cap_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static cap_writer *cap_writers;

void ferry__cap_writer_free(cap_writer *w)
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

int ferry__cap_dump_open(cap_writer *w, char *err, size_t err_len)
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

int ferry__cap_writer_get(const char *path, uint64_t max_bytes, unsigned files,
                          uint32_t snap, cap_writer **out, char *err, size_t err_len)
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
		if ((size_t)snprintf(abs, sizeof(abs), "%s/%s", cwd, path) >=
		    sizeof(abs)) {
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
	if (w == NULL ||
	    (w->scratch = ferry__malloc(CAP_L2L4_MAX_BYTES + snap)) == NULL) {
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
		rc = ferry__cap_dump_open(w, err, err_len);
	}
	if (rc != 0) {
		ferry__cap_writer_free(w);
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

void ferry__cap_writer_put(cap_writer *w)
{
	pthread_mutex_lock(&cap_registry_lock);
	if (--w->refs == 0) {
		for (cap_writer **pp = &cap_writers; *pp != NULL; pp = &(*pp)->next)
			if (*pp == w) {
				*pp = w->next;
				break;
			}
		ferry__cap_writer_free(w);
	}
	pthread_mutex_unlock(&cap_registry_lock);
}

/* Close FILE, shift FILE.i to FILE.i+1 (the oldest falls off), reopen. */
int ferry__cap_rotate(cap_writer *w)
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
	if (ferry__cap_dump_open(w, err, sizeof(err)) != 0)
		return errno != 0 ? -errno : -EIO;
	return 0;
}

#endif /* FERRY_HAVE_PCAP */
