/* hostkey.c - known_hosts: algorithm preference, verification, accept-new.
 *
 * libssh2 parses the file line by line (a line it cannot parse, such as a
 * key type it does not know, is skipped rather than failing the whole
 * file).  Host names are matched as OpenSSH writes them: "host" for port 22,
 * "[host]:port" otherwise, plain or hashed.  accept-new appends exactly one
 * line and never rewrites the file. */
#include "hostkey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "b64.h"
#include "buf.h"
#include "os.h"

static char *host_pattern(const char *host, int port)
{
	if (port == 22)
		return ferry__strdup(host);
	return ferry__asprintf("[%s]:%d", host, port);
}

/* Key types known_hosts can hold: libssh2's bit, and the host-key
 * algorithms that offer it (in the order ferry prefers them). */
static const struct {
	const char *type;
	int bit;
	const char *algs;
} key_types[] = {
        {"ssh-ed25519", LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519"},
        {"ecdsa-sha2-nistp256", LIBSSH2_KNOWNHOST_KEY_ECDSA_256,
         "ecdsa-sha2-nistp256"},
        {"ecdsa-sha2-nistp384", LIBSSH2_KNOWNHOST_KEY_ECDSA_384,
         "ecdsa-sha2-nistp384"},
        {"ecdsa-sha2-nistp521", LIBSSH2_KNOWNHOST_KEY_ECDSA_521,
         "ecdsa-sha2-nistp521"},
        {"ssh-rsa", LIBSSH2_KNOWNHOST_KEY_SSHRSA,
         "rsa-sha2-512,rsa-sha2-256,ssh-rsa"},
        {"ssh-dss", LIBSSH2_KNOWNHOST_KEY_SSHDSS, NULL},
};

static int key_type_bit(const char *type)
{
	for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++)
		if (!strcmp(type, key_types[i].type))
			return key_types[i].bit;
	return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
}

static const char *bit_algs(int bit)
{
	for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++)
		if (bit == key_types[i].bit)
			return key_types[i].algs;
	return NULL;
}

/* The key type name is the first string of the key blob. */
static int blob_type(const uint8_t *blob, size_t len, char *out, size_t outsz)
{
	ferry_buf b;
	const uint8_t *p;
	size_t n;
	ferry__buf_view(&b, blob, len);
	if (ferry__buf_get_string_ptr(&b, &p, &n) || n == 0 || n >= outsz)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

static void load_known_hosts(LIBSSH2_KNOWNHOSTS *kh, const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) > 0) {
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\n' || *p == '\0' || *p == '@')
			continue; /* markers (@cert-authority, @revoked) unused
			           */
		(void)libssh2_knownhost_readline(
		        kh, line, (size_t)n, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
	}
	free(line);
	fclose(f);
}

/* Does a known_hosts entry belong to pattern?  Its key is checked through
 * libssh2 so that hashed entries are matched too. */
static int entry_matches(LIBSSH2_KNOWNHOSTS *kh, struct libssh2_knownhost *e,
                         const char *pattern)
{
	if (!e->key)
		return 0;
	size_t klen = strlen(e->key);
	uint8_t *blob = ferry__malloc(klen / 4 * 3 + 4);
	if (!blob)
		return 0;
	long blen = ferry__b64_decode(blob, e->key, klen);
	int rc = LIBSSH2_KNOWNHOST_CHECK_NOTFOUND;
	if (blen > 0)
		rc = libssh2_knownhost_checkp(
		        kh, pattern, -1, (const char *)blob, (size_t)blen,
		        LIBSSH2_KNOWNHOST_TYPE_PLAIN |
		                LIBSSH2_KNOWNHOST_KEYENC_RAW |
		                (e->typemask & LIBSSH2_KNOWNHOST_KEY_MASK),
		        NULL);
	ferry__free(blob);
	return rc == LIBSSH2_KNOWNHOST_CHECK_MATCH;
}

