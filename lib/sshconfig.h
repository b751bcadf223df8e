/* sshconfig.h - the ssh_config subset ferry reads, as a pure lookup: what
 * a file says for one host alias.  ferry_session_opts.ssh_config names the
 * file; ferry__opts_resolve applies it under the caller's own fields. */
#ifndef FERRY_SSHCONFIG_H
#define FERRY_SSHCONFIG_H

#include <stddef.h>

#include "ferry.h"

#define FERRY__SSHCFG_IDS 16

/* The first value of each keyword in the blocks that apply to the alias
 * (IdentityFile accumulates, as in ssh).  Strings owned. */
typedef struct ferry__sshcfg {
	char *hostname, *user, *known_hosts;
	int port;               /* 0: not given */
	int connect_timeout_ms; /* 0: not given */
	int have_policy;
	ferry_hostkey_policy policy;
	char *identities[FERRY__SSHCFG_IDS];
	size_t identity_count;
	/* ControlMaster (1: yes, auto, ask, autoask), ControlPersist in
	 * seconds (-1: yes or 0, no time limit; 0: no) */
	int have_master, control_master;
	int have_persist;
	long long control_persist;
	/* For ferry__opts_resolve: the caller's identity files, then these. */
	const char *ids[2 * FERRY__SSHCFG_IDS];
} ferry__sshcfg;

/* Parse text (len bytes, need not be NUL-terminated) named name for alias:
 * Host patterns with *, ? and ! (first value wins per keyword), Match all;
 * HostName (%h), User, Port, IdentityFile (~, %h), UserKnownHostsFile,
 * StrictHostKeyChecking (yes, accept-new, no, ask = yes), ConnectTimeout,
 * ControlMaster and ControlPersist (for ferry_ssh_config_control).
 * Other keywords are ignored.  0, FERRY_EINVALID with "NAME line N: ..." in
 * err, or FERRY_ENOMEM.  *out is always safe to free. */
int ferry__sshcfg_parse(ferry__sshcfg *out, const char *text, size_t len,
                        const char *name, const char *alias, char *err,
                        size_t err_size);
/* The same for a file (at most 1 MiB). */
int ferry__sshcfg_read(ferry__sshcfg *out, const char *path, const char *alias,
                       char *err, size_t err_size);
void ferry__sshcfg_free(ferry__sshcfg *c);

/* *out = *in (any accepted version, copied by its size) with what
 * in->ssh_config says for in->host filled in where in leaves a field at its
 * default: HostName replaces host; User, Port, UserKnownHostsFile,
 * StrictHostKeyChecking (only when the policy is left at accept-new),
 * ConnectTimeout; IdentityFile after in's identity files.  The strings
 * live in *store (free with ferry__sshcfg_free) and in *in's. */
int ferry__opts_resolve(ferry_session_opts *out, ferry__sshcfg *store,
                        const ferry_session_opts *in, char *err,
                        size_t err_size);

#endif
