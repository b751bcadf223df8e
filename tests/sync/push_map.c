/* push_map.c - a push of many mappings (ferry_mapping) under one
 * destination, with one manifest and one marker, and the tracked deletion
 * scope (FERRY_DELETE_TRACKED). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "push_env.h"

/* The agent runtime's set: a credential under another name and two
 * levels down, a skills directory with its own excludes, a cache
 * directory two levels down, a file at the top. */
static ferry_mapping maps[4];
static const char *skill_ex[] = {"*.tmp"};
static char l0[700], l1[700], l2[700], l3[700];

static void set_mappings(ph_env *env)
{
	snprintf(l0, sizeof(l0), "%s/key.txt", env->base);
	snprintf(l1, sizeof(l1), "%s/skills", env->base);
	snprintf(l2, sizeof(l2), "%s/pipcache/", env->base);
	snprintf(l3, sizeof(l3), "%s/top.md", env->base);
	maps[0] = (ferry_mapping){l0, "creds/deep/api-key", NULL, 0};
	maps[1] = (ferry_mapping){l1, "skills", skill_ex, 1};
	maps[2] = (ferry_mapping){l2, "cache/pip", NULL, 0};
	maps[3] = (ferry_mapping){l3, "top.md", NULL, 0};
	env->o.sources = NULL;
	env->o.source_count = 0;
	env->o.mappings = maps;
	env->o.mapping_count = 4;
}

static void make_local(ph_env *env)
{
	ph_write(env->base, "key.txt", "sk-secret\n", 0600, 1700000000L);
	ph_mkdir(env->base, "skills", 0755);
	ph_write(env->base, "skills/a.md", "a\n", 0644, 1700000000L);
	ph_write(env->base, "skills/scratch.tmp", "tmp\n", 0644, 1700000000L);
	ph_mkdir(env->base, "skills/git", 0755);
	ph_write(env->base, "skills/git/SKILL.md", "git\n", 0644, 1700000000L);
	ph_mkdir(env->base, "pipcache", 0700);
	ph_write(env->base, "pipcache/wheel", "w\n", 0644, 1700000000L);
	ph_write(env->base, "top.md", "top\n", 0644, 1700000000L);
}

Test(push_map, mappings_land_under_one_destination, PH_ENV)
{
	make_local(&e);
	set_mappings(&e);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 5, "%llu",
	             (unsigned long long)r.files_uploaded);
	ferry_sync_report_free(&r);
	char *k = ph_read(e.dst, "creds/deep/api-key");
	cr_assert_str_eq(k, "sk-secret\n");
	free(k);
	struct stat st;
	char *p = ph_path(e.dst, "creds/deep/api-key");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	free(p);
	p = ph_path(e.dst, "creds/deep");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755);
	free(p);
	cr_assert(ph_exists(e.dst, "skills/a.md"));
	cr_assert(ph_exists(e.dst, "skills/git/SKILL.md"));
	cr_assert(!ph_exists(e.dst, "skills/scratch.tmp"),
	          "the mapping's own exclude");
	cr_assert(ph_exists(e.dst, "cache/pip/wheel"));
	p = ph_path(e.dst, "cache/pip");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700, "a mapped directory's mode");
	free(p);
	cr_assert(ph_exists(e.dst, "top.md"));
	cr_assert(ph_exists(e.dst, ".ferry-id"), "one marker, at the top");
	cr_assert_eq(
	        fx_sh("test $(find '%s' -name .ferry-id | wc -l) = 1", e.dst),
	        0);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	/* Unchanged: nothing asked of the remote. */
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 0, "%llu", (unsigned long long)r.requests);
	ferry_sync_report_free(&r);
	/* A new session: the manifest vouches; still a no-op. */
	ph_reconnect(&e);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded + r.files_updated, 0);
	cr_assert_eq(r.verified, 0);
	ferry_sync_report_free(&r);
	/* A change under a mapping. */
	ph_write(e.base, "key.txt", "sk-rotated\n", 0600, 0);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	ferry_sync_report_free(&r);
	k = ph_read(e.dst, "creds/deep/api-key");
	cr_assert_str_eq(k, "sk-rotated\n");
	free(k);
}

Test(push_map, tracked_scope_deletes_only_what_it_pushed, PH_ENV)
{
	make_local(&e);
	set_mappings(&e);
	/* Made on the remote before the first push: a fresh state must not
	 * delete them, even while it lists the remote. */
	fx_sh("mkdir -p '%s/skills' && echo agent > '%s/skills/agent-made' && "
	      "echo agent > '%s/skills/scratch.tmp'",
	      e.dst, e.dst, e.dst);
	e.o.delete_extraneous = 1;
	e.o.delete_scope = FERRY_DELETE_TRACKED;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert(r.verified);
	cr_assert_eq(r.files_deleted, 0);
	ferry_sync_report_free(&r);
	cr_assert(ph_exists(e.dst, "skills/agent-made"));
	/* Gone locally: removed remotely, remote-only files stay, also with
	 * --verify. */
	fx_sh("rm '%s/skills/git/SKILL.md' && echo more > "
	      "'%s/skills/agent-later'",
	      e.base, e.dst);
	e.o.verify = 1;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_deleted, 1, "%llu",
	             (unsigned long long)r.files_deleted);
	ferry_sync_report_free(&r);
	cr_assert(!ph_exists(e.dst, "skills/git/SKILL.md"));
	cr_assert(ph_exists(e.dst, "skills/agent-made"));
	cr_assert(ph_exists(e.dst, "skills/agent-later"));
	cr_assert(ph_exists(e.dst, "skills/scratch.tmp"));
	/* The mirror scope deletes them, except what the mapping excludes. */
	e.o.delete_scope = FERRY_DELETE_MIRROR;
	ph_push_ok(&e, &r);
	ferry_sync_report_free(&r);
	cr_assert(!ph_exists(e.dst, "skills/agent-made"));
	cr_assert(!ph_exists(e.dst, "skills/agent-later"));
	cr_assert(ph_exists(e.dst, "skills/scratch.tmp"),
	          "excluded by its mapping: protected");
}

Test(push_map, bad_mappings_are_refused_by_name, PH_ENV)
{
	make_local(&e);
	set_mappings(&e);
	static const char *const bad[] = {"../up", "/abs", "a//b", "a/../b"};
	for (size_t i = 0; i < 4; i++) {
		maps[1].remote = bad[i];
		ferry_sync_report r;
		int rc = ph_push(&e, &r);
		cr_assert_eq(rc, FERRY_EINVALID, "%s: %s", bad[i],
		             ferry_strerror(rc));
		cr_assert(strstr(ferry_session_errmsg(e.s), "mapping 1") &&
		                  strstr(ferry_session_errmsg(e.s), bad[i]),
		          "%s", ferry_session_errmsg(e.s));
		ferry_sync_report_free(&r);
	}
	cr_assert(!ph_exists(e.dst, ""), "nothing pushed");
	maps[1].remote = "skills";
	/* Sources and mappings at once. */
	e.o.sources = e.sources;
	e.o.source_count = 1;
	ferry_sync_report r;
	cr_assert_eq(ph_push(&e, &r), FERRY_EINVALID);
	ferry_sync_report_free(&r);
	/* A file mapped onto the destination itself. */
	e.o.sources = NULL;
	e.o.source_count = 0;
	maps[0].remote = "";
	int rc = ph_push(&e, &r);
	cr_assert_eq(rc, FERRY_EPARTIAL, "%s", ferry_strerror(rc));
	cr_assert(strstr(e.log, "a file needs a remote name"), "%s", e.log);
	ferry_sync_report_free(&r);
}
