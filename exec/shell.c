/* shell.c - the scripts of the session-shell contract and the filter that
 * removes the wrapper's header and trailer from the output (shell.h).
 *
 * Every script is bash 3.2 compatible (no $BASHPID, no mapfile, no
 * printf -v) and forks nothing on the per-command path: the snapshot is
 * sourced and re-dumped with builtins, and the dump goes to a file ferry
 * names, which becomes the next command's snapshot only when the trailer
 * says it was written completely.  First words are "builtin" (or a
 * backslash-quoted builtin) so that functions and aliases from the
 * account's startup files cannot redirect the wrapper itself. */
#include "shell.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "ferry.h"

#define NOISE_MAX   ((size_t)64 << 10)
#define TRAILER_MAX ((size_t)16 << 10)
/* Bytes held after a candidate trailer (late output) before it stands. */
#define LATE_MAX ((size_t)256 << 10)

/* The state the snapshot keeps: exported variables, functions (exported
 * ones marked again by export -pf), aliases, and the options every
 * command starts with. */
#define DUMP_BODY                                                              \
	"builtin export -p; builtin declare -f; builtin export -pf; "          \
	"builtin alias -p; builtin echo 'shopt -s expand_aliases'; "           \
	"builtin echo 'set +e'; builtin echo 'set +u'"

