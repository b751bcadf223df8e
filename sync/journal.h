/* journal.h - the temporary names a push is about to create on the remote,
 * kept next to the target's manifest (<state>/<hex>.journal, from
 * sync/target.h) so that the
 * next push removes what an interrupted one left behind.
 *
 * A push writes the journal before it sends the first request that
 * creates a temporary name: in place, then fdatasync (the directory is
 * synced too when the file is new), one disk flush per push.  Once every
 * name is resolved (renamed into place or removed) and the manifest is
 * saved, the journal is rewritten empty (no flush needed: a stale list
 * only costs the next push some REMOVEs that find nothing).  A journal
 * that holds names when a push starts, or cannot be read whole (a write
 * torn by a crash), means the previous push did not finish: its names are
 * removed (ENOENT is fine) and the remote tree is verified.
 *
 * File format (integers big-endian): "\x7f" "ferryjn" u32 version (1),
 * u32 count, then count times (u32 length, bytes: a remote path), then
 * u64 XXH3-64 of every byte before it. */
#ifndef FERRY_SYNC_JOURNAL_H
#define FERRY_SYNC_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct ferry__journal {
	char *path;   /* the journal file */
	char **names; /* remote paths (NUL-terminated, no NUL inside) */
	size_t n, cap;
	int found;   /* a journal file exists */
	int damaged; /* ... but could not be read whole */
	int pending; /* it holds names or is damaged: a push did not finish */
} ferry__journal;

/* Read the journal at path into j (j->path copied).  An absent file gives
 * an empty journal with found = 0; a damaged one found = damaged =
 * pending = 1 and no names.  0 or FERRY_ENOMEM. */
int ferry__journal_load(ferry__journal *j, const char *path);
void ferry__journal_free(ferry__journal *j);
/* Parse a whole journal file's bytes into j's names (appended); 0,
 * FERRY_EPROTO (damaged) or FERRY_ENOMEM.  Under FERRY_FUZZ the checksum
 * is not checked, so the parser behind it is reached. */
int ferry__journal_parse(ferry__journal *j, const uint8_t *d, size_t len);

/* Add a name (copied).  0 or FERRY_ENOMEM. */
int ferry__journal_add(ferry__journal *j, const char *name);

/* Write j's names to j->path, durably.  0, FERRY_EIO, FERRY_EPERM,
 * FERRY_ENOSPACE or FERRY_ENOMEM with err set. */
int ferry__journal_save(ferry__journal *j, char *err, size_t errsz);

/* Forget every name and write the journal empty (when the file exists;
 * not flushed).  0 or FERRY_E* with err set. */
int ferry__journal_clear(ferry__journal *j, char *err, size_t errsz);

#endif
