/* sftp_mem.h - a client transport on a scripted byte stream: recv hands
 * out `in` (chunk bytes at a time, 0: all), then EOF when eof is set, else
 * "would block"; what the client sends is kept in sent.  All static inline,
 * so that the fuzz targets, built alone, can use it as the tests do. */
#ifndef FERRY_TEST_SFTP_MEM_H
#define FERRY_TEST_SFTP_MEM_H

#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "sftp_int.h"

typedef struct fx_mem_tr {
	ferry__sftp_transport t;
	const uint8_t *in;
	size_t len, off, chunk;
	int eof;
	ferry_buf sent;
} fx_mem_tr;

static inline ssize_t fx_mem_send(ferry__sftp_transport *t, const void *p,
                                  size_t n)
{
	fx_mem_tr *m = (fx_mem_tr *)t;
	if (ferry__buf_put(&m->sent, p, n))
		return FERRY_ENOMEM;
	return (ssize_t)n;
}

static inline ssize_t fx_mem_recv(ferry__sftp_transport *t, void *p, size_t n)
{
	fx_mem_tr *m = (fx_mem_tr *)t;
	if (m->off < m->len) {
		size_t k = m->len - m->off;
		if (m->chunk && k > m->chunk)
			k = m->chunk;
		if (k > n)
			k = n;
		memcpy(p, m->in + m->off, k);
		m->off += k;
		return (ssize_t)k;
	}
	if (m->eof)
		return ferry__sftp_seterr(t->sf, FERRY_EEOF,
		                          "test stream: end of input");
	return 0;
}

static inline int fx_mem_run(ferry__sftp_transport *t, int (*done)(void *),
                             void *ctx, int64_t deadline)
{
	(void)deadline;
	for (;;) {
		if (done(ctx))
			return 0;
		if (!ferry__sftp_step(t->sf))
			return done(ctx) ? 0 : FERRY_ETIMEOUT;
	}
}

static inline void fx_mem_free(ferry__sftp_transport *t)
{
	fx_mem_tr *m = (fx_mem_tr *)t;
	ferry__buf_free(&m->sent);
	ferry__free(m);
}

/* A new transport (NULL when out of memory), for ferry__sftp_new. */
static inline fx_mem_tr *fx_mem_new(const void *in, size_t len, size_t chunk,
                                    int eof)
{
	fx_mem_tr *m = ferry__calloc(1, sizeof(*m));
	if (m)
		*m = (fx_mem_tr){.t = {.send = fx_mem_send,
		                       .recv = fx_mem_recv,
		                       .run = fx_mem_run,
		                       .free = fx_mem_free},
		                 .in = in,
		                 .len = len,
		                 .chunk = chunk,
		                 .eof = eof};
	return m;
}

#endif
