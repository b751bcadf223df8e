#include "sync/chunk.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "ferry.h"
#include "os.h"
#include "sync/util.h"

/* A cut after a byte where the gear's top 16 bits are all zero: one byte
 * in 65536 on random data, so chunks average about FERRY__CHUNK_MIN +
 * 64 KiB (less the few cut at FERRY__CHUNK_MAX).  The top bits are the
 * ones that depend on all of the gear's 64 bytes; the low bits of a
 * shift-add hash see only the last few. */
#define GEAR_MASK 0xffff000000000000ull
/* The gear forgets a byte after 64 shifts, and it restarts at 0 with each
 * chunk: its value at any length >= FERRY__CHUNK_MIN is the same whether
 * computed from the chunk's start or from GEAR_FROM, so the bytes before
 * GEAR_FROM are only hashed, not geared. */
#define GEAR_FROM (FERRY__CHUNK_MIN - 64)

/* gear[i]: splitmix64 outputs 0..255 from the seed 0x6665727279636463
 * ("ferrycdc"). */
static const uint64_t gear[256] = {
        0x69bed38dda3ce46eull, 0xeeb8faecc6bcfff7ull, 0xe5e496c1bbb8e969ull,
        0xd915469db4822d12ull, 0x9d98080c862fa38aull, 0x4de44d76cfefecfdull,
        0xdfb20cba82822399ull, 0xf936f542b3c31b1dull, 0x1e07b0911541f3d1ull,
        0x2051fb8001460148ull, 0x52e8c36463fbb160ull, 0xf593bfba954851e5ull,
        0x2257302291481201ull, 0xe1919577205dbf52ull, 0xd61949c0a1a3a9b0ull,
        0x49804a2dccec3834ull, 0xe321f30cb1591077ull, 0x37521ac8689cb2e5ull,
        0xe42f6912eb584aecull, 0x55e2e5df9799ee1bull, 0x247eb298e8e495faull,
        0x625950663372477eull, 0x929aa9290b18dafaull, 0xee04618557c153f0ull,
        0x6ea7b9d5338a48edull, 0x38ca8233ba4691a7ull, 0x48a6f03e3edb22e8ull,
        0xe766bf2147b3084aull, 0x094b12311be0329cull, 0x7a5f9e7e3ed97454ull,
        0x5f9fa6e1bb884c5aull, 0xf0282018473863bbull, 0x4970a7a027284983ull,
        0xfa132f67f10aadbfull, 0x18eb3d30f7e599baull, 0x8973a2aa99bc0860ull,
        0x2dab58d280bf7d4dull, 0x1c2d2240bc0c3e1full, 0x10a9abb7b1639f72ull,
        0x12f9318ef5394b75ull, 0xe9db0da790d7c32eull, 0x6620bcef4d8b0eb5ull,
        0x8b7b953b8ed3189eull, 0x7d0a2273493a6621ull, 0xdf20af053434ce17ull,
        0x62b2887b7331baecull, 0xa71755492619c3f4ull, 0x522097ad42998a12ull,
        0xc2458d132f2e1387ull, 0x408e8c9b07290afbull, 0x2c0598490a8508c2ull,
        0xea5efc3100e1c178ull, 0x38685931c5e4767aull, 0xc4d1952d625b14b5ull,
        0xa56a8f43b19c3584ull, 0xd91f8c4d9b607d5cull, 0x326db68443f212a3ull,
        0xd2bd9a2a73eb71e9ull, 0x66bcea2d87005926ull, 0x84f1195f5eb6ca23ull,
        0xe9febb2bd670152eull, 0xf9ea37451c03497cull, 0x92a00a3be8af5f6bull,
        0xbcd139ad4a61d78eull, 0x58b1ea1e8056b31bull, 0x234f8a45614acc1eull,
        0x26000fe84d224670ull, 0xe9e01eaaea3ef59dull, 0x74e93fb29d69f894ull,
        0x352177846b6df87aull, 0x61d26582769eea5bull, 0xabe970d8e85f51c5ull,
        0x14472c7c14995d01ull, 0x9315645e447455c7ull, 0x9994bd365d061d88ull,
        0x0df1e64e1cbea971ull, 0x8b142b03dd6343d4ull, 0x6f21130028806d52ull,
        0x8947fe1bd2c6a9fbull, 0xae188971455b848bull, 0xd3c45f6b6ec0cc8aull,
        0x40b71ee58bb3a3ddull, 0xfd79fe9c77e983dbull, 0x4f674edb83367443ull,
        0x9b869ab222331998ull, 0xaeaf7ace6e86355dull, 0xece4a1450437f5b4ull,
        0x688f0e57f4514a24ull, 0x6d3b18584173bee3ull, 0xd361bffa3f980649ull,
        0xea27db16ff5b92f3ull, 0x2362ca46eb522084ull, 0xebf273b49c4bbb58ull,
        0x3bae1785454ec588ull, 0x1ae28d6b9f6291caull, 0xb9ab4da3d366ef0dull,
        0x47f6f9e1469d98c2ull, 0x7baeac4dd6ecb87bull, 0x5c2acf78b71d3bbcull,
        0xf559fb307792a3baull, 0x9624f6dcbcc63602ull, 0x4196d080d3b5415aull,
        0xc4fd1f6c3bb0839bull, 0x7a3149e741e6d7a4ull, 0x5547a031d4328371ull,
        0x0a3ae109a9fe0320ull, 0x2c059daf106a1a4full, 0xe784d3e1f7efb1bcull,
        0xf40d25b1a95a8e43ull, 0xbb1c12cf6108c8b3ull, 0x77575692d452065aull,
        0x1a1aef2b3937f6b8ull, 0xc0e306c4d3e30047ull, 0x0f6bfd09df728520ull,
        0xb1b7c8446eb8aeb2ull, 0x173e8d70b8f0728cull, 0x16a01b3a6110397cull,
        0xa3793c073319b6ebull, 0x98bb11d4d2e25c86ull, 0x3130af70d85c6c29ull,
        0x4e086221bb9f68c4ull, 0x59dc530bceaefc18ull, 0x477cef2843be09d4ull,
        0xc8aecdd44e1df36full, 0x99ac54b47571da30ull, 0x4c694799cada42c3ull,
        0x53daafe3dbba4ad6ull, 0x140ac0448175b9a6ull, 0x3e14c3c15ccf67a7ull,
        0xf13bd8260af40e01ull, 0x92c8bccb22e94e9dull, 0x645bce9645f29cb3ull,
        0x955c9a900df7eb55ull, 0x48f385f2d80f2cc7ull, 0x734dfcb03e56ec08ull,
        0xf59c3d8e21315d66ull, 0xf3f0c426c5aec478ull, 0x66ee9dc3f7efc56dull,
        0xf148f4de9f8f0a61ull, 0x6356829b1fa39e98ull, 0x05fee6f256409e2bull,
        0x994a3c1a4f4cae74ull, 0x7683827651753fe6ull, 0xcc8fdbd6f1780f2full,
        0xcb7b5a44e27efeceull, 0x0454619d9edbfa56ull, 0x54a734ea309b9890ull,
        0x63e0c42c5ad93272ull, 0x8e0025eeff193fe5ull, 0xf4600b31bcf8b304ull,
        0x3cc2f762b34812e0ull, 0xe99c36ddcb52ccfdull, 0x988bb2f9fdc8d44dull,
        0xe0007d88adb8aa29ull, 0xc6a15d1505ac13a3ull, 0xb9671d94cdd610f7ull,
        0x6db6680eb728cd45ull, 0xcc9f27ad1ac77731ull, 0x912d07e663939606ull,
        0xcefab83465be9c55ull, 0x5c680e22e7d3f3d0ull, 0x1d973fcaff9ae962ull,
        0x431b895cdc152463ull, 0x787e3a10d18b44b2ull, 0xfebcbb42d01ebfe7ull,
        0x40be0e6c36827bd2ull, 0x4d9d784bbb6d4216ull, 0x2e80b78e8bf1b4a5ull,
        0x105e050e44fdb72full, 0xb000473b49bf92d7ull, 0x92bbf695285d1f7aull,
        0x1578b096ba30b096ull, 0xadb242ba6aea751eull, 0xb23d8ae7247ae439ull,
        0xd083e33cee5e3d53ull, 0x6646d7576f90a945ull, 0xdbdbdc86021917a5ull,
        0x6bd1a49f38c01e18ull, 0xbf0ce91ae3c38390ull, 0x6b5531fff35a47deull,
        0xd27a07efaf7fbeaaull, 0xcd1ace448cb03dfdull, 0x81699e49b5324ca0ull,
        0xd5b86c0073c2987dull, 0x8fcfaf27088304d0ull, 0xcd4778a1993af03dull,
        0x7a39f14acef49234ull, 0x060afc9fa34d6f73ull, 0x84664c9da3ce896dull,
        0xfcbe9722ac81b310ull, 0xa2b0d4cb14829b96ull, 0x224705065b6bdbd7ull,
        0x71b12107d1b8a8f9ull, 0x83ed654b6cbea976ull, 0x68c47dd5dff00090ull,
        0xf608af6d661371b1ull, 0xe6a7e0e4253a5b2aull, 0x3759e0c87cd63343ull,
        0xfb52d7450a7e3c02ull, 0xada31edeafb97b61ull, 0xd7ae5f85b762f39dull,
        0x4ee217019a0f72a4ull, 0x2b9127880fe3b846ull, 0xd0af21f8ed92595bull,
        0xc654651ac771cfb4ull, 0x356c0ff9a7cfaeb9ull, 0x83a030f15586041full,
        0x6b438338bf9f2f3aull, 0x72518f92a9142624ull, 0x4298b42d9d9f86fdull,
        0x1ff25c6ca89280f1ull, 0x2d35314df57f875full, 0x5c6759662cec4b63ull,
        0x8a6cb48b24717710ull, 0x77f2671510f6f6c4ull, 0x79e4ea5e4a043103ull,
        0xbf5bc5399da6f5ebull, 0xd2248b7486cef46dull, 0x789e3adaece7ea48ull,
        0x129dfafe81aa83b3ull, 0xee0376855dc7853cull, 0x9af659d3f9328c04ull,
        0xfd2243ecf4ba53e6ull, 0xe893896af08410aaull, 0xf4eb270ffe732b66ull,
        0xd81487b358fd76d5ull, 0xbf57f5771bfc2065ull, 0x0adc16073b38ba49ull,
        0x2a1c0531dbed6efaull, 0x86703e866d758700ull, 0x74039d2b5379b045ull,
        0xc14932d614908739ull, 0x7d26efc12910fe14ull, 0x8eb3fadaa4eed40full,
        0x6de33409a553233bull, 0xe5706fddeff66f43ull, 0xfe953cdab44a83f7ull,
        0x5c2206bcad488a52ull, 0x39c2e80f8c58ae57ull, 0xe826cfde2589581aull,
        0xcd5c256d220dd0d1ull, 0xc4c3ed12a5fc94d1ull, 0x53c1027afc99bba6ull,
        0x49c6a141c0b50778ull, 0x0b3145e574c64996ull, 0xb5eb6f42e11e86daull,
        0x8b82643e391a5591ull, 0xfb7651e438d47991ull, 0xac796a9aec5068f3ull,
        0x2cb2e4450635a23full, 0x17ea8c43aa18677aull, 0x6729c493e568f491ull,
        0x866b214a9b006f0bull, 0x53972430876b4b98ull, 0xc3a6cd32ad94d72bull,
        0x7d9eec2942384865ull,
};

