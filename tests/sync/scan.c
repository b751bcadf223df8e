/* Tests of sync/scan.c: listings, sources, symlinks, special files,
 * excludes, unreadable directories, hostile names. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "fixture.h"
#include "sync/exclude.h"
#include "sync/path.h"
#include "sync/scan.h"
#include "sync_test.h"

typedef struct listing {
	st_text text, log;
	int prune_dir; /* return PRUNE for directories named "prune" */
} listing;

static int collect(void *ctx, const ferry__scan_item *it)
{
	listing *l = ctx;
	char head[64];
	static const char types[] = "?fdl";
	st_text_add(&l->text, it->path, it->path_len);
	snprintf(head, sizeof(head), "\t%c", types[it->st.type]);
	st_text_add(&l->text, head, strlen(head));
	if (it->st.type == FERRY__T_FILE) {
		snprintf(head, sizeof(head), "\t%llu",
		         (unsigned long long)it->st.size);
		st_text_add(&l->text, head, strlen(head));
	}
	if (it->st.type == FERRY__T_LINK) {
		st_text_add(&l->text, "\t-> ", 4);
		st_text_add(&l->text, it->link, it->link_len);
	}
	st_text_add(&l->text, "\n", 1);
	if (l->prune_dir && it->st.type == FERRY__T_DIR &&
	    strcmp(it->name, "prune") == 0)
		return FERRY__SCAN_PRUNE;
	return 0;
}

static void log_text(void *ctx, int level, const char *msg)
{
	listing *l = ctx;
	(void)level;
	st_text_add(&l->log, msg, strlen(msg));
	st_text_add(&l->log, "\n", 1);
}

/* Scan sources with excludes; returns the listing (caller frees) and
 * fills *s_out when not NULL (caller frees). */
static char *scan_list(const char *const *src, size_t n, const char *const *ex,
                       size_t nex, listing *l, ferry_sync_report *r,
                       ferry__scan **s_out)
{
	ferry__excludes *e = NULL;
	cr_assert_eq(ferry__excludes_new(&e), 0);
	for (size_t i = 0; i < nex; i++)
		cr_assert_eq(ferry__excludes_add(e, ex[i]), 0);
	ferry__scan_opts o = {.sources = src,
	                      .source_count = n,
	                      .excludes = e,
	                      .log = log_text,
	                      .log_ctx = l,
	                      .report = r};
	ferry__scan *s = NULL;
	char err[256];
	cr_assert_eq(ferry__scan_new(&s, &o, err, sizeof(err)), 0, "%s", err);
	st_text_add(&l->text, "", 0);
	st_text_add(&l->log, "", 0);
	cr_assert_eq(ferry__scan_run(s, collect, l), 0);
	if (s_out)
		*s_out = s;
	else
		ferry__scan_free(s);
	ferry__excludes_free(e);
	return l->text.s;
}

static char *scan1(const char *src, listing *l)
{
	const char *v[] = {src};
	return scan_list(v, 1, NULL, 0, l, NULL, NULL);
}

/* The listing of the source d/rel alone (l's text emptied first). */
static const char *scan_rel(const char *d, const char *rel, listing *l)
{
	char *src = st_path(d, rel);
	st_text_free(&l->text);
	scan1(src, l);
	free(src);
	return l->text.s;
}

static void listing_free(listing *l)
{
	st_text_free(&l->text);
	st_text_free(&l->log);
}

/* ---- a generated tree against find(1) ---- */

static int line_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	size_t xl = strcspn(x, "\t"), yl = strcspn(y, "\t");
	return ferry__path_cmp(x, xl, y, yl);
}

