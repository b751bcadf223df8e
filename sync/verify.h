/* verify.h - bringing a plan in line with what the remote tree really
 * holds, from a listing (sync/remote.h), when the manifest no longer
 * vouches for the remote (marker missing or different, --verify, --force,
 * a first push, or an interrupted one).
 *
 * Between ferry__plan_build (with keep_unchanged) and ferry__plan_finish:
 *
 *  - a path whose remote type differs from the local one is removed first
 *    (with its remote subtree) and created again;
 *  - a file is compared by size, mtime (seconds) and mode: an unchanged
 *    file whose remote copy differs is uploaded again (or only its mode
 *    set when size and mtime agree); a file new to the manifest whose
 *    remote copy agrees in all three is only recorded (rsync's quick
 *    check; never with --checksum); a metadata update whose remote copy
 *    is not the manifest's is turned into an upload;
 *  - directories are compared by mode, symlinks by target;
 *  - anything of the plan missing remotely is created;
 *  - remote entries the plan does not know become deletions
 *    (ferry__plan_add_delete: only with --delete, inside the sync set,
 *    never excluded ones nor the directories holding them);
 *  - deletions of entries already gone remotely are dropped as done;
 *  - leftover temporary names are collected for removal;
 *  - .ferry-id at the top is never touched. */
#ifndef FERRY_SYNC_VERIFY_H
#define FERRY_SYNC_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "sync/manifest.h"
#include "sync/plan.h"
#include "sync/remote.h"

typedef struct ferry__verify_result {
	char **temps; /* remote paths of leftover temporary names */
	size_t ntemps;
	uint64_t changed; /* actions promoted, demoted or added */
} ferry__verify_result;

/* rl must be sorted and its root FERRY__ROOT_DIR or _MISSING.  m is the
 * manifest the plan was built from.  0 or FERRY_ENOMEM. */
int ferry__verify_plan(ferry__plan *p, ferry__manifest *m,
                       const ferry__rlist *rl, const char *dest, int checksum,
                       ferry__verify_result *res);
void ferry__verify_result_free(ferry__verify_result *res);

#endif
