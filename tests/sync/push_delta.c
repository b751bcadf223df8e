/* push_delta.c - large files changed in place: rebuilt on the server from
 * the old copy's unchanged chunks (copy-data) with only the changed
 * chunks sent, the remote byte-identical after; sent whole whenever the
 * old copy cannot be trusted or the server cannot copy; old or new after
 * a SIGKILL; manifests of format version 1 still load. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "push_env.h"
#include "safety.h"
#include "session.h"
#include "sftp.h"
#include "sftp_test.h"
#include "sync/chunk.h"
#include "sync/manifest.h"

#define MIB ((uint64_t)1 << 20)

/* Deterministic incompressible bytes. */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)(x >> (8 * (i & 7)));
}

static char *big_path(const char *rel)
{
	return ph_path(e.src, rel);
}

/* size random bytes at e.src/rel with mtime. */
static void write_big(const char *rel, uint64_t size, uint64_t seed, long mtime)
{
	char *p = big_path(rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	size_t bs = 4 * MIB;
	uint8_t *buf = malloc(bs);
	cr_assert_not_null(buf);
	for (uint64_t off = 0; off < size; off += bs) {
		size_t n = size - off < bs ? (size_t)(size - off) : bs;
		fill_random(buf, n, seed + off / bs);
		cr_assert_eq(write(fd, buf, n), (ssize_t)n);
	}
	free(buf);
	close(fd);
	struct timeval tv[2] = {{mtime, 0}, {mtime, 0}};
	cr_assert_eq(utimes(p, tv), 0);
	free(p);
}

/* Overwrite len bytes at off with fresh random bytes; a new mtime. */
static void overwrite(const char *rel, uint64_t off, size_t len, uint64_t seed,
                      long mtime)
{
	char *p = big_path(rel);
	int fd = open(p, O_WRONLY);
	cr_assert_geq(fd, 0);
	uint8_t *buf = malloc(len);
	/* Seeds of their own: bytes no write_big file holds. */
	fill_random(buf, len, seed | (uint64_t)1 << 40);
	cr_assert_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	free(buf);
	close(fd);
	struct timeval tv[2] = {{mtime, 0}, {mtime, 0}};
	cr_assert_eq(utimes(p, tv), 0);
	free(p);
}

static void set_mtime(const char *dir, const char *rel, long mtime)
{
	char *p = ph_path(dir, rel);
	struct timeval tv[2] = {{mtime, 0}, {mtime, 0}};
	cr_assert_eq(utimes(p, tv), 0);
	free(p);
}

/* The file is a delta upload whose bytes sent are at most max. */
static void push_delta(uint64_t max_sent, ferry_sync_report *r)
{
	ph_push_ok(&e, r);
	cr_assert_eq(r->files_uploaded, 1, "uploads: %llu",
	             (unsigned long long)r->files_uploaded);
	cr_assert_eq(r->files_delta, 1, "not a delta upload: %s", e.log);
	cr_assert_leq(r->bytes_sent, max_sent, "sent %llu bytes (at most %llu)",
	              (unsigned long long)r->bytes_sent,
	              (unsigned long long)max_sent);
	cr_assert_eq(r->bytes_saved, r->bytes_copied);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
}

static const char *last_change_line;
static char change_line[256];
static void on_change(void *ctx, const ferry_change *c)
{
	(void)ctx;
	ferry_change_itemize(change_line, sizeof(change_line), c);
	last_change_line = change_line;
}

Test(push_delta, one_mib_changed_in_512_mib, PH_ENV)
{
	uint64_t size = 512 * MIB;
	write_big("big.bin", size, 1, 1700000000L);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.bytes_sent, size);
	cr_assert_eq(r.files_delta, 0);
	ferry_sync_report_free(&r);
	overwrite("big.bin", 256 * MIB, (size_t)MIB, 99, 1700000100L);
	e.o.on_change = on_change;
	push_delta(2 * MIB, &r);
	cr_assert_geq(r.bytes_sent, MIB, "the new MiB was not all sent");
	cr_assert_geq(r.bytes_copied, size - 2 * MIB);
	cr_assert_eq(r.bytes_copied + r.bytes_sent, size);
	cr_assert_leq(r.round_trips, 4, "round trips: %llu",
	              (unsigned long long)r.round_trips);
	cr_assert_not_null(last_change_line);
	cr_assert_str_eq(change_line, ">fc.t.....D big.bin");
	cr_log_info(
	        "1 MiB changed in 512 MiB: sent %llu, copied %llu, %llu "
	        "round trips, %.0f ms (scan %.0f, plan %.0f, transfer %.0f)",
	        (unsigned long long)r.bytes_sent,
	        (unsigned long long)r.bytes_copied,
	        (unsigned long long)r.round_trips, r.ms_total, r.ms_scan,
	        r.ms_plan, r.ms_transfer);
	ferry_sync_report_free(&r);
	/* The manifest vouches for the new version: nothing to do. */
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded + r.files_updated, 0);
	cr_assert_eq(r.bytes_sent, 0);
	ferry_sync_report_free(&r);
}

