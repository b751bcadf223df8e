#include "push_helpers.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "sync/target.h"

static void ph_log(void *ctx, int level, const char *msg)
{
	ph_env *e = ctx;
	int n = snprintf(e->log + e->loglen, sizeof(e->log) - e->loglen,
	                 "[%d] %s\n", level, msg);
	if (n > 0 && (size_t)n < sizeof(e->log) - e->loglen)
		e->loglen += (size_t)n;
}

void ph_init_on(ph_env *e, const char *tag, const fx_sshd *sv, int connect)
{
	memset(e, 0, sizeof(*e));
	e->sv = sv ? sv : fx_shared();
	e->base = fx_tmpdir(tag);
	cr_assert(e->base, "tmpdir");
	e->src = ph_path(e->base, "src");
	e->dst = ph_path(e->base, "remote/dst");
	e->state = ph_path(e->base, "state");
	cr_assert_eq(mkdir(e->src, 0755), 0);
	char *r = ph_path(e->base, "remote");
	cr_assert_eq(mkdir(r, 0755), 0);
	free(r);
	snprintf(e->srcarg, sizeof(e->srcarg), "%s/", e->src);
	e->sources[0] = e->srcarg;
	ferry_sync_opts o = FERRY_SYNC_OPTS_INIT;
	e->o = o;
	e->o.sources = e->sources;
	e->o.source_count = 1;
	e->o.dest = e->dst;
	e->o.state_dir = e->state;
	e->o.log = ph_log;
	e->o.ctx = e;
	if (connect)
		e->s = fx_connect(e->sv);
}

void ph_init(ph_env *e, const char *tag)
{
	ph_init_on(e, tag, NULL, 1);
}

void ph_fini(ph_env *e)
{
	if (e->s)
		ferry_session_close(e->s);
	if (e->base)
		fx_sh("chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", e->base,
		      e->base);
	free(e->src);
	free(e->dst);
	free(e->state);
	free(e->base);
	memset(e, 0, sizeof(*e));
}

void ph_reconnect(ph_env *e)
{
	if (e->s)
		ferry_session_close(e->s);
	e->s = fx_connect(e->sv);
}

int ph_push(ph_env *e, ferry_sync_report *r)
{
	memset(r, 0, sizeof(*r));
	e->loglen = 0;
	e->log[0] = '\0';
	return ferry_sync(e->s, &e->o, r);
}

void ph_push_ok(ph_env *e, ferry_sync_report *r)
{
	ferry_sync_report tmp;
	if (!r)
		r = &tmp;
	int rc = ph_push(e, r);
	cr_assert_eq(rc, 0, "push: %s: %s\nlog:\n%s", ferry_strerror(rc),
	             ferry_session_errmsg(e->s), e->log);
	if (r == &tmp)
		ferry_sync_report_free(&tmp);
}

char *ph_path(const char *dir, const char *rel)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "%s/%s", dir, rel) > 0);
	return p;
}

void ph_write(const char *dir, const char *rel, const char *content,
              mode_t mode, long mtime)
{
	char *p = ph_path(dir, rel);
	unlink(p);
	cr_assert_eq(fx_write_file(p, content, strlen(content), mode), 0,
	             "write %s: %s", p, strerror(errno));
	cr_assert_eq(chmod(p, mode), 0);
	if (mtime) {
		struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
		cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
	}
	free(p);
}

void ph_mkdir(const char *dir, const char *rel, mode_t mode)
{
	char *p = ph_path(dir, rel);
	cr_assert_eq(mkdir(p, mode), 0, "mkdir %s: %s", p, strerror(errno));
	cr_assert_eq(chmod(p, mode), 0);
	free(p);
}

void ph_symlink(const char *dir, const char *rel, const char *target)
{
	char *p = ph_path(dir, rel);
	cr_assert_eq(symlink(target, p), 0, "symlink %s", p);
	free(p);
}

int ph_exists(const char *dir, const char *rel)
{
	char *p = ph_path(dir, rel);
	struct stat st;
	int r = lstat(p, &st) == 0;
	free(p);
	return r;
}

char *ph_read(const char *dir, const char *rel)
{
	char *p = ph_path(dir, rel);
	char *c = fx_read_file(p, NULL);
	free(p);
	return c;
}