Test(scan, generated_tree_matches_find_listing)
{
	char *d = st_dir("scan-gen");
	/* A deterministic tree: names chosen to stress the order ('.', '-',
	 * '_', digits, capitals sort around '/'). */
	static const char *names[] = {"a", "a.txt", "a-b", "a_b",
	                              "A", "b0",    "b.",  "z"};
	unsigned seed = 7;
	char rel[256];
	for (int i = 0; i < 8; i++) {
		snprintf(rel, sizeof(rel), "%s", names[i]);
		if (i % 3 == 0) {
			st_mkdir(d, rel, 0755);
			for (int j = 0; j < 8; j++) {
				snprintf(rel, sizeof(rel), "%s/%s", names[i],
				         names[j]);
				if (j % 4 == 1) {
					st_mkdir(d, rel, 0700);
					for (int k = 0; k < 3; k++) {
						char r2[300];
						snprintf(r2, sizeof(r2),
						         "%s/f%d", rel, k);
						seed = seed * 1103515245 +
						       12345;
						char content[200];
						memset(content, 'x',
						       seed % sizeof(content));
						content[seed %
						        sizeof(content)] = 0;
						st_write(d, r2, content, 0644);
					}
				} else {
					st_write(d, rel, rel, 0600);
				}
			}
		} else {
			st_write(d, rel, "top", 0640);
		}
	}
	listing l = {0};
	const char *got = scan_rel(d, "", &l);

	char *ref = fx_sh_out(
	        "cd '%s' && find . -mindepth 1 -printf '%%P\\t%%y\\t%%s\\n'",
	        d);
	cr_assert(ref);
	/* Sort find's lines in tree order; drop sizes of directories. */
	char *lines[512];
	size_t n = 0;
	for (char *p = strtok(ref, "\n"); p; p = strtok(NULL, "\n"))
		lines[n++] = p;
	qsort(lines, n, sizeof(lines[0]), line_cmp);
	st_text want = {0};
	st_text_add(&want, "", 0);
	for (size_t i = 0; i < n; i++) {
		char *t1 = strchr(lines[i], '\t');
		char *t2 = strchr(t1 + 1, '\t');
		if (t1[1] == 'd')
			*t2 = '\0';
		st_text_add(&want, lines[i], strlen(lines[i]));
		st_text_add(&want, "\n", 1);
	}
	cr_assert_str_eq(got, want.s);
	cr_assert_gt(n, 40);
	st_text_free(&want);
	listing_free(&l);
	free(ref);
	free(d);
}

/* ---- sources: rsync's trailing slash ---- */

/* d/dir: a, sub/b; d/ln -> dir. */
static char *small_tree(void)
{
	char *d = st_dir("scan-src");
	ST_TREE(d, "dir/", "dir/a=A", "dir/sub/", "dir/sub/b=BB", "ln->dir");
	return d;
}

/* The listing of dir/ (or dir/., or ln/) in small_tree. */
#define CONTENTS "a\tf\t1\nsub\td\nsub/b\tf\t2\n"

/* Assert the listing of each source under a small_tree alone: pairs of
 * path (under the tree) and listing, NULL ends. */
static void expect_small_tree(const char *rel, ...)
{
	char *d = small_tree();
	listing l = {0};
	va_list ap;
	va_start(ap, rel);
	for (; rel; rel = va_arg(ap, const char *)) {
		const char *want = va_arg(ap, const char *);
		cr_assert_str_eq(scan_rel(d, rel, &l), want, "source %s", rel);
	}
	va_end(ap);
	listing_free(&l);
	free(d);
}

Test(scan, trailing_slash_means_contents)
{
	expect_small_tree("dir/", CONTENTS, "dir/.", CONTENTS, NULL);
}

Test(scan, no_trailing_slash_means_the_directory)
{
	expect_small_tree("dir",
	                  "dir\td\ndir/a\tf\t1\ndir/sub\td\ndir/sub/b\tf\t2\n",
	                  NULL);
}

Test(scan, a_file_goes_to_its_name)
{
	char *d = small_tree();
	listing l = {0};
	cr_assert_str_eq(scan_rel(d, "dir/sub/b", &l), "b\tf\t2\n");
	st_text_free(&l.text);
	/* A relative file source without a directory part. */
	cr_assert_eq(chdir(d), 0);
	cr_assert_str_eq(scan1("dir/a", &l), "a\tf\t1\n");
	listing_free(&l);
	free(d);
}

/* The sources a and (unless NULL) b, paths under d (NULL: a new
 * small_tree), scanned together; pair_free frees d too. */
typedef struct pair {
	char *d, *a, *b;
	listing l;
	ferry__scan *s;
} pair;

static void pair_scan(pair *p, char *d, const char *a, const char *b,
                      ferry_sync_report *r)
{
	p->d = d ? d : small_tree();
	p->a = st_path(p->d, a);
	p->b = b ? st_path(p->d, b) : NULL;
	const char *v[] = {p->a, p->b};
	p->l = (listing){0};
	scan_list(v, b ? 2 : 1, NULL, 0, &p->l, r, &p->s);
}

static void pair_free(pair *p)
{
	ferry__scan_free(p->s);
	listing_free(&p->l);
	free(p->a);
	free(p->b);
	free(p->d);
}

