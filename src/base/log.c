/* The log hook. The hook and its argument are one pair, published through
 * an atomic pointer to one of two slots: a thread logging while another
 * installs a new hook sees the old pair or the new one, never a mix.
 * Installs are serialised by a mutex; ferry_set_log is documented as a
 * start-up call, and two installs racing with one reader still leave the
 * reader a whole pair (a slot is reused only on the second install after
 * the one that published it). */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "ferry/rpc.h"
#include "log.h"

typedef struct log_hook {
	ferry_log_cb cb;
	void *arg;
} log_hook;

static log_hook log_slots[2];
static _Atomic(log_hook *) log_cur;
static pthread_mutex_t log_set_lock = PTHREAD_MUTEX_INITIALIZER;

void ferry_set_log(ferry_log_cb cb, void *arg)
{
	pthread_mutex_lock(&log_set_lock);
	log_hook *old = atomic_load_explicit(&log_cur, memory_order_relaxed);
	log_hook *next = old == &log_slots[0] ? &log_slots[1] : &log_slots[0];
	*next = (log_hook){cb, arg};
	atomic_store_explicit(&log_cur, cb != NULL ? next : NULL, memory_order_release);
	pthread_mutex_unlock(&log_set_lock);
}

bool ferry__log_enabled(void)
{
	return atomic_load_explicit(&log_cur, memory_order_acquire) != NULL;
}

void ferry__log(int level, const char *fmt, ...)
{
	log_hook *h = atomic_load_explicit(&log_cur, memory_order_acquire);
	if (h == NULL)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	h->cb(h->arg, level, msg);
}
