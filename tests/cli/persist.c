/* ferry --persist: a holder keeps the session; later calls run in it.
 * Each test has its own holder directory ($XDG_RUNTIME_DIR/ferry under a
 * temporary directory) and stops its holders at the end. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"

/* One test's world: a directory with run/ (holders), state/ and the
 * connection options of a server. */
typedef struct world {
	char *dir;
	char env[1200];  /* VAR=... prefix for every ferry run */
	char conn[1600]; /* -p -i --known-hosts */
	const fx_sshd *sv;
} world;

static void world_init(world *w, const fx_sshd *sv, const char *tag)
{
	memset(w, 0, sizeof(*w));
	w->dir = fx_tmpdir(tag);
	cr_assert(w->dir);
	w->sv = sv;
	snprintf(w->env, sizeof(w->env),
	         "XDG_RUNTIME_DIR=%s/run XDG_STATE_HOME=%s/state "
	         "FERRY_PERSIST=",
	         w->dir, w->dir);
	snprintf(w->conn, sizeof(w->conn), "-p %d -i %s --known-hosts %s",
	         sv->port, sv->key_ed25519, sv->known_hosts);
	cr_assert_eq(fx_sh("mkdir -p -m 700 %s/run", w->dir), 0);
}

static void world_end(world *w)
{
	fx_sh("%s %s master stop --all >/dev/null 2>&1", w->env,
	      fx_ferry_bin());
	fx_sh("rm -rf %s", w->dir);
	free(w->dir);
}

/* Run ferry in w (args shell-quoted, in w->dir); the exit status. */
static int run(world *w, char **out, char **err, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int run(world *w, char **out, char **err, const char *fmt, ...)
{
	char *args = NULL;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&args, fmt, ap) >= 0);
	va_end(ap);
	int rc = fx_sh_capture(out, err, "cd %s && %s %s %s", w->dir, w->env,
	                       fx_ferry_bin(), args);
	free(args);
	return rc;
}

/* The holders `ferry master status` lists. */
static int holders(world *w)
{
	char *out = NULL;
	cr_assert_eq(run(w, &out, NULL, "master status"), 0);
	int n = 0;
	for (char *p = out; (p = strchr(p, '\n')); p++)
		n++;
	free(out);
	return n ? n - 1 : 0; /* the header line */
}

/* The pid of the only holder (0: none). */
static int holder_pid(world *w)
{
	char *out = NULL;
	cr_assert_eq(run(w, &out, NULL, "master status"), 0);
	char *l = strchr(out, '\n');
	int pid = 0;
	if (l && l[1]) {
		char tgt[600];
		if (sscanf(l + 1, "%599s %d", tgt, &pid) != 2)
			pid = 0;
	}
	free(out);
	return pid;
}

/* Wait up to ms for cond (a shell test) to hold. */
static int wait_for(int ms, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static int wait_for(int ms, const char *fmt, ...)
{
	char *cmd = NULL;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&cmd, fmt, ap) >= 0);
	va_end(ap);
	int ok = 0;
	for (int t = 0; t < ms; t += 50) {
		if (fx_sh("%s", cmd) == 0) {
			ok = 1;
			break;
		}
		usleep(50000);
	}
	free(cmd);
	return ok;
}

/* The client address of the SSH connection a remote command ran on. */
static char *conn_of(world *w, const char *extra)
{
	char *out = NULL, *err = NULL;
	int rc = run(w, &out, &err,
	             "exec %s %s 127.0.0.1 -- 'echo $SSH_CONNECTION'", w->conn,
	             extra);
	cr_assert_eq(rc, 0, "%s", err);
	free(err);
	return out;
}

