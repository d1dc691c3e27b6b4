/* libferryfs: the ferryfs client library (docs/ferryfs/CLIENT.md).
 *
 * A ferryfs handle owns a ferry context and talks to a cluster through
 * its trackers (tried in order until one answers) or straight to one
 * storage server. Calls are synchronous: each returns when the cluster
 * has answered, with 0 or a negative code (a -errno the servers answered
 * with, e.g. -ENOENT, -ENOSPC, -EROFS, -EHOSTDOWN, or one of ferry's codes
 * for the transport: ferry_strerror() names both); ferryfs_errmsg() says
 * what the last failed call was doing.
 *
 * Threads: a handle is used by one thread at a time (it polls its own
 * ferry context inside each call); use one handle per thread. Handles
 * share nothing. */
#ifndef FERRYFS_FERRYFS_H
#define FERRYFS_FERRYFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef FERRYFS_API
#define FERRYFS_API __attribute__((visibility("default")))
#endif

#define FERRYFS_ID_MAX     80 /**< a file ID's text, with its NUL */
#define FERRYFS_GROUP_MAX  16
#define FERRYFS_LOC_MAX    200
#define FERRYFS_LOCS_MAX   8
#define FERRYFS_STORES_MAX 16

typedef struct ferryfs ferryfs;

/** How to reach the cluster. Set size to sizeof(ferryfs_opts); fields left
 * zero take their defaults. */
typedef struct ferryfs_opts {
	size_t size;
	const char *const *trackers; /**< tracker locators, tried in order */
	int ntrackers;
	const char *server;    /**< or one storage server (no tracker) */
	const char *transport; /**< which of a server's locators ("tcp",
	                        * "splice", "fast+udp"); NULL: the tracker's */
	uint64_t timeout_us;   /**< per call; 0: 60 s */
	/** Notes a caller may show (a tracker that did not answer); NULL: none. */
	void (*note)(void *arg, const char *msg);
	void *note_arg;
} ferryfs_opts;

/** Progress of a transfer: bytes done of total. */
typedef void (*ferryfs_progress_cb)(void *arg, uint64_t done, uint64_t total);

typedef struct ferryfs_upload_opts {
	size_t size;       /**< sizeof(ferryfs_upload_opts) */
	const char *ext;   /**< extension, 0-6 of A-Z a-z 0-9; NULL: none */
	const char *group; /**< only this group; NULL: any */
	int store;         /**< 1 + the store path index to use; 0: any */
	bool appender;     /**< an appender object (append, write, truncate) */
	ferryfs_progress_cb progress;
	void *progress_arg;
} ferryfs_upload_opts;

/** What a file ID says, and (from the server) the object as it is now. */
typedef struct ferryfs_info {
	char group[FERRYFS_GROUP_MAX + 1];
	uint32_t store;  /**< store path index */
	uint32_t source; /**< the storage server that created it */
	uint32_t ctime;  /**< creation, seconds since the epoch */
	uint64_t size_at_upload;
	uint32_t crc32; /**< of the content at upload */
	bool appender;
	bool from_server; /**< the two below are filled */
	uint64_t size;    /**< now */
	uint64_t mtime;   /**< last change, seconds */
} ferryfs_info;

/** A metadata pair. */
typedef struct ferryfs_meta {
	char key[65];
	size_t len;
	unsigned char value[1024];
} ferryfs_meta;

/** A storage server as a tracker sees it (ferryfs_servers). */
typedef struct ferryfs_server {
	char group[FERRYFS_GROUP_MAX + 1];
	uint32_t id;
	int state;       /**< FERRYFS_OFFLINE, FERRYFS_ACTIVE, FERRYFS_READONLY */
	int64_t beat_ms; /**< since its last beat; -1: never */
	uint32_t load;
	uint64_t ops;
	int nlocs, nstores;
	char locs[FERRYFS_LOCS_MAX][FERRYFS_LOC_MAX + 1];
	uint64_t free_bytes[FERRYFS_STORES_MAX], total_bytes[FERRYFS_STORES_MAX];
} ferryfs_server;
enum { FERRYFS_OFFLINE = 0, FERRYFS_ACTIVE = 1, FERRYFS_READONLY = 2 };

