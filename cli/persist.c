/* persist.c - the client side of --persist: find the holder of a target,
 * start one when none runs, run this command through it (see persist.h,
 * frame.h, README "Keeping the session"). */
#include "persist.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"

int cli_argc;
char **cli_argv;

int cli_persist_parse(const char *v, int *secs)
{
	if (!*v || !strcmp(v, "yes")) {
		*secs = CLI_PERSIST_DEFAULT_S;
		return 0;
	}
	if (!strcmp(v, "no")) {
		*secs = 0;
		return 0;
	}
	long long n;
	if (cli_parse_ll(v, &n) || n > CLI_PERSIST_MAX_S)
		return -1;
	*secs = (int)n;
	return 0;
}

/* ssh_config's ControlMaster auto (yes, ask, autoask) with ControlPersist
 * (not no) for the target: its seconds (yes: no idle limit), else 0.  A
 * file the library cannot read says so when the call connects. */
static int config_seconds(const cli_conn *c)
{
	int master = 0;
	long long s = 0;
	if (!c->config_file || !c->o.host ||
	    ferry_ssh_config_control(c->config_file, c->o.host, &master, &s) ||
	    !master || !s)
		return 0;
	int secs = s < 0 || s > CLI_PERSIST_MAX_S ? CLI_PERSIST_MAX_S : (int)s;
	if (c->verbose)
		fprintf(stderr,
		        "ferry: %s: ControlMaster and ControlPersist for %s: "
		        "persist %d s\n",
		        c->config_file, c->o.host, secs);
	return secs;
}

int cli_persist_seconds(const cli_conn *c)
{
	if (c->persist_set)
		return c->persist_s;
	const char *e = getenv("FERRY_PERSIST");
	int secs = 0;
	if (e && *e && cli_persist_parse(e, &secs) < 0) {
		cli_warn("FERRY_PERSIST='%s' is not yes, no or seconds: "
		         "ignored",
		         e);
		return 0;
	}
	return e && *e ? secs : config_seconds(c);
}

/* mkdir -p of an absolute path, the new directories 0700. */
static int mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int r = mkdir(path, 0700);
		*p = '/';
		if (r < 0 && errno != EEXIST)
			return -1;
	}
	return mkdir(path, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

int cli_persist_dir(char *buf, size_t size, char *why, size_t whysize)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	const char *st = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;
	if (rt && rt[0] == '/')
		n = snprintf(buf, size, "%s/ferry", rt);
	else if (st && st[0] == '/')
		n = snprintf(buf, size, "%s/ferry/run", st);
	else if (home && home[0] == '/')
		n = snprintf(buf, size, "%s/.local/state/ferry/run", home);
	else {
		snprintf(why, whysize,
		         "no XDG_RUNTIME_DIR, XDG_STATE_HOME or "
		         "HOME for the holder sockets");
		return -1;
	}
	if (n < 0 || (size_t)n >= size) {
		snprintf(why, whysize,
		         "the holder directory's name is too "
		         "long");
		return -1;
	}
	if (mkdirs(buf) < 0) {
		snprintf(why, whysize, "cannot make %s: %s", buf,
		         strerror(errno));
		return -1;
	}
	struct stat sb;
	if (lstat(buf, &sb) < 0) {
		snprintf(why, whysize, "%s: %s", buf, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode) || sb.st_uid != getuid() ||
	    (sb.st_mode & 077)) {
		snprintf(why, whysize,
		         "%s is not a private directory of this user (mode "
		         "%04o, owner %u; it must be 0700 and ours)",
		         buf, (unsigned)(sb.st_mode & 07777),
		         (unsigned)sb.st_uid);
		return -1;
	}
	return 0;
}

