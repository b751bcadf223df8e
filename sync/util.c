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

ssize_t ferry__read_full(int fd, void *buf, size_t size)
{
	size_t got = 0;
	while (got < size) {
		ssize_t r = read(fd, (char *)buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}
