#include "sync_test.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fixture.h"

void st_text_add(st_text *t, const char *s, size_t n)
{
	if (t->len + n + 1 > t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 256;
		while (ncap < t->len + n + 1)
			ncap *= 2;
		t->s = realloc(t->s, ncap);
		cr_assert(t->s);
		t->cap = ncap;
	}
	memcpy(t->s + t->len, s, n);
	t->len += n;
	t->s[t->len] = '\0';
}

void st_text_free(st_text *t)
{
	free(t->s);
	memset(t, 0, sizeof(*t));
}

char *st_dir(const char *tag)
{
	char *d = fx_tmpdir(tag);
	cr_assert(d, "tmpdir");
	return d;
}

char *st_path(const char *dir, const char *rel)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "%s/%s", dir, rel) > 0);
	return p;
}

void st_write(const char *dir, const char *rel, const char *content,
              unsigned mode)
{
	char *p = st_path(dir, rel);
	cr_assert_eq(fx_write_file(p, content, strlen(content), mode), 0,
	             "write %s", p);
	free(p);
}

void st_mkdir(const char *dir, const char *rel, unsigned mode)
{
	char *p = st_path(dir, rel);
	cr_assert_eq(mkdir(p, mode), 0, "mkdir %s", p);
	chmod(p, mode);
	free(p);
}

void st_tree(const char *dir, const char *const *spec)
{
	for (; *spec; spec++) {
		const char *s = *spec, *eq = strchr(s, '='),
		           *to = strstr(s, "->");
		int file = eq && (!to || eq < to);
		const char *end = file ? eq : to ? to : s + strlen(s) - 1;
		cr_assert(file || to || *end == '/', "tree entry %s", s);
		char *rel = strndup(s, (size_t)(end - s));
		if (file) {
			st_write(dir, rel, eq + 1, 0644);
		} else if (to) {
			char *p = st_path(dir, rel);
			cr_assert_eq(symlink(to + 2, p), 0, "symlink %s", p);
			free(p);
		} else {
			st_mkdir(dir, rel, 0755);
		}
		free(rel);
	}
}

void st_set_mtime(const char *dir, const char *rel, int64_t sec, long nsec)
{
	char *p = st_path(dir, rel);
	struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)sec, nsec}};
	cr_assert_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
	free(p);
}

static void log_to_text(void *ctx, int level, const char *msg)
{
	st_target *t = ctx;
	char head[16];
	snprintf(head, sizeof(head), "[%d] ", level);
	st_text_add(&t->log, head, strlen(head));
	st_text_add(&t->log, msg, strlen(msg));
	st_text_add(&t->log, "\n", 1);
}

void st_target_init(st_target *t, const char *state, const char *src)
{
	memset(t, 0, sizeof(*t));
	t->state = state;
	t->sources[0] = src;
	t->nsrc = 1;
	ferry_sync_opts o = FERRY_SYNC_OPTS_INIT;
	t->o = o;
	t->o.sources = t->sources;
	t->o.source_count = 1;
	t->o.dest = "dst";
	t->o.state_dir = state;
	t->o.log = log_to_text;
	t->o.ctx = t;
	ferry_session_opts c = FERRY_SESSION_OPTS_INIT;
	t->conn = c;
	t->conn.host = "h.example";
	t->conn.user = "u";
}

void st_plan(st_target *t, ferry__local *l, ferry_sync_report *r)
{
	char err[512] = "";
	t->o.sources = t->sources;
	t->o.source_count = t->nsrc;
	int rc = ferry__local_plan(l, t->conn.user, t->conn.host, t->conn.port,
	                           &t->o, 0, r, err, sizeof(err));
	cr_assert_eq(rc, 0, "local plan: %s (%s)", ferry_strerror(rc), err);
}

