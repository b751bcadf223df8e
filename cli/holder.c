/* holder.c - the holder process of --persist: one ferry_session kept open,
 * subcommands of clients run in it in arrival order, commands of exec at
 * the same time as everything else.
 *
 * The I/O thread accepts clients (SO_PEERCRED: our uid only), reads their
 * frames, queues RUN requests, turns a client's interrupt or hang-up into
 * its running command's own stop flag (the session's other commands go
 * on), watches the SSH socket for the server closing it, and decides when
 * to exit (idle for the persist time, connection lost, `ferry master
 * stop`, SIGTERM, socket removed).  The main thread takes queued commands
 * one at a time, in the client's cwd and environment, with the same code
 * as the ferry program.  A command of exec is parsed there, then runs on
 * a thread of its own that writes to the client's stdout and stderr
 * (passed over the socket) directly; any other command runs on the main
 * thread with them on fds 0-2, while those threads go on. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "persist.h"

typedef struct hclient {
	int fd;
	int fds[FR_MAX_FDS], nfds;
	char *req;
	size_t req_len;
	int queued, running, done, gone, intr_sent;
	volatile int stop; /* the running command's own stop flag */
	struct hclient *next, *qnext;
} hclient;

static struct holder {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	hclient *clients, *qhead, *qtail;
	int nrunning;
	int stopping, exit_now;
	int64_t last_active;
	int persist_ms;
	uint64_t served;
	int wake[2];
	int listen_fd, ssh_fd;
	const char *sock;
	dev_t dev;
	ino_t ino;
	ferry_session *s;
	char key[CLI_KEY_LEN + 1];
	char target[512], typed[512];
	cli_conn *log_conn;
	int devnull;
	pid_t pid;
} H = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .cv = PTHREAD_COND_INITIALIZER,
       .wake = {-1, -1},
       .listen_fd = -1,
       .ssh_fd = -1};

static volatile sig_atomic_t got_term;

int cli_holder_active(void)
{
	return H.s != NULL;
}

int cli_holder_connect(cli_conn *c, ferry_session **out)
{
	char key[CLI_KEY_LEN + 1];
	cli_persist_key(c, key);
	if (strcmp(key, H.key)) {
		cli_error("this holder keeps the session of another target");
		return FERRY_EXIT_ERROR;
	}
	/* The session's log callback prints with this command's -v/-q. */
	H.log_conn->verbose = c->verbose;
	H.log_conn->quiet = c->quiet;
	*out = H.s;
	return 0;
}

static void wake_io(void)
{
	char b = 1;
	if (write(H.wake[1], &b, 1) < 0) {
		/* full: the I/O thread wakes anyway */
	}
}

static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
	int e = errno;
	wake_io();
	errno = e;
}

/* The socket of the SSH connection: the process's one TCP socket. */
static int find_tcp_socket(void)
{
	for (int fd = 3; fd < 1024; fd++) {
		int dom = 0, type = 0;
		socklen_t l = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0)
			continue;
		l = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0)
			continue;
		if ((dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM)
			return fd;
	}
	return -1;
}

