/* sftp_pipe.c - test support: the pipe transport, a child SFTP server
 * (OpenSSH's sftp-server) on a socketpair, with its own poll() loop.  For tests
 * without SSH. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "sftp_test.h"
#include "sftp_int.h"

extern char **environ;

#define DEFAULT_SERVER "/usr/lib/openssh/sftp-server"

typedef struct pipe_tr {
	ferry__sftp_transport t;
	int fd;
	pid_t pid;
	int reaped, status;
} pipe_tr;

static void reap(pipe_tr *p, int wait_ms)
{
	if (p->reaped || p->pid <= 0)
		return;
	for (int waited = 0;; waited += 5) {
		pid_t r = waitpid(p->pid, &p->status, WNOHANG);
		if (r == p->pid || (r < 0 && errno != EINTR)) {
			p->reaped = 1;
			return;
		}
		if (waited >= wait_ms)
			return;
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

static int closed_err(pipe_tr *p)
{
	reap(p, 50);
	if (p->reaped && WIFSIGNALED(p->status))
		return ferry__sftp_seterr(
		        p->t.sf, FERRY_EEOF,
		        "SFTP: the server process was killed by signal %d",
		        WTERMSIG(p->status));
	if (p->reaped && WIFEXITED(p->status))
		return ferry__sftp_seterr(
		        p->t.sf, FERRY_EEOF,
		        "SFTP: the server process exited with status %d",
		        WEXITSTATUS(p->status));
	return ferry__sftp_seterr(p->t.sf, FERRY_EEOF,
	                          "SFTP: the server closed the connection");
}

static ssize_t pipe_send(ferry__sftp_transport *t, const void *buf, size_t n)
{
	pipe_tr *p = (pipe_tr *)t;
	for (;;) {
		ssize_t w = send(p->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w >= 0)
			return w;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == EPIPE || errno == ECONNRESET)
			return closed_err(p);
		return ferry__sftp_seterr(t->sf, FERRY_EIO, "SFTP: send: %s",
		                          strerror(errno));
	}
}

static ssize_t pipe_recv(ferry__sftp_transport *t, void *buf, size_t n)
{
	pipe_tr *p = (pipe_tr *)t;
	for (;;) {
		ssize_t r = recv(p->fd, buf, n, MSG_DONTWAIT);
		if (r > 0)
			return r;
		if (r == 0)
			return closed_err(p);
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == ECONNRESET)
			return closed_err(p);
		return ferry__sftp_seterr(t->sf, FERRY_EIO, "SFTP: recv: %s",
		                          strerror(errno));
	}
}

static int pipe_run(ferry__sftp_transport *t, int (*done)(void *ctx), void *ctx,
                    int64_t deadline_ms)
{
	pipe_tr *p = (pipe_tr *)t;
	ferry__sftp *sf = t->sf;
	for (;;) {
		if (done(ctx))
			return 0;
		if (ferry__sftp_step(sf))
			continue;
		if (done(ctx))
			return 0;
		int64_t now = ferry__sftp__now();
		if (deadline_ms && now >= deadline_ms)
			return FERRY_ETIMEOUT;
		int64_t until = deadline_ms, timer = ferry__sftp_next_timer(sf);
		if (timer && (!until || timer < until))
			until = timer;
		timer = ferry__sftp_io_deadline(sf);
		if (timer && (!until || timer < until))
			until = timer;
		int timeout = -1;
		if (until) {
			int64_t left = until - now;
			timeout = left <= 0      ? 0
			          : left > 60000 ? 60000
			                         : (int)left;
		}
		struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
		if (ferry__sftp_want_write(sf))
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, timeout) < 0 && errno != EINTR)
			return ferry__sftp_seterr(sf, FERRY_EIO,
			                          "SFTP: poll: %s",
			                          strerror(errno));
	}
}

static void pipe_free(ferry__sftp_transport *t)
{
	pipe_tr *p = (pipe_tr *)t;
	if (p->fd >= 0)
		close(p->fd);
	/* sftp-server exits at end of input; a stopped one is killed. */
	reap(p, 2000);
	if (!p->reaped && p->pid > 0) {
		kill(p->pid, SIGKILL);
		while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
			;
	}
	ferry__free(p);
}

