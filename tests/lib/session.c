/* Tests of lib/session.c, lib/hostkey.c and lib/auth.c against a real sshd. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"
#include "auth.h"
#include "fixture.h"
#include "session.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int try_open(ferry_session_opts *o, char *err, size_t errsz)
{
	ferry_session *s = NULL;
	int rc = ferry_session_open_ex(&s, o, err, errsz);
	if (rc == 0) {
		cr_assert_not_null(s);
		ferry_session_close(s);
	} else {
		cr_assert_null(s);
	}
	return rc;
}

static int count_lines(const char *path)
{
	size_t len = 0;
	char *t = fx_read_file(path, &len);
	if (!t)
		return -1;
	int n = 0;
	for (size_t i = 0; i < len; i++)
		n += t[i] == '\n';
	free(t);
	return n;
}

/* Options for sv with a known_hosts file of the test's own: path, name in
 * a new directory (returned; the caller frees it), not created. */
static char *own_known_hosts(const fx_sshd *sv, ferry_session_opts *o,
                             char *path, size_t n, const char *name)
{
	char *dir = fx_tmpdir("kh");
	snprintf(path, n, "%s/%s", dir, name);
	fx_opts(sv, o);
	o->known_hosts = path;
	return dir;
}

/* Options for sv with the identity files ids (one, NULL-free array). */
static void opts_with_key(const fx_sshd *sv, ferry_session_opts *o,
                          const char **ids)
{
	fx_opts(sv, o);
	o->identity_files = ids;
}

Test(session, ed25519_and_ecdsa_keys)
{
	const fx_sshd *sv = fx_shared();
	ferry_session_opts o;
	char err[512];
	fx_opts(sv, &o);
	cr_assert_eq(try_open(&o, err, sizeof(err)), 0, "%s", err);
	const char *ids[] = {sv->key_ecdsa};
	o.identity_files = ids;
	cr_assert_eq(try_open(&o, err, sizeof(err)), 0, "%s", err);
}

Test(session, info_reports_algorithms_and_steps)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_session_info in;
	cr_assert_eq(ferry_session_info_get(&in, s), 0);
	cr_assert(strstr(in.hostkey_fingerprint, "SHA256:") ==
	          in.hostkey_fingerprint);
	cr_assert_str_neq(in.kex, "?");
	cr_assert_str_neq(in.cipher_cs, "?");
	cr_assert(in.ms_handshake > 0 && in.ms_auth > 0);
	cr_assert(strstr(in.target, "@127.0.0.1:") != NULL);
	ferry_session_close(s);
}

/* The login directory: unknown right after connect, then a REALPATH "."
 * riding with the SFTP channel's INIT; known for free from then on.
 * A program built before version 2 of the info struct (the function
 * under the macro) gets version 1's bytes only. */
Test(session, home_is_learnt_with_the_sftp_start)
{
	ferry_session *s = fx_connect(fx_shared());
	ferry_session_info in;
	cr_assert_eq(ferry_session_info_get(&in, s), 0);
	cr_assert_null(in.home);
	const char *home = NULL;
	cr_assert_eq(ferry_session_home(s, &home), 0, "%s",
	             ferry_session_errmsg(s));
	char want[4096];
	cr_assert_not_null(realpath(getenv("HOME"), want));
	cr_assert_str_eq(home, want);
	/* INIT's round trip only: REALPATH rode with it */
	/* the channel's open, its subsystem request and INIT: REALPATH rode
	 * with INIT */
	cr_assert_eq(ferry_session_round_trips(s), 3, "%llu",
	             (unsigned long long)ferry_session_round_trips(s));
	cr_assert_eq(ferry_session_info_get(&in, s), 0);
	cr_assert_eq(in.home, home);
	const char *again = NULL;
	cr_assert_eq(ferry_session_home(s, &again), 0);
	cr_assert_eq(again, home);
	cr_assert_eq(ferry_session_round_trips(s), 3);

	memset(&in, 0x5a, sizeof(in));
	cr_assert_eq((ferry_session_info_get)(&in, s), 0);
	const unsigned char *tail = (const unsigned char *)&in.home;
	for (size_t i = 0; i < sizeof(in.home); i++)
		cr_assert_eq(tail[i], 0x5a, "version 1 wrote past its end");
	cr_assert_eq(ferry_session_info_get_v(&in, 3, s), FERRY_EINVALID);
	cr_assert_eq(ferry_session_info_get_v(&in, 0, s), FERRY_EINVALID);
	ferry_session_close(s);
}

