/*
 * ferry.h - the one public header of libferry.
 *
 * ferry keeps a remote copy of local files current over SSH (SFTP only on the
 * remote) and runs shell commands over the same session.  Conventions:
 * opaque handles, versioned option structs initialised with FERRY_*_OPTS_INIT,
 * int return codes (0 or a negative FERRY_E*), error text on the handle.
 * The library never prints and never exits.
 */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_VERSION_MAJOR  0
#define FERRY_VERSION_MINOR  1
#define FERRY_VERSION_PATCH  0
#define FERRY_VERSION_STRING "0.1.0"

#if defined(FERRY_BUILDING) && defined(__GNUC__)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

/* ---- errors ------------------------------------------------------------ */

/* The one table of error codes: X(name, value, text). */
#define FERRY_ERROR_TABLE(X)                                                   \
	X(FERRY_OK, 0, "success")                                              \
	X(FERRY_ERROR, -1, "error")                                            \
	X(FERRY_EINVALID, -2, "invalid argument")                              \
	X(FERRY_ENOMEM, -3, "out of memory")                                   \
	X(FERRY_ECONN, -4, "connection failed")                                \
	X(FERRY_ETIMEOUT, -5, "timed out")                                     \
	X(FERRY_EHOSTKEY, -6, "host key verification failed")                  \
	X(FERRY_EAUTH, -7, "authentication failed")                            \
	X(FERRY_EREMOTE, -8, "remote error")                                   \
	X(FERRY_EINTR, -9, "interrupted")                                      \
	X(FERRY_ENOTFOUND, -10, "no such file or directory")                   \
	X(FERRY_EIO, -11, "input/output error")                                \
	X(FERRY_EEXIST, -12, "already exists")                                 \
	X(FERRY_EPERM, -13, "permission denied")                               \
	X(FERRY_EPROTO, -14, "protocol error")                                 \
	X(FERRY_EUNSUPPORTED, -15, "not supported")                            \
	X(FERRY_EPARTIAL, -16, "some files could not be transferred")          \
	X(FERRY_ENOSPACE, -17, "no space left on the remote")                  \
	X(FERRY_EEOF, -18, "connection closed by the remote")                  \
	X(FERRY_ELOCKED, -19, "target is locked by another process")           \
	X(FERRY_ELIMIT, -20, "the remote sent more than ferry's limits allow")

enum ferry_error {
#define FERRY_X_(name, value, text) name = value,
	FERRY_ERROR_TABLE(FERRY_X_)
#undef FERRY_X_
	        FERRY_ERROR_LAST_ = -21
};

/* Static text for a FERRY_E* code; never NULL. */
FERRY_API const char *ferry_strerror(int code);

/* The code's name as a string, e.g. "FERRY_EAUTH"; "FERRY_EUNKNOWN" for a
 * code not in the table.  Never NULL. */
FERRY_API const char *ferry_error_name(int code);

/* A buffer this size holds every message ferry writes (errmsg arguments). */
#define FERRY_ERRMSG_SIZE 1024

/* The message of the last failure, in the calling thread, of a call that has
 * no object to keep it in: ferry_session_open, _open_ex and _new,
 * ferry_sync_status and the ferry_*_opts_init functions.  "" when the last
 * such call succeeded.  Valid until the thread's next such call. */
FERRY_API const char *ferry_last_errmsg(void);

/* Exit statuses, named in one place.  ferry_exec_result.exit_status is the
 * command's own, or one of TIMEOUT, CD_FAILED, INTERRUPTED when ferry ended
 * it; the ferry program exits with these. */
enum ferry_exit_status {
	FERRY_EXIT_OK = 0,
	FERRY_EXIT_ERROR = 1,         /* a local error */
	FERRY_EXIT_USAGE = 2,         /* bad command line or options */
	FERRY_EXIT_PARTIAL = 23,      /* some files failed (rsync's code) */
	FERRY_EXIT_TIMEOUT = 124,     /* exec timeout_ms expired (timeout(1)) */
	FERRY_EXIT_CD_FAILED = 126,   /* exec: the cwd could not be entered */
	FERRY_EXIT_INTERRUPTED = 130, /* ferry_interrupt, Ctrl-C: 128+SIGINT */
	FERRY_EXIT_CONN = 255         /* connect, host key or auth (as ssh) */
};

/* Library version as a string, e.g. "0.1.0". */
FERRY_API const char *ferry_version(void);

