/* Tests of lib/buf.c: bounds-checked SSH wire types. */
#include <criterion/criterion.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "ferry.h"

Test(buf, round_trip_of_every_type)
{
	ferry_buf b = FERRY_BUF_INIT;
	cr_assert_eq(ferry__buf_put_u8(&b, 7), 0);
	cr_assert_eq(ferry__buf_put_u32(&b, 0xdeadbeef), 0);
	cr_assert_eq(ferry__buf_put_u64(&b, 0x0123456789abcdefULL), 0);
	cr_assert_eq(ferry__buf_put_cstring(&b, "hello"), 0);
	cr_assert_eq(ferry__buf_put_string(&b, "a\0b", 3), 0);
	cr_assert_eq(b.len, 1 + 4 + 8 + 9 + 7);
	uint8_t u8;
	uint32_t u32;
	uint64_t u64;
	char *s;
	size_t n;
	cr_assert_eq(ferry__buf_get_u8(&b, &u8), 0);
	cr_assert_eq(u8, 7);
	cr_assert_eq(ferry__buf_get_u32(&b, &u32), 0);
	cr_assert_eq(u32, 0xdeadbeef);
	cr_assert_eq(ferry__buf_get_u64(&b, &u64), 0);
	cr_assert_eq(u64, 0x0123456789abcdefULL);
	cr_assert_eq(ferry__buf_get_cstring(&b, &s, &n), 0);
	cr_assert_str_eq(s, "hello");
	cr_assert_eq(n, 5);
	ferry__free(s);
	/* A string holding NUL is refused as a C string and not consumed. */
	size_t off = b.off;
	cr_assert_eq(ferry__buf_get_cstring(&b, &s, &n), FERRY_EPROTO);
	cr_assert_eq(b.off, off);
	const uint8_t *p;
	cr_assert_eq(ferry__buf_get_string_ptr(&b, &p, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert(memcmp(p, "a\0b", 3) == 0);
	cr_assert_eq(ferry__buf_avail(&b), 0);
	cr_assert_eq(ferry__buf_get_u8(&b, &u8), FERRY_EPROTO);
	ferry__buf_free(&b);
}

Test(buf, short_and_lying_lengths_are_refused)
{
	static const uint8_t lie[] = {0, 0, 0, 10, 'a', 'b'};
	ferry_buf b;
	ferry__buf_view(&b, lie, sizeof(lie));
	const uint8_t *p;
	size_t n;
	cr_assert_eq(ferry__buf_get_string_ptr(&b, &p, &n), FERRY_EPROTO);
	cr_assert_eq(b.off, 0);
	static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 'x'};
	ferry__buf_view(&b, huge, sizeof(huge));
	cr_assert_eq(ferry__buf_get_string_ptr(&b, &p, &n), FERRY_EPROTO);
	uint64_t v;
	ferry__buf_view(&b, huge, 5);
	cr_assert_eq(ferry__buf_get_u64(&b, &v), FERRY_EPROTO);
	/* A view is never written to. */
	cr_assert_eq(ferry__buf_put_u8(&b, 1), FERRY_EINVALID);
}

Test(buf, growth_limit_and_allocation_failure)
{
	ferry_buf b = FERRY_BUF_INIT;
	b.max = 1000;
	uint8_t *d;
	cr_assert_eq(ferry__buf_reserve(&b, 900, &d), 0);
	cr_assert_eq(ferry__buf_reserve(&b, 200, &d), FERRY_EINVALID);
	cr_assert_eq(b.len, 900);
	ferry__buf_free(&b);
	ferry__alloc_fail_at(1);
	cr_assert_eq(ferry__buf_put_u32(&b, 1), FERRY_ENOMEM);
	ferry__alloc_fail_at(0);
	cr_assert_eq(b.len, 0);
	ferry__buf_free(&b);
}

Test(buf, compact_keeps_unread_bytes)
{
	ferry_buf b = FERRY_BUF_INIT;
	for (uint32_t i = 0; i < 1000; i++)
		cr_assert_eq(ferry__buf_put_u32(&b, i), 0);
	uint32_t v;
	for (uint32_t i = 0; i < 600; i++)
		ferry__buf_get_u32(&b, &v);
	ferry__buf_compact(&b);
	cr_assert_eq(b.off, 0);
	cr_assert_eq(ferry__buf_get_u32(&b, &v), 0);
	cr_assert_eq(v, 600);
	ferry__buf_free(&b);
}

Test(buf, the_first_failure_sticks_until_reset)
{
	ferry_buf b = FERRY_BUF_INIT;
	b.max = 8;
	cr_assert_eq(ferry__buf_put(&b, "abcd", 4), 0);
	cr_assert_eq(ferry__buf_put(&b, "123456", 6), FERRY_EINVALID);
	/* A write that would fit still writes nothing: the text is broken. */
	cr_assert_eq(ferry__buf_put_u8(&b, 'x'), FERRY_EINVALID);
	cr_assert_eq(ferry__buf_fmt(&b, "y"), FERRY_EINVALID);
	cr_assert_eq(b.len, 4);
	ferry__buf_reset(&b);
	cr_assert_eq(ferry__buf_put_u8(&b, 'x'), 0);
	cr_assert_eq(b.len, 1);
	ferry__buf_free(&b);
	ferry__alloc_fail_at(1);
	cr_assert_eq(ferry__buf_fmt(&b, "a%sb%qc", "x", "y"), FERRY_ENOMEM);
	ferry__alloc_fail_at(0);
	cr_assert_eq(b.error, FERRY_ENOMEM);
	ferry__buf_free(&b);
}

Test(buf, fmt_quotes_and_formats)
{
	ferry_buf b = FERRY_BUF_INIT;
	cr_assert_eq(ferry__buf_fmt(&b, "cd %q; %.*s=%s %zu %ld 100%%", "it's",
	                            3, "FOO=bar", "v", (size_t)42, -7L),
	             0);
	cr_assert_eq(ferry__buf_fmt(&b, " %q%q", "", "''"), 0);
	cr_assert_eq(ferry__buf_terminate(&b), 0);
	cr_assert_str_eq((const char *)b.data,
	                 "cd 'it'\\''s'; FOO=v 42 -7 100% ''''\\'''\\'''");
	cr_assert_eq(b.data[b.len], 0);
	/* A directive it does not know is an error, not a guess. */
	cr_assert_eq(ferry__buf_fmt(&b, "%d", 1), FERRY_EINVALID);
	ferry__buf_free(&b);
}
