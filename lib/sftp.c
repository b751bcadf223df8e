/* sftp.c - the pipelined SFTP client: queue, window, ids, dispatch,
 * generations, and the asynchronous requests.  See sftp.h. */
#include "sftp.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "session.h"
#include "sftp_int.h"

#define DEFAULT_WINDOW     ((size_t)8 << 20)
#define WINDOW_FLOOR       ((size_t)1 << 20)
#define RATE_MIN_US        10000  /* a delivery-rate sample spans >= 10 ms */
#define FLOOR_RATE         100.0  /* bytes per us: 100 MB/s */
#define DEFAULT_IO_SIZE    32768u /* draft-02: every server takes 32 KiB */
#define DEFAULT_MAX_PACKET 34000u
#define DEFAULT_HANDLES    64u
#define RECV_CHUNK         ((size_t)128 << 10)
#define RECV_PER_STEP      ((size_t)8 << 20)
#define WRITE_HDR(hlen)    (4 + 1 + 4 + 4 + (size_t)(hlen) + 8 + 4)
#define DEFAULT_IO_TIMEOUT 30000

/* ---- small helpers ------------------------------------------------------ */

int64_t ferry__sftp__now(void)
{
	return ferry__now_ms();
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void vset_err(ferry__sftp *sf, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

static void vset_err(ferry__sftp *sf, const char *fmt, va_list ap)
{
	vsnprintf(sf->errmsg, sizeof(sf->errmsg), fmt, ap);
}

int ferry__sftp_seterr(ferry__sftp *sf, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset_err(sf, fmt, ap);
	va_end(ap);
	return code;
}

uint64_t ferry__sftp__next_gen(const ferry__sftp *sf)
{
	if (sf->in_cb)
		return sf->cur_gen + 1;
	return (sf->base_gen ? sf->base_gen : *sf->rt) + 1;
}

uint64_t ferry__sftp_gen_now(const ferry__sftp *sf)
{
	return sf->in_cb ? sf->cur_gen : *sf->rt;
}

void ferry__sftp_gen_base(ferry__sftp *sf, uint64_t gen)
{
	sf->base_gen = gen;
}

static void q_push(ferry__sftp_queue *q, ferry__sftp_req *r)
{
	r->next = NULL;
	if (q->tail)
		q->tail->next = r;
	else
		q->head = r;
	q->tail = r;
	q->count++;
}

static ferry__sftp_req *q_pop(ferry__sftp_queue *q)
{
	ferry__sftp_req *r = q->head;
	if (r) {
		q->head = r->next;
		if (!q->head)
			q->tail = NULL;
		q->count--;
		r->next = NULL;
	}
	return r;
}

/* ---- open handles and their paths ---------------------------------------- */

/* Open handles live in slots (free ones on a list through .next), found
 * by key, whose low bits are the slot + 1 and the rest a generation (a
 * stale key finds nothing), and by the handle's bytes (chained buckets, a
 * power of two, at least one per handle).  A cold push of many files holds
 * thousands of handles open at once: each request on one looks it up. */
#define HP_SLOT_BITS 18
#define HP_SLOT_MAX  ((1u << HP_SLOT_BITS) - 1)

static uint32_t hp_hash(const uint8_t *data, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ data[i]) * 16777619u;
	return h;
}

static ferry__sftp_hpath *hp_slot(const ferry__sftp *sf, uint32_t key)
{
	uint32_t s = key & HP_SLOT_MAX;
	if (!s || s > sf->hp_cap || sf->hp[s - 1].key != key)
		return NULL;
	return &sf->hp[s - 1];
}

/* The key of the open handle (data, n), 0 when unknown. */
static uint32_t hp_find(const ferry__sftp *sf, const uint8_t *data, size_t n)
{
	if (!sf->hp_nbucket)
		return 0;
	uint32_t i = sf->hp_bucket[hp_hash(data, n) & (sf->hp_nbucket - 1)];
	for (; i; i = sf->hp[i - 1].next) {
		const ferry__sftp_hpath *e = &sf->hp[i - 1];
		if (e->h.len == n && !memcmp(e->h.data, data, n))
			return e->key;
	}
	return 0;
}

static void hp_link(ferry__sftp *sf, uint32_t slot)
{
	ferry__sftp_hpath *e = &sf->hp[slot - 1];
	uint32_t *b = &sf->hp_bucket[hp_hash(e->h.data, e->h.len) &
	                             (sf->hp_nbucket - 1)];
	e->next = *b;
	*b = slot;
}

/* Room for one more: a free slot and a bucket per handle.  0 when there
 * is none (the handle goes unnamed: only a vaguer message). */
static int hp_room(ferry__sftp *sf)
{
	if (!sf->hp_free) {
		if (sf->hp_cap >= HP_SLOT_MAX)
			return 0;
		size_t ncap = sf->hp_cap ? sf->hp_cap * 2 : 16;
		if (ncap > HP_SLOT_MAX)
			ncap = HP_SLOT_MAX;
		ferry__sftp_hpath *v =
		        ferry__reallocarray(sf->hp, ncap, sizeof(*v));
		if (!v)
			return 0;
		for (size_t i = ncap; i-- > sf->hp_cap;) {
			v[i].key = 0;
			v[i].path = NULL;
			v[i].next = sf->hp_free;
			sf->hp_free = (uint32_t)i + 1;
		}
		sf->hp = v;
		sf->hp_cap = ncap;
	}
	if (sf->hp_n < sf->hp_nbucket)
		return 1;
	size_t nb = sf->hp_nbucket ? sf->hp_nbucket * 2 : 16;
	uint32_t *b = ferry__calloc(nb, sizeof(*b));
	if (!b)
		return 0;
	ferry__free(sf->hp_bucket);
	sf->hp_bucket = b;
	sf->hp_nbucket = nb;
	for (size_t i = 0; i < sf->hp_cap; i++)
		if (sf->hp[i].key)
			hp_link(sf, (uint32_t)i + 1);
	return 1;
}

static void hp_add(ferry__sftp *sf, const ferry__sftp_handle *h,
                   const uint8_t *path, size_t n)
{
	if (!hp_room(sf))
		return;
	char *p = ferry__strndup((const char *)path, n);
	if (!p)
		return;
	uint32_t slot = sf->hp_free;
	ferry__sftp_hpath *e = &sf->hp[slot - 1];
	sf->hp_free = e->next;
	sf->hp_n++;
	if (!(++sf->hp_gen & (UINT32_MAX >> HP_SLOT_BITS)))
		sf->hp_gen = 1;
	e->h = *h;
	e->key = (sf->hp_gen << HP_SLOT_BITS) | slot;
	e->path = p;
	hp_link(sf, slot);
}

static void hp_del(ferry__sftp *sf, uint32_t key)
{
	ferry__sftp_hpath *e = hp_slot(sf, key);
	if (!e)
		return;
	uint32_t slot = key & HP_SLOT_MAX;
	uint32_t *pp = &sf->hp_bucket[hp_hash(e->h.data, e->h.len) &
	                              (sf->hp_nbucket - 1)];
	while (*pp && *pp != slot)
		pp = &sf->hp[*pp - 1].next;
	if (*pp)
		*pp = e->next;
	ferry__free(e->path);
	e->path = NULL;
	e->key = 0;
	e->next = sf->hp_free;
	sf->hp_free = slot;
	sf->hp_n--;
}

static const char *hp_path(const ferry__sftp *sf, uint32_t key)
{
	const ferry__sftp_hpath *e = hp_slot(sf, key);
	return e ? e->path : NULL;
}

/* Forget every handle and give the memory back (the generation goes on,
 * so a key held by a request still finds nothing). */
static void hp_clear(ferry__sftp *sf)
{
	for (size_t i = 0; i < sf->hp_cap; i++)
		ferry__free(sf->hp[i].path);
	ferry__free(sf->hp);
	ferry__free(sf->hp_bucket);
	sf->hp = NULL;
	sf->hp_bucket = NULL;
	sf->hp_n = sf->hp_cap = sf->hp_nbucket = 0;
	sf->hp_free = 0;
}

/* The n-th string of a request packet (after length, type and id), or
 * NULL when the packet was not kept or is too short. */
static const uint8_t *pkt_string(const ferry__sftp_req *r, int nth, size_t *len)
{
	size_t off = 9;
	for (;;) {
		if (r->pkt_len < off + 4)
			return NULL;
		uint32_t n = ferry__peek_u32(r->pkt + off);
		if (n > r->pkt_len - off - 4)
			return NULL;
		if (!nth--) {
			*len = n;
			return r->pkt + off + 4;
		}
		off += 4 + (size_t)n;
	}
}

/* ---- the in-flight table ------------------------------------------------ */

static void table_grow(ferry__sftp *sf)
{
	size_t nsize = sf->table_size ? sf->table_size * 2 : 256;
	ferry__sftp_req **nt = ferry__calloc(nsize, sizeof(*nt));
	if (!nt)
		return; /* chains just get longer */
	for (size_t i = 0; i < sf->table_size; i++) {
		ferry__sftp_req *r = sf->table[i], *next;
		for (; r; r = next) {
			next = r->hnext;
			r->hnext = nt[r->id & (nsize - 1)];
			nt[r->id & (nsize - 1)] = r;
		}
	}
	ferry__free(sf->table);
	sf->table = nt;
	sf->table_size = nsize;
}

/* Only called with a table (created with the client). */
static void table_insert(ferry__sftp *sf, ferry__sftp_req *r)
{
	if (sf->table_count >= sf->table_size * 2)
		table_grow(sf);
	if (!sf->table_count && sf->state != SFTP_INIT_SENT)
		sf->progress_ms = ferry__now_ms(); /* the clock starts */
	size_t i = r->id & (sf->table_size - 1);
	r->hnext = sf->table[i];
	sf->table[i] = r;
	sf->table_count++;
	if (sf->table_count > sf->stats.max_in_flight)
		sf->stats.max_in_flight = sf->table_count;
	r->inext = NULL;
	r->iprev = sf->if_tail;
	if (sf->if_tail)
		sf->if_tail->inext = r;
	else
		sf->if_head = r;
	sf->if_tail = r;
}

static ferry__sftp_req *table_remove(ferry__sftp *sf, uint32_t id)
{
	ferry__sftp_req **pp = &sf->table[id & (sf->table_size - 1)];
	for (; *pp; pp = &(*pp)->hnext) {
		if ((*pp)->id == id) {
			ferry__sftp_req *r = *pp;
			*pp = r->hnext;
			r->hnext = NULL;
			sf->table_count--;
			if (r->iprev)
				r->iprev->inext = r->inext;
			else
				sf->if_head = r->inext;
			if (r->inext)
				r->inext->iprev = r->iprev;
			else
				sf->if_tail = r->iprev;
			r->iprev = r->inext = NULL;
			return r;
		}
	}
	return NULL;
}

/* ---- completion ---------------------------------------------------------- */

static void message_of(char *dst, size_t size, const ferry__sftp_parsed *pr,
                       uint32_t status)
{
	int known = status == FERRY__FX_LOCAL ||
	            strcmp(ferry__sftp_status_name(status), "SSH_FX_unknown");
	if (pr && pr->msg_len) {
		ferry__sftp_sanitize(dst, size, pr->msg, pr->msg_len);
		if (!known) {
			size_t n = strlen(dst);
			snprintf(dst + n, size - n,
			         " (unknown SFTP status code %u)", status);
		}
	} else if (!known) {
		snprintf(dst, size, "unknown SFTP status code %u", status);
	} else {
		snprintf(dst, size, "%s", ferry__sftp_status_name(status));
	}
}

/* Call r's callback and free r. */
static void complete(ferry__sftp *sf, ferry__sftp_req *r,
                     const ferry__sftp_parsed *pr, int error, uint32_t status,
                     const char *message, uint64_t gen)
{
	ferry__sftp_reply rep;
	memset(&rep, 0, sizeof(rep));
	rep.error = error;
	rep.status = status;
	rep.message = message ? message : "";
	rep.req_type = r->type;
	rep.id = r->id;
	rep.gen = gen;
	rep.len = r->io_len;
	if (pr && pr->type != FERRY__FXP_STATUS) {
		switch (pr->type) {
		case FERRY__FXP_HANDLE:
			rep.handle = &pr->handle;
			break;
		case FERRY__FXP_DATA:
			rep.data = pr->data;
			rep.data_len = pr->data_len;
			break;
		case FERRY__FXP_ATTRS:
			rep.attrs = &pr->attrs;
			break;
		case FERRY__FXP_NAME:
			rep.names = pr->names;
			rep.count = pr->count;
			break;
		case FERRY__FXP_EXTENDED_REPLY:
			if (r->ext_kind == FERRY__XK_LIMITS)
				rep.limits = &pr->limits;
			else
				rep.vfs = &pr->vfs;
			break;
		default:
			break;
		}
	}
	if (pr && status == FERRY__FX_EOF &&
	    (r->type == FERRY__FXP_READ || r->type == FERRY__FXP_READDIR)) {
		rep.eof = 1;
		rep.error = 0;
	}
	if (r->cb) {
		uint64_t saved = sf->cur_gen;
		sf->in_cb++;
		sf->cur_gen = gen;
		r->cb(r->ctx, &rep);
		sf->cur_gen = saved;
		sf->in_cb--;
	}
	ferry__free(r);
}

static void complete_local(ferry__sftp *sf, ferry__sftp_req *r, int code,
                           const char *msg)
{
	if (r->flags & REQF_GEN) {
		if (r->gen_fn.fail)
			r->gen_fn.fail(r->gen_fn.ctx, code, msg);
		ferry__free(r);
		return;
	}
	complete(sf, r, NULL, code, FERRY__FX_LOCAL, msg, *sf->rt);
}

/* Tell r's caller now; r stays (in flight or queued) as an orphan whose
 * reply is dropped. */
static void orphan_req(ferry__sftp *sf, ferry__sftp_req *r, int code,
                       const char *msg)
{
	ferry__sftp_reply rep;
	memset(&rep, 0, sizeof(rep));
	rep.error = code;
	rep.status = FERRY__FX_LOCAL;
	rep.message = msg;
	rep.req_type = r->type;
	rep.id = r->id;
	rep.gen = *sf->rt;
	r->flags |= REQF_ORPHAN;
	ferry__sftp_cb cb = r->cb;
	r->cb = NULL;
	if (cb) {
		uint64_t saved = sf->cur_gen;
		sf->in_cb++;
		sf->cur_gen = *sf->rt;
		cb(r->ctx, &rep);
		sf->cur_gen = saved;
		sf->in_cb--;
	}
}

/* Complete every queued request, and every in-flight one.  orphan (a
 * cancel): in-flight requests stay to recognise and drop their replies,
 * and queued CLOSEs are still sent, so that no handle (on the server) or
 * handle slot (here) is lost.  Else (the connection is gone) all go. */
static void fail_all(ferry__sftp *sf, int code, const char *msg, int orphan)
{
	/* In flight first, in the order they were sent.  Callbacks only
	 * queue requests: the in-flight list does not change under us. */
	ferry__sftp_req *r, *next;
	for (r = sf->if_head; r; r = next) {
		next = r->inext;
		if (r->flags & REQF_ORPHAN)
			continue;
		if (orphan) {
			orphan_req(sf, r, code, msg);
		} else {
			table_remove(sf, r->id);
			sf->inflight_bytes -= r->cost < sf->inflight_bytes
			                              ? r->cost
			                              : sf->inflight_bytes;
			complete_local(sf, r, code, msg);
		}
	}
	ferry__sftp_queue keep = {NULL, NULL, 0};
	for (;;) {
		ferry__sftp_req *p = sf->qpath.head, *h = sf->qhandle.head;
		if (!p && !h)
			break;
		if (p && (!h || p->seq < h->seq))
			r = q_pop(&sf->qpath);
		else
			r = q_pop(&sf->qhandle);
		if (orphan && (r->flags & REQF_CLOSE)) {
			orphan_req(sf, r, code, msg);
			q_push(&keep, r);
			continue;
		}
		if (!(r->flags & REQF_GEN))
			sf->queued_bytes -= r->pkt_len;
		complete_local(sf, r, code, msg);
	}
	sf->qhandle = keep; /* CLOSEs are handle requests */
}

static void die(ferry__sftp *sf, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void die(ferry__sftp *sf, int code, const char *fmt, ...)
{
	if (sf->dead)
		return;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vset_err(sf, fmt, ap);
		va_end(ap);
	}
	if (!sf->errmsg[0])
		snprintf(sf->errmsg, sizeof(sf->errmsg), "SFTP: %s",
		         ferry_strerror(code));
	sf->dead = code;
	if (sf->session)
		ferry__seterr(sf->session, code, "%s", sf->errmsg);
	/* Nothing more goes out. */
	ferry__buf_reset(&sf->out);
	char msg[sizeof(sf->errmsg)];
	ferry__sftp__textcpy(msg, sizeof(msg), sf->errmsg);
	fail_all(sf, code, msg, 0);
	/* Orphans left from an earlier cancel. */
	for (size_t i = 0; i < sf->table_size; i++) {
		while (sf->table[i]) {
			ferry__sftp_req *r = sf->table[i];
			sf->table[i] = r->hnext;
			ferry__free(r);
		}
	}
	sf->table_count = 0;
	sf->if_head = sf->if_tail = NULL;
	sf->inflight_bytes = 0;
	sf->slots_used = 0;
	hp_clear(sf);
}

void ferry__sftp__die(ferry__sftp *sf, int code, const char *fmt, ...)
{
	if (sf->dead)
		return;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vset_err(sf, fmt, ap);
		va_end(ap);
	}
	die(sf, code, NULL);
}

