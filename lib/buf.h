/* buf.h - growable byte buffer with bounds-checked SSH wire types
 * (RFC 4251: uint8, uint32, uint64 big-endian, string = uint32 length + bytes).
 */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct ferry_buf {
	uint8_t *data;
	size_t off; /* read position */
	size_t len; /* end of valid data */
	size_t cap; /* allocated; 0 for a read-only view */
	size_t max; /* growth limit; 0: 256 MiB */
	/* The first writer's failure, kept until a reset: every later writer
	 * returns it and writes nothing, so a text built by many writes is
	 * checked once, at the end. */
	int error;
} ferry_buf;

#define FERRY_BUF_INIT                                                         \
	{                                                                      \
		0                                                              \
	}

void ferry__buf_init(ferry_buf *b);
/* A read-only view of existing bytes (never freed, never grown). */
void ferry__buf_view(ferry_buf *b, const void *data, size_t len);
void ferry__buf_free(ferry_buf *b);
/* Record error as the buffer's failure unless one is kept already;
 * returns the kept one. */
int ferry__buf_fail(ferry_buf *b, int error);
/* Empty, and clear the sticky error. */
void ferry__buf_reset(ferry_buf *b);
/* Drop consumed bytes [0, off). */
void ferry__buf_compact(ferry_buf *b);
size_t ferry__buf_avail(const ferry_buf *b);       /* unread bytes */
const uint8_t *ferry__buf_ptr(const ferry_buf *b); /* first unread byte */

/* Writers: 0 or FERRY_ENOMEM (or FERRY_EINVALID past the limit). */
int ferry__buf_reserve(ferry_buf *b, size_t n, uint8_t **out);
int ferry__buf_put(ferry_buf *b, const void *p, size_t n);
int ferry__buf_put_u8(ferry_buf *b, uint8_t v);
int ferry__buf_put_u32(ferry_buf *b, uint32_t v);
int ferry__buf_put_u64(ferry_buf *b, uint64_t v);
int ferry__buf_put_string(ferry_buf *b, const void *p, size_t n);
int ferry__buf_put_cstring(ferry_buf *b, const char *s);
/* Text: appends fmt, where %s is a string as it is, %.*s (int, string)
 * its first bytes, %q a string quoted for a POSIX shell ('it'\''s'),
 * %zu a size_t, %ld a long and %% a '%'.  Returns the sticky error. */
int ferry__buf_fmt(ferry_buf *b, const char *fmt, ...);
/* A NUL after the data that len does not count (a C string). */
int ferry__buf_terminate(ferry_buf *b);
/* Overwrite a u32 already written at absolute offset pos. */
void ferry__buf_poke_u32(ferry_buf *b, size_t pos, uint32_t v);

/* Readers: 0, or FERRY_EPROTO when the data is short (nothing consumed). */
int ferry__buf_get_u8(ferry_buf *b, uint8_t *v);
int ferry__buf_get_u32(ferry_buf *b, uint32_t *v);
int ferry__buf_get_u64(ferry_buf *b, uint64_t *v);
int ferry__buf_get_bytes(ferry_buf *b, void *out, size_t n);
int ferry__buf_skip(ferry_buf *b, size_t n);
/* A string without copy: *p points into the buffer, valid until it changes. */
int ferry__buf_get_string_ptr(ferry_buf *b, const uint8_t **p, size_t *n);
/* A string copied into a new NUL-terminated allocation; FERRY_EPROTO also
 * when it holds a NUL byte.  Caller frees with ferry__free. */
int ferry__buf_get_cstring(ferry_buf *b, char **out, size_t *n);

uint32_t ferry__peek_u32(const uint8_t *p);
void ferry__poke_u32(uint8_t *p, uint32_t v);

#endif
