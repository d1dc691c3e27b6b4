/* jsonq FILE KEY: the shell scripts' JSON reader (json-c), for ib_vm.sh and
 * the bench-smoke tests. FILE holds JSON values one after another (JSON
 * lines, or one document); an array stands for its elements. For each
 * object, its member KEY is printed on a line of its own, strings bare,
 * other values as JSON. Exit status 1 when FILE does not parse, holds no
 * object, or an object has no KEY; 2 on bad usage. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* Print v's member key. 0, or -1 when v is no object or has no key. */
static int jsonq_print(json_object *v, const char *key)
{
	json_object *m;
	if (!json_object_object_get_ex(v, key, &m))
		return -1;
	if (json_object_is_type(m, json_type_string))
		puts(json_object_get_string(m));
	else
		puts(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
	return 0;
}

/* Every value in text: the count of objects printed, or -1. */
static int jsonq_each(const char *text, size_t len, const char *key)
{
	json_tokener *tok = json_tokener_new();
	if (tok == NULL)
		return -1;
	json_tokener_set_flags(tok,
	                       JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	size_t at = 0;
	int n = 0;
	while (n >= 0) {
		while (at < len && text[at] != '\0' &&
		       strchr(" \t\r\n", text[at]) != NULL)
			at++;
		if (at == len)
			break;
		json_tokener_reset(tok);
		/* the NUL after the text ends a bare number */
		json_object *v =
		        json_tokener_parse_ex(tok, text + at, (int)(len - at + 1));
		if (v == NULL) {
			fprintf(stderr, "jsonq: byte %zu: %s\n",
			        at + json_tokener_get_parse_end(tok),
			        json_tokener_error_desc(json_tokener_get_error(tok)));
			n = -1;
			break;
		}
		at += json_tokener_get_parse_end(tok);
		size_t k = json_object_is_type(v, json_type_array)
		                   ? json_object_array_length(v)
		                   : 1;
		for (size_t i = 0; i < k && n >= 0; i++) {
			json_object *o = json_object_is_type(v, json_type_array)
			                         ? json_object_array_get_idx(v, i)
			                         : v;
			if (jsonq_print(o, key) != 0) {
				fprintf(stderr, "jsonq: a value without \"%s\"\n", key);
				n = -1;
			} else {
				n++;
			}
		}
		json_object_put(v);
	}
	json_tokener_free(tok);
	return n;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: jsonq FILE|- KEY\n");
		return 2;
	}
	/* "-": standard input (the Soft-RoCE VM has no /dev/stdin). */
	bool in = strcmp(argv[1], "-") == 0;
	FILE *f = in ? stdin : fopen(argv[1], "r");
	if (f == NULL) {
		perror(argv[1]);
		return 1;
	}
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	char buf[65536];
	size_t got;
	while (m != NULL && (got = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, got, m);
	if (!in)
		fclose(f);
	if (m == NULL || fclose(m) != 0 || len > (size_t)1 << 30) {
		fprintf(stderr, "jsonq: %s: cannot read\n", argv[1]);
		free(text);
		return 1;
	}
	int n = jsonq_each(text, len, argv[2]);
	free(text);
	if (n == 0)
		fprintf(stderr, "jsonq: %s: no JSON value\n", argv[1]);
	return n > 0 ? 0 : 1;
}
