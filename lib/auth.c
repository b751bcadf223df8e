/* auth.c - public-key authentication: ssh-agent first, then identity files.
 * Never prompts: a passphrase comes from the options or $FERRY_PASSPHRASE. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "b64.h"
#include "buf.h"
#include "hostkey.h"

enum key_kind { KEY_UNKNOWN, KEY_RSA, KEY_OTHER };

typedef struct key_facts {
	enum key_kind kind;
	int encrypted;
	char type[48];
} key_facts;

/* Learn a private key file's type and whether it is encrypted, from the
 * PEM header or the public part of an OpenSSH-format key. */
static void inspect_key(const char *path, key_facts *kf)
{
	memset(kf, 0, sizeof(*kf));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char *text = ferry__malloc(65536);
	ssize_t n = text ? read(fd, text, 65535) : -1;
	close(fd);
	if (n <= 0) {
		ferry__free_secret(text, 65536);
		return;
	}
	text[n] = '\0';
	if (strstr(text, "BEGIN RSA PRIVATE KEY")) {
		kf->kind = KEY_RSA;
		kf->encrypted = strstr(text, "ENCRYPTED") != NULL;
		snprintf(kf->type, sizeof(kf->type), "ssh-rsa");
		goto out;
	}
	if (strstr(text, "BEGIN EC PRIVATE KEY")) {
		kf->kind = KEY_OTHER;
		kf->encrypted = strstr(text, "ENCRYPTED") != NULL;
		snprintf(kf->type, sizeof(kf->type), "ecdsa");
		goto out;
	}
	const char *begin = "-----BEGIN OPENSSH PRIVATE KEY-----";
	char *b = strstr(text, begin);
	char *e = b ? strstr(b, "-----END OPENSSH PRIVATE KEY-----") : NULL;
	if (!b || !e)
		goto out;
	b += strlen(begin);
	size_t blen = (size_t)(e - b);
	uint8_t *raw = ferry__malloc(blen / 4 * 3 + 4);
	long rlen = raw ? ferry__b64_decode(raw, b, blen) : -1;
	ferry_buf kb;
	const uint8_t *p;
	size_t pn;
	uint32_t nkeys;
	static const char magic[] = "openssh-key-v1";
	if (rlen < (long)sizeof(magic) || memcmp(raw, magic, sizeof(magic)))
		goto raw_out;
	ferry__buf_view(&kb, raw + sizeof(magic), (size_t)rlen - sizeof(magic));
	if (ferry__buf_get_string_ptr(&kb, &p, &pn))
		goto raw_out;
	kf->encrypted = !(pn == 4 && !memcmp(p, "none", 4));
	if (ferry__buf_get_string_ptr(&kb, &p, &pn) || /* kdf */
	    ferry__buf_get_string_ptr(&kb, &p, &pn) || /* kdf options */
	    ferry__buf_get_u32(&kb, &nkeys) ||
	    ferry__buf_get_string_ptr(&kb, &p, &pn))
		goto raw_out;
	ferry_buf pub;
	ferry__buf_view(&pub, p, pn);
	if (ferry__buf_get_string_ptr(&pub, &p, &pn) || pn >= sizeof(kf->type))
		goto raw_out;
	memcpy(kf->type, p, pn);
	kf->type[pn] = '\0';
	kf->kind = strcmp(kf->type, "ssh-rsa") ? KEY_OTHER : KEY_RSA;
raw_out:
	ferry__free_secret(raw, rlen > 0 ? (size_t)rlen : 1);
out:
	ferry__free_secret(text, 65536);
}

static int has_method(const char *list, const char *m)
{
	size_t ml = strlen(m);
	for (const char *p = list; p && *p;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (l == ml && !memcmp(p, m, ml))
			return 1;
		p = c ? c + 1 : NULL;
	}
	return 0;
}