/* ---- struct sizes, for bindings --------------------------------------- */

/* The structs of this header, for ferry_struct_size. */
enum ferry_struct {
	FERRY_STRUCT_SESSION_OPTS = 1, /* versioned */
	FERRY_STRUCT_SYNC_OPTS = 2,    /* versioned */
	FERRY_STRUCT_EXEC_OPTS = 3,    /* versioned */
	FERRY_STRUCT_SESSION_INFO = 4, /* versioned; 0: the current version */
	FERRY_STRUCT_CHANGE = 5,
	FERRY_STRUCT_PROGRESS = 6,
	FERRY_STRUCT_FILE_ERROR = 7,
	FERRY_STRUCT_SYNC_REPORT = 8,
	FERRY_STRUCT_EXEC_RESULT = 9,
	FERRY_STRUCT_MAPPING = 10
};

/* sizeof the struct `which` as this library was built, so that a binding
 * that declares the layouts itself (ctypes) can refuse to run against a
 * library whose structs differ.  For an option struct, the size of its
 * given version (1 to its FERRY_*_OPTS_VERSION); ferry_session_info's
 * likewise (1 to FERRY_SESSION_INFO_VERSION, 0 for the current one); for
 * the others version must be 0.  0 for an unknown struct or version. */
FERRY_API size_t ferry_struct_size(int which, unsigned int version);

/* ---- session ----------------------------------------------------------- */

typedef struct ferry_session ferry_session;

typedef enum ferry_hostkey_policy {
	FERRY_HOSTKEY_ACCEPT_NEW =
	        0, /* default: unknown host appended, changed refused */
	FERRY_HOSTKEY_STRICT = 1, /* unknown or changed host refused */
	FERRY_HOSTKEY_OFF = 2     /* no check at all: tests only */
} ferry_hostkey_policy;

enum { FERRY_LOG_DEBUG = 0, FERRY_LOG_INFO = 1, FERRY_LOG_WARN = 2 };

typedef void (*ferry_log_fn)(void *ctx, int level, const char *msg);

/* Version 2 added ssh_config, version 3 io_timeout_ms, version 4
 * reconnect; a struct of an older version (without them) is accepted
 * everywhere a ferry_session_opts is. */
#define FERRY_SESSION_OPTS_VERSION 4

/* Every field left zero takes its documented default. */
typedef struct ferry_session_opts {
	unsigned int version; /* FERRY_SESSION_OPTS_VERSION */
	const char *host;     /* name, IPv4 or IPv6 literal (no brackets) */
	int port;             /* 0: 22 */
	const char *user;     /* NULL: the local user name */
	const char *const
	        *identity_files; /* NULL: ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa */
	size_t identity_count;
	const char *passphrase;  /* NULL: $FERRY_PASSPHRASE, else none */
	const char *known_hosts; /* NULL: ~/.ssh/known_hosts */
	ferry_hostkey_policy host_key_policy;
	int connect_timeout_ms; /* 0: 15000; covers connect, handshake and auth
	                         */
	int keepalive_s;        /* 0: 15; < 0: off */
	int idle_timeout_ms;    /* 0: 4 keepalive intervals; < 0: off */
	int compress;           /* zlib transport compression */
	int no_agent;           /* do not try ssh-agent */
	ferry_log_fn log;       /* warnings and debug text; NULL: silent */
	void *log_ctx;
	/* Version 2.  An ssh_config file, read as `ssh -F FILE` does for the
	 * alias `host` (NULL: none): HostName, User, Port, IdentityFile (after
	 * identity_files), UserKnownHostsFile, StrictHostKeyChecking (when
	 * host_key_policy is left at accept-new), ConnectTimeout.  A field set
	 * here wins over the file. */
	const char *ssh_config;
	/* Version 3.  The I/O deadline of the SFTP channel: when a request
	 * (or INIT) is outstanding and no byte moved on the channel for this
	 * long, the call fails with FERRY_ETIMEOUT naming the request and
	 * its path, and the channel is closed (keepalives do not count: a
	 * server that answers them but not SFTP is caught).  0: 30000;
	 * < 0: none. */
	int io_timeout_ms;
	/* Version 4.  1: a call on a session whose connection was lost
	 * connects again first (ferry_session_reconnect), when no other call
	 * runs on it; the strings given must then stay valid as long as the
	 * session. */
	int reconnect;
} ferry_session_opts;

