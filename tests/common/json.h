/* JSON for tests, read with json-c: a strict parse of a whole document, and
 * the counter lookup the tests repeat on metric dumps. What the parse
 * returns is released with json_object_put. */
#ifndef FERRY_TEST_JSON_H
#define FERRY_TEST_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/* Parse len bytes of text (no terminating NUL needed) as one JSON document:
 * json-c's strict mode, whole input (trailing whitespace allowed). Returns
 * new, or NULL with the byte offset where parsing stopped in *err (err may
 * be NULL). */
json_object *tu_json_parse(const char *text, size_t len, size_t *err);

/* Counter name of a metrics dump ({"counters": {name: integer}}), borrowed.
 * 0 with *out set, or -1 when it is missing or not a non-negative integer. */
int tu_json_counter(json_object *dump, const char *name, uint64_t *out);

#endif