int ferry__chunker_init(ferry__chunker *c)
{
	memset(c, 0, sizeof(*c));
	/* XXH3_state_t wants 64-byte alignment. */
	c->hraw = ferry__malloc(sizeof(ferry__hasher) + 64);
	if (!c->hraw) {
		c->oom = 1;
		return FERRY_ENOMEM;
	}
	uintptr_t a = ((uintptr_t)c->hraw + 63) & ~(uintptr_t)63;
	c->h = (ferry__hasher *)a;
	ferry__hasher_init(c->h);
	return 0;
}

/* Close the current chunk of c->cur bytes. */
static int cut(ferry__chunker *c)
{
	if (c->n >= FERRY__CHUNKS_MAX) {
		/* Too many for a manifest: the list is dropped (its memory
		 * stays bounded), the cutting goes on. */
		ferry__free(c->v);
		c->v = NULL;
		c->cap = 0;
		c->n = (size_t)FERRY__CHUNKS_MAX + 1;
		ferry__hasher_init(c->h);
		c->cur = 0;
		c->gear = 0;
		return 0;
	}
	if (ferry__grow(&c->v, &c->cap, c->n + 1, sizeof(*c->v), 64)) {
		c->oom = 1;
		return FERRY_ENOMEM;
	}
	ferry__chunk *k = &c->v[c->n++];
	k->off = c->off - c->cur;
	k->len = c->cur;
	ferry__hasher_final(c->h, &k->hash);
	ferry__hasher_init(c->h);
	c->cur = 0;
	c->gear = 0;
	return 0;
}

