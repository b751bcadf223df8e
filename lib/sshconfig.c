/* sshconfig.c - the ssh_config lookup (see sshconfig.h).  The file is
 * untrusted input: every line is bounded, every value checked. */
#include "sshconfig.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "os.h"

#define MAX_FILE (1u << 20)
#define MAX_LINE 4096

typedef struct {
	ferry__sshcfg *c;
	const char *name, *alias;
	int lineno;
	char *err;
	size_t err_size;
} parser;

static int bad(parser *p, const char *what, const char *v)
{
	snprintf(p->err, p->err_size, "%s line %d: %s '%s'", p->name, p->lineno,
	         what, v);
	return FERRY_EINVALID;
}

/* ssh: a host matches a pattern list when some pattern matches and no
 * negated one does. */
static int host_matches(const char *host, char *patterns)
{
	int match = 0;
	for (char *save = NULL, *p = strtok_r(patterns, " \t", &save); p;
	     p = strtok_r(NULL, " \t", &save)) {
		int neg = *p == '!';
		if (fnmatch(neg ? p + 1 : p, host, FNM_CASEFOLD) == 0) {
			if (neg)
				return 0;
			match = 1;
		}
	}
	return match;
}

/* ~/ and %h, %% as ssh expands them for these keywords; NULL on ENOMEM or
 * when the result would not fit MAX_LINE. */
static char *expand(const char *v, const char *alias)
{
	char out[MAX_LINE];
	size_t o = 0, n;
	const char *home = ferry__home_dir();
	if (v[0] == '~' && v[1] == '/' && home) {
		if ((n = strlen(home)) >= sizeof(out))
			return NULL;
		memcpy(out, home, n);
		o = n;
		v++;
	}
	for (; *v; v++) {
		const char *add = v;
		n = 1;
		if (*v == '%' && (v[1] == 'h' || v[1] == '%')) {
			add = v[1] == 'h' ? alias : "%";
			n = strlen(add);
			v++;
		}
		if (o + n >= sizeof(out))
			return NULL;
		memcpy(out + o, add, n);
		o += n;
	}
	out[o] = '\0';
	return ferry__strdup(out);
}

/* A whole decimal number in [lo, hi]. */
static int number(const char *v, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

/* sshd_config(5)'s TIME FORMATS: a sequence of NUMBER[smhdw] ("90",
 * "10m", "1h30m"), case-insensitive; the seconds, or -1. */
static long long seconds(const char *v)
{
	long long total = 0;
	if (!*v)
		return -1;
	while (*v) {
		char *end;
		errno = 0;
		long long n = strtoll(v, &end, 10);
		if (errno || end == v || n < 0 || *v == '+' || *v == '-')
			return -1;
		long long mul = 1;
		switch (*end) {
		case '\0':
			break;
		case 's':
		case 'S':
			end++;
			break;
		case 'm':
		case 'M':
			mul = 60, end++;
			break;
		case 'h':
		case 'H':
			mul = 3600, end++;
			break;
		case 'd':
		case 'D':
			mul = 86400, end++;
			break;
		case 'w':
		case 'W':
			mul = 7 * 86400, end++;
			break;
		default:
			return -1;
		}
		if (n > (INT32_MAX - total) / mul)
			return -1; /* ssh's limit too */
		total += n * mul;
		v = end;
	}
	return total;
}

static int policy(const char *v, ferry_hostkey_policy *out)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "ask"))
		*out = FERRY_HOSTKEY_STRICT; /* ferry never asks */
	else if (!strcasecmp(v, "accept-new"))
		*out = FERRY_HOSTKEY_ACCEPT_NEW;
	else if (!strcasecmp(v, "no") || !strcasecmp(v, "off"))
		*out = FERRY_HOSTKEY_OFF;
	else
		return -1;
	return 0;
}

/* A string keyword: the first value wins. */
static int set_string(char **dst, const char *val, const char *alias)
{
	if (*dst)
		return 0;
	*dst = alias ? expand(val, alias) : ferry__strdup(val);
	return *dst ? 0 : FERRY_ENOMEM;
}