static void client_free(hclient *c)
{
	close(c->fd);
	for (int i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	free(c->req);
	free(c);
}

static void queue_remove(hclient *c)
{
	hclient **pp = &H.qhead, *prev = NULL;
	while (*pp && *pp != c) {
		prev = *pp;
		pp = &(*pp)->qnext;
	}
	if (!*pp)
		return;
	*pp = c->qnext;
	if (H.qtail == c)
		H.qtail = prev;
	c->qnext = NULL;
	c->queued = 0;
}

static void send_num(int fd, int type, long long v)
{
	char num[32];
	int n = snprintf(num, sizeof(num), "%lld", v);
	fr_send(fd, type, num, (size_t)n, NULL, 0);
}

/* "target\tpid\tidle_s\tserved\tpersist_s\tbusy\tqueued\ttyped" */
static void send_info(int fd)
{
	int64_t now = fr_now_ms();
	size_t q = 0;
	for (hclient *c = H.qhead; c; c = c->qnext)
		q++;
	char line[1400];
	int n = snprintf(
	        line, sizeof(line), "%s\t%d\t%.1f\t%llu\t%d\t%d\t%zu\t%s",
	        H.target, (int)H.pid,
	        H.nrunning ? 0.0 : (double)(now - H.last_active) / 1000,
	        (unsigned long long)H.served, H.persist_ms / 1000, H.nrunning,
	        q, H.typed);
	fr_send(fd, FR_INFO, line, (size_t)n, NULL, 0);
}

/* A frame from client c (called without the lock; c stays ours). */
static void client_input(hclient *c)
{
	int type, fds[FR_MAX_FDS], nfds = 0;
	char *p = NULL;
	size_t len = 0;
	int r = fr_recv(c->fd, &type, &p, &len, fds, &nfds, fr_now_ms() + 2000);
	pthread_mutex_lock(&H.mu);
	if (r < 0) {
		/* Gone: a running command is interrupted (once), a queued
		 * one forgotten. */
		c->gone = 1;
		if (c->running && !c->intr_sent) {
			c->intr_sent = 1;
			c->stop = 1;
			ferry_session_wake(H.s);
		} else if (c->queued) {
			queue_remove(c);
			c->done = 1;
		} else if (!c->running) {
			c->done = 1;
		}
		pthread_mutex_unlock(&H.mu);
		return;
	}
	switch (type) {
	case FR_RUN:
		if (c->queued || c->running || c->req) {
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			free(p);
			break;
		}
		if (H.stopping || nfds != 3) {
			const char *why = H.stopping ? "the holder is stopping"
			                             : "no stdin/stdout/stderr "
			                               "passed";
			fr_send(c->fd, FR_REFUSE, why, strlen(why), NULL, 0);
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			free(p);
			c->done = 1;
			break;
		}
		H.last_active = fr_now_ms();
		c->req = p;
		c->req_len = len;
		memcpy(c->fds, fds, sizeof(fds));
		c->nfds = nfds;
		c->queued = 1;
		if (H.qtail)
			H.qtail->qnext = c;
		else
			H.qhead = c;
		H.qtail = c;
		send_num(c->fd, FR_QUEUED, H.pid);
		pthread_cond_broadcast(&H.cv);
		p = NULL;
		break;
	case FR_INTR:
		if (c->running && !c->intr_sent) {
			c->intr_sent = 1;
			c->stop = 1;
			ferry_session_wake(H.s);
		} else if (c->queued) {
			queue_remove(c);
			send_num(c->fd, FR_EXIT, FERRY_EXIT_INTERRUPTED);
			c->done = 1;
		}
		break;
	case FR_STATUS:
		send_info(c->fd);
		break;
	case FR_STOP:
		H.stopping = 1;
		send_info(c->fd);
		break;
	default:
		break;
	}
	free(p);
	pthread_mutex_unlock(&H.mu);
}

static void accept_client(void)
{
	int fd = accept4(H.listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
	    cr.uid != getuid()) {
		const char *why = "refused: another user";
		fr_send(fd, FR_REFUSE, why, strlen(why), NULL, 0);
		close(fd);
		return;
	}
	hclient *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	pthread_mutex_lock(&H.mu);
	c->next = H.clients;
	H.clients = c;
	pthread_mutex_unlock(&H.mu);
}

/* Our socket still at its name (a removed or replaced one: exit). */
static int socket_is_ours(void)
{
	struct stat sb;
	return lstat(H.sock, &sb) == 0 && sb.st_dev == H.dev &&
	       sb.st_ino == H.ino;
}

static void *io_thread(void *arg)
{
	(void)arg;
	struct pollfd *pf = NULL;
	hclient **who = NULL;
	size_t cap = 0;
	int64_t last_check = 0;
	for (;;) {
		pthread_mutex_lock(&H.mu);
		for (hclient **pp = &H.clients; *pp;) {
			hclient *c = *pp;
			if (c->done && !c->running) {
				*pp = c->next;
				client_free(c);
			} else {
				pp = &c->next;
			}
		}
		if (got_term)
			H.stopping = 1;
		if (H.stopping && !H.nrunning) {
			/* Stop listening first: a client that comes now
			 * finds no socket and connects directly. */
			if (socket_is_ours())
				unlink(H.sock);
			close(H.listen_fd);
			H.listen_fd = -1;
			for (hclient *c = H.qhead; c; c = c->qnext) {
				const char *why = "the holder is stopping";
				fr_send(c->fd, FR_REFUSE, why, strlen(why),
				        NULL, 0);
				c->queued = 0;
				c->done = 1;
			}
			H.qhead = H.qtail = NULL;
			H.exit_now = 1;
			pthread_cond_broadcast(&H.cv);
			pthread_mutex_unlock(&H.mu);
			break;
		}
		size_t n = 0;
		for (hclient *c = H.clients; c; c = c->next)
			n++;
		if (n + 3 > cap) {
			cap = n + 16;
			pf = realloc(pf, cap * sizeof(*pf));
			who = realloc(who, cap * sizeof(*who));
			if (!pf || !who)
				abort();
		}
		size_t k = 0;
		pf[k++] = (struct pollfd){.fd = H.wake[0], .events = POLLIN};
		/* While stopping (a command still runs) a new client is
		 * still answered: refused, it connects directly at once. */
		pf[k++] = (struct pollfd){.fd = H.listen_fd, .events = POLLIN};
		pf[k++] = (struct pollfd){.fd = H.ssh_fd, .events = POLLRDHUP};
		for (hclient *c = H.clients; c; c = c->next) {
			if (c->done || c->gone)
				continue;
			who[k] = c;
			pf[k++] =
			        (struct pollfd){.fd = c->fd, .events = POLLIN};
		}
		pthread_mutex_unlock(&H.mu);

		int r = poll(pf, k, 1000);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && (pf[0].revents & POLLIN)) {
			char buf[64];
			while (read(H.wake[0], buf, sizeof(buf)) > 0)
				;
		}
		if (r > 0 && pf[2].revents) {
			pthread_mutex_lock(&H.mu);
			H.stopping = 1; /* the server closed the connection */
			H.ssh_fd = -1;
			pthread_mutex_unlock(&H.mu);
		}
		if (r > 0 && (pf[1].revents & POLLIN))
			accept_client();
		for (size_t i = 3; r > 0 && i < k; i++)
			if (pf[i].revents)
				client_input(who[i]);
		int64_t now = fr_now_ms();
		pthread_mutex_lock(&H.mu);
		if (!H.nrunning && !H.qhead &&
		    now - H.last_active >= H.persist_ms)
			H.stopping = 1;
		if (now - last_check >= 1000) {
			last_check = now;
			if (!socket_is_ours())
				H.stopping = 1;
		}
		pthread_mutex_unlock(&H.mu);
	}
	free(pf);
	free(who);
	return NULL;
}

