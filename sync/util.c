#include "sync/util.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"

int ferry__grow(void *pv, size_t *cap, size_t need, size_t elem, size_t first)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : first;
	while (ncap < need)
		ncap *= 2;
	void *old;
	memcpy(&old, pv, sizeof(old));
	void *nv = ferry__reallocarray(old, ncap, elem);
	if (!nv)
		return FERRY_ENOMEM;
	memcpy(pv, &nv, sizeof(nv));
	*cap = ncap;
	return 0;
}

uint32_t ferry__mtime_s(int64_t ns)
{
	int64_t s = ns / 1000000000;
	if (ns < 0 && ns % 1000000000)
		s--;
	return (uint32_t)s;
}
