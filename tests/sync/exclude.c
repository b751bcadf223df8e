/* Tests of sync/exclude.c: the glob, rsync's pattern rules, exclude-from. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "sync/exclude.h"
#include "sync_test.h"

static int g(const char *pat, const char *s)
{
	return ferry__glob_match(pat, strlen(pat), s, strlen(s));
}

Test(glob, stars_question_marks_classes)
{
	cr_assert(g("*.txt", "a.txt"));
	cr_assert(g("*.txt", ".txt"));
	cr_assert(!g("*.txt", "a.txt.bak"));
	cr_assert(!g("*.txt", "d/a.txt"));
	cr_assert(g("a?c", "abc"));
	cr_assert(!g("a?c", "a/c"));
	cr_assert(g("[a-c]x", "bx"));
	cr_assert(!g("[a-c]x", "dx"));
	cr_assert(g("[!a-c]x", "dx"));
	cr_assert(g("[^a-c]x", "dx"));
	cr_assert(!g("[!a-c]x", "/x"));
	cr_assert(g("[]]", "]"));
	cr_assert(g("[", "["));
	cr_assert(g("\\*", "*"));
	cr_assert(!g("\\*", "a"));
	cr_assert(g("", ""));
	cr_assert(!g("", "a"));
}

Test(glob, double_star_crosses_directories)
{
	cr_assert(g("**", "a/b/c"));
	cr_assert(g("a/**", "a/b/c"));
	cr_assert(g("a/**/c", "a/b/x/c"));
	cr_assert(g("a/**/c", "a/c"));
	cr_assert(g("**/c", "c"));
	cr_assert(g("**/c", "x/y/c"));
	cr_assert(!g("a/*/c", "a/b/x/c"));
	cr_assert(g("a/*/c", "a/b/c"));
	cr_assert(!g("a**c", "ab"));
}

Test(glob, pathological_pattern_terminates)
{
	char s[200];
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = 0;
	cr_assert(!g("*a*a*a*a*a*a*a*a*a*a*a*a*b", s));
	cr_assert(!g("**a**a**a**a**a**a**a**a**b", s));
}

static int ex_match(const char *pat, const char *path, int dir)
{
	ferry__excludes *e;
	cr_assert_eq(ferry__excludes_new(&e), 0);
	cr_assert_eq(ferry__excludes_add(e, pat), 0);
	int r = ferry__excludes_match(e, path, strlen(path), dir);
	ferry__excludes_free(e);
	return r;
}

Test(exclude, rsync_rules)
{
	/* no slash: the last name, at any depth */
	cr_assert(ex_match("*.o", "a/b/x.o", 0));
	cr_assert(ex_match("x", "x", 0));
	cr_assert(ex_match("x", "a/x", 1));
	cr_assert(!ex_match("x", "x/y", 0));
	/* trailing slash: directories only */
	cr_assert(ex_match("cache/", "a/cache", 1));
	cr_assert(!ex_match("cache/", "a/cache", 0));
	/* leading slash: anchored at the top */
	cr_assert(ex_match("/build", "build", 1));
	cr_assert(!ex_match("/build", "a/build", 1));
	/* a slash inside: the path, or any tail of it after a '/' */
	cr_assert(ex_match("b/c", "a/b/c", 0));
	cr_assert(ex_match("b/c", "b/c", 0));
	cr_assert(!ex_match("b/c", "ab/c", 0));
	cr_assert(ex_match("/a/b/*", "a/b/c", 0));
	cr_assert(!ex_match("/a/b/*", "x/a/b/c", 0));
	/* "dir/" "***": the directory itself (its contents are not entered) */
	cr_assert(ex_match("tmp/***", "x/tmp", 1));
	cr_assert(ex_match("tmp/***", "tmp", 0));
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

Test(exclude, exclude_from_file)
{
	char *d = st_dir("exfrom");
	st_write(d, "list",
	         "# comment\n; comment\n\n*.log\n- /build/\nsecret file\n",
	         0644);
	st_write(d, "bad", "*.x\n+ keep\n", 0644);
	char *list = st_path(d, "list"), *bad = st_path(d, "bad"),
	     *none = st_path(d, "none");
	ferry__excludes *e;
	char err[256];
	cr_assert_eq(ferry__excludes_new(&e), 0);
	cr_assert_eq(ferry__excludes_add_file(e, list, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(ferry__excludes_count(e), 3);
	cr_assert(ferry__excludes_match(e, "a/x.log", 7, 0));
	cr_assert(ferry__excludes_match(e, "build", 5, 1));
	cr_assert(!ferry__excludes_match(e, "build", 5, 0));
	cr_assert(ferry__excludes_match(e, "secret file", 11, 0));
	cr_assert_eq(ferry__excludes_add_file(e, bad, err, sizeof(err)),
	             FERRY_EINVALID);
	cr_assert(strstr(err, ":2: include rules"), "%s", err);
	cr_assert_eq(ferry__excludes_add_file(e, none, err, sizeof(err)),
	             FERRY_ENOTFOUND);
	cr_assert(strstr(err, "No such file"), "%s", err);
	ferry__excludes_free(e);
	free(list);
	free(bad);
	free(none);
	free(d);
}
