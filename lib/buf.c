#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "ferry.h"

#define BUF_DEFAULT_MAX ((size_t)256 << 20)

uint32_t ferry__peek_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void ferry__poke_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void ferry__buf_init(ferry_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void ferry__buf_view(ferry_buf *b, const void *data, size_t len)
{
	memset(b, 0, sizeof(*b));
	/* A view is never written or freed: cap stays 0. */
	b->data = (uint8_t *)(uintptr_t)data;
	b->len = len;
}

void ferry__buf_free(ferry_buf *b)
{
	if (b->cap)
		ferry__free(b->data);
	memset(b, 0, sizeof(*b));
}

void ferry__buf_reset(ferry_buf *b)
{
	b->off = b->len = 0;
	b->error = 0;
}

void ferry__buf_compact(ferry_buf *b)
{
	if (!b->off)
		return;
	if (b->off < b->len && b->cap)
		memmove(b->data, b->data + b->off, b->len - b->off);
	b->len -= b->off;
	b->off = 0;
}

size_t ferry__buf_avail(const ferry_buf *b)
{
	return b->len - b->off;
}

const uint8_t *ferry__buf_ptr(const ferry_buf *b)
{
	return b->data ? b->data + b->off : (const uint8_t *)"";
}

int ferry__buf_fail(ferry_buf *b, int error)
{
	if (!b->error)
		b->error = error;
	return b->error;
}

int ferry__buf_reserve(ferry_buf *b, size_t n, uint8_t **out)
{
	size_t max = b->max ? b->max : BUF_DEFAULT_MAX;
	if (b->error)
		return b->error;
	if (b->data && !b->cap)
		return ferry__buf_fail(b, FERRY_EINVALID); /* a view */
	if (n > max || b->len > max - n)
		return ferry__buf_fail(b, FERRY_EINVALID);
	if (b->len + n > b->cap) {
		if (b->off && b->off >= b->cap / 2) {
			ferry__buf_compact(b);
			if (b->len + n <= b->cap)
				goto done;
		}
		size_t ncap = b->cap ? b->cap : 256;
		while (ncap < b->len + n)
			ncap = ncap > max / 2 ? max : ncap * 2;
		uint8_t *nd = ferry__realloc(b->data, ncap);
		if (!nd)
			return ferry__buf_fail(b, FERRY_ENOMEM);
		b->data = nd;
		b->cap = ncap;
	}
done:
	*out = b->data + b->len;
	b->len += n;
	return 0;
}

int ferry__buf_put(ferry_buf *b, const void *p, size_t n)
{
	uint8_t *d;
	int error = ferry__buf_reserve(b, n, &d);
	if (!error && n)
		memcpy(d, p, n);
	return error;
}

int ferry__buf_put_u8(ferry_buf *b, uint8_t v)
{
	return ferry__buf_put(b, &v, 1);
}

int ferry__buf_put_u32(ferry_buf *b, uint32_t v)
{
	uint8_t d[4];
	ferry__poke_u32(d, v);
	return ferry__buf_put(b, d, 4);
}

int ferry__buf_put_u64(ferry_buf *b, uint64_t v)
{
	uint8_t d[8];
	ferry__poke_u32(d, (uint32_t)(v >> 32));
	ferry__poke_u32(d + 4, (uint32_t)v);
	return ferry__buf_put(b, d, 8);
}

int ferry__buf_put_string(ferry_buf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX)
		return ferry__buf_fail(b, FERRY_EINVALID);
	int error = ferry__buf_put_u32(b, (uint32_t)n);
	if (!error)
		error = ferry__buf_put(b, p, n);
	return error;
}

int ferry__buf_put_cstring(ferry_buf *b, const char *s)
{
	return ferry__buf_put_string(b, s, strlen(s));
}

static void put_quoted(ferry_buf *b, const char *s)
{
	ferry__buf_put_u8(b, '\'');
	for (;;) {
		size_t n = strcspn(s, "'");
		ferry__buf_put(b, s, n);
		s += n;
		if (!*s)
			break;
		ferry__buf_put(b, "'\\''", 4);
		s++;
	}
	ferry__buf_put_u8(b, '\'');
}