void ferry__sftp_cancel_all(ferry__sftp *sf, int code)
{
	if (!sf || sf->dead || sf->in_cb)
		return;
	char msg[128];
	snprintf(msg, sizeof(msg), "SFTP request abandoned: %s",
	         ferry_strerror(code));
	sf->cancelling = code ? code : FERRY_EINTR;
	fail_all(sf, code, msg, 1);
	sf->cancelling = 0;
	/* What waited is gone: the next request waits for nothing. */
	sf->blocked_window = sf->blocked_slot = 0;
}

/* ---- submission ------------------------------------------------------------
 */

static int usable(const ferry__sftp *sf)
{
	if (sf->dead)
		return sf->dead;
	if (sf->cancelling)
		return sf->cancelling;
	return 0;
}

int ferry__sftp__submit(ferry__sftp *sf, ferry__sftp_enc *e, uint8_t type,
                        int ext_kind, unsigned flags, size_t reply_cost,
                        uint32_t read_len, ferry__sftp_cb cb, void *ctx)
{
	ferry__sftp_req *r = NULL;
	int error = e->b.error;
	/* A CLOSE asked for while everything is being cancelled still goes
	 * out (unseen by its caller, told "cancelled"): the handle must be
	 * given back. */
	int keep_close =
	        !error && !sf->dead && sf->cancelling && (flags & REQF_CLOSE);
	if (keep_close) {
		cb = NULL;
		ctx = NULL;
		flags |= REQF_ORPHAN;
	} else if (!error) {
		error = usable(sf);
	}
	if (error)
		goto out;
	size_t len = e->b.len;
	if (len - 4 > sf->limits.max_packet) {
		error = ferry__sftp_seterr(
		        sf, FERRY_EINVALID,
		        "SFTP %s: request of %zu bytes above the server's "
		        "maximum packet of %llu",
		        ferry__sftp_type_name(type), len - 4,
		        (unsigned long long)sf->limits.max_packet);
		goto out;
	}
	ferry__buf_poke_u32(&e->b, 0, (uint32_t)(len - 4));
	r = ferry__malloc(sizeof(*r) + len);
	if (!r) {
		error = FERRY_ENOMEM;
		goto out;
	}
	memset(r, 0, sizeof(*r));
	memcpy(r->pkt, e->b.data, len);
	r->pkt_len = len;
	r->id = e->id;
	sf->next_id++;
	r->type = type;
	r->ext_kind = (uint8_t)ext_kind;
	r->flags = (uint8_t)flags;
	r->subj_off = e->subj_off;
	r->subj_len = e->subj_len;
	r->io_len = read_len;
	if (flags & REQF_HANDLE) {
		size_t hl;
		const uint8_t *h =
		        pkt_string(r, type == FERRY__FXP_EXTENDED, &hl);
		r->hkey = h ? hp_find(sf, h, hl) : 0;
	}
	r->cost = len + reply_cost;
	r->cb = cb;
	r->ctx = ctx;
	r->seq = sf->next_seq++;
	r->gen = ferry__sftp__next_gen(sf);
	q_push((flags & REQF_HANDLE) ? &sf->qhandle : &sf->qpath, r);
	sf->queued_bytes += len;
	sf->kicked = 1;
	if (keep_close)
		error = sf->cancelling;
out:
	ferry__buf_free(&e->b);
	return error;
}