/* A command done (st: its exit status, or < 0 refused): said to the
 * client, counted. */
static void finish_one(hclient *c, int st)
{
	pthread_mutex_lock(&H.mu);
	if (st >= 0)
		send_num(c->fd, FR_EXIT, st);
	/* A connection error may have left the session dead (or it was
	 * found dead: st < 0, refused): the next call gets a new holder. */
	if (st < 0 || st == FERRY_EXIT_CONN)
		H.stopping = 1;
	c->running = 0;
	c->done = 1;
	H.nrunning--;
	if (st >= 0)
		H.served++;
	H.last_active = fr_now_ms();
	pthread_mutex_unlock(&H.mu);
	wake_io();
}

/* A command of exec on a thread of its own: its client's streams. */
typedef struct exec_run {
	hclient *c;
	cli_exec_job *job;
	FILE *out, *err;
	int in;
} exec_run;

static void exec_streams_close(FILE *out, FILE *err, int in)
{
	/* The client's pipes see their end only when our copies close. */
	if (out)
		fclose(out);
	if (err)
		fclose(err);
	if (in >= 0)
		close(in);
}

static void *exec_thread(void *arg)
{
	exec_run *w = arg;
	cli_thread_set(w->out, w->err, w->in, &w->c->stop);
	int st = cli_exec_end(w->job);
	cli_thread_set(NULL, NULL, -1, NULL);
	exec_streams_close(w->out, w->err, w->in);
	finish_one(w->c, st);
	free(w);
	return NULL;
}

/* ferry exec: parsed here (in the client's cwd), then run on a thread
 * of its own when it needs nothing of the process but its streams; its
 * exit status, or -2 when that thread has it. */