Test(persist, first_call_starts_a_holder_and_later_calls_reuse_it)
{
	world w;
	world_init(&w, fx_shared(), "pst1");
	cr_assert_eq(holders(&w), 0);
	char *first = conn_of(&w, "--persist=60");
	cr_assert_eq(holders(&w), 1);
	int pid = holder_pid(&w);
	/* 20 calls, one SSH connection: the same client port every time. */
	for (int i = 0; i < 20; i++) {
		char *again = conn_of(&w, "--persist=60");
		cr_assert_str_eq(again, first, "call %d: a new connection", i);
		free(again);
	}
	cr_assert_eq(holder_pid(&w), pid);
	char *out = NULL;
	cr_assert_eq(run(&w, &out, NULL, "master status"), 0);
	cr_assert(strstr(out, " 21 ") && strstr(out, "@127.0.0.1:"), "%s", out);
	free(out);
	/* Without --persist: a connection of its own. */
	char *direct = conn_of(&w, "");
	cr_assert_str_neq(direct, first);
	free(direct);
	/* A push through the holder: the second one costs no round trip. */
	cr_assert_eq(
	        fx_sh("mkdir -p %s/src && echo a > %s/src/a", w.dir, w.dir), 0);
	char *err = NULL;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(run(&w, &out, &err,
		                 "push --persist=60 --json %s src/ "
		                 "127.0.0.1:%s/dst",
		                 w.conn, w.dir),
		             0, "%s", err);
		if (i == 1)
			cr_assert_eq(
			        fx_json_text_holds(
			                w.dir, out,
			                " assert d[\"round_trips\"]==0, d;"
			                " assert d[\"files_uploaded\"]==0, d",
			                NULL),
			        0, "%s", out);
		free(out);
		free(err);
	}
	cr_assert_eq(fx_sh("cmp -s %s/src/a %s/dst/a", w.dir, w.dir), 0);
	cr_assert_eq(holder_pid(&w), pid);
	/* FERRY_PERSIST asks for it too. */
	cr_assert_eq(fx_sh_capture(&out, NULL,
	                           "%s FERRY_PERSIST=60 %s exec %s 127.0.0.1 "
	                           "-- 'echo $SSH_CONNECTION'",
	                           w.env, fx_ferry_bin(), w.conn),
	             0);
	cr_assert_str_eq(out, first);
	free(out);
	/* The holder's socket and its directory are the user's alone. */
	cr_assert_eq(fx_sh("test \"$(stat -c %%a %s/run/ferry)\" = 700 && "
	                   "test \"$(stat -c %%a %s/run/ferry/*.sock)\" = "
	                   "600 -o \"$(stat -c %%a %s/run/ferry/*.sock)\" = "
	                   "700",
	                   w.dir, w.dir, w.dir),
	             0);
	free(first);
	world_end(&w);
}

Test(persist, holder_exits_after_its_idle_seconds)
{
	world w;
	world_init(&w, fx_shared(), "pst2");
	char *c = conn_of(&w, "--persist=1");
	free(c);
	int pid = holder_pid(&w);
	cr_assert(pid > 0);
	cr_assert(wait_for(6000, "! kill -0 %d 2>/dev/null", pid),
	          "holder %d still runs after 6 s", pid);
	cr_assert_eq(fx_sh("ls %s/run/ferry/*.sock >/dev/null 2>&1", w.dir), 2,
	             "the socket is left");
	cr_assert_eq(holders(&w), 0);
	world_end(&w);
}

/* ssh_config's ControlMaster auto + ControlPersist is --persist for that
 * host; ControlMaster no changes nothing; --no-persist and
 * FERRY_PERSIST=no override the file. */
Test(persist, ssh_config_control_master_and_persist_are_persist)
{
	world w;
	world_init(&w, fx_shared(), "pstcfg");
	cr_assert_eq(fx_write_in(w.dir, "auto.cfg",
	                         "Host 127.0.0.1\n  ControlMaster auto\n"
	                         "  ControlPersist 30\n",
	                         0644),
	             0);
	cr_assert_eq(fx_write_in(w.dir, "no.cfg",
	                         "Host 127.0.0.1\n  ControlMaster no\n"
	                         "  ControlPersist 30\n",
	                         0644),
	             0);
	char *first = conn_of(&w, "-F auto.cfg");
	cr_assert_eq(holders(&w), 1, "no holder from the config");
	char *again = conn_of(&w, "-F auto.cfg");
	cr_assert_str_eq(again, first, "the second call did not reuse it");
	free(again);
	char *out = NULL;
	cr_assert_eq(run(&w, &out, NULL, "master status"), 0);
	char *l = strchr(out, '\n');
	char tgt[600], state[32];
	int pid = 0, served = 0, persist = 0;
	double idle = 0;
	cr_assert(l && sscanf(l + 1, "%599s %d %lf %d %d %31s", tgt, &pid,
	                      &idle, &served, &persist, state) == 6,
	          "%s", out);
	cr_assert_eq(persist, 30, "%s", out);
	cr_assert_eq(served, 2, "%s", out);
	free(out);
	/* Overrides: a connection of its own each. */
	char *direct = conn_of(&w, "-F auto.cfg --no-persist");
	cr_assert_str_neq(direct, first);
	free(direct);
	direct = conn_of(&w, "-F auto.cfg --persist=no");
	cr_assert_str_neq(direct, first);
	free(direct);
	cr_assert_eq(fx_sh_capture(&direct, NULL,
	                           "cd %s && %s FERRY_PERSIST=no %s exec %s -F "
	                           "auto.cfg 127.0.0.1 -- 'echo "
	                           "$SSH_CONNECTION'",
	                           w.dir, w.env, fx_ferry_bin(), w.conn),
	             0);
	cr_assert_str_neq(direct, first, "FERRY_PERSIST=no did not win");
	free(direct);
	cr_assert_eq(holders(&w), 1);
	cr_assert_eq(run(&w, NULL, NULL, "master stop --all"), 0);
	/* ControlMaster no: each call connects, no holder starts. */
	char *a = conn_of(&w, "-F no.cfg");
	char *b = conn_of(&w, "-F no.cfg");
	cr_assert_str_neq(a, b);
	cr_assert_eq(holders(&w), 0);
	free(a);
	free(b);
	free(first);
	world_end(&w);
}