int ferry__sftp__add_gen(ferry__sftp *sf, const ferry__sftp_gen *g)
{
	int error = usable(sf);
	if (error)
		return error;
	ferry__sftp_req *r = ferry__calloc(1, sizeof(*r));
	if (!r)
		return FERRY_ENOMEM;
	r->flags = REQF_GEN | REQF_HANDLE;
	r->gen_fn = *g;
	r->seq = sf->next_seq++;
	r->gen = ferry__sftp__next_gen(sf);
	q_push(&sf->qhandle, r);
	sf->kicked = 1;
	return 0;
}

/* ---- sending ------------------------------------------------------------- */

static int window_allows(const ferry__sftp *sf, size_t cost)
{
	return sf->inflight_bytes == 0 ||
	       sf->inflight_bytes + cost <= sf->window;
}

static void sent(ferry__sftp *sf, ferry__sftp_req *r, size_t len)
{
	/* The first to leave after the queue was held back (a handle slot,
	 * the window), once its generation's round trip was over: the caller
	 * waited for the server's answers that freed it, one more round
	 * trip (what follows it counts from it). */
	if ((sf->blocked_window || sf->blocked_slot) && r->gen <= *sf->rt)
		r->gen = *sf->rt + 1;
	if ((r->flags & REQF_SLOT) &&
	    ++sf->slots_used > sf->stats.max_handles_used)
		sf->stats.max_handles_used = sf->slots_used;
	table_insert(sf, r);
	r->sent_us = now_us();
	if (!sf->rate_start_us)
		sf->rate_start_us = r->sent_us;
	sf->inflight_bytes += r->cost;
	if (sf->inflight_bytes > sf->stats.max_bytes_in_flight)
		sf->stats.max_bytes_in_flight = sf->inflight_bytes;
	sf->stats.requests++;
	sf->stats.bytes_out += len;
	sf->blocked_window = sf->blocked_slot = 0;
}

