/* sftp_latency.c - a transport around a transport that delays every byte
 * by a fixed time each way: a simulated round trip for the SFTP client's
 * tests (ferry__sftp_opts.wrap).  The engine knows nothing of it; it only
 * asks the transport when to step again (next_timer). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "sftp_int.h"
#include "sftp_test.h"

typedef struct chunk {
	struct chunk *next;
	int64_t due;
	size_t len, off;
	uint8_t data[];
} chunk;

typedef struct {
	chunk *head, *tail;
	size_t bytes;
} lane;

typedef struct lat_tr {
	ferry__sftp_transport t;
	ferry__sftp_transport *inner;
	int ms;
	lane out, in;
	int in_error; /* the inner transport's, once what it sent is out */
} lat_tr;

/* Bytes held now go at this time: the clock counts whole milliseconds,
 * truncated, so one more keeps every delay at least ms long. */
static int64_t due(const lat_tr *l)
{
	return ferry__sftp__now() + l->ms + 1;
}

static int lane_add(lane *q, const void *p, size_t n, int64_t when)
{
	chunk *c = ferry__malloc(sizeof(*c) + n);
	if (!c)
		return FERRY_ENOMEM;
	memcpy(c->data, p, n);
	c->next = NULL;
	c->due = when;
	c->len = n;
	c->off = 0;
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	q->bytes += n;
	return 0;
}

static void lane_pop(lane *q)
{
	chunk *c = q->head;
	q->head = c->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= c->len;
	ferry__free(c);
}

static void sync_inner(lat_tr *l)
{
	l->inner->sf = l->t.sf;
}

/* What fell due goes to the inner transport: 0, or its error. */
static int flush_out(lat_tr *l)
{
	int64_t now = ferry__sftp__now();
	while (l->out.head && l->out.head->due <= now) {
		chunk *c = l->out.head;
		ssize_t w = l->inner->send(l->inner, c->data + c->off,
		                           c->len - c->off);
		if (w < 0)
			return (int)w;
		if (w == 0)
			break;
		c->off += (size_t)w;
		if (c->off == c->len)
			lane_pop(&l->out);
	}
	return 0;
}

static ssize_t lat_send(ferry__sftp_transport *t, const void *p, size_t n)
{
	lat_tr *l = (lat_tr *)t;
	sync_inner(l);
	if (lane_add(&l->out, p, n, due(l)))
		return FERRY_ENOMEM;
	int rc = flush_out(l);
	return rc < 0 ? rc : (ssize_t)n;
}

/* Read what the inner transport has, held back; never more than the
 * client could have asked for. */
static int pull_in(lat_tr *l)
{
	uint8_t buf[65536];
	ferry__sftp *sf = l->t.sf;
	while (!l->in_error) {
		ssize_t k = l->inner->recv(l->inner, buf, sizeof(buf));
		if (k == 0)
			break;
		if (k < 0) {
			l->in_error = (int)k;
			break;
		}
		if (l->in.bytes + (size_t)k >
		    2 * sf->window + FERRY__SFTP_MAX_IN_PACKET)
			return ferry__sftp_seterr(sf, FERRY_EPROTO,
			                          "SFTP: the server sent more "
			                          "than was asked for");
		if (lane_add(&l->in, buf, (size_t)k, due(l)))
			return FERRY_ENOMEM;
	}
	return 0;
}

static ssize_t lat_recv(ferry__sftp_transport *t, void *p, size_t n)
{
	lat_tr *l = (lat_tr *)t;
	sync_inner(l);
	int rc = flush_out(l);
	if (!rc)
		rc = pull_in(l);
	if (rc)
		return rc;
	size_t got = 0;
	int64_t now = ferry__sftp__now();
	while (got < n && l->in.head && l->in.head->due <= now) {
		chunk *c = l->in.head;
		size_t k =
		        c->len - c->off < n - got ? c->len - c->off : n - got;
		memcpy((uint8_t *)p + got, c->data + c->off, k);
		c->off += k;
		got += k;
		if (c->off == c->len)
			lane_pop(&l->in);
	}
	if (!got && !l->in.head && l->in_error)
		return l->in_error;
	return (ssize_t)got;
}

static int lat_run(ferry__sftp_transport *t, int (*done)(void *ctx), void *ctx,
                   int64_t deadline_ms)
{
	lat_tr *l = (lat_tr *)t;
	sync_inner(l);
	return l->inner->run(l->inner, done, ctx, deadline_ms);
}

static int64_t lat_next_timer(ferry__sftp_transport *t)
{
	lat_tr *l = (lat_tr *)t;
	int64_t w = l->out.head ? l->out.head->due : 0;
	if (l->in.head && (!w || l->in.head->due < w))
		w = l->in.head->due;
	return w;
}

static void lat_free(ferry__sftp_transport *t)
{
	lat_tr *l = (lat_tr *)t;
	while (l->out.head)
		lane_pop(&l->out);
	while (l->in.head)
		lane_pop(&l->in);
	l->inner->free(l->inner);
	ferry__free(l);
}

static ferry__sftp_transport *wrap(ferry__sftp_transport *inner, void *ctx)
{
	lat_tr *l = ferry__calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->inner = inner;
	l->ms = (int)(intptr_t)ctx;
	l->t.send = lat_send;
	l->t.recv = lat_recv;
	l->t.run = lat_run;
	l->t.free = lat_free;
	l->t.next_timer = lat_next_timer;
	l->t.session = inner->session;
	return &l->t;
}

void fx_sftp_latency(ferry__sftp_opts *o, int ms)
{
	o->wrap = ms > 0 ? wrap : NULL;
	o->wrap_ctx = (void *)(intptr_t)ms;
}