static uint64_t rng;
static uint64_t next_rand(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void ph_skills_tree(const char *dir, int nfiles, unsigned seed)
{
	rng = seed * 7919u + 17;
	int ndirs = nfiles / 6 + 1;
	char **dirs = calloc((size_t)ndirs, sizeof(*dirs));
	cr_assert(dirs);
	ph_mkdir(dir, "skills", 0755);
	dirs[0] = strdup("skills");
	for (int i = 1; i < ndirs; i++) {
		const char *parent = dirs[next_rand() % (uint64_t)i];
		int depth = 0;
		for (const char *c = parent; *c; c++)
			depth += *c == '/';
		if (depth >= 3)
			parent = dirs[0];
		cr_assert(asprintf(&dirs[i], "%s/skill-%02d", parent, i) > 0);
		ph_mkdir(dir, dirs[i], 0755);
	}
	char *buf = malloc(12289);
	cr_assert(buf);
	for (int i = 0; i < nfiles; i++) {
		const char *d = dirs[next_rand() % (uint64_t)ndirs];
		size_t len = 200 + next_rand() % 12000;
		for (size_t k = 0; k < len; k++)
			buf[k] = (char)('a' + (next_rand() % 26));
		buf[len] = '\0';
		char *rel = NULL;
		cr_assert(asprintf(&rel, "%s/%s-%03d.md", d,
		                   i % 3 ? "SKILL" : "notes", i) > 0);
		ph_write(dir, rel, buf, i % 7 == 0 ? 0755 : 0644,
		         1700000000L + i);
		free(rel);
	}
	ph_symlink(dir, "skills/latest", "skill-01");
	ph_symlink(dir, "skills/readme-link.md", "../creds/README");
	ph_mkdir(dir, "creds", 0700);
	ph_write(dir, "creds/README", "credentials live here\n", 0644,
	         1700000000L);
	ph_write(dir, "creds/token.json", "{\"token\": \"s3cr3t\"}\n", 0600,
	         1700000100L);
	ph_write(dir, "creds/id_key", "-----BEGIN KEY-----\nxyz\n", 0600,
	         1700000200L);
	ph_write(dir, "creds/.netrc", "machine x login y password z\n", 0600,
	         1700000300L);
	for (int i = 0; i < ndirs; i++)
		free(dirs[i]);
	free(dirs);
	free(buf);
}

/* ---- listings ---- */

typedef struct lines {
	char **v;
	size_t n, cap;
} lines;

static void lines_add(lines *l, char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		cr_assert(l->v);
	}
	l->v[l->n++] = s;
}

const char *ph_marker;

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk(const char *root, const char *rel, lines *out)
{
	char *dir = rel[0] ? ph_path(root, rel) : strdup(root);
	DIR *d = opendir(dir);
	cr_assert(d, "opendir %s", dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!rel[0] && (!strcmp(de->d_name, ".ferry-id") ||
		                (ph_marker && !strcmp(de->d_name, ph_marker))))
			continue;
		char *r = NULL;
		if (rel[0])
			cr_assert(asprintf(&r, "%s/%s", rel, de->d_name) > 0);
		else
			r = strdup(de->d_name);
		char *p = ph_path(root, r);
		struct stat st;
		cr_assert_eq(lstat(p, &st), 0);
		char *line = NULL;
		if (S_ISDIR(st.st_mode)) {
			cr_assert(asprintf(&line, "%s d %04o %lld", r,
			                   (unsigned)(st.st_mode & 07777),
			                   (long long)st.st_mtim.tv_sec) > 0);
			lines_add(out, line);
			walk(root, r, out);
		} else if (S_ISLNK(st.st_mode)) {
			char t[4096];
			ssize_t n = readlink(p, t, sizeof(t) - 1);
			cr_assert(n >= 0);
			t[n] = '\0';
			cr_assert(asprintf(&line, "%s l -> %s", r, t) > 0);
			lines_add(out, line);
		} else {
			size_t len = 0;
			char *c = fx_read_file(p, &len);
			cr_assert(c || st.st_size == 0, "read %s", p);
			XXH128_hash_t h = XXH3_128bits(c ? c : "", len);
			free(c);
			cr_assert(asprintf(&line,
			                   "%s f %04o %lld %lld %016llx%016llx",
			                   r, (unsigned)(st.st_mode & 07777),
			                   (long long)st.st_mtim.tv_sec,
			                   (long long)st.st_size,
			                   (unsigned long long)h.high64,
			                   (unsigned long long)h.low64) > 0);
			lines_add(out, line);
		}
		free(p);
		free(r);
	}
	closedir(d);
	free(dir);
}

