/* pmap.h - a small open-addressing map from byte strings (not owned: they
 * must outlive the map) to indices, for the push's path lookups. */
#ifndef FERRY_SYNC_PMAP_H
#define FERRY_SYNC_PMAP_H

#include <stddef.h>
#include <stdint.h>

#define FERRY__PMAP_NONE SIZE_MAX

typedef struct ferry__pmap_slot {
	const char *p;
	size_t n, v;
} ferry__pmap_slot;

typedef struct ferry__pmap {
	ferry__pmap_slot *s;
	size_t mask, count;
} ferry__pmap;

/* Set p (n bytes) to v.  0 or FERRY_ENOMEM. */
int ferry__pmap_put(ferry__pmap *m, const char *p, size_t n, size_t v);
/* The index of p, or FERRY__PMAP_NONE. */
size_t ferry__pmap_get(const ferry__pmap *m, const char *p, size_t n);
void ferry__pmap_free(ferry__pmap *m);

#endif
