/* os.c - the operating-system helpers every module shares: clocks, the
 * login directory and the local user name. */
#include "os.h"

#include <errno.h>
#include <pwd.h>
#include <string.h>
#include <sys/random.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"

int64_t ferry__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double ferry__now_ms_f(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

const char *ferry__home_dir(void)
{
	const char *home = getenv("HOME");
	if (home && home[0] == '/')
		return home;
	struct passwd *pw = getpwuid(geteuid());
	return pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
}

char *ferry__home_path(const char *rel)
{
	const char *home = ferry__home_dir();
	return ferry__asprintf("%s/%s", home ? home : "", rel);
}

const char *ferry__local_user(void)
{
	struct passwd *pw = getpwuid(geteuid());
	if (pw && pw->pw_name)
		return pw->pw_name;
	const char *u = getenv("USER");
	return u && *u ? u : "root";
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

int ferry__random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return FERRY_EIO;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

char *ferry__dirname(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return ferry__strdup(".");
	if (slash == path)
		return ferry__strdup("/");
	return ferry__strndup(path, (size_t)(slash - path));
}
