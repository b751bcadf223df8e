/* fuzz_manifest - libFuzzer target for the manifest loader.
 *
 * Built with -DFERRY_FUZZ, which makes the loader ignore a checksum
 * mismatch so that the parser behind it is reached.  Whatever parses must
 * be a valid manifest (ferry__manifest_check, and every chunk list valid),
 * must serialize, and must read back identical, chunk lists included
 * (with its checksum now right); lookups of every entry must find it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sync/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ferry__manifest *m = NULL, *back = NULL;
	char why[256];
	if (ferry__manifest_parse(&m, data, size, NULL, NULL, why, sizeof(why)))
		return 0;
	if (ferry__manifest_check(m, why, sizeof(why)))
		abort();
	ferry_buf b = FERRY_BUF_INIT;
	if (ferry__manifest_serialize(m, &b))
		abort();
	if (ferry__manifest_parse(&back, b.data, b.len, m->target, m->dest, why,
	                          sizeof(why)))
		abort();
	if (back->n != m->n || back->stat_ns != m->stat_ns ||
	    back->has_marker != m->has_marker)
		abort();
	for (size_t i = 0; i < m->n; i++) {
		const ferry__mentry *x = &m->e[i], *y = &back->e[i];
		if (x->path_len != y->path_len ||
		    memcmp(x->path, y->path, x->path_len) ||
		    x->type != y->type || x->mode != y->mode ||
		    x->size != y->size || x->mtime_ns != y->mtime_ns ||
		    x->ctime_ns != y->ctime_ns || x->ino != y->ino ||
		    x->dev != y->dev ||
		    memcmp(x->hash.b, y->hash.b, sizeof(x->hash.b)) ||
		    x->nchunks != y->nchunks)
			abort();
		/* A loaded list is valid, and reads back the same. */
		if (!ferry__manifest_chunks_valid(x))
			abort();
		for (uint32_t k = 0; k < x->nchunks; k++)
			if (x->chunks[k].off != y->chunks[k].off ||
			    x->chunks[k].len != y->chunks[k].len ||
			    memcmp(x->chunks[k].hash.b, y->chunks[k].hash.b,
			           sizeof(x->chunks[k].hash.b)))
				abort();
		if (ferry__manifest_find(back, x->path, x->path_len) != y)
			abort();
	}
	ferry__buf_free(&b);
	ferry__manifest_free(back);
	ferry__manifest_free(m);
	return 0;
}