Test(persist, master_stop_and_status)
{
	world w;
	world_init(&w, fx_shared(), "pst3");
	free(conn_of(&w, "--persist=60"));
	/* Another identity is another holder. */
	char *err = NULL;
	cr_assert_eq(run(&w, NULL, &err,
	                 "exec -p %d -i %s --known-hosts %s --persist=60 "
	                 "127.0.0.1 true",
	                 w.sv->port, w.sv->key_ecdsa, w.sv->known_hosts),
	             0, "%s", err);
	free(err);
	cr_assert_eq(holders(&w), 2);
	char *out = NULL;
	cr_assert_eq(run(&w, &out, &err, "master stop 127.0.0.1"), 0, "%s",
	             err);
	cr_assert(strstr(out, "stopped the holder of"), "%s", out);
	free(out);
	free(err);
	cr_assert_eq(holders(&w), 0);
	cr_assert_eq(run(&w, NULL, &err, "master stop 127.0.0.1"), 1);
	cr_assert(strstr(err, "no holder for 127.0.0.1"), "%s", err);
	free(err);
	free(conn_of(&w, "--persist=60"));
	int pid = holder_pid(&w);
	cr_assert_eq(run(&w, NULL, NULL, "master stop --all"), 0);
	cr_assert_neq(fx_sh("kill -0 %d 2>/dev/null", pid), 0);
	cr_assert_eq(run(&w, NULL, NULL, "master frob"), 2);
	cr_assert_eq(run(&w, NULL, NULL, "exec --persist=x 127.0.0.1 true"), 2);
	world_end(&w);
}

Test(persist, stale_socket_is_replaced)
{
	world w;
	world_init(&w, fx_shared(), "pst4");
	char *first = conn_of(&w, "--persist=60");
	int pid = holder_pid(&w);
	cr_assert_eq(fx_sh("kill -9 %d", pid), 0);
	cr_assert(wait_for(3000, "! kill -0 %d 2>/dev/null", pid));
	cr_assert_eq(fx_sh("ls %s/run/ferry/*.sock >/dev/null", w.dir), 0,
	             "kill -9 should leave the socket");
	char *out = NULL, *err = NULL;
	cr_assert_eq(run(&w, &out, &err,
	                 "exec -v --persist=60 %s 127.0.0.1 -- echo ok",
	                 w.conn),
	             0, "%s", err);
	cr_assert_str_eq(out, "ok\n");
	cr_assert(strstr(err, "started a holder"), "%s", err);
	free(out);
	free(err);
	int pid2 = holder_pid(&w);
	cr_assert(pid2 > 0 && pid2 != pid);
	cr_assert_eq(holders(&w), 1);
	char *again = conn_of(&w, "--persist=60");
	cr_assert_str_neq(again, first);
	free(again);
	free(first);
	world_end(&w);
}