pid_t ferry__sftp_pipe_pid(const ferry__sftp *sf)
{
	if (!sf || !sf->t || sf->t->send != pipe_send)
		return 0;
	return ((const pipe_tr *)sf->t)->pid;
}

static int spawn(pipe_tr *p, const ferry__sftp_pipe_opts *o, char *errbuf,
                 size_t errlen)
{
	static const char *const def_argv[] = {DEFAULT_SERVER, NULL};
	const char *const *argv = o->argv ? o->argv : def_argv;
	int sv[2] = {-1, -1}, error = 0;
	size_t argc = 0;
	char **av = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	int fa_ok = 0, attr_ok = 0;

	while (argv[argc])
		argc++;
	if (!argc) {
		error = FERRY_EINVALID;
		snprintf(errbuf, errlen, "SFTP: empty server command");
		goto out;
	}
	av = ferry__calloc(argc + 1, sizeof(*av));
	if (!av) {
		error = FERRY_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < argc; i++)
		if (!(av[i] = ferry__strdup(argv[i]))) {
			error = FERRY_ENOMEM;
			goto out;
		}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		error = FERRY_EIO;
		snprintf(errbuf, errlen, "SFTP: socketpair: %s",
		         strerror(errno));
		goto out;
	}
	if (posix_spawn_file_actions_init(&fa) || posix_spawnattr_init(&attr)) {
		error = FERRY_ENOMEM;
		goto out;
	}
	fa_ok = attr_ok = 1;
	sigset_t none, def;
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
	                                        POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
	if (!o->keep_stderr)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY,
		                                 0);
	int rc = posix_spawn(&p->pid, av[0], &fa, &attr, av, environ);
	if (rc) {
		p->pid = 0;
		error = rc == ENOMEM ? FERRY_ENOMEM : FERRY_ENOTFOUND;
		snprintf(errbuf, errlen, "SFTP: cannot start %s: %s", av[0],
		         strerror(rc));
		goto out;
	}
	p->fd = sv[0];
	sv[0] = -1;
out:
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (av)
		for (size_t i = 0; i < argc; i++)
			ferry__free(av[i]);
	ferry__free(av);
	return error;
}

int ferry__sftp_open_pipe(ferry__sftp **out, const ferry__sftp_pipe_opts *o,
                          char *errbuf, size_t errlen)
{
	static const ferry__sftp_pipe_opts none;
	char scratch[8];
	ferry__sftp *sf = NULL;
	int error;
	if (!errbuf || !errlen) {
		errbuf = scratch;
		errlen = sizeof(scratch);
	}
	errbuf[0] = '\0';
	*out = NULL;
	if (!o)
		o = &none;
	pipe_tr *p = ferry__calloc(1, sizeof(*p));
	if (!p) {
		snprintf(errbuf, errlen, "out of memory");
		return FERRY_ENOMEM;
	}
	p->fd = -1;
	p->t.send = pipe_send;
	p->t.recv = pipe_recv;
	p->t.run = pipe_run;
	p->t.free = pipe_free;
	if ((error = spawn(p, o, errbuf, errlen))) {
		if (!errbuf[0])
			snprintf(errbuf, errlen, "%s", ferry_strerror(error));
		pipe_free(&p->t);
		return error;
	}
	if ((error = ferry__sftp_new(&sf, &p->t, NULL, &o->sftp))) {
		snprintf(errbuf, errlen, "%s", ferry_strerror(error));
		return error;
	}
	int tmo = o->sftp.init_timeout_ms ? o->sftp.init_timeout_ms : 15000;
	error = ferry__sftp_init(sf, ferry__sftp__now() + tmo);
	if (error) {
		snprintf(errbuf, errlen, "%s",
		         sf->errmsg[0] ? sf->errmsg : ferry_strerror(error));
		ferry__sftp_free(sf);
		return error;
	}
	*out = sf;
	return 0;
}
