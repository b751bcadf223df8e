/* manifest.h - what ferry last committed to one target (user@host:port
 * plus remote destination): one entry per file, directory and symlink,
 * with the local stat it had and the XXH3-128 of its content.
 *
 * File format (version 2; integers big-endian, strings = u32 length and
 * bytes):
 *
 *   header   "\x7f" "ferrymf"  u32 version  u32 flags (bit 0: marker set)
 *            string target  string dest  marker[16]
 *            i64 written_ns  i64 stat_ns  u64 entry count
 *            u64 total path bytes
 *   entries  string path  u8 type  u8 flags  u16 mode
 *            u64 size  i64 mtime_ns  i64 ctime_ns  u64 ino  u64 dev
 *            hash[16]  u32 chunk count
 *            chunk count x (u32 len  hash[16])
 *   trailer  u64 XXH3-64 of every byte before it
 *
 * Entries are unique, in tree order (sync/path.h), with valid relative
 * paths, and every entry's parent directory is itself an entry of type
 * directory (top-level entries have none).  A chunk list (sync/chunk.h;
 * the offsets are the running sums of the lengths) belongs only to a file
 * entry whose hash is known (FERRY__ME_HASHED), has at most
 * FERRY__CHUNKS_MAX chunks of 1..FERRY__CHUNK_MAX bytes each, and its
 * lengths add up to the entry's size.  Anything else (a flipped byte, a
 * truncation, a bad chunk list, another version or target) makes the
 * loader treat the file as absent, with a warning.
 *
 * Version 1 is version 2 without chunk lists (every chunk count 0): the
 * loader reads both; saving always writes version 2.
 *
 * Writing is atomic: a temporary file in the same directory (mode 0600),
 * fsync, rename, fsync of the directory.  Writers hold the target's lock
 * (ferry__lock_acquire) for the whole push; readers need no lock. */
#ifndef FERRY_SYNC_MANIFEST_H
#define FERRY_SYNC_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ferry.h"
#include "hash.h"
#include "sync/arena.h"
#include "sync/chunk.h"

#define FERRY__MANIFEST_VERSION 2
/* The oldest version the loader reads. */
#define FERRY__MANIFEST_VERSION_MIN 1

/* ferry__mentry.flags */
#define FERRY__ME_HASHED 0x1u /* hash is the content's (else unknown) */
/* A directory whose remote mode and mtime ferry set to this entry's. */
#define FERRY__ME_TIMES        0x2u
#define FERRY__ME_REPLACED     0x40u /* in memory only: its type changed */
#define FERRY__ME_SEEN         0x80u /* in memory only: matched by the scan */
#define FERRY__ME_DISK_FLAGS   (FERRY__ME_HASHED | FERRY__ME_TIMES)
#define FERRY__ME_MEMORY_FLAGS (FERRY__ME_SEEN | FERRY__ME_REPLACED)

typedef struct ferry__mentry {
	const char *path; /* NUL-terminated, owned by the manifest */
	uint64_t size, ino, dev;
	int64_t mtime_ns, ctime_ns;
	ferry__hash hash; /* content; for a symlink, of its target */
	/* Files of FERRY__DELTA_MIN_SIZE and up whose content is hashed: the
	 * chunk list of that content (sync/chunk.h), else NULL and 0.  Owned
	 * by the manifest, or by the plan for an action's entry. */
	const ferry__chunk *chunks;
	uint32_t nchunks;
	uint32_t path_len;
	uint16_t mode; /* permission bits */
	uint8_t type;  /* FERRY__T_* */
	uint8_t flags; /* FERRY__ME_* */
} ferry__mentry;

typedef struct ferry__manifest {
	char *target, *dest;
	uint8_t marker[16]; /* the remote's .ferry-id */
	int has_marker;
	int loaded;         /* read from a file (0: new or treated as absent) */
	int64_t written_ns; /* wall time it was written */
	/* Wall time before the stats it holds were taken (the scan's start):
	 * entries modified within the racy window of it are racily clean. */
	int64_t stat_ns;
	ferry__mentry *e; /* tree order */
	size_t n, cap;
	char *blob; /* paths of a loaded manifest */
	/* Paths added since, and every chunk list (loaded or added). */
	ferry__arena arena;
	uint32_t *index; /* lazy hash index of e (UINT32_MAX: empty) */
	size_t index_mask;
	size_t cursor; /* find() tries here first */
} ferry__manifest;