Test(scan, file_with_trailing_slash_and_missing_source_are_errors)
{
	pair p;
	ferry_sync_report r = {0};
	pair_scan(&p, NULL, "dir/a/", "nope", &r);
	cr_assert_str_eq(p.l.text.s, "");
	cr_assert(p.s->incomplete);
	cr_assert_eq(r.error_count, 2);
	cr_assert_eq(r.errors[0].code, FERRY_ENOTFOUND);
	cr_assert_str_eq(r.errors[1].path, p.b);
	cr_assert(strstr(r.errors[1].message, "No such file"));
	ferry_sync_report_free(&r);
	pair_free(&p);
}

Test(scan, a_symlinked_source_is_followed)
{
	expect_small_tree("ln",
	                  "ln\td\nln/a\tf\t1\nln/sub\td\nln/sub/b\tf\t2\n",
	                  "ln/", CONTENTS, NULL);
}

Test(scan, sources_open_again_by_destination_path)
{
	pair p;
	pair_scan(&p, NULL, "dir", "dir/sub/b", NULL);
	ferry__scan *s = p.s;
	int fd;
	struct stat st;
	cr_assert_eq(ferry__scan_open(s, 0, "dir/sub/b", 9, &fd, &st), 0);
	char buf[8] = {0};
	cr_assert_eq(read(fd, buf, sizeof(buf)), 2);
	cr_assert_str_eq(buf, "BB");
	close(fd);
	cr_assert_eq(ferry__scan_open(s, 1, "b", 1, &fd, &st), 0);
	close(fd);
	cr_assert_eq(ferry__scan_open(s, 0, "dir/sub", 7, &fd, &st),
	             FERRY_EINVALID);
	cr_assert_eq(ferry__scan_open(s, 0, "other/x", 7, &fd, &st),
	             FERRY_EINVALID);
	cr_assert_eq(ferry__scan_open(s, 0, "dir/../x", 8, &fd, &st),
	             FERRY_EINVALID);
	cr_assert_eq(ferry__scan_open(s, 0, "dir/zz", 6, &fd, &st),
	             FERRY_ENOTFOUND);
	/* A directory swapped for a symlink is not followed. */
	char *sub = st_path(p.d, "dir/sub"), *moved = st_path(p.d, "moved");
	cr_assert_eq(rename(sub, moved), 0);
	cr_assert_eq(symlink(moved, sub), 0);
	int rc = ferry__scan_open(s, 0, "dir/sub/b", 9, &fd, &st);
	cr_assert(rc == FERRY_EINVALID || rc == FERRY_ENOTFOUND, "%d", rc);
	char *lp = ferry__scan_local_path(s, 0, "dir/sub/b", 9);
	cr_assert_str_eq(lp, p.b); /* d/dir/sub/b */
	free(lp);
	free(sub);
	free(moved);
	pair_free(&p);
}

/* ---- symlinks and special files ---- */

Test(scan, symlinks_inside_kept_others_skipped_with_a_warning)
{
	char *d = st_dir("scan-links");
	ST_TREE(d, "t/", "t/a=A", "t/sub/", "t/d/", "t/d/e/", "t/l_inside->a",
	        "t/sub/l_up->../a", "t/l_dir->sub", "t/l_dangling->missing/x",
	        "t/l_escape->../outside", "t/sub/l_escape2->../../t/a",
	        "t/l_abs->/etc/passwd", "t/l_loop->l_loop",
	        "t/l_loop1->l_loop2", "t/l_loop2->l_loop1", "t/d/e/s->../..",
	        /* Lexically inside, but s leads to the root first, so ".."
	         * then climbs out of it. */
	        "t/l_through->d/e/s/..", "t/l_via_abs->l_abs/x");
	listing l = {0};
	cr_assert_str_eq(scan_rel(d, "t/", &l), "a\tf\t1\n"
	                                        "d\td\n"
	                                        "d/e\td\n"
	                                        "d/e/s\tl\t-> ../..\n"
	                                        "l_dangling\tl\t-> missing/x\n"
	                                        "l_dir\tl\t-> sub\n"
	                                        "l_inside\tl\t-> a\n"
	                                        "sub\td\n"
	                                        "sub/l_up\tl\t-> ../a\n");
	const char *skipped[] = {
	        "l_escape: skipping symlink: its target is outside",
	        "sub/l_escape2: skipping symlink: its target is outside",
	        "l_abs: skipping symlink: its target is absolute",
	        "l_loop: skipping symlink: it is part of a symlink loop",
	        "l_loop1: skipping symlink: it is part of a symlink loop",
	        "l_loop2: skipping symlink: it is part of a symlink loop",
	        "l_through: skipping symlink: its target is outside",
	        "l_via_abs: skipping symlink: its target is absolute"};
	for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
		cr_assert(strstr(l.log.s, skipped[i]),
		          "missing warning '%s' in:\n%s", skipped[i], l.log.s);
	listing_free(&l);
	free(d);
}

