#include "fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FERRY_SRCDIR
#define FERRY_SRCDIR "."
#endif
#ifndef FERRY_BUILDDIR
#define FERRY_BUILDDIR "build"
#endif

static fx_sshd shared_sv;
static int shared_ok;

static void fill_paths(fx_sshd *sv)
{
	snprintf(sv->key_ed25519, sizeof(sv->key_ed25519), "%s/id_ed25519",
	         sv->dir);
	snprintf(sv->key_ecdsa, sizeof(sv->key_ecdsa), "%s/id_ecdsa", sv->dir);
	snprintf(sv->known_hosts, sizeof(sv->known_hosts), "%s/known_hosts",
	         sv->dir);
}

static int read_port(fx_sshd *sv)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/port", sv->dir);
	char *s = fx_read_file(path, NULL);
	if (!s)
		return -1;
	sv->port = (int)strtol(s, NULL, 10);
	free(s);
	return sv->port > 0 ? 0 : -1;
}

int fx_sshd_start(fx_sshd *out, const char *extra_config)
{
	memset(out, 0, sizeof(*out));
	char *dir = fx_tmpdir("sshd");
	if (!dir)
		return -1;
	snprintf(out->dir, sizeof(out->dir), "%s", dir);
	free(dir);
	char extra[700] = "";
	if (extra_config) {
		snprintf(extra, sizeof(extra), "%s/extra_config", out->dir);
		if (fx_write_file(extra, extra_config, strlen(extra_config),
		                  0600))
			return -1;
	}
	if (fx_sh("%s/tests/sshd.sh start '%s' %s >/dev/null", FERRY_SRCDIR,
	          out->dir, extra) != 0)
		return -1;
	fill_paths(out);
	out->owned = 1;
	return read_port(out);
}

void fx_sshd_stop(fx_sshd *sv)
{
	if (sv->owned)
		fx_sh("%s/tests/sshd.sh stop '%s'", FERRY_SRCDIR, sv->dir);
	sv->owned = 0;
}

static void stop_shared(void)
{
	fx_sshd_stop(&shared_sv);
}

const fx_sshd *fx_shared(void)
{
	if (shared_ok)
		return &shared_sv;
	const char *d = getenv("FERRY_TEST_SSHD_DIR");
	if (d && *d) {
		snprintf(shared_sv.dir, sizeof(shared_sv.dir), "%s", d);
		fill_paths(&shared_sv);
		cr_assert_eq(read_port(&shared_sv), 0, "no port file in %s", d);
	} else {
		cr_assert_eq(fx_sshd_start(&shared_sv, NULL), 0,
		             "cannot start sshd");
		atexit(stop_shared);
	}
	shared_ok = 1;
	return &shared_sv;
}

void fx_opts(const fx_sshd *sv, ferry_session_opts *o)
{
	static const char *ids[1];
	ferry_session_opts init = FERRY_SESSION_OPTS_INIT;
	*o = init;
	ids[0] = sv->key_ed25519;
	o->host = "127.0.0.1";
	o->port = sv->port;
	o->identity_files = ids;
	o->identity_count = 1;
	o->known_hosts = sv->known_hosts;
	o->host_key_policy = FERRY_HOSTKEY_STRICT;
	o->no_agent = 1;
	o->connect_timeout_ms = 10000;
}

ferry_session *fx_connect(const fx_sshd *sv)
{
	ferry_session_opts o;
	fx_opts(sv, &o);
	ferry_session *s = NULL;
	char err[512] = "";
	int rc = ferry_session_open_ex(&s, &o, err, sizeof(err));
	cr_assert_eq(rc, 0, "connect: %s (%s)", ferry_strerror(rc), err);
	return s;
}

char *fx_tmpdir(const char *tag)
{
	const char *base = getenv("FERRY_TEST_TMP");
	if (!base || !*base)
		base = "/tmp";
	char tmpl[512];
	snprintf(tmpl, sizeof(tmpl), "%s/ferry-%s-XXXXXX", base, tag);
	if (!mkdtemp(tmpl))
		return NULL;
	return strdup(tmpl);
}