/* One keyword of an applying block. */
static int keyword(parser *p, const char *kw, char *val)
{
	ferry__sshcfg *c = p->c;
	long n;
	if (!strcasecmp(kw, "HostName"))
		return set_string(&c->hostname, val, p->alias);
	if (!strcasecmp(kw, "User"))
		return set_string(&c->user, val, NULL);
	if (!strcasecmp(kw, "UserKnownHostsFile")) {
		val[strcspn(val, " \t")] = '\0'; /* the first file only */
		return set_string(&c->known_hosts, val, p->alias);
	}
	if (!strcasecmp(kw, "IdentityFile")) {
		if (c->identity_count >= FERRY__SSHCFG_IDS)
			return 0;
		char *e = expand(val, p->alias);
		if (!e)
			return FERRY_ENOMEM;
		c->identities[c->identity_count++] = e;
		return 0;
	}
	if (!strcasecmp(kw, "Port")) {
		if (number(val, 1, 65535, &n))
			return bad(p, "bad Port", val);
		if (!c->port)
			c->port = (int)n;
		return 0;
	}
	if (!strcasecmp(kw, "ConnectTimeout")) {
		if (number(val, 1, 86400, &n))
			return bad(p, "bad ConnectTimeout", val);
		if (!c->connect_timeout_ms)
			c->connect_timeout_ms = (int)n * 1000;
		return 0;
	}
	if (!strcasecmp(kw, "ControlMaster")) {
		int m;
		if (!strcasecmp(val, "yes") || !strcasecmp(val, "true") ||
		    !strcasecmp(val, "auto") || !strcasecmp(val, "ask") ||
		    !strcasecmp(val, "autoask"))
			m = 1;
		else if (!strcasecmp(val, "no") || !strcasecmp(val, "false"))
			m = 0;
		else
			return bad(p, "bad ControlMaster", val);
		if (!c->have_master++)
			c->control_master = m;
		return 0;
	}
	if (!strcasecmp(kw, "ControlPersist")) {
		long long s;
		if (!strcasecmp(val, "yes") || !strcasecmp(val, "true"))
			s = -1;
		else if (!strcasecmp(val, "no") || !strcasecmp(val, "false"))
			s = 0;
		else if ((s = seconds(val)) < 0)
			return bad(p, "bad ControlPersist", val);
		else if (s == 0)
			s = -1; /* ssh: 0 keeps the master open for ever */
		if (!c->have_persist++)
			c->control_persist = s;
		return 0;
	}
	if (!strcasecmp(kw, "StrictHostKeyChecking")) {
		ferry_hostkey_policy pol;
		if (policy(val, &pol))
			return bad(p, "bad StrictHostKeyChecking", val);
		if (!c->have_policy++)
			c->policy = pol;
	}
	return 0; /* other keywords belong to ssh */
}

static char *skip_space(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/* One line (NUL-terminated, no newline); *active tracks Host/Match. */
static int line(parser *p, char *s, int *active)
{
	s = skip_space(s);
	if (!*s || *s == '#')
		return 0;
	char *kw = s;
	while (*s && !isspace((unsigned char)*s) && *s != '=')
		s++;
	char *kw_end = s;
	s = skip_space(s);
	if (*s == '=')
		s = skip_space(s + 1);
	*kw_end = '\0';
	char *val = s;
	size_t vl = strlen(val);
	while (vl && isspace((unsigned char)val[vl - 1]))
		val[--vl] = '\0';
	if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
		val[vl - 1] = '\0';
		val++;
	}
	if (!*val)
		return bad(p, "missing value for", kw);
	if (!strcasecmp(kw, "Host")) {
		*active = host_matches(p->alias, val);
		return 0;
	}
	if (!strcasecmp(kw, "Match")) {
		/* Only "Match all": other criteria never apply. */
		*active = !strcasecmp(val, "all");
		return 0;
	}
	return *active ? keyword(p, kw, val) : 0;
}

int ferry__sshcfg_parse(ferry__sshcfg *out, const char *text, size_t len,
                        const char *name, const char *alias, char *err,
                        size_t err_size)
{
	parser p = {out, name, alias, 0, err, err_size};
	memset(out, 0, sizeof(*out));
	int active = 1, rc = 0;
	char buf[MAX_LINE];
	for (size_t i = 0; i < len && !rc;) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - text - i) : len - i;
		p.lineno++;
		if (n && text[i + n - 1] == '\r')
			n--;
		if (n >= sizeof(buf) || memchr(text + i, '\0', n))
			return bad(&p, "line too long or holding a NUL byte",
			           "...");
		memcpy(buf, text + i, n);
		buf[n] = '\0';
		rc = line(&p, buf, &active);
		i += (nl ? (size_t)(nl - text - i) + 1 : len - i);
	}
	if (rc == FERRY_ENOMEM)
		snprintf(err, err_size, "%s: out of memory", name);
	return rc;
}