Test(scan, links_resolve_from_the_source_root_of_a_named_directory)
{
	/* For source "t" (no slash) the root is still t: a link to
	 * "../t/a" climbs out of it and is skipped. */
	char *d = st_dir("scan-links2");
	ST_TREE(d, "t/", "t/a=A", "t/l->../t/a", "t/m->./a");
	listing l = {0};
	cr_assert_str_eq(scan_rel(d, "t", &l),
	                 "t\td\nt/a\tf\t1\nt/m\tl\t-> ./a\n");
	cr_assert(strstr(l.log.s, "t/l: skipping symlink"));
	listing_free(&l);
	free(d);
}

Test(scan, special_files_skipped_with_a_warning)
{
	char *d = st_dir("scan-special");
	ST_TREE(d, "t/", "t/plain=x");
	char *fifo = st_path(d, "t/fifo");
	cr_assert_eq(mkfifo(fifo, 0644), 0);
	char *sock = st_path(d, "t/sock");
	int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	cr_assert_lt(strlen(sock), sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	cr_assert_eq(bind(sfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char *dev = st_path(d, "t/dev");
	int have_dev = mknod(dev, S_IFCHR | 0600, makedev(1, 3)) == 0;
	listing l = {0};
	cr_assert_str_eq(scan_rel(d, "t/", &l), "plain\tf\t1\n");
	cr_assert(strstr(l.log.s, "fifo: skipping fifo"), "%s", l.log.s);
	cr_assert(strstr(l.log.s, "sock: skipping socket"), "%s", l.log.s);
	if (have_dev)
		cr_assert(strstr(l.log.s, "dev: skipping character device"),
		          "%s", l.log.s);
	else
		cr_log_info("mknod not permitted: device case not covered");
	close(sfd);
	listing_free(&l);
	free(fifo);
	free(sock);
	free(dev);
	free(d);
}

/* ---- excludes ---- */

Test(scan, excludes_names_paths_and_directories)
{
	char *d = st_dir("scan-ex");
	ST_TREE(d, "t/", "t/keep.txt=k", "t/x.log=l", "t/cache/",
	        "t/cache/big=b", "t/src/", "t/src/cache=file named cache",
	        "t/src/m.log=l", "t/src/deep/", "t/src/deep/er/",
	        "t/src/deep/er/z.o=o", "t/src/deep/er/z.c=c", "t/build/",
	        "t/build/out=o");
	char *src = st_path(d, "t");
	const char *v[] = {src};
	const char *ex[] = {"*.log", "cache/", "/t/build", "t/src/**/*.o"};
	listing l = {0};
	scan_list(v, 1, ex, 4, &l, NULL, NULL);
	cr_assert_str_eq(l.text.s, "t\td\n"
	                           "t/keep.txt\tf\t1\n"
	                           "t/src\td\n"
	                           "t/src/cache\tf\t16\n"
	                           "t/src/deep\td\n"
	                           "t/src/deep/er\td\n"
	                           "t/src/deep/er/z.c\tf\t1\n");
	listing_free(&l);
	free(src);
	free(d);
}

Test(scan, callback_can_prune_a_directory)
{
	char *d = st_dir("scan-prune");
	ST_TREE(d, "prune/", "prune/x=x", "y=y");
	listing l = {.prune_dir = 1};
	cr_assert_str_eq(scan_rel(d, "", &l), "prune\td\ny\tf\t1\n");
	listing_free(&l);
	free(d);
}

/* ---- unreadable ---- */

Test(scan, unreadable_directory_reported_walk_goes_on)
{
	st_drop_dac();
	char *d = st_dir("scan-unread");
	ST_TREE(d, "a/", "a/1=1", "b/", "b/2=2", "c=3");
	char *b = st_path(d, "b");
	cr_assert_eq(chmod(b, 0), 0);
	pair p;
	ferry_sync_report r = {0};
	pair_scan(&p, d, "", NULL, &r);
	cr_assert_str_eq(p.l.text.s, "a\td\na/1\tf\t1\nb\td\nc\tf\t1\n");
	cr_assert(p.s->incomplete);
	cr_assert_eq(r.error_count, 1);
	cr_assert_str_eq(r.errors[0].path, "b");
	cr_assert_eq(r.errors[0].code, FERRY_EPERM);
	cr_assert(strstr(r.errors[0].message, "cannot read directory"));
	chmod(b, 0755);
	ferry_sync_report_free(&r);
	free(b);
	pair_free(&p);
}

/* ---- hostile names and depth ---- */

Test(scan, hostile_names_listed_unchanged)
{
	char *d = st_dir("scan-names");
	static const char *names[] = {
	        "with space",  "new\nline", "quote'\"",
	        "back\\slash", "-leading",  "\xff\xfe\x80",
	        "tab\there",   "*star?",    "#hash"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		st_write(d, names[i], "x", 0644);
	listing l = {0};
	scan_rel(d, "", &l);
	cr_assert_eq(l.log.len, 0, "%s", l.log.s);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char line[64];
		snprintf(line, sizeof(line), "%s\tf\t1\n", names[i]);
		cr_assert(strstr(l.text.s, line), "missing %s", names[i]);
	}
	listing_free(&l);
	free(d);
}

Test(scan, deep_tree_beyond_the_fd_budget)
{
	/* 300 levels: more than the directory fds kept open at once. */
	char *d = st_dir("scan-deep");
	int fd = open(d, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	int top = fd;
	for (int i = 0; i < 300; i++) {
		cr_assert_eq(mkdirat(fd, "d", 0755), 0);
		int n = openat(fd, "d", O_RDONLY | O_DIRECTORY);
		cr_assert_geq(n, 0);
		if (i == 299) {
			int f = openat(n, "leaf", O_WRONLY | O_CREAT, 0644);
			cr_assert_eq(write(f, "z", 1), 1);
			close(f);
		}
		/* a sibling after each directory, read after the return */
		int f = openat(fd, "e", O_WRONLY | O_CREAT, 0644);
		close(f);
		if (fd != top)
			close(fd);
		fd = n;
	}
	close(fd);
	close(top);
	listing l = {0};
	scan_rel(d, "", &l);
	size_t files = 0, dirs = 0;
	for (char *p = l.text.s; (p = strchr(p, '\t')); p++) {
		files += p[1] == 'f';
		dirs += p[1] == 'd';
	}
	cr_assert_eq(dirs, 300);
	cr_assert_eq(files, 301);
	cr_assert_eq(l.log.len, 0, "%s", l.log.s);
	listing_free(&l);
	free(d);
}

Test(scan, paths_near_path_max_kept_longer_ones_reported)
{
	char *d = st_dir("scan-long");
	int fd = open(d, O_RDONLY | O_DIRECTORY);
	char name[251];
	memset(name, 'n', 250);
	name[250] = 0;
	size_t len = 0;
	/* 16 levels of 250 bytes + '/' = 4016 bytes; then a file whose path
	 * is 4095 bytes (kept) and one of 4096 (too long). */
	for (int i = 0; i < 16; i++) {
		cr_assert_eq(mkdirat(fd, name, 0755), 0);
		int n = openat(fd, name, O_RDONLY | O_DIRECTORY);
		close(fd);
		fd = n;
		len += 251;
	}
	char leaf[256];
	size_t keep = FERRY__PATH_MAX - 1 - len;
	memset(leaf, 'k', keep);
	leaf[keep] = 0;
	int f = openat(fd, leaf, O_WRONLY | O_CREAT, 0644);
	close(f);
	memset(leaf, 'l', keep + 1);
	leaf[keep + 1] = 0;
	f = openat(fd, leaf, O_WRONLY | O_CREAT, 0644);
	close(f);
	close(fd);
	pair p;
	ferry_sync_report r = {0};
	pair_scan(&p, d, "", NULL, &r);
	cr_assert_eq(p.s->files, 1);
	cr_assert_eq(p.s->dirs, 16);
	cr_assert(p.s->incomplete);
	cr_assert_eq(r.error_count, 1);
	cr_assert(strstr(r.errors[0].message, "path longer than"));
	char *last = strrchr(p.l.text.s, 'k');
	cr_assert(last);
	ferry_sync_report_free(&r);
	pair_free(&p);
}
