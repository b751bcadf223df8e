/* sftp_helpers.h - helpers for the SFTP client tests (tests/lib/sftp*.c). */
#ifndef FERRY_TEST_SFTP_HELPERS_H
#define FERRY_TEST_SFTP_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#include "sftp_test.h"

#define SFTP_SERVER "/usr/lib/openssh/sftp-server"

/* A suite's own temporary directory: sh_dir_new(tag) in its .init,
 * sh_dir_free in its .fini. */
extern char *sh_dir;
void sh_dir_new(const char *tag);
void sh_dir_free(void);
/* A path under sh_dir (printf-style name), in one of 8 rotating buffers. */
char *sh_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define P sh_path

/* A client on a child sftp-server (asserts success). */
ferry__sftp *sh_pipe(const ferry__sftp_opts *o);
ferry__sftp *sh_pipe_argv(const char *const *argv, const ferry__sftp_opts *o);
/* A client on a scripted byte stream: recv hands out `in` (chunk bytes at a
 * time, 0: all), then EOF when eof is set, else "would block".  Sent bytes
 * are kept: sh_mem_sent(). */
ferry__sftp *sh_mem(const void *in, size_t len, size_t chunk, int eof,
                    const ferry__sftp_opts *o);
const uint8_t *sh_mem_sent(ferry__sftp *sf, size_t *len);

/* A VERSION packet with the given extensions (NULL-terminated names). */
size_t sh_version_pkt(uint8_t *out, size_t cap, uint32_t version,
                      const char *const *ext);

void sh_fill(void *p, size_t n, uint64_t seed);
/* An upload's reader (sh_fill data by offset) that kills the server at
 * offset at: pid, or when 0 the pid written in pidfile. */
typedef struct sh_killer {
	pid_t pid;
	char pidfile[1024];
	uint64_t at;
	int killed;
} sh_killer;
int sh_kill_reader(void *rctx, void *buf, size_t n, uint64_t off);
/* A new file of n bytes under sh_dir (sh_fill with seed); its path, the
 * caller frees. */
char *sh_make_file(size_t n, uint64_t seed);
/* Upload the string data to tmp, renamed over final; asserts success. */
void sh_upload_text(ferry__sftp *sf, const char *tmp, const char *final,
                    const char *data, ferry__sftp_upload_result *r);
/* Upload the file src of n bytes by its fd (o's other settings as given)
 * to sh_dir/big by way of big.tmp, check what arrived, print the rate (a
 * "[sftp bench]" line, how: "via pipe"); the ms it took. */
double sh_upload_big(ferry__sftp *sf, const char *src, size_t n,
                     ferry__sftp_upload_opts *o, const char *how);
XXH128_hash_t sh_hash_file(const char *path);
int sh_hash_eq(XXH128_hash_t a, XXH128_hash_t b);
int sh_is_root(void);
/* Wall-clock ms (CLOCK_MONOTONIC). */
double sh_now_ms(void);

#endif