Test(persist, racing_first_calls_end_with_one_holder)
{
	world w;
	world_init(&w, fx_shared(), "pst5");
	cr_assert_eq(fx_sh("cd %s && for i in 1 2 3 4 5 6 7 8; do %s %s exec "
	                   "--persist=60 %s 127.0.0.1 -- 'echo "
	                   "$SSH_CONNECTION' > out.$i 2>&1 & done; wait",
	                   w.dir, w.env, fx_ferry_bin(), w.conn),
	             0);
	cr_assert_eq(holders(&w), 1);
	cr_assert_eq(fx_sh("cd %s && test $(cat out.* | sort -u | wc -l) = 1 "
	                   "&& grep -q 127.0.0.1 out.1",
	                   w.dir),
	             0, "the racing calls did not share one connection");
	world_end(&w);
}

Test(persist, stdin_and_relative_paths_through_the_holder)
{
	world w;
	world_init(&w, fx_shared(), "pst6");
	free(conn_of(&w, "--persist=60"));
	char *out = NULL, *err = NULL;
	int rc = fx_sh_capture(&out, &err,
	                       "cd %s && printf 'a\\nb\\nc\\n' | %s %s exec "
	                       "--persist=60 %s --stdin - 127.0.0.1 -- wc -l",
	                       w.dir, w.env, fx_ferry_bin(), w.conn);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(out, "3\n");
	free(out);
	free(err);
	/* --stdin FILE is the client's, relative to its directory. */
	cr_assert_eq(fx_write_in(w.dir, "in.txt", "x\ny\n", 0600), 0);
	cr_assert_eq(run(&w, &out, &err,
	                 "exec --persist=60 %s --stdin in.txt 127.0.0.1 -- "
	                 "cat",
	                 w.conn),
	             0, "%s", err);
	cr_assert_str_eq(out, "x\ny\n");
	free(out);
	free(err);
	/* A missing one is bad usage, before any holder is asked. */
	cr_assert_eq(run(&w, NULL, &err,
	                 "exec --persist=60 %s --stdin nothing.txt "
	                 "127.0.0.1 -- cat",
	                 w.conn),
	             2);
	cr_assert(strstr(err, "nothing.txt"), "%s", err);
	free(err);
	/* stdout and stderr stay apart; a pipe sees its end. */
	cr_assert_eq(fx_sh("cd %s && %s %s exec --persist=60 %s 127.0.0.1 -- "
	                   "'echo out; echo err >&2' 2>e | cat > o && "
	                   "test \"$(cat o)\" = out && test \"$(cat e)\" = "
	                   "err",
	                   w.dir, w.env, fx_ferry_bin(), w.conn),
	             0);
	cr_assert_eq(holders(&w), 1);
	world_end(&w);
}

/* The same exit status (and output) with and without --persist. */
static void same_both_ways(world *w, int status, const char *args)
{
	char *o1 = NULL, *e1 = NULL, *o2 = NULL, *e2 = NULL;
	int r1 = run(w, &o1, &e1, "%s", args);
	char *with = NULL;
	/* --persist goes right after the subcommand. */
	const char *sp = strchr(args, ' ');
	cr_assert(asprintf(&with, "%.*s --persist=60%s", (int)(sp - args), args,
	                   sp) >= 0);
	int r2 = run(w, &o2, &e2, "%s", with);
	cr_assert_eq(r1, status, "'%s' exited %d: %s", args, r1, e1);
	cr_assert_eq(r2, status, "'%s' exited %d: %s", with, r2, e2);
	cr_assert_str_eq(e2, e1, "'%s': stderr differs", args);
	free(o1);
	free(e1);
	free(o2);
	free(e2);
	free(with);
}