/* r was answered.  The default window is twice the bytes the path held
 * in the last sample (delivery rate x the least round trip seen), at most
 * DEFAULT_WINDOW, at least a floor of WINDOW_FLOOR plus what FLOOR_RATE
 * fills in the least round trip.  At loopback that is about 1 MiB, so
 * requests do not queue up in the server (OpenSSH's sftp-server copies its
 * input buffer each time it grows, and the first time it grows each copy
 * is a fresh mmap: a window of 8 MiB made the first push of 10,000 files
 * cost the server 4x the CPU of later ones, issue 19; at 1 MiB its first
 * push still costs it about 30 % more, at 256 KiB no more than later ones,
 * but then a small pull or a delta waits for the window: more round
 * trips); at a long round trip
 * the floor is larger from the first reply on, and the window doubles each
 * sample while it is the limit.  A sample that spans idle time lowers the
 * window at most to the floor. */
static void adapt_window(ferry__sftp *sf, const ferry__sftp_req *r)
{
	if (sf->window_fixed)
		return;
	int64_t t = now_us();
	int64_t rtt = t - r->sent_us;
	if (rtt < 1)
		rtt = 1;
	if (!sf->min_rtt_us || rtt < sf->min_rtt_us)
		sf->min_rtt_us = rtt;
	double floor = (double)WINDOW_FLOOR + FLOOR_RATE * sf->min_rtt_us;
	if (floor > (double)DEFAULT_WINDOW)
		floor = (double)DEFAULT_WINDOW;
	if ((double)sf->window < floor)
		sf->window = (size_t)floor;
	sf->rate_bytes += r->cost;
	int64_t span = t - sf->rate_start_us;
	if (span < RATE_MIN_US || span < 2 * sf->min_rtt_us)
		return;
	double w = 2.0 * sf->rate_bytes * sf->min_rtt_us / span;
	sf->window = w >= (double)DEFAULT_WINDOW ? DEFAULT_WINDOW
	             : w <= floor                ? (size_t)floor
	                                         : (size_t)w;
	sf->rate_start_us = sf->inflight_bytes ? t : 0;
	sf->rate_bytes = 0;
}

/* Move r (popped from its queue) to the wire buffer. */
static void send_req(ferry__sftp *sf, ferry__sftp_req *r)
{
	int error = ferry__buf_put(&sf->out, r->pkt, r->pkt_len);
	sf->queued_bytes -= r->pkt_len;
	if (error) {
		complete(sf, r, NULL, error, FERRY__FX_LOCAL,
		         "SFTP: out of memory queueing a request", *sf->rt);
		return;
	}
	size_t len = r->pkt_len;
	/* The payload of a big request is not needed any more. */
	if (len > 4096 && !r->subj_len) {
		ferry__sftp_req *small = ferry__realloc(r, sizeof(*r));
		if (small) {
			r = small;
			r->pkt_len = 0;
		}
	}
	sent(sf, r, len);
}

int ferry__sftp__send_write(ferry__sftp *sf, uint64_t gen,
                            const ferry__sftp_handle *h, uint64_t off,
                            size_t len,
                            int (*fill)(void *fctx, uint8_t *dst, size_t n,
                                        uint64_t off),
                            void *fctx, ferry__sftp_cb cb, void *ctx)
{
	size_t hdr = WRITE_HDR(h->len), plen = hdr + len;
	size_t cost = plen + 64;
	uint8_t *p;
	int error;
	if (!window_allows(sf, cost)) {
		if (!sf->blocked_window) {
			sf->blocked_window = 1;
			sf->stats.window_waits++;
		}
		return 0;
	}
	ferry__sftp_req *r = ferry__calloc(1, sizeof(*r));
	if (!r)
		return FERRY_ENOMEM;
	if ((error = ferry__buf_reserve(&sf->out, plen, &p))) {
		ferry__free(r);
		return error;
	}
	r->id = sf->next_id;
	ferry__poke_u32(p, (uint32_t)(plen - 4));
	p[4] = FERRY__FXP_WRITE;
	ferry__poke_u32(p + 5, r->id);
	ferry__poke_u32(p + 9, h->len);
	memcpy(p + 13, h->data, h->len);
	ferry__poke_u32(p + 13 + h->len, (uint32_t)(off >> 32));
	ferry__poke_u32(p + 17 + h->len, (uint32_t)off);
	ferry__poke_u32(p + 21 + h->len, (uint32_t)len);
	if ((error = fill(fctx, p + hdr, len, off))) {
		sf->out.len -= plen;
		ferry__free(r);
		return error;
	}
	sf->next_id++;
	r->type = FERRY__FXP_WRITE;
	r->io_len = (uint32_t)len;
	r->hkey = hp_find(sf, h->data, h->len);
	r->flags = REQF_HANDLE;
	r->cost = cost;
	r->cb = cb;
	r->ctx = ctx;
	r->seq = sf->next_seq++;
	r->gen = gen;
	sent(sf, r, plen);
	return 1;
}

