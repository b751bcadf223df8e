/*
 * gentree - deterministic benchmark trees with the DESIGN.md profile.
 *
 *   gentree create DIR [-n FILES] [-s SEED]
 *       FILES skills files (default 400) under DIR/skills in about FILES*0.15
 *       directories of depth <= 4, log-normal sizes (median 3 KiB, sigma 1,
 *       clamped to 200 B .. 64 KiB), text-like content, fixed mtimes; plus
 *       three owner-only (0600) credential files under DIR/creds.
 *   gentree big FILE [-m MIB] [-s SEED]
 *       one incompressible file of MIB MiB (default 256).
 *   gentree touch DIR -k K [-s SEED] [--mtime-only]
 *       rewrite K files chosen by SEED among DIR's regular files (content
 *       changes by a few bytes, mtime set to now), or set only their mtime.
 *   gentree patch FILE [-k KIB] [-s SEED]
 *       overwrite KIB KiB (default 1024) of FILE in place with fresh PRNG
 *       bytes at an offset near the middle chosen by SEED (byte-granular,
 *       within +-1/16 of the size around the middle); the size stays, the
 *       mtime is set to now (at least 1 s later than before).  Prints
 *       "patch FILE offset OFF bytes LEN".
 *
 * Same arguments, same bytes: the PRNG is splitmix64 seeded from SEED.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH   4 /* directories below DIR: DIR/skills/a/b/c is 4 */
#define MIN_SIZE    200
#define MAX_SIZE    65536
#define MEDIAN_SIZE 3072.0
#define SIGMA       1.0
#define BASE_MTIME  1700000000L

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(uint64_t a, uint64_t b)
{
	rng_state = a * 0x2545f4914f6cdd1dULL ^ (b + 0x632be59bd9b4e019ULL);
	(void)rng_next();
}

static uint64_t rng_below(uint64_t n)
{
	return n ? rng_next() % n : 0;
}

