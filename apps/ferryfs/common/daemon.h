/* What every ferryfs daemon shares: its configuration (one INI section,
 * every key overridable with --set KEY=VALUE), --foreground, logging with
 * a timestamp to stderr (or to a file once detached), and SIGTERM/SIGINT
 * as a stop request. */
#ifndef FERRYFS_DAEMON_H
#define FERRYFS_DAEMON_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct fs_daemon {
	const char *name;    /* "ferryfs-storage": log and message prefix */
	const char *section; /* the INI section of its keys */
	/* one key: 1 = taken, 0 = refused (the reason already on stderr) */
	int (*key)(const char *key, const char *val);
	void (*usage)(FILE *f);
	bool foreground; /* out: --foreground was given */
} fs_daemon;

/* --config FILE first, then --set in order (the command line wins), then
 * --foreground / --help. 0, or -1 with the reason on stderr. */
int fs_daemon_args(fs_daemon *d, int argc, char **argv);
/* Unless in the foreground: detach and append the log to log_path. 0 or -1. */
int fs_daemon_detach(const fs_daemon *d, const char *log_path);
/* SIGTERM and SIGINT set *stop; SIGPIPE is ignored. */
void fs_daemon_signals(volatile sig_atomic_t *stop);
/* A log line: timestamp, the daemon's name, the message. */
void fs_log(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
