/* chunk.h - content-defined chunks of large files, for delta uploads.
 *
 * A gear-style rolling hash over the file's bytes cuts it into chunks of
 * FERRY__CHUNK_MIN..FERRY__CHUNK_MAX bytes (about FERRY__CHUNK_AVG on
 * random data); each chunk gets the XXH3-128 of its bytes.  A boundary
 * depends only on the bytes just before it (at most the gear's 64-byte
 * memory after the minimum length), so an insertion or deletion moves
 * only the boundaries of the chunks around it: the chunks after it are
 * found again, shifted, by hash.  Files of FERRY__DELTA_MIN_SIZE bytes
 * and up are chunked (in the same read that hashes the whole file); their
 * chunk list is stored in the manifest (format version 2).
 *
 * Adversarial input keeps the bounds: all zeros, or any pattern that
 * never matches the mask, cuts at exactly FERRY__CHUNK_MAX; no chunk but
 * the last is shorter than FERRY__CHUNK_MIN.
 *
 * The definition (sync/chunk.c; changing it changes every stored list):
 * gear = (gear << 1) + table[byte], the table being 256 splitmix64
 * outputs from the seed "ferrycdc"; the gear restarts at 0 with each
 * chunk, and a chunk ends after the byte that makes its length L either
 * FERRY__CHUNK_MAX, or >= FERRY__CHUNK_MIN with the top 16 bits of the
 * gear zero.  So a cut depends only on the 64 bytes before it and on
 * the chunk's start (through the minimum), and the gear need not be
 * computed for a chunk's first FERRY__CHUNK_MIN - 64 bytes.  The mask
 * fires once in 64 KiB on random data: chunks average about 78 KiB
 * (FERRY__CHUNK_MIN + 64 KiB, less the ~2% cut at the maximum). */
#ifndef FERRY_SYNC_CHUNK_H
#define FERRY_SYNC_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"

#define FERRY__CHUNK_MIN      ((uint32_t)16 << 10)
#define FERRY__CHUNK_AVG      ((uint32_t)64 << 10)
#define FERRY__CHUNK_MAX      ((uint32_t)256 << 10)
#define FERRY__DELTA_MIN_SIZE ((uint64_t)1 << 20)
/* The most chunks a manifest entry may hold (a 1 TiB file at the minimum
 * chunk size would need more: such a file is simply not chunked). */
#define FERRY__CHUNKS_MAX ((uint32_t)1 << 24)

typedef struct ferry__chunk {
	uint64_t off; /* sum of the lengths before it */
	uint32_t len; /* 1..FERRY__CHUNK_MAX */
	ferry__hash hash;
} ferry__chunk;

/* Streaming chunker: feed the file's bytes in order, in pieces of any
 * size; the chunk list grows in v (ferry__malloc'd; the caller takes it
 * over after _final, or frees it with _free).  Past FERRY__CHUNKS_MAX
 * chunks the list is dropped: v NULL, n FERRY__CHUNKS_MAX + 1. */
typedef struct ferry__chunker {
	uint64_t gear; /* rolling hash */
	uint64_t off;  /* bytes fed so far */
	uint32_t cur;  /* bytes in the chunk being cut */
	int oom;
	ferry__hasher *h; /* the current chunk's hash (aligned storage) */
	void *hraw;
	ferry__chunk *v;
	size_t n, cap;
} ferry__chunker;

/* 0 or FERRY_ENOMEM. */
int ferry__chunker_init(ferry__chunker *c);
/* 0 or FERRY_ENOMEM (also sticky: later calls and _final fail too). */
int ferry__chunker_update(ferry__chunker *c, const void *p, size_t n);
/* Close the last chunk (none for an empty input).  0 or FERRY_ENOMEM. */
int ferry__chunker_final(ferry__chunker *c);
/* Frees v too (unless taken: set c->v = NULL first). */
void ferry__chunker_free(ferry__chunker *c);

/* XXH3-128 of everything readable from fd (from its offset to EOF) into
 * *out, as ferry__hash_fd does, and, when chunks is not NULL, its chunk
 * list (*chunks ferry__malloc'd, *nchunks; NULL/0 for an empty file or
 * beyond FERRY__CHUNKS_MAX).  0, FERRY_EIO (errno kept) or FERRY_ENOMEM. */
int ferry__chunk_fd(ferry__hash *out, uint64_t *nread, int fd, void *buf,
                    size_t bufsize, ferry__chunk **chunks, uint32_t *nchunks);

#endif
