/* fixture.h - test helpers: a private sshd on 127.0.0.1 (tests/sshd.sh),
 * temporary directories, and small file utilities. */
#ifndef FERRY_TEST_FIXTURE_H
#define FERRY_TEST_FIXTURE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry.h"

typedef struct fx_sshd {
	char dir[512];
	int port;
	char key_ed25519[600], key_ecdsa[600], known_hosts[600];
	int owned; /* started by this process: stop it */
} fx_sshd;

/* The server shared by a test run (started by tests/run.sh and named in
 * $FERRY_TEST_SSHD_DIR), or one started on first use in this process. */
const fx_sshd *fx_shared(void);
/* A private server; extra_config is appended to its sshd_config (may be
 * NULL).  0 or -1. */
int fx_sshd_start(fx_sshd *out, const char *extra_config);
void fx_sshd_stop(fx_sshd *sv);

/* Session options for a server: 127.0.0.1, its port, the current user, its
 * ed25519 client key, its known_hosts with the strict policy, no agent. */
void fx_opts(const fx_sshd *sv, ferry_session_opts *o);
/* Open a session to sv (asserts success). */
ferry_session *fx_connect(const fx_sshd *sv);

/* A new empty directory under the test run's temp dir; caller frees. */
char *fx_tmpdir(const char *tag);
/* Run a shell command; returns its exit status (or -1). */
int fx_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Run a shell command and return its stdout (caller frees); NULL on error. */
char *fx_sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Run a shell command (stdin, when the command does not redirect it, is
 * /dev/null); its stdout and stderr into new strings (either may be NULL:
 * dropped).  Returns its exit status, or -1. */
int fx_sh_capture(char **out, char **err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
int fx_write_file(const char *path, const void *data, size_t len, mode_t mode);
/* The string text as the file dir/name. */
int fx_write_in(const char *dir, const char *name, const char *text,
                mode_t mode);
/* Whole file into a new buffer; NULL when unreadable. */
char *fx_read_file(const char *path, size_t *len);
/* The python statements asserts hold for the JSON file at path, loaded as
 * d: 0, else the exit status of python3; *why (when why is not NULL) gets
 * what python3 printed on stderr (caller frees). */
int fx_json_holds(const char *path, const char *asserts, char **why);
/* The same for JSON text, written to DIR/out.json. */
int fx_json_text_holds(const char *dir, const char *text, const char *asserts,
                       char **why);
/* Path of the built ferry program. */
const char *fx_ferry_bin(void);

/* ferry_interrupt(s) from another thread, ms after the start; join waits
 * for that thread. */
typedef struct fx_interrupter {
	pthread_t th;
	ferry_session *s;
	int ms;
} fx_interrupter;
void fx_interrupt_after(fx_interrupter *x, ferry_session *s, int ms);
void fx_interrupt_join(fx_interrupter *x);

#endif
