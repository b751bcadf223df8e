/* The ssh_config lookup (lib/sshconfig.c) and its use by a session: an
 * alias resolved by the library, the caller's fields winning, version-1
 * option structs still accepted. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fixture.h"
#include "sshconfig.h"

static int parse(ferry__sshcfg *c, const char *text, const char *alias,
                 char *err, size_t size)
{
	return ferry__sshcfg_parse(c, text, strlen(text), "cfg", alias, err,
	                           size);
}

Test(sshconfig, first_value_wins_patterns_and_negation)
{
	ferry__sshcfg c;
	char err[256];
	const char *text = "# comment\n"
	                   "Host !myother* my*\n"
	                   "  HostName %h.example\n"
	                   "  Port 2222\n"
	                   "  IdentityFile ~/.ssh/a\n"
	                   "Host *\n"
	                   "  Port 1\n"
	                   "  IdentityFile /b\n"
	                   "  User=bob\n"
	                   "  StrictHostKeyChecking ask\n"
	                   "  ConnectTimeout 5\r\n"
	                   "  UserKnownHostsFile /k1 /k2\n"
	                   "  SomethingElse x\n";
	cr_assert_eq(parse(&c, text, "myalias", err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_str_eq(c.hostname, "myalias.example");
	cr_assert_eq(c.port, 2222);
	cr_assert_eq(c.identity_count, 2);
	cr_assert_str_eq(c.identities[1], "/b");
	cr_assert(strstr(c.identities[0], "/.ssh/a") &&
	          c.identities[0][0] == '/');
	cr_assert_str_eq(c.user, "bob");
	cr_assert(c.have_policy && c.policy == FERRY_HOSTKEY_STRICT);
	cr_assert_eq(c.connect_timeout_ms, 5000);
	cr_assert_str_eq(c.known_hosts, "/k1");
	ferry__sshcfg_free(&c);
	cr_assert_eq(parse(&c, text, "myotherx", err, sizeof(err)), 0);
	cr_assert_null(c.hostname);
	cr_assert_eq(c.port, 1);
	ferry__sshcfg_free(&c);
}

Test(sshconfig, bad_values_name_the_line)
{
	ferry__sshcfg c;
	char err[256];
	const char *bad[] = {"Host h\n  Port banana\n", "Port 70000\n",
	                     "StrictHostKeyChecking maybe\n",
	                     "ConnectTimeout -3\n", "User\n"};
	const char *line[] = {"cfg line 2:", "cfg line 1:", "cfg line 1:",
	                      "cfg line 1:", "cfg line 1:"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(parse(&c, bad[i], "h", err, sizeof(err)),
		             FERRY_EINVALID, "%s", bad[i]);
		cr_assert(!strncmp(err, line[i], strlen(line[i])), "%s", err);
		ferry__sshcfg_free(&c);
	}
	cr_assert_eq(ferry__sshcfg_read(&c, "/nonexistent/cfg", "h", err,
	                                sizeof(err)),
	             FERRY_EINVALID);
	cr_assert(strstr(err, "/nonexistent/cfg"), "%s", err);
	/* An over-long line is refused, not truncated into another value. */
	char *big = malloc(10000);
	memset(big, 'a', 9999);
	memcpy(big, "User ", 5);
	big[9999] = '\0';
	cr_assert_eq(parse(&c, big, "h", err, sizeof(err)), FERRY_EINVALID);
	free(big);
	ferry__sshcfg_free(&c);
}

/* A session by alias: the library resolves HostName, Port, IdentityFile,
 * UserKnownHostsFile; a port the caller sets wins. */
Test(sshconfig, session_opens_by_alias_and_caller_fields_win)
{
	const fx_sshd *sv = fx_shared();
	char *dir = fx_tmpdir("sshcfg"), path[700], text[2048];
	snprintf(path, sizeof(path), "%s/config", dir);
	snprintf(text, sizeof(text),
	         "Host box\n  HostName 127.0.0.1\n  Port %d\n"
	         "  IdentityFile %s\n  UserKnownHostsFile %s\n"
	         "  StrictHostKeyChecking yes\n",
	         sv->port, sv->key_ed25519, sv->known_hosts);
	cr_assert_eq(fx_write_file(path, text, strlen(text), 0600), 0);
	ferry_session_opts o;
	cr_assert_eq(ferry_session_opts_init(&o, FERRY_SESSION_OPTS_VERSION),
	             0);
	o.host = "box";
	o.no_agent = 1;
	o.ssh_config = path;
	ferry_session *s = NULL;
	cr_assert_eq(ferry_session_open(&s, &o), 0, "%s", ferry_last_errmsg());
	ferry_session_info info;
	cr_assert_eq(ferry_session_info_get(&info, s), 0);
	cr_assert(strstr(info.target, "@127.0.0.1:"), "%s", info.target);
	ferry_session_close(s);
	o.port = 1;
	cr_assert_eq(ferry_session_open(&s, &o), FERRY_ECONN);
	cr_assert(strstr(ferry_last_errmsg(), "port 1"), "%s",
	          ferry_last_errmsg());
	fx_sh("rm -rf %s", dir);
	free(dir);
}

