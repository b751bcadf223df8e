#include "json.h"

#include <string.h>

static void sep(json *j)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = 0;
}

static void key(json *j, const char *k)
{
	sep(j);
	if (k) {
		json_write_string(j->f, k, strlen(k));
		fputc(':', j->f);
	}
}

static void open_(json *j, const char *k, char c)
{
	key(j, k);
	fputc(c, j->f);
	if (j->depth + 1 < (int)(sizeof(j->first) / sizeof(j->first[0])))
		j->depth++;
	j->first[j->depth] = 1;
}

static void close_(json *j, char c)
{
	fputc(c, j->f);
	if (j->depth > 0)
		j->depth--;
}

void json_begin(json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->first[0] = 1;
	open_(j, NULL, '{');
}

void json_end(json *j)
{
	close_(j, '}');
	fputc('\n', j->f);
	fflush(j->f);
}

void json_key_obj(json *j, const char *k)
{
	open_(j, k, '{');
}

void json_key_arr(json *j, const char *k)
{
	open_(j, k, '[');
}

void json_obj(json *j)
{
	open_(j, NULL, '{');
}

void json_close_obj(json *j)
{
	close_(j, '}');
}

void json_close_arr(json *j)
{
	close_(j, ']');
}

/* Length of a valid UTF-8 sequence at p (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		len = 2;
		min = 0x80;
		c &= 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		min = 0x800;
		c &= 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4;
		min = 0x10000;
		c &= 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return len;
}

void json_write_string(FILE *f, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	fputc('"', f);
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c == '\n') {
			fputs("\\n", f);
			i++;
		} else if (c == '\t') {
			fputs("\\t", f);
			i++;
		} else if (c == '\r') {
			fputs("\\r", f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else {
			size_t l = utf8_len(p + i, n - i);
			if (l == 0) {
				fprintf(f, "\\u%04x", c);
				i++;
			} else {
				fwrite(p + i, 1, l, f);
				i += l;
			}
		}
	}
	fputc('"', f);
}

void json_strn(json *j, const char *k, const char *v, size_t n)
{
	key(j, k);
	if (v)
		json_write_string(j->f, v, n);
	else
		fputs("null", j->f);
}

void json_str(json *j, const char *k, const char *v)
{
	json_strn(j, k, v, v ? strlen(v) : 0);
}

void json_u64(json *j, const char *k, uint64_t v)
{
	key(j, k);
	fprintf(j->f, "%llu", (unsigned long long)v);
}

void json_int(json *j, const char *k, long long v)
{
	key(j, k);
	fprintf(j->f, "%lld", v);
}

void json_num(json *j, const char *k, double v)
{
	key(j, k);
	fprintf(j->f, "%.3f", v);
}

void json_bool(json *j, const char *k, int v)
{
	key(j, k);
	fputs(v ? "true" : "false", j->f);
}
