#include "sync/arena.h"

#include <stdint.h>
#include <string.h>

#include "alloc.h"

#define ARENA_BLOCK ((size_t)64 << 10)

struct ferry__arena_block {
	ferry__arena_block *next;
	size_t pad; /* keeps data 16-aligned */
	unsigned char data[];
};

void ferry__arena_init(ferry__arena *a)
{
	memset(a, 0, sizeof(*a));
}

void *ferry__arena_alloc(ferry__arena *a, size_t n, size_t align)
{
	size_t off = a->head ? (a->used + align - 1) & ~(align - 1) : 0;
	if (!a->head || off > a->cap || a->cap - off < n) {
		/* Large requests get a block of their own, placed behind the
		 * current one so its free space is not wasted. */
		size_t size = n > ARENA_BLOCK / 4 ? n : ARENA_BLOCK;
		if (size > SIZE_MAX - sizeof(ferry__arena_block))
			return NULL;
		ferry__arena_block *b =
		        ferry__malloc(sizeof(ferry__arena_block) + size);
		if (!b)
			return NULL;
		a->bytes += sizeof(ferry__arena_block) + size;
		if (size != ARENA_BLOCK && a->head) {
			b->next = a->head->next;
			a->head->next = b;
			return b->data;
		}
		b->next = a->head;
		a->head = b;
		a->cap = size;
		a->used = n;
		return b->data;
	}
	a->used = off + n;
	return a->head->data + off;
}

char *ferry__arena_strndup(ferry__arena *a, const char *s, size_t n)
{
	if (n == SIZE_MAX)
		return NULL;
	char *p = ferry__arena_alloc(a, n + 1, 1);
	if (!p)
		return NULL;
	if (n)
		memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void ferry__arena_free(ferry__arena *a)
{
	ferry__arena_block *b = a->head;
	while (b) {
		ferry__arena_block *next = b->next;
		ferry__free(b);
		b = next;
	}
	memset(a, 0, sizeof(*a));
}