static int run_exec(hclient *c, int argc, char **argv, const char *cwd)
{
	FILE *out = fdopen(c->fds[1], "w"), *err = fdopen(c->fds[2], "w");
	int in = c->fds[0];
	if (!out || !err) {
		if (!out)
			close(c->fds[1]);
		if (!err)
			close(c->fds[2]);
		exec_streams_close(out, err, in);
		c->nfds = 0;
		return FERRY_EXIT_ERROR;
	}
	c->nfds = 0; /* the streams have them */
	setvbuf(out, NULL, isatty(fileno(out)) ? _IOLBF : _IOFBF, 0);
	setvbuf(err, NULL, _IONBF, 0);
	send_num(c->fd, FR_START, H.pid);
	cli_thread_set(out, err, in, &c->stop);
	cli_exec_job *job = NULL;
	int st;
	if (chdir(cwd) < 0) {
		cli_error("cannot enter %s: %s", cwd, strerror(errno));
		st = FERRY_EXIT_ERROR;
	} else {
		st = cli_exec_begin(argc - 1, argv + 1, &job);
	}
	if (job && cli_exec_alone(job)) {
		exec_run *w = malloc(sizeof(*w));
		pthread_t th;
		pthread_attr_t at;
		int started = 0;
		if (w && !pthread_attr_init(&at)) {
			*w = (exec_run){c, job, out, err, in};
			pthread_attr_setdetachstate(&at,
			                            PTHREAD_CREATE_DETACHED);
			started = !pthread_create(&th, &at, exec_thread, w);
			pthread_attr_destroy(&at);
		}
		if (started) {
			cli_thread_set(NULL, NULL, -1, NULL);
			if (chdir("/") < 0) {
				/* nothing depends on it */
			}
			return -2;
		}
		free(w); /* no thread: it runs here */
	}
	if (job)
		st = cli_exec_end(job);
	cli_thread_set(NULL, NULL, -1, NULL);
	exec_streams_close(out, err, in);
	if (chdir("/") < 0) {
		/* nothing depends on it */
	}
	return st;
}

/* One queued command, on this (the main) thread: its exit status, or -2
 * when a thread of its own runs it. */