int ferry__chunker_update(ferry__chunker *c, const void *p, size_t n)
{
	if (c->oom)
		return FERRY_ENOMEM;
	const uint8_t *q = p, *end = q + n;
	const uint8_t *seg = q; /* start of the current chunk's bytes in p */
	uint64_t g = c->gear;
	uint32_t cur = c->cur;
	while (q < end) {
		size_t left = (size_t)(end - q);
		if (cur < GEAR_FROM) {
			size_t k = GEAR_FROM - cur;
			if (k > left)
				k = left;
			q += k;
			cur += (uint32_t)k;
			continue;
		}
		if (cur < FERRY__CHUNK_MIN) {
			/* The gear's warm-up: no cut before the minimum. */
			size_t k = FERRY__CHUNK_MIN - cur;
			if (k > left)
				k = left;
			for (const uint8_t *e = q + k; q < e; q++)
				g = (g << 1) + gear[*q];
			cur += (uint32_t)k;
			continue;
		}
		size_t k = FERRY__CHUNK_MAX - cur;
		if (k > left)
			k = left;
		const uint8_t *s = q, *e = q + k;
		int found = 0;
		/* Two bytes a step: the gear after both depends on the one
		 * before them by one shift and one add (the table loads are
		 * off that chain); the one between is checked too. */
		while (e - q >= 2) {
			uint64_t a = gear[q[0]], b = gear[q[1]];
			uint64_t g1 = (g << 1) + a;
			g = (g << 2) + (a << 1) + b;
			if (!(g1 & GEAR_MASK)) {
				g = g1;
				q++;
				found = 1;
				break;
			}
			q += 2;
			if (!(g & GEAR_MASK)) {
				found = 1;
				break;
			}
		}
		if (!found && q < e) {
			g = (g << 1) + gear[*q++];
			found = !(g & GEAR_MASK);
		}
		cur += (uint32_t)(q - s);
		if (found || cur == FERRY__CHUNK_MAX) {
			ferry__hasher_update(c->h, seg, (size_t)(q - seg));
			c->off += (uint64_t)(q - seg);
			seg = q;
			c->cur = cur;
			if (cut(c))
				return FERRY_ENOMEM;
			cur = 0;
			g = 0;
		}
	}
	ferry__hasher_update(c->h, seg, (size_t)(end - seg));
	c->off += (uint64_t)(end - seg);
	c->cur = cur;
	c->gear = g;
	return 0;
}

