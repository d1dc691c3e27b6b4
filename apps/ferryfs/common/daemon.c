/* Shared daemon plumbing (daemon.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "daemon.h"

#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int daemon_ini(void *user, const char *section, const char *key, const char *val)
{
	fs_daemon *d = user;
	if (strcmp(section, d->section) != 0) {
		fprintf(stderr, "%s: unknown section [%s] (keys go in [%s])\n", d->name,
		        section, d->section);
		return 0;
	}
	return d->key(key, val);
}

int fs_daemon_args(fs_daemon *d, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			int rc = ini_parse(argv[++i], daemon_ini, d);
			if (rc > 0)
				fprintf(stderr, "%s: %s: error on line %d\n", d->name,
				        argv[i], rc);
			else if (rc < 0)
				fprintf(stderr, "%s: %s: cannot read it\n", d->name,
				        argv[i]);
			if (rc != 0)
				return -1;
		}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			i++;
		} else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
			char *kv = argv[++i], *eq = strchr(kv, '=');
			if (eq == NULL) {
				fprintf(stderr, "%s: --set %s: KEY=VALUE\n", d->name, kv);
				return -1;
			}
			*eq = '\0';
			if (!d->key(kv, eq + 1))
				return -1;
		} else if (strcmp(argv[i], "--foreground") == 0) {
			d->foreground = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			d->usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "%s: unknown argument '%s'\n", d->name, argv[i]);
			d->usage(stderr);
			return -1;
		}
	}
	return 0;
}

int fs_daemon_detach(const fs_daemon *d, const char *log_path)
{
	if (d->foreground)
		return 0;
	if (daemon(0, 0) != 0 || freopen(log_path, "a", stderr) == NULL)
		return -1;
	setvbuf(stderr, NULL, _IOLBF, 0);
	return 0;
}

static volatile sig_atomic_t *daemon_stop;

static void daemon_signal(int sig)
{
	(void)sig;
	*daemon_stop = 1;
}

void fs_daemon_signals(volatile sig_atomic_t *stop)
{
	daemon_stop = stop;
	struct sigaction sa = {.sa_handler = daemon_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

void fs_log(const char *name, const char *fmt, ...)
{
	va_list ap;
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tm));
	fprintf(stderr, "%s %s: ", ts, name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
