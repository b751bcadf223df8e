/* safety.h - helpers of the tests of what must hold at every instant of a
 * push or a pull: a slowed SFTP channel, an inotify watcher of credential
 * files, two versions of a tree, a child that syncs and can be killed,
 * the test server's processes. */
#ifndef FERRY_TEST_SAFETY_H
#define FERRY_TEST_SAFETY_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "push_helpers.h"

double sf_now_ms(void);
/* Open the session's SFTP channel with a delay on every message, so that
 * a sync takes long enough to be watched or interrupted. */
void sf_slow_channel(ferry_session *s, int latency_ms);

/* Watches dir (pthread_create(sf_watch_main, w)): every credential name
 * (token.json, id_key, .netrc, temporary names of them too) seen by
 * inotify or a polling pass must have no group or other bits; violations
 * -1 when inotify is unavailable.  Set stop to end it. */
typedef struct sf_watcher {
	char dir[1024];
	atomic_int stop;
	int events, violations, checks;
	char bad[512];
} sf_watcher;
void *sf_watch_main(void *arg);

/* A private server whose SFTP server logs its requests to *log. */
void sf_logging_sshd(fx_sshd *sv, char **log);
int sf_count_in_file(const char *path, const char *needle);

/* The processes whose parent is parent: with kill_them, kill each (and
 * first its own children) and count them; else count those not reaped. */
int sf_children(pid_t parent, int kill_them);
pid_t sf_sshd_pid(const fx_sshd *sv);
/* Wait until the server has finished with every connection. */
void sf_wait_server_idle(pid_t master);

/* Version v (0 or 1) of a tree: every file differs between them (size
 * too), credentials 0600, one file only in each. */
void sf_version_tree(const char *dir, int v);
/* Every regular file under dst is one of the versions, whole. */
int sf_check_versions(const char *dst, const char *v0, const char *v1,
                      char *why, size_t whysz);

/* In a child: a new session with a slowed channel, then env->o pushed
 * (pull 0) or pulled; exits 0 on success. */
void sf_child_slow(ph_env *env, int pull) __attribute__((noreturn));

/* ITERATIONS pushes (pull 0) or pulls of env->o in a child (sf_child_slow),
 * of v0 and v1 by turns copied into env->src, each killed at a random
 * moment within 1.1 x full ms: every file stays old or new, and the next
 * push or pull converges exactly with no temporary left.  Returns the
 * kills that landed mid-way; *leftovers (may be NULL): the kills that
 * left temporaries. */
int sf_kills(ph_env *env, int pull, const char *v0, const char *v1,
             int iterations, double full, pid_t master, int *leftovers);

#endif
