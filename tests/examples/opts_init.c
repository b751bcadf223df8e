/* opts_init.c - push a directory, then run `echo ok`, over one session,
 * with the option structs filled by the ferry_*_opts_init functions (no
 * macros), as a binding does.  The target as in the README example: host
 * and port here, the key and known_hosts from ~/.ssh.
 * usage: opts_init HOST PORT SRC/ DEST
 * build: cc -std=c99 opts_init.c $(pkg-config --cflags --libs ferry) */
#include <ferry.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, int rc, const char *msg)
{
	fprintf(stderr, "%s: %s: %s\n", what, ferry_error_name(rc), msg);
	return 1;
}

int main(int argc, char **argv)
{
	ferry_session_opts so;
	ferry_sync_opts o;
	ferry_exec_opts eo;
	ferry_session *s;
	ferry_sync_report r = {0};
	ferry_exec_result res = {0};
	const char *step = "push";
	int rc;
	if (argc != 5) {
		fprintf(stderr, "usage: %s HOST PORT SRC/ DEST\n", argv[0]);
		return 2;
	}
	if ((rc = ferry_session_opts_init(&so, FERRY_SESSION_OPTS_VERSION)) ||
	    (rc = ferry_sync_opts_init(&o, FERRY_SYNC_OPTS_VERSION)) ||
	    (rc = ferry_exec_opts_init(&eo, FERRY_EXEC_OPTS_VERSION)))
		return fail("opts_init", rc, ferry_last_errmsg());
	so.host = argv[1];
	so.port = (int)strtol(argv[2], NULL, 10);
	if ((rc = ferry_session_open(&s, &so)))
		return fail("open", rc, ferry_last_errmsg());
	o.sources = (const char *const *)&argv[3];
	o.source_count = 1;
	o.dest = argv[4];
	if (!(rc = ferry_sync(s, &o, &r))) {
		printf("push: ok, %llu uploaded\n",
		       (unsigned long long)r.files_uploaded);
		step = "exec";
		rc = ferry_exec(s, "echo ok", &eo, &res);
	}
	if (rc)
		fail(step, rc, ferry_session_errmsg(s));
	else
		printf("exec: exit %d: %.*s", res.exit_status,
		       (int)res.output_len, res.output);
	ferry_exec_result_free(&res);
	ferry_sync_report_free(&r);
	ferry_session_close(s);
	return rc ? 1 : 0;
}
