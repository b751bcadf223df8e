/* exclude.h - --exclude / --exclude-from patterns, with rsync's meaning:
 *
 *   *  any run of bytes but '/';  ?  one byte but '/';  [a-z] [!x] classes;
 *   ** anything, '/' included; "**" followed by '/' may also match no
 *      directory at all (so "a/" "**" "/b" matches "a/b" too);
 *   \x the byte x;
 *   a leading '/' anchors the pattern at the top of the transfer;
 *   a trailing '/' matches directories only;
 *   a trailing "/ ***" (without the space) matches the directory and all
 *   inside it.
 *
 * A pattern without '/' (other than a trailing one) and without "**" is
 * matched against the last name of a path; otherwise against the whole
 * path, and when not anchored also against every tail of it that starts
 * after a '/'.  Paths are those the files get under the destination (so
 * for source "dir" they start with "dir/"). */
#ifndef FERRY_SYNC_EXCLUDE_H
#define FERRY_SYNC_EXCLUDE_H

#include <stddef.h>

typedef struct ferry__excludes ferry__excludes;

int ferry__excludes_new(ferry__excludes **out);
void ferry__excludes_free(ferry__excludes *ex);
/* 0, FERRY_EINVALID (empty pattern) or FERRY_ENOMEM. */
int ferry__excludes_add(ferry__excludes *ex, const char *pat);
/* Patterns from a file, one a line; empty lines and lines starting with
 * '#' or ';' are skipped, a "- " prefix is dropped; "+ " (include rules)
 * is refused.  0, FERRY_ENOTFOUND, FERRY_EIO, FERRY_EINVALID or
 * FERRY_ENOMEM, with a message in err. */
int ferry__excludes_add_file(ferry__excludes *ex, const char *path, char *err,
                             size_t errsz);
size_t ferry__excludes_count(const ferry__excludes *ex);
/* The excludes of a push: opts->excludes, then the files of
 * opts->exclude_from.  0 or FERRY_EINVALID / FERRY_ENOTFOUND / FERRY_EIO /
 * FERRY_ENOMEM with a message in err; *out is NULL on error. */
struct ferry_sync_opts;
int ferry__excludes_from_opts(ferry__excludes **out,
                              const struct ferry_sync_opts *o, char *err,
                              size_t errsz);

/* 1 when path (n bytes, relative to the destination) is excluded by itself
 * (its parent directories are not looked at). */
int ferry__excludes_match(const ferry__excludes *ex, const char *path, size_t n,
                          int is_dir);
/* 1 when path or one of its parent directories is excluded. */
int ferry__excludes_match_tree(const ferry__excludes *ex, const char *path,
                               size_t n, int is_dir);

/* The glob itself: 1 when pat (plen bytes) matches s (n bytes). */
int ferry__glob_match(const char *pat, size_t plen, const char *s, size_t n);

#endif
