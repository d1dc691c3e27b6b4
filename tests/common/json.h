/* A small JSON parser for tests: parses a whole document into a tree of
 * nodes (objects, arrays, strings, numbers, true/false/null). Enough to check
 * dumps against their documented schema. */
#ifndef FERRY_TEST_JSON_H
#define FERRY_TEST_JSON_H

#include <stddef.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

typedef struct json {
	enum json_type type;
	double num;        /* JSON_NUM, JSON_BOOL */
	char *str;         /* JSON_STR; member name for children of objects */
	char *key;
	struct json **kids;
	size_t n;
} json;

/* Parse text (len bytes); NULL on a syntax error (err gets the offset). */
json *json_parse(const char *text, size_t len, size_t *err);
void json_free(json *j);
/* Member of an object by name, or NULL. */
const json *json_get(const json *obj, const char *key);

#endif
