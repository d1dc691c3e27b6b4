/** @file
 * ferry error codes: 0 or a count on success, negative on failure.
 *
 * OS failures pass through as -errno. Library codes live in their own band
 * (FERRY_ERR_BASE and below) so they never collide with an errno value. One
 * X-macro generates the enum, ferry_strerror() and ferry_err_name(). */
#ifndef FERRY_ERR_H
#define FERRY_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a function exported from libferry.so (the rest is hidden). */
#if defined(__GNUC__)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

/** Library codes start here (errno values on Linux stay below 4096). */
#define FERRY_ERR_BASE 10000

/** Every library code: X(NAME, offset, description). The code is
 * FERRY_NAME = -(FERRY_ERR_BASE + offset). */
/* clang-format off */
#define FERRY_ERRORS(X)                                                        \
	X(ETIMEDOUT, 1, "the call's deadline passed")                          \
	X(EPEERDEAD, 2, "peer silent past the liveness interval, or its connection closed") \
	X(ERESTARTED, 3, "the server restarted while the call was in flight") \
	X(ECANCELED, 4, "the call was canceled")                               \
	X(ETOOBIG, 5, "message over the size cap")                             \
	X(EBADLOC, 6, "bad locator")                                           \
	X(EPROTO, 7, "malformed input")                                        \
	X(ESHUTDOWN, 8, "server draining")                                     \
	X(EAGAIN, 9, "a bounded queue is full")                                \
	X(ENOSPC, 10, "storage full")                                          \
	X(ENOHANDLER, 11, "no handler for this opcode on the server")          \
	X(EWOULDDEADLOCK, 12, "sync call from inside a handler or callback")   \
	X(EWRONGTHREAD, 13, "object used from a thread that does not own it") \
	X(EVERSION, 14, "peer speaks an incompatible wire version")
/* clang-format on */

/** The library codes (negative). ferry_strerror() describes each. */
enum ferry_err {
/** @cond FERRY_PRIVATE */
#define FERRY_ERR_ENUM_(name, off, desc) FERRY_##name = -(FERRY_ERR_BASE + (off)),
	/** @endcond */
	FERRY_ERRORS(FERRY_ERR_ENUM_)
#undef FERRY_ERR_ENUM_
};

/** Human-readable description of any code this library returns: a library
 * code, -errno, or 0. Returns a static string; never NULL, thread-safe. */
FERRY_API const char *ferry_strerror(int err);

/** Symbolic name ("FERRY_ETIMEDOUT", "ECONNREFUSED", "OK"); static string. */
FERRY_API const char *ferry_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