#define FERRY_SESSION_OPTS_INIT                                                \
	{                                                                      \
		FERRY_SESSION_OPTS_VERSION, NULL, 0, NULL, NULL, 0, NULL,      \
		        NULL, FERRY_HOSTKEY_ACCEPT_NEW, 0, 0, 0, 0, 0, NULL,   \
		        NULL, NULL, 0, 0                                       \
	}

/* Fill *opts with the defaults of the given struct version (pass
 * FERRY_SESSION_OPTS_VERSION, or an older version the caller's struct has):
 * the same as FERRY_SESSION_OPTS_INIT, for callers that cannot use a macro.
 * Only that version's fields are written.  FERRY_EINVALID for an unknown
 * version (see ferry_last_errmsg). */
FERRY_API int ferry_session_opts_init(ferry_session_opts *opts,
                                      unsigned int version);

/* Version 2 added home.  ferry_session_info_get (a macro since version 2)
 * fills the version of this header; a program built before it calls the
 * function of that name, which fills version 1 only. */
#define FERRY_SESSION_INFO_VERSION 2

/* What ferry ping prints, and the login directory.  Strings live as long
 * as the session. */
typedef struct ferry_session_info {
	const char *kex, *hostkey_type, *cipher_cs, *cipher_sc, *mac_cs,
	        *mac_sc, *comp_cs, *comp_sc;
	const char *hostkey_fingerprint; /* "SHA256:..." as OpenSSH prints it */
	const char *auth_method;         /* "agent" or "publickey <file>" */
	const char *target;              /* user@host:port */
	double ms_resolve_connect, ms_handshake, ms_hostkey, ms_auth;
	/* Version 2.  The remote login directory (where sshd starts the
	 * login shell and sftp-server: what a relative exec cwd, "~", and a
	 * relative sync destination are relative to), absolute, once it is
	 * known: the session's first command learns it (the login shell's
	 * `cd -P .`), and so does the SFTP channel's start (a REALPATH "."
	 * sent behind INIT), neither with a round trip of its own.  NULL
	 * before either ran; ferry_session_home learns it then. */
	const char *home;
} ferry_session_info;

/* Connect, verify the host key, authenticate.  On failure *out is NULL and,
 * when errmsg is not NULL, a message naming the failing step is copied to it.
 */
FERRY_API int ferry_session_open(ferry_session **out,
                                 const ferry_session_opts *opts);
/* The same in two steps, so that ferry_interrupt() can stop a connect in
 * progress: new validates and allocates, connect does the network part.
 * After a failed connect only ferry_session_errmsg and _close are valid.
 * The strings opts points to must stay valid until connect returns. */
FERRY_API int ferry_session_new(ferry_session **out,
                                const ferry_session_opts *opts);
FERRY_API int ferry_session_connect(ferry_session *s);
FERRY_API int ferry_session_open_ex(ferry_session **out,
                                    const ferry_session_opts *opts,
                                    char *errmsg, size_t errmsg_size);
FERRY_API void ferry_session_close(ferry_session *s);
FERRY_API const char *ferry_session_errmsg(const ferry_session *s);
/* Fill the fields of *out up to the given version (1 to
 * FERRY_SESSION_INFO_VERSION); FERRY_EINVALID for another version.  No
 * I/O. */
FERRY_API int ferry_session_info_get_v(ferry_session_info *out,
                                       unsigned int version,
                                       const ferry_session *s);
/* Version 1's fields only: for programs built before version 2. */
FERRY_API int ferry_session_info_get(ferry_session_info *out,
                                     const ferry_session *s);
#define ferry_session_info_get(out, s)                                         \
	ferry_session_info_get_v((out), FERRY_SESSION_INFO_VERSION, (s))
/* The remote login directory (ferry_session_info.home) in *out, valid as
 * long as the session: no I/O once a command or the SFTP channel learnt
 * it, else the SFTP channel is started (if it was not) and asked (REALPATH
 * "."; one round trip, riding with INIT's when the channel starts here).
 * A blocking call: ferry_interrupt stops it. */
FERRY_API int ferry_session_home(ferry_session *s, const char **out);
/* 0 when the connection shows no sign of having ended: a look at the
 * socket (closed by the peer, reset, an error), no round trip; else
 * FERRY_ECONN (also for a session already known dead).  A connection cut
 * silently shows nothing until a call times out. */
