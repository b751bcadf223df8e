/* cli.c - what every subcommand shares. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *own(cli_conn *c, char *s)
{
	if (s && c->owned_count < sizeof(c->owned) / sizeof(c->owned[0]))
		c->owned[c->owned_count++] = s;
	return s;
}

static _Thread_local struct {
	FILE *out, *err;
	int in_fd; /* + 1: 0 is "not set" */
	volatile int *stop;
} tl_cmd;

void cli_thread_set(FILE *out, FILE *err, int in_fd, volatile int *stop)
{
	tl_cmd.out = out;
	tl_cmd.err = err;
	tl_cmd.in_fd = in_fd + 1;
	tl_cmd.stop = stop;
}

FILE *cli_out(void)
{
	return tl_cmd.out ? tl_cmd.out : stdout;
}

FILE *cli_err(void)
{
	return tl_cmd.err ? tl_cmd.err : stderr;
}

int cli_in_fd(void)
{
	return tl_cmd.in_fd > 0 ? tl_cmd.in_fd - 1 : 0;
}

volatile int *cli_stop(void)
{
	return tl_cmd.stop;
}

/* "ferry: [prefix]message\n" on cli_err(). */
__attribute__((format(printf, 2, 0))) static void
say(const char *prefix, const char *fmt, va_list ap)
{
	FILE *e = cli_err();
	fprintf(e, "%s: %s", cli_prog, prefix);
	vfprintf(e, fmt, ap);
	fputc('\n', e);
}

void cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	say("", fmt, ap);
	va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	say("warning: ", fmt, ap);
	va_end(ap);
}

int cli_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	say("", fmt, ap);
	va_end(ap);
	if (usage)
		fprintf(cli_err(), "usage: %s\n", usage);
	return FERRY_EXIT_USAGE;
}

int cli_usage_line(const char *usage)
{
	fprintf(cli_err(), "usage: %s\n", usage);
	return FERRY_EXIT_USAGE;
}

int cli_exit_for(int rc)
{
	switch (rc) {
	case 0:
		return FERRY_EXIT_OK;
	case FERRY_EPARTIAL:
		return FERRY_EXIT_PARTIAL;
	case FERRY_ECONN:
	case FERRY_EHOSTKEY:
	case FERRY_EAUTH:
	case FERRY_EEOF:
		return FERRY_EXIT_CONN;
	case FERRY_EINVALID:
		return FERRY_EXIT_USAGE;
	default:
		return FERRY_EXIT_ERROR;
	}
}

void cli_log(void *ctx, int level, const char *msg)
{
	const cli_conn *c = ctx;
	if (level == FERRY_LOG_DEBUG && (!c || c->verbose < 2))
		return;
	if (level == FERRY_LOG_INFO && (!c || c->verbose < 1))
		return;
	if (c && c->quiet && level < FERRY_LOG_WARN)
		return;
	fprintf(cli_err(), "%s: %s%s\n", cli_prog,
	        level == FERRY_LOG_WARN ? "warning: " : "", msg);
}

int cli_parse_ll(const char *s, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		return -1;
	*out = v;
	return 0;
}

int cli_parse_ms(const char *s, int allow_fraction, int *out_ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < 0 || v > INT_MAX / 1000.0)
		return -1;
	if (!allow_fraction && v != (double)(long long)v)
		return -1;
	*out_ms = (int)(v * 1000.0 + 0.5);
	return 0;
}

void cli_conn_init(cli_conn *c)
{
	ferry_session_opts init = FERRY_SESSION_OPTS_INIT;
	memset(c, 0, sizeof(*c));
	c->o = init;
	c->o.log = cli_log;
	c->o.log_ctx = c;
}

void cli_conn_free(cli_conn *c)
{
	for (size_t i = 0; i < c->owned_count; i++)
		free(c->owned[i]);
	c->owned_count = 0;
}

int cli_conn_option(cli_conn *c, int opt, const char *arg)
{
	long long v;
	switch (opt) {
	case 'p':
		if (cli_parse_ll(arg, &v) || v < 1 || v > 65535) {
			cli_error("bad port '%s' (1-65535)", arg);
			return -1;
		}
		c->o.port = (int)v;
		return 1;
	case 'i':
		if (c->identity_count >=
		    sizeof(c->identities) / sizeof(c->identities[0])) {
			cli_error("too many -i options");
			return -1;
		}
		c->identities[c->identity_count++] = arg;
		return 1;
	case 'F':
		c->config_file = arg;
		return 1;
	case 'z':
		c->o.compress = 1;
		return 1;
	case 'v':
		c->verbose++;
		return 1;
	case 'q':
		c->quiet = 1;
		return 1;
	case OPT_KNOWN_HOSTS:
		c->o.known_hosts = arg;
		return 1;
	case OPT_HOST_KEY:
		if (!strcmp(arg, "strict") || !strcmp(arg, "yes"))
			c->o.host_key_policy = FERRY_HOSTKEY_STRICT;
		else if (!strcmp(arg, "accept-new"))
			c->o.host_key_policy = FERRY_HOSTKEY_ACCEPT_NEW;
		else if (!strcmp(arg, "off") || !strcmp(arg, "no"))
			c->o.host_key_policy = FERRY_HOSTKEY_OFF;
		else {
			cli_error("bad --host-key '%s' (strict, accept-new or "
			          "off)",
			          arg);
			return -1;
		}
		return 1;
	case OPT_PERSIST:
		if (cli_persist_parse(arg ? arg : "", &c->persist_s) < 0) {
			cli_error("bad --persist '%s' (seconds, yes or no)",
			          arg);
			return -1;
		}
		c->persist_set = 1;
		return 1;
	case OPT_NO_PERSIST:
		c->persist_s = 0;
		c->persist_set = 1;
		return 1;
	case OPT_CONNECT_TIMEOUT:
		if (cli_parse_ms(arg, 1, &c->o.connect_timeout_ms) ||
		    c->o.connect_timeout_ms == 0) {
			cli_error("bad --connect-timeout '%s' (seconds > 0)",
			          arg);
			return -1;
		}
		return 1;
	case OPT_IO_TIMEOUT:
		/* 0: no deadline (the library's 0 is its default). */
		if (cli_parse_ms(arg, 1, &c->o.io_timeout_ms)) {
			cli_error("bad --io-timeout '%s' (seconds >= 0)", arg);
			return -1;
		}
		if (!c->o.io_timeout_ms)
			c->o.io_timeout_ms = -1;
		return 1;
	default:
		return 0;
	}
}