Test(session, accept_new_appends_exactly_one_line)
{
	const fx_sshd *sv = fx_shared();
	ferry_session_opts o;
	char path[600], err[512];
	char *dir =
	        own_known_hosts(sv, &o, path, sizeof(path), "sub/known_hosts");

	o.host_key_policy = FERRY_HOSTKEY_STRICT;
	cr_assert_eq(try_open(&o, err, sizeof(err)), FERRY_EHOSTKEY);
	cr_assert(strstr(err, "SHA256:") != NULL, "%s", err);
	cr_assert(access(path, F_OK) != 0, "strict must not create the file");

	o.host_key_policy = FERRY_HOSTKEY_ACCEPT_NEW;
	cr_assert_eq(try_open(&o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count_lines(path), 1);
	char *first = fx_read_file(path, NULL);
	char want[64];
	snprintf(want, sizeof(want), "[127.0.0.1]:%d ", sv->port);
	cr_assert(strncmp(first, want, strlen(want)) == 0, "line: %s", first);
	cr_assert_eq(try_open(&o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count_lines(path), 1, "second connect must add nothing");
	char *second = fx_read_file(path, NULL);
	cr_assert_str_eq(first, second);
	/* What accept-new wrote is what strict accepts. */
	o.host_key_policy = FERRY_HOSTKEY_STRICT;
	cr_assert_eq(try_open(&o, err, sizeof(err)), 0, "%s", err);
	free(first);
	free(second);
	free(dir);
}

Test(session, accept_new_keeps_unterminated_last_line_separate)
{
	const fx_sshd *sv = fx_shared();
	ferry_session_opts o;
	char path[600], err[512];
	char *dir = own_known_hosts(sv, &o, path, sizeof(path), "known_hosts");
	const char *other =
	        "otherhost ssh-ed25519 "
	        "AAAAC3NzaC1lZDI1NTE5AAAAIEl3M8K7Tt0o1o4dCC9q0Yy5wz3rCCrKe"
	        "Gqf7Ax5Y2Yz";
	cr_assert_eq(fx_write_file(path, other, strlen(other), 0600), 0);
	o.host_key_policy = FERRY_HOSTKEY_ACCEPT_NEW;
	cr_assert_eq(try_open(&o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count_lines(path), 2);
	char *t = fx_read_file(path, NULL);
	cr_assert(strncmp(t, other, strlen(other)) == 0 &&
	          t[strlen(other)] == '\n');
	free(t);
	free(dir);
}

Test(session, changed_host_key_is_refused_and_file_untouched)
{
	const fx_sshd *sv = fx_shared();
	ferry_session_opts o;
	char path[600], err[1024];
	char *dir = own_known_hosts(sv, &o, path, sizeof(path), "known_hosts");
	cr_assert_eq(fx_sh("ssh-keygen -q -t ed25519 -N '' -f %s/fake", dir),
	             0);
	cr_assert_eq(
	        fx_sh("printf '# mine\\n[127.0.0.1]:%d ' > %s && cut -d' ' "
	              "-f1,2 %s/fake.pub >> %s",
	              sv->port, path, dir, path),
	        0);
	size_t before_len;
	char *before = fx_read_file(path, &before_len);
	char *fp = fx_sh_out(
	        "ssh-keygen -lf %s/host_ed25519.pub | cut -d' ' -f2", sv->dir);
	fp[strcspn(fp, "\n")] = '\0';

	for (int policy = 0; policy < 2; policy++) {
		o.host_key_policy = policy ? FERRY_HOSTKEY_STRICT
		                           : FERRY_HOSTKEY_ACCEPT_NEW;
		cr_assert_eq(try_open(&o, err, sizeof(err)), FERRY_EHOSTKEY);
		cr_assert(strstr(err, fp) != NULL, "fingerprint %s not in: %s",
		          fp, err);
		cr_assert(strstr(err, "CHANGED") != NULL, "%s", err);
		size_t after_len;
		char *after = fx_read_file(path, &after_len);
		cr_assert_eq(after_len, before_len);
		cr_assert(memcmp(before, after, before_len) == 0);
		free(after);
	}
	free(before);
	free(fp);
	free(dir);
}

Test(session, hashed_known_hosts_entries_match)
{
	const fx_sshd *sv = fx_shared();
	ferry_session_opts o;
	char path[600], err[512];
	char *dir = own_known_hosts(sv, &o, path, sizeof(path), "known_hosts");
	cr_assert_eq(
	        fx_sh("cp %s %s && ssh-keygen -q -H -f %s >/dev/null 2>&1 && "
	              "! grep -q 127.0.0.1 %s",
	              sv->known_hosts, path, path, path),
	        0);
	cr_assert_eq(try_open(&o, err, sizeof(err)), 0, "%s", err);
	free(dir);
}

Test(session, ecdsa_only_known_host_prefers_ecdsa)
{
	const fx_sshd *sv = fx_shared();
	ferry_session_opts o;
	char path[600], err[512];
	char *dir = own_known_hosts(sv, &o, path, sizeof(path), "known_hosts");
	cr_assert_eq(fx_sh("grep ecdsa %s > %s", sv->known_hosts, path), 0);
	ferry_session *s = NULL;
	cr_assert_eq(ferry_session_open_ex(&s, &o, err, sizeof(err)), 0, "%s",
	             err);
	ferry_session_info in;
	ferry_session_info_get(&in, s);
	cr_assert(strstr(in.hostkey_type, "ecdsa") != NULL, "%s",
	          in.hostkey_type);
	ferry_session_close(s);
	free(dir);
}

/* A private server whose authorized_keys take a new key, key: the file
 * name in its directory, made by ssh-keygen with these arguments. */
static void private_server_key(fx_sshd *sv, char *key, size_t n,
                               const char *name, const char *keygen)
{
	cr_assert_eq(fx_sshd_start(sv, NULL), 0);
	snprintf(key, n, "%s/%s", sv->dir, name);
	cr_assert_eq(fx_sh("ssh-keygen -q %s -f %s && cat %s.pub >> "
	                   "%s/authorized_keys",
	                   keygen, key, key, sv->dir),
	             0);
}

Test(session, wrong_key_is_auth_error)
{
	const fx_sshd *sv = fx_shared();
	char *dir = fx_tmpdir("key");
	char key[600];
	snprintf(key, sizeof(key), "%s/stranger", dir);
	cr_assert_eq(fx_sh("ssh-keygen -q -t ed25519 -N '' -f %s", key), 0);
	ferry_session_opts o;
	char err[1024];
	const char *ids[] = {key};
	opts_with_key(sv, &o, ids);
	cr_assert_eq(try_open(&o, err, sizeof(err)), FERRY_EAUTH);
	cr_assert(strstr(err, "stranger") != NULL, "%s", err);
	cr_assert(strstr(err, "ed25519") == NULL ||
	          strstr(err, "Hint") == NULL);
	free(dir);
}

Test(session, missing_identity_file_is_named)
{
	const fx_sshd *sv = fx_shared();
	ferry_session_opts o;
	char err[1024];
	fx_opts(sv, &o);
	const char *ids[] = {"/nonexistent/id_ed25519"};
	o.identity_files = ids;
	cr_assert_eq(try_open(&o, err, sizeof(err)), FERRY_EAUTH);
	cr_assert(strstr(err, "/nonexistent/id_ed25519") != NULL, "%s", err);
}

Test(session, rsa_key_fails_with_ed25519_hint)
{
	fx_sshd sv;
	char key[600];
	private_server_key(&sv, key, sizeof(key), "id_rsa",
	                   "-t rsa -b 2048 -N ''");
	ferry_session_opts o;
	char err[1024];
	const char *ids[] = {key};
	opts_with_key(&sv, &o, ids);
	int rc = try_open(&o, err, sizeof(err));
	fx_sshd_stop(&sv);
	if (!ferry__libssh2_rsa_sha1_only()) {
		/* libssh2 1.11 and later sign with SHA-2: the key works and no
		 * hint about SHA-1 may be given. */
		cr_assert(rc == 0 || !strstr(err, "SHA-1"), "%s", err);
		return;
	}
	cr_assert_eq(rc, FERRY_EAUTH, "%s", err);
	cr_assert(strstr(err, "ed25519") != NULL, "no hint in: %s", err);
	cr_assert(strstr(err, "RSA") != NULL, "%s", err);
}

Test(session, encrypted_key_right_and_wrong_passphrase)
{
	fx_sshd sv;
	char key[600];
	private_server_key(&sv, key, sizeof(key), "id_locked",
	                   "-t ed25519 -N 's3cret pass'");
	ferry_session_opts o;
	char err[1024];
	const char *ids[] = {key};
	opts_with_key(&sv, &o, ids);
	o.passphrase = "s3cret pass";
	int ok = try_open(&o, err, sizeof(err));
	char okerr[1024];
	memcpy(okerr, err, sizeof(err));
	o.passphrase = "wrong";
	int bad = try_open(&o, err, sizeof(err));
	char baderr[1024];
	memcpy(baderr, err, sizeof(err));
	o.passphrase = NULL;
	unsetenv("FERRY_PASSPHRASE");
	int none = try_open(&o, err, sizeof(err));
	setenv("FERRY_PASSPHRASE", "s3cret pass", 1);
	int env = try_open(&o, okerr, sizeof(okerr));
	unsetenv("FERRY_PASSPHRASE");
	fx_sshd_stop(&sv);
	cr_assert_eq(ok, 0, "%s", okerr);
	cr_assert_eq(bad, FERRY_EAUTH);
	cr_assert(strstr(baderr, "passphrase") != NULL, "%s", baderr);
	cr_assert_eq(none, FERRY_EAUTH);
	cr_assert(strstr(err, "FERRY_PASSPHRASE") != NULL, "%s", err);
	cr_assert_eq(env, 0, "%s", okerr);
}

static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t l = sizeof(a);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &l);
	close(fd); /* bound then closed: nothing listens there now */
	return ntohs(a.sin_port);
}

/* A port that accepts connections (the kernel does) but never speaks. */
static int silent_listener(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t l = sizeof(a);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, 8), 0);
	getsockname(fd, (struct sockaddr *)&a, &l);
	*port = ntohs(a.sin_port);
	return fd;
}