FERRY_API int ferry_session_alive(const ferry_session *s);
/* After the connection was lost (a call failed with FERRY_ECONN,
 * FERRY_EEOF, or FERRY_ETIMEOUT for a dead peer): connect again with the
 * options the session was made with (their strings must still be valid),
 * keeping what the session knew.  The session shell's state (exported
 * variables, functions, aliases, the working directory) comes back on the
 * next command when its snapshot survived on the remote (ferry keeps it
 * in a private directory there; a reboot or a cleaned tmpfs loses it, and
 * then commands start from the login environment, with a warning in the
 * log); destinations the session had verified stay trusted, so a push
 * whose manifest vouches for its tree stays cheap.  Not while another call
 * runs on the session.  0; an error as ferry_session_connect's; 0 with
 * nothing done when the connection is alive. */
FERRY_API int ferry_session_reconnect(ferry_session *s);
/* What the ssh_config file says for the alias host about keeping a
 * connection for later calls (ssh's connection sharing), read as
 * ferry_session_opts.ssh_config is (Host patterns, Match all, first value
 * wins): *master 1 when ControlMaster is yes, auto, ask or autoask (ferry
 * never asks), else 0 (no, or not given); *persist_s ControlPersist in
 * seconds (ssh's time formats: 90, 10m, 1h30m), -1 for yes or 0 (no time
 * limit), 0 for no or when not given.  ControlPath is not read.  No I/O
 * but the file.  0, or FERRY_EINVALID naming the file and line
 * (ferry_last_errmsg). */
FERRY_API int ferry_ssh_config_control(const char *ssh_config, const char *host,
                                       int *master, long long *persist_s);
/* Wire round trips waited for on this session's SFTP channel so far. */
FERRY_API uint64_t ferry_session_round_trips(const ferry_session *s);
/* Make the running blocking call return FERRY_EINTR as soon as it can
 * (ferry_session_connect included).  For ferry_sync, ferry_pull and
 * ferry_exec an interrupt sent while none of them runs is dropped, and a
 * command that ran to its end is not reported as interrupted.
 * Async-signal-safe and thread-safe. */
FERRY_API void ferry_interrupt(ferry_session *s);
/* Make the session look at the calls' stop flags (ferry_exec_opts.stop)
 * now.  Safe from a signal handler or any thread. */
FERRY_API void ferry_session_wake(ferry_session *s);

/* ---- sync -------------------------------------------------------------- */

typedef enum ferry_change_kind {
	FERRY_CHANGE_MKDIR = 0,
	FERRY_CHANGE_UPLOAD = 1,
	FERRY_CHANGE_META = 2, /* mode and/or mtime only */
	FERRY_CHANGE_SYMLINK = 3,
	FERRY_CHANGE_DELETE = 4,
	FERRY_CHANGE_RMDIR = 5
} ferry_change_kind;

/* ferry_change.flags */
#define FERRY_CHANGED_NEW     0x1u /* did not exist remotely */
#define FERRY_CHANGED_CONTENT 0x2u /* checksum differs */
#define FERRY_CHANGED_SIZE    0x4u
#define FERRY_CHANGED_MTIME   0x8u
#define FERRY_CHANGED_MODE    0x10u
#define FERRY_CHANGED_TYPE    0x20u /* a file became a directory, or back */
#define FERRY_CHANGED_DIR     0x40u /* the path is a directory */
/* An upload rebuilt on the server from the old remote file's unchanged
 * chunks (copy-data), with only the changed chunks sent: a delta. */
#define FERRY_CHANGED_DELTA 0x80u

typedef struct ferry_change {
	ferry_change_kind kind;
	unsigned int flags;
	const char *path; /* relative to the destination, '/'-separated */
	const char *link_target; /* FERRY_CHANGE_SYMLINK only */
	uint64_t size;
	uint32_t mode; /* permission bits */
	int error;     /* 0, or FERRY_E* when this change failed */
	const char *errmsg;
} ferry_change;

typedef struct ferry_progress {
	uint64_t bytes_done, bytes_total;
	uint64_t files_done, files_total;
} ferry_progress;

typedef struct ferry_file_error {
	char *path; /* local path, or remote path relative to the destination */
	int code;   /* FERRY_E* */
	char *message;
} ferry_file_error;

/* Version 2 added the listing limits, version 3 streams, version 4
 * marker, version 5 stop; older structs are accepted everywhere a
 * ferry_sync_opts is. */
