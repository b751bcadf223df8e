#include "alloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static atomic_ulong alloc_count;
static atomic_ulong alloc_fail_at; /* absolute count that fails; 0 = never */

void ferry__alloc_fail_at(unsigned long n)
{
	atomic_store(&alloc_fail_at, n ? atomic_load(&alloc_count) + n : 0);
}

unsigned long ferry__alloc_count(void)
{
	return atomic_load(&alloc_count);
}

void ferry__alloc_release(void)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

static int should_fail(void)
{
	unsigned long c = atomic_fetch_add(&alloc_count, 1) + 1;
	unsigned long f = atomic_load(&alloc_fail_at);
	if (f && c == f) {
		errno = ENOMEM;
		return 1;
	}
	return 0;
}

void *ferry__malloc(size_t n)
{
	if (should_fail())
		return NULL;
	return malloc(n ? n : 1);
}

void *ferry__calloc(size_t nmemb, size_t size)
{
	if (should_fail())
		return NULL;
	return calloc(nmemb ? nmemb : 1, size ? size : 1);
}

void *ferry__realloc(void *p, size_t n)
{
	if (should_fail())
		return NULL;
	return realloc(p, n ? n : 1);
}

void *ferry__reallocarray(void *p, size_t nmemb, size_t size)
{
	if (size && nmemb > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	return ferry__realloc(p, nmemb * size);
}

void *ferry__memdup(const void *p, size_t n)
{
	void *q = ferry__malloc(n);
	if (q && n)
		memcpy(q, p, n);
	return q;
}

char *ferry__strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *q = ferry__malloc(len + 1);
	if (!q)
		return NULL;
	memcpy(q, s, len);
	q[len] = '\0';
	return q;
}

char *ferry__strdup(const char *s)
{
	return ferry__strndup(s, SIZE_MAX);
}

void ferry__free(void *p)
{
	free(p);
}

void ferry__free_secret(void *p, size_t n)
{
	if (!p)
		return;
	explicit_bzero(p, n ? n : strlen(p));
	free(p);
}

char *ferry__asprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *s = ferry__malloc((size_t)n + 1);
	if (!s)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}