int cli_persist_path(char *buf, size_t size, const char *dir, const char *key,
                     const char *suffix)
{
	int n = snprintf(buf, size, "%s/%s%s", dir, key, suffix);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* FNV-1a, 64 bits, over a field and its terminating NUL. */
static void mix(uint64_t *h, const char *s)
{
	const char *p = s ? s : "\001";
	do {
		*h ^= (unsigned char)*p;
		*h *= 0x100000001b3ULL;
	} while (*p++);
}

/* An absolute form of a local path (the holder runs elsewhere). */
static void mix_path(uint64_t *h, const char *path)
{
	if (!path) {
		mix(h, NULL);
		return;
	}
	char *abs = realpath(path, NULL);
	mix(h, abs ? abs : path);
	free(abs);
}

void cli_persist_key(const cli_conn *c, char key[CLI_KEY_LEN + 1])
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *user = c->o.user;
	struct passwd *pw = user ? NULL : getpwuid(getuid());
	if (!user && pw)
		user = pw->pw_name;
	char num[32];
	mix(&h, "ferry-holder-1");
	mix(&h, user);
	mix(&h, c->o.host);
	snprintf(num, sizeof(num), "%d %d %d", c->o.port,
	         (int)c->o.host_key_policy, c->o.compress);
	mix(&h, num);
	for (size_t i = 0; i < c->identity_count; i++)
		mix_path(&h, c->identities[i]);
	mix(&h, "--");
	mix_path(&h, c->o.known_hosts);
	mix_path(&h, c->config_file);
	snprintf(key, CLI_KEY_LEN + 1, "%016llx", (unsigned long long)h);
}