#define FERRY_SYNC_OPTS_VERSION 5

/* One entry of a mapping push (ferry_sync_opts.mappings): local, a file or
 * a directory, lands at remote, a path relative to the destination.  A
 * directory's contents go there ("" or "." for a directory: the
 * destination itself); a file is written under that name.  Missing parent
 * directories of remote are made (mode 0755).  excludes: this mapping's
 * own patterns, matched against paths relative to local. */
typedef struct ferry_mapping {
	const char *local;
	const char *remote;
	const char *const *excludes;
	size_t exclude_count;
} ferry_mapping;

/* ferry_sync_opts.delete_scope, with delete_extraneous. */
#define FERRY_DELETE_MIRROR 0 /* any remote entry not in the sources */
#define FERRY_DELETE_TRACKED                                                   \
	1 /* only entries this manifest recorded:                              \
	     never a remote-only file */

typedef struct ferry_sync_opts {
	unsigned int version;       /* FERRY_SYNC_OPTS_VERSION */
	const char *const *sources; /* rsync meaning of a trailing slash */
	size_t source_count;
	const char
	        *dest; /* remote directory; relative to the login directory */
	int delete_extraneous; /* --delete */
	long long max_delete; /* 0: no limit; > 0: refuse more; < 0: delete none
	                       */
	const char *const *excludes; /* fnmatch patterns, ** and trailing / */
	size_t exclude_count;
	int dry_run;   /* plan only, change nothing */
	int force;     /* ignore the manifest */
	int verify;    /* list the remote tree even if the marker matches */
	int checksum;  /* hash every file */
	int fsync_all; /* fsync every file, not only owner-only ones */
	const char *state_dir; /* NULL: $XDG_STATE_HOME/ferry or
	                          ~/.local/state/ferry */
	/* Called once per change: when planned on a dry run, when done (or
	 * failed) otherwise. */
	void (*on_change)(void *ctx, const ferry_change *c);
	void (*on_progress)(void *ctx, const ferry_progress *p);
	ferry_log_fn log; /* warnings (skipped files...) */
	void *ctx;
	/* Files of exclude patterns, one a line (rsync's --exclude-from: blank
	 * lines and lines starting with # or ; skipped, "- " dropped). */
	const char *const *exclude_from;
	size_t exclude_from_count;
	/* Version 2.  What a remote listing may make ferry hold (a server
	 * that never ends a listing must not exhaust memory): entries in
	 * one directory (0: 1,000,000), entries in all (0: 10,000,000),
	 * bytes of names in all (0: 1 GiB).  Beyond one, the listing stops
	 * and the push or pull fails with FERRY_ELIMIT naming the
	 * directory. */
	uint64_t max_dir_entries;
	uint64_t max_entries;
	uint64_t max_name_bytes;
	/* Version 2 too.  Write below a remote directory that other accounts
	 * may write to (mode g+w or o+w); refused by default, as another
	 * account could swap a directory for a symlink while the push runs. */
	int allow_shared_dirs;
	/* Instead of sources: many mappings under the one destination, one
	 * manifest and one marker. */
	const ferry_mapping *mappings;
	size_t mapping_count;
	int delete_scope; /* FERRY_DELETE_* */
	/* Version 3.  SFTP channels a large upload (32 MiB and up) may be
	 * striped over, and small uploads spread over when they come to
	 * 8 MiB or more in all (each temporary written over one channel,
	 * every rename on the main one): one channel moves at most its
	 * window (2 MiB with OpenSSH) per round trip.  0: automatic (4 when the
	 * connection's round trip is 2 ms or more, else 1: on a fast link the
	 * limit is the cipher on one core, and more channels only cost their
	 * opening); 1: never striped. */
	unsigned int streams;
	/* Version 4.  The name of ferry's identity marker, the file at the
	 * top of the destination whose random id the manifest records: a
	 * push that finds it missing or different (the destination wiped,
	 * replaced, or pushed by someone else) lists the remote tree
	 * instead of trusting the manifest.  NULL or "": ".ferry-id", the
	 * name every earlier version wrote.  One name: not "." or "..", no
	 * '/', not of ferry's temporary form (".ferry-" first, or
	 * ".NAME.ferry-XXXXXX"), at most 255 bytes.  Like ".ferry-id"
	 * (which stays reserved whatever this says) it is never pushed from
	 * the sources, never deleted (any delete_scope, any exclude) and
	 * never brought home by a pull of the tree when the pull is given
	 * the same name.  It is always inside the destination: SFTP version
	 * 3 shows no inode or file id, so only a file in the destination
	 * goes away with it; kept elsewhere, it could not tell a wiped
	 * destination from an unchanged one. */
	const char *marker;
	/* Version 5.  This push's or pull's own stop, as
	 * ferry_exec_opts.stop: once *stop is nonzero and
	 * ferry_session_wake() was called, it alone is interrupted
	 * (FERRY_EINTR, as ferry_interrupt would); other calls on the
	 * session go on.  NULL: none. */
	const volatile int *stop;
} ferry_sync_opts;

