/* push_units.c - the remote side's small parts without a server: the
 * journal file, temporary names, remote paths, the marker text. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "fixture.h"
#include "sync/journal.h"
#include "sync/remote.h"

Test(push_units, journal_round_trip_and_damage)
{
	char *dir = fx_tmpdir("pu-journal");
	cr_assert(dir);
	char *jp = NULL;
	cr_assert(asprintf(&jp, "%s/state/abc.journal", dir) > 0);

	ferry__journal j;
	cr_assert_eq(ferry__journal_load(&j, jp), 0);
	cr_assert(!j.found && !j.damaged && j.n == 0);
	const char *names[] = {"/r/.a.ferry-AAAAAA", "rel/x/.b\nc.ferry-zz09zz",
	                       "-dash/.\xff.ferry-Q1w2E3"};
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ferry__journal_add(&j, names[i]), 0);
	char err[256];
	cr_assert_eq(ferry__journal_save(&j, err, sizeof(err)), 0, "%s", err);
	struct stat st;
	cr_assert_eq(stat(jp, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	ferry__journal_free(&j);

	cr_assert_eq(ferry__journal_load(&j, jp), 0);
	cr_assert(j.found && !j.damaged && j.pending);
	cr_assert_eq(j.n, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_str_eq(j.names[i], names[i]);
	ferry__journal_free(&j);

	/* Every flipped byte and every truncation is seen as damage. */
	size_t len = 0;
	char *good = fx_read_file(jp, &len);
	cr_assert(good && len > 20);
	for (size_t i = 0; i < len; i++) {
		char *bad = malloc(len);
		memcpy(bad, good, len);
		bad[i] ^= 0x20;
		fx_write_file(jp, bad, len, 0600);
		cr_assert_eq(ferry__journal_load(&j, jp), 0);
		cr_assert(j.found && j.damaged && j.pending && j.n == 0,
		          "byte %zu", i);
		ferry__journal_free(&j);
		fx_write_file(jp, good, i, 0600);
		cr_assert_eq(ferry__journal_load(&j, jp), 0);
		cr_assert(j.found && j.damaged, "truncated at %zu", i);
		ferry__journal_free(&j);
		free(bad);
	}
	fx_write_file(jp, good, len, 0600);
	cr_assert_eq(ferry__journal_load(&j, jp), 0);
	cr_assert_eq(ferry__journal_clear(&j, err, sizeof(err)), 0);
	cr_assert_eq(j.n, 0);
	ferry__journal_free(&j);
	/* Cleared: the file stays, empty, and says nothing is pending. */
	cr_assert_eq(ferry__journal_load(&j, jp), 0);
	cr_assert(j.found && !j.pending && !j.damaged && j.n == 0);
	ferry__journal_free(&j);
	free(good);
	free(jp);
	fx_sh("rm -rf '%s'", dir);
	free(dir);
}

Test(push_units, remote_paths)
{
	char *p = ferry__rpath(".", "a/b", 3);
	cr_assert_str_eq(p, "a/b");
	ferry__free(p);
	p = ferry__rpath("/", "a", 1);
	cr_assert_str_eq(p, "/a");
	ferry__free(p);
	p = ferry__rpath("/srv/x", "a/b", 3);
	cr_assert_str_eq(p, "/srv/x/a/b");
	ferry__free(p);
	p = ferry__rpath("rel", "", 0);
	cr_assert_str_eq(p, "rel");
	ferry__free(p);
}

Test(push_units, temporary_names)
{
	char *t = ferry__rtemp("/d", "sub/name.txt", 12);
	cr_assert(t);
	cr_assert_eq(strncmp(t, "/d/sub/.name.txt.ferry-", 23), 0, "%s", t);
	cr_assert_eq(strlen(t), 23 + 6);
	const char *base = strrchr(t, '/') + 1;
	cr_assert(ferry__rtemp_name(base, strlen(base)));
	char *t2 = ferry__rtemp("/d", "sub/name.txt", 12);
	cr_assert_str_neq(t, t2, "names must be random");
	ferry__free(t);
	ferry__free(t2);
	/* Long names are cut so that the temporary name fits NAME_MAX. */
	char longname[256];
	memset(longname, 'n', 255);
	longname[255] = '\0';
	t = ferry__rtemp(".", longname, 255);
	cr_assert(t);
	cr_assert_leq(strlen(t), 255);
	cr_assert(ferry__rtemp_name(t, strlen(t)));
	ferry__free(t);
	cr_assert(!ferry__rtemp_name("name.ferry-ABCDEF", 17), "no dot");
	cr_assert(!ferry__rtemp_name(".name.ferry-ABCDE", 17), "short");
	cr_assert(!ferry__rtemp_name(".name.ferry-ABCD-F", 18), "not alnum");
	cr_assert(!ferry__rtemp_name(".ferry-ABCDEF", 13), "no name");
	cr_assert(ferry__rtemp_name("..ferry-id.ferry-abc123", 23));
}

Test(push_units, marker_text)
{
	uint8_t id[16], back[16];
	for (int i = 0; i < 16; i++)
		id[i] = (uint8_t)(i * 17 + 3);
	char text[FERRY__MARKER_TEXT_LEN + 1];
	ferry__marker_text(text, id);
	cr_assert_eq(strlen(text), 33);
	cr_assert_eq(text[32], '\n');
	cr_assert_eq(ferry__marker_parse(back, text, 33), 0);
	cr_assert_eq(memcmp(id, back, 16), 0);
	cr_assert_eq(ferry__marker_parse(back, text, 32), 0);
	cr_assert_eq(ferry__marker_parse(back,
	                                 "0123456789ABCDEF0123456789abcdef "
	                                 "\r\n",
	                                 35),
	             0);
	cr_assert_eq(ferry__marker_parse(back, text, 31), FERRY_EPROTO);
	cr_assert_eq(ferry__marker_parse(
	                     back, "0123456789abcdef0123456789abcdeg", 32),
	             FERRY_EPROTO);
	cr_assert_eq(ferry__marker_parse(
	                     back, "0123456789abcdef0123456789abcdef0", 33),
	             FERRY_EPROTO);
}
