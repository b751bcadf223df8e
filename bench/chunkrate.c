/*
 * chunkrate - throughput of the content-defined chunker (sync/chunk.c).
 *
 *   chunkrate [MIB]    chunk MIB MiB (default 512) of /dev/urandom bytes
 *                      held in memory, in 1 MiB pieces
 *
 * Prints the chunker's MB/s (chunk hashes included), the whole-buffer
 * XXH3-128 alone for comparison, and the chunk count and mean length.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "sync/chunk.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 512;
	size_t n = mib << 20;
	unsigned char *buf = malloc(n);
	int fd = open("/dev/urandom", O_RDONLY);
	if (!buf || fd < 0)
		return 1;
	for (size_t got = 0; got < n;) {
		ssize_t k = read(fd, buf + got, n - got);
		if (k <= 0)
			return 1;
		got += (size_t)k;
	}
	close(fd);

	double t0 = now();
	ferry__hash h;
	ferry__hash_buf(&h, buf, n);
	double t1 = now();

	ferry__chunker c;
	if (ferry__chunker_init(&c))
		return 1;
	size_t piece = (size_t)1 << 20;
	for (size_t off = 0; off < n; off += piece)
		if (ferry__chunker_update(&c, buf + off,
		                          n - off < piece ? n - off : piece))
			return 1;
	if (ferry__chunker_final(&c))
		return 1;
	double t2 = now();
	size_t minl = SIZE_MAX, maxl = 0;
	for (size_t i = 0; i + 1 < c.n; i++) {
		if (c.v[i].len < minl)
			minl = c.v[i].len;
		if (c.v[i].len > maxl)
			maxl = c.v[i].len;
	}
	printf("chunker %.0f MB/s  xxh3-128 alone %.0f MB/s  %zu MiB\n",
	       (double)n / 1e6 / (t2 - t1), (double)n / 1e6 / (t1 - t0), mib);
	printf("chunks %zu  mean %.1f KiB  min %zu  max %zu (last excluded)\n",
	       c.n, (double)n / 1024.0 / (double)c.n, minl, maxl);
	ferry__chunker_free(&c);
	free(buf);
	return h.b[0] == 0x42 && n == 1; /* keep the hash */
}