Test(persist, exit_statuses_are_the_same_with_and_without)
{
	world w;
	world_init(&w, fx_shared(), "pst7");
	cr_assert_eq(
	        fx_sh("cd %s && mkdir -p src empty && echo a > src/a", w.dir),
	        0);
	char a[3000];
	snprintf(a, sizeof(a), "exec %s 127.0.0.1 true", w.conn);
	same_both_ways(&w, 0, a);
	snprintf(a, sizeof(a), "exec %s 127.0.0.1 'exit 7'", w.conn);
	same_both_ways(&w, 7, a);
	snprintf(a, sizeof(a), "pull %s --delete 127.0.0.1:%s/empty/ pd1",
	         w.conn, w.dir);
	same_both_ways(&w, 1, a);
	snprintf(a, sizeof(a), "pull %s 127.0.0.1:%s/src/a :%s/nothing pdst",
	         w.conn, w.dir, w.dir);
	same_both_ways(&w, 23, a);
	snprintf(a, sizeof(a), "exec %s --timeout 0.3 127.0.0.1 'sleep 5'",
	         w.conn);
	same_both_ways(&w, 124, a);
	snprintf(a, sizeof(a), "exec %s --cwd /nonexistent/x 127.0.0.1 true",
	         w.conn);
	same_both_ways(&w, 126, a);
	snprintf(a, sizeof(a), "exec %s 127.0.0.1 'exit 255'", w.conn);
	same_both_ways(&w, 255, a);
	/* A connection that fails: the holder's start reports it. */
	snprintf(a, sizeof(a), "ping -p 1 --connect-timeout 2 -i %s 127.0.0.1",
	         w.sv->key_ed25519);
	same_both_ways(&w, 255, a);
	snprintf(a, sizeof(a), "push %s src 127.0.0.1", w.conn);
	same_both_ways(&w, 2, a);
	world_end(&w);
}

Test(persist, concurrent_execs_and_ctrl_c_of_one_leaves_the_other)
{
	world w;
	world_init(&w, fx_shared(), "pst8");
	free(conn_of(&w, "--persist=60"));
	/* A: runs a while, then says so. */
	cr_assert_eq(fx_sh("cd %s && { { %s %s exec --persist=60 %s 127.0.0.1 "
	                   "-- 'sleep 6; echo A-done' > a.out 2>&1; echo $? "
	                   "> a.rc; } & echo $! > a.pid; }",
	                   w.dir, w.env, fx_ferry_bin(), w.conn),
	             0);
	cr_assert(wait_for(5000, "pgrep -f '^sleep 6$' >/dev/null"));
	/* B, while A runs: it does not wait for A. */
	char *out = NULL;
	cr_assert_eq(run(&w, &out, NULL,
	                 "exec --persist=60 %s 127.0.0.1 -- echo B-ran",
	                 w.conn),
	             0);
	cr_assert_str_eq(out, "B-ran\n");
	free(out);
	cr_assert_neq(fx_sh("test -s %s/a.rc", w.dir), 0,
	              "B waited for A to end");
	/* C, while A runs, interrupted: 130, its remote sleep gone, A
	 * untouched. */
	cr_assert_eq(fx_sh("cd %s && { %s %s exec --persist=60 %s 127.0.0.1 "
	                   "-- 'sleep 3128; echo C-done' > c.out 2>&1 & echo "
	                   "$! > c.pid; wait $!; echo $? > c.rc; } &",
	                   w.dir, w.env, fx_ferry_bin(), w.conn),
	             0);
	cr_assert(wait_for(5000, "pgrep -f '^sleep 3128$' >/dev/null"));
	cr_assert_eq(fx_sh("kill -INT $(cat %s/c.pid)", w.dir), 0);
	cr_assert(wait_for(5000, "test -s %s/c.rc", w.dir));
	cr_assert_eq(fx_sh("test $(cat %s/c.rc) = 130 && ! grep -q C-done "
	                   "%s/c.out",
	                   w.dir, w.dir),
	             0, "C: %s",
	             fx_sh_out("cat %s/c.rc %s/c.out", w.dir, w.dir));
	cr_assert(wait_for(3000, "! pgrep -f '^sleep 3128$' >/dev/null"),
	          "C's remote sleep survived");
	cr_assert(wait_for(10000, "test -s %s/a.rc", w.dir));
	cr_assert_eq(fx_sh("test $(cat %s/a.rc) = 0 && grep -q A-done "
	                   "%s/a.out",
	                   w.dir, w.dir),
	             0, "A: %s",
	             fx_sh_out("cat %s/a.rc %s/a.out", w.dir, w.dir));
	world_end(&w);
}

