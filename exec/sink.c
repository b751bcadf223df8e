/* sink.c - a command's captured output: everything up to the cap, or its
 * head and tail within the cap with the middle counted (exec_int.h). */
#include "exec_int.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"

void ferry__ex_sink_init(sink *k, size_t cap)
{
	memset(k, 0, sizeof(*k));
	k->head.max = (size_t)-1;
	k->cap = cap;
	k->tail_cap = cap / 2;
}

void ferry__ex_sink_free(sink *k)
{
	ferry__buf_free(&k->head);
	ferry__free(k->ring);
	k->ring = NULL;
}

void ferry__ex_sink_put(sink *k, const void *data, size_t n)
{
	const uint8_t *p = data;
	k->total += n;
	if (k->error)
		return;
	if (!k->cap) {
		k->error = ferry__buf_put(&k->head, p, n);
		return;
	}
	size_t head_cap = k->cap - k->tail_cap;
	if (k->head.len < head_cap) {
		size_t take = head_cap - k->head.len;
		if (take > n)
			take = n;
		if ((k->error = ferry__buf_put(&k->head, p, take)))
			return;
		p += take;
		n -= take;
	}
	if (!n || !k->tail_cap)
		return;
	if (!k->ring && !(k->ring = ferry__malloc(k->tail_cap))) {
		k->error = FERRY_ENOMEM;
		return;
	}
	if (n >= k->tail_cap) {
		memcpy(k->ring, p + n - k->tail_cap, k->tail_cap);
		k->ring_start = 0;
		k->ring_len = k->tail_cap;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t at = (k->ring_start + k->ring_len) % k->tail_cap;
		k->ring[at] = p[i];
		if (k->ring_len < k->tail_cap)
			k->ring_len++;
		else
			k->ring_start = (k->ring_start + 1) % k->tail_cap;
	}
}

/* The kept bytes as one NUL-terminated allocation. */
int ferry__ex_sink_take(sink *k, char **out, size_t *len, int *truncated)
{
	size_t n = k->head.len + k->ring_len;
	char *p = ferry__malloc(n + 1);
	if (!p)
		return FERRY_ENOMEM;
	if (k->head.len)
		memcpy(p, k->head.data, k->head.len);
	for (size_t i = 0; i < k->ring_len; i++)
		p[k->head.len + i] =
		        (char)k->ring[(k->ring_start + i) % k->tail_cap];
	p[n] = '\0';
	*out = p;
	*len = n;
	if (k->total > n)
		*truncated = 1;
	return k->error;
}