size_t st_push(st_target *t, int64_t stat_ns_shift)
{
	ferry__local l;
	ferry_sync_report r = {0};
	char err[512];
	st_plan(t, &l, &r);
	size_t visible = 0;
	for (size_t i = 0; i < l.plan->n; i++) {
		ferry__action *a = &l.plan->a[i];
		a->committed = 1;
		if (a->kind == FERRY__ACT_UPLOAD)
			ferry__action_hash_local(l.plan, a);
		visible += ferry__action_visible(a);
	}
	cr_assert_eq(ferry__plan_apply(l.plan, l.m), 0);
	l.m->stat_ns += stat_ns_shift;
	int rc = ferry__manifest_save(l.m, l.paths.manifest, err, sizeof(err));
	cr_assert_eq(rc, 0, "save: %s", err);
	ferry__local_free(&l);
	ferry_sync_report_free(&r);
	return visible;
}

static void on_change_text(void *ctx, const ferry_change *c)
{
	st_text *t = ctx;
	char line[16384];
	size_t n = ferry_change_itemize(line, sizeof(line), c);
	cr_assert_lt(n, sizeof(line));
	st_text_add(t, line, n);
	st_text_add(t, "\n", 1);
}

char *st_status(st_target *t, int *rc, ferry_sync_report *r)
{
	st_text out = {0};
	ferry_sync_report tmp = {0};
	char err[512];
	st_text_add(&out, "", 0);
	t->o.sources = t->sources;
	t->o.source_count = t->nsrc;
	t->o.on_change = on_change_text;
	void *save_ctx = t->o.ctx;
	/* on_change and log share ctx: route both through a small shim. */
	t->o.ctx = &out;
	ferry_log_fn save_log = t->o.log;
	t->o.log = NULL;
	int code = ferry_sync_status(&t->conn, &t->o, r ? r : &tmp, err,
	                             sizeof(err));
	t->o.log = save_log;
	t->o.ctx = save_ctx;
	t->o.on_change = NULL;
	if (rc)
		*rc = code;
	else
		cr_assert_eq(code, 0, "status: %s (%s)", ferry_strerror(code),
		             err);
	ferry_sync_report_free(&tmp);
	return out.s;
}

ferry__manifest *st_load(st_target *t)
{
	ferry__sync_paths p;
	cr_assert_eq(ferry__sync_paths_new(&p, t->conn.user, t->conn.host,
	                                   t->conn.port, t->o.dest, t->state),
	             0);
	ferry__manifest *m = NULL;
	cr_assert_eq(ferry__manifest_load(&m, p.manifest, p.target, p.dest,
	                                  t->o.log, t->o.ctx),
	             0);
	ferry__sync_paths_free(&p);
	return m;
}

void st_assert_changes(const ferry_sync_report *r, uint64_t files_uploaded,
                       uint64_t files_updated, uint64_t files_deleted,
                       uint64_t dirs_created, uint64_t dirs_deleted,
                       uint64_t symlinks_created)
{
	const struct {
		const char *name;
		uint64_t got, want;
	} c[] = {{"files uploaded", r->files_uploaded, files_uploaded},
	         {"files updated", r->files_updated, files_updated},
	         {"files deleted", r->files_deleted, files_deleted},
	         {"dirs created", r->dirs_created, dirs_created},
	         {"dirs deleted", r->dirs_deleted, dirs_deleted},
	         {"symlinks created", r->symlinks_created, symlinks_created}};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		if (c[i].want != ST_ANY)
			cr_assert_eq(c[i].got, c[i].want, "%s: %llu, not %llu",
			             c[i].name, (unsigned long long)c[i].got,
			             (unsigned long long)c[i].want);
}

void st_drop_dac(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	cr_assert_eq(syscall(SYS_capget, &h, d), 0);
	d[0].effective &= ~((1u << CAP_DAC_OVERRIDE) |
	                    (1u << CAP_DAC_READ_SEARCH) | (1u << CAP_FOWNER));
	cr_assert_eq(syscall(SYS_capset, &h, d), 0);
}
