/* pull_hostile.c - ferry_pull from a lying server: tests/hostile_sftp.py
 * (OpenSSH's sftp-server behind a wrapper that rewrites the READDIR
 * replies of directories named hostile-MODE) as the SFTP subsystem of a
 * private sshd.  Whatever it says, nothing is written outside the
 * destination, the lie is reported by name and the pull exits non-zero. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pull_helpers.h"

typedef struct lie {
	const char *mode;
	const char *needle; /* in the error of the refused entry */
	int ok_files;       /* ok1 and ok2 still come home */
	int rc;             /* expected: FERRY_EPARTIAL, or 0 */
} lie;

static const lie lies[] = {
        {"dotdot", "'.' or '..'", 1, FERRY_EPARTIAL},
        {"dotdir", "'.' or '..'", 1, FERRY_EPARTIAL},
        {"dotdotx", "holding '/'", 1, FERRY_EPARTIAL},
        {"abs", "holding '/'", 1, FERRY_EPARTIAL},
        {"slash", "holding '/'", 1, FERRY_EPARTIAL},
        {"empty", "an empty name", 1, FERRY_EPARTIAL},
        {"nul", "NUL byte", 1, FERRY_EPARTIAL},
        {"long", "longer than 255", 1, FERRY_EPARTIAL},
        {"dup", "listed this name twice", 0, FERRY_EPARTIAL},
        {"sizebig", "were listed", 0, FERRY_EPARTIAL},
        {"sizesmall", "more than the", 0, FERRY_EPARTIAL},
        {"nosize", "without its size", 0, FERRY_EPARTIAL},
        {"dirlie", "cannot list", 0, FERRY_EPARTIAL},
        {"filelie", "sub", 1, FERRY_EPARTIAL},
        {"setuid", NULL, 1, 0},
};

/* Names in dir other than those listed (NULL-terminated). */
static char *extra_names(const char *dir, const char *const *allowed)
{
	DIR *d = opendir(dir);
	cr_assert(d, "opendir %s", dir);
	char *found = NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		int ok = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(de->d_name, *a);
		if (!ok && !found)
			found = strdup(de->d_name);
	}
	closedir(d);
	return found;
}

static void one_lie(ph_env *env, const lie *l)
{
	char rel[128], src[1024];
	snprintf(rel, sizeof(rel), "hostile-%s", l->mode);
	snprintf(src, sizeof(src), "%s/%s", env->src, rel);
	cr_assert_eq(mkdir(src, 0755), 0);
	ph_write(src, "ok1", "one\n", 0644, 1700000000L);
	ph_write(src, "ok2", "two\n", 0644, 1700000000L);
	ph_mkdir(src, "sub", 0755);
	ph_write(src, "sub/ok3", "three\n", 0644, 1700000000L);
	env->sources[0] = src;
	env->o.source_count = 1;
	ferry_sync_report r;
	int rc = pl_pull(env, &r);
	cr_assert_eq(rc, l->rc, "%s: rc %s: %s", l->mode, ferry_strerror(rc),
	             ferry_session_errmsg(env->s));
	if (l->needle) {
		int seen = 0;
		for (size_t i = 0; i < r.error_count; i++)
			seen |= strstr(r.errors[i].message, l->needle) ||
			        strstr(r.errors[i].path, l->needle);
		cr_assert(seen,
		          "%s: no error about '%s' (%zu errors, first: "
		          "%s: %s)",
		          l->mode, l->needle, r.error_count,
		          r.error_count ? r.errors[0].path : "",
		          r.error_count ? r.errors[0].message : "");
	}
	/* Nothing outside the destination or its one root. */
	const char *top[] = {rel, NULL};
	char *x = extra_names(env->dst, top);
	cr_assert_null(x, "%s: %s written outside the root", l->mode, x);
	char *parent = ph_path(env->base, "remote");
	const char *up[] = {"dst", NULL};
	x = extra_names(parent, up);
	cr_assert_null(x, "%s: %s written outside the destination", l->mode, x);
	free(parent);
	cr_assert(!ph_exists("/etc", "x"), "%s: /etc/x", l->mode);
	char *root = ph_path(env->dst, rel);
	const char *inside[] = {"ok1", "ok2", "sub", NULL};
	x = extra_names(root, inside);
	cr_assert_null(x, "%s: %s written", l->mode, x);
	if (l->ok_files) {
		char *c = ph_read(root, "ok1");
		cr_assert(c && !strcmp(c, "one\n"), "%s: ok1", l->mode);
		free(c);
	}
	cr_assert_eq(ph_count_temps(env->dst), 0);
	struct stat st;
	char *p = ph_path(root, "ok1");
	if (stat(p, &st) == 0)
		cr_assert_eq(st.st_mode & 07000, 0, "%s: mode %o", l->mode,
		             (unsigned)st.st_mode);
	free(p);
	free(root);
	ferry_sync_report_free(&r);
	fx_sh("rm -rf '%s'", env->dst);
}

Test(pull_hostile, every_lie_is_refused_by_name)
{
	if (fx_sh("test -x /usr/lib/openssh/sftp-server && command -v "
	          "python3 >/dev/null") != 0)
		cr_skip_test("needs python3 and OpenSSH's sftp-server");
	char cfg[800];
	snprintf(cfg, sizeof(cfg),
	         "Subsystem sftp /usr/bin/env python3 "
	         "%s/tests/hostile_sftp.py\n",
	         FERRY_SRCDIR);
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, cfg), 0);
	for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		ph_init_on(&e, "pull-hostile", &sv, 1);
		one_lie(&e, &lies[i]);
		ph_fini(&e);
	}
	fx_sshd_stop(&sv);
}
