/* hash.h - XXH3 helpers: 128-bit content hashes of buffers and files
 * (streamed with large reads), 64-bit checksums, hex formatting.
 *
 * A ferry__hash holds XXH3-128 in its canonical (big-endian) byte form, the
 * form stored in manifests and compared with memcmp. */
#ifndef FERRY_HASH_H
#define FERRY_HASH_H

#include <stddef.h>
#include <stdint.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define FERRY__HASH_LEN     16
#define FERRY__HASH_HEX_LEN 32
/* Read size for streamed file hashing. */
#define FERRY__HASH_BUFSIZE ((size_t)1 << 20)

typedef struct ferry__hash {
	uint8_t b[FERRY__HASH_LEN];
} ferry__hash;

/* Streaming XXH3-128 (for callers that read the data themselves, e.g. the
 * push executor hashing what it uploads). */
typedef struct ferry__hasher {
	XXH3_state_t st;
} ferry__hasher;

void ferry__hasher_init(ferry__hasher *h);
void ferry__hasher_update(ferry__hasher *h, const void *p, size_t n);
void ferry__hasher_final(const ferry__hasher *h, ferry__hash *out);

/* XXH3-128 of a buffer. */
void ferry__hash_buf(ferry__hash *out, const void *p, size_t n);
/* XXH3-64 of a buffer (checksums, hash tables). */
uint64_t ferry__hash64(const void *p, size_t n);
int ferry__hash_eq(const ferry__hash *a, const ferry__hash *b);

/* XXH3-128 of everything readable from fd (from its current offset to EOF),
 * with reads of bufsize bytes into buf (NULL: a buffer of
 * FERRY__HASH_BUFSIZE is allocated for the call).  *nread (may be NULL)
 * gets the byte count.  0, FERRY_EIO (errno kept) or FERRY_ENOMEM. */
int ferry__hash_fd(ferry__hash *out, uint64_t *nread, int fd, void *buf,
                   size_t bufsize);

/* The same, passing every block read to each(ctx, p, n) in order (a
 * nonzero return stops with that error). */
int ferry__hash_fd_each(ferry__hash *out, uint64_t *nread, int fd, void *buf,
                        size_t bufsize,
                        int (*each)(void *ctx, const void *p, size_t n),
                        void *ctx);

/* Open name relative to dirfd (O_NOFOLLOW) and hash it as above.  0,
 * FERRY_ENOTFOUND, FERRY_EPERM, FERRY_EIO or FERRY_ENOMEM; errno kept. */
int ferry__hash_file_at(ferry__hash *out, uint64_t *nread, int dirfd,
                        const char *name, void *buf, size_t bufsize);

/* 32 lower-case hex digits and a NUL. */
void ferry__hash_hex(char out[FERRY__HASH_HEX_LEN + 1], const ferry__hash *h);
/* Hex of n bytes into out (2n+1 bytes). */
void ferry__hex(char *out, const void *p, size_t n);

#endif