/* Insertions, appends and truncations of a 32 MiB file. */
Test(push_delta, insert_append_truncate, PH_ENV)
{
	uint64_t size = 32 * MIB;
	write_big("f", size, 2, 1700000000L);
	ph_push_ok(&e, NULL);
	ferry_sync_report r;
	/* One byte inserted at offset 0: at most 3 chunks sent. */
	fx_sh("cd '%s' && { printf Z; cat f; } > f.new && mv f.new f && "
	      "touch -d @1700000200 f",
	      e.src);
	push_delta(3 * (uint64_t)FERRY__CHUNK_MAX, &r);
	cr_log_info("insert at 0: sent %llu", (unsigned long long)r.bytes_sent);
	ferry_sync_report_free(&r);
	/* 1 MiB appended: at most 1.3 MiB. */
	fx_sh("cd '%s' && head -c 1048576 /dev/urandom >> f && touch -d "
	      "@1700000300 f",
	      e.src);
	push_delta(13 * MIB / 10, &r);
	cr_log_info("append 1 MiB: sent %llu",
	            (unsigned long long)r.bytes_sent);
	ferry_sync_report_free(&r);
	/* Truncated to half: at most one chunk (the new last one). */
	fx_sh("cd '%s' && truncate -s 16777216 f && touch -d @1700000400 f",
	      e.src);
	push_delta(FERRY__CHUNK_MAX, &r);
	cr_log_info("truncate to half: sent %llu",
	            (unsigned long long)r.bytes_sent);
	ferry_sync_report_free(&r);
}

/* The remote copy changed out of band (its mtime): the old file is not
 * trusted, the file goes whole, and -v says so once. */
Test(push_delta, remote_changed_out_of_band_is_sent_whole, PH_ENV)
{
	uint64_t size = 8 * MIB;
	write_big("a", size, 3, 1700000000L);
	write_big("b", size, 4, 1700000000L);
	ph_push_ok(&e, NULL);
	set_mtime(e.dst, "a", 1600000000L);
	fx_sh("truncate -s 4194304 '%s/b'", e.dst);
	set_mtime(e.dst, "b", 1700000000L); /* size differs only */
	overwrite("a", MIB, 4096, 5, 1700000500L);
	overwrite("b", MIB, 4096, 6, 1700000500L);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 2);
	cr_assert_eq(r.files_delta, 0);
	cr_assert_eq(r.bytes_sent, 2 * size);
	cr_assert_eq(r.bytes_copied, 0);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	const char *say = strstr(e.log, "sent whole");
	cr_assert_not_null(say, "not said: %s", e.log);
	cr_assert_null(strstr(say + 1, "sent whole"), "said twice: %s", e.log);
	ferry_sync_report_free(&r);
}

/* --checksum and --verify do not trust the remote copy: whole. */
Test(push_delta, checksum_and_verify_send_whole, PH_ENV)
{
	uint64_t size = 4 * MIB;
	write_big("a", size, 7, 1700000000L);
	ph_push_ok(&e, NULL);
	ferry_sync_report r;
	for (int i = 0; i < 2; i++) {
		overwrite("a", MIB, 4096, 8 + (uint64_t)i, 1700000600L + i);
		e.o.checksum = i == 0;
		e.o.verify = i == 1;
		ph_push_ok(&e, &r);
		cr_assert_eq(r.files_delta, 0);
		cr_assert_eq(r.bytes_sent, size);
		ph_assert_same(e.src, e.dst);
		ferry_sync_report_free(&r);
	}
	/* Without them, delta again. */
	e.o.checksum = e.o.verify = 0;
	overwrite("a", MIB, 4096, 20, 1700000700L);
	push_delta(2 * FERRY__CHUNK_MAX, &r);
	ferry_sync_report_free(&r);
}