/** Open a handle. 0, -EINVAL (no tracker and no server), -ENOMEM, or a
 * ferry code (ferryfs_errmsg is not available: *out stays NULL). */
FERRYFS_API int ferryfs_open(const ferryfs_opts *opts, ferryfs **out);
FERRYFS_API void ferryfs_close(ferryfs *fs);
/** What the last failed call on fs was doing and why. */
FERRYFS_API const char *ferryfs_errmsg(const ferryfs *fs);

/** Upload size bytes of fd from offset 0 (sent as file regions: zero copy
 * on splice). Over 16 MiB the object goes in pieces. id receives the new
 * object's file ID. */
FERRYFS_API int ferryfs_upload_fd(ferryfs *fs, int fd, uint64_t size,
                                  const ferryfs_upload_opts *o, char id[FERRYFS_ID_MAX]);
FERRYFS_API int ferryfs_upload_mem(ferryfs *fs, const void *p, size_t n,
                                   const ferryfs_upload_opts *o, char id[FERRYFS_ID_MAX]);
FERRYFS_API int ferryfs_upload_path(ferryfs *fs, const char *path,
                                    const ferryfs_upload_opts *o,
                                    char id[FERRYFS_ID_MAX]);

/** Download [off, off + len) (len 0: to the end) into fd at fd_off (-1:
 * at its position), in ranges of 16 MiB. *written: bytes written. A
 * non-appender object's byte count is checked against its ID (-EIO). */
FERRYFS_API int ferryfs_download_fd(ferryfs *fs, const char *id, uint64_t off,
                                    uint64_t len, int fd, int64_t fd_off,
                                    uint64_t *written, ferryfs_progress_cb progress,
                                    void *progress_arg);
/** Into a file at path (created or truncated, mode 0644): the whole object.
 * On failure the file is removed. */
FERRYFS_API int ferryfs_download_path(ferryfs *fs, const char *id, const char *path,
                                      ferryfs_progress_cb progress, void *progress_arg);
/** Into memory: at most cap bytes of [off, ...); *got: bytes. */
FERRYFS_API int ferryfs_download_mem(ferryfs *fs, const char *id, uint64_t off, void *buf,
                                     size_t cap, size_t *got);

FERRYFS_API int ferryfs_delete(ferryfs *fs, const char *id);
/** Decode id here (fs may be NULL); with fs, also ask its server. A
 * malformed ID: -EINVAL. */
FERRYFS_API int ferryfs_stat(ferryfs *fs, const char *id, ferryfs_info *out);

/** Appender objects (-EPERM on others): the whole of fd (size bytes from
 * 0) appended, or written at off; truncate to size. */
FERRYFS_API int ferryfs_append_fd(ferryfs *fs, const char *id, int fd, uint64_t size);
FERRYFS_API int ferryfs_write_fd(ferryfs *fs, const char *id, uint64_t off, int fd,
                                 uint64_t size);
FERRYFS_API int ferryfs_truncate(ferryfs *fs, const char *id, uint64_t size);

/** Metadata: set n pairs (merge: keep the keys not given), or get all
 * (at most max into pairs; *n: how many). */
FERRYFS_API int ferryfs_meta_set(ferryfs *fs, const char *id, const ferryfs_meta *pairs,
                                 int n, bool merge);
FERRYFS_API int ferryfs_meta_get(ferryfs *fs, const char *id, ferryfs_meta *pairs,
                                 int max, int *n);

/** Every server the first answering tracker knows (at most max). */
FERRYFS_API int ferryfs_servers(ferryfs *fs, ferryfs_server *out, int max, int *n);

#ifdef __cplusplus
}
#endif
#endif