/* Queue -> wire buffer, in submission order, as the window allows. */
static void flush(ferry__sftp *sf)
{
	while (!sf->dead && sf->state != SFTP_NEW) {
		ferry__sftp_req *p = sf->qpath.head, *h = sf->qhandle.head;
		ferry__sftp_req *r;
		int p_blocked = p && (p->flags & REQF_SLOT) &&
		                sf->slots_used >= sf->slots_max;
		if (p_blocked && !sf->blocked_slot) {
			sf->blocked_slot = 1;
			sf->stats.handle_waits++;
		}
		if (p && !p_blocked && (!h || p->seq < h->seq))
			r = p;
		else if (h && (!p || p_blocked || h->seq < p->seq))
			r = h;
		else
			break;
		if (r->flags & REQF_GEN) {
			int rc = r->gen_fn.emit(sf, r->gen_fn.ctx, r->gen);
			if (rc == 0)
				break;
			if (rc == 2) {
				q_pop(&sf->qhandle);
				ferry__free(r);
			}
			continue;
		}
		if (!window_allows(sf, r->cost)) {
			if (!sf->blocked_window) {
				sf->blocked_window = 1;
				sf->stats.window_waits++;
			}
			break;
		}
		q_pop(r == p ? &sf->qpath : &sf->qhandle);
		send_req(sf, r);
	}
}

/* 1 moved bytes, 0 nothing, -1 died. */
static int do_send(ferry__sftp *sf)
{
	int progress = 0;
	size_t n;
	while ((n = ferry__buf_avail(&sf->out)) > 0) {
		ssize_t w = sf->t->send(sf->t, ferry__buf_ptr(&sf->out), n);
		if (w == 0)
			break;
		if (w < 0) {
			die(sf, (int)w, NULL);
			return -1;
		}
		sf->out.off += (size_t)w;
		sf->progress_ms = ferry__now_ms();
		progress = 1;
	}
	if (sf->out.off == sf->out.len)
		ferry__buf_reset(&sf->out);
	else if (sf->out.off > sf->out.cap / 2)
		ferry__buf_compact(&sf->out);
	return progress;
}

int ferry__sftp_kicked(const ferry__sftp *sf)
{
	return !sf->dead && sf->kicked;
}

int ferry__sftp_want_write(const ferry__sftp *sf)
{
	return !sf->dead && ferry__buf_avail(&sf->out);
}

int64_t ferry__sftp_next_timer(const ferry__sftp *sf)
{
	/* The engine keeps no timers: a transport that delays (the tests'
	 * latency wrapper) says when it wants to be stepped again. */
	if (sf->dead || !sf->t->next_timer)
		return 0;
	return sf->t->next_timer(sf->t);
}

/* ---- receiving ------------------------------------------------------------
 */

static void apply_limits(ferry__sftp *sf, const ferry__sftp_limits_info *l)
{
	uint64_t pkt = l->max_packet ? l->max_packet : DEFAULT_MAX_PACKET;
	if (pkt < 4096)
		pkt = 4096;
	if (pkt > FERRY__SFTP_MAX_IN_PACKET)
		pkt = FERRY__SFTP_MAX_IN_PACKET;
	uint64_t w = l->max_write ? l->max_write : DEFAULT_IO_SIZE;
	uint64_t rd = l->max_read ? l->max_read : DEFAULT_IO_SIZE;
	/* A WRITE's header with the largest handle must fit the packet. */
	if (w > pkt - WRITE_HDR(FERRY__SFTP_HANDLE_MAX))
		w = pkt - WRITE_HDR(FERRY__SFTP_HANDLE_MAX);
	if (rd > pkt - 64)
		rd = pkt - 64;
	if (sf->opts.max_write && w > sf->opts.max_write)
		w = sf->opts.max_write;
	if (w < 512)
		w = 512;
	sf->limits.max_packet = pkt;
	sf->limits.max_write = w;
	sf->limits.max_read = rd;
	uint64_t hs = l->max_handles ? l->max_handles : DEFAULT_HANDLES;
	if (sf->opts.max_handles && hs > sf->opts.max_handles)
		hs = sf->opts.max_handles;
	if (hs > 1u << 20)
		hs = 1u << 20;
	sf->limits.max_handles = hs;
	sf->slots_max = (unsigned)hs;
}

static void limits_cb(void *ctx, const ferry__sftp_reply *r)
{
	ferry__sftp *sf = ctx;
	sf->limits_pending = 0;
	if (!r->error && r->limits && (sf->ext & FERRY__EXT_LIMITS))
		apply_limits(sf, r->limits);
}

static void home_cb(void *ctx, const ferry__sftp_reply *r)
{
	ferry_session *s = ((ferry__sftp *)ctx)->session;
	s->home_asked = 0;
	if (!r->error && r->count >= 1 && r->names)
		ferry__session_learn_home(s, r->names[0].name,
		                          r->names[0].name_len);
}

int ferry__sftp_ask_home(ferry__sftp *sf)
{
	ferry_session *s = sf->session;
	if (!s || s->home || s->home_asked)
		return 0;
	int error = ferry__sftp_realpath(sf, ".", home_cb, sf);
	if (!error)
		s->home_asked = 1;
	return error;
}

static void got_version(ferry__sftp *sf, const uint8_t *p, size_t n)
{
	ferry__sftp_version v;
	if (ferry__sftp_parse_version(p, n, &v)) {
		die(sf, FERRY_EPROTO, "SFTP init: malformed VERSION reply");
		return;
	}
	if (v.version != 3) {
		die(sf, FERRY_EUNSUPPORTED,
		    "SFTP init: the server speaks SFTP version %u; ferry needs "
		    "version 3",
		    v.version);
		return;
	}
	sf->version = v.version;
	if (sf->init_gen > *sf->rt)
		*sf->rt = sf->init_gen;
	sf->ext_advertised = v.ext;
	sf->ext = v.ext & ~sf->opts.ignore_ext;
	sf->symlink_order = v.symlink_order;
	sf->state = SFTP_READY;
	/* The speculative limits request, when unanswered, comes next. */
}

static void init_garbage(ferry__sftp *sf, const uint8_t *p, size_t n)
{
	char text[200];
	ferry__sftp_sanitize(text, sizeof(text), p, n < 64 ? n : 64);
	die(sf, FERRY_EPROTO,
	    "SFTP init: the remote shell printed text on a non-interactive "
	    "login (the first bytes read were \"%s\"); make the login "
	    "shell's startup files print nothing unless interactive",
	    text);
}

/* One whole packet body (type byte first). */
static void dispatch(ferry__sftp *sf, const uint8_t *p, size_t n);

static void disamb_start(ferry__sftp *sf, ferry__sftp_req *r,
                         const ferry__sftp_parsed *pr);

