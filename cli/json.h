/* json.h - a small JSON writer for --json output. */
#ifndef FERRY_CLI_JSON_H
#define FERRY_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct json {
	FILE *f;
	int depth;
	int first[32]; /* per depth: no member written yet */
} json;

void json_begin(json *j, FILE *f); /* opens the top-level object */
void json_end(json *j);            /* closes it, newline */
void json_key_obj(json *j, const char *key);
void json_key_arr(json *j, const char *key);
void json_obj(json *j); /* an object as an array element */
void json_close_obj(json *j);
void json_close_arr(json *j);
void json_str(json *j, const char *key, const char *v); /* NULL: null */
void json_strn(json *j, const char *key, const char *v, size_t n);
void json_u64(json *j, const char *key, uint64_t v);
void json_int(json *j, const char *key, long long v);
void json_num(json *j, const char *key, double v);
void json_bool(json *j, const char *key, int v);
/* A string value with JSON escapes; bytes that are not UTF-8 become
 * \u00XX (so a file name of Latin-1 bytes reads as Latin-1). */
void json_write_string(FILE *f, const char *s, size_t n);

#endif
