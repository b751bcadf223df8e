/* sftp_stripe.c - one range of a file written over one client: the piece
 * of a striped upload that each of the session's channels carries. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "sftp.h"
#include "sftp_int.h"

#define RANGE_MSG 512

typedef struct range_job {
	ferry__sftp *sf;
	char *path;
	uint64_t next, end, acked;
	int (*read)(void *rctx, void *buf, size_t n, uint64_t off);
	void *rctx;
	ferry__sftp_range_cb done;
	void *ctx;
	ferry__sftp_handle h;
	unsigned outstanding; /* requests whose callback is to come */
	int gen_active, closed;
	int error;
	char msg[RANGE_MSG];
} range_job;

static void range_record(range_job *j, const char *step, int error,
                         const char *why)
{
	if (j->error)
		return;
	j->error = error ? error : FERRY_ERROR;
	snprintf(j->msg, sizeof(j->msg), "%s %s: %s", step, j->path,
	         why && *why ? why : ferry_strerror(j->error));
}

static void range_finish(range_job *j)
{
	ferry__sftp *sf = j->sf;
	j->done(j->ctx, j->error, j->error ? j->msg : "ok", j->acked);
	ferry__free(j->path);
	ferry__free(j);
	sf->jobs--;
}

/* Done when the handle is back and nothing more is to come. */
static void range_maybe_finish(range_job *j)
{
	if (j->closed && !j->outstanding && !j->gen_active)
		range_finish(j);
}

static void range_write_cb(void *ctx, const ferry__sftp_reply *r)
{
	range_job *j = ctx;
	j->outstanding--;
	if (r->error)
		range_record(j, "write", r->error, r->message);
	else
		j->acked += r->len;
	range_maybe_finish(j);
}

static void range_close_cb(void *ctx, const ferry__sftp_reply *r)
{
	range_job *j = ctx;
	j->outstanding--;
	j->closed = 1;
	if (r->error)
		range_record(j, "close", r->error, r->message);
	range_maybe_finish(j);
}

static int range_fill(void *fctx, uint8_t *dst, size_t n, uint64_t off)
{
	range_job *j = fctx;
	int err = j->read(j->rctx, dst, n, off);
	if (err)
		range_record(j, "read", err,
		             "reading the local content failed");
	return err;
}

/* The generator stopped; the CLOSE queued behind it (or its failure)
 * finishes the job. */
static void range_gen_done(range_job *j)
{
	j->gen_active = 0;
	if (j->closed)
		range_maybe_finish(j);
}

static int range_emit(ferry__sftp *sf, void *ctx, uint64_t gen)
{
	range_job *j = ctx;
	if (j->error || j->next >= j->end) {
		range_gen_done(j);
		return 2;
	}
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	uint64_t left = j->end - j->next;
	size_t len = left < l.max_write ? (size_t)left : (size_t)l.max_write;
	int rc = ferry__sftp__send_write(sf, gen, &j->h, j->next, len,
	                                 range_fill, j, range_write_cb, j);
	if (rc == 1) {
		j->next += len;
		j->outstanding++;
		return 1;
	}
	if (rc == 0)
		return 0;
	range_record(j, "write", rc, NULL); /* kept: a read error is first */
	range_gen_done(j);
	return 2;
}

static void range_gen_fail(void *ctx, int code, const char *msg)
{
	range_job *j = ctx;
	j->gen_active = 0;
	range_record(j, "write", code, msg);
	range_maybe_finish(j);
}

static void range_open_cb(void *ctx, const ferry__sftp_reply *r)
{
	range_job *j = ctx;
	ferry__sftp *sf = j->sf;
	int err;
	j->outstanding--;
	if (r->error) {
		range_record(j, "open", r->error, r->message);
		range_finish(j);
		return;
	}
	j->h = *r->handle;
	if (j->next < j->end) {
		ferry__sftp_gen g = {range_emit, range_gen_fail, j};
		if ((err = ferry__sftp__add_gen(sf, &g)))
			range_record(j, "write", err, NULL);
		else
			j->gen_active = 1;
	}
	/* Always, behind the writes: the handle must go back. */
	if ((err = ferry__sftp_close(sf, &j->h, range_close_cb, j))) {
		range_record(j, "close", err, NULL);
		j->closed = 1;
		range_maybe_finish(j);
		return;
	}
	j->outstanding++;
}

int ferry__sftp_write_range(ferry__sftp *sf, const char *path, uint64_t off,
                            uint64_t len,
                            int (*read)(void *rctx, void *buf, size_t n,
                                        uint64_t off),
                            void *rctx, ferry__sftp_range_cb done, void *ctx)
{
	int error;
	if (!sf || !path || !done || (len && !read) || off + len < off)
		return FERRY_EINVALID;
	if (sf->dead)
		return sf->dead;
	range_job *j = ferry__calloc(1, sizeof(*j));
	if (!j)
		return FERRY_ENOMEM;
	if (!(j->path = ferry__strdup(path))) {
		ferry__free(j);
		return FERRY_ENOMEM;
	}
	j->sf = sf;
	j->next = off;
	j->end = off + len;
	j->read = read;
	j->rctx = rctx;
	j->done = done;
	j->ctx = ctx;
	ferry__sftp_attrs a;
	memset(&a, 0, sizeof(a));
	/* WRITE only: a missing file is an error, never created here. */
	if ((error = ferry__sftp_open(sf, j->path, FERRY__FXF_WRITE, &a,
	                              range_open_cb, j))) {
		ferry__free(j->path);
		ferry__free(j);
		return error;
	}
	j->outstanding = 1;
	sf->jobs++;
	return 0;
}