Test(session, closed_port_fails_at_once)
{
	ferry_session_opts o;
	char err[512];
	fx_opts(fx_shared(), &o);
	o.port = closed_port();
	double t0 = now_ms();
	cr_assert_eq(try_open(&o, err, sizeof(err)), FERRY_ECONN);
	cr_assert(now_ms() - t0 < 1000);
	cr_assert(strstr(err, "refused") != NULL, "%s", err);
}

Test(session, silent_port_times_out_within_deadline)
{
	int port;
	int lfd = silent_listener(&port);
	ferry_session_opts o;
	char err[512];
	fx_opts(fx_shared(), &o);
	o.port = port;
	o.connect_timeout_ms = 700;
	double t0 = now_ms();
	cr_assert_eq(try_open(&o, err, sizeof(err)), FERRY_ETIMEOUT);
	double el = now_ms() - t0;
	cr_assert(el >= 650 && el < 5000, "took %.0f ms", el);
	cr_assert(strstr(err, "handshake") != NULL, "%s", err);
	close(lfd);
}

Test(session, interrupt_during_connect)
{
	int port;
	int lfd = silent_listener(&port);
	ferry_session_opts o;
	fx_opts(fx_shared(), &o);
	o.port = port;
	o.connect_timeout_ms = 10000;
	ferry_session *s = NULL;
	cr_assert_eq(ferry_session_new(&s, &o), 0);
	fx_interrupter t;
	fx_interrupt_after(&t, s, 200);
	double t0 = now_ms();
	int rc = ferry_session_connect(s);
	double el = now_ms() - t0;
	fx_interrupt_join(&t);
	cr_assert_eq(rc, FERRY_EINTR, "%s", ferry_session_errmsg(s));
	cr_assert(el < 8000, "took %.0f ms", el); /* not the 10 s deadline */
	ferry_session_close(s);
	close(lfd);
}