int ferry__sshcfg_read(ferry__sshcfg *out, const char *path, const char *alias,
                       char *err, size_t err_size)
{
	memset(out, 0, sizeof(*out));
	/* O_NONBLOCK: a FIFO in its place must not hang the open. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, err_size, "cannot read ssh config %s: %s", path,
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		return FERRY_EINVALID;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
		snprintf(err, err_size, "ssh config %s: %s", path,
		         S_ISREG(st.st_mode) ? "larger than 1 MiB"
		                             : "not a regular file");
		close(fd);
		return FERRY_EINVALID;
	}
	char *text = ferry__malloc((size_t)st.st_size + 1);
	ssize_t r = text ? ferry__read_full(fd, text, (size_t)st.st_size) : 0;
	size_t got = r > 0 ? (size_t)r : 0;
	int saved = errno;
	close(fd);
	if (!text || r < 0) {
		snprintf(err, err_size, "cannot read ssh config %s: %s", path,
		         text ? strerror(saved) : "out of memory");
		ferry__free(text);
		return text ? FERRY_EINVALID : FERRY_ENOMEM;
	}
	int rc =
	        ferry__sshcfg_parse(out, text, got, path, alias, err, err_size);
	ferry__free(text);
	return rc;
}

void ferry__sshcfg_free(ferry__sshcfg *c)
{
	if (!c)
		return;
	ferry__free(c->hostname);
	ferry__free(c->user);
	ferry__free(c->known_hosts);
	for (size_t i = 0; i < c->identity_count; i++)
		ferry__free(c->identities[i]);
	memset(c, 0, sizeof(*c));
}

int ferry__opts_resolve(ferry_session_opts *out, ferry__sshcfg *store,
                        const ferry_session_opts *in, char *err,
                        size_t err_size)
{
	memset(store, 0, sizeof(*store));
	memset(out, 0, sizeof(*out));
	memcpy(out, in,
	       in->version >= 3   ? sizeof(*out)
	       : in->version == 2 ? offsetof(ferry_session_opts, io_timeout_ms)
	                          : offsetof(ferry_session_opts, ssh_config));
	out->version = FERRY_SESSION_OPTS_VERSION;
	if (!out->ssh_config)
		return 0;
	int rc = ferry__sshcfg_read(store, out->ssh_config, in->host, err,
	                            err_size);
	if (rc)
		return rc;
	if (store->hostname)
		out->host = store->hostname;
	if (!out->user)
		out->user = store->user;
	if (!out->port)
		out->port = store->port;
	if (!out->known_hosts)
		out->known_hosts = store->known_hosts;
	if (!out->connect_timeout_ms)
		out->connect_timeout_ms = store->connect_timeout_ms;
	if (out->host_key_policy == FERRY_HOSTKEY_ACCEPT_NEW &&
	    store->have_policy)
		out->host_key_policy = store->policy;
	if (store->identity_count) {
		size_t n = 0;
		for (size_t i = 0;
		     i < in->identity_count && n < FERRY__SSHCFG_IDS; i++)
			store->ids[n++] = in->identity_files[i];
		for (size_t i = 0; i < store->identity_count; i++)
			store->ids[n++] = store->identities[i];
		out->identity_files = store->ids;
		out->identity_count = n;
	}
	return 0;
}

int ferry_ssh_config_control(const char *ssh_config, const char *host,
                             int *master, long long *persist_s)
{
	if (master)
		*master = 0;
	if (persist_s)
		*persist_s = 0;
	if (!ssh_config || !host || !master || !persist_s) {
		ferry__last_errmsg_set("ferry_ssh_config_control: NULL "
		                       "argument");
		return FERRY_EINVALID;
	}
	ferry__sshcfg c;
	char err[FERRY_ERRMSG_SIZE];
	int rc = ferry__sshcfg_read(&c, ssh_config, host, err, sizeof(err));
	if (!rc) {
		*master = c.control_master;
		*persist_s = c.control_persist;
		ferry__last_errmsg_set(NULL);
	} else {
		ferry__last_errmsg_set("%s", err);
	}
	ferry__sshcfg_free(&c);
	return rc;
}
