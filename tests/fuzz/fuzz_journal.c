/* fuzz_journal - libFuzzer target for the journal of temporary names, a
 * file that another account may have written: whatever parses is a list
 * of names without NUL, and ferry__rtemp_in (which decides what the next
 * push removes) accepts only paths inside the destination that end in a
 * temporary name.  Built with -DFERRY_FUZZ (the checksum is skipped). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sync/journal.h"
#include "sync/path.h"
#include "sync/remote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *dest, const char *name)
{
	if (!ferry__rtemp_in(dest, name))
		return;
	size_t dl = strlen(dest), nl = strlen(name);
	const char *rel = name;
	if (strcmp(dest, ".") != 0) {
		if (nl <= dl + 1 || memcmp(name, dest, dl) != 0 ||
		    name[dl] != '/')
			abort();
		rel = name + dl + 1;
	}
	/* ferry__path_valid refuses an empty, "." or ".." component and an
	 * absolute path; a name that merely starts with ".." is fine. */
	if (!ferry__path_valid(rel, strlen(rel)))
		abort();
	const char *base = strrchr(rel, '/');
	base = base ? base + 1 : rel;
	if (base[0] != '.' || !strstr(base, ".ferry-"))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ferry__journal j;
	memset(&j, 0, sizeof(j));
	if (ferry__journal_parse(&j, data, size) == 0) {
		for (size_t i = 0; i < j.n; i++) {
			if (memchr(j.names[i], '\0', strlen(j.names[i]) + 1) !=
			    j.names[i] + strlen(j.names[i]))
				abort();
			check("dst", j.names[i]);
			check("/abs/dst", j.names[i]);
			check(".", j.names[i]);
		}
	}
	ferry__journal_free(&j);
	return 0;
}