#define FERRY_SYNC_OPTS_INIT                                                   \
	{                                                                      \
		FERRY_SYNC_OPTS_VERSION, NULL, 0, NULL, 0, 0, NULL, 0, 0, 0,   \
		        0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0,  \
		        0, 0, NULL, 0, FERRY_DELETE_MIRROR, 0, NULL, NULL      \
	}

/* As ferry_session_opts_init, for ferry_sync_opts. */
FERRY_API int ferry_sync_opts_init(ferry_sync_opts *opts, unsigned int version);

typedef struct ferry_sync_report {
	uint64_t files_scanned, dirs_scanned;
	uint64_t files_uploaded, files_updated, files_deleted;
	uint64_t dirs_created, dirs_deleted, symlinks_created;
	uint64_t bytes_sent;  /* file content bytes written */
	uint64_t round_trips; /* wire round trips waited for */
	uint64_t requests;    /* SFTP requests sent */
	int verified;         /* the remote tree was listed */
	double ms_scan, ms_plan, ms_transfer, ms_manifest, ms_total;
	size_t error_count;
	ferry_file_error *errors;
	/* Delta uploads (FERRY_CHANGED_DELTA): how many, and the bytes the
	 * server copied from the old files instead of receiving them. */
	uint64_t files_delta, bytes_copied;
	/* Content bytes not sent thanks to what ferry knew: bytes_copied
	 * plus the sizes of files whose content was found unchanged (only
	 * their metadata was updated). */
	uint64_t bytes_saved;
} ferry_sync_report;

/* One rsync --itemize-changes line for c, without newline ("cd+++++++++
 * dir/", ">f+++++++++ path", ".f..t...... path", "*deleting   path",
 * "cL+++++++++ link -> target"; a delta upload has 'D' in the last
 * column, rsync's xattr column: ">fcst.....D path"); control bytes in
 * names as \#ooo.  Writes
 * at most size bytes (NUL included), returns the full length. */
/* path as ferry prints names: control bytes, C1 controls and the
 * Unicode bidi marks, embeddings, overrides and isolates as \#ooo per
 * byte (so a name cannot rewrite the terminal or reorder a line).  Writes
 * at most size bytes (NUL included), returns the full length. */
FERRY_API size_t ferry_path_escape(char *buf, size_t size, const char *path);

FERRY_API size_t ferry_change_itemize(char *buf, size_t size,
                                      const ferry_change *c);

/* Push.  Returns 0, FERRY_EPARTIAL when some files failed (see
 * report->errors), or another FERRY_E* when the push as a whole failed.
 * *report (may be NULL) is zeroed at entry, never added to: free it with
 * ferry_sync_report_free before reusing it. */
FERRY_API int ferry_sync(ferry_session *s, const ferry_sync_opts *opts,
                         ferry_sync_report *report);
/* What ferry_sync would do, from the manifest and the local tree alone,
 * without connecting.  conn names the target (host, port, user).  *report
 * (may be NULL) is zeroed at entry, as by ferry_sync. */
FERRY_API int ferry_sync_status(const ferry_session_opts *conn,
                                const ferry_sync_opts *opts,
                                ferry_sync_report *report, char *errmsg,
                                size_t errmsg_size);
FERRY_API void ferry_sync_report_free(ferry_sync_report *r);