/* Append "; text" to the running account of what was tried. */
__attribute__((format(printf, 3, 4))) static void note(char *tried, size_t sz,
                                                       const char *fmt, ...)
{
	va_list ap;
	size_t len = strlen(tried);
	if (len + 3 >= sz)
		return;
	if (len) {
		memcpy(tried + len, "; ", 2);
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(tried + len, sz - len, fmt, ap);
	va_end(ap);
}

static int try_agent(ferry_session *s, int64_t deadline, char *tried,
                     size_t tsz, char **how)
{
	const char *sock = getenv("SSH_AUTH_SOCK");
	if (!sock || !*sock)
		return 1;
	LIBSSH2_AGENT *agent = libssh2_agent_init(s->ssh);
	if (!agent)
		return 1;
	int result = 1, count = 0;
	if (libssh2_agent_connect(agent) ||
	    libssh2_agent_list_identities(agent)) {
		note(tried, tsz, "ssh-agent at %s unusable", sock);
		goto out;
	}
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	while (libssh2_agent_get_identity(agent, &id, prev) == 0) {
		prev = id;
		count++;
		int rc;
		while ((rc = libssh2_agent_userauth(agent, s->user, id)) ==
		       LIBSSH2_ERROR_EAGAIN) {
			int w = ferry__session_wait(s, deadline, 0);
			if (w) {
				result = w;
				goto out;
			}
		}
		if (rc == 0) {
			*how = ferry__asprintf("agent key %s",
			                       id->comment ? id->comment : "");
			result = *how ? 0 : FERRY_ENOMEM;
			goto out;
		}
	}
	note(tried, tsz, "ssh-agent: %d key(s) refused", count);
out:
	libssh2_agent_disconnect(agent);
	libssh2_agent_free(agent);
	return result;
}

static int try_file(ferry_session *s, const char *path, const char *pass,
                    int64_t deadline, char *tried, size_t tsz, int *rsa_failed,
                    char **how)
{
	if (access(path, R_OK) < 0) {
		note(tried, tsz, "%s: %s", path, strerror(errno));
		return 1;
	}
	key_facts kf;
	inspect_key(path, &kf);
	if (kf.encrypted && (!pass || !*pass)) {
		note(tried, tsz,
		     "%s is encrypted and no passphrase was given (set "
		     "FERRY_PASSPHRASE)",
		     path);
		return 1;
	}
	int rc;
	while ((rc = libssh2_userauth_publickey_fromfile_ex(
	                s->ssh, s->user, (unsigned)strlen(s->user), NULL, path,
	                pass)) == LIBSSH2_ERROR_EAGAIN) {
		int w = ferry__session_wait(s, deadline, 0);
		if (w)
			return w;
	}
	if (rc == 0) {
		*how = ferry__asprintf("publickey %s", path);
		return *how ? 0 : FERRY_ENOMEM;
	}
	/* Nothing else shares the socket yet: a failed send is fatal too. */
	if (ferry__ssh_conn_lost(rc) || rc == LIBSSH2_ERROR_SOCKET_SEND)
		return ferry__seterr_ssh(s, FERRY_ECONN, "auth");
	const char *msg = ferry__ssh_msg(s->ssh);
	switch (rc) {
	case LIBSSH2_ERROR_FILE:
		note(tried, tsz,
		     kf.encrypted ? "%s: cannot decrypt the key (wrong "
		                    "passphrase?): %s"
		                  : "%s: cannot load the key: %s",
		     path, msg);
		break;
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
	case LIBSSH2_ERROR_METHOD_NOT_SUPPORTED:
		if (kf.kind == KEY_RSA) {
			*rsa_failed = 1;
			note(tried, tsz, "%s (RSA) refused by the server",
			     path);
		} else {
			note(tried, tsz, "%s (%s) refused by the server", path,
			     kf.type[0] ? kf.type : "key");
		}
		break;
	default:
		note(tried, tsz, "%s: %s", path, msg);
		break;
	}
	return 1;
}

/* libssh2 before 1.11 signs RSA keys with SHA-1 only (ssh-rsa), which
 * OpenSSH 8.8 and later refuse; 1.11 signs with rsa-sha2-256/512.  The
 * library the program runs with decides, not the one it was built with. */
int ferry__libssh2_rsa_sha1_only(void)
{
	const char *v = libssh2_version(0);
	int major = 0, minor = 0;
	if (!v || sscanf(v, "%d.%d", &major, &minor) != 2)
		return 0;
	return major < 1 || (major == 1 && minor < 11);
}

int ferry__auth(ferry_session *s, const ferry_session_opts *o, int64_t deadline,
                char **how, const char **method)
{
	char tried[768] = "";
	int rsa_failed = 0, rc = 1;
	char *defaults[2] = {NULL, NULL};
	*method = NULL;

	char *list;
	while (!(list = libssh2_userauth_list(s->ssh, s->user,
	                                      (unsigned)strlen(s->user))) &&
	       libssh2_session_last_errno(s->ssh) == LIBSSH2_ERROR_EAGAIN) {
		int w = ferry__session_wait(s, deadline, 0);
		if (w)
			return w == FERRY_ETIMEOUT
			               ? ferry__seterr(s, w, "auth: timed out")
			               : w;
	}
	if (!list) {
		if (libssh2_userauth_authenticated(s->ssh)) {
			*how = ferry__strdup("none");
			return *how ? 0 : FERRY_ENOMEM;
		}
		return ferry__seterr_ssh(s, FERRY_ECONN, "auth");
	}
	if (!has_method(list, "publickey"))
		return ferry__seterr(s, FERRY_EAUTH,
		                     "auth: %s accepts no public key "
		                     "authentication (it offers: %s)",
		                     s->target, list);
	if (!o->no_agent) {
		rc = try_agent(s, deadline, tried, sizeof(tried), how);
		if (rc <= 0)
			goto out;
	}
	const char *pass =
	        o->passphrase ? o->passphrase : getenv("FERRY_PASSPHRASE");
	if (o->identity_files && o->identity_count) {
		for (size_t i = 0; i < o->identity_count && rc > 0; i++)
			rc = try_file(s, o->identity_files[i], pass, deadline,
			              tried, sizeof(tried), &rsa_failed, how);
	} else {
		defaults[0] = ferry__home_path(".ssh/id_ed25519");
		defaults[1] = ferry__home_path(".ssh/id_ecdsa");
		if (!defaults[0] || !defaults[1]) {
			rc = FERRY_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < 2 && rc > 0; i++)
			if (access(defaults[i], F_OK) == 0)
				rc = try_file(s, defaults[i], pass, deadline,
				              tried, sizeof(tried), &rsa_failed,
				              how);
	}
out:
	ferry__free(defaults[0]);
	ferry__free(defaults[1]);
	if (rc == 0) {
		*method = "publickey";
		return 0;
	}
	if (rc < 0)
		return rc;
	return ferry__seterr(
	        s, FERRY_EAUTH, "auth: %s refused every key (%s)%s", s->target,
	        tried[0] ? tried : "no agent and no identity file found",
	        rsa_failed && ferry__libssh2_rsa_sha1_only()
	                ? ". Hint: this libssh2 signs RSA keys with SHA-1 "
	                  "only, "
	                  "which OpenSSH 8.8 and later refuse; use an ed25519 "
	                  "key (ssh-keygen -t ed25519)"
	                : "");
}
