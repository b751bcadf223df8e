/* push.c - ferry_sync against the fixture sshd: the main job (cold push,
 * no-op, touch, content changes, round trips). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "push_env.h"
#include "sync/scan.h"

/* Round trips of opening the session's SFTP channel before any request
 * can be sent: channel open, subsystem start. */
#define CHANNEL_RTS 2

Test(push, cold_push_makes_remote_equal_local, PH_ENV)
{
	ph_skills_tree(e.src, 120, 1);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	cr_assert_eq(r.files_uploaded, 124, "uploaded %llu",
	             (unsigned long long)r.files_uploaded);
	cr_assert_eq(r.symlinks_created, 2);
	cr_assert_gt(r.dirs_created, 10);
	cr_assert_eq(r.error_count, 0);
	cr_assert(r.verified, "a first push lists the remote");
	cr_assert_gt(r.bytes_sent, 120 * 200);
	cr_assert_gt(r.requests, 124 * 4);
	cr_assert_eq(r.files_scanned, 126);
	/* The marker holds 32 hex digits. */
	char *m = ph_read(e.dst, ".ferry-id");
	cr_assert(m && strlen(m) == 33 && m[32] == '\n', "marker %s", m);
	free(m);
	/* Credentials: owner-only on the remote too. */
	struct stat st;
	char *p = ph_path(e.dst, "creds/token.json");
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	free(p);
	ferry_sync_report_free(&r);
}

Test(push, second_push_sends_nothing_and_keeps_manifest, PH_ENV)
{
	ph_skills_tree(e.src, 60, 2);
	/* Past the racy window: files written just before a push are hashed
	 * again by the next one, which then stores them (a rewrite). */
	struct statfs fs;
	cr_assert_eq(statfs(e.src, &fs), 0);
	poll(NULL, 0,
	     (int)(ferry__racy_window((unsigned long)fs.f_type) / 1000000) +
	             20);
	ph_push_ok(&e, NULL);
	size_t l1 = 0, l2 = 0;
	char *m1 = ph_manifest_bytes(&e, &l1);
	cr_assert(m1, "manifest written");
	uint64_t rt0 = ferry_session_round_trips(e.s);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 0, "requests %llu",
	             (unsigned long long)r.requests);
	cr_assert_eq(r.round_trips, 0);
	cr_assert_eq(ferry_session_round_trips(e.s), rt0);
	cr_assert_eq(r.files_uploaded + r.files_updated + r.files_deleted +
	                     r.dirs_created + r.symlinks_created,
	             0);
	cr_assert_eq(r.verified, 0);
	cr_assert_eq(r.files_scanned, 66);
	char *m2 = ph_manifest_bytes(&e, &l2);
	cr_assert(l1 == l2 && memcmp(m1, m2, l1) == 0,
	          "the manifest was rewritten");
	free(m1);
	free(m2);
	ferry_sync_report_free(&r);
}

Test(push, new_session_reads_marker_and_trusts_manifest, PH_ENV)
{
	ph_skills_tree(e.src, 30, 3);
	ph_push_ok(&e, NULL);
	ph_reconnect(&e);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.verified, 0, "the marker vouches: no listing");
	cr_assert_eq(r.files_uploaded, 0);
	/* Channel, then the marker (OPEN; READ + CLOSE); the new channel's
	 * REALPATH "." (the login directory) rides with INIT: one request
	 * more, no round trip. */
	cr_assert_leq(r.round_trips, CHANNEL_RTS + 1 + 2, "%llu",
	              (unsigned long long)r.round_trips);
	cr_assert_leq(r.requests, 6, "%llu", (unsigned long long)r.requests);
	ferry_sync_report_free(&r);
	/* And now it is known to this session. */
	ph_push_ok(&e, &r);
	cr_assert_eq(r.requests, 0);
	ferry_sync_report_free(&r);
}

Test(push, touch_is_a_metadata_update, PH_ENV)
{
	ph_write(e.src, "a.txt", "alpha\n", 0644, 1700000000L);
	ph_write(e.src, "b.txt", "beta\n", 0644, 1700000000L);
	ph_push_ok(&e, NULL);
	ph_write(e.src, "a.txt", "alpha\n", 0640, 1700001234L);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_updated, 1);
	cr_assert_eq(r.files_uploaded, 0);
	cr_assert_eq(r.bytes_sent, 0);
	cr_assert_eq(r.round_trips, 1, "SETSTAT only: %llu",
	             (unsigned long long)r.round_trips);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(push, content_change_is_uploaded, PH_ENV)
{
	ph_write(e.src, "a.txt", "alpha\n", 0644, 1700000000L);
	ph_mkdir(e.src, "d", 0755);
	ph_write(e.src, "d/b.txt", "beta\n", 0644, 1700000000L);
	ph_push_ok(&e, NULL);
	ph_write(e.src, "d/b.txt", "beta, longer now\n", 0644, 0);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	cr_assert_eq(r.bytes_sent, strlen("beta, longer now\n"));
	cr_assert_leq(r.round_trips, 3);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}

