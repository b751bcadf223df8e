/* shell.h - the session-shell contract as text: the scripts ferry sends
 * (bootstrap, probes, the per-command wrapper, kill, cleanup), the quoting
 * that keeps file names and commands inert, and the filter that takes the
 * wrapper's header and trailer out of the output.  Pure functions: no
 * SSH here, so tests run the scripts with a local bash.
 *
 * MARK is a secret, fresh for every script ferry runs: 32 lowercase hex
 * digits of 128 random bits.  It is never part of a script's text (the
 * exec request is in every account's ps); it travels as the first line of
 * the channel's stdin, before the user's stdin data, and each script reads
 * it with bash's read builtin (which takes exactly one line from a pipe).
 * A script that gets no well-formed MARK exits FERRY__SH_NOMARK before
 * printing or running anything.
 *
 * Every script after the bootstrap reaches bash through the reader
 * (ferry__sh_reader), which a channel may run ahead of need: its exec
 * request is the same for the whole session and carries nothing of the
 * command; MARK comes with the script's byte count in a head of fixed
 * length (MARK, a space, ten decimal digits, a newline: 44 bytes, one
 * read(2) for bash's read -N, where a line takes 33), then that many
 * bytes of script, and the reader evals it.  A channel whose reader
 * already runs costs a command one round trip: OpenSSH opens a session
 * channel's window only once it has started the command, so stdin sent
 * with the request waits a round trip for that.
 *
 * The wire format:
 *
 *   stdin   MARK "\n" <user's stdin data> EOF                 (bootstrap,
 * probes) MARK " " LEN10 "\n" <LEN bytes of script> <user's stdin data> EOF
 * (through the reader) stdout  <noise> MARK ":" PGID "\n" <user bytes> "\n"
 * MARK ":" STATUS
 *           ":" DUMPED ":" CWD "\0" <late bytes of background children>
 *   stderr  <noise> MARK ":" PGID "\n" <user bytes>    (separate mode only)
 *
 * <noise> is whatever the login shell's startup files print before the
 * wrapper runs; it is dropped.  The "\n" before the trailer is the
 * wrapper's own, so the user's bytes come out exact.  The trailer that
 * counts is the last one carrying MARK: one followed by another is the
 * user's output, verbatim (only the command itself can know MARK).
 */
#ifndef FERRY_EXEC_SHELL_H
#define FERRY_EXEC_SHELL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Hex digits of a marker (128 bits), and the status of a script that did
 * not get one on stdin. */
#define FERRY__SH_MARK_LEN 32
#define FERRY__SH_NOMARK   125

/* "NAME" of a "NAME=value" environment addition is a shell identifier. */
int ferry__sh_env_name_ok(const char *assignment);

/* How a script reaches bash from the account's login shell. */
enum {
	FERRY__SH_DIRECT = 0, /* the login shell is bash: it runs the text */
	FERRY__SH_BASH = 1,   /* exec bash --norc -c '<text>' */
	FERRY__SH_LOGIN = 2   /* exec bash -l -c '<text>' */
};

typedef struct ferry__sh_cmd {
	/* The marker is in $__ferry_mk already (the bootstrap read it):
	 * the wrapper does not read stdin for it. */
	int have_mark;
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
	/* Run by the reader, which set the trap texts of a command without
	 * environment additions in variables: the script names them. */
	int reader_traps;
	int invoke; /* FERRY__SH_* */
} ferry__sh_cmd;

/* The exec request for one command (NUL-terminated in out); MARK on its
 * stdin. */
int ferry__sh_wrapper(ferry_buf *out, const ferry__sh_cmd *c);
/* The bootstrap: a bash -l (its profile with stdin on /dev/null, so that
 * it cannot take MARK or the user's stdin) reports the login shell
 * ("MARK:sh:BASH_VERSION:SHELLOPTS\n" of the login shell), makes the
 * private directory NAME under $TMPDIR (or /tmp), writes the snapshot "0"
 * in it (temp then mv) and prints "MARK:boot:DIR\0CWD\0". */
