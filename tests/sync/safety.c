/* safety.c - helpers of the tests of what must hold at every instant of
 * a push or a pull (push_safety.c, pull_safety.c). */
#include "safety.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pull_helpers.h"
#include "session.h"
#include "sftp.h"
#include "sftp_test.h"

double sf_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Open the session's SFTP channel with a delay on every message, so that
 * a push takes long enough to be watched or interrupted. */
void sf_slow_channel(ferry_session *s, int latency_ms)
{
	ferry__sftp_opts so;
	memset(&so, 0, sizeof(so));
	fx_sftp_latency(&so, latency_ms);
	ferry__sftp *sf = NULL;
	cr_assert_eq(ferry__session_sftp_ex(s, &so, &sf), 0, "sftp: %s",
	             ferry_session_errmsg(s));
}

/* ---- credentials are never readable by others ---- */

static int is_cred_name(const char *n)
{
	return strstr(n, "token.json") || strstr(n, "id_key") ||
	       strstr(n, ".netrc");
}

static void check_entry(sf_watcher *w, int dfd, const char *name)
{
	struct stat st;
	if (!is_cred_name(name) || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return;
	w->checks++;
	if (st.st_mode & 077) {
		w->violations++;
		snprintf(w->bad, sizeof(w->bad), "%s mode %04o", name,
		         (unsigned)(st.st_mode & 07777));
	}
}

void *sf_watch_main(void *arg)
{
	sf_watcher *w = arg;
	int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (in < 0 || dfd < 0 ||
	    inotify_add_watch(in, w->dir,
	                      IN_CREATE | IN_ATTRIB | IN_MOVED_TO | IN_MODIFY |
	                              IN_CLOSE_WRITE) < 0) {
		w->violations = -1;
		return NULL;
	}
	char buf[65536] __attribute__((aligned(8)));
	while (!atomic_load(&w->stop)) {
		/* Events, and a polling pass over every entry between them. */
		ssize_t n = read(in, buf, sizeof(buf));
		for (ssize_t off = 0; n > 0 && off < n;) {
			struct inotify_event *ev = (void *)(buf + off);
			if (ev->len) {
				w->events++;
				check_entry(w, dfd, ev->name);
			}
			off += (ssize_t)sizeof(*ev) + ev->len;
		}
		DIR *d = fdopendir(dup(dfd));
		if (d) {
			struct dirent *de;
			while ((de = readdir(d)))
				check_entry(w, dirfd(d), de->d_name);
			closedir(d);
		}
	}
	close(in);
	close(dfd);
	return NULL;
}

/* A private server whose SFTP server logs its requests to a file. */
void sf_logging_sshd(fx_sshd *sv, char **log)
{
	char *dir = fx_tmpdir("ps-sftplog");
	cr_assert(dir);
	char *wrapper = ph_path(dir, "sftp-wrapper.sh");
	*log = ph_path(dir, "sftp.log");
	char script[2048];
	snprintf(script, sizeof(script),
	         "#!/bin/sh\nexec /usr/lib/openssh/sftp-server -e -l DEBUG3 "
	         "2>>'%s'\n",
	         *log);
	cr_assert_eq(fx_write_file(wrapper, script, strlen(script), 0755), 0);
	char cfg[1200];
	snprintf(cfg, sizeof(cfg), "ForceCommand %s\n", wrapper);
	cr_assert_eq(fx_sshd_start(sv, cfg), 0);
	free(wrapper);
	free(dir);
}

int sf_count_in_file(const char *path, const char *needle)
{
	char *c = fx_read_file(path, NULL);
	int n = 0;
	for (char *p = c; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(c);
	return n;
}

/* The processes whose parent is parent: with kill_them, kill each (and
 * first, its own children: the connection's own sshd, its sftp-server)
 * by pid and count them; else count those not yet reaped (no zombies). */
int sf_children(pid_t parent, int kill_them)
{
	int n = 0;
	DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char path[64], buf[512];
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		char *rp = strrchr(buf, ')');
		long ppid = 0;
		char state = 0;
		if (!rp || sscanf(rp + 2, "%c %ld", &state, &ppid) != 2 ||
		    ppid != parent)
			continue;
		if (kill_them) {
			n += sf_children((pid_t)pid, 1);
			kill((pid_t)pid, SIGKILL);
			n++;
		} else {
			n += state != 'Z';
		}
	}
	if (d)
		closedir(d);
	return n;
}

pid_t sf_sshd_pid(const fx_sshd *sv)
{
	char *p = ph_path(sv->dir, "sshd.pid");
	char *c = fx_read_file(p, NULL);
	free(p);
	cr_assert(c);
	pid_t pid = (pid_t)strtol(c, NULL, 10);
	free(c);
	return pid;
}

/* Wait until the server has finished with every connection: requests a
 * killed client sent are still executed by its sftp-server. */
void sf_wait_server_idle(pid_t master)
{
	for (int i = 0; i < 500 && sf_children(master, 0) > 0; i++)
		usleep(10000);
	cr_assert_eq(sf_children(master, 0), 0, "the server is still busy");
}

void sf_version_tree(const char *dir, int v)
{
	/* Every file changes between versions (size too); one file only in
	 * version 1, one only in version 0. */
	fx_sh("rm -rf '%s'/* '%s'/.[!.]* 2>/dev/null", dir, dir);
	ph_mkdir(dir, "creds", 0700);
	ph_mkdir(dir, "s", 0755);
	ph_mkdir(dir, "s/t", 0755);
	char name[64], content[8192];
	for (int i = 0; i < 60; i++) {
		snprintf(name, sizeof(name), "%s/f%02d",
		         i % 3 == 0 ? "s/t" : (i % 3 == 1 ? "s" : "creds"), i);
		int len = snprintf(content, sizeof(content),
		                   "version %d of %s\n", v, name);
		for (int k = len; k < 200 + 37 * i + 11 * v; k++)
			content[k] = (char)('a' + (k + v) % 26);
		content[200 + 37 * i + 11 * v] = '\0';
		ph_write(dir, name, content, i % 3 == 2 ? 0600 : 0644,
		         1700000000L + i + v);
	}
	ph_write(dir, v ? "only1" : "only0", "x\n", 0644, 1700000000L);
}

/* Every regular file under the remote is one of the versions, whole. */
int sf_check_versions(const char *dst, const char *v0, const char *v1,
                      char *why, size_t whysz)
{
	char *l = ph_tree_listing(dst);
	int ok = 1;
	for (char *line = strtok(l, "\n"); line && ok;
	     line = strtok(NULL, "\n")) {
		char path[512];
		char type;
		if (sscanf(line, "%511s %c", path, &type) != 2 || type != 'f')
			continue;
		const char *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		if (base[0] == '.' && strstr(base, ".ferry-"))
			continue; /* a leftover temporary name */
		char *rc = ph_read(dst, path);
		char *c0 = ph_read(v0, path), *c1 = ph_read(v1, path);
		if (!rc ||
		    ((!c0 || strcmp(rc, c0)) && (!c1 || strcmp(rc, c1)))) {
			ok = 0;
			snprintf(why, whysz, "%s is neither version", path);
		}
		free(rc);
		free(c0);
		free(c1);
	}
	free(l);
	return ok;
}

void sf_child_slow(ph_env *env, int pull)
{
	ferry_session_opts o;
	fx_opts(env->sv, &o);
	ferry_session *s = NULL;
	if (ferry_session_open(&s, &o))
		_exit(2);
	ferry__sftp_opts so;
	memset(&so, 0, sizeof(so));
	fx_sftp_latency(&so, 3);
	ferry__sftp *sf;
	if (ferry__session_sftp_ex(s, &so, &sf))
		_exit(3);
	ferry_sync_report r;
	memset(&r, 0, sizeof(r));
	env->o.log = NULL;
	int rc = pull ? ferry_pull(s, &env->o, &r) : ferry_sync(s, &env->o, &r);
	_exit(rc ? 1 : 0);
}

int sf_kills(ph_env *env, int pull, const char *v0, const char *v1,
             int iterations, double full, pid_t master, int *leftovers)
{
	int killed_mid = 0;
	if (leftovers)
		*leftovers = 0;
	for (int it = 0; it < iterations; it++) {
		int v = it % 2;
		fx_sh("rm -rf '%s' && cp -a '%s' '%s'", env->src, v ? v1 : v0,
		      env->src);
		double at = (double)rand() / RAND_MAX * full * 1.1;
		int st;
		pid_t pid = fork();
		if (pid == 0)
			sf_child_slow(env, pull);
		usleep((useconds_t)(at * 1000));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		if (WIFSIGNALED(st))
			killed_mid++;
		sf_wait_server_idle(master);
		char why[600] = "";
		cr_assert(sf_check_versions(env->dst, v0, v1, why, sizeof(why)),
		          "iteration %d (kill at %.1f ms of %.1f): %s", it, at,
		          full, why);
		if (leftovers && ph_count_temps(env->dst) > 0)
			(*leftovers)++;
		/* The next push or pull converges exactly. */
		ph_reconnect(env);
		if (pull)
			pl_pull_ok(env, NULL);
		else
			ph_push_ok(env, NULL);
		ferry_session_close(env->s);
		env->s = NULL;
		/* the server's side of the closed session may still be at its
		 * last requests (a temp's removal) while the tree is walked */
		sf_wait_server_idle(master);
		ph_assert_same(env->src, env->dst);
		cr_assert_eq(ph_count_temps(env->dst), 0,
		             "iteration %d: temporary names left", it);
	}
	return killed_mid;
}
