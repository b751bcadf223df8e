/* status and push share one local half: for random mutations of a tree
 * (touch, edit, same-size replace, delete, type change, mode change, an
 * exclude added), the changes `ferry status` lists, those a dry-run push
 * lists and those the real push then makes are the same list, and after
 * the push status lists nothing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "push_helpers.h"

#define ROUNDS 14
#define LINES  8192

static const char *const names[] = {"a",   "b",     "c", "d/x",   "d/y",
                                    "e/z", "e/f/w", "g", "h/i/j", "k"};
#define NNAMES (sizeof(names) / sizeof(names[0]))

/* The changes one call reported, as sorted itemize lines. */
typedef struct changes {
	char *line[256];
	size_t n;
} changes;

static changes *collecting;

static void on_change(void *ctx, const ferry_change *c)
{
	(void)ctx;
	char buf[1024];
	ferry_change_itemize(buf, sizeof(buf), c);
	cr_assert_lt(collecting->n, 256);
	char *l = NULL;
	cr_assert(asprintf(&l, "%s%s", buf, c->error ? " (failed)" : "") > 0);
	collecting->line[collecting->n++] = l;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The list as text, sorted, freeing its lines. */
static char *text_of(changes *c)
{
	char *out = calloc(1, LINES);
	cr_assert_not_null(out);
	qsort(c->line, c->n, sizeof(c->line[0]), cmp);
	for (size_t i = 0; i < c->n; i++) {
		size_t l = strlen(out);
		snprintf(out + l, LINES - l, "%s\n", c->line[i]);
		free(c->line[i]);
	}
	c->n = 0;
	return out;
}

static uint64_t rng;
static unsigned next(unsigned n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)((rng >> 33) % n);
}

static long stamp = 1600000000; /* mtimes in the past: never racy */

static void set_mtime(const char *p)
{
	struct timespec ts[2] = {{stamp, 0}, {stamp, 0}};
	stamp += 7;
	int rc = utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
	cr_assert_eq(rc, 0, "utimensat %s: %s", p, strerror(errno));
}

static void write_at(const char *p, const char *text, mode_t mode)
{
	cr_assert_eq(fx_sh("mkdir -p \"$(dirname '%s')\"", p), 0);
	cr_assert_eq(fx_write_file(p, text, strlen(text), mode), 0, "%s: %s", p,
	             strerror(errno));
	set_mtime(p);
}

/* One mutation of names[i]; a line for the failure message. */
static void mutate(ph_env *e, unsigned i, unsigned op, int round, char *what,
                   size_t wsize, size_t *nex)
{
	char *p = ph_path(e->src, names[i]), body[64];
	struct stat st;
	int is_file = lstat(p, &st) == 0 && S_ISREG(st.st_mode);
	int is_dir = lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
	static const char *const opname[] = {"touch",  "edit", "same-size",
	                                     "delete", "type", "mode",
	                                     "exclude"};
	snprintf(what + strlen(what), wsize - strlen(what), " %s:%s",
	         opname[op], names[i]);
	if (op == 0 && is_file) {
		set_mtime(p);
	} else if (op == 1 || (op <= 2 && !is_file)) {
		cr_assert_eq(fx_sh("rm -rf '%s'", p), 0); /* a dir: a file */
		snprintf(body, sizeof(body), "edit %d of %s%*s", round,
		         names[i], (int)next(9), "");
		write_at(p, body, 0644);
	} else if (op == 2 && is_file) {
		char *old = fx_read_file(p, NULL);
		cr_assert_not_null(old);
		for (char *c = old; *c; c++)
			*c = *c == 'x' ? 'y' : 'x';
		write_at(p, old, st.st_mode & 07777);
		free(old);
	} else if (op == 3) {
		cr_assert_eq(fx_sh("rm -rf '%s'", p), 0);
	} else if (op == 4) {
		cr_assert_eq(fx_sh("rm -rf '%s'", p), 0);
		if (is_file) {
			char *in = ph_path(p, "inner");
			write_at(in, "now a directory", 0644);
			free(in);
		} else {
			write_at(p, "now a file", 0644);
		}
	} else if (op == 5 && (is_file || is_dir)) {
		mode_t m = is_dir ? ((st.st_mode & 0777) == 0755 ? 0700 : 0755)
		                  : ((st.st_mode & 0777) == 0644 ? 0600 : 0644);
		cr_assert_eq(chmod(p, m), 0);
	} else if (op == 6 && *nex < 3) {
		/* Excluded from now on: status and push both leave it. */
		e->excludes[(*nex)++] = names[i];
		e->o.excludes = e->excludes;
		e->o.exclude_count = *nex;
	}
	free(p);
}

/* ferry_sync_status with the session's target. */
static char *status_list(ph_env *e, changes *c)
{
	ferry_session_opts conn;
	fx_opts(e->sv, &conn);
	ferry_sync_report r;
	memset(&r, 0, sizeof(r));
	char err[FERRY_ERRMSG_SIZE];
	collecting = c;
	int rc = ferry_sync_status(&conn, &e->o, &r, err, sizeof(err));
	cr_assert(rc == 0 || rc == FERRY_EPARTIAL, "status: %s", err);
	ferry_sync_report_free(&r);
	return text_of(c);
}

static char *push_list(ph_env *e, changes *c, int dry)
{
	ferry_sync_report r;
	e->o.dry_run = dry;
	collecting = c;
	int rc = ph_push(e, &r);
	cr_assert(rc == 0 || rc == FERRY_EPARTIAL, "push%s: %s: %s",
	          dry ? " -n" : "", ferry_strerror(rc),
	          ferry_session_errmsg(e->s));
	ferry_sync_report_free(&r);
	e->o.dry_run = 0;
	return text_of(c);
}

Test(equiv, status_dry_run_and_push_agree_under_random_mutations,
     .timeout = 600)
{
	ph_env e;
	changes c = {0};
	ph_init(&e, "equiv");
	e.o.delete_extraneous = 1;
	e.o.on_change = on_change;
	for (unsigned i = 0; i < NNAMES; i++) {
		char *p = ph_path(e.src, names[i]);
		write_at(p, names[i], 0644);
		free(p);
	}
	free(push_list(&e, &c, 0));
	unsigned seed = 20261202;
	rng = seed;
	size_t nex = 0;
	for (int round = 0; round < ROUNDS; round++) {
		char what[1024] = "";
		int n = 1 + (int)next(4);
		for (int k = 0; k < n; k++)
			mutate(&e, next(NNAMES), next(7), round, what,
			       sizeof(what), &nex);
		char *st = status_list(&e, &c);
		char *dry = push_list(&e, &c, 1);
		char *real = push_list(&e, &c, 0);
		char *after = status_list(&e, &c);
		cr_assert_str_eq(st, dry,
		                 "seed %u round %d (%s): status and push -n "
		                 "differ\nstatus:\n%s\npush -n:\n%s",
		                 seed, round, what, st, dry);
		cr_assert_str_eq(dry, real,
		                 "seed %u round %d (%s): push -n and push "
		                 "differ\npush -n:\n%s\npush:\n%s",
		                 seed, round, what, dry, real);
		cr_assert_str_empty(after,
		                    "seed %u round %d (%s): status after the "
		                    "push still lists:\n%s",
		                    seed, round, what, after);
		cr_assert(round > 0 || st[0] || !n, "round %d changed nothing",
		          round);
		free(st);
		free(dry);
		free(real);
		free(after);
	}
	ph_fini(&e);
}