int cli_persist_locked(const char *lockpath)
{
	int fd = open(lockpath, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	int held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

int cli_persist_dial(const char *sockpath)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (strlen(sockpath) >= sizeof(a.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(a.sun_path, sockpath, strlen(sockpath));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	/* The holder must be ours: the directory says so, the peer too. */
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
	    cr.uid != getuid()) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

/* ---- signals while a command runs in the holder ---------------------- */

static int sig_pipe[2] = {-1, -1};

static void on_sig(int sig)
{
	unsigned char b = (unsigned char)sig;
	int e = errno;
	if (sig_pipe[1] >= 0 && write(sig_pipe[1], &b, 1) < 0) {
		/* full: a signal is pending already */
	}
	errno = e;
}

static void catch_signals(void)
{
	if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void release_signals(void)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
}

/* ---- the RUN request ---------------------------------------------------- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	int failed;
} sbuf;

static void put_tag(sbuf *b, char tag, const char *s)
{
	size_t n = strlen(s) + 2;
	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 1024) + n;
		char *q = realloc(b->p, cap);
		if (!q) {
			b->failed = 1;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	b->p[b->len++] = tag;
	memcpy(b->p + b->len, s, n - 1);
	b->len += n - 1;
}

static int build_request(sbuf *b, int secs)
{
	char *cwd = getcwd(NULL, 0);
	if (!cwd) {
		cli_error("cannot read the current directory: %s",
		          strerror(errno));
		return -1;
	}
	put_tag(b, 'C', cwd);
	free(cwd);
	static const char *const env[] = {"HOME", "XDG_STATE_HOME"};
	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++) {
		const char *v = getenv(env[i]);
		if (!v)
			continue;
		char *kv = NULL;
		if (asprintf(&kv, "%s=%s", env[i], v) < 0) {
			b->failed = 1;
			break;
		}
		put_tag(b, 'E', kv);
		free(kv);
	}
	char num[32];
	snprintf(num, sizeof(num), "%d", secs);
	put_tag(b, 'P', num);
	for (int i = 0; i < cli_argc; i++)
		put_tag(b, 'A', cli_argv[i]);
	if (b->failed || b->len > FR_MAX_PAYLOAD) {
		cli_error("the command line is too long for a holder");
		return -1;
	}
	return 0;
}

/* Our stdin, stdout, stderr (or /dev/null in place of a closed one). */
static int std_fds(int fds[3], int *opened)
{
	*opened = 0;
	for (int i = 0; i < 3; i++) {
		fds[i] = i;
		if (fcntl(i, F_GETFD) < 0) {
			fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
			if (fds[i] < 0)
				return -1;
			*opened |= 1 << i;
		}
	}
	return 0;
}

/* The command through a connected holder: 1 it ran (*status), 0 it did
 * not (try directly), the reason in why. */
static int run_via(cli_conn *c, int fd, int secs, int *status, char *why,
                   size_t whysz)
{
	sbuf b = {0};
	int fds[3], opened = 0, started = 0, rc = 0;
	pid_t hpid = 0;
	if (build_request(&b, secs) < 0 || std_fds(fds, &opened) < 0) {
		snprintf(why, whysz, "cannot build the request");
		goto out;
	}
	catch_signals();
	fflush(stdout);
	if (fr_send(fd, FR_RUN, b.p, b.len, fds, 3) < 0) {
		snprintf(why, whysz, "sending to the holder: %s",
		         strerror(errno));
		goto out;
	}
	/* A live holder queues the request at once; a wedged one is not
	 * waited for. */
	int64_t deadline = fr_now_ms() + 5000;
	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
		                      {.fd = sig_pipe[0], .events = POLLIN}};
		int t = deadline ? (int)(deadline - fr_now_ms()) : -1;
		if (deadline && t <= 0) {
			snprintf(why, whysz,
			         "no answer from the holder in 5 s");
			goto out;
		}
		int n = poll(p, 2, t);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (p[1].revents & POLLIN) {
			unsigned char sig[16];
			if (read(sig_pipe[0], sig, sizeof(sig)) > 0 &&
			    fr_send(fd, FR_INTR, NULL, 0, NULL, 0) < 0 &&
			    !started) {
				snprintf(why, whysz, "the holder went away");
				goto out;
			}
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		int type;
		char *pl = NULL;
		size_t len;
		if (fr_recv(fd, &type, &pl, &len, NULL, NULL,
		            fr_now_ms() + 5000) < 0) {
			if (started) {
				cli_error(
				        "the holder (pid %d) ended during the "
				        "command; its effect is that of a "
				        "killed ferry (the next push "
				        "converges)",
				        (int)hpid);
				*status = FERRY_EXIT_CONN;
				rc = 1;
			} else {
				snprintf(why, whysz,
				         "the holder closed the connection");
			}
			goto out;
		}
		switch (type) {
		case FR_QUEUED:
			hpid = (pid_t)strtol(pl, NULL, 10);
			deadline = 0; /* alive: wait for our turn */
			if (c->verbose) {
				char line[64];
				snprintf(line, sizeof(line),
				         "through the holder (pid %d)",
				         (int)hpid);
				cli_log(c, FERRY_LOG_INFO, line);
			}
			break;
		case FR_START:
			started = 1;
			break;
		case FR_EXIT:
			*status = (int)strtol(pl, NULL, 10);
			rc = 1;
			free(pl);
			goto out;
		case FR_REFUSE:
			snprintf(why, whysz, "the holder refused: %s", pl);
			free(pl);
			goto out;
		default:
			break;
		}
		free(pl);
	}
out:
	for (int i = 0; i < 3; i++)
		if (opened & (1 << i))
			close(fds[i]);
	free(b.p);
	release_signals();
	return rc;
}

/* Start a holder (we hold lockfd's flock; the holder keeps it).  1: it
 * runs; 0: it could not start (why); 2: it could not connect: the
 * message was printed, *status is the exit status. */
static int spawn(cli_conn *c, const char *sockpath, const char *key, int lockfd,
                 int secs, int *status, char *why, size_t whysz)
{
	int rp[2];
	if (pipe2(rp, O_CLOEXEC) < 0) {
		snprintf(why, whysz, "pipe: %s", strerror(errno));
		return 0;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, whysz, "fork: %s", strerror(errno));
		close(rp[0]);
		close(rp[1]);
		return 0;
	}
	if (pid == 0) {
		close(rp[0]);
		setsid();
		pid_t p2 = fork();
		if (p2 != 0)
			_exit(p2 < 0);
		cli_holder_main(c, sockpath, key, lockfd, rp[1], secs);
	}
	close(rp[1]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	/* Its connect has the connect timeout; a little more for the rest. */
	int ct = c->o.connect_timeout_ms > 0 ? c->o.connect_timeout_ms : 15000;
	int64_t deadline = fr_now_ms() + ct + 5000;
	char msg[FERRY_ERRMSG_SIZE + 64];
	size_t got = 0;
	for (;;) {
		struct pollfd p = {.fd = rp[0], .events = POLLIN};
		int left = (int)(deadline - fr_now_ms());
		if (left <= 0) {
			snprintf(why, whysz,
			         "the holder did not report in time");
			close(rp[0]);
			return 0;
		}
		int n = poll(&p, 1, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		ssize_t r = read(rp[0], msg + got, sizeof(msg) - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (got += (size_t)r) >= sizeof(msg) - 1)
			break;
	}
	close(rp[0]);
	msg[got] = '\0';
	char *end;
	long st = strtol(msg, &end, 10);
	if (!got || end == msg) {
		snprintf(why, whysz, "the holder ended before it was ready");
		return 0;
	}
	long hpid = strtol(end, &end, 10);
	if (st == 0) {
		if (c->verbose) {
			char line[128];
			snprintf(line, sizeof(line),
			         "started a holder (pid %ld); it keeps the "
			         "session for %d s without a client",
			         hpid, secs);
			cli_log(c, FERRY_LOG_INFO, line);
		}
		return 1;
	}
	while (*end == ' ')
		end++;
	size_t ml = strlen(end);
	if (ml && end[ml - 1] == '\n')
		end[ml - 1] = '\0';
	if (st < 0) {
		snprintf(why, whysz, "%s", end);
		return 0;
	}
	cli_error("%s", end);
	*status = (int)st;
	return 2;
}

int cli_persist_run(cli_conn *c, int secs, int *status)
{
	char dir[512], sock[600], lock[600], why[FERRY_ERRMSG_SIZE + 128] = "";
	char key[CLI_KEY_LEN + 1];
	if (cli_persist_dir(dir, sizeof(dir), why, sizeof(why)) < 0) {
		cli_warn("not keeping the session: %s", why);
		return 0;
	}
	cli_persist_key(c, key);
	if (cli_persist_path(sock, sizeof(sock), dir, key, ".sock") < 0 ||
	    strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path) ||
	    cli_persist_path(lock, sizeof(lock), dir, key, ".lock") < 0) {
		cli_warn("not keeping the session: the socket name under %s "
		         "is too long for a unix socket",
		         dir);
		return 0;
	}
	int ct = c->o.connect_timeout_ms > 0 ? c->o.connect_timeout_ms : 15000;
	int64_t deadline = fr_now_ms() + ct + 5000;
	int spawned = 0;
	for (;;) {
		int fd = cli_persist_dial(sock);
		if (fd >= 0) {
			int r = run_via(c, fd, secs, status, why, sizeof(why));
			close(fd);
			if (r)
				return 1;
			break;
		}
		if (errno == EPERM) {
			snprintf(why, sizeof(why), "%s belongs to another user",
			         sock);
			break;
		}
		int lk = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		              0600);
		if (lk < 0) {
			snprintf(why, sizeof(why), "%s: %s", lock,
			         strerror(errno));
			break;
		}
		if (flock(lk, LOCK_EX | LOCK_NB) == 0) {
			if (spawned) {
				/* Ours started and is gone already. */
				close(lk);
				snprintf(why, sizeof(why),
				         "the holder it started is gone");
				break;
			}
			/* No holder lives: a socket left is stale. */
			unlink(sock);
			int r = spawn(c, sock, key, lk, secs, status, why,
			              sizeof(why));
			close(lk);
			if (r == 2)
				return 1;
			if (r == 0)
				break;
			spawned = 1;
			continue;
		}
		close(lk);
		if (fr_now_ms() > deadline) {
			snprintf(why, sizeof(why),
			         "a holder is starting but does not answer");
			break;
		}
		usleep(10000);
	}
	if (c->verbose) {
		char line[sizeof(why) + 64];
		snprintf(line, sizeof(line),
		         "no holder (%s): connecting directly", why);
		cli_log(c, FERRY_LOG_INFO, line);
	}
	return 0;
}