int ferry__buf_fmt(ferry_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	while (*fmt) {
		size_t n = strcspn(fmt, "%");
		ferry__buf_put(b, fmt, n);
		fmt += n;
		if (!*fmt)
			break;
		char num[24];
		if (!strncmp(fmt, "%s", 2)) {
			const char *s = va_arg(ap, const char *);
			ferry__buf_put(b, s, strlen(s));
		} else if (!strncmp(fmt, "%.*s", 4)) {
			int k = va_arg(ap, int);
			const char *s = va_arg(ap, const char *);
			if (k < 0) {
				ferry__buf_fail(b, FERRY_EINVALID);
				break;
			}
			ferry__buf_put(b, s, (size_t)k);
			fmt += 2;
		} else if (!strncmp(fmt, "%q", 2)) {
			put_quoted(b, va_arg(ap, const char *));
		} else if (!strncmp(fmt, "%zu", 3)) {
			snprintf(num, sizeof(num), "%zu", va_arg(ap, size_t));
			ferry__buf_put(b, num, strlen(num));
			fmt++;
		} else if (!strncmp(fmt, "%ld", 3)) {
			snprintf(num, sizeof(num), "%ld", va_arg(ap, long));
			ferry__buf_put(b, num, strlen(num));
			fmt++;
		} else if (!strncmp(fmt, "%%", 2)) {
			ferry__buf_put_u8(b, '%');
		} else {
			ferry__buf_fail(b, FERRY_EINVALID); /* a format this
			                                       does not know */
			break;
		}
		fmt += 2;
	}
	va_end(ap);
	return b->error;
}

int ferry__buf_terminate(ferry_buf *b)
{
	int error = ferry__buf_put_u8(b, 0);
	if (!error)
		b->len--;
	return error;
}

void ferry__buf_poke_u32(ferry_buf *b, size_t pos, uint32_t v)
{
	if (pos <= b->len && b->len - pos >= 4)
		ferry__poke_u32(b->data + pos, v);
}

int ferry__buf_get_bytes(ferry_buf *b, void *out, size_t n)
{
	if (ferry__buf_avail(b) < n)
		return FERRY_EPROTO;
	if (n)
		memcpy(out, b->data + b->off, n);
	b->off += n;
	return 0;
}

int ferry__buf_skip(ferry_buf *b, size_t n)
{
	if (ferry__buf_avail(b) < n)
		return FERRY_EPROTO;
	b->off += n;
	return 0;
}

int ferry__buf_get_u8(ferry_buf *b, uint8_t *v)
{
	return ferry__buf_get_bytes(b, v, 1);
}

int ferry__buf_get_u32(ferry_buf *b, uint32_t *v)
{
	if (ferry__buf_avail(b) < 4)
		return FERRY_EPROTO;
	*v = ferry__peek_u32(b->data + b->off);
	b->off += 4;
	return 0;
}

int ferry__buf_get_u64(ferry_buf *b, uint64_t *v)
{
	if (ferry__buf_avail(b) < 8)
		return FERRY_EPROTO;
	*v = (uint64_t)ferry__peek_u32(b->data + b->off) << 32 |
	     ferry__peek_u32(b->data + b->off + 4);
	b->off += 8;
	return 0;
}

int ferry__buf_get_string_ptr(ferry_buf *b, const uint8_t **p, size_t *n)
{
	size_t avail = ferry__buf_avail(b);
	if (avail < 4)
		return FERRY_EPROTO;
	uint32_t len = ferry__peek_u32(b->data + b->off);
	if (len > avail - 4)
		return FERRY_EPROTO;
	*p = b->data + b->off + 4;
	*n = len;
	b->off += 4 + (size_t)len;
	return 0;
}

int ferry__buf_get_cstring(ferry_buf *b, char **out, size_t *n)
{
	const uint8_t *p;
	size_t len;
	size_t save = b->off;
	int error = ferry__buf_get_string_ptr(b, &p, &len);
	if (error)
		return error;
	if (memchr(p, 0, len)) {
		b->off = save;
		return FERRY_EPROTO;
	}
	char *s = ferry__malloc(len + 1);
	if (!s) {
		b->off = save;
		return FERRY_ENOMEM;
	}
	memcpy(s, p, len);
	s[len] = '\0';
	*out = s;
	if (n)
		*n = len;
	return 0;
}