int cli_conn_target(cli_conn *c, const char *arg, int want_path, char **path)
{
	const char *at = NULL;
	/* USER@ ends at the last '@' before the host part. */
	for (const char *p = arg; *p && *p != ':' && *p != '['; p++)
		if (*p == '@')
			at = p;
	const char *h = at ? at + 1 : arg;
	const char *hend, *rest;
	if (*h == '[') {
		hend = strchr(h, ']');
		if (!hend || hend == h + 1) {
			cli_error("bad host in '%s': unterminated [", arg);
			return -1;
		}
		rest = hend + 1;
		h++;
	} else {
		hend = h + strcspn(h, ":");
		rest = hend;
	}
	if (hend == h) {
		cli_error("no host in '%s'", arg);
		return -1;
	}
	if (want_path) {
		if (*rest != ':') {
			cli_error("'%s' is not a remote destination "
			          "([USER@]HOST:DEST)",
			          arg);
			return -1;
		}
		*path = own(c, strdup(rest[1] ? rest + 1 : "."));
	} else if (*rest) {
		cli_error("unexpected '%s' after the host in '%s'", rest, arg);
		return -1;
	}
	c->host = own(c, strndup(h, (size_t)(hend - h)));
	if (at) {
		if (at == arg) {
			cli_error("empty user name in '%s'", arg);
			return -1;
		}
		c->user = own(c, strndup(arg, (size_t)(at - arg)));
	}
	if (!c->host || (at && !c->user) || (want_path && !*path)) {
		cli_error("out of memory");
		return -1;
	}
	/* -F FILE, else ~/.ssh/config when there is one: the library reads
	 * it (HostName, User, Port...) under what the command line set. */
	const char *home = getenv("HOME");
	char *deflt = NULL;
	if (!c->config_file && home &&
	    asprintf(&deflt, "%s/.ssh/config", home) >= 0) {
		if (access(deflt, F_OK) == 0)
			c->config_file = own(c, deflt);
		else
			free(deflt);
	}
	c->o.ssh_config = c->config_file;
	c->o.host = c->host;
	c->o.user = c->user;
	if (c->identity_count) {
		c->o.identity_files = c->identities;
		c->o.identity_count = c->identity_count;
	}
	return 0;
}

/* The session Ctrl-C interrupts: the library stops what it is doing (a
 * remote command is killed remotely) instead of the process dying. */
static ferry_session *volatile cli_current;
/* Ctrl-C came: the library drops an interrupt sent between its calls, so
 * the next call is not made. */
static volatile sig_atomic_t cli_sigint;

static void on_signal(int sig)
{
	(void)sig;
	cli_sigint = 1;
	if (cli_current)
		ferry_interrupt(cli_current);
}

int cli_interrupted(void)
{
	if (!cli_sigint && !(tl_cmd.stop && *tl_cmd.stop))
		return 0;
	cli_error("interrupted");
	return 1;
}

int cli_connect(cli_conn *c, ferry_session **out)
{
	*out = NULL;
	if (cli_holder_active())
		return cli_holder_connect(c, out);
	int secs = cli_persist_seconds(c), status;
	if (secs > 0 && cli_persist_run(c, secs, &status))
		return status;
	ferry_session *s = NULL;
	int rc = ferry_session_new(&s, &c->o);
	if (rc) {
		cli_error("%s", ferry_last_errmsg());
		return FERRY_EXIT_USAGE;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	cli_current = s;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	rc = ferry_session_connect(s);
	if (rc) {
		cli_error("%s", ferry_session_errmsg(s));
		cli_current = NULL;
		ferry_session_close(s);
		return rc == FERRY_EINTR ? FERRY_EXIT_INTERRUPTED
		                         : FERRY_EXIT_CONN;
	}
	*out = s;
	return 0;
}

void cli_disconnect(ferry_session *s)
{
	if (cli_holder_active())
		return; /* the holder keeps it */
	cli_current = NULL;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	ferry_session_close(s);
}