/* An empty manifest for target and dest (copied).  0 or FERRY_ENOMEM. */
int ferry__manifest_new(ferry__manifest **out, const char *target,
                        const char *dest);
void ferry__manifest_free(ferry__manifest *m);

/* Parse a whole manifest file held in memory.  target and dest, when not
 * NULL, must match the header.  0; FERRY_EPROTO when the data is not a
 * valid manifest (why says what is wrong); FERRY_ENOMEM. */
int ferry__manifest_parse(ferry__manifest **out, const void *data, size_t len,
                          const char *target, const char *dest, char *why,
                          size_t whysz);
/* Read the manifest at path.  An absent, unreadable, damaged, foreign
 * version or wrong-target file gives an empty manifest (loaded = 0) and,
 * unless it was simply absent, a warning through log.  Returns 0, or
 * FERRY_ENOMEM (never a half-read manifest). */
int ferry__manifest_load(ferry__manifest **out, const char *path,
                         const char *target, const char *dest, ferry_log_fn log,
                         void *log_ctx);

/* The file bytes of m, appended to out (tests, fuzzing): chunk lists as
 * they are, even invalid ones (ferry__manifest_save writes an invalid
 * list as none, so that the file still loads).  0 or FERRY_ENOMEM /
 * FERRY_EINVALID. */
int ferry__manifest_serialize(const ferry__manifest *m, ferry_buf *out);
/* Write m to path atomically (see above), creating the directory (0700)
 * when missing.  written_ns is set to the time of writing.  0, FERRY_EIO,
 * FERRY_EPERM, FERRY_ENOSPACE or FERRY_ENOMEM, with err set; the old file
 * is then untouched. */
int ferry__manifest_save(ferry__manifest *m, const char *path, char *err,
                         size_t errsz);

/* The entry at path, or NULL.  Fast when called in tree order. */
ferry__mentry *ferry__manifest_find(ferry__manifest *m, const char *path,
                                    size_t n);
/* Append an entry (path and chunk list copied) at the end; the caller
 * keeps tree order and uniqueness (ferry__manifest_check verifies them).
 * 0 or ENOMEM. */
int ferry__manifest_append(ferry__manifest *m, const ferry__mentry *e);
/* Point e->chunks (when set; e.g. an action's entry, owned by the plan)
 * at a copy in m's memory; NULL/0 when there is none (or more than
 * FERRY__CHUNKS_MAX).  0 or FERRY_ENOMEM (e unchanged). */
int ferry__manifest_own_chunks(ferry__manifest *m, ferry__mentry *e);
/* 1 when e's chunk list is one the loader accepts (see above). */
int ferry__manifest_chunks_valid(const ferry__mentry *e);
/* Replace m's entry array by e (n entries, cap allocated, from
 * ferry__malloc; taken over).  Their paths must be owned by m. */
void ferry__manifest_adopt(ferry__manifest *m, ferry__mentry *e, size_t n,
                           size_t cap);
/* 0 when the entries are unique, in tree order, with valid paths and
 * parents; else FERRY_EPROTO with why. */
int ferry__manifest_check(const ferry__manifest *m, char *why, size_t whysz);

/* ---- the per-target lock ---- */

typedef struct ferry__lock ferry__lock;

/* Take the exclusive lock on lock_path (created 0600, with its directory
 * 0700).  timeout_ms: 0 try once, < 0 wait for ever, else wait at most
 * that long; cancelled (may be NULL) is polled while waiting and makes the
 * call give up with FERRY_EINTR.  0, FERRY_ELOCKED (held by another
 * process), FERRY_EINTR, FERRY_EIO/EPERM or FERRY_ENOMEM, err set. */
int ferry__lock_acquire(ferry__lock **out, const char *lock_path,
                        int timeout_ms, int (*cancelled)(void *ctx), void *ctx,
                        char *err, size_t errsz);
void ferry__lock_release(ferry__lock *l);

/* Create dir and its missing parents with mode 0700.  0 or -1 (errno). */
int ferry__mkdir_p(const char *dir);

#endif
