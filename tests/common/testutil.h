/* Helpers shared by the test programs: patterns, capability checks, and
 * starting a server in a child process. */
#ifndef FERRY_TESTUTIL_H
#define FERRY_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry/driver.h"
#include "ferry/ferry.h"

/* Opcodes the test server answers. */
#define TEST_OP_ECHO  100 /* response = request */
#define TEST_OP_SIZED 101 /* request: u32 size, u64 seed; response: pattern */
#define TEST_OP_SLOW  102 /* request: u32 microseconds; replies later from a thread */
#define TEST_OP_ONCE  103 /* echo; request starts with a u32 id counted per id */
/* Response: u32 ids run exactly once, u32 ids run more, u64 executions of TEST_OP_ONCE in
 * all */
#define TEST_OP_ONCE_REPORT 104
/* Request: u64 offset, u64 len, path; response: that file region
 * (ferry_buf_append_file). */
#define TEST_OP_FILE 105
/* Request: u32 first id, u32 count; response: one byte per id, its executions (saturating
 * at 255) */
#define TEST_OP_ONCE_RUNS 106
#define TEST_ONCE_IDS     (1u << 17) /* ids TEST_OP_ONCE counts (more are only totalled) */
#define TEST_FILE_FDS_MAX 32         /* files TEST_OP_FILE keeps open (until exit) */

/* Deterministic bytes: byte i of pattern (seed) — distinct per seed. */
void tu_fill(uint8_t *p, size_t n, uint64_t seed);
/* Bytes off .. off + n - 1 of the same pattern (for checking a buffer piece
 * by piece). */
void tu_fill_at(uint8_t *p, size_t off, size_t n, uint64_t seed);
/* Check buf against tu_fill(seed); returns the first bad offset or -1. */
long tu_check(ferry_buf *b, size_t n, uint64_t seed);

/* Exit 77 (skip) with a reason unless FERRY_REQUIRE names cap ("netns",
 * "tshark", ...), in which case exit 1: a required capability is missing. */
void tu_skip_or_fail(const char *cap, const char *why) __attribute__((noreturn));

/* Start `exe locator mode` in a child; read the locator it bound from its
 * stdout into out. Returns the child's pid or -1. */
pid_t tu_spawn_server(const char *exe, const char *locator, const char *mode, char *out,
                      size_t out_len);
/* The same for any command line (argv[0] is run as given, e.g. a wrapper
 * such as strace in front of the server). */
pid_t tu_spawn_argv(char *const argv[], char *out, size_t out_len);
/* SIGTERM the child and reap it; returns its exit status (0 = clean). */
int tu_stop_server(pid_t pid);

/* A driver-specific counter of ep (FERRY_CTL_COUNTERS, either driver
 * kind): true and *out when the driver reports name. */
bool tu_driver_counter(ferry_ep *ep, const char *name, uint64_t *out);

/* Install handlers for the test opcodes on srv. */
void tu_server_handlers(ferry_server *srv);

#endif
