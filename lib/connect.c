/* connect.c - opening a session: options checked, TCP connect, SSH
 * handshake, host key (hostkey.c), authentication (auth.c).  The core
 * (session.c) knows nothing of these; this module calls them. */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "auth.h"
#include "error.h"
#include "hostkey.h"
#include "os.h"
#include "sshconfig.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 15000
#define DEFAULT_KEEPALIVE_S        15

static int tcp_connect(ferry_session *s, int64_t deadline)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[16];
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%d", s->port);
	int gai = getaddrinfo(s->host, port, &hints, &res);
	if (gai)
		return ferry__seterr(s, FERRY_ECONN, "resolve %s: %s", s->host,
		                     gai_strerror(gai));
	int error = FERRY_ECONN;
	int last_errno = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family,
		                ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                ai->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
		    errno != EINPROGRESS) {
			last_errno = errno;
			close(fd);
			continue;
		}
		short rev = 0;
		int rc = ferry__session_wait_fd(s, fd, POLLOUT, deadline, 0,
		                                &rev);
		if (rc) {
			close(fd);
			error = rc;
			if (rc == FERRY_ETIMEOUT)
				ferry__seterr(
				        s, rc,
				        "connect to %s port %d: timed out",
				        s->host, s->port);
			break;
		}
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr) {
			last_errno = soerr;
			close(fd);
			continue;
		}
		s->fd = fd;
		error = 0;
		break;
	}
	freeaddrinfo(res);
	if (error == FERRY_ECONN)
		ferry__seterr(s, FERRY_ECONN, "connect to %s port %d: %s",
		              s->host, s->port,
		              last_errno ? strerror(last_errno) : "no address");
	return error;
}

/* Drive one libssh2 setup call to completion. */
#define SSH_CALL(s, rc, deadline, call)                                        \
	do {                                                                   \
		while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN) {              \
			int w_ = ferry__session_wait((s), (deadline), 0);      \
			if (w_) {                                              \
				(rc) = w_;                                     \
				break;                                         \
			}                                                      \
		}                                                              \
	} while (0)

char *ferry__target_string(const char *user, const char *host, int port)
{
	if (!user)
		user = ferry__local_user();
	if (!port)
		port = 22;
	if (strchr(host, ':'))
		return ferry__asprintf("%s@[%s]:%d", user, host, port);
	return ferry__asprintf("%s@%s:%d", user, host, port);
}

static int session_new(ferry_session **out, const ferry_session_opts *o)
{
	ferry_session *s = ferry__calloc(1, sizeof(*s));
	if (!s)
		return FERRY_ENOMEM;
	static atomic_uint_fast64_t ids;
	s->id = atomic_fetch_add(&ids, 1) + 1;
	s->fd = -1;
	s->intr_pipe[0] = s->intr_pipe[1] = -1;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&s->mu, NULL);
	*out = s;
	int rc = ferry__opts_resolve(&s->opts, &s->sshcfg, o, s->errmsg,
	                             sizeof(s->errmsg));
	if (rc)
		return rc;
	o = &s->opts;
	s->log = o->log;
	s->log_ctx = o->log_ctx;
	s->port = o->port ? o->port : 22;
	s->keepalive_s = o->keepalive_s ? o->keepalive_s : DEFAULT_KEEPALIVE_S;
	s->idle_timeout_ms =
	        o->idle_timeout_ms
	                ? o->idle_timeout_ms
	                : (s->keepalive_s > 0 ? s->keepalive_s * 4000 : 0);
	s->host = ferry__strdup(o->host);
	s->user = ferry__strdup(o->user ? o->user : ferry__local_user());
	if (!s->host || !s->user)
		return FERRY_ENOMEM;
	s->target = ferry__target_string(s->user, s->host, s->port);
	if (!s->target)
		return FERRY_ENOMEM;
	if (pipe2(s->intr_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		return ferry__seterr(s, FERRY_EIO, "pipe: %s", strerror(errno));
	return 0;
}

int ferry__cipher_is_aead(const char *cipher)
{
	return cipher && (!strcmp(cipher, "chacha20-poly1305@openssh.com") ||
	                  !strcmp(cipher, "aes128-gcm@openssh.com") ||
	                  !strcmp(cipher, "aes256-gcm@openssh.com"));
}

static void fill_info(ferry_session *s)
{
	static const int methods[] = {
	        LIBSSH2_METHOD_KEX,      LIBSSH2_METHOD_HOSTKEY,
	        LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_CRYPT_SC,
	        LIBSSH2_METHOD_MAC_CS,   LIBSSH2_METHOD_MAC_SC,
	        LIBSSH2_METHOD_COMP_CS,  LIBSSH2_METHOD_COMP_SC};
	const char **dst[] = {&s->info.kex,       &s->info.hostkey_type,
	                      &s->info.cipher_cs, &s->info.cipher_sc,
	                      &s->info.mac_cs,    &s->info.mac_sc,
	                      &s->info.comp_cs,   &s->info.comp_sc};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		const char *m = libssh2_session_methods(s->ssh, methods[i]);
		*dst[i] = m ? m : "?";
	}
	/* An AEAD cipher authenticates itself: libssh2 still names a MAC it
	 * negotiated but does not use; sshd logs "<implicit>". */
	if (ferry__cipher_is_aead(s->info.cipher_cs))
		s->info.mac_cs = "<implicit>";
	if (ferry__cipher_is_aead(s->info.cipher_sc))
		s->info.mac_sc = "<implicit>";
	s->info.target = s->target;
}