int ferry__hostkey_prefer(ferry_session *s, const char *path)
{
	int error = 0;
	char *pattern = host_pattern(s->host, s->port);
	LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->ssh);
	ferry_buf pref = FERRY_BUF_INIT;
	int seen = 0;
	if (!pattern || !kh) {
		error = FERRY_ENOMEM;
		goto out;
	}
	load_known_hosts(kh, path);
	struct libssh2_knownhost *e = NULL, *prev = NULL;
	while (libssh2_knownhost_get(kh, &e, prev) == 0) {
		prev = e;
		int bit = e->typemask & LIBSSH2_KNOWNHOST_KEY_MASK;
		const char *algs = bit_algs(bit);
		if (!algs || (seen & bit) || !entry_matches(kh, e, pattern))
			continue;
		seen |= bit;
		if ((pref.len && ferry__buf_put_u8(&pref, ',')) ||
		    ferry__buf_put(&pref, algs, strlen(algs))) {
			error = FERRY_ENOMEM;
			goto out;
		}
	}
	if (!pref.len)
		goto out;
	/* Then everything else libssh2 supports, in its own order. */
	const char **algs = NULL;
	int n = libssh2_session_supported_algs(s->ssh, LIBSSH2_METHOD_HOSTKEY,
	                                       &algs);
	for (int i = 0; i < n; i++) {
		if (bit_algs(key_type_bit(algs[i])) &&
		    (seen & key_type_bit(algs[i])))
			continue;
		if (ferry__buf_put_u8(&pref, ',') ||
		    ferry__buf_put(&pref, algs[i], strlen(algs[i]))) {
			error = FERRY_ENOMEM;
			break;
		}
	}
	if (n > 0)
		libssh2_free(s->ssh, algs);
	if (!error && !ferry__buf_put_u8(&pref, '\0')) {
		/* Names libssh2 does not know make it fail: retry without. */
		if (libssh2_session_method_pref(s->ssh, LIBSSH2_METHOD_HOSTKEY,
		                                (const char *)pref.data) < 0)
			ferry__log(s, FERRY_LOG_DEBUG,
			           "host key preference not applied: %s",
			           (const char *)pref.data);
	}
out:
	if (kh)
		libssh2_knownhost_free(kh);
	ferry__buf_free(&pref);
	ferry__free(pattern);
	return error;
}

static int append_line(ferry_session *s, const char *path, const char *line)
{
	/* Create ~/.ssh (or whatever holds the file) owner-only if missing. */
	char *dir = ferry__strdup(path);
	if (!dir)
		return FERRY_ENOMEM;
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			int e = errno;
			ferry__free(dir);
			return ferry__seterr(s, FERRY_EHOSTKEY,
			                     "host key: cannot create %s: %s",
			                     path, strerror(e));
		}
	}
	ferry__free(dir);
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return ferry__seterr(s, FERRY_EHOSTKEY,
		                     "host key: cannot add to %s: %s", path,
		                     strerror(errno));
	/* Keep lines separate when the file does not end in a newline. */
	struct stat st;
	int need_nl = 0;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		char last;
		if (pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
			need_nl = 1;
	}
	size_t len = strlen(line);
	int error = 0;
	if ((need_nl && write(fd, "\n", 1) != 1) ||
	    write(fd, line, len) != (ssize_t)len || fsync(fd) < 0)
		error = ferry__seterr(s, FERRY_EHOSTKEY,
		                      "host key: cannot write %s: %s", path,
		                      strerror(errno));
	if (close(fd) < 0 && !error)
		error = ferry__seterr(s, FERRY_EHOSTKEY,
		                      "host key: cannot write %s: %s", path,
		                      strerror(errno));
	return error;
}

/* An unknown host: refused when known under another key type or when
 * checking is strict, else its key is appended to path. */