Test(push, replaced_file_same_size_and_mtime_is_uploaded, PH_ENV)
{
	ph_write(e.src, "cfg", "AAAAAAAA\n", 0600, 1700000000L);
	ph_push_ok(&e, NULL);
	/* A new file (new inode) with the same size and mtime. */
	char *p = ph_path(e.src, "cfg");
	char *t = ph_path(e.src, "cfg.new");
	fx_write_file(t, "BBBBBBBB\n", 9, 0600);
	struct timespec ts[2] = {{1700000000L, 0}, {1700000000L, 0}};
	utimensat(AT_FDCWD, t, ts, 0);
	cr_assert_eq(rename(t, p), 0);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 1);
	char *c = ph_read(e.dst, "cfg");
	cr_assert_str_eq(c, "BBBBBBBB\n");
	ph_assert_same(e.src, e.dst);
	free(c);
	free(p);
	free(t);
	ferry_sync_report_free(&r);
}

Test(push, round_trips_do_not_grow_with_files, PH_ENV)
{
	ph_skills_tree(e.src, 400, 4);
	ph_write(e.src, "skills/known.md", "known\n", 0644, 1700000000L);
	ferry_sync_report r;
	/* Cold, new session: channel open and subsystem (2); INIT (1: the
	 * session's client waits for VERSION before it hands the channel
	 * out); marker read + listing, which fail on a missing destination
	 * (1); then the executor: the destination and each level of new
	 * directories once its parent's MKDIR succeeded (1 + depth, while the
	 * files' OPEN, WRITE + FSETSTAT + CLOSE go on at the top of the
	 * destination), and the renames of the deepest (1). */
	const int depth = 4; /* skills/a/b/c */
	ph_push_ok(&e, &r);
	cr_assert_leq(r.round_trips, CHANNEL_RTS + 1 + 1 + 1 + depth + 1,
	              "cold: %llu", (unsigned long long)r.round_trips);
	ferry_sync_report_free(&r);
	/* Cold again in the held session (remote and state wiped): marker
	 * and listing in one flight, then the executor's. */
	fx_sh("rm -rf '%s' '%s'", e.dst, e.state);
	ph_push_ok(&e, &r);
	cr_assert_leq(r.round_trips, 1 + 1 + depth + 1,
	              "cold, session held: %llu",
	              (unsigned long long)r.round_trips);
	cr_assert_eq(r.files_uploaded, 405);
	ferry_sync_report_free(&r);
	/* Five files changed, session held. */
	const char *names[5] = {"skills/known.md", "creds/token.json",
	                        "creds/README", "creds/.netrc", "creds/id_key"};
	int changed = 0;
	for (int i = 0; i < 5; i++) {
		char *p = ph_path(e.src, names[i]);
		if (access(p, F_OK) == 0) {
			ph_write(
			        e.src, names[i], "changed content\n",
			        strstr(names[i], "creds/") &&
			                        strcmp(names[i], "creds/README")
			                ? 0600
			                : 0644,
			        0);
			changed++;
		}
		free(p);
	}
	cr_assert_eq(changed, 5, "test tree lacks a file");
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 5);
	cr_assert_leq(r.round_trips, 3, "5 changed: %llu",
	              (unsigned long long)r.round_trips);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
	/* Nothing changed. */
	ph_push_ok(&e, &r);
	cr_assert_eq(r.round_trips, 0);
	cr_assert_eq(r.requests, 0);
	ferry_sync_report_free(&r);
}

Test(push, report_fields_and_changes, PH_ENV)
{
	ph_write(e.src, "one", "1\n", 0644, 1700000000L);
	ph_mkdir(e.src, "dir", 0750);
	ph_write(e.src, "dir/two", "22\n", 0600, 1700000000L);
	ph_symlink(e.src, "link", "one");
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	st_assert_changes(&r, 2, ST_ANY, ST_ANY, 1, ST_ANY, 1);
	cr_assert_eq(r.bytes_sent, 5);
	cr_assert_eq(r.files_scanned, 3);
	cr_assert_eq(r.dirs_scanned, 1);
	cr_assert_gt(r.ms_total, 0);
	cr_assert_geq(r.ms_total, r.ms_transfer);
	ph_assert_same(e.src, e.dst);
	ferry_sync_report_free(&r);
}