Test(persist, ctrl_c_kills_the_remote_command_and_only_that_one)
{
	world w;
	world_init(&w, fx_shared(), "pst8b");
	free(conn_of(&w, "--persist=60"));
	/* Ctrl-C of the running command: 130, the remote sleep is gone. */
	cr_assert_eq(fx_sh("cd %s && { %s %s exec --persist=60 %s 127.0.0.1 "
	                   "-- 'sleep 3127; echo C-done' > c.out 2>&1 & echo "
	                   "$! > c.pid; wait $!; echo $? > c.rc; } &",
	                   w.dir, w.env, fx_ferry_bin(), w.conn),
	             0);
	/* The remote sleep itself: "sleep 3127" is in the local client's
	 * command line too, and an INT sent before the client has caught
	 * INT is lost (a background job starts with INT ignored). */
	cr_assert(wait_for(5000, "pgrep -f '^sleep 3127$' >/dev/null"));
	cr_assert_eq(fx_sh("kill -INT $(cat %s/c.pid)", w.dir), 0);
	cr_assert(wait_for(5000, "test -s %s/c.rc", w.dir));
	cr_assert_eq(fx_sh("test $(cat %s/c.rc) = 130", w.dir), 0);
	cr_assert(wait_for(3000, "! pgrep -f '^sleep 3127$' >/dev/null"),
	          "the remote sleep survived");
	/* The holder goes on serving. */
	char *out = NULL;
	cr_assert_eq(run(&w, &out, NULL,
	                 "exec --persist=60 %s 127.0.0.1 -- "
	                 "echo still",
	                 w.conn),
	             0);
	cr_assert_str_eq(out, "still\n");
	free(out);
	cr_assert_eq(holders(&w), 1);
	world_end(&w);
}

Test(persist, holder_killed_mid_push_then_the_next_push_converges)
{
	world w;
	world_init(&w, fx_shared(), "pst9");
	cr_assert_eq(fx_sh("cd %s && mkdir -p src && head -c 200000000 "
	                   "/dev/urandom > src/big && for i in $(seq 50); do "
	                   "echo $i > src/f$i; done",
	                   w.dir),
	             0);
	free(conn_of(&w, "--persist=60"));
	int pid = holder_pid(&w);
	cr_assert_eq(fx_sh("cd %s && { %s %s push --persist=60 %s src/ "
	                   "127.0.0.1:%s/dst > p.out 2> p.err; echo $? > "
	                   "p.rc; } &",
	                   w.dir, w.env, fx_ferry_bin(), w.conn, w.dir),
	             0);
	/* Kill it while the big file's temporary is being written. */
	cr_assert(wait_for(20000,
	                   "ls -a %s/dst 2>/dev/null | grep -q "
	                   "'ferry-'",
	                   w.dir),
	          "no temporary appeared");
	cr_assert_eq(fx_sh("kill -9 %d", pid), 0);
	cr_assert(wait_for(5000, "test -s %s/p.rc", w.dir));
	char *rc = fx_sh_out("cat %s/p.rc %s/p.err", w.dir, w.dir);
	cr_assert(strncmp(rc, "255\n", 4) == 0 && strstr(rc, "holder"), "%s",
	          rc);
	free(rc);
	/* The remote holds old or whole new files, never a part under the
	 * final name. */
	cr_assert_neq(fx_sh("test -f %s/dst/big && ! cmp -s %s/src/big "
	                    "%s/dst/big",
	                    w.dir, w.dir, w.dir),
	              0, "a partial big file under its final name");
	char *out = NULL, *err = NULL;
	cr_assert_eq(run(&w, &out, &err,
	                 "push --persist=60 %s src/ "
	                 "127.0.0.1:%s/dst",
	                 w.conn, w.dir),
	             0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(fx_sh("diff -r -x .ferry-id %s/src %s/dst >/dev/null && "
	                   "! ls -a "
	                   "%s/dst | grep -v '^.ferry-id$' | grep -q ferry-",
	                   w.dir, w.dir, w.dir),
	             0, "not converged: %s",
	             fx_sh_out("ls -a %s/dst | head", w.dir));
	cr_assert(holder_pid(&w) != pid);
	world_end(&w);
}

Test(persist, connection_cut_then_the_next_call_succeeds)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, NULL), 0);
	world w;
	world_init(&w, &sv, "pst10");
	char *first = conn_of(&w, "--persist=60");
	int pid = holder_pid(&w);
	/* Kill the server's side of the holder's connection only. */
	cr_assert_eq(fx_sh("pkill -KILL -P $(cat %s/sshd.pid)", sv.dir), 0);
	/* The holder notices, and ends. */
	cr_assert(wait_for(5000, "! kill -0 %d 2>/dev/null", pid),
	          "the holder outlived its connection");
	char *out = NULL, *err = NULL;
	cr_assert_eq(run(&w, &out, &err,
	                 "exec -v --persist=60 %s 127.0.0.1 -- 'echo "
	                 "$SSH_CONNECTION'",
	                 w.conn),
	             0, "%s", err);
	cr_assert_str_neq(out, first);
	free(out);
	free(err);
	/* Cut again, and call at once, whether or not the holder has seen
	 * the close yet: a holder that has not refuses (it looks at its
	 * socket before it runs a command), and the call succeeds through
	 * a new connection either way. */
	for (int i = 0; i < 2; i++) {
		pid = holder_pid(&w);
		cr_assert_gt(pid, 0, "round %d: no holder", i);
		cr_assert_eq(fx_sh("pkill -KILL -P $(cat %s/sshd.pid)", sv.dir),
		             0);
		cr_assert_eq(run(&w, &out, &err,
		                 "exec -v --persist=60 %s 127.0.0.1 "
		                 "-- echo again",
		                 w.conn),
		             0, "round %d: %s", i, err);
		cr_assert_str_eq(out, "again\n");
		free(out);
		free(err);
		cr_assert(wait_for(5000, "! kill -0 %d 2>/dev/null", pid),
		          "the holder outlived its connection");
		free(conn_of(&w, "--persist=60")); /* a new holder */
	}
	free(first);
	world_end(&w);
	fx_sshd_stop(&sv);
}