static void dispatch(ferry__sftp *sf, const uint8_t *p, size_t n)
{
	uint8_t type;
	uint32_t id;
	ferry__sftp_parsed pr;
	char msg[512];
	sf->stats.replies++;
	if (sf->state == SFTP_INIT_SENT) {
		if (n < 1 || p[0] != FERRY__FXP_VERSION) {
			init_garbage(sf, p, n);
			return;
		}
		got_version(sf, p + 1, n - 1);
		return;
	}
	if (ferry__sftp_peek_id(p, n, &type, &id)) {
		die(sf, FERRY_EPROTO, "SFTP: short reply (%zu bytes)", n);
		return;
	}
	ferry__sftp_req *r = table_remove(sf, id);
	if (!r) {
		die(sf, FERRY_EPROTO,
		    "SFTP: the server answered request id %u that was not "
		    "asked (reply type %u)",
		    id, type);
		return;
	}
	sf->inflight_bytes -=
	        r->cost < sf->inflight_bytes ? r->cost : sf->inflight_bytes;
	adapt_window(sf, r);
	int error = ferry__sftp_parse_reply(p, n, r->type, r->ext_kind, &pr);
	if (!error && r->type == FERRY__FXP_READ &&
	    pr.type == FERRY__FXP_DATA && pr.data_len > r->io_len)
		error = FERRY_EPROTO;
	if (r->gen > *sf->rt)
		*sf->rt = r->gen;
	/* Handle slots. */
	if ((r->flags & REQF_SLOT) && (error || pr.type != FERRY__FXP_HANDLE))
		sf->slots_used -= sf->slots_used ? 1 : 0;
	if (r->flags & REQF_CLOSE) {
		sf->slots_used -= sf->slots_used ? 1 : 0;
		hp_del(sf, r->hkey);
	}
	if (!error && pr.type == FERRY__FXP_HANDLE &&
	    (r->type == FERRY__FXP_OPEN || r->type == FERRY__FXP_OPENDIR)) {
		size_t pl;
		const uint8_t *path = pkt_string(r, 0, &pl);
		if (path)
			hp_add(sf, &pr.handle, path, pl);
	}
	if (error == FERRY_ENOMEM) {
		complete(sf, r, NULL, error, FERRY__FX_LOCAL,
		         "SFTP: out of memory reading a reply", r->gen);
		return;
	}
	if (error) {
		uint8_t rt = r->type;
		complete(sf, r, NULL, FERRY_EPROTO, FERRY__FX_LOCAL,
		         "SFTP: malformed reply", r->gen);
		die(sf, FERRY_EPROTO,
		    "SFTP: malformed reply of type %u to %s request id %u",
		    type, ferry__sftp_type_name(rt), id);
		return;
	}
	if (r->flags & REQF_ORPHAN) {
		/* Its caller is gone; a handle it opened is closed. */
		if (pr.type == FERRY__FXP_HANDLE && !sf->dead) {
			ferry__sftp_close(sf, &pr.handle, NULL, NULL);
		}
		ferry__sftp_parsed_free(&pr);
		ferry__free(r);
		return;
	}
	if ((r->flags & REQF_CREATE) && pr.status == FERRY__FX_FAILURE &&
	    r->subj_len) {
		disamb_start(sf, r, &pr);
		ferry__sftp_parsed_free(&pr);
		return;
	}
	message_of(msg, sizeof(msg), &pr, pr.status);
	complete(sf, r, &pr, ferry__sftp_status_error(pr.status), pr.status,
	         msg, r->gen);
	ferry__sftp_parsed_free(&pr);
}

/* FAILURE to a creating request: OpenSSH maps EEXIST and ENOSPC alike.
 * An LSTAT of the path (and a statvfs of its directory) pipelined after it
 * tell them apart, at one more round trip on the failure path only. */
typedef struct disamb {
	ferry__sftp *sf;
	ferry__sftp_req *orig;
	char msg[400];
	int pending, exists, full;
	uint64_t gen;
} disamb;

static void disamb_cb(void *ctx, const ferry__sftp_reply *r)
{
	disamb *d = ctx;
	if (r->gen > d->gen)
		d->gen = r->gen;
	if (!r->error && r->req_type == FERRY__FXP_LSTAT)
		d->exists = 1;
	if (!r->error && r->vfs &&
	    (r->vfs->bavail == 0 || (r->vfs->files && r->vfs->favail == 0)))
		d->full = 1;
	if (--d->pending)
		return;
	char msg[512];
	int error = FERRY_EREMOTE;
	if (d->exists) {
		error = FERRY_EEXIST;
		snprintf(msg, sizeof(msg), "%s (the path already exists)",
		         d->msg);
	} else if (d->full) {
		error = FERRY_ENOSPACE;
		snprintf(msg, sizeof(msg),
		         "%s (no space left on the remote filesystem)", d->msg);
	} else {
		ferry__sftp__textcpy(msg, sizeof(msg), d->msg);
	}
	ferry__sftp *sf = d->sf;
	ferry__sftp_req *orig = d->orig;
	uint64_t gen = d->gen;
	ferry__free(d);
	complete(sf, orig, NULL, error, FERRY__FX_FAILURE, msg, gen);
}

static void disamb_start(ferry__sftp *sf, ferry__sftp_req *r,
                         const ferry__sftp_parsed *pr)
{
	char msg[400];
	message_of(msg, sizeof(msg), pr, pr->status);
	disamb *d = ferry__calloc(1, sizeof(*d));
	char *path =
	        ferry__strndup((const char *)r->pkt + r->subj_off, r->subj_len);
	if (!d || !path)
		goto plain;
	d->sf = sf;
	d->orig = r;
	d->gen = r->gen;
	ferry__sftp__textcpy(d->msg, sizeof(d->msg), msg);
	/* Submitted as if from r's callback: generation r->gen + 1. */
	uint64_t saved = sf->cur_gen;
	sf->in_cb++;
	sf->cur_gen = r->gen;
	if (!ferry__sftp_lstat(sf, path, disamb_cb, d))
		d->pending++;
	if (sf->ext & FERRY__EXT_STATVFS) {
		char *slash = strrchr(path, '/');
		const char *dir = ".";
		if (slash == path)
			dir = "/";
		else if (slash) {
			*slash = '\0';
			dir = path;
		}
		if (!ferry__sftp_statvfs(sf, dir, disamb_cb, d))
			d->pending++;
	}
	sf->in_cb--;
	sf->cur_gen = saved;
	ferry__free(path);
	if (!d->pending) {
		ferry__free(d);
		d = NULL;
		path = NULL;
		goto plain;
	}
	return;
plain:
	ferry__free(d);
	ferry__free(path);
	complete(sf, r, NULL, ferry__sftp_status_error(pr->status), pr->status,
	         msg, r->gen);
}

