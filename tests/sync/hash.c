/* Tests of lib/hash.c (kept with the sync tests, its only user so far). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "hash.h"
#include "sync_test.h"

Test(hash, known_values_and_hex)
{
	ferry__hash h;
	char hex[FERRY__HASH_HEX_LEN + 1];
	/* XXH3-128 of the empty input, canonical form. */
	ferry__hash_buf(&h, "", 0);
	ferry__hash_hex(hex, &h);
	cr_assert_str_eq(hex, "99aa06d3014798d86001c324468d497f");
	ferry__hash_buf(&h, "abc", 3);
	ferry__hash_hex(hex, &h);
	cr_assert_str_eq(hex, "06b05ab6733a618578af5f94892f3950");
}

Test(hash, streamed_file_equals_buffer_at_every_boundary)
{
	char *d = st_dir("hash");
	size_t sizes[] = {0, 1, 4095, 65536, 65537, 3 * 65536 + 5};
	unsigned char *data = malloc(sizes[5]);
	for (size_t i = 0; i < sizes[5]; i++)
		data[i] = (unsigned char)(i * 131 + (i >> 9));
	char *p = st_path(d, "f");
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		cr_assert_eq(fx_write_file(p, data, sizes[k], 0644), 0);
		ferry__hash want, got;
		ferry__hash_buf(&want, data, sizes[k]);
		/* small buffer: several reads; NULL: the default buffer */
		size_t bufs[] = {65536, 0};
		for (int b = 0; b < 2; b++) {
			int fd = open(p, O_RDONLY);
			void *buf = bufs[b] ? malloc(bufs[b]) : NULL;
			uint64_t n = 0;
			cr_assert_eq(ferry__hash_fd(&got, &n, fd, buf, bufs[b]),
			             0);
			cr_assert_eq(n, sizes[k]);
			cr_assert(ferry__hash_eq(&want, &got), "size %zu",
			          sizes[k]);
			free(buf);
			close(fd);
		}
		ferry__hasher hs;
		ferry__hasher_init(&hs);
		ferry__hasher_update(&hs, data, sizes[k] / 2);
		ferry__hasher_update(&hs, data + sizes[k] / 2,
		                     sizes[k] - sizes[k] / 2);
		ferry__hasher_final(&hs, &got);
		cr_assert(ferry__hash_eq(&want, &got));
	}
	ferry__hash h;
	cr_assert_eq(ferry__hash_file_at(&h, NULL, AT_FDCWD, "/nonexistent/x",
	                                 NULL, 0),
	             FERRY_ENOTFOUND);
	free(p);
	free(data);
	free(d);
}