static int session_setup(ferry_session *s, const ferry_session_opts *o)
{
	int rc;
	char *kh_path = NULL;
	int timeout = o->connect_timeout_ms > 0 ? o->connect_timeout_ms
	                                        : DEFAULT_CONNECT_TIMEOUT_MS;
	int64_t deadline = ferry__now_ms() + timeout;
	double t0 = ferry__now_ms_f();

	if ((rc = tcp_connect(s, deadline)))
		goto out;
	double t1 = ferry__now_ms_f();
	s->info.ms_resolve_connect = t1 - t0;

	s->ssh = libssh2_session_init_ex(NULL, NULL, NULL, s);
	if (!s->ssh) {
		rc = ferry__seterr(s, FERRY_ENOMEM,
		                   "libssh2 session: out of memory");
		goto out;
	}
	libssh2_session_set_blocking(s->ssh, 0);
	if (o->compress)
		libssh2_session_flag(s->ssh, LIBSSH2_FLAG_COMPRESS, 1);
	kh_path = o->known_hosts ? ferry__strdup(o->known_hosts)
	                         : ferry__home_path(".ssh/known_hosts");
	if (!kh_path) {
		rc = FERRY_ENOMEM;
		goto out;
	}
	if (o->host_key_policy != FERRY_HOSTKEY_OFF &&
	    (rc = ferry__hostkey_prefer(s, kh_path)))
		goto out;

	SSH_CALL(s, rc, deadline, libssh2_session_handshake(s->ssh, s->fd));
	if (rc) {
		if (rc == FERRY_ETIMEOUT)
			rc = ferry__seterr(s, rc,
			                   "handshake with %s: timed out after "
			                   "%d ms (the port accepts but no SSH "
			                   "server answers)",
			                   s->target, timeout);
		else if (rc != FERRY_EINTR)
			rc = ferry__seterr_ssh(s, FERRY_ECONN, "handshake");
		goto out;
	}
	double t2 = ferry__now_ms_f();
	s->info.ms_handshake = t2 - t1;

	char fp[80];
	if ((rc = ferry__hostkey_check(s, kh_path, o->host_key_policy, fp,
	                               sizeof(fp))))
		goto out;
	s->info_strings[0] = ferry__strdup(fp);
	if (!s->info_strings[0]) {
		rc = FERRY_ENOMEM;
		goto out;
	}
	s->info.hostkey_fingerprint = s->info_strings[0];
	double t3 = ferry__now_ms_f();
	s->info.ms_hostkey = t3 - t2;

	const char *method = NULL;
	if ((rc = ferry__auth(s, o, deadline, &s->info_strings[1], &method)))
		goto out;
	s->info.auth_method = s->info_strings[1];
	s->info.ms_auth = ferry__now_ms_f() - t3;

	if (s->keepalive_s > 0)
		libssh2_keepalive_config(s->ssh, 1, (unsigned)s->keepalive_s);
	fill_info(s);
out:
	ferry__free(kh_path);
	return rc;
}

static const char *opts_problem(const ferry_session_opts *o)
{
	if (!o)
		return "no options given";
	if (o->version < 1 || o->version > FERRY_SESSION_OPTS_VERSION)
		return "unknown options version";
	if (!o->host || !*o->host)
		return "no host";
	if (o->port < 0 || o->port > 65535)
		return "port out of range";
	if (o->identity_count && !o->identity_files)
		return "identity_count without identity_files";
	return NULL;
}