char *ph_tree_listing(const char *dir)
{
	lines l = {0};
	walk(dir, "", &l);
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmp_str);
	size_t total = 1;
	for (size_t i = 0; i < l.n; i++)
		total += strlen(l.v[i]) + 1;
	char *s = malloc(total);
	cr_assert(s);
	size_t k = 0;
	for (size_t i = 0; i < l.n; i++) {
		size_t n = strlen(l.v[i]);
		memcpy(s + k, l.v[i], n);
		s[k + n] = '\n';
		k += n + 1;
		free(l.v[i]);
	}
	s[k] = '\0';
	free(l.v);
	return s;
}

void ph_assert_same(const char *src, const char *dst)
{
	char *a = ph_tree_listing(src);
	char *b = ph_tree_listing(dst);
	if (strcmp(a, b) != 0) {
		FILE *f = fopen("/tmp/ferry-push-diff.txt", "w");
		if (f) {
			fprintf(f, "--- local %s\n%s\n--- remote %s\n%s", src,
			        a, dst, b);
			fclose(f);
		}
	}
	cr_assert_str_eq(a, b,
	                 "remote tree differs (see "
	                 "/tmp/ferry-push-diff.txt)");
	free(a);
	free(b);
}

static int count_temps(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		size_t l = strlen(de->d_name);
		if (de->d_name[0] == '.' && l > 14 &&
		    !memcmp(de->d_name + l - 13, ".ferry-", 7))
			n++;
		char *p = ph_path(dir, de->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			n += count_temps(p);
		free(p);
	}
	closedir(d);
	return n;
}

int ph_count_temps(const char *dir)
{
	return count_temps(dir);
}

char *ph_state_file(ph_env *e, const char *suffix)
{
	DIR *d = opendir(e->state);
	if (!d)
		return NULL;
	struct dirent *de;
	char *found = NULL;
	size_t sl = strlen(suffix);
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l > sl && !strcmp(de->d_name + l - sl, suffix)) {
			found = ph_path(e->state, de->d_name);
			break;
		}
	}
	closedir(d);
	return found;
}

char *ph_manifest_bytes(ph_env *e, size_t *len)
{
	char *p = ph_state_file(e, ".manifest");
	if (!p)
		return NULL;
	char *c = fx_read_file(p, len);
	free(p);
	return c;
}

ferry__manifest *ph_load_manifest(ph_env *e)
{
	ferry__sync_paths p;
	cr_assert_eq(ferry__sync_paths_new(&p, NULL, "127.0.0.1", e->sv->port,
	                                   e->dst, e->state),
	             0);
	ferry__manifest *m = NULL;
	cr_assert_eq(ferry__manifest_load(&m, p.manifest, p.target, p.dest,
	                                  NULL, NULL),
	             0);
	ferry__sync_paths_free(&p);
	return m;
}

int ph_is_root(void)
{
	return geteuid() == 0;
}

#define TEST_USER "ferrytest"

const char *ph_test_user(void)
{
	if (!ph_is_root())
		return getpwnam(TEST_USER) ? TEST_USER : NULL;
	/* Not locked ("*": no password) or sshd refuses its keys. */
	if (!getpwnam(TEST_USER))
		fx_sh("useradd -m -p '*' -s /bin/sh " TEST_USER
		      " >/dev/null 2>&1");
	else
		fx_sh("usermod -p '*' " TEST_USER " >/dev/null 2>&1");
	return getpwnam(TEST_USER) ? TEST_USER : NULL;
}

void ph_connect_as(ph_env *e, const char *user)
{
	if (e->s)
		ferry_session_close(e->s);
	ferry_session_opts o;
	fx_opts(e->sv, &o);
	o.user = user;
	char err[512] = "";
	int rc = ferry_session_open_ex(&e->s, &o, err, sizeof(err));
	cr_assert_eq(rc, 0, "connect as %s: %s", user, err);
}