/* A server without copy-data: sent whole, said once. */
Test(push_delta, server_without_copy_data_sends_whole, PH_ENV)
{
	uint64_t size = 4 * MIB;
	write_big("a", size, 9, 1700000000L);
	ferry__sftp_opts so;
	memset(&so, 0, sizeof(so));
	so.ignore_ext = FERRY__EXT_COPY_DATA;
	ferry__sftp *sf;
	cr_assert_eq(ferry__session_sftp_ex(e.s, &so, &sf), 0);
	ph_push_ok(&e, NULL);
	overwrite("a", MIB, 4096, 10, 1700000800L);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_delta, 0);
	cr_assert_eq(r.bytes_sent, size);
	ph_assert_same(e.src, e.dst);
	cr_assert(strstr(e.log, "copy-data"), "not said: %s", e.log);
	ferry_sync_report_free(&r);
}

/* Small files are never chunked; the chunk list is what the manifest
 * holds for a large one. */
Test(push_delta, manifest_holds_chunks_of_large_files, PH_ENV)
{
	write_big("big", 3 * MIB, 11, 1700000000L);
	ph_write(e.src, "small", "small\n", 0644, 1700000000L);
	ph_push_ok(&e, NULL);
	ferry__manifest *m = ph_load_manifest(&e);
	const ferry__mentry *b = ferry__manifest_find(m, "big", 3);
	const ferry__mentry *s = ferry__manifest_find(m, "small", 5);
	cr_assert_not_null(b);
	cr_assert_not_null(s);
	cr_assert_eq(s->nchunks, 0);
	cr_assert_gt(b->nchunks, 3);
	uint64_t sum = 0;
	for (uint32_t i = 0; i < b->nchunks; i++) {
		cr_assert_eq(b->chunks[i].off, sum);
		sum += b->chunks[i].len;
	}
	cr_assert_eq(sum, b->size);
	ferry__manifest_free(m);
}

/* A manifest of format version 1 (no chunk lists) loads; the push works
 * and rewrites it in version 2, after which delta works. */
Test(push_delta, version_1_manifest_loads_and_is_rewritten, PH_ENV)
{
	ph_write(e.src, "small", "small\n", 0644, 1700000000L);
	ph_push_ok(&e, NULL);
	/* The manifest as version 1 wrote it: no entry has chunks yet, so
	 * only the version and the trailer differ. */
	char *mp = ph_state_file(&e, ".manifest");
	cr_assert_not_null(mp);
	size_t len;
	char *b = ph_manifest_bytes(&e, &len);
	cr_assert_not_null(b);
	cr_assert_gt(len, 20);
	cr_assert_eq(b[11], 2, "not version 2");
	b[11] = 1;
	uint64_t h = XXH3_64bits(b, len - 8);
	for (int i = 0; i < 8; i++)
		b[len - 8 + (size_t)i] = (char)(h >> (56 - 8 * i));
	FILE *f = fopen(mp, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(b, 1, len, f), len);
	fclose(f);
	free(b);
	/* Loads (no "treated as absent" warning, nothing to do). */
	e.loglen = 0;
	e.log[0] = '\0';
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded + r.files_updated, 0, "%s", e.log);
	cr_assert_eq(r.verified, 0, "the old manifest was not used: %s", e.log);
	ferry_sync_report_free(&r);
	/* A change saves version 2. */
	write_big("big", 2 * MIB, 12, 1700000000L);
	ph_push_ok(&e, NULL);
	b = ph_manifest_bytes(&e, &len);
	cr_assert_eq(b[11], 2, "not rewritten as version 2");
	free(b);
	overwrite("big", MIB / 2, 4096, 13, 1700000900L);
	push_delta(2 * FERRY__CHUNK_MAX, &r);
	ferry_sync_report_free(&r);
	free(mp);
}

/* ---- SIGKILL at random moments of delta pushes ---- */