/* ferry_session_open has no error buffer: its message stays readable. */
Test(session, failed_open_leaves_its_message_in_last_errmsg)
{
	ferry_session_opts o;
	ferry_session *s = (ferry_session *)1;
	fx_opts(fx_shared(), &o);
	o.port = closed_port();
	cr_assert_eq(ferry_session_open(&s, &o), FERRY_ECONN);
	cr_assert_null(s);
	cr_assert(strstr(ferry_last_errmsg(), "refused") &&
	                  strstr(ferry_last_errmsg(), "127.0.0.1"),
	          "last errmsg: '%s'", ferry_last_errmsg());
	o.host = NULL;
	cr_assert_eq(ferry_session_open(&s, &o), FERRY_EINVALID);
	cr_assert(strstr(ferry_last_errmsg(), "no host"), "%s",
	          ferry_last_errmsg());
	s = fx_connect(fx_shared());
	cr_assert_str_empty(ferry_last_errmsg());
	ferry_session_close(s);
}

Test(session, bad_options_are_invalid)
{
	ferry_session *s = (ferry_session *)1;
	ferry_session_opts o = FERRY_SESSION_OPTS_INIT;
	char err[256];
	cr_assert_eq(ferry_session_open_ex(&s, &o, err, sizeof(err)),
	             FERRY_EINVALID);
	cr_assert_null(s);
	cr_assert(strstr(err, "no host") != NULL, "%s", err);
	o.host = "127.0.0.1";
	o.version = 99;
	cr_assert_eq(ferry_session_open_ex(&s, &o, err, sizeof(err)),
	             FERRY_EINVALID);
	cr_assert(strstr(err, "version") != NULL, "%s", err);
	cr_assert_eq(ferry_session_open(NULL, &o), FERRY_EINVALID);
}

