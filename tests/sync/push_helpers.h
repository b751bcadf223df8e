/* push_helpers.h - helpers of the push tests (tests/sync/push*.c): a
 * source tree, a remote directory served by the fixture sshd (remote paths
 * are local paths, so the remote tree is inspected directly), pushes
 * through the library API, and tree comparisons. */
#ifndef FERRY_TEST_PUSH_HELPERS_H
#define FERRY_TEST_PUSH_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry.h"
#include "fixture.h"
#include "sync_test.h"

typedef struct ph_env {
	const fx_sshd *sv;
	ferry_session *s;
	char *src;   /* the local tree (pushed as "src/") */
	char *dst;   /* the remote destination (absolute) */
	char *state; /* the state directory */
	char *base;  /* a scratch directory holding the three */
	char srcarg[600];
	const char *sources[4];
	const char *excludes[4];
	ferry_sync_opts o;
	char log[16384];
	size_t loglen;
} ph_env;

/* A fresh environment on the shared server; dst does not exist yet.  The
 * session is opened. */
void ph_init(ph_env *e, const char *tag);
/* Same on a given server (NULL: shared); connect: open the session. */
void ph_init_on(ph_env *e, const char *tag, const fx_sshd *sv, int connect);
void ph_fini(ph_env *e);
/* Close and open the session again (a new process, as far as the remote
 * and the state directory can tell). */
void ph_reconnect(ph_env *e);

/* Push e->o; the report is filled (the caller frees it). */
int ph_push(ph_env *e, ferry_sync_report *r);
/* Push and assert success; the report is freed. */
void ph_push_ok(ph_env *e, ferry_sync_report *r);

/* Files: content, mode, mtime (seconds since the epoch; 0: leave). */
void ph_write(const char *dir, const char *rel, const char *content,
              mode_t mode, long mtime);
void ph_mkdir(const char *dir, const char *rel, mode_t mode);
void ph_symlink(const char *dir, const char *rel, const char *target);
char *ph_path(const char *dir, const char *rel);
char *ph_read(const char *dir, const char *rel);
/* 1 when dir/rel exists (a dangling symlink too). */
int ph_exists(const char *dir, const char *rel);

/* A skills-like tree under dir: nfiles files in about nfiles/6
 * directories (depth <= 3), sizes 200 B .. 12 KiB, fixed mtimes, a few
 * symlinks; plus creds/ with three owner-only (0600) files. */
void ph_skills_tree(const char *dir, int nfiles, unsigned seed);

/* One line per entry of a tree (sorted): path, type, mode, mtime (files
 * and directories, as rsync -a keeps them), size and XXH3 of files,
 * symlink targets.  The top-level
 * .ferry-id (and ph_marker, when set) is left out.  Caller frees. */
char *ph_tree_listing(const char *dir);
/* A marker name of the test's (ferry_sync_opts.marker) that
 * ph_tree_listing leaves out too; NULL: none. */
extern const char *ph_marker;
/* Assert that dst holds exactly the tree src. */
void ph_assert_same(const char *src, const char *dst);
/* Temporary names (".NAME.ferry-XXXXXX") anywhere under dir. */
int ph_count_temps(const char *dir);
/* Bytes of the target's manifest file (NULL when absent); *len. */
char *ph_manifest_bytes(ph_env *e, size_t *len);
/* Path of a file in the state directory ending with suffix, or NULL. */
char *ph_state_file(ph_env *e, const char *suffix);

/* The target's manifest (loaded without a log; asserts).  Caller frees. */
ferry__manifest *ph_load_manifest(ph_env *e);

/* 1 when running as root. */
int ph_is_root(void);
/* A non-root account the fixture's key may log in to (created with useradd
 * when running as root and missing); NULL when none can be had. */
const char *ph_test_user(void);
/* Open e->s as that user. */
void ph_connect_as(ph_env *e, const char *user);

#endif