static int unknown_host(ferry_session *s, LIBSSH2_KNOWNHOSTS *kh,
                        const char *path, const char *pattern, const char *type,
                        const char *fp, ferry_hostkey_policy policy,
                        const char *key, size_t klen)
{
	struct libssh2_knownhost *e = NULL, *prev = NULL;
	while (libssh2_knownhost_get(kh, &e, prev) == 0) {
		prev = e;
		if (entry_matches(kh, e, pattern))
			return ferry__seterr(
			        s, FERRY_EHOSTKEY,
			        "host key: %s is known in %s with another key "
			        "type, "
			        "but offered %s %s; refusing to connect",
			        pattern, path, type, fp);
	}
	if (policy == FERRY_HOSTKEY_STRICT)
		return ferry__seterr(
		        s, FERRY_EHOSTKEY,
		        "host key: %s is not in %s (its %s key is %s); strict "
		        "checking refuses unknown hosts",
		        pattern, path, type, fp);
	char *b64 = ferry__malloc(ferry__b64_len(klen) + 1), *line = NULL;
	if (b64) {
		ferry__b64_encode(b64, (const uint8_t *)key, klen, 1);
		line = ferry__asprintf("%s %s %s\n", pattern, type, b64);
	}
	int error = line ? append_line(s, path, line) : FERRY_ENOMEM;
	if (!error)
		ferry__log(s, FERRY_LOG_INFO, "added %s key %s of %s to %s",
		           type, fp, pattern, path);
	ferry__free(line);
	ferry__free(b64);
	return error;
}

/* Match the offered key against path's entries for pattern. */
static int known_host(ferry_session *s, const char *path, const char *pattern,
                      const char *type, const char *fp,
                      ferry_hostkey_policy policy, const char *key, size_t klen)
{
	LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->ssh);
	if (!kh)
		return FERRY_ENOMEM;
	load_known_hosts(kh, path);
	int error = 0;
	int rc = libssh2_knownhost_checkp(kh, pattern, -1, key, klen,
	                                  LIBSSH2_KNOWNHOST_TYPE_PLAIN |
	                                          LIBSSH2_KNOWNHOST_KEYENC_RAW |
	                                          key_type_bit(type),
	                                  NULL);
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
		error = ferry__seterr(s, FERRY_EHOSTKEY,
		                      "host key: the %s key of %s has CHANGED: "
		                      "the server offers "
		                      "%s, which %s does not hold. Someone "
		                      "could be intercepting "
		                      "the connection (or the host was "
		                      "reinstalled). Refusing to "
		                      "connect; if the change is expected, "
		                      "remove the old line from %s",
		                      type, pattern, fp, path, path);
	else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND)
		error = unknown_host(s, kh, path, pattern, type, fp, policy,
		                     key, klen);
	else if (rc != LIBSSH2_KNOWNHOST_CHECK_MATCH)
		error = ferry__seterr_ssh(s, FERRY_EHOSTKEY, "host key check");
	libssh2_knownhost_free(kh);
	return error;
}

int ferry__hostkey_check(ferry_session *s, const char *path,
                         ferry_hostkey_policy policy, char *fp, size_t fpsz)
{
	size_t klen = 0;
	int ktype = 0;
	char type[64] = "?";
	const char *key = libssh2_session_hostkey(s->ssh, &klen, &ktype);
	const char *hash =
	        libssh2_hostkey_hash(s->ssh, LIBSSH2_HOSTKEY_HASH_SHA256);
	if (!key || !hash)
		return ferry__seterr_ssh(s, FERRY_EHOSTKEY, "host key");
	blob_type((const uint8_t *)key, klen, type, sizeof(type));
	char fpb64[64];
	ferry__b64_encode(fpb64, (const uint8_t *)hash, 32, 0);
	snprintf(fp, fpsz, "SHA256:%s", fpb64);

	if (policy == FERRY_HOSTKEY_OFF) {
		ferry__log(s, FERRY_LOG_WARN,
		           "WARNING: host key checking is OFF: %s key %s of %s "
		           "is NOT verified (tests only)",
		           type, fp, s->host);
		return 0;
	}
	char *pattern = host_pattern(s->host, s->port);
	int error = pattern ? known_host(s, path, pattern, type, fp, policy,
	                                 key, klen)
	                    : FERRY_ENOMEM;
	ferry__free(pattern);
	return error;
}
