/* Tests of sync/exclude.c: the glob, rsync's pattern rules, exclude-from. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "sync/exclude.h"
#include "sync_test.h"

static int g(const char *pat, const char *s)
{
	return ferry__glob_match(pat, strlen(pat), s, strlen(s));
}

/* Assert that pat matches each string after it, up to NULL, or with a
 * leading '!' does not. */
static void expect_glob(const char *pat, ...)
{
	va_list ap;
	va_start(ap, pat);
	for (const char *c; (c = va_arg(ap, const char *));) {
		const char *s = c + (c[0] == '!');
		cr_assert_eq(g(pat, s) != 0, s == c, "glob '%s' on '%s'", pat,
		             c);
	}
	va_end(ap);
}

Test(glob, stars_question_marks_classes)
{
	expect_glob("*.txt", "a.txt", ".txt", "!a.txt.bak", "!d/a.txt", NULL);
	expect_glob("a?c", "abc", "!a/c", NULL);
	expect_glob("[a-c]x", "bx", "!dx", NULL);
	expect_glob("[!a-c]x", "dx", "!/x", NULL);
	expect_glob("[^a-c]x", "dx", NULL);
	expect_glob("[]]", "]", NULL);
	expect_glob("[", "[", NULL);
	expect_glob("\\*", "*", "!a", NULL);
	expect_glob("", "", "!a", NULL);
}

Test(glob, double_star_crosses_directories)
{
	expect_glob("**", "a/b/c", NULL);
	expect_glob("a/**", "a/b/c", NULL);
	expect_glob("a/**/c", "a/b/x/c", "a/c", NULL);
	expect_glob("**/c", "c", "x/y/c", NULL);
	expect_glob("a/*/c", "!a/b/x/c", "a/b/c", NULL);
	expect_glob("a**c", "!ab", NULL);
}

Test(glob, pathological_pattern_terminates)
{
	char s[200];
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = 0;
	cr_assert(!g("*a*a*a*a*a*a*a*a*a*a*a*a*b", s));
	cr_assert(!g("**a**a**a**a**a**a**a**a**b", s));
}

/* Assert the matches of the one rule pat: each path after it, up to NULL,
 * matches, or with a leading '!' does not; a trailing '/' makes it a
 * directory. */
static void expect_rule(const char *pat, ...)
{
	ferry__excludes *e;
	cr_assert_eq(ferry__excludes_new(&e), 0);
	cr_assert_eq(ferry__excludes_add(e, pat), 0);
	va_list ap;
	va_start(ap, pat);
	for (const char *c; (c = va_arg(ap, const char *));) {
		const char *p = c + (c[0] == '!');
		size_t n = strlen(p);
		int dir = n && p[n - 1] == '/';
		char *path = strndup(p, n - (size_t)dir);
		cr_assert_eq(
		        ferry__excludes_match(e, path, strlen(path), dir) != 0,
		        p == c, "rule '%s' on '%s'", pat, c);
		free(path);
	}
	va_end(ap);
	ferry__excludes_free(e);
}

Test(exclude, rsync_rules)
{
	/* no slash: the last name, at any depth */
	expect_rule("*.o", "a/b/x.o", NULL);
	expect_rule("x", "x", "a/x/", "!x/y", NULL);
	/* trailing slash: directories only */
	expect_rule("cache/", "a/cache/", "!a/cache", NULL);
	/* leading slash: anchored at the top */
	expect_rule("/build", "build/", "!a/build/", NULL);
	/* a slash inside: the path, or any tail of it after a '/' */
	expect_rule("b/c", "a/b/c", "b/c", "!ab/c", NULL);
	expect_rule("/a/b/*", "a/b/c", "!x/a/b/c", NULL);
	/* "dir/" "***": the directory itself (its contents are not entered) */
	expect_rule("tmp/***", "x/tmp/", "tmp", NULL);
}

Test(exclude, tree_match_looks_at_parents)
{
	ferry__excludes *e;
	cr_assert_eq(ferry__excludes_new(&e), 0);
	cr_assert_eq(ferry__excludes_add(e, "cache/"), 0);
	cr_assert(ferry__excludes_match_tree(e, "a/cache/x/y", 11, 0));
	cr_assert(!ferry__excludes_match(e, "a/cache/x/y", 11, 0));
	cr_assert(!ferry__excludes_match_tree(e, "a/cachex/y", 10, 0));
	cr_assert_eq(ferry__excludes_add(e, ""), FERRY_EINVALID);
	cr_assert_eq(ferry__excludes_add(e, "/"), FERRY_EINVALID);
	ferry__excludes_free(e);
}

/* ferry__excludes_add_file of dir/rel. */
static int add_file(ferry__excludes *e, const char *dir, const char *rel,
                    char *err, size_t errsz)
{
	char *p = st_path(dir, rel);
	int rc = ferry__excludes_add_file(e, p, err, errsz);
	free(p);
	return rc;
}

Test(exclude, exclude_from_file)
{
	char *d = st_dir("exfrom");
	st_write(d, "list",
	         "# comment\n; comment\n\n*.log\n- /build/\nsecret file\n",
	         0644);
	st_write(d, "bad", "*.x\n+ keep\n", 0644);
	ferry__excludes *e;
	char err[256];
	cr_assert_eq(ferry__excludes_new(&e), 0);
	cr_assert_eq(add_file(e, d, "list", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ferry__excludes_count(e), 3);
	cr_assert(ferry__excludes_match(e, "a/x.log", 7, 0));
	cr_assert(ferry__excludes_match(e, "build", 5, 1));
	cr_assert(!ferry__excludes_match(e, "build", 5, 0));
	cr_assert(ferry__excludes_match(e, "secret file", 11, 0));
	cr_assert_eq(add_file(e, d, "bad", err, sizeof(err)), FERRY_EINVALID);
	cr_assert(strstr(err, ":2: include rules"), "%s", err);
	cr_assert_eq(add_file(e, d, "none", err, sizeof(err)), FERRY_ENOTFOUND);
	cr_assert(strstr(err, "No such file"), "%s", err);
	ferry__excludes_free(e);
	free(d);
}
