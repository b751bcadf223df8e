#include "sync/path.h"

#include <stdint.h>
#include <string.h>

int ferry__path_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen, i = 0;
	/* Neighbours in tree order share long prefixes: skip them a word at
	 * a time. */
	while (i + 8 <= n) {
		uint64_t x, y;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y)
			break;
		i += 8;
	}
	const unsigned char *x = (const unsigned char *)a;
	const unsigned char *y = (const unsigned char *)b;
	for (; i < n; i++) {
		if (x[i] != y[i]) {
			unsigned cx = x[i] == '/' ? 0u : x[i];
			unsigned cy = y[i] == '/' ? 0u : y[i];
			return cx < cy ? -1 : 1;
		}
	}
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

int ferry__path_valid(const char *p, size_t n)
{
	if (n == 0 || n >= FERRY__PATH_MAX || memchr(p, 0, n))
		return 0;
	const char *end = p + n;
	for (;;) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t len = (size_t)((slash ? slash : end) - p);
		if (len == 0)
			return 0; /* leading '/', "//" or trailing '/' */
		if (p[0] == '.' && (len == 1 || (len == 2 && p[1] == '.')))
			return 0;
		if (!slash)
			return 1;
		p = slash + 1;
	}
}

size_t ferry__path_dirlen(const char *p, size_t n)
{
	const char *slash = n ? memrchr(p, '/', n) : NULL;
	return slash ? (size_t)(slash - p) : 0;
}

int ferry__path_under(const char *p, size_t n, const char *d, size_t dn)
{
	if (dn == 0)
		return 1;
	return n > dn && p[dn] == '/' && memcmp(p, d, dn) == 0;
}

/* Bytes from p[i] that encode, in UTF-8, a character a terminal would
 * act on or that reorders text: C1 controls (U+0080-009F), the bidi
 * marks, embeddings, overrides and isolates (U+061C, U+200E-200F,
 * U+202A-202E, U+2066-2069); 0 for anything else. */
static size_t hidden_seq(const unsigned char *p, size_t n)
{
	if (n >= 2 && p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
		return 2;
	if (n >= 2 && p[0] == 0xd8 && p[1] == 0x9c)
		return 2;
	if (n < 3 || p[0] != 0xe2)
		return 0;
	if (p[1] == 0x80 &&
	    ((p[2] >= 0x8e && p[2] <= 0x8f) || (p[2] >= 0xaa && p[2] <= 0xae)))
		return 3;
	if (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)
		return 3;
	return 0;
}

size_t ferry__path_escape(char *out, size_t size, const char *p, size_t n)
{
	size_t len = 0, hidden = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		char tmp[5];
		size_t k;
		if (!hidden)
			hidden =
			        hidden_seq((const unsigned char *)p + i, n - i);
		if (hidden || c < 0x20 || c == 0x7f ||
		    (c == '\\' && i + 1 < n && p[i + 1] == '#')) {
			if (hidden)
				hidden--;
			tmp[0] = '\\';
			tmp[1] = '#';
			tmp[2] = (char)('0' + (c >> 6));
			tmp[3] = (char)('0' + ((c >> 3) & 7));
			tmp[4] = (char)('0' + (c & 7));
			k = 5;
		} else {
			tmp[0] = (char)c;
			k = 1;
		}
		for (size_t j = 0; j < k; j++, len++)
			if (size && len < size - 1)
				out[len] = tmp[j];
	}
	if (size)
		out[len < size - 1 ? len : size - 1] = '\0';
	return len;
}