static int is_ident(const char *s, size_t n)
{
	if (!n || !((s[0] >= 'A' && s[0] <= 'Z') ||
	            (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

int ferry__sh_env_name_ok(const char *a)
{
	const char *eq = a ? strchr(a, '=') : NULL;
	/* Our own names are reserved: the wrapper relies on them. */
	return eq && is_ident(a, (size_t)(eq - a)) &&
	       strncmp(a, "__ferry_", 8) != 0;
}

/* The marker, the first line of stdin (shell.h), into $__ferry_mk; a
 * script without a well-formed one stops before it prints or runs
 * anything (FERRY__SH_NOMARK).  bash's read takes one byte at a time from
 * a pipe: the user's stdin data after the line stays for the command. */
#define READ_MARK                                                              \
	"IFS= \\builtin read -r __ferry_mk; case ${#__ferry_mk}:$__ferry_mk "  \
	"in 32:*[!0-9a-f]*) \\builtin exit 125;; 32:*) ;; *) \\builtin exit "  \
	"125;; esac; "

/* The reader's head (shell.h): the marker, a space, the length of the
 * script in ten digits and a newline, 44 bytes read in one read(2) (bash's
 * read -N takes what it asks for from a pipe at once, where read -n or a
 * line takes one byte at a time), then the script itself the same way,
 * both in bytes (LC_ALL=C for the reads and their checks, then the
 * account's locale back), then eval'd: the wrapper reads one line before
 * it runs, as under bash -c, so aliases from its snapshot apply to the
 * command and not to it.  A malformed head or a short script runs
 * nothing (FERRY__SH_NOMARK); the user's stdin data after the script
 * stays for the command. */
#define READ_HEAD_TEXT                                                         \
	"__ferry_lc=${LC_ALL+1}:${LC_ALL-}; LC_ALL=C; IFS= \\builtin read "    \
	"-r -N 44 __ferry_w; __ferry_mk=${__ferry_w:0:32}; "                   \
	"__ferry_n=${__ferry_w:33:10}; case "                                  \
	"${#__ferry_w}${__ferry_w:32:1}${__ferry_w:43} in \"44 \"$'\\n') ;; "  \
	"*) \\builtin exit 125;; esac; case $__ferry_mk in *[!0-9a-f]*) "      \
	"\\builtin exit 125;; esac; case $__ferry_n in *[!0-9]*) "             \
	"\\builtin exit 125;; esac; __ferry_n=$((10#$__ferry_n)); IFS= "       \
	"\\builtin read -r -N \"$__ferry_n\" __ferry_w; case ${#__ferry_w} "   \
	"in \"$__ferry_n\") ;; *) \\builtin exit 125;; esac; case "            \
	"$__ferry_lc in 1:*) LC_ALL=${__ferry_lc#1:};; *) \\builtin unset "    \
	"LC_ALL;; esac; \\builtin unset __ferry_lc __ferry_n; \\builtin "      \
	"eval \"\\\\builtin unset __ferry_w; $__ferry_w\""

/* bash -l runs the account's profile before our text: its stdin is
 * /dev/null (the channel's waits on fd 3), so that a profile that reads
 * stdin takes neither the marker nor the user's data; our text puts the
 * channel back first.  "command exec" (not "builtin exec") keeps the
 * redirections. */
#define LOGIN_STDIN_BACK "\\command exec 0<&3 3<&-; "
#define LOGIN_STDIN_AWAY " 3<&0 0</dev/null"

/* Wrap text (a C string) for the login shell according to invoke; out is
 * NUL-terminated. */
static int invoke_text(ferry_buf *out, const ferry_buf *text, int invoke)
{
	if (text->error)
		return text->error;
	if (invoke == FERRY__SH_DIRECT) {
		ferry__buf_put(out, text->data, text->len);
	} else if (invoke == FERRY__SH_LOGIN) {
		ferry_buf t;
		ferry__buf_init(&t);
		ferry__buf_fmt(&t, LOGIN_STDIN_BACK "%s",
		               (const char *)text->data);
		int error = ferry__buf_terminate(&t);
		if (!error)
			ferry__buf_fmt(out,
			               "exec bash -l -c %q" LOGIN_STDIN_AWAY,
			               (const char *)t.data);
		ferry__buf_free(&t);
		if (error)
			return error;
	} else {
		ferry__buf_fmt(out, "exec bash --norc -c %q",
		               (const char *)text->data);
	}
	return ferry__buf_terminate(out);
}

/* The trap that ends every command: restore the environment additions,
 * dump the state, report status and physical cwd, exit with the status. */
static void build_trap(ferry_buf *t, const ferry__sh_cmd *c)
{
	int dump = c->snap_dst || c->snap_dst_boot;
	ferry__buf_fmt(t, "__ferry_st=$?; ");
	for (size_t i = 0; dump && i < c->env_count; i++) {
		const char *a = c->env[i], *v = strchr(a, '=') + 1;
		int k = (int)(v - 1 - a);
		ferry__buf_fmt(
		        t,
		        "if [ \"${%.*s-}\" = %q ]; then case $__ferry_e%zu "
		        "in 1:*) %.*s=${__ferry_e%zu#1:};; *) builtin "
		        "unset %.*s;; esac; fi; ",
		        k, a, v, i, k, a, i, k, a);
	}
	if (dump)
		ferry__buf_fmt(t,
		               "__ferry_ok=0; builtin umask 077; { " DUMP_BODY
		               "; } >\"$__ferry_dst\" 2>/dev/null && "
		               "__ferry_ok=1; ");
	else
		ferry__buf_fmt(t, "__ferry_ok=0; ");
	ferry__buf_fmt(t, "builtin cd -P . >/dev/null 2>&1; builtin printf "
	                  "'\\036%%s:%%s:%%s:%%s\\0' \"$__ferry_mk\" "
	                  "\"$__ferry_st\" \"$__ferry_ok\" \"$PWD\"; "
	                  "builtin exit \"$__ferry_st\"");
	ferry__buf_terminate(t);
}

/* Environment additions: each remembered (when the state is dumped, so
 * that the trap can take it back out of the snapshot), then exported. */
static void put_env(ferry_buf *t, const ferry__sh_cmd *c)
{
	for (size_t i = 0; i < c->env_count; i++) {
		const char *a = c->env[i], *v = strchr(a, '=') + 1;
		int k = (int)(v - 1 - a);
		if (c->snap_dst || c->snap_dst_boot)
			ferry__buf_fmt(t, "__ferry_e%zu=${%.*s+1}:${%.*s-}; ",
			               i, k, a, k, a);
		ferry__buf_fmt(t, "builtin export %.*s=%q; ", k, a, v);
	}
}

int ferry__sh_wrapper(ferry_buf *out, const ferry__sh_cmd *c)
{
	for (size_t i = 0; i < c->env_count; i++)
		if (!ferry__sh_env_name_ok(c->env[i]))
			return FERRY_EINVALID;
	ferry_buf t, trap;
	ferry__buf_init(&t);
	ferry__buf_init(&trap);
	/* One line: bash parses it whole before the snapshot is sourced, so
	 * aliases from the snapshot apply to the command, not to us. */
	if (!c->have_mark)
		ferry__buf_fmt(&t, READ_MARK);
	ferry__buf_fmt(&t,
	               "builtin printf '%%s:%%s\\n' \"$__ferry_mk\" \"$$\"; ");
	if (c->stderr_header)
		ferry__buf_fmt(&t,
		               "builtin printf '%%s:%%s\\n' \"$__ferry_mk\" "
		               "\"$$\" >&2; ");
	/* A reader that loaded this snapshot ahead of need (its preload,
	 * ferry__sh_reader) set $__ferry_pre to its name: only aliases are
	 * left to switch on. */
	if (c->snap_src && c->reader_traps)
		ferry__buf_fmt(
		        &t,
		        "case ${__ferry_pre-} in %q) builtin shopt -s "
		        "expand_aliases;; *) builtin source %q >/dev/null "
		        "2>&1;; esac; builtin unset __ferry_pre; ",
		        c->snap_src, c->snap_src);
	else if (c->snap_src)
		ferry__buf_fmt(&t, "builtin source %q >/dev/null 2>&1; ",
		               c->snap_src);
	if (c->snap_dst)
		ferry__buf_fmt(&t, "__ferry_dst=%q; ", c->snap_dst);
	else if (c->snap_dst_boot)
		ferry__buf_fmt(&t, "__ferry_dst=\"$__ferry_d\"/%q; ",
		               c->snap_dst_boot);
	put_env(&t, c);
	/* cd sets OLDPWD; keep the user's so that "cd -" works across
	 * commands. */
	/* "~" and "~/x" are the login directory, as a shell reads them (the
	 * session's own cwd is always absolute). */
	int home = c->cwd && c->cwd[0] == '~' &&
	           (c->cwd[1] == '\0' || c->cwd[1] == '/');
	if (c->cwd)
		ferry__buf_fmt(&t,
		               "__ferry_op=${OLDPWD-}; builtin cd -- %s%q || "
		               "builtin exit 126; OLDPWD=$__ferry_op; ",
		               home ? "\"$HOME\"" : "", c->cwd + home);
	int error = 0;
	if (c->reader_traps && !c->env_count) {
		/* bash reads the script a byte at a time: the reader's copy
		 * of the trap saves most of it. */
		ferry__buf_fmt(&t, "builtin trap -- \"$__ferry_tr%zu\" EXIT; ",
		               (size_t)(c->snap_dst || c->snap_dst_boot));
	} else {
		build_trap(&trap, c);
		error = trap.error;
		if (!error)
			ferry__buf_fmt(&t, "builtin trap %q EXIT; ",
			               (const char *)trap.data);
	}
	if (!error)
		ferry__buf_fmt(&t, "builtin %s %q",
		               c->command_file ? "source" : "eval",
		               c->command_file ? c->command_file : c->command);
	error = error ? error : ferry__buf_terminate(&t);
	error = error ? error : invoke_text(out, &t, c->invoke);
	ferry__buf_free(&t);
	ferry__buf_free(&trap);
	return error;
}

/* The bootstrap's bash -l script, before the first command. */
static void boot_script(ferry_buf *t, const char *name, const char *keep,
                        int slot)
{
	/* The marker, then what the login shell was (its BASH_VERSION and
	 * SHELLOPTS come in $__ferry_sh, not secret). */
	ferry__buf_fmt(t, LOGIN_STDIN_BACK READ_MARK
	               "\\builtin printf '%%s:sh:%%s\\n' \"$__ferry_mk\" "
	               "\"${__ferry_sh-}\"; \\builtin unset __ferry_sh; ");
	/* The directory: a tmpfs when there is one (writing the snapshot
	 * after every command costs a third of a millisecond on ext4, a
	 * tenth on tmpfs), else $TMPDIR.  mkdir fails on an existing name,
	 * so nothing planted there is ever used. */
	/* A session that connected again takes its old directory back when
	 * it is still there and ours (its snapshot slot is the state the
	 * last command left): its pid file names the new sshd first, so
	 * the clean-up below leaves it. */
	ferry__buf_fmt(t, "__ferry_a=; ");
	if (keep)
		ferry__buf_fmt(
		        t,
		        "\\builtin umask 077; __ferry_k=%q; "
		        "[ -d \"$__ferry_k\" ] && [ ! -L \"$__ferry_k\" ] "
		        "&& [ -O \"$__ferry_k\" ] && [ -f "
		        "\"$__ferry_k/%ld\" ] && [ ! -L \"$__ferry_k/%ld\" ] "
		        "&& [ -O \"$__ferry_k/%ld\" ] && \\builtin "
		        "printf '%%s %%s\\n' \"$PPID\" \"${HOSTNAME-}\" "
		        ">\"$__ferry_k/pid\" 2>/dev/null && { [ %ld = 0 ] "
		        "|| \\command mv -f -- \"$__ferry_k/%ld\" "
		        "\"$__ferry_k/0\"; } && __ferry_a=1; ",
		        keep, (long)slot, (long)slot, (long)slot, (long)slot,
		        (long)slot);
	ferry__buf_fmt(t,
	               "case ${__ferry_a-} in 1) __ferry_d=$__ferry_k;; *) ");
	ferry__buf_fmt(
	        t,
	        "\\builtin umask 077; __ferry_d=; for __ferry_b "
	        "in \"${XDG_RUNTIME_DIR-}\" /dev/shm "
	        "\"${TMPDIR:-/tmp}\" /tmp; do case $__ferry_b in "
	        "/*) ;; *) continue;; esac; [ -d \"$__ferry_b\" ] "
	        "&& [ -w \"$__ferry_b\" ] || continue; "
	        /* Directories of sessions that ended without cleaning up
	         * (connection lost, process killed): their sshd, on this
	         * host, is gone... */
	        "for __ferry_o in \"${__ferry_b%%/}\"/ferry-*; do "
	        "[ -O \"$__ferry_o\" ] && [ -f \"$__ferry_o/pid\" ] "
	        "|| continue; __ferry_p=; __ferry_h=; \\builtin read "
	        "-r __ferry_p __ferry_h <\"$__ferry_o/pid\"; "
	        "[ \"$__ferry_h\" = \"${HOSTNAME-}\" ] || continue; "
	        "case $__ferry_p in ''|*[!0-9]*) continue;; esac; "
	        "if [ -d /proc/self ]; "
	        "then [ -d \"/proc/$__ferry_p\" ] && continue; else "
	        "\\builtin kill -0 \"$__ferry_p\" 2>/dev/null && "
	        "continue; fi; "
	        /* ...and nothing in it changed for 10 minutes: a session
	         * whose connection was lost may still connect again and
	         * take it back (ferry_session_reconnect). */
	        "[ -n \"$(\\command find \"$__ferry_o\" -mmin -10 -print "
	        "2>/dev/null)\" ] && continue; "
	        "\\command rm -rf -- \"$__ferry_o\"; "
	        "done; __ferry_d=${__ferry_b%%/}/%q; \\command mkdir -m 700 "
	        "-- \"$__ferry_d\" 2>/dev/null && break; __ferry_d=; done; "
	        "[ -n \"$__ferry_d\" ] || \\builtin exit 97; "
	        /* whose it is: the sshd serving this session */
	        "\\builtin printf '%%s %%s\\n' \"$PPID\" "
	        "\"${HOSTNAME-}\" >\"$__ferry_d/pid\" 2>/dev/null; "
	        "{ " DUMP_BODY "; } >\"$__ferry_d/boot.tmp\" 2>/dev/null || "
	        "\\builtin exit 98; \\command mv -f -- "
	        "\"$__ferry_d/boot.tmp\" \"$__ferry_d/0\" || "
	        "\\builtin exit 98;; esac; \\builtin cd -P . >/dev/null "
	        "2>&1; \\builtin printf '%%s:boot:%%s\\0%%s\\0' "
	        "\"$__ferry_mk\" \"$__ferry_d\" \"$PWD\"",
	        name);
}

/* The bootstrap's text t for the login bash: the login shell itself says
 * whether it is bash (then commands need no second bash); the login bash
 * prints it after the marker. */
static int login_bash(ferry_buf *out, ferry_buf *t)
{
	int error = ferry__buf_terminate(t);
	if (!error)
		ferry__buf_fmt(out,
		               "__ferry_sh=\"${BASH_VERSION-}:${SHELLOPTS-}\" "
		               "exec bash -l -c %q" LOGIN_STDIN_AWAY,
		               (const char *)t->data);
	return error ? error : ferry__buf_terminate(out);
}

int ferry__sh_bootstrap_with(ferry_buf *out, const char *name,
                             const ferry__sh_cmd *first)
{
	ferry_buf t;
	ferry__buf_init(&t);
	boot_script(&t, name, NULL, 0);
	int error = t.error;
	if (!error && first) {
		/* The command runs in this login bash: the snapshot source
		 * would add nothing; its state is dumped into "1". */
		ferry_buf w;
		ferry__sh_cmd c = *first;
		ferry__buf_init(&w);
		c.invoke = FERRY__SH_DIRECT;
		c.have_mark = 1;
		c.snap_src = NULL;
		c.snap_dst = NULL;
		error = ferry__sh_wrapper(&w, &c);
		if (!error)
			ferry__buf_fmt(&t, "; %s", (const char *)w.data);
		ferry__buf_free(&w);
	}
	error = error ? error : login_bash(out, &t);
	ferry__buf_free(&t);
	return error;
}

int ferry__sh_bootstrap(ferry_buf *out, const char *name)
{
	return ferry__sh_bootstrap_with(out, name, NULL);
}

int ferry__sh_bootstrap_keep(ferry_buf *out, const char *name, const char *keep,
                             int slot)
{
	ferry_buf t;
	ferry__buf_init(&t);
	boot_script(&t, name, keep, slot);
	int error = login_bash(out, &t);
	ferry__buf_free(&t);
	return error;
}

int ferry__sh_reader(ferry_buf *out, int invoke, const char *preload)
{
	ferry_buf t, trap;
	ferry__buf_init(&t);
	/* The snapshot the next command will source, loaded while the reader
	 * waits (its stdin is the head's, so not for the snapshot); aliases
	 * stay off until the wrapper's line has been parsed. */
	if (preload)
		ferry__buf_fmt(
		        &t,
		        "builtin source %q </dev/null >/dev/null 2>&1; "
		        "builtin shopt -u expand_aliases; __ferry_pre=%q; ",
		        preload, preload);
	/* The traps of a command without environment additions, with the
	 * state dumped (1) or not (0): see reader_traps. */
	for (size_t dump = 0; dump < 2; dump++) {
		ferry__sh_cmd c;
		memset(&c, 0, sizeof(c));
		c.snap_dst = dump ? "" : NULL;
		ferry__buf_init(&trap);
		build_trap(&trap, &c);
		if (!trap.error)
			ferry__buf_fmt(&t, "__ferry_tr%zu=%q; ", dump,
			               (const char *)trap.data);
		else
			ferry__buf_fail(&t, trap.error);
		ferry__buf_free(&trap);
	}
	ferry__buf_fmt(&t, READ_HEAD_TEXT);
	int error = ferry__buf_terminate(&t);
	error = error ? error : invoke_text(out, &t, invoke);
	ferry__buf_free(&t);
	return error;
}

int ferry__sh_store(ferry_buf *out, const char *path)
{
	ferry__buf_fmt(out, "umask 077 && exec cat > %q", path);
	return ferry__buf_terminate(out);
}

int ferry__sh_probe(ferry_buf *out, int login)
{
	ferry_buf t;
	ferry__buf_init(&t);
	/* What the login shell is, as the bootstrap says it: commands of the
	 * plain fallback need no second bash when it is bash. */
	ferry__buf_fmt(&t, READ_MARK
	               "builtin printf '%%s:sh:%%s\\n' \"$__ferry_mk\" "
	               "\"${__ferry_sh-}\"; builtin cd -P . >/dev/null 2>&1; "
	               "builtin printf '%%s:probe:%%s\\0' \"$__ferry_mk\" "
	               "\"$PWD\"");
	ferry__buf_terminate(&t);
	ferry__buf_fmt(out, "__ferry_sh=\"${BASH_VERSION-}:${SHELLOPTS-}\" ");
	int error =
	        invoke_text(out, &t, login ? FERRY__SH_LOGIN : FERRY__SH_BASH);
	ferry__buf_free(&t);
	return error;
}

int ferry__sh_kill(ferry_buf *out, long pgid)
{
	if (pgid <= 1)
		return FERRY_EINVALID;
	/* POSIX sh (dash has no "kill --"); the group, else (a server that
	 * does not make the command's shell a group leader: Dropbear) the
	 * process and every descendant, found with pgrep -P. */
	/* Exit 0 only when nothing is left: the group (or every process
	 * found) is checked after TERM, and after KILL at the end; a zombie
	 * (state Z in /proc: a parent that does not reap, such as a
	 * container's init) counts as gone. */
	ferry__buf_fmt(out,
	               "l=-%ld; kill -TERM -%ld 2>/dev/null || { l=%ld; n=%ld; "
	               "while [ -n \"$n\" ]; do m=; for p in $n; do "
	               "m=\"$m $(pgrep -P $p 2>/dev/null)\"; done; "
	               "n=$(echo $m); l=\"$l $n\"; done; "
	               "kill -TERM $l 2>/dev/null; }; "
	               "alive() { for p in $l; do case $p in -*) s=$(pgrep -g "
	               "${p#-} 2>/dev/null) || { kill -0 $p 2>/dev/null && "
	               "return 0; continue; };; *) s=$p;; esac; for q in $s; "
	               "do if [ -r /proc/$q/stat ]; then case $(sed 's/.*) //' "
	               "/proc/$q/stat 2>/dev/null) in Z*|'');; *) return 0;; "
	               "esac; elif kill -0 $q 2>/dev/null; then return 0; fi; "
	               "done; done; return 1; }; i=0; "
	               "while alive; do if [ $i -ge 25 ]; then kill -KILL $l "
	               "2>/dev/null; sleep 0.1; alive && exit 1; exit 0; fi; "
	               "sleep 0.02; i=$((i+1)); done; exit 0",
	               pgid, pgid, pgid, pgid);
	return ferry__buf_terminate(out);
}

int ferry__sh_cleanup(ferry_buf *out, const char *dir)
{
	/* The system's rm, whatever functions or PATH the shell has. */
	ferry__buf_fmt(out, "\\command -p rm -rf -- %q", dir);
	return ferry__buf_terminate(out);
}

/* ---- parsing ------------------------------------------------------------ */

static const char *find(const char *p, size_t n, const char *pat, size_t m)
{
	if (!m)
		return p;
	if (!p || n < m)
		return NULL;
	return memmem(p, n, pat, m);
}

/* "MARK:<tag>:" anywhere in p; returns the byte after it. */
static const char *find_tag(const char *p, size_t n, const char *mark,
                            const char *tag)
{
	char pat[128];
	int k = snprintf(pat, sizeof(pat), "%s:%s:", mark, tag);
	if (k < 0 || (size_t)k >= sizeof(pat))
		return NULL;
	const char *at = find(p, n, pat, (size_t)k);
	return at ? at + k : NULL;
}

int ferry__sh_parse_boot(const void *data, size_t n, const char *mark,
                         ferry__sh_boot *out)
{
	const char *p = data, *end = p + n;
	memset(out, 0, sizeof(*out));
	const char *sh = find_tag(p, n, mark, "sh");
	if (sh) {
		const char *nl = memchr(sh, '\n', (size_t)(end - sh));
		const char *colon = memchr(sh, ':', (size_t)(end - sh));
		if (nl && colon && colon < nl) {
			out->have_sh = 1;
			/* bash, and not bash as sh (POSIX mode) */
			out->bash =
			        colon > sh &&
			        !find(colon, (size_t)(nl - colon), "posix", 5);
		}
	}
	const char *b = find_tag(p, n, mark, "boot");
	if (!b)
		return 0;
	const char *z1 = memchr(b, 0, (size_t)(end - b));
	if (!z1 || z1 == b || *b != '/')
		return 0;
	const char *z2 = memchr(z1 + 1, 0, (size_t)(end - z1 - 1));
	if (!z2 || z2 == z1 + 1)
		return 0;
	out->dir = ferry__strndup(b, (size_t)(z1 - b));
	out->cwd = ferry__strndup(z1 + 1, (size_t)(z2 - z1 - 1));
	if (!out->dir || !out->cwd) {
		ferry__sh_boot_free(out);
		return FERRY_ENOMEM;
	}
	return 0;
}

void ferry__sh_boot_free(ferry__sh_boot *b)
{
	ferry__free(b->dir);
	ferry__free(b->cwd);
	b->dir = b->cwd = NULL;
}

int ferry__sh_parse_probe(const void *data, size_t n, const char *mark,
                          char **cwd)
{
	const char *p = data, *end = p + n;
	*cwd = NULL;
	const char *b = find_tag(p, n, mark, "probe");
	if (!b)
		return 0;
	const char *z = memchr(b, 0, (size_t)(end - b));
	if (!z || z == b)
		return 0;
	*cwd = ferry__strndup(b, (size_t)(z - b));
	return *cwd ? 0 : FERRY_ENOMEM;
}

/* ---- the filter --------------------------------------------------------- */

int ferry__sh_filter_init(ferry__sh_filter *f, const char *mark,
                          int want_trailer)
{
	memset(f, 0, sizeof(*f));
	int n = snprintf(f->pat, sizeof(f->pat), "\036%s:", mark);
	if (n < 3 || (size_t)n >= sizeof(f->pat))
		return FERRY_EINVALID;
	f->pat_len = (size_t)n;
	f->want_trailer = want_trailer;
	f->pgid = -1;
	f->status = -1;
	f->hold.max = (size_t)-1;
	f->cand.max = (size_t)-1;
	return 0;
}

void ferry__sh_filter_free(ferry__sh_filter *f)
{
	ferry__buf_free(&f->hold);
	ferry__buf_free(&f->noise);
	ferry__buf_free(&f->cand);
	ferry__free(f->cand_cwd);
	ferry__free(f->cwd);
	f->cand_cwd = NULL;
	f->cwd = NULL;
}

static void emit_some(ferry__sh_emit_fn emit, void *ctx, const void *p,
                      size_t n)
{
	if (n)
		emit(ctx, p, n);
}

/* Header "MARK:PGID\n" in hold (the noise before it is dropped, a copy
 * kept in noise).  1 found (hold then holds what followed), 0 not yet, -1
 * out of memory. */
static int take_header(ferry__sh_filter *f, ferry__sh_emit_fn emit, void *ctx)
{
	const char *mark = f->pat + 1;
	size_t mlen = f->pat_len - 1; /* "MARK:" */
	const char *h = (const char *)f->hold.data;
	size_t n = f->hold.len;
	const char *at = n ? find(h, n, mark, mlen) : NULL;
	while (at) {
		const char *q = at + mlen, *end = h + n;
		long v = 0;
		int digits = 0;
		while (q < end && *q >= '0' && *q <= '9' && digits < 12) {
			v = v * 10 + (*q - '0');
			q++;
			digits++;
		}
		if (q == end)
			return 0; /* the line is not complete yet */
		if (*q == '\n' && digits) {
			size_t keep = (size_t)(at - h);
			if (keep > NOISE_MAX - f->noise.len)
				keep = NOISE_MAX - f->noise.len;
			if (ferry__buf_put(&f->noise, h, keep))
				return -1;
			f->pgid = v;
			f->have_header = 1;
			f->hold.off = (size_t)(q + 1 - h);
			ferry__buf_compact(&f->hold);
			f->state = f->want_trailer ? FERRY__SHF_BODY
			                           : FERRY__SHF_AFTER;
			return 1;
		}
		size_t skip = (size_t)(at + 1 - h);
		at = find(at + 1, n - skip, mark, mlen);
	}
	if (n > NOISE_MAX) {
		/* Pathological noise: let the oldest part through, keep
		 * enough to still find the header. */
		size_t keep = f->pat_len + 16;
		emit_some(emit, ctx, h, n - keep);
		f->hold.off = n - keep;
		ferry__buf_compact(&f->hold);
	}
	return 0;
}

/* "STATUS:DUMPED:CWD\0" at p (after "\n" MARK ":"): 1 complete (*used:
 * its bytes with the NUL), 0 not complete yet, -1 not a trailer.  STATUS
 * 0-255, DUMPED 0 or 1, CWD absolute. */
static int parse_trailer(const char *p, size_t n, int *st, int *dumped,
                         size_t *used)
{
	size_t i = 0;
	int v = 0;
	while (i < n && i < 3 && p[i] >= '0' && p[i] <= '9')
		v = v * 10 + (p[i++] - '0');
	if (i == n)
		return 0;
	if (!i || v > 255 || p[i] != ':')
		return -1;
	if (++i == n)
		return 0;
	if (p[i] != '0' && p[i] != '1')
		return -1;
	int d = p[i] == '1';
	if (++i == n)
		return 0;
	if (p[i] != ':')
		return -1;
	if (++i == n)
		return 0;
	if (p[i] != '/')
		return -1;
	const char *z = memchr(p + i, 0, n - i);
	if (!z)
		return n - i > TRAILER_MAX ? -1 : 0;
	*st = v;
	*dumped = d;
	*used = (size_t)(z + 1 - p);
	return 1;
}

/* Longest suffix of p[0..n) that is a proper prefix of pat. */
static size_t prefix_tail(const char *p, size_t n, const char *pat, size_t m)
{
	size_t k = m - 1 < n ? m - 1 : n;
	for (; k; k--)
		if (!memcmp(p + n - k, pat, k))
			return k;
	return 0;
}

/* The first complete trailer in p[0..n): 1 (*at where its pattern
 * starts, *end after its NUL, values out), or 0 with *keep the bytes at
 * the end that may yet become one (all of p from *keep on). */
static int next_trailer(const ferry__sh_filter *f, const char *p, size_t n,
                        size_t *at, size_t *end, int *st, int *dumped,
                        size_t *keep)
{
	size_t off = 0;
	for (;;) {
		const char *q = find(p + off, n - off, f->pat, f->pat_len);
		if (!q) {
			*keep = n - prefix_tail(p + off, n - off, f->pat,
			                        f->pat_len);
			return 0;
		}
		size_t a = (size_t)(q - p), used = 0;
		size_t b = a + f->pat_len;
		int r = parse_trailer(p + b, n - b, st, dumped, &used);
		if (r == 1) {
			*at = a;
			*end = b + used;
			return 1;
		}
		if (r == 0) {
			*keep = a;
			return 0;
		}
		off = b; /* not a trailer: the pattern is the user's */
	}
}

/* p[at..end) is a trailer: the candidate now. */
static int set_cand(ferry__sh_filter *f, const char *p, size_t at, size_t end,
                    int st, int dumped)
{
	/* STATUS ":" DUMPED ":" CWD "\0", as parse_trailer checked */
	const char *c = memchr(p + at + f->pat_len, ':', end - at - f->pat_len);
	char *cwd = ferry__strndup(c + 3, (size_t)(p + end - 1 - (c + 3)));
	if (!cwd)
		return FERRY_ENOMEM;
	ferry__buf_reset(&f->cand);
	if (ferry__buf_put(&f->cand, p + at, end - at)) {
		ferry__free(cwd);
		return FERRY_ENOMEM;
	}
	ferry__free(f->cand_cwd);
	f->cand_cwd = cwd;
	f->cand_status = st;
	f->cand_dumped = dumped;
	f->have_cand = 1;
	f->cands++;
	return 0;
}

/* The candidate is the trailer. */
static void accept_cand(ferry__sh_filter *f)
{
	f->have_trailer = 1;
	f->status = f->cand_status;
	f->dumped = f->cand_dumped;
	ferry__free(f->cwd);
	f->cwd = f->cand_cwd;
	f->cand_cwd = NULL;
	f->have_cand = 0;
	ferry__buf_reset(&f->cand);
}

static int run(ferry__sh_filter *f, ferry__sh_emit_fn emit, void *ctx)
{
	for (;;) {
		const char *h = (const char *)f->hold.data;
		size_t n = f->hold.len, at = 0, end = 0, keep = 0;
		int st = 0, dumped = 0;
		switch (f->state) {
		case FERRY__SHF_PRE: {
			int r = take_header(f, emit, ctx);
			if (r < 0)
				return FERRY_ENOMEM;
			if (!r)
				return 0;
			continue;
		}
		case FERRY__SHF_BODY:
			if (!next_trailer(f, h, n, &at, &end, &st, &dumped,
			                  &keep)) {
				emit_some(emit, ctx, h, keep);
				f->hold.off = keep;
				ferry__buf_compact(&f->hold);
				return 0;
			}
			emit_some(emit, ctx, h, at);
			if (set_cand(f, h, at, end, st, dumped))
				return FERRY_ENOMEM;
			f->hold.off = end;
			ferry__buf_compact(&f->hold);
			f->state = FERRY__SHF_CAND;
			continue;
		case FERRY__SHF_CAND:
			if (next_trailer(f, h, n, &at, &end, &st, &dumped,
			                 &keep)) {
				/* Another one: the first was not the last
				 * thing the wrapper wrote, so it and what
				 * followed it are output. */
				emit_some(emit, ctx, f->cand.data, f->cand.len);
				emit_some(emit, ctx, h, at);
				if (set_cand(f, h, at, end, st, dumped))
					return FERRY_ENOMEM;
				f->hold.off = end;
				ferry__buf_compact(&f->hold);
				continue;
			}
			if (n > LATE_MAX) {
				/* A background child writing on: the
				 * candidate stands, the rest passes. */
				accept_cand(f);
				emit_some(emit, ctx, h, n);
				ferry__buf_reset(&f->hold);
				f->state = FERRY__SHF_AFTER;
			}
			return 0;
		default:
			emit_some(emit, ctx, h, n);
			ferry__buf_reset(&f->hold);
			return 0;
		}
	}
}

int ferry__sh_filter_feed(ferry__sh_filter *f, const void *p, size_t n,
                          ferry__sh_emit_fn emit, void *ctx)
{
	if (!n)
		return 0;
	if (f->state == FERRY__SHF_AFTER) {
		emit(ctx, p, n);
		return 0;
	}
	int error = ferry__buf_put(&f->hold, p, n);
	if (error)
		return error;
	return run(f, emit, ctx);
}

void ferry__sh_filter_flush(ferry__sh_filter *f, ferry__sh_emit_fn emit,
                            void *ctx)
{
	if (f->state != FERRY__SHF_BODY && f->state != FERRY__SHF_CAND)
		return;
	emit_some(emit, ctx, f->hold.data, f->hold.len);
	ferry__buf_reset(&f->hold);
	ferry__buf_reset(&f->cand);
	f->have_cand = 0;
	f->state = FERRY__SHF_BODY;
}

int ferry__sh_filter_finish(ferry__sh_filter *f, ferry__sh_emit_fn emit,
                            void *ctx)
{
	if (f->state == FERRY__SHF_CAND)
		accept_cand(f);
	emit_some(emit, ctx, f->hold.data, f->hold.len);
	ferry__buf_reset(&f->hold);
	f->state = FERRY__SHF_AFTER;
	return 0;
}
