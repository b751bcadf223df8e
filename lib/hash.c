#include "hash.h"
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"

void ferry__hasher_init(ferry__hasher *h)
{
	XXH3_INITSTATE(&h->st);
	XXH3_128bits_reset(&h->st);
}

void ferry__hasher_update(ferry__hasher *h, const void *p, size_t n)
{
	if (n)
		XXH3_128bits_update(&h->st, p, n);
}

void ferry__hasher_final(const ferry__hasher *h, ferry__hash *out)
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&h->st));
	memcpy(out->b, c.digest, sizeof(out->b));
}

void ferry__hash_buf(ferry__hash *out, const void *p, size_t n)
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(n ? p : "", n));
	memcpy(out->b, c.digest, sizeof(out->b));
}

uint64_t ferry__hash64(const void *p, size_t n)
{
	return XXH3_64bits(n ? p : "", n);
}

int ferry__hash_eq(const ferry__hash *a, const ferry__hash *b)
{
	return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

int ferry__hash_fd_each(ferry__hash *out, uint64_t *nread, int fd, void *buf,
                        size_t bufsize,
                        int (*each)(void *ctx, const void *p, size_t n),
                        void *ctx)
{
	int error = 0;
	uint8_t *own = NULL;
	uint64_t total = 0;
	ferry__hasher h;

	if (!buf || bufsize == 0) {
		bufsize = FERRY__HASH_BUFSIZE;
		buf = own = ferry__malloc(bufsize);
		if (!own)
			return FERRY_ENOMEM;
	}
	/* Small files (the common case) take one read and the one-shot hash,
	 * which is faster than the streaming state. */
	ssize_t r = ferry__read_full(fd, buf, bufsize);
	if (r < 0) {
		error = FERRY_EIO;
		goto out;
	}
	if ((size_t)r < bufsize) {
		ferry__hash_buf(out, buf, (size_t)r);
		total = (uint64_t)r;
		if (each && r > 0)
			error = each(ctx, buf, (size_t)r);
		goto out;
	}
	ferry__hasher_init(&h);
	for (;;) {
		ferry__hasher_update(&h, buf, (size_t)r);
		total += (uint64_t)r;
		if (each && (error = each(ctx, buf, (size_t)r)))
			goto out;
		if ((size_t)r < bufsize)
			break;
		r = ferry__read_full(fd, buf, bufsize);
		if (r < 0) {
			error = FERRY_EIO;
			goto out;
		}
		if (r == 0)
			break;
	}
	ferry__hasher_final(&h, out);
out:
	if (own) {
		int e = errno;
		ferry__free(own);
		errno = e;
	}
	if (!error && nread)
		*nread = total;
	return error;
}

int ferry__hash_fd(ferry__hash *out, uint64_t *nread, int fd, void *buf,
                   size_t bufsize)
{
	return ferry__hash_fd_each(out, nread, fd, buf, bufsize, NULL, NULL);
}

int ferry__hash_file_at(ferry__hash *out, uint64_t *nread, int dirfd,
                        const char *name, void *buf, size_t bufsize)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return FERRY_ENOTFOUND;
		if (errno == EACCES || errno == EPERM || errno == ELOOP)
			return FERRY_EPERM;
		return FERRY_EIO;
	}
	int error = ferry__hash_fd(out, nread, fd, buf, bufsize);
	int e = errno;
	close(fd);
	errno = e;
	return error;
}

void ferry__hex(char *out, const void *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

void ferry__hash_hex(char out[FERRY__HASH_HEX_LEN + 1], const ferry__hash *h)
{
	ferry__hex(out, h->b, sizeof(h->b));
}