Test(persist, other_users_and_open_directories_are_refused)
{
	world w;
	world_init(&w, fx_shared(), "pst11");
	/* A directory others may enter is not used: a warning, then the
	 * command runs directly. */
	cr_assert_eq(fx_sh("mkdir -p -m 755 %s/open/ferry", w.dir), 0);
	char *out = NULL, *err = NULL;
	cr_assert_eq(fx_sh_capture(&out, &err,
	                           "XDG_RUNTIME_DIR=%s/open %s exec "
	                           "--persist=60 %s 127.0.0.1 -- echo direct",
	                           w.dir, fx_ferry_bin(), w.conn),
	             0);
	cr_assert_str_eq(out, "direct\n");
	cr_assert(strstr(err, "not a private directory"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(fx_sh("ls %s/open/ferry | grep -q sock", w.dir), 1);
	if (getuid() != 0 ||
	    fx_sh("id ferry-persist-t >/dev/null 2>&1 || useradd -M -r -s "
	          "/bin/sh ferry-persist-t >/dev/null 2>&1") != 0) {
		cr_log_warn("cannot make a second account: the SO_PEERCRED "
		            "check is not tested");
		world_end(&w);
		return;
	}
	free(conn_of(&w, "--persist=60"));
	/* Open the way to the socket (o+x on the directories above it, a
	 * world-writable socket): the holder itself must refuse. */
	const char *top = getenv("FERRY_TEST_TMP");
	char *topmode =
	        top ? fx_sh_out("stat -c %%a %s | tr -d '\\n'", top) : NULL;
	if (top)
		fx_sh("chmod o+x %s", top);
	cr_assert_eq(fx_sh("chmod 711 %s %s/run %s/run/ferry && chmod 777 "
	                   "%s/run/ferry/*.sock",
	                   w.dir, w.dir, w.dir, w.dir),
	             0);
	char *sock = fx_sh_out("ls %s/run/ferry/*.sock | tr -d '\\n'", w.dir);
	cr_assert(sock && *sock);
	char *got =
	        fx_sh_out("su -s /bin/sh ferry-persist-t -c \"python3 -c '\n"
	                  "import socket,glob,sys\n"
	                  "s=socket.socket(socket.AF_UNIX)\n"
	                  "s.settimeout(5)\n"
	                  "s.connect(\\\"%s\\\")\n"
	                  "d=b\\\"\\\"\n"
	                  "while True:\n"
	                  "  b=s.recv(100)\n"
	                  "  if not b: break\n"
	                  "  d+=b\n"
	                  "print(repr(d))\n"
	                  "'\" 2>&1",
	                  sock);
	free(sock);
	fx_sh("chmod 700 %s/run %s/run/ferry", w.dir, w.dir);
	if (top && topmode)
		fx_sh("chmod %s %s", topmode, top);
	free(topmode);
	cr_assert(got && strstr(got, "another user") && !strstr(got, "\\t"),
	          "the other account got: %s", got ? got : "(nothing)");
	free(got);
	cr_assert_eq(holders(&w), 1);
	world_end(&w);
}
