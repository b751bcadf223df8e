/* Tests of sync/path.c: tree order, validity, escaping. */
#include <criterion/criterion.h>
#include <string.h>

#include "sync/path.h"

static int cmp(const char *a, const char *b)
{
	return ferry__path_cmp(a, strlen(a), b, strlen(b));
}

static int valid(const char *p)
{
	return ferry__path_valid(p, strlen(p));
}

Test(path, tree_order_puts_a_subtree_right_after_its_directory)
{
	const char *sorted[] = {"a",           "a/b",   "a/b/c", "a/bb",
	                        "a-b",         "a.txt", "a0",    "abcdefghij/x",
	                        "abcdefghijk", "b",     "\xff"};
	size_t n = sizeof(sorted) / sizeof(sorted[0]);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(cmp(sorted[i], sorted[i]), 0);
		for (size_t j = i + 1; j < n; j++) {
			cr_assert_lt(cmp(sorted[i], sorted[j]), 0, "%s < %s",
			             sorted[i], sorted[j]);
			cr_assert_gt(cmp(sorted[j], sorted[i]), 0);
		}
	}
	/* long shared prefixes (the word-at-a-time path) */
	cr_assert_lt(cmp("0123456789abcdef/x", "0123456789abcdef.x"), 0);
	cr_assert_lt(cmp("0123456789abcdefA", "0123456789abcdefB"), 0);
	cr_assert_lt(cmp("0123456789abcdef", "0123456789abcdef0"), 0);
}

Test(path, validity)
{
	cr_assert(valid("a"));
	cr_assert(valid("a/b c/.d/..e/..."));
	cr_assert(valid("\n/\xff"));
	cr_assert(!valid(""));
	cr_assert(!valid("/a"));
	cr_assert(!valid("a/"));
	cr_assert(!valid("a//b"));
	cr_assert(!valid("."));
	cr_assert(!valid(".."));
	cr_assert(!valid("a/./b"));
	cr_assert(!valid("a/../b"));
	cr_assert(!valid("a/.."));
	cr_assert(!ferry__path_valid("a\0b", 3));
	char big[FERRY__PATH_MAX + 1];
	memset(big, 'x', sizeof(big));
	cr_assert(ferry__path_valid(big, FERRY__PATH_MAX - 1));
	cr_assert(!ferry__path_valid(big, FERRY__PATH_MAX));
}

Test(path, parents_and_escaping)
{
	cr_assert_eq(ferry__path_dirlen("a/b/c", 5), 3);
	cr_assert_eq(ferry__path_dirlen("c", 1), 0);
	cr_assert(ferry__path_under("a/b", 3, "a", 1));
	cr_assert(!ferry__path_under("ab", 2, "a", 1));
	cr_assert(!ferry__path_under("a", 1, "a", 1));
	cr_assert(ferry__path_under("x", 1, "", 0));
	char out[64];
	size_t n = ferry__path_escape(out, sizeof(out), "a\nb\\#c\\d\x7f", 9);
	cr_assert_str_eq(out, "a\\#012b\\#134#c\\d\\#177");
	cr_assert_eq(n, strlen(out));
	/* A right-to-left override and a C1 control, byte by byte; other
	 * UTF-8 as it is. */
	n = ferry__path_escape(out, sizeof(out),
	                       "a\xe2\x80\xae"
	                       "b\xc2\x9b\xc3\xa9",
	                       9);
	cr_assert_str_eq(out, "a\\#342\\#200\\#256b\\#302\\#233\xc3\xa9");
	char small[4];
	cr_assert_eq(ferry__path_escape(small, sizeof(small), "\n", 1), 5);
	cr_assert_str_eq(small, "\\#0");
}
