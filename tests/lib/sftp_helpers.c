#include "sftp_helpers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "fixture.h"
#include "sftp_int.h"
#include "sftp_mem.h"

char *sh_dir;

void sh_dir_new(const char *tag)
{
	sh_dir = fx_tmpdir(tag);
	cr_assert_not_null(sh_dir);
}

void sh_dir_free(void)
{
	free(sh_dir);
	sh_dir = NULL;
}

char *sh_path(const char *fmt, ...)
{
	static char bufs[8][1024];
	static int i;
	char *b = bufs[i++ & 7];
	char name[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	snprintf(b, sizeof(bufs[0]), "%s/%s", sh_dir, name);
	return b;
}

ferry__sftp *sh_pipe_argv(const char *const *argv, const ferry__sftp_opts *o)
{
	ferry__sftp_pipe_opts po;
	memset(&po, 0, sizeof(po));
	po.argv = argv;
	if (o)
		po.sftp = *o;
	ferry__sftp *sf = NULL;
	char err[512] = "";
	int rc = ferry__sftp_open_pipe(&sf, &po, err, sizeof(err));
	cr_assert_eq(rc, 0, "open_pipe: %s (%s)", ferry_strerror(rc), err);
	cr_assert_not_null(sf);
	return sf;
}

ferry__sftp *sh_pipe(const ferry__sftp_opts *o)
{
	return sh_pipe_argv(NULL, o);
}

ferry__sftp *sh_mem(const void *in, size_t len, size_t chunk, int eof,
                    const ferry__sftp_opts *o)
{
	fx_mem_tr *m = fx_mem_new(in, len, chunk, eof);
	cr_assert_not_null(m);
	ferry__sftp *sf = NULL;
	cr_assert_eq(ferry__sftp_new(&sf, &m->t, NULL, o), 0);
	return sf;
}

const uint8_t *sh_mem_sent(ferry__sftp *sf, size_t *len)
{
	fx_mem_tr *m = (fx_mem_tr *)sf->t;
	*len = m->sent.len;
	return m->sent.data;
}

size_t sh_version_pkt(uint8_t *out, size_t cap, uint32_t version,
                      const char *const *ext)
{
	ferry_buf b = FERRY_BUF_INIT;
	ferry__buf_put_u32(&b, 0);
	ferry__buf_put_u8(&b, FERRY__FXP_VERSION);
	ferry__buf_put_u32(&b, version);
	for (; ext && *ext; ext++) {
		ferry__buf_put_cstring(&b, *ext);
		ferry__buf_put_cstring(&b, "1");
	}
	ferry__buf_poke_u32(&b, 0, (uint32_t)(b.len - 4));
	cr_assert_leq(b.len, cap);
	memcpy(out, b.data, b.len);
	size_t n = b.len;
	ferry__buf_free(&b);
	return n;
}

void sh_fill(void *p, size_t n, uint64_t seed)
{
	uint8_t *d = p;
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t i = 0; i < n; i++) {
		if (!(i & 7)) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		d[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
}

XXH128_hash_t sh_hash_file(const char *path)
{
	XXH128_hash_t zero = {0, 0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return zero;
	XXH3_state_t *st = XXH3_createState();
	XXH3_128bits_reset(st);
	size_t cap = 1 << 20;
	uint8_t *buf = malloc(cap);
	ssize_t n;
	while (buf && (n = read(fd, buf, cap)) > 0)
		XXH3_128bits_update(st, buf, (size_t)n);
	free(buf);
	close(fd);
	XXH128_hash_t h = XXH3_128bits_digest(st);
	XXH3_freeState(st);
	return h;
}

int sh_hash_eq(XXH128_hash_t a, XXH128_hash_t b)
{
	return XXH128_isEqual(a, b);
}

int sh_is_root(void)
{
	return geteuid() == 0;
}

double sh_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

char *sh_make_file(size_t n, uint64_t seed)
{
	char *path = strdup(sh_path("source-%llu", (unsigned long long)seed));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	for (size_t off = 0; off < n; off += chunk) {
		size_t k = n - off < chunk ? n - off : chunk;
		sh_fill(buf, k, seed * 1000003 + off);
		cr_assert_eq(write(fd, buf, k), (ssize_t)k);
	}
	free(buf);
	close(fd);
	return path;
}

void sh_upload_text(ferry__sftp *sf, const char *tmp, const char *final,
                    const char *data, ferry__sftp_upload_result *r)
{
	ferry__sftp_upload_opts o = {.path = tmp,
	                             .rename_to = final,
	                             .data = data,
	                             .size = strlen(data)};
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, r), 0, "%s",
	             ferry__sftp_errmsg(sf));
}

double sh_upload_big(ferry__sftp *sf, const char *src, size_t n,
                     ferry__sftp_upload_opts *o, const char *how)
{
	int fd = open(src, O_RDONLY);
	cr_assert_geq(fd, 0);
	o->path = sh_path("big.tmp");
	o->rename_to = sh_path("big");
	o->use_fd = 1;
	o->fd = fd;
	o->size = n;
	ferry__sftp_upload_result r;
	double t0 = sh_now_ms();
	cr_assert_eq(ferry__sftp_upload_wait(sf, o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	double ms = sh_now_ms() - t0;
	close(fd);
	cr_assert_eq(r.bytes, n);
	cr_assert(r.renamed);
	cr_assert(!o->fsync || r.fsynced);
	cr_assert(sh_hash_eq(sh_hash_file(src), sh_hash_file(sh_path("big"))));
	fprintf(stderr, "[sftp bench] %zu MiB %s: %.0f MiB/s\n", n >> 20, how,
	        (double)(n >> 20) / (ms / 1000.0));
	return ms;
}

int sh_kill_reader(void *rctx, void *buf, size_t n, uint64_t off)
{
	sh_killer *k = rctx;
	sh_fill(buf, n, off);
	if (off >= k->at && !k->killed) {
		pid_t pid = k->pid;
		if (!pid) {
			char *t = fx_read_file(k->pidfile, NULL);
			cr_assert_not_null(t);
			pid = (pid_t)strtol(t, NULL, 10);
			free(t);
		}
		cr_assert_gt(pid, 1);
		cr_assert_eq(kill(pid, SIGKILL), 0);
		k->killed = 1;
	}
	return 0;
}
