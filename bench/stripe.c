/*
 * stripe - a large upload over several SFTP channels of one session.
 * Links libferry's internals (lib/sftp.h): the library layer of striping,
 * measured before a push uses it.
 *
 *   stripe -h HOST -p PORT -i KEY -k KNOWN_HOSTS [-u USER]
 *          -f FILE -d REMOTE_DIR [-s STREAMS] [-n RUNS] [-b SNDBUF]
 *
 * STREAMS (default 4): the number of channels, the shared one included;
 * 0 is the plain one-channel upload (ferry__sftp_upload) for comparison.
 * Each run: the shared client OPENs REMOTE_DIR/.stripe-S-I.tmp with
 * CREAT|EXCL|WRITE (mode 0644); every channel (the shared one and S - 1
 * extra) writes its own contiguous range (ferry__sftp_write_range); the
 * shared client CLOSEs its handle and renames the temp to
 * REMOTE_DIR/stripe-S-I.  One line per run:
 *   ok S=S bytes=N ms=MS mibs=MIB_PER_S streams_ms=MS path=FINAL
 * (streams_ms: opening the extra channels, once per process, not timed in
 * ms; sndbuf: the socket's send buffer, fixed by -b, else autotuned). Failures:
 * "err CODE MESSAGE", exit 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"
#include "os.h"
#include "session.h"
#include "sftp.h"
#include "util.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int die_err(int code, const char *msg)
{
	printf("err %d %s: %s\n", code, ferry_strerror(code), msg);
	fflush(stdout);
	return 1;
}

static int file_fd = -1;

static int file_read(void *rctx, void *buf, size_t n, uint64_t off)
{
	(void)rctx;
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(file_fd, (char *)buf + done, n - done,
		                  (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return FERRY_EIO;
		done += (size_t)r;
	}
	return 0;
}

typedef struct waiter {
	int called, err;
	char msg[512];
	uint64_t bytes;
	ferry__sftp_handle h;
} waiter;

static void req_cb(void *ctx, const ferry__sftp_reply *r)
{
	waiter *w = ctx;
	w->called = 1;
	w->err = r->error;
	snprintf(w->msg, sizeof(w->msg), "%s", r->message);
	if (!r->error && r->handle)
		w->h = *r->handle;
}

static void range_cb(void *ctx, int err, const char *msg, uint64_t bytes)
{
	waiter *w = ctx;
	w->called = 1;
	w->err = err;
	w->bytes = bytes;
	snprintf(w->msg, sizeof(w->msg), "%s", msg);
}

static void upload_cb(void *ctx, const ferry__sftp_upload_result *r)
{
	waiter *w = ctx;
	w->called = 1;
	w->err = r->error;
	w->bytes = r->bytes;
	snprintf(w->msg, sizeof(w->msg), "%s", r->message);
}

typedef struct waiters {
	waiter *w;
	unsigned n;
} waiters;

static int all_called(void *ctx)
{
	waiters *ws = ctx;
	for (unsigned i = 0; i < ws->n; i++)
		if (!ws->w[i].called)
			return 0;
	return 1;
}

static int wait_all(ferry__sftp *sf, waiter *w, unsigned n)
{
	waiters ws = {w, n};
	int rc = ferry__sftp_run(sf, all_called, &ws, ferry__now_ms() + 600000);
	if (rc)
		return rc;
	for (unsigned i = 0; i < n; i++)
		if (w[i].err) {
			fprintf(stderr, "stripe: %s\n", w[i].msg);
			return w[i].err;
		}
	return 0;
}

/* One striped upload over sf[0..S-1]. */
static int striped(ferry__sftp **sf, unsigned S, const char *tmp,
                   const char *final, uint64_t size)
{
	ferry__sftp_attrs a;
	memset(&a, 0, sizeof(a));
	a.flags = FERRY__ATTR_PERMISSIONS;
	a.perm = 0644;
	waiter op;
	memset(&op, 0, sizeof(op));
	int rc = ferry__sftp_open(sf[0], tmp,
	                          FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                  FERRY__FXF_EXCL,
	                          &a, req_cb, &op);
	if (rc || (rc = wait_all(sf[0], &op, 1)))
		return rc;
	/* Contiguous ranges in whole MiB (the last one shorter). */
	uint64_t mib = (uint64_t)1 << 20;
	uint64_t chunk = (size / S + mib - 1) / mib * mib;
	waiter w[FERRY__SFTP_STREAMS_MAX + 1];
	memset(w, 0, sizeof(w));
	unsigned n = 0;
	for (unsigned i = 0; i < S; i++) {
		uint64_t off = chunk * i;
		if (off >= size && i)
			break;
		uint64_t len = size - off < chunk ? size - off : chunk;
		if ((rc = ferry__sftp_write_range(sf[i], tmp, off, len,
		                                  file_read, NULL, range_cb,
		                                  &w[n])))
			return rc;
		n++;
	}
	/* The creating handle goes back at once (the ranges have their own). */
	if ((rc = ferry__sftp_close(sf[0], &op.h, req_cb, &w[n])))
		return rc;
	n++;
	if ((rc = wait_all(sf[0], w, n)))
		return rc;
	waiter rn;
	memset(&rn, 0, sizeof(rn));
	int fallback = 0;
	if ((rc = ferry__sftp_rename_replace(sf[0], tmp, final, &fallback,
	                                     req_cb, &rn)))
		return rc;
	return wait_all(sf[0], &rn, 1);
}

