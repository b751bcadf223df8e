/* shell.h - the session-shell contract as text: the scripts ferry sends
 * (bootstrap, probes, the per-command wrapper, kill, cleanup), the quoting
 * that keeps file names and commands inert, and the filter that takes the
 * wrapper's header and trailer out of the output.  Pure functions: no
 * SSH here, so tests run the scripts with a local bash.
 *
 * The wire format (MARK is per session and per command, e.g.
 * "__ferry_3f2a9c0d1e2b4a5f_17"):
 *
 *   stdout  <noise> MARK ":" PGID "\n" <user bytes> "\n" MARK ":" STATUS
 *           ":" DUMPED ":" CWD "\0" <late bytes of background children>
 *   stderr  <noise> MARK ":" PGID "\n" <user bytes>    (separate mode only)
 *
 * <noise> is whatever the login shell's startup files print before the
 * wrapper runs; it is dropped.  The "\n" before the trailer is the
 * wrapper's own, so the user's bytes come out exact.
 */
#ifndef FERRY_EXEC_SHELL_H
#define FERRY_EXEC_SHELL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* "NAME" of a "NAME=value" environment addition is a shell identifier. */
int ferry__sh_env_name_ok(const char *assignment);

/* How a script reaches bash from the account's login shell. */
enum {
	FERRY__SH_DIRECT = 0, /* the login shell is bash: it runs the text */
	FERRY__SH_BASH = 1,   /* exec bash --norc -c '<text>' */
	FERRY__SH_LOGIN = 2   /* exec bash -l -c '<text>' */
};

typedef struct ferry__sh_cmd {
	const char *mark;    /* this command's marker */
	const char *command; /* the user's command, eval'd */
	/* Instead of command: a remote file holding it, sourced (commands
	 * too long for one SSH packet are written there first). */
	const char *command_file;
	const char *cwd; /* NULL: the login directory */
	/* Snapshot files (absolute).  src NULL: no snapshot is sourced;
	 * dst NULL: the state is not dumped after the command. */
	const char *snap_src, *snap_dst;
	/* With the bootstrap (ferry__sh_bootstrap's first): the dump goes to
	 * this name in the directory the bootstrap just made. */
	const char *snap_dst_boot;
	const char *const *env; /* "NAME=value", for this command only */
	size_t env_count;
	int stderr_header; /* stderr is read apart: mark it too */
	int invoke;        /* FERRY__SH_* */
} ferry__sh_cmd;

/* The exec request for one command (NUL-terminated in out). */
int ferry__sh_wrapper(ferry_buf *out, const ferry__sh_cmd *c);
/* The bootstrap: reports the login shell ("MARK:sh:BASH_VERSION:
 * SHELLOPTS\n"), then a bash -l makes the private directory NAME under
 * $TMPDIR (or /tmp), writes the snapshot "0" in it (temp then mv) and
 * prints "MARK:boot:DIR\0CWD\0". */
int ferry__sh_bootstrap(ferry_buf *out, const char *mark, const char *name);
/* The same, then (only when the snapshot was written) the first command
 * in that login bash itself: one exec request for both, so the first
 * command of a session costs one round trip less.  first->mark must be
 * mark; first->invoke is ignored. */
int ferry__sh_bootstrap_with(ferry_buf *out, const char *mark, const char *name,
                             const ferry__sh_cmd *first);
/* Write stdin into path (umask 077): how a long command gets there. */
int ferry__sh_store(ferry_buf *out, const char *path);
/* A probe of bash -c (login: bash -l -c): "MARK:probe:CWD\0". */
int ferry__sh_probe(ferry_buf *out, const char *mark, int login);
/* TERM to process group pgid, up to ~0.5 s for it to go, then KILL. */
int ferry__sh_kill(ferry_buf *out, long pgid);
/* Remove the snapshot directory. */
int ferry__sh_cleanup(ferry_buf *out, const char *dir);

/* What the bootstrap printed. */
typedef struct ferry__sh_boot {
	int have_sh; /* the login shell line was seen */
	int bash;    /* the login shell is bash, not in POSIX mode */
	char *dir;   /* NULL when the snapshot was not written */
	char *cwd;
} ferry__sh_boot;
int ferry__sh_parse_boot(const void *p, size_t n, const char *mark,
                         ferry__sh_boot *out);
void ferry__sh_boot_free(ferry__sh_boot *b);
/* The cwd a probe printed, or NULL (*cwd) when it did not run. */
int ferry__sh_parse_probe(const void *p, size_t n, const char *mark,
                          char **cwd);

/* ---- output filter -------------------------------------------------------
 * Fed with one stream's bytes as they arrive; passes the user's bytes to
 * emit and keeps back only what could be the start of the trailer. */
typedef void (*ferry__sh_emit_fn)(void *ctx, const void *p, size_t n);

enum {
	FERRY__SHF_PRE = 0, /* before the header */
	FERRY__SHF_BODY,
	FERRY__SHF_TRAILER,
	FERRY__SHF_AFTER
};

typedef struct ferry__sh_filter {
	char pat[80]; /* "\n" MARK ":" */
	size_t pat_len;
	int state;
	int want_trailer;
	ferry_buf hold;  /* noise, a possible trailer prefix, or the trailer */
	ferry_buf noise; /* what came before the header (bounded) */
	/* Results */
	int have_header;
	long pgid;
	int have_trailer;
	int status;
	int dumped;
	char *cwd;
} ferry__sh_filter;

int ferry__sh_filter_init(ferry__sh_filter *f, const char *mark,
                          int want_trailer);
int ferry__sh_filter_feed(ferry__sh_filter *f, const void *p, size_t n,
                          ferry__sh_emit_fn emit, void *ctx);
/* Emit what is held back as a possible trailer start (the command is
 * being killed: it will not come). */
void ferry__sh_filter_flush(ferry__sh_filter *f, ferry__sh_emit_fn emit,
                            void *ctx);
/* End of stream: what was held back and is not a trailer is emitted. */
int ferry__sh_filter_finish(ferry__sh_filter *f, ferry__sh_emit_fn emit,
                            void *ctx);
void ferry__sh_filter_free(ferry__sh_filter *f);

#endif
