/* arena.h - bump allocator for many small strings and records that live
 * and die together (paths of a scan, a plan or a manifest).  Blocks are
 * chained, so pointers stay valid until ferry__arena_free. */
#ifndef FERRY_SYNC_ARENA_H
#define FERRY_SYNC_ARENA_H

#include <stddef.h>

typedef struct ferry__arena_block ferry__arena_block;

typedef struct ferry__arena {
	ferry__arena_block *head; /* current block (newest first) */
	size_t used, cap;         /* in the current block */
	size_t bytes;             /* total allocated from the system */
} ferry__arena;

#define FERRY__ARENA_INIT                                                      \
	{                                                                      \
		0                                                              \
	}

void ferry__arena_init(ferry__arena *a);
/* n bytes aligned to align (a power of two <= 16); NULL on failure. */
void *ferry__arena_alloc(ferry__arena *a, size_t n, size_t align);
/* A NUL-terminated copy of n bytes (which may hold any byte but NUL). */
char *ferry__arena_strndup(ferry__arena *a, const char *s, size_t n);
void ferry__arena_free(ferry__arena *a);

#endif