int ferry__chunker_final(ferry__chunker *c)
{
	if (c->oom)
		return FERRY_ENOMEM;
	if (c->cur > 0)
		return cut(c);
	return 0;
}

void ferry__chunker_free(ferry__chunker *c)
{
	ferry__free(c->hraw);
	ferry__free(c->v);
	c->hraw = NULL;
	c->h = NULL;
	c->v = NULL;
	c->n = c->cap = 0;
}

/* A block of ferry__chunk_fd's read; beyond FERRY__CHUNKS_MAX the list
 * is dropped and only the hash goes on. */
static int chunk_block(void *ctx, const void *p, size_t n)
{
	ferry__chunker *c = ctx;
	if (!c->hraw)
		return 0; /* dropped */
	int error = ferry__chunker_update(c, p, n);
	if (!error && c->n > FERRY__CHUNKS_MAX)
		ferry__chunker_free(c);
	return error;
}

int ferry__chunk_fd(ferry__hash *out, uint64_t *nread, int fd, void *buf,
                    size_t bufsize, ferry__chunk **chunks, uint32_t *nchunks)
{
	if (!chunks)
		return ferry__hash_fd(out, nread, fd, buf, bufsize);
	*chunks = NULL;
	*nchunks = 0;
	ferry__chunker c;
	memset(&c, 0, sizeof(c));
	if (ferry__chunker_init(&c))
		return FERRY_ENOMEM;
	int error = ferry__hash_fd_each(out, nread, fd, buf, bufsize,
	                                chunk_block, &c);
	if (!error && c.hraw)
		error = ferry__chunker_final(&c);
	if (!error && c.hraw && c.n > 0 && c.n <= FERRY__CHUNKS_MAX) {
		*chunks = c.v;
		*nchunks = (uint32_t)c.n;
		c.v = NULL;
	}
	int e = errno;
	ferry__chunker_free(&c);
	errno = e;
	return error;
}