static void process_in(ferry__sftp *sf)
{
	while (!sf->dead) {
		const uint8_t *p = ferry__buf_ptr(&sf->in);
		size_t avail = ferry__buf_avail(&sf->in), total;
		if (!sf->first_framed && avail >= 5) {
			/* The first packet must be VERSION: anything else
			 * is text some login script printed. */
			uint32_t len = ferry__peek_u32(p);
			if (p[4] == FERRY__FXP_VERSION &&
			    (len < 5 || len > 256 * 1024)) {
				/* A VERSION packet, of a length no version
				 * reply has: not text from a login script. */
				die(sf, FERRY_EPROTO,
				    "SFTP init: the server's VERSION reply "
				    "claims %u bytes (%s; a VERSION reply "
				    "holds 5 to 262144)",
				    len,
				    len < 5 ? "too short to hold the version "
				              "number"
				            : "too long");
				return;
			}
			if (len < 5 || len > 256 * 1024 ||
			    p[4] != FERRY__FXP_VERSION) {
				init_garbage(sf, p, avail);
				return;
			}
			sf->first_framed = 1;
		}
		int rc = ferry__sftp_frame(p, avail, FERRY__SFTP_MAX_IN_PACKET,
		                           &total);
		if (rc == 0)
			break;
		if (rc < 0) {
			die(sf, FERRY_EPROTO,
			    "SFTP: reply of impossible length %u",
			    ferry__peek_u32(p));
			return;
		}
		sf->in.off += total;
		/* p stays valid: nothing writes to in during dispatch. */
		dispatch(sf, p + 4, total - 4);
	}
	if (sf->in.off == sf->in.len)
		ferry__buf_reset(&sf->in);
	else if (sf->in.off > sf->in.cap / 2)
		ferry__buf_compact(&sf->in);
}

/* 1 moved bytes, 0 nothing, -1 died. */
static int do_recv(ferry__sftp *sf)
{
	int progress = 0;
	size_t got = 0;
	while (!sf->dead && got < RECV_PER_STEP) {
		uint8_t *p;
		if (ferry__buf_reserve(&sf->in, RECV_CHUNK, &p)) {
			die(sf, FERRY_ENOMEM, "SFTP: out of memory reading");
			return -1;
		}
		ssize_t n = sf->t->recv(sf->t, p, RECV_CHUNK);
		sf->in.len -= RECV_CHUNK - (n > 0 ? (size_t)n : 0);
		if (n == 0)
			break;
		if (n < 0) {
			if (sf->state == SFTP_INIT_SENT && !sf->errmsg[0])
				ferry__sftp_seterr(
				        sf, (int)n,
				        "SFTP init: the channel closed before "
				        "the server answered");
			if (!sf->first_framed && ferry__buf_avail(&sf->in)) {
				init_garbage(sf, ferry__buf_ptr(&sf->in),
				             ferry__buf_avail(&sf->in));
				return -1;
			}
			die(sf, (int)n, NULL);
			return -1;
		}
		got += (size_t)n;
		sf->stats.bytes_in += (uint64_t)n;
		sf->progress_ms = ferry__now_ms();
		progress = 1;
		process_in(sf);
	}
	return sf->dead ? -1 : progress;
}

int64_t ferry__sftp_io_deadline(const ferry__sftp *sf)
{
	if (sf->dead || !sf->io_timeout ||
	    (!sf->table_count && sf->state != SFTP_INIT_SENT))
		return 0;
	return sf->progress_ms + sf->io_timeout;
}

/* What request r is about, for a message: its path, or the path its
 * handle was opened on; "" when unknown. */
static void req_subject(const ferry__sftp *sf, const ferry__sftp_req *r,
                        char *dst, size_t size)
{
	size_t n = 0;
	const uint8_t *p = NULL;
	const char *hpath = hp_path(sf, r->hkey);
	dst[0] = '\0';
	if (hpath) {
		p = (const uint8_t *)hpath;
		n = strlen(hpath);
	} else if (!(r->flags & REQF_HANDLE)) {
		p = pkt_string(r, r->type == FERRY__FXP_EXTENDED, &n);
	}
	if (p)
		ferry__sftp_sanitize(dst, size, p, n);
}

/* The deadline passed: say which request the server left unanswered. */
static void io_expired(ferry__sftp *sf)
{
	int secs = (sf->io_timeout + 999) / 1000;
	if (!sf->table_count) {
		die(sf, FERRY_ETIMEOUT,
		    "SFTP: no VERSION reply to INIT for %d s (I/O timeout): "
		    "the "
		    "server stopped answering; the SFTP channel was closed",
		    secs);
		return;
	}
	const ferry__sftp_req *r = sf->if_head;
	char what[64], path[300], ext[80] = "";
	const char *tn = ferry__sftp_type_name(r->type);
	size_t i = 0;
	for (; tn[i] && i + 1 < sizeof(what); i++)
		what[i] = (char)(tn[i] >= 'a' && tn[i] <= 'z' ? tn[i] - 32
		                                              : tn[i]);
	what[i] = '\0';
	size_t en;
	const uint8_t *e;
	if (r->type == FERRY__FXP_EXTENDED && (e = pkt_string(r, 0, &en)))
		ferry__sftp_sanitize(ext, sizeof(ext), e, en);
	req_subject(sf, r, path, sizeof(path));
	die(sf, FERRY_ETIMEOUT,
	    "SFTP: no reply for %d s (I/O timeout) to %s%s%s%s%s%s "
	    "(request id %u, %zu in flight): the server stopped answering; "
	    "the SFTP channel was closed",
	    secs, what, ext[0] ? " " : "", ext, path[0] ? " of \"" : "", path,
	    path[0] ? "\"" : "", r->id, sf->table_count);
}

static void io_check(ferry__sftp *sf)
{
	int64_t at = ferry__sftp_io_deadline(sf);
	if (at && ferry__now_ms() >= at)
		io_expired(sf);
}

int ferry__sftp_step(ferry__sftp *sf)
{
	int progress = 0, rc;
	if (sf->dead || sf->state == SFTP_NEW)
		return 0;
	sf->kicked = 0;
	flush(sf);
	if ((rc = do_send(sf)) < 0)
		return 1;
	progress |= rc;
	if ((rc = do_recv(sf)) < 0)
		return 1;
	progress |= rc;
	if (progress) {
		/* Replies may have queued follow-ups: out with them now. */
		flush(sf);
		if ((rc = do_send(sf)) < 0)
			return 1;
	} else {
		io_check(sf);
		if (sf->dead)
			return 1;
	}
	return progress;
}

/* ---- lifecycle ------------------------------------------------------------
 */

int ferry__sftp_new(ferry__sftp **out, ferry__sftp_transport *t,
                    ferry_session *s, const ferry__sftp_opts *opts)
{
	*out = NULL;
	ferry__sftp *sf = ferry__calloc(1, sizeof(*sf));
	if (!sf) {
		t->free(t);
		return FERRY_ENOMEM;
	}
	if (opts && opts->wrap) {
		/* A transport around the transport (the tests' latency). */
		ferry__sftp_transport *w = opts->wrap(t, opts->wrap_ctx);
		if (!w) {
			t->free(t);
			ferry__free(sf);
			return FERRY_ENOMEM;
		}
		t = w;
	}
	sf->t = t;
	t->sf = sf;
	sf->session = s;
	if (opts)
		sf->opts = *opts;
	sf->rt = s ? &s->round_trips : &sf->own_rt;
	sf->io_timeout = sf->opts.io_timeout_ms;
	if (!sf->io_timeout && s)
		sf->io_timeout = s->opts.io_timeout_ms;
	if (!sf->io_timeout)
		sf->io_timeout = DEFAULT_IO_TIMEOUT;
	if (sf->io_timeout < 0)
		sf->io_timeout = 0;
	sf->window_fixed = sf->opts.window_bytes != 0;
	sf->window = sf->window_fixed ? sf->opts.window_bytes : WINDOW_FLOOR;
	sf->next_id = 1;
	ferry__sftp_limits_info none = {0, 0, 0, 0};
	apply_limits(sf, &none);
	sf->in.max = FERRY__SFTP_MAX_IN_PACKET + RECV_CHUNK * 2;
	sf->table_size = 0;
	table_grow(sf);
	if (!sf->table) {
		ferry__sftp_free(sf);
		return FERRY_ENOMEM;
	}
	*out = sf;
	return 0;
}

