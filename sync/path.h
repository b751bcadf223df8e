/* path.h - relative paths of the sync set: '/'-separated byte strings
 * (any byte but NUL; names may hold newlines or invalid UTF-8). */
#ifndef FERRY_SYNC_PATH_H
#define FERRY_SYNC_PATH_H

#include <stddef.h>

/* Longest relative path accepted, NUL included. */
#define FERRY__PATH_MAX 4096

/* Tree order: byte order with '/' below every other byte, so that a
 * directory's whole subtree sorts right after it (depth-first order with
 * sorted siblings).  <0, 0, >0 like memcmp. */
int ferry__path_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* 1 when p (n bytes) is a valid relative path: 1..FERRY__PATH_MAX-1 bytes,
 * no NUL, not absolute, no empty, "." or ".." component. */
int ferry__path_valid(const char *p, size_t n);

/* Length of the parent part of p ("a/b/c" -> 3, "c" -> 0). */
size_t ferry__path_dirlen(const char *p, size_t n);

/* 1 when p is inside directory d (p starts with d + '/'); d of length 0 is
 * the root, which holds everything. */
int ferry__path_under(const char *p, size_t n, const char *d, size_t dn);

/* p made safe for one line of text: control bytes, UTF-8 C1 controls and
 * bidi formatting characters (each byte), and a backslash followed by '#',
 * become rsync's "\#ooo".  Writes at most size bytes with a NUL
 * (when size > 0); returns the length the full result needs. */
size_t ferry__path_escape(char *out, size_t size, const char *p, size_t n);

#endif