Test(push_delta, sigkill_leaves_old_or_new)
{
	fx_sshd sv;
	cr_assert_eq(fx_sshd_start(&sv, NULL), 0);
	pid_t master = sf_sshd_pid(&sv);
	ph_init_on(&e, "pd-kill", &sv, 0);
	char *v[2] = {ph_path(e.base, "v0"), ph_path(e.base, "v1")};
	char *keep = e.src;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(mkdir(v[i], 0755), 0);
		e.src = v[i];
		write_big("big", 16 * MIB, 30, 1700000000L);
	}
	/* v1: changed in two places, one byte longer. */
	e.src = v[1];
	overwrite("big", 3 * MIB, 65536, 31, 1700000000L);
	overwrite("big", 11 * MIB, 4096, 32, 1700000000L);
	fx_sh("printf x >> '%s/big' && touch -d @1700001000 '%s/big'", v[1],
	      v[1]);
	e.src = keep;
	fx_sh("cp -a '%s'/. '%s'/", v[0], e.src);
	double t0 = sf_now_ms();
	pid_t pid = fork();
	if (pid == 0)
		sf_child_slow(&e, 0);
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "first push failed");
	/* How long a delta push takes. */
	fx_sh("rm -rf '%s' && cp -a '%s' '%s'", e.src, v[1], e.src);
	t0 = sf_now_ms();
	pid = fork();
	if (pid == 0)
		sf_child_slow(&e, 0);
	waitpid(pid, &st, 0);
	double full = sf_now_ms() - t0;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "delta push failed");
	srand(4242);
	int killed_mid = 0;
	for (int it = 0; it < 16; it++) {
		int ver = it % 2;
		fx_sh("rm -rf '%s' && cp -a '%s' '%s'", e.src, v[ver], e.src);
		double at = (double)rand() / RAND_MAX * full * 1.1;
		pid = fork();
		if (pid == 0)
			sf_child_slow(&e, 0);
		usleep((useconds_t)(at * 1000));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		killed_mid += WIFSIGNALED(st);
		sf_wait_server_idle(master);
		char why[600] = "";
		cr_assert(
		        sf_check_versions(e.dst, v[0], v[1], why, sizeof(why)),
		        "iteration %d (kill at %.1f ms of %.1f): %s", it, at,
		        full, why);
		ph_reconnect(&e);
		ferry_sync_report r;
		ph_push_ok(&e, &r);
		ferry_sync_report_free(&r);
		ferry_session_close(e.s);
		e.s = NULL;
		ph_assert_same(e.src, e.dst);
		cr_assert_eq(ph_count_temps(e.dst), 0, "iteration %d", it);
	}
	cr_assert_gt(killed_mid, 5, "too few kills landed: %d", killed_mid);
	cr_log_info("delta pushes killed midway: %d of 16 (a push: %.0f ms)",
	            killed_mid, full);
	free(v[0]);
	free(v[1]);
	ph_fini(&e);
	fx_sshd_stop(&sv);
}

/* ---- striping over several channels ---- */

/* A large file goes over 4 channels (4 sftp-servers), byte-identical;
 * the plan's hash and chunks are recorded, so its next change is a
 * delta. */
Test(push_delta, large_file_striped_over_four_channels)
{
	fx_sshd sv;
	char *log = NULL;
	sf_logging_sshd(&sv, &log);
	ph_init_on(&e, "pd-stripe", &sv, 1);
	uint64_t size = 40 * MIB;
	write_big("big", size, 40, 1700000000L);
	ph_write(e.src, "small", "small\n", 0644, 1700000000L);
	e.o.streams = 4;
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.bytes_sent, size + 6);
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	int servers = sf_count_in_file(log, "session opened");
	cr_assert_eq(servers, 4, "sftp-servers: %d", servers);
	ferry__manifest *m = ph_load_manifest(&e);
	const ferry__mentry *b = ferry__manifest_find(m, "big", 3);
	cr_assert(b && (b->flags & FERRY__ME_HASHED) && b->nchunks > 100,
	          "no hash or chunks recorded");
	ferry__manifest_free(m);
	overwrite("big", 20 * MIB, 4096, 41, 1700001100L);
	push_delta(2 * FERRY__CHUNK_MAX, &r);
	ferry_sync_report_free(&r);
	/* streams 1: one channel, nothing more opened. */
	e.o.streams = 1;
	write_big("big2", size, 42, 1700000000L);
	ph_push_ok(&e, NULL);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(sf_count_in_file(log, "session opened"), 4);
	ph_fini(&e);
	fx_sshd_stop(&sv);
	free(log);
}