int ferry_session_new(ferry_session **out, const ferry_session_opts *o)
{
	const char *problem = out ? opts_problem(o) : "no output pointer";
	if (out)
		*out = NULL;
	if (problem) {
		ferry__last_errmsg_set("invalid session options: %s", problem);
		return FERRY_EINVALID;
	}
	ferry_session *s = NULL;
	int error = session_new(&s, o);
	if (error) {
		ferry__last_errmsg_set("%s", s && s->errmsg[0]
		                                     ? s->errmsg
		                                     : ferry_strerror(error));
		ferry_session_close(s);
		return error;
	}
	ferry__last_errmsg_set(NULL);
	*out = s;
	return 0;
}

int ferry_session_connect(ferry_session *s)
{
	if (!s)
		return FERRY_EINVALID;
	if (s->ssh || s->fd >= 0)
		return ferry__seterr(s, FERRY_EINVALID,
		                     "session already connected");
	ferry__session_call_begin(s);
	int error = session_setup(s, &s->opts);
	if (error) {
		s->dead = 1;
		if (!s->errmsg[0])
			ferry__seterr(s, error, "%s", ferry_strerror(error));
	}
	ferry__session_call_end(s);
	return error;
}

int ferry__session_reconnect_locked(ferry_session *s)
{
	if (!s->dead && s->ssh && ferry_session_alive(s) == 0)
		return 0;
	/* What belonged to the old connection goes first: the modules'
	 * channels and handles, then libssh2's session (bounded, as in
	 * close: the peer is gone). */
	s->dead = 1;
	for (int i = 0; i < FERRY__SLOT_COUNT; i++)
		if (s->state_reset[i] && s->state[i])
			s->state_reset[i](s->state[i]);
	if (s->streams_free && s->streams)
		s->streams_free(s->streams);
	s->streams = NULL;
	if (s->sftp_free && s->sftp)
		s->sftp_free(s->sftp);
	s->sftp = NULL;
	if (s->ssh) {
		libssh2_session_set_timeout(s->ssh, 1000);
		libssh2_session_set_blocking(s->ssh, 1);
		libssh2_session_free(s->ssh);
		s->ssh = NULL;
	}
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	for (size_t i = 0;
	     i < sizeof(s->info_strings) / sizeof(s->info_strings[0]); i++) {
		ferry__free(s->info_strings[i]);
		s->info_strings[i] = NULL;
	}
	/* The old strings (cipher names...) were libssh2's. */
	memset(&s->info, 0, sizeof(s->info));
	s->info.home = s->home;
	s->open_owner = s->startup_owner = NULL;
	s->errmsg[0] = '\0';
	s->dead = 0;
	int error = session_setup(s, &s->opts);
	if (error) {
		s->dead = 1;
		if (!s->errmsg[0])
			ferry__seterr(s, error, "%s", ferry_strerror(error));
	}
	return error;
}

int ferry_session_reconnect(ferry_session *s)
{
	if (!s)
		return FERRY_EINVALID;
	if (!s->ssh && s->fd < 0 && !s->dead)
		return ferry__seterr(s, FERRY_EINVALID,
		                     "reconnect: the session was never "
		                     "connected");
	ferry__session_call_begin(s);
	int error = s->ncalls > 1
	                    ? ferry__seterr(s, FERRY_EINVALID,
	                                    "reconnect: another call runs on "
	                                    "the session")
	                    : ferry__session_reconnect_locked(s);
	ferry__session_call_end(s);
	return error;
}

/* The message of a failed open goes to errmsg and to the thread's last
 * error (ferry_last_errmsg), where ferry_session_open leaves it too. */
int ferry_session_open_ex(ferry_session **out, const ferry_session_opts *o,
                          char *errmsg, size_t errmsg_size)
{
	ferry_session *s = NULL;
	if (out)
		*out = NULL;
	if (errmsg && errmsg_size)
		errmsg[0] = '\0';
	int error = ferry_session_new(out ? &s : NULL, o);
	if (!error && (error = ferry_session_connect(s)) != 0)
		ferry__last_errmsg_set("%s", ferry_session_errmsg(s));
	if (error) {
		if (errmsg && errmsg_size)
			snprintf(errmsg, errmsg_size, "%s",
			         ferry_last_errmsg());
		ferry_session_close(s);
		return error;
	}
	*out = s;
	return 0;
}

int ferry_session_open(ferry_session **out, const ferry_session_opts *opts)
{
	return ferry_session_open_ex(out, opts, NULL, 0);
}