int ferry__sh_bootstrap(ferry_buf *out, const char *name);
/* The same, then (only when the snapshot was written) the first command
 * in that login bash itself: one exec request for both, so the first
 * command of a session costs one round trip less.  first->invoke and
 * first->have_mark are ignored. */
int ferry__sh_bootstrap_with(ferry_buf *out, const char *name,
                             const ferry__sh_cmd *first);
/* The reader: with preload (a snapshot's name, or NULL) that snapshot
 * sourced first and $__ferry_pre set to its name, so that a wrapper
 * whose snap_src it is skips its own source (reader_traps); then the head
 * (MARK, LEN10) and the script from stdin, then eval of
 * the script (a malformed or short one runs nothing: FERRY__SH_NOMARK); the
 * rest of stdin is the script's.  invoke as for a command. */
int ferry__sh_reader(ferry_buf *out, int invoke, const char *preload);
/* The bootstrap of a session that connected again: the directory keep
 * (the old session's) is taken back when it is still there and ours,
 * its snapshot slot becoming "0"; else as ferry__sh_bootstrap.  The
 * directory printed says which. */
int ferry__sh_bootstrap_keep(ferry_buf *out, const char *name, const char *keep,
                             int slot);
/* Write stdin into path (umask 077): how a long command gets there. */
int ferry__sh_store(ferry_buf *out, const char *path);
/* A probe of bash -c (login: bash -l -c): "MARK:sh:BASH_VERSION:
 * SHELLOPTS\n" of the login shell, as the bootstrap prints it, then
 * "MARK:probe:CWD\0". */
int ferry__sh_probe(ferry_buf *out, int login);
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
 * emit and keeps back only what could be the start of the trailer.  A
 * complete trailer carrying MARK is a candidate: the bytes after it are
 * held (up to a bound) until the stream ends, when it becomes the
 * trailer and they are late output; another candidate after it makes it
 * and them the user's output. */
typedef void (*ferry__sh_emit_fn)(void *ctx, const void *p, size_t n);

enum {
	FERRY__SHF_PRE = 0, /* before the header */
	FERRY__SHF_BODY,
	FERRY__SHF_CAND, /* a candidate trailer, then hold: bytes after it */
	FERRY__SHF_AFTER
};

typedef struct ferry__sh_filter {
	char pat[80]; /* "\036" MARK ":" */
	size_t pat_len;
	int state;
	int want_trailer;
	ferry_buf hold;  /* noise, a possible trailer, or bytes after one */
	ferry_buf noise; /* what came before the header (bounded) */
	ferry_buf cand;  /* the candidate's own bytes, "\036" MARK ... "\0" */
	int cand_status, cand_dumped;
	char *cand_cwd;
	/* Results */
	int have_header;
	long pgid;
	/* A candidate is the last trailer seen: the wrapper has ended
	 * (what follows is late output, unless another one comes). */
	int have_cand;
	unsigned cands;   /* candidates seen so far */
	int have_trailer; /* at the end: the candidate, accepted */
	int status;
	int dumped;
	char *cwd;
} ferry__sh_filter;

int ferry__sh_filter_init(ferry__sh_filter *f, const char *mark,
                          int want_trailer);
int ferry__sh_filter_feed(ferry__sh_filter *f, const void *p, size_t n,
                          ferry__sh_emit_fn emit, void *ctx);
/* Emit what is held back as a possible trailer start, or after a
 * candidate (the command is being killed: no trailer will be accepted;
 * a candidate's own bytes are ferry's and dropped). */
void ferry__sh_filter_flush(ferry__sh_filter *f, ferry__sh_emit_fn emit,
                            void *ctx);
/* End of stream: what was held back and is not a trailer is emitted. */
int ferry__sh_filter_finish(ferry__sh_filter *f, ferry__sh_emit_fn emit,
                            void *ctx);
void ferry__sh_filter_free(ferry__sh_filter *f);

#endif