/* Pull: the reverse of ferry_sync, from the remote into a local directory,
 * with the same options, callbacks, itemized changes and report.
 *
 * opts->sources are remote paths (relative to the login directory unless
 * absolute; a leading "~/" is the login directory) with rsync's meaning of
 * a trailing slash ("dir/": its contents into dest; "dir": dest/dir; a
 * file: dest/name); opts->dest is the local directory, made when missing.
 * The local tree is what is compared, by size and mtime (checksum: the
 * content of files of the same size is read and compared): no manifest,
 * so force, verify and state_dir do not apply.  delete_extraneous removes
 * local entries the sources do not have (refused, FERRY_ENOTFOUND, when a
 * source is missing or empty); max_delete, excludes, exclude_from,
 * dry_run, fsync_all (owner-only files are always flushed), on_change,
 * on_progress and log as for a push.
 *
 * Every name, size and attribute the server sends is checked before use: a
 * name holding '/' or NUL, ".", "..", an empty or duplicate name, a path
 * too long, a file whose size is not what was listed, a symlink whose
 * target leaves dest: refused and reported by name, never written.  The
 * set-user-ID, set-group-ID and sticky bits from the server are dropped.
 * Files are written as a temporary name in their directory (created with
 * the final mode, so an owner-only file is never readable by others),
 * then renamed over the old name: every local path is whole, old or new.
 *
 * In the report, files_uploaded counts the files brought home,
 * files_updated the metadata-only changes, bytes_sent the content bytes
 * written locally, files_scanned and dirs_scanned the remote entries
 * listed.  Returns as ferry_sync: 0, FERRY_EPARTIAL, or another FERRY_E*
 * (the session's error text says why). */
FERRY_API int ferry_pull(ferry_session *s, const ferry_sync_opts *opts,
                         ferry_sync_report *report);

/* ---- exec -------------------------------------------------------------- */

/* Version 2 added stop; a version-1 struct is accepted. */
#define FERRY_EXEC_OPTS_VERSION 2

typedef struct ferry_exec_opts {
	unsigned int version; /* FERRY_EXEC_OPTS_VERSION */
	const char *cwd; /* NULL: the session's current directory; relative:
	                    to it; "~" and "~/x": the login directory */
	int timeout_ms;  /* 0: none; on expiry exit status 124 */
	const void *stdin_data;
	size_t stdin_len;
	/* Output as it arrives; stream is 1 (stdout) or 2 (stderr). */
	void (*on_output)(void *ctx, int stream, const void *data, size_t len);
	void *ctx;
	int separate_stderr;    /* without on_output: stderr to result->err */
	size_t output_cap;      /* 0: unlimited; else keep head and tail */
	const char *const *env; /* "NAME=value" additions */
	size_t env_count;
	int no_snapshot; /* plain bash -c, no session-shell state */
	/* Version 2.  This command's own stop: once *stop is nonzero and
	 * ferry_session_wake() was called (both safe in a signal handler),
	 * the command alone is interrupted as ferry_interrupt() would (exit
	 * 130, its remote process group killed, FERRY_EINTR); other calls on
	 * the session go on.  NULL: none. */
	const volatile int *stop;
} ferry_exec_opts;

#define FERRY_EXEC_OPTS_INIT                                                   \
	{                                                                      \
		FERRY_EXEC_OPTS_VERSION, NULL, 0, NULL, 0, NULL, NULL, 0, 0,   \
		        NULL, 0, 0, NULL                                       \
	}

/* As ferry_session_opts_init, for ferry_exec_opts. */
FERRY_API int ferry_exec_opts_init(ferry_exec_opts *opts, unsigned int version);

typedef struct ferry_exec_result {
	int exit_status; /* the command's; 124 timeout, 130 interrupted, 126 cd
	                    failed */
	char *output;    /* without on_output: merged (or stdout) bytes */
	size_t output_len;
	char *err; /* with separate_stderr */
	size_t err_len;
	int output_truncated;
	char *cwd; /* session cwd after the command */
	int timed_out, interrupted;
	double duration_ms;
	/* timed_out or interrupted: the remote command and its children were
	 * seen gone after ferry killed them (0: not confirmed). */
	int killed;
} ferry_exec_result;

FERRY_API int ferry_exec(ferry_session *s, const char *command,
                         const ferry_exec_opts *opts,
                         ferry_exec_result *result);
FERRY_API void ferry_exec_result_free(ferry_exec_result *r);
/* Start the session shell (its login bootstrap and a spare channel) now,
 * without waiting, so that it overlaps other work such as a push on the
 * same session.  Optional: ferry_exec does it when needed. */
FERRY_API int ferry_exec_prepare(ferry_session *s);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_H */