/* size bytes that end where an unreadable page begins. */
static char *guarded_end(size_t size)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(mprotect(m + pg, pg, PROT_NONE), 0);
	return m + pg - size;
}

/* A caller built against version 1 has no ssh_config field: the library
 * must not read past its struct. */
Test(sshconfig, version_1_options_are_accepted_and_never_read_past)
{
	const fx_sshd *sv = fx_shared();
	size_t v1 = offsetof(ferry_session_opts, ssh_config);
	ferry_session_opts full;
	fx_opts(sv, &full);
	/* The v1 struct ends where a page the process cannot read begins. */
	char *page = guarded_end(v1);
	memcpy(page, &full, v1);
	ferry_session_opts *o = (ferry_session_opts *)(void *)page;
	o->version = 1;
	ferry_session *s = NULL;
	cr_assert_eq(ferry_session_open(&s, o), 0, "%s", ferry_last_errmsg());
	ferry_session_close(s);
	memset(page, 0x5a, v1);
	cr_assert_eq(ferry_session_opts_init(o, 1), 0);
	cr_assert_eq(o->version, 1);
}

/* ControlMaster / ControlPersist as ferry_ssh_config_control reports
 * them (what the CLI maps onto --persist). */
static void control_of(const char *text, const char *alias, int rc_want,
                       int master_want, long long persist_want)
{
	char *dir = fx_tmpdir("ctl");
	cr_assert_eq(fx_write_in(dir, "cfg", text, 0644), 0);
	char path[600];
	snprintf(path, sizeof(path), "%s/cfg", dir);
	int master = -5;
	long long persist = -5;
	int rc = ferry_ssh_config_control(path, alias, &master, &persist);
	cr_assert_eq(rc, rc_want, "%s: %d %s", text, rc, ferry_last_errmsg());
	cr_assert_eq(master, master_want, "%s: master %d", text, master);
	cr_assert_eq(persist, persist_want, "%s: persist %lld", text, persist);
	if (rc)
		cr_assert(strstr(ferry_last_errmsg(), "line "), "%s",
		          ferry_last_errmsg());
	fx_sh("rm -rf '%s'", dir);
	free(dir);
}

Test(sshconfig, control_master_and_persist)
{
	control_of("Host h\n ControlMaster auto\n ControlPersist 30\n", "h", 0,
	           1, 30);
	control_of("Host h\n ControlMaster auto\n ControlPersist 30\n", "x", 0,
	           0, 0);
	control_of("Host *\n ControlMaster autoask\n ControlPersist 10m\n", "h",
	           0, 1, 600);
	control_of("ControlMaster yes\nControlPersist 1h30m\n", "h", 0, 1,
	           5400);
	control_of("ControlMaster ask\nControlPersist yes\n", "h", 0, 1, -1);
	control_of("ControlMaster auto\nControlPersist 0\n", "h", 0, 1, -1);
	control_of("ControlMaster no\nControlPersist 30\n", "h", 0, 0, 30);
	control_of("ControlMaster auto\nControlPersist no\n", "h", 0, 1, 0);
	control_of("ControlMaster auto\n", "h", 0, 1, 0);
	control_of("Host h\n ControlMaster no\nHost *\n ControlMaster auto\n",
	           "h", 0, 0, 0);
	control_of("ControlPath ~/.ssh/cm-%r@%h:%p\n", "h", 0, 0, 0);
	control_of("ControlMaster sometimes\n", "h", FERRY_EINVALID, 0, 0);
	control_of("ControlPersist 10x\n", "h", FERRY_EINVALID, 0, 0);
	control_of("ControlPersist -5\n", "h", FERRY_EINVALID, 0, 0);
	control_of("ControlPersist 99999999999\n", "h", FERRY_EINVALID, 0, 0);
	int m;
	long long p;
	cr_assert_eq(ferry_ssh_config_control("/nonexistent/cfg", "h", &m, &p),
	             FERRY_EINVALID);
	cr_assert(strstr(ferry_last_errmsg(), "/nonexistent/cfg"));
}