/* ---- small files spread over several channels ---- */

/* Version V of a tree of 700 files of about 12 KiB (8.4 MB: more than
 * FERRY__SPREAD_MIN_BYTES) in 7 directories; every file differs
 * between versions. */
static void spread_tree(const char *dir, int v)
{
	fx_sh("rm -rf '%s'/* 2>/dev/null", dir);
	static char buf[16384];
	for (int d = 0; d < 7; d++) {
		char name[64];
		snprintf(name, sizeof(name), "d%d", d);
		ph_mkdir(dir, name, 0755);
		for (int i = 0; i < 100; i++) {
			size_t n = 12000 + (size_t)(37 * i + 11 * v);
			int len =
			        snprintf(buf, sizeof(buf),
			                 "version %d of d%d/f%03d\n", v, d, i);
			for (size_t k = (size_t)len; k < n; k++)
				buf[k] = (char)('a' +
				                (k * 7 + (size_t)(i + v)) % 26);
			buf[n] = '\0';
			snprintf(name, sizeof(name), "d%d/f%03d", d, i);
			ph_write(dir, name, buf, i % 5 ? 0644 : 0600,
			         1700000000L + i + v);
		}
	}
}

/* Many small files go over 4 channels (4 sftp-servers): the same tree,
 * the same manifest, no temporary left; SIGKILL at random moments leaves
 * every file old or new, and the next push converges. */
Test(push_delta, small_files_spread_over_four_channels, .timeout = 240)
{
	fx_sshd sv;
	char *log = NULL;
	sf_logging_sshd(&sv, &log);
	pid_t master = sf_sshd_pid(&sv);
	ph_init_on(&e, "pd-spread", &sv, 1);
	char *v0 = ph_path(e.base, "v0"), *v1 = ph_path(e.base, "v1");
	cr_assert_eq(mkdir(v0, 0755), 0);
	cr_assert_eq(mkdir(v1, 0755), 0);
	spread_tree(v0, 0);
	spread_tree(v1, 1);
	e.o.streams = 4;
	e.o.delete_extraneous = 1;
	fx_sh("cp -a '%s'/. '%s'/", v0, e.src);
	ferry_sync_report r;
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded, 700);
	ferry_sync_report_free(&r);
	ph_assert_same(e.src, e.dst);
	cr_assert_eq(ph_count_temps(e.dst), 0);
	int servers = sf_count_in_file(log, "session opened");
	cr_assert_eq(servers, 4, "sftp-servers: %d", servers);
	/* The manifest vouches for every file: the next push is a no-op
	 * without a request. */
	ferry__manifest *m = ph_load_manifest(&e);
	cr_assert(ferry__manifest_find(m, "d6/f099", 7), "d6/f099 missing");
	ferry__manifest_free(m);
	ph_push_ok(&e, &r);
	cr_assert_eq(r.files_uploaded + r.files_updated, 0);
	cr_assert_eq(r.round_trips, 0);
	ferry_sync_report_free(&r);
	ferry_session_close(e.s);
	e.s = NULL;

	/* How long a push of the change takes in a child. */
	fx_sh("rm -rf '%s' && cp -a '%s' '%s'", e.src, v1, e.src);
	double t0 = sf_now_ms();
	pid_t pid = fork();
	if (pid == 0)
		sf_child_slow(&e, 0);
	int st;
	waitpid(pid, &st, 0);
	double full = sf_now_ms() - t0;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "second push failed");
	cr_assert_gt(sf_count_in_file(log, "session opened"), servers,
	             "the child's push opened no streams");
	srand(4242);
	int killed_mid = sf_kills(&e, 0, v0, v1, 12, full, master, NULL);
	cr_assert_gt(killed_mid, 4, "too few kills landed: %d", killed_mid);
	cr_log_info("spread pushes killed midway: %d of 12 (a push: %.0f ms)",
	            killed_mid, full);
	free(v0);
	free(v1);
	ph_fini(&e);
	fx_sshd_stop(&sv);
	free(log);
}