static int run_one(hclient *c)
{
	char *argv[4096 + 2];
	int argc = 0;
	const char *cwd = "/";
	const char *home = NULL, *state = NULL;
	argv[argc++] = (char *)"ferry";
	for (size_t off = 0; off < c->req_len;) {
		char *s = c->req + off;
		size_t l = strlen(s);
		off += l + 1;
		if (!l)
			continue;
		switch (s[0]) {
		case 'C':
			cwd = s + 1;
			break;
		case 'E':
			if (!strncmp(s + 1, "HOME=", 5))
				home = s + 6;
			else if (!strncmp(s + 1, "XDG_STATE_HOME=", 15))
				state = s + 16;
			break;
		case 'P': {
			int secs;
			if (cli_persist_parse(s + 1, &secs) == 0 && secs > 0) {
				pthread_mutex_lock(&H.mu);
				H.persist_ms = secs * 1000;
				pthread_mutex_unlock(&H.mu);
			}
			break;
		}
		case 'A':
			if (argc < 4096)
				argv[argc++] = s + 1;
			break;
		default:
			break;
		}
	}
	argv[argc] = NULL;
	if (home)
		setenv("HOME", home, 1);
	else
		unsetenv("HOME");
	if (state)
		setenv("XDG_STATE_HOME", state, 1);
	else
		unsetenv("XDG_STATE_HOME");
	if (ferry_session_alive(H.s)) {
		/* Cut before the holder saw it: nothing was sent, so the
		 * client runs the command over a connection of its own. */
		const char *why = "its connection to the server is gone";
		for (int i = 0; i < c->nfds; i++)
			close(c->fds[i]);
		c->nfds = 0;
		fr_send(c->fd, FR_REFUSE, why, strlen(why), NULL, 0);
		return -1;
	}
	if (argc >= 2 && !strcmp(argv[1], "exec"))
		return run_exec(c, argc, argv, cwd);
	for (int i = 0; i < 3; i++)
		dup2(c->fds[i], i);
	for (int i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	c->nfds = 0;
	setvbuf(stdout, NULL, isatty(1) ? _IOLBF : _IOFBF, 0);
	send_num(c->fd, FR_START, H.pid);
	int st;
	if (argc < 2) {
		cli_error("the holder got no command");
		st = FERRY_EXIT_USAGE;
	} else if (chdir(cwd) < 0) {
		cli_error("cannot enter %s: %s", cwd, strerror(errno));
		st = FERRY_EXIT_ERROR;
	} else {
		cli_thread_set(NULL, NULL, -1, &c->stop);
		st = cli_main(argc, argv);
		cli_thread_set(NULL, NULL, -1, NULL);
	}
	fflush(stdout);
	fflush(stderr);
	/* The client's pipes see their end only when our copies close. */
	for (int i = 0; i < 3; i++)
		dup2(H.devnull, i);
	if (chdir("/") < 0) {
		/* nothing depends on it */
	}
	return st;
}

/* ps and pgrep show "ferry holder TARGET", not the command line of the
 * client that started us (whose remote command may be looked for). */
static void set_title(void)
{
	if (!cli_argv || cli_argc < 1)
		return;
	char *start = cli_argv[-1];
	char *end = cli_argv[cli_argc - 1] + strlen(cli_argv[cli_argc - 1]);
	size_t room = (size_t)(end - start);
	memset(start, 0, room);
	snprintf(start, room + 1, "ferry holder %s", H.target);
	prctl(PR_SET_NAME, "ferry-holder", 0, 0, 0);
}

static void report_ready(int readyfd, int status, const char *msg)
{
	char line[FERRY_ERRMSG_SIZE + 64];
	int n = snprintf(line, sizeof(line), "%d %d %s\n", status,
	                 (int)getpid(), msg ? msg : "");
	if (n > 0 && write(readyfd, line, (size_t)n) < 0) {
		/* the client went away: it connects directly */
	}
	close(readyfd);
}

static int listen_on(const char *path)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	mode_t old = umask(077);
	int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	if (r < 0 && errno == EADDRINUSE) {
		/* We hold the lock: what is there is stale. */
		unlink(path);
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	}
	umask(old);
	if (r < 0 || listen(fd, 64) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void cli_holder_main(cli_conn *c, const char *sockpath, const char *key,
                     int lockfd, int readyfd, int secs)
{
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	/* Detach: nothing of the terminal or the client's pipes stays. */
	for (int fd = 3; fd < 1024; fd++)
		if (fd != lockfd && fd != readyfd)
			close(fd);
	H.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int i = 0; i < 3; i++)
		dup2(H.devnull, i);
	H.pid = getpid();
	H.sock = sockpath;
	H.persist_ms = secs * 1000;
	snprintf(H.key, sizeof(H.key), "%s", key);
	snprintf(H.typed, sizeof(H.typed), "%s%s%s", c->user ? c->user : "",
	         c->user ? "@" : "", c->host ? c->host : "");
	/* The session's log callback: this holder's own conn, whose -v/-q
	 * each command sets (cli_holder_connect). */
	static cli_conn logc;
	logc = *c;
	H.log_conn = &logc;
	c->o.log_ctx = &logc;

	ferry_session *s = NULL;
	int rc = ferry_session_new(&s, &c->o);
	if (rc) {
		report_ready(readyfd, FERRY_EXIT_USAGE, ferry_last_errmsg());
		_exit(0);
	}
	rc = ferry_session_connect(s);
	if (rc) {
		report_ready(readyfd,
		             rc == FERRY_EINTR ? FERRY_EXIT_INTERRUPTED
		                               : FERRY_EXIT_CONN,
		             ferry_session_errmsg(s));
		ferry_session_close(s);
		_exit(0);
	}
	/* Connected (relative -i and --known-hosts were the client's): no
	 * directory stays busy because of us. */
	if (chdir("/") < 0) {
		/* stays where it was */
	}
	ferry_session_info in;
	if (ferry_session_info_get(&in, s) == 0 && in.target)
		snprintf(H.target, sizeof(H.target), "%s", in.target);
	set_title(); /* c's strings (in argv) are no longer needed */
	H.ssh_fd = find_tcp_socket();
	H.listen_fd = listen_on(sockpath);
	struct stat sb;
	if (H.listen_fd < 0 || pipe2(H.wake, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    lstat(sockpath, &sb) < 0) {
		char msg[700];
		snprintf(msg, sizeof(msg), "cannot listen on %s: %s", sockpath,
		         strerror(errno));
		report_ready(readyfd, -1, msg);
		ferry_session_close(s);
		_exit(0);
	}
	H.dev = sb.st_dev;
	H.ino = sb.st_ino;
	H.s = s;
	H.last_active = fr_now_ms();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);

	pthread_t th;
	if (pthread_create(&th, NULL, io_thread, NULL) != 0) {
		report_ready(readyfd, -1, "cannot start the holder's thread");
		unlink(sockpath);
		ferry_session_close(s);
		_exit(0);
	}
	report_ready(readyfd, 0, NULL);

	for (;;) {
		pthread_mutex_lock(&H.mu);
		while ((!H.qhead || H.stopping) && !H.exit_now)
			pthread_cond_wait(&H.cv, &H.mu);
		if (H.exit_now) {
			pthread_mutex_unlock(&H.mu);
			break;
		}
		hclient *cl = H.qhead;
		queue_remove(cl);
		cl->running = 1;
		H.nrunning++;
		pthread_mutex_unlock(&H.mu);

		int st = run_one(cl);
		if (st != -2)
			finish_one(cl, st);
	}
	pthread_join(th, NULL);
	ferry_session_close(s);
	close(lockfd);
	_exit(0);
}
