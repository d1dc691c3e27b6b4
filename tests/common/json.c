/* Test JSON helpers over json-c (see json.h). */
#include <ctype.h>
#include <limits.h>

#include "json.h"

json_object *tu_json_parse(const char *text, size_t len, size_t *err)
{
	if (len > INT_MAX) {
		if (err != NULL)
			*err = 0;
		return NULL;
	}
	json_tokener *tok = json_tokener_new();
	if (tok == NULL) {
		if (err != NULL)
			*err = 0;
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	json_object *j = json_tokener_parse_ex(tok, text, (int)len);
	size_t end = json_tokener_get_parse_end(tok);
	/* a bare number has no end of its own: a NUL says the input ended */
	if (j == NULL && json_tokener_get_error(tok) == json_tokener_continue) {
		j = json_tokener_parse_ex(tok, "", 1);
		end = len;
	}
	/* strict mode refuses anything but whitespace after the value, yet
	 * stops quietly at a NUL: the rest must be whitespace */
	while (j != NULL && end < len && isspace((unsigned char)text[end]))
		end++;
	if (j != NULL && end != len) {
		json_object_put(j);
		j = NULL;
	}
	if (j == NULL && err != NULL)
		*err = end;
	json_tokener_free(tok);
	return j;
}

int tu_json_counter(json_object *dump, const char *name, uint64_t *out)
{
	json_object *counters, *v;
	if (!json_object_object_get_ex(dump, "counters", &counters) ||
	    !json_object_object_get_ex(counters, name, &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return -1;
	*out = json_object_get_uint64(v);
	return 0;
}
