/* ltree.h - a pull's local destination, reached only relative to its
 * directory descriptor: every directory below it is opened with
 * O_DIRECTORY | O_NOFOLLOW one name at a time, so a symlink planted inside
 * the destination is never followed, and nothing is written outside it. */
#ifndef FERRY_SYNC_LTREE_H
#define FERRY_SYNC_LTREE_H

#include <stddef.h>

typedef struct ferry__ldir ferry__ldir;

/* A cache of the directories open along the last path asked for (a pull
 * asks in tree order, so most lookups open nothing).  rootfd is borrowed.
 * NULL on ENOMEM. */
ferry__ldir *ferry__ldir_new(int rootfd);
void ferry__ldir_free(ferry__ldir *c);
/* The descriptor of the directory at destination path dir (n bytes; 0:
 * the destination itself), valid until the next call (dup it to keep it);
 * -1 with errno (ELOOP or ENOTDIR: a component is not a directory). */
int ferry__ldir_get(ferry__ldir *c, const char *dir, size_t n);

/* Make the directory name in dirfd, or find it there: the owner's rwx
 * added to mode (the modes of directories are set last).  0, or -1 with
 * errno (EEXIST: something else is there). */
int ferry__lmkdir(int dirfd, const char *name, unsigned mode);

/* Remove name in dirfd and, for a directory, everything below it, without
 * following any symlink.  0 or -1 with errno (ENOENT counts as done). */
int ferry__lremove(int dirfd, const char *name);

/* errno as a FERRY_E* (ENOSPC and EDQUOT: FERRY_ENOSPACE). */
int ferry__errno_code(int e);

#endif
