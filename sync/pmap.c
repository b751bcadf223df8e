#include "sync/pmap.h"

#include <string.h>

#include "alloc.h"
#include "ferry.h"
#include "hash.h"

int ferry__pmap_put(ferry__pmap *m, const char *p, size_t n, size_t v)
{
	if ((m->count + 1) * 2 > (m->s ? m->mask + 1 : 0)) {
		size_t size = m->s ? (m->mask + 1) * 2 : 64;
		ferry__pmap_slot *ns = ferry__calloc(size, sizeof(*ns));
		if (!ns)
			return FERRY_ENOMEM;
		for (size_t i = 0; m->s && i <= m->mask; i++) {
			if (!m->s[i].p)
				continue;
			size_t h = (size_t)ferry__hash64(m->s[i].p, m->s[i].n);
			while (ns[h & (size - 1)].p)
				h++;
			ns[h & (size - 1)] = m->s[i];
		}
		ferry__free(m->s);
		m->s = ns;
		m->mask = size - 1;
	}
	size_t h = (size_t)ferry__hash64(p, n);
	for (;; h++) {
		ferry__pmap_slot *x = &m->s[h & m->mask];
		if (!x->p) {
			x->p = p;
			x->n = n;
			x->v = v;
			m->count++;
			return 0;
		}
		if (x->n == n && memcmp(x->p, p, n) == 0) {
			x->v = v;
			return 0;
		}
	}
}

size_t ferry__pmap_get(const ferry__pmap *m, const char *p, size_t n)
{
	if (!m->s)
		return FERRY__PMAP_NONE;
	size_t h = (size_t)ferry__hash64(p, n);
	for (;; h++) {
		const ferry__pmap_slot *x = &m->s[h & m->mask];
		if (!x->p)
			return FERRY__PMAP_NONE;
		if (x->n == n && memcmp(x->p, p, n) == 0)
			return x->v;
	}
}

void ferry__pmap_free(ferry__pmap *m)
{
	ferry__free(m->s);
	memset(m, 0, sizeof(*m));
}