Test(session, allocation_failures_fail_cleanly)
{
	const fx_sshd *sv = fx_shared();
	ferry_session_opts o;
	fx_opts(sv, &o);
	int failures = 0;
	for (unsigned long n = 1; n < 200; n++) {
		ferry_session *s = NULL;
		char err[512];
		ferry__alloc_fail_at(n);
		int rc = ferry_session_open_ex(&s, &o, err, sizeof(err));
		ferry__alloc_fail_at(0);
		if (rc == 0) {
			ferry_session_close(s);
			break;
		}
		failures++;
		cr_assert_null(s);
		cr_assert_eq(rc, FERRY_ENOMEM, "allocation %lu: %s (%s)", n,
		             ferry_strerror(rc), err);
	}
	cr_assert(failures >= 5, "only %d allocations were tested", failures);
}

Test(session, aead_ciphers_have_an_implicit_mac)
{
	cr_assert(ferry__cipher_is_aead("chacha20-poly1305@openssh.com"));
	cr_assert(ferry__cipher_is_aead("aes256-gcm@openssh.com"));
	cr_assert_not(ferry__cipher_is_aead("aes128-ctr"));
	cr_assert_not(ferry__cipher_is_aead(NULL));
	ferry_session *s = fx_connect(fx_shared());
	ferry_session_info info;
	cr_assert_eq(ferry_session_info_get(&info, s), 0);
	if (ferry__cipher_is_aead(info.cipher_cs))
		cr_assert_str_eq(info.mac_cs, "<implicit>");
	else
		cr_assert_str_neq(info.mac_cs, "<implicit>");
	ferry_session_close(s);
}

/* ferry_session_alive sees a connection the server ended, with no round
 * trip (what the --persist holder checks before it runs a command). */
Test(session, alive_until_the_server_ends_the_connection)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, NULL), 0);
	ferry_session *s = fx_connect(&sv);
	cr_assert_eq(ferry_session_alive(s), 0);
	ferry_exec_result r;
	cr_assert_eq(ferry_exec(s, "true", NULL, &r), 0);
	ferry_exec_result_free(&r);
	cr_assert_eq(ferry_session_alive(s), 0, "alive after a command");
	/* The server's side of this connection only. */
	cr_assert_eq(fx_sh("pkill -KILL -P $(cat %s/sshd.pid)", sv.dir), 0);
	int dead = 0;
	for (int i = 0; i < 200 && !dead; i++) {
		dead = ferry_session_alive(s) == FERRY_ECONN;
		if (!dead)
			usleep(10000);
	}
	cr_assert(dead, "the ended connection still looks alive");
	ferry_session_close(s);
	cr_assert_eq(ferry_session_alive(NULL), FERRY_ECONN);
	fx_sshd_stop(&sv);
}

/* A loop busy past the idle timeout is not a dead connection (issue 19): an
 * io that progresses for 3 idle timeouts, then waits 100 ms (half the
 * timeout), then is done.  Before, the first pass without progress found
 * the last POLLIN older than the timeout and declared the connection
 * dead. */
typedef struct busy_io {
	ferry__io io;
	int64_t busy_until, done_at;
} busy_io;

static int busy_step(ferry__io *io)
{
	busy_io *b = (busy_io *)io;
	return ferry__now_ms() < b->busy_until;
}

static int64_t busy_timer(ferry__io *io)
{
	busy_io *b = (busy_io *)io;
	return ferry__now_ms() < b->busy_until ? 0 : b->done_at;
}

static int busy_done(void *ctx)
{
	busy_io *b = ctx;
	return ferry__now_ms() >= b->done_at;
}

Test(session, busy_loop_is_not_idle)
{
	ferry_session_opts o;
	fx_opts(fx_shared(), &o);
	o.keepalive_s = -1;
	o.idle_timeout_ms = 200;
	ferry_session *s = NULL;
	char err[512] = "";
	cr_assert_eq(ferry_session_open_ex(&s, &o, err, sizeof(err)), 0, "%s",
	             err);
	busy_io b;
	memset(&b, 0, sizeof(b));
	b.io.step = busy_step;
	b.io.next_timer = busy_timer;
	int64_t t0 = ferry__now_ms();
	b.busy_until = t0 + 600;
	b.done_at = t0 + 700;
	ferry__io_add(s, &b.io);
	int rc = ferry__session_run(s, busy_done, &b, t0 + 5000, 0);
	ferry__io_remove(s, &b.io);
	cr_assert_eq(rc, 0, "%s: %s", ferry_strerror(rc),
	             ferry_session_errmsg(s));
	ferry_session_close(s);
}
