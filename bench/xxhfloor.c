/*
 * xxhfloor - the local floors a no-op push is measured against.
 *
 *   xxhfloor stat DIR    walk DIR with openat/fstatat (no hashing)
 *   xxhfloor hash DIR    walk DIR, read every regular file, XXH3-128 it
 *
 * Prints "files N bytes N ms T digest D": T is the in-process time of the
 * walk (the harness times the whole process as well); D folds all hashes so
 * the work cannot be skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static unsigned long long nfiles, nbytes;
static uint64_t digest;
static int do_hash;
static unsigned char *buf;
#define BUFSZ (1u << 20)

static int hash_file(int dfd, const char *name, const struct stat *st)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	XXH3_state_t *s = XXH3_createState();
	XXH3_128bits_reset(s);
	ssize_t n;
	while ((n = read(fd, buf, BUFSZ)) > 0)
		XXH3_128bits_update(s, buf, (size_t)n);
	XXH128_hash_t h = XXH3_128bits_digest(s);
	XXH3_freeState(s);
	close(fd);
	digest ^= h.low64 + (uint64_t)st->st_size;
	return n < 0 ? -1 : 0;
}

static int walk(int dfd)
{
	DIR *d = fdopendir(dfd);
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			return -1;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name,
			                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
			                         O_CLOEXEC);
			if (sub < 0 || walk(sub) != 0)
				return -1;
		} else if (S_ISREG(st.st_mode)) {
			nfiles++;
			nbytes += (unsigned long long)st.st_size;
			digest += (uint64_t)st.st_mtim.tv_nsec;
			if (do_hash && hash_file(dirfd(d), e->d_name, &st) != 0)
				return -1;
		}
	}
	closedir(d);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "stat") && strcmp(argv[1], "hash"))) {
		fprintf(stderr, "usage: xxhfloor stat|hash DIR\n");
		return 2;
	}
	do_hash = !strcmp(argv[1], "hash");
	buf = malloc(BUFSZ);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int fd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!buf || fd < 0 || walk(fd) != 0) {
		fprintf(stderr, "xxhfloor: %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	            (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	printf("files %llu bytes %llu ms %.3f digest %016llx\n", nfiles, nbytes,
	       ms, (unsigned long long)digest);
	free(buf);
	return 0;
}