static char *vformat(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

int fx_sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = vformat(fmt, ap);
	va_end(ap);
	if (!cmd)
		return -1;
	int st = system(cmd);
	free(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

char *fx_sh_out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = vformat(fmt, ap);
	va_end(ap);
	if (!cmd)
		return NULL;
	FILE *p = popen(cmd, "r");
	free(cmd);
	if (!p)
		return NULL;
	size_t cap = 4096, len = 0;
	char *out = malloc(cap);
	size_t n;
	while (out && (n = fread(out + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (cap - len < 2) {
			char *no = realloc(out, cap *= 2);
			if (!no) {
				free(out);
				out = NULL;
			} else {
				out = no;
			}
		}
	}
	pclose(p);
	if (out)
		out[len] = '\0';
	return out;
}

int fx_sh_capture(char **out, char **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = vformat(fmt, ap);
	va_end(ap);
	char *dir = fx_tmpdir("cap");
	int rc = -1;
	if (cmd && dir)
		rc = fx_sh("{ %s ; } </dev/null >%s/out 2>%s/err", cmd, dir,
		           dir);
	char path[600];
	snprintf(path, sizeof(path), "%s/out", dir ? dir : "/nonexistent");
	char *o = fx_read_file(path, NULL);
	snprintf(path, sizeof(path), "%s/err", dir ? dir : "/nonexistent");
	char *e = fx_read_file(path, NULL);
	cr_assert(o && e, "cannot capture the output of: %s", cmd);
	if (out)
		*out = o;
	else
		free(o);
	if (err)
		*err = e;
	else
		free(e);
	if (dir)
		fx_sh("rm -rf '%s'", dir);
	free(dir);
	free(cmd);
	return rc;
}

int fx_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	fchmod(fd, mode);
	return close(fd);
}

int fx_write_in(const char *dir, const char *name, const char *text,
                mode_t mode)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return fx_write_file(path, text, strlen(text), mode);
}

char *fx_read_file(const char *path, size_t *lenp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	size_t cap = (size_t)st.st_size + 1, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf)
			break;
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			buf = NULL;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf) {
		buf[len] = '\0';
		if (lenp)
			*lenp = len;
	}
	return buf;
}

int fx_json_holds(const char *path, const char *asserts, char **why)
{
	/* The statements go in a file: any quotes in them are python's. */
	while (*asserts == ' ')
		asserts++;
	char py[700];
	snprintf(py, sizeof(py), "%s.py", path);
	char *text = NULL;
	cr_assert(
	        asprintf(
	                &text,
	                "import json,sys\nd=json.load(open(sys.argv[1]))\n%s\n",
	                asserts) >= 0);
	cr_assert_eq(fx_write_file(py, text, strlen(text), 0600), 0);
	free(text);
	return fx_sh_capture(NULL, why, "python3 '%s' '%s'", py, path);
}

int fx_json_text_holds(const char *dir, const char *text, const char *asserts,
                       char **why)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/out.json", dir);
	cr_assert_eq(fx_write_file(path, text, strlen(text), 0600), 0);
	return fx_json_holds(path, asserts, why);
}

const char *fx_ferry_bin(void)
{
	const char *b = getenv("FERRY_BIN");
	return b && *b ? b : FERRY_BUILDDIR "/ferry";
}

static void *interrupter(void *arg)
{
	fx_interrupter *x = arg;
	usleep((useconds_t)x->ms * 1000);
	ferry_interrupt(x->s);
	return NULL;
}

void fx_interrupt_after(fx_interrupter *x, ferry_session *s, int ms)
{
	x->s = s;
	x->ms = ms;
	cr_assert_eq(pthread_create(&x->th, NULL, interrupter, x), 0);
}

void fx_interrupt_join(fx_interrupter *x)
{
	pthread_join(x->th, NULL);
}
