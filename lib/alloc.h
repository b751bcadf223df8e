/* alloc.h - the library's allocator, with a failure-injection hook for tests.
 */
#ifndef FERRY_ALLOC_H
#define FERRY_ALLOC_H

#include <stddef.h>

void *ferry__malloc(size_t n);
void *ferry__calloc(size_t nmemb, size_t size);
void *ferry__realloc(void *p, size_t n);
void *ferry__reallocarray(void *p, size_t nmemb, size_t size);
char *ferry__strdup(const char *s);
char *ferry__strndup(const char *s, size_t n);
void *ferry__memdup(const void *p, size_t n);
void ferry__free(void *p);
/* Wipe then free a secret of n bytes (or a C string when n is 0). */
void ferry__free_secret(void *p, size_t n);
/* printf into a new string; NULL on failure. */
char *ferry__asprintf(const char *fmt, ...)
        __attribute__((format(printf, 1, 2)));

/* Give the heap's free pages back to the system (glibc keeps what a large
 * call freed, so a held session's RSS would stay at its largest push's
 * peak); nothing elsewhere.  Called at the end of the sync calls, after
 * ferry__sftp_trim. */
void ferry__alloc_release(void);

/* Tests: make the n-th allocation from now fail (1 = the next one); 0 turns
 * injection off.  Returns the number of allocations counted so far. */
void ferry__alloc_fail_at(unsigned long n);
unsigned long ferry__alloc_count(void);

#endif