int ferry__sftp_start(ferry__sftp *sf)
{
	uint8_t init[9];
	int error;
	if (sf->state != SFTP_NEW)
		return FERRY_EINVALID;
	if (sf->dead)
		return sf->dead;
	ferry__poke_u32(init, 5);
	init[4] = FERRY__FXP_INIT;
	ferry__poke_u32(init + 5, 3);
	if ((error = ferry__buf_put(&sf->out, init, sizeof(init))))
		return error;
	sf->state = SFTP_INIT_SENT;
	sf->progress_ms = ferry__now_ms();
	sf->init_gen = ferry__sftp__next_gen(sf);
	/* Requests submitted while the channel was opening go out right
	 * behind INIT: their answers complete INIT's round trip, not an
	 * earlier one. */
	ferry__sftp_queue *qs[] = {&sf->qpath, &sf->qhandle};
	for (size_t i = 0; i < 2; i++)
		for (ferry__sftp_req *r = qs[i]->head; r; r = r->next)
			if (r->gen < sf->init_gen)
				r->gen = sf->init_gen;
	if (!(sf->opts.ignore_ext & FERRY__EXT_LIMITS)) {
		/* Pipelined behind INIT: OpenSSH answers in order, and a
		 * server without it answers SSH_FX_OP_UNSUPPORTED. */
		error = ferry__sftp_limits(sf, limits_cb, sf);
		if (!error)
			sf->limits_pending = 1;
	}
	/* The login directory (ferry_session_info.home), in the same round
	 * trip: every SFTP v3 server has REALPATH.  Not having it is no
	 * failure of the channel (ferry_session_home asks again). */
	if (!error)
		(void)ferry__sftp_ask_home(sf);
	return error;
}

static int init_done(void *ctx)
{
	return ferry__sftp_ready(ctx);
}

int ferry__sftp_init(ferry__sftp *sf, int64_t deadline_ms)
{
	int error = 0;
	if (sf->state == SFTP_NEW && (error = ferry__sftp_start(sf)))
		return error;
	error = ferry__sftp_run(sf, init_done, sf, deadline_ms);
	if (error == FERRY_ETIMEOUT)
		ferry__sftp_seterr(sf, error,
		                   "SFTP init: no answer from the server");
	return error;
}

void ferry__sftp_free(ferry__sftp *sf)
{
	if (!sf)
		return;
	if (!sf->dead) {
		/* Callbacks learn that their requests are gone. */
		sf->cancelling = FERRY_ECONN;
		fail_all(sf, FERRY_ECONN, "SFTP client closed", 0);
	}
	for (size_t i = 0; i < sf->table_size; i++) {
		while (sf->table[i]) {
			ferry__sftp_req *r = sf->table[i];
			sf->table[i] = r->hnext;
			ferry__free(r);
		}
	}
	/* CLOSEs queued by callbacks during the last rites. */
	ferry__sftp_req *r;
	while ((r = q_pop(&sf->qpath)) || (r = q_pop(&sf->qhandle)))
		ferry__free(r);
	if (sf->t)
		sf->t->free(sf->t);
	hp_clear(sf);
	ferry__free(sf->table);
	ferry__buf_free(&sf->out);
	ferry__buf_free(&sf->in);
	ferry__free(sf);
}

/* ---- running ----------------------------------------------------------------
 */

static int idle(const ferry__sftp *sf)
{
	return !sf->qpath.count && !sf->qhandle.count && !sf->table_count &&
	       !sf->jobs;
}

typedef struct run_ctx {
	ferry__sftp *sf;
	int (*done)(void *);
	void *ctx;
} run_ctx;

static int run_check(void *v)
{
	run_ctx *rc = v;
	if (rc->done ? rc->done(rc->ctx) : idle(rc->sf))
		return 1;
	return rc->sf->dead != 0;
}

int ferry__sftp_run(ferry__sftp *sf, int (*done)(void *ctx), void *ctx,
                    int64_t deadline_ms)
{
	run_ctx rc = {sf, done, ctx};
	if (sf->in_cb)
		return FERRY_EINVALID;
	int error = 0;
	if (!run_check(&rc))
		error = sf->t->run(sf->t, run_check, &rc, deadline_ms);
	if (done ? done(ctx) : idle(sf) && !sf->dead)
		return 0;
	if (sf->dead)
		return sf->dead;
	return error ? error : FERRY_ERROR;
}

void ferry__sftp_trim(ferry__sftp *sf)
{
	if (!sf)
		return;
	if (!sf->hp_n)
		hp_clear(sf);
	if (!sf->table_count && sf->table_size > 256) {
		ferry__sftp_req **t = ferry__calloc(256, sizeof(*t));
		if (t) {
			ferry__free(sf->table);
			sf->table = t;
			sf->table_size = 256;
		}
	}
	if (!ferry__buf_avail(&sf->out) && sf->out.cap > RECV_CHUNK) {
		size_t max = sf->out.max;
		ferry__buf_free(&sf->out);
		sf->out.max = max;
	}
	if (!ferry__buf_avail(&sf->in) && sf->in.cap > RECV_CHUNK) {
		size_t max = sf->in.max;
		ferry__buf_free(&sf->in);
		sf->in.max = max;
	}
}

size_t ferry__sftp_pending(const ferry__sftp *sf)
{
	return sf->qpath.count + sf->qhandle.count + sf->table_count + sf->jobs;
}

size_t ferry__sftp_queued_bytes(const ferry__sftp *sf)
{
	return sf->queued_bytes;
}

/* ---- information ------------------------------------------------------------
 */

int ferry__sftp_ready(const ferry__sftp *sf)
{
	return sf->state == SFTP_READY && !sf->limits_pending && !sf->dead;
}

int ferry__sftp_dead(const ferry__sftp *sf)
{
	return sf->dead;
}

const char *ferry__sftp_errmsg(const ferry__sftp *sf)
{
	return sf->errmsg;
}

unsigned ferry__sftp_extensions(const ferry__sftp *sf)
{
	return sf->ext;
}

int ferry__sftp_has(const ferry__sftp *sf, unsigned ext)
{
	return (sf->ext & ext) == ext;
}

void ferry__sftp_limits_get(const ferry__sftp *sf, ferry__sftp_limits_info *out)
{
	*out = sf->limits;
}

uint64_t ferry__sftp_round_trips(const ferry__sftp *sf)
{
	return *sf->rt;
}

void ferry__sftp_stats_get(const ferry__sftp *sf, ferry__sftp_stats *out)
{
	*out = sf->stats;
}
