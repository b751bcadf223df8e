#include "sshconfig.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

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

static char *expand(cli_conn *c, const char *v, const char *alias)
{
	/* ~ and %h/%% as ssh does for these keywords. */
	char out[4096];
	size_t o = 0;
	const char *home = getenv("HOME");
	if (v[0] == '~' && v[1] == '/' && home) {
		o = (size_t)snprintf(out, sizeof(out), "%s", home);
		v++;
	}
	for (; *v && o + 1 < sizeof(out); v++) {
		if (*v == '%' && v[1] == 'h') {
			o += (size_t)snprintf(out + o, sizeof(out) - o, "%s",
			                      alias);
			v++;
		} else if (*v == '%' && v[1] == '%') {
			out[o++] = '%';
			v++;
		} else {
			out[o++] = *v;
		}
		if (o >= sizeof(out))
			o = sizeof(out) - 1;
	}
	out[o] = '\0';
	return cli_own(c, strdup(out));
}

static int bad(const char *file, int line, const char *what, const char *v)
{
	cli_error("%s line %d: %s '%s'", file, line, what, v);
	return -1;
}

int ferry_cli_sshconfig_apply(cli_conn *c)
{
	char *deflt = NULL;
	const char *file = c->config_file;
	if (!file) {
		const char *home = getenv("HOME");
		if (!home || asprintf(&deflt, "%s/.ssh/config", home) < 0)
			return 0;
		if (access(deflt, F_OK) != 0) {
			free(deflt);
			return 0;
		}
		file = deflt;
	}
	FILE *f = fopen(file, "re");
	if (!f) {
		cli_error("cannot read ssh config %s: %s", file,
		          strerror(errno));
		free(deflt);
		return -1;
	}
	const char *alias = c->host;
	int active = 1, lineno = 0, rc = 0;
	int got_hostname = 0, got_user = 0, got_port = 0, got_id = 0,
	    got_kh = 0, got_strict = 0, got_timeout = 0;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		char *p = line;
		p[strcspn(p, "\r\n")] = '\0';
		while (isspace((unsigned char)*p))
			p++;
		if (!*p || *p == '#')
			continue;
		char *kw = p;
		while (*p && !isspace((unsigned char)*p) && *p != '=')
			p++;
		size_t kwlen = (size_t)(p - kw);
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '=') {
			p++;
			while (isspace((unsigned char)*p))
				p++;
		}
		kw[kwlen] = '\0';
		char *val = p;
		size_t vl = strlen(val);
		while (vl && isspace((unsigned char)val[vl - 1]))
			val[--vl] = '\0';
		if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
			val[vl - 1] = '\0';
			val++;
		}
		if (!*val) {
			rc = bad(file, lineno, "missing value for", kw);
			break;
		}
		if (!strcasecmp(kw, "Host")) {
			active = host_matches(alias, val);
			continue;
		}
		if (!strcasecmp(kw, "Match")) {
			/* Only "Match all" is understood; other criteria never
			 * apply (ferry does not evaluate them). */
			active = !strcasecmp(val, "all");
			continue;
		}
		if (!active)
			continue;
		if (!strcasecmp(kw, "HostName")) {
			if (!got_hostname++)
				c->host = expand(c, val, alias);
		} else if (!strcasecmp(kw, "User")) {
			if (!got_user++ && !c->user)
				c->user = cli_own(c, strdup(val));
		} else if (!strcasecmp(kw, "Port")) {
			long long v;
			if (cli_parse_ll(val, &v) || v < 1 || v > 65535) {
				rc = bad(file, lineno, "bad Port", val);
				break;
			}
			if (!got_port++ && !c->port_set)
				c->o.port = (int)v;
		} else if (!strcasecmp(kw, "IdentityFile")) {
			/* ssh accumulates IdentityFile; -i ones come first. */
			got_id++;
			if (c->identity_count <
			    sizeof(c->identities) / sizeof(c->identities[0]))
				c->identities[c->identity_count++] =
				        expand(c, val, alias);
		} else if (!strcasecmp(kw, "UserKnownHostsFile")) {
			char *first = strtok(val, " \t");
			if (!got_kh++ && !c->o.known_hosts && first)
				c->o.known_hosts = expand(c, first, alias);
		} else if (!strcasecmp(kw, "StrictHostKeyChecking")) {
			ferry_hostkey_policy pol;
			if (!strcasecmp(val, "yes"))
				pol = FERRY_HOSTKEY_STRICT;
			else if (!strcasecmp(val, "accept-new"))
				pol = FERRY_HOSTKEY_ACCEPT_NEW;
			else if (!strcasecmp(val, "no") ||
			         !strcasecmp(val, "off"))
				pol = FERRY_HOSTKEY_OFF;
			else if (!strcasecmp(val, "ask"))
				pol = FERRY_HOSTKEY_STRICT; /* ferry never asks
				                             */
			else {
				rc = bad(file, lineno,
				         "bad StrictHostKeyChecking", val);
				break;
			}
			if (!got_strict++ && !c->policy_set)
				c->o.host_key_policy = pol;
		} else if (!strcasecmp(kw, "ConnectTimeout")) {
			int ms;
			if (cli_parse_ms(val, 0, &ms) || ms == 0) {
				rc = bad(file, lineno, "bad ConnectTimeout",
				         val);
				break;
			}
			if (!got_timeout++ && !c->timeout_set)
				c->o.connect_timeout_ms = ms;
		}
		/* Other keywords belong to ssh and are ignored. */
	}
	(void)got_id;
	free(line);
	fclose(f);
	free(deflt);
	if (!c->host)
		return bad(file, lineno, "out of memory at", "HostName");
	return rc;
}