static int plain(ferry__sftp *sf, const char *tmp, const char *final,
                 uint64_t size)
{
	waiter w;
	memset(&w, 0, sizeof(w));
	ferry__sftp_upload_opts o = {.path = tmp,
	                             .has_perm = 1,
	                             .perm = 0644,
	                             .fd = file_fd,
	                             .use_fd = 1,
	                             .size = size,
	                             .rename_to = final,
	                             .done = upload_cb,
	                             .ctx = &w};
	int rc = ferry__sftp_upload(sf, &o);
	return rc ? rc : wait_all(sf, &w, 1);
}

int main(int argc, char **argv)
{
	ferry_session_opts o = FERRY_SESSION_OPTS_INIT;
	const char *identity[1] = {NULL}, *file = NULL, *dir = NULL;
	unsigned S = 4, runs = 1;
	int sndbuf = 0;
	o.host = "127.0.0.1";
	o.host_key_policy = FERRY_HOSTKEY_STRICT;
	o.no_agent = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (conn_flag(&o, &identity[0], argv[i], argv[i + 1]))
			continue;
		if (!strcmp(argv[i], "-f"))
			file = argv[i + 1];
		else if (!strcmp(argv[i], "-d"))
			dir = argv[i + 1];
		else if (!strcmp(argv[i], "-s"))
			S = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "-b"))
			sndbuf = (int)strtol(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "-n"))
			runs = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else
			break;
	}
	if (!file || !dir || S > FERRY__SFTP_STREAMS_MAX + 1) {
		fprintf(stderr, "usage: stripe -h HOST -p PORT -i KEY "
		                "-k KNOWN_HOSTS [-u USER] -f FILE -d DIR "
		                "[-s STREAMS] [-n RUNS]\n");
		return 2;
	}
	if (identity[0]) {
		o.identity_files = identity;
		o.identity_count = 1;
	}
	struct stat st;
	if ((file_fd = open(file, O_RDONLY)) < 0 || fstat(file_fd, &st))
		return die_err(FERRY_EIO, strerror(errno));
	uint64_t size = (uint64_t)st.st_size;

	char err[512] = "";
	ferry_session *s = NULL;
	int rc = ferry_session_open_ex(&s, &o, err, sizeof(err));
	if (rc)
		return die_err(rc, err);
	/* -b: a fixed send buffer (the kernel doubles it, up to twice
	 * net.core.wmem_max) instead of autotuning's tcp_wmem maximum. */
	if (sndbuf > 0)
		setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
		           sizeof(sndbuf));
	ferry__sftp *sf[FERRY__SFTP_STREAMS_MAX + 1];
	if ((rc = ferry__session_sftp(s, &sf[0])))
		return die_err(rc, ferry_session_errmsg(s));
	double t0 = now_ms();
	if (S > 1 && (rc = ferry__session_sftp_streams(s, S - 1, sf + 1)))
		return die_err(rc, ferry_session_errmsg(s));
	double streams_ms = now_ms() - t0;
	int got = 0; /* after the streams, which may have grown it */
	socklen_t gl = sizeof(got);
	getsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &got, &gl);
	for (unsigned r = 0; r < runs; r++) {
		char tmp[4096], final[4096];
		snprintf(tmp, sizeof(tmp), "%s/.stripe-%u-%u.tmp", dir, S, r);
		snprintf(final, sizeof(final), "%s/stripe-%u-%u", dir, S, r);
		double t1 = now_ms();
		rc = S ? striped(sf, S, tmp, final, size)
		       : plain(sf[0], tmp, final, size);
		double ms = now_ms() - t1;
		if (rc)
			return die_err(rc, ferry_session_errmsg(s));
		printf("ok S=%u bytes=%llu ms=%.1f mibs=%.1f streams_ms=%.1f "
		       "sndbuf=%d path=%s\n",
		       S, (unsigned long long)size, ms,
		       (double)size / (1 << 20) / (ms / 1e3), streams_ms, got,
		       final);
		fflush(stdout);
	}
	ferry_session_close(s);
	close(file_fd);
	return 0;
}