static double rng_unit(void)
{
	return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(void)
{
	double u1 = rng_unit(), u2 = rng_unit();
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static const char *const words[] = {
        "agent",    "skill",    "remote",    "command", "session",  "file",
        "sync",     "deploy",   "config",    "token",   "cache",    "request",
        "response", "handler",  "prompt",    "context", "memory",   "tool",
        "search",   "result",   "error",     "retry",   "timeout",  "stream",
        "buffer",   "parse",    "format",    "output",  "input",    "schema",
        "the",      "a",        "to",        "of",      "and",      "in",
        "is",       "for",      "with",      "on",      "when",     "if",
        "then",     "return",   "value",     "list",    "map",      "string",
        "number",   "path",     "directory", "user",    "host",     "port",
        "key",      "secret",   "python",    "bash",    "shell",    "git",
        "commit",   "branch",   "merge",     "test",    "build",    "run",
        "install",  "package",  "version",   "update",  "check",    "verify",
        "example",  "usage",    "note",      "warning", "step",     "first",
        "next",     "last",     "each",      "every",   "only",     "never",
        "always",   "should",   "must",      "can",     "will",     "use",
        "read",     "write",    "open",      "close",   "start",    "stop",
        "create",   "delete",   "move",      "copy",    "link",     "image",
        "browser",  "page",     "click",     "query",   "database", "table",
        "row",      "column",   "index",     "model",   "data",     "json",
        "yaml",     "markdown", "http",      "api",     "client",   "server",
        "local",    "global",   "default",   "option",  "flag",     "argument",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

static const char *const exts[] = {".md", ".md",   ".md",  ".py",
                                   ".sh", ".json", ".txt", ".yaml"};

static const char *word(void)
{
	return words[rng_below(NWORDS)];
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Text-like bytes: markdown headings, bullet lines, prose, code-ish lines. */
static void fill_text(char *buf, size_t size)
{
	size_t n = 0;
	while (n < size) {
		char line[160];
		size_t len = 0, target = 30 + rng_below(70);
		uint64_t kind = rng_below(10);
		const char *lead = kind == 0   ? "## "
		                   : kind < 3  ? "- "
		                   : kind == 3 ? "    "
		                               : "";
		len = (size_t)snprintf(line, sizeof(line), "%s", lead);
		while (len < target) {
			int w = snprintf(line + len, sizeof(line) - len, "%s%s",
			                 len > strlen(lead) ? " " : "", word());
			if (w < 0 || (size_t)w >= sizeof(line) - len)
				break;
			len += (size_t)w;
		}
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		line[len++] = '\n';
		if (len > size - n)
			len = size - n;
		memcpy(buf + n, line, len);
		n += len;
	}
	if (size > 0)
		buf[size - 1] = '\n';
}

static size_t draw_size(void)
{
	double s = MEDIAN_SIZE * exp(SIGMA * rng_normal());
	if (s < MIN_SIZE)
		s = MIN_SIZE;
	if (s > MAX_SIZE)
		s = MAX_SIZE;
	return (size_t)s;
}

static int set_mtime_at(int dfd, const char *name, long sec, long nsec)
{
	struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
	return utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

/* Create path (relative to root fd) with content; O_EXCL so a name is never
 * reused.  Returns 0, or -1 with errno (EEXIST when taken). */
static int make_file(int rootfd, const char *path, const char *data,
                     size_t size, mode_t mode, long mtime_sec, long mtime_nsec)
{
	int fd = openat(rootfd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	                mode);
	if (fd < 0)
		return -1;
	if (fchmod(fd, mode) != 0 || write_all(fd, data, size) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (close(fd) != 0)
		return -1;
	return set_mtime_at(rootfd, path, mtime_sec, mtime_nsec);
}

struct dirent_gen {
	char *path; /* relative to DIR */
	int depth;  /* DIR/skills is 1 */
};

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "gentree: %s %s: %s\n", what, arg ? arg : "",
	        strerror(errno));
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "gentree: out of memory\n");
		exit(1);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static const char *const cred_names[] = {".env", "token.json", "id_service"};
static const size_t cred_sizes[] = {310, 1480, 419};

static int cmd_create(const char *dir, long nfiles, uint64_t seed)
{
	long ndirs = (long)(nfiles * 0.15 + 0.5);
	if (ndirs < 1)
		ndirs = 1;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		die("mkdir", dir);
	int rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		die("open", dir);
	if (mkdirat(rootfd, "skills", 0755) != 0)
		die("mkdir (the directory must be empty)", "skills");
	if (mkdirat(rootfd, "creds", 0700) != 0)
		die("mkdir", "creds");

	rng_seed(seed, 1);
	struct dirent_gen *dirs = xmalloc(sizeof(*dirs) * (size_t)ndirs);
	long *shallow = xmalloc(sizeof(long) * (size_t)ndirs);
	long nshallow = 0;
	dirs[0].path = xstrdup("skills");
	dirs[0].depth = 1;
	shallow[nshallow++] = 0;
	for (long i = 1; i < ndirs; i++) {
		long parent = shallow[rng_below((uint64_t)nshallow)];
		char path[4096];
		const char *a = word(), *b = word();
		int n = snprintf(path, sizeof(path), "%s/%s-%s",
		                 dirs[parent].path, a, b);
		for (int k = 2; mkdirat(rootfd, path, 0755) != 0; k++) {
			if (errno != EEXIST || k > 1000)
				die("mkdir", path);
			n = snprintf(path, sizeof(path), "%s/%s-%s-%d",
			             dirs[parent].path, a, b, k);
		}
		(void)n;
		dirs[i].path = xstrdup(path);
		dirs[i].depth = dirs[parent].depth + 1;
		if (dirs[i].depth < MAX_DEPTH)
			shallow[nshallow++] = i;
	}

	char *buf = xmalloc(MAX_SIZE + 64);
	size_t *sizes = xmalloc(sizeof(size_t) * (size_t)(nfiles + 3));
	unsigned long long total = 0;
	int maxdepth = 0;
	for (long j = 0; j < nfiles; j++) {
		rng_seed(seed, 1000 + (uint64_t)j);
		long d = j < ndirs ? j : (long)rng_below((uint64_t)ndirs);
		size_t size = draw_size();
		fill_text(buf, size);
		char path[4096];
		if (j < ndirs)
			snprintf(path, sizeof(path), "%s/SKILL.md",
			         dirs[d].path);
		else
			snprintf(path, sizeof(path), "%s/%s-%s%s", dirs[d].path,
			         word(), word(), exts[rng_below(8)]);
		long nsec = (long)((uint64_t)j * 7919u % 1000000000u);
		for (int k = 2; make_file(rootfd, path, buf, size, 0644,
		                          BASE_MTIME + j, nsec) != 0;
		     k++) {
			if (errno != EEXIST || k > 1000)
				die("create", path);
			snprintf(path, sizeof(path), "%s/%s-%d%s", dirs[d].path,
			         word(), k, exts[rng_below(8)]);
		}
		if (dirs[d].depth > maxdepth)
			maxdepth = dirs[d].depth;
		sizes[j] = size;
		total += size;
	}
	for (int c = 0; c < 3; c++) {
		char path[256];
		rng_seed(seed, 900 + (uint64_t)c);
		fill_text(buf, cred_sizes[c]);
		snprintf(path, sizeof(path), "creds/%s", cred_names[c]);
		if (make_file(rootfd, path, buf, cred_sizes[c], 0600,
		              BASE_MTIME - 100 + c, 0) != 0)
			die("create", path);
		sizes[nfiles + c] = cred_sizes[c];
		total += cred_sizes[c];
	}
	qsort(sizes, (size_t)nfiles + 3, sizeof(size_t), cmp_size);
	/* Directories: DIR, DIR/creds and the skills tree. */
	printf("files %ld dirs %ld bytes %llu median %zu min %zu max %zu "
	       "maxdepth %d\n",
	       nfiles + 3, ndirs + 2, total, sizes[(nfiles + 3) / 2], sizes[0],
	       sizes[nfiles + 2], maxdepth);
	for (long i = 0; i < ndirs; i++)
		free(dirs[i].path);
	free(dirs);
	free(shallow);
	free(buf);
	free(sizes);
	close(rootfd);
	return 0;
}

static int cmd_big(const char *file, long mib, uint64_t seed)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("open", file);
	size_t blk = 1 << 20;
	uint64_t *buf = xmalloc(blk);
	rng_seed(seed, 77);
	for (long m = 0; m < mib; m++) {
		for (size_t i = 0; i < blk / 8; i++)
			buf[i] = rng_next();
		if (write_all(fd, buf, blk) != 0)
			die("write", file);
	}
	free(buf);
	if (close(fd) != 0)
		die("close", file);
	if (set_mtime_at(AT_FDCWD, file, BASE_MTIME, 0) != 0)
		die("utimensat", file);
	printf("big %s bytes %llu\n", file, (unsigned long long)mib << 20);
	return 0;
}

static int cmd_patch(const char *file, long kib, uint64_t seed)
{
	int fd = open(file, O_WRONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		die("open", file);
	uint64_t size = (uint64_t)st.st_size;
	uint64_t len = (uint64_t)kib << 10;
	if (len > size)
		len = size;
	rng_seed(seed, 9000);
	/* the middle, moved by up to +-size/16, clamped into the file */
	uint64_t span = size / 8 + 1;
	int64_t off = (int64_t)(size / 2) - (int64_t)(len / 2) +
	              (int64_t)rng_below(span) - (int64_t)(span / 2);
	if (off < 0)
		off = 0;
	if ((uint64_t)off + len > size)
		off = (int64_t)(size - len);
	size_t blk = 1 << 20;
	uint64_t *buf = xmalloc(blk);
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < blk ? (size_t)(len - done) : blk;
		for (size_t i = 0; i < blk / 8; i++)
			buf[i] = rng_next();
		if (lseek(fd, off + (off_t)done, SEEK_SET) < 0 ||
		    write_all(fd, buf, n) != 0)
			die("write", file);
		done += n;
	}
	free(buf);
	if (close(fd) != 0)
		die("close", file);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec <= st.st_mtim.tv_sec)
		now.tv_sec = st.st_mtim.tv_sec + 1;
	struct timespec tv[2] = {now, now};
	if (utimensat(AT_FDCWD, file, tv, 0) != 0)
		die("utimensat", file);
	printf("patch %s offset %lld bytes %llu\n", file, (long long)off,
	       (unsigned long long)len);
	return 0;
}

struct pathlist {
	char **v;
	size_t n, cap;
};

static void list_files(const char *root, const char *rel, struct pathlist *l)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
	DIR *d = opendir(path);
	if (!d)
		die("opendir", path);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char sub[4096];
		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "",
		         e->d_name);
		struct stat st;
		char full[8192];
		snprintf(full, sizeof(full), "%s/%s", root, sub);
		if (lstat(full, &st) != 0)
			die("lstat", full);
		if (S_ISDIR(st.st_mode)) {
			list_files(root, sub, l);
		} else if (S_ISREG(st.st_mode)) {
			if (l->n == l->cap) {
				l->cap = l->cap ? l->cap * 2 : 1024;
				char **nv =
				        realloc(l->v, l->cap * sizeof(char *));
				if (!nv)
					die("realloc", NULL);
				l->v = nv;
			}
			l->v[l->n++] = xstrdup(sub);
		}
	}
	closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_touch(const char *dir, long k, uint64_t seed, int mtime_only)
{
	struct pathlist l = {0};
	list_files(dir, "", &l);
	qsort(l.v, l.n, sizeof(char *), cmp_str);
	if ((size_t)k > l.n)
		k = (long)l.n;
	char *picked = calloc(l.n ? l.n : 1, 1);
	char *buf = xmalloc(MAX_SIZE + 64);
	if (!picked)
		die("calloc", NULL);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	rng_seed(seed, 5000 + (uint64_t)mtime_only);
	for (long i = 0; i < k; i++) {
		size_t idx;
		do
			idx = (size_t)rng_below(l.n);
		while (picked[idx]);
		picked[idx] = 1;
		char full[8192];
		snprintf(full, sizeof(full), "%s/%s", dir, l.v[idx]);
		struct stat st;
		if (stat(full, &st) != 0)
			die("stat", full);
		if (!mtime_only) {
			size_t size = (size_t)st.st_size + 1 + rng_below(64);
			if (size > MAX_SIZE)
				size = (size_t)st.st_size - 1 - rng_below(64);
			fill_text(buf, size);
			int fd = open(full, O_WRONLY | O_TRUNC | O_CLOEXEC);
			if (fd < 0 || write_all(fd, buf, size) != 0 ||
			    close(fd) != 0)
				die("rewrite", full);
		}
		/* At least one second later than before: rsync compares whole
		 * seconds, and a touch must always be visible to every tool. */
		struct timespec ts = now;
		if (ts.tv_sec <= st.st_mtim.tv_sec)
			ts.tv_sec = st.st_mtim.tv_sec + 1;
		struct timespec tv[2] = {ts, ts};
		if (utimensat(AT_FDCWD, full, tv, 0) != 0)
			die("utimensat", full);
		printf("%s\n", l.v[idx]);
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
	free(picked);
	free(buf);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: gentree create DIR [-n FILES] [-s SEED]\n"
	        "       gentree big FILE [-m MIB] [-s SEED]\n"
	        "       gentree touch DIR -k K [-s SEED] [--mtime-only]\n"
	        "       gentree patch FILE [-k KIB] [-s SEED]\n");
	exit(2);
}

static long num(const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi) {
		fprintf(stderr, "gentree: bad number %s (%ld..%ld)\n", s, lo,
		        hi);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	const char *cmd = argv[1], *target = argv[2];
	long n = 400, mib = 256, k = -1;
	uint64_t seed = 1;
	int mtime_only = 0;
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--mtime-only")) {
			mtime_only = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		if (!strcmp(a, "-n"))
			n = num(argv[++i], 1, 100000);
		else if (!strcmp(a, "-m"))
			mib = num(argv[++i], 1, 65536);
		else if (!strcmp(a, "-k"))
			k = num(argv[++i], 0, 100000);
		else if (!strcmp(a, "-s"))
			seed = (uint64_t)num(argv[++i], 0, 0x7fffffffL);
		else
			usage();
	}
	umask(022);
	if (!strcmp(cmd, "create"))
		return cmd_create(target, n, seed);
	if (!strcmp(cmd, "big"))
		return cmd_big(target, mib, seed);
	if (!strcmp(cmd, "patch"))
		return cmd_patch(target, k >= 0 ? k : 1024, seed);
	if (!strcmp(cmd, "touch") && k >= 0)
		return cmd_touch(target, k, seed, mtime_only);
	usage();
	return 2;
}
