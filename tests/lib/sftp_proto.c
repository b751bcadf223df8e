/* The SFTP wire format and the client's handling of hostile or broken
 * servers, on a scripted byte stream (no server process). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "fixture.h"
#include "sftp_test.h"
#include "sftp.h"
#include "sftp_helpers.h"
#include "sftp_proto.h"

/* A scripted server stream. */
typedef struct script {
	ferry_buf b;
} script;

static void sc_version(script *s, uint32_t version, const char *const *ext)
{
	uint8_t pkt[512];
	size_t n = sh_version_pkt(pkt, sizeof(pkt), version, ext);
	ferry__buf_put(&s->b, pkt, n);
}

static size_t sc_begin(script *s, uint8_t type, uint32_t id)
{
	size_t at = s->b.len;
	ferry__buf_put_u32(&s->b, 0);
	ferry__buf_put_u8(&s->b, type);
	ferry__buf_put_u32(&s->b, id);
	return at;
}

static void sc_end(script *s, size_t at)
{
	ferry__buf_poke_u32(&s->b, at, (uint32_t)(s->b.len - at - 4));
}

static void sc_status(script *s, uint32_t id, uint32_t code, const char *msg)
{
	size_t at = sc_begin(s, FERRY__FXP_STATUS, id);
	ferry__buf_put_u32(&s->b, code);
	ferry__buf_put_cstring(&s->b, msg);
	ferry__buf_put_cstring(&s->b, "");
	sc_end(s, at);
}

/* A script that starts with VERSION without extensions, then the reply to
 * the speculative limits request (id 1): the next request gets id 2. */
static script sc_hello(void)
{
	script s = {FERRY_BUF_INIT};
	sc_version(&s, 3, NULL);
	sc_status(&s, 1, FERRY__FX_OP_UNSUPPORTED, "unsupported");
	return s;
}

typedef struct cap {
	int n;
	int error;
	uint32_t status;
	char msg[512];
	int eof;
	size_t data_len;
	uint32_t count;
	char name[64];
} cap;

static void cap_cb(void *ctx, const ferry__sftp_reply *r)
{
	cap *c = ctx;
	c->n++;
	c->error = r->error;
	c->status = r->status;
	c->eof = r->eof;
	c->data_len = r->data_len;
	c->count = r->count;
	snprintf(c->msg, sizeof(c->msg), "%s", r->message);
	if (r->count)
		snprintf(c->name, sizeof(c->name), "%s", r->names[0].name);
}

/* Free the client and then its script. */
static void sc_free(script *s, ferry__sftp *sf)
{
	ferry__sftp_free(sf);
	ferry__buf_free(&s->b);
}

static ferry__sftp *started(script *s, size_t chunk, int eof)
{
	ferry__sftp *sf = sh_mem(s->b.data, s->b.len, chunk, eof, NULL);
	cr_assert_eq(ferry__sftp_start(sf), 0);
	return sf;
}

Test(sftp_proto, init_parses_version_and_extensions)
{
	static const char *const ext[] = {"posix-rename@openssh.com",
	                                  "fsync@openssh.com", "copy-data",
	                                  "unknown@example.com", NULL};
	script s = {FERRY_BUF_INIT};
	sc_version(&s, 3, ext);
	sc_status(&s, 1, FERRY__FX_OP_UNSUPPORTED, "");
	ferry__sftp *sf = started(&s, 0, 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	cr_assert(ferry__sftp_ready(sf));
	cr_assert_eq(ferry__sftp_extensions(sf), FERRY__EXT_POSIX_RENAME |
	                                                 FERRY__EXT_FSYNC |
	                                                 FERRY__EXT_COPY_DATA);
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	/* No limits extension: the draft's safe sizes. */
	cr_assert_eq(l.max_write, 32768);
	cr_assert_eq(l.max_read, 32768);
	cr_assert_eq(l.max_handles, 64);
	cr_assert_eq(ferry__sftp_round_trips(sf), 1);
	/* INIT went out first, version 3, then the limits request. */
	size_t n;
	const uint8_t *sent = sh_mem_sent(sf, &n);
	cr_assert_geq(n, 9);
	cr_assert_eq(ferry__peek_u32(sent), 5);
	cr_assert_eq(sent[4], FERRY__FXP_INIT);
	cr_assert_eq(ferry__peek_u32(sent + 5), 3);
	cr_assert_eq(sent[13], FERRY__FXP_EXTENDED);
	sc_free(&s, sf);
}

Test(sftp_proto, init_diagnoses_shell_garbage)
{
	const char *text = "Welcome to build-host!\n\x1b[1mToday\x1b[0m is a "
	                   "fine day\n";
	ferry__sftp *sf = sh_mem(text, strlen(text), 0, 0, NULL);
	int rc = ferry__sftp_init(sf, 0);
	cr_assert_eq(rc, FERRY_EPROTO);
	const char *m = ferry__sftp_errmsg(sf);
	cr_assert(strstr(m, "printed text on a non-interactive login"), "%s",
	          m);
	cr_assert(strstr(m, "Welcome to build-host!\\n\\x1b[1mToday"), "%s", m);
	cr_assert_eq(ferry__sftp_dead(sf), FERRY_EPROTO);
	ferry__sftp_free(sf);
}

Test(sftp_proto, init_garbage_shorter_than_a_header)
{
	ferry__sftp *sf = sh_mem("hi\n", 3, 0, 1, NULL);
	cr_assert_eq(ferry__sftp_init(sf, 0), FERRY_EPROTO);
	cr_assert(strstr(ferry__sftp_errmsg(sf), "non-interactive login"), "%s",
	          ferry__sftp_errmsg(sf));
	cr_assert(strstr(ferry__sftp_errmsg(sf), "hi\\n"));
	ferry__sftp_free(sf);
}

Test(sftp_proto, init_eof_before_version)
{
	ferry__sftp *sf = sh_mem("", 0, 0, 1, NULL);
	cr_assert_eq(ferry__sftp_init(sf, 0), FERRY_EEOF);
	cr_assert(strlen(ferry__sftp_errmsg(sf)) > 0);
	ferry__sftp_free(sf);
}

Test(sftp_proto, init_refuses_other_versions)
{
	script s = {FERRY_BUF_INIT};
	sc_version(&s, 6, NULL);
	ferry__sftp *sf = started(&s, 0, 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), FERRY_EUNSUPPORTED);
	cr_assert(strstr(ferry__sftp_errmsg(sf), "version 6"));
	sc_free(&s, sf);
}

Test(sftp_proto, stream_in_one_byte_pieces)
{
	script s = sc_hello();
	size_t at = sc_begin(&s, FERRY__FXP_ATTRS, 2);
	ferry__buf_put_u32(&s.b, FERRY__ATTR_SIZE | FERRY__ATTR_PERMISSIONS);
	ferry__buf_put_u64(&s.b, 1234);
	ferry__buf_put_u32(&s.b, 0100644);
	sc_end(&s, at);
	ferry__sftp *sf = started(&s, 1, 0);
	cap c = {0};
	cr_assert_eq(ferry__sftp_stat(sf, "x", cap_cb, &c), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.error, 0);
	cr_assert_eq(ferry__sftp_round_trips(sf), 1);
	sc_free(&s, sf);
}

/* A broken reply kills the client: every request learns it. */
static void expect_death(script *s, const char *what)
{
	ferry__sftp *sf = started(s, 0, 0);
	cap a = {0}, b = {0};
	cr_assert_eq(ferry__sftp_stat(sf, "a", cap_cb, &a), 0);
	cr_assert_eq(ferry__sftp_read(sf, &(ferry__sftp_handle){4, {1}}, 0, 100,
	                              cap_cb, &b),
	             0);
	int rc = ferry__sftp_run(sf, NULL, NULL, 0);
	cr_assert_eq(rc, FERRY_EPROTO, "%s: %s (%s)", what, ferry_strerror(rc),
	             ferry__sftp_errmsg(sf));
	cr_assert_eq(a.n, 1, "%s", what);
	cr_assert_eq(b.n, 1, "%s", what);
	cr_assert_eq(a.error, FERRY_EPROTO, "%s", what);
	cr_assert_eq(b.error, FERRY_EPROTO, "%s", what);
	cr_assert_eq(ferry__sftp_pending(sf), 0);
	/* Dead: nothing more is accepted. */
	cr_assert_eq(ferry__sftp_stat(sf, "a", cap_cb, &a), FERRY_EPROTO);
	sc_free(s, sf);
}

Test(sftp_proto, reply_to_unknown_id)
{
	script s = sc_hello();
	sc_status(&s, 77, 0, "");
	expect_death(&s, "unknown id");
}

Test(sftp_proto, reply_of_wrong_type)
{
	script s = sc_hello();
	size_t at = sc_begin(&s, FERRY__FXP_HANDLE, 2); /* to a STAT */
	ferry__buf_put_cstring(&s.b, "h");
	sc_end(&s, at);
	expect_death(&s, "wrong type");
}

Test(sftp_proto, status_ok_to_a_stat)
{
	script s = sc_hello();
	sc_status(&s, 2, FERRY__FX_OK, "");
	expect_death(&s, "OK without attrs");
}

Test(sftp_proto, impossible_length)
{
	script s = sc_hello();
	ferry__buf_put_u32(&s.b, 0x7fffffff);
	ferry__buf_put_u8(&s.b, FERRY__FXP_STATUS);
	expect_death(&s, "huge length");
}

Test(sftp_proto, zero_length)
{
	script s = sc_hello();
	ferry__buf_put_u32(&s.b, 0);
	expect_death(&s, "zero length");
}

Test(sftp_proto, truncated_attrs)
{
	script s = sc_hello();
	size_t at = sc_begin(&s, FERRY__FXP_ATTRS, 2);
	ferry__buf_put_u32(&s.b, FERRY__ATTR_SIZE | FERRY__ATTR_ACMODTIME);
	ferry__buf_put_u64(&s.b, 1);
	ferry__buf_put_u32(&s.b, 5); /* mtime missing */
	sc_end(&s, at);
	expect_death(&s, "short attrs");
}

Test(sftp_proto, extended_attr_count_overflow)
{
	script s = sc_hello();
	size_t at = sc_begin(&s, FERRY__FXP_ATTRS, 2);
	ferry__buf_put_u32(&s.b, FERRY__ATTR_EXTENDED);
	ferry__buf_put_u32(&s.b, 0xffffffff);
	sc_end(&s, at);
	expect_death(&s, "ext count");
}

Test(sftp_proto, read_returns_more_than_asked)
{
	script s = sc_hello();
	sc_status(&s, 2, FERRY__FX_NO_SUCH_FILE, "");
	size_t at = sc_begin(&s, FERRY__FXP_DATA, 3);
	uint8_t junk[200] = {0};
	ferry__buf_put_string(&s.b, junk, sizeof(junk)); /* asked 100 */
	sc_end(&s, at);
	ferry__sftp *sf = started(&s, 0, 0);
	cap a = {0}, b = {0};
	cr_assert_eq(ferry__sftp_stat(sf, "a", cap_cb, &a), 0);
	cr_assert_eq(ferry__sftp_read(sf, &(ferry__sftp_handle){4, {1}}, 0, 100,
	                              cap_cb, &b),
	             0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), FERRY_EPROTO);
	cr_assert_eq(a.error, FERRY_ENOTFOUND); /* answered before */
	cr_assert_eq(b.error, FERRY_EPROTO);
	sc_free(&s, sf);
}

Test(sftp_proto, handle_longer_than_256)
{
	script s = sc_hello();
	size_t at = sc_begin(&s, FERRY__FXP_HANDLE, 2);
	uint8_t h[300] = {0};
	ferry__buf_put_string(&s.b, h, sizeof(h));
	sc_end(&s, at);
	ferry__sftp *sf = started(&s, 0, 0);
	cap a = {0};
	cr_assert_eq(
	        ferry__sftp_open(sf, "f", FERRY__FXF_READ, NULL, cap_cb, &a),
	        0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), FERRY_EPROTO);
	cr_assert_eq(a.error, FERRY_EPROTO);
	sc_free(&s, sf);
}

static void names_reply(script *s, uint32_t id, uint32_t count,
                        const char *const *names, size_t n)
{
	size_t at = sc_begin(s, FERRY__FXP_NAME, id);
	ferry__buf_put_u32(&s->b, count);
	for (size_t i = 0; i < n; i++) {
		ferry__buf_put_cstring(&s->b, names[i]);
		ferry__buf_put_cstring(&s->b, "-rw-r--r-- long name");
		ferry__buf_put_u32(&s->b, 0);
	}
	sc_end(s, at);
}

static void readdir_case(const char *const *names, size_t n, uint32_t count,
                         int want_error)
{
	script s = sc_hello();
	names_reply(&s, 2, count, names, n);
	ferry__sftp *sf = started(&s, 0, 0);
	cap a = {0};
	cr_assert_eq(ferry__sftp_readdir(sf, &(ferry__sftp_handle){4, {1}},
	                                 cap_cb, &a),
	             0);
	int rc = ferry__sftp_run(sf, NULL, NULL, 0);
	cr_assert_eq(a.n, 1);
	if (want_error) {
		cr_assert_eq(rc, FERRY_EPROTO);
		cr_assert_eq(a.error, FERRY_EPROTO);
	} else {
		cr_assert_eq(rc, 0, "%s", ferry__sftp_errmsg(sf));
		cr_assert_eq(a.error, 0);
		cr_assert_eq(a.count, count);
		cr_assert_str_eq(a.name, names[0]);
	}
	sc_free(&s, sf);
}

Test(sftp_proto, readdir_names)
{
	static const char *const ok[] = {"a file", ".", "..", "\xff\xfe"};
	readdir_case(ok, 4, 4, 0);
	/* Passed on for the caller to refuse by name (sync/remote.c). */
	static const char *const slash[] = {"../../etc/passwd", "ok"};
	readdir_case(slash, 2, 2, 0);
	static const char *const empty[] = {""};
	readdir_case(empty, 1, 1, 0);
	/* A count the bytes cannot hold. */
	readdir_case(ok, 1, 100000, 1);
}

Test(sftp_proto, name_with_nul_refused)
{
	script s = sc_hello();
	size_t at = sc_begin(&s, FERRY__FXP_NAME, 2);
	ferry__buf_put_u32(&s.b, 1);
	ferry__buf_put_string(&s.b, "a\0b", 3);
	ferry__buf_put_cstring(&s.b, "");
	ferry__buf_put_u32(&s.b, 0);
	sc_end(&s, at);
	ferry__sftp *sf = started(&s, 0, 0);
	cap a = {0};
	cr_assert_eq(ferry__sftp_readlink(sf, "l", cap_cb, &a), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), FERRY_EPROTO);
	cr_assert_eq(a.error, FERRY_EPROTO);
	sc_free(&s, sf);
}

Test(sftp_proto, status_codes_and_messages)
{
	static const struct {
		uint32_t code;
		int error;
	} map[] = {{FERRY__FX_NO_SUCH_FILE, FERRY_ENOTFOUND},
	           {FERRY__FX_PERMISSION_DENIED, FERRY_EPERM},
	           {FERRY__FX_FAILURE, FERRY_EREMOTE},
	           {FERRY__FX_BAD_MESSAGE, FERRY_EINVALID},
	           {FERRY__FX_OP_UNSUPPORTED, FERRY_EUNSUPPORTED},
	           {FERRY__FX_CONNECTION_LOST, FERRY_ECONN},
	           {FERRY__FX_FILE_ALREADY_EXISTS, FERRY_EEXIST},
	           {FERRY__FX_NO_SPACE_ON_FILESYSTEM, FERRY_ENOSPACE},
	           {FERRY__FX_EOF, FERRY_EIO},
	           {9999, FERRY_EREMOTE}};
	size_t n = sizeof(map) / sizeof(map[0]);
	script s = sc_hello();
	for (size_t i = 0; i < n; i++)
		sc_status(&s, (uint32_t)(2 + i), map[i].code,
		          i == 0 ? "gone\x1b]0;pwned\x07" : "text");
	ferry__sftp *sf = started(&s, 0, 0);
	cap c[16];
	memset(c, 0, sizeof(c));
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(ferry__sftp_remove(sf, "p", cap_cb, &c[i]), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(c[i].error, map[i].error, "code %u", map[i].code);
		cr_assert_eq(c[i].status, map[i].code);
	}
	/* The server's text is kept, its control bytes made harmless. */
	cr_assert_str_eq(c[0].msg, "gone\\x1b]0;pwned\\x07");
	sc_free(&s, sf);
}

Test(sftp_proto, status_without_message)
{
	script s = sc_hello();
	size_t at = sc_begin(&s, FERRY__FXP_STATUS, 2);
	ferry__buf_put_u32(&s.b, FERRY__FX_PERMISSION_DENIED);
	sc_end(&s, at);
	ferry__sftp *sf = started(&s, 0, 0);
	cap c = {0};
	cr_assert_eq(ferry__sftp_remove(sf, "p", cap_cb, &c), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	cr_assert_eq(c.error, FERRY_EPERM);
	cr_assert_str_eq(c.msg, "SSH_FX_PERMISSION_DENIED");
	sc_free(&s, sf);
}

Test(sftp_proto, eof_status_on_read_and_readdir)
{
	script s = sc_hello();
	sc_status(&s, 2, FERRY__FX_EOF, "End of file");
	sc_status(&s, 3, FERRY__FX_EOF, "End of file");
	ferry__sftp *sf = started(&s, 0, 0);
	cap a = {0}, b = {0};
	ferry__sftp_handle h = {4, {0, 0, 0, 1}};
	cr_assert_eq(ferry__sftp_read(sf, &h, 0, 10, cap_cb, &a), 0);
	cr_assert_eq(ferry__sftp_readdir(sf, &h, cap_cb, &b), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	cr_assert(a.eof && !a.error);
	cr_assert(b.eof && !b.error);
	sc_free(&s, sf);
}

Test(sftp_proto, attrs_round_trip)
{
	ferry__sftp_attrs a = {FERRY__ATTR_SIZE | FERRY__ATTR_UIDGID |
	                               FERRY__ATTR_PERMISSIONS |
	                               FERRY__ATTR_ACMODTIME,
	                       1ull << 40,
	                       1000,
	                       1001,
	                       0100600,
	                       7,
	                       0xfffffffe};
	ferry_buf b = FERRY_BUF_INIT;
	cr_assert_eq(ferry__sftp_put_attrs(&b, &a), 0);
	cr_assert_eq(b.len, 4 + 8 + 8 + 4 + 8);
	ferry__sftp_attrs c;
	cr_assert_eq(ferry__sftp_get_attrs(&b, &c), 0);
	cr_assert_eq(c.flags, a.flags);
	cr_assert_eq(c.size, a.size);
	cr_assert_eq(c.uid, a.uid);
	cr_assert_eq(c.gid, a.gid);
	cr_assert_eq(c.perm, a.perm);
	cr_assert_eq(c.atime, a.atime);
	cr_assert_eq(c.mtime, a.mtime);
	cr_assert_eq(ferry__buf_avail(&b), 0);
	ferry__buf_free(&b);
	/* Only the flags given go out. */
	ferry__sftp_attrs p = {FERRY__ATTR_PERMISSIONS, 0, 0, 0, 0600, 0, 0};
	cr_assert_eq(ferry__sftp_put_attrs(&b, &p), 0);
	cr_assert_eq(b.len, 8);
	ferry__buf_free(&b);
}

Test(sftp_proto, frame_checks)
{
	uint8_t p[8] = {0, 0, 0, 4, 1, 2, 3, 4};
	size_t total = 0;
	cr_assert_eq(ferry__sftp_frame(p, 3, 100, &total), 0);
	cr_assert_eq(ferry__sftp_frame(p, 7, 100, &total), 0);
	cr_assert_eq(ferry__sftp_frame(p, 8, 100, &total), 1);
	cr_assert_eq(total, 8);
	cr_assert_eq(ferry__sftp_frame(p, 8, 3, &total), FERRY_EPROTO);
	uint8_t z[4] = {0};
	cr_assert_eq(ferry__sftp_frame(z, 4, 100, &total), FERRY_EPROTO);
}

Test(sftp_proto, sanitize)
{
	char out[16];
	ferry__sftp_sanitize(out, sizeof(out), (const uint8_t *)"ab\n\\\x01",
	                     5);
	cr_assert_str_eq(out, "ab\\n\\\\\\x01");
	ferry__sftp_sanitize(out, sizeof(out),
	                     (const uint8_t *)"0123456789abcdefghij", 20);
	cr_assert_str_eq(out, "0123456789ab...");
	ferry__sftp_sanitize(out, 1, (const uint8_t *)"x", 1);
	cr_assert_str_eq(out, "");
}

Test(sftp_proto, requests_above_the_packet_limit_refused)
{
	script s = sc_hello();
	ferry__sftp *sf = started(&s, 0, 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	static uint8_t big[40000];
	ferry__sftp_handle h = {4, {0}};
	cr_assert_eq(ferry__sftp_write(sf, &h, 0, big, sizeof(big), NULL, NULL),
	             FERRY_EINVALID);
	char path[70000];
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = 0;
	cr_assert_eq(ferry__sftp_stat(sf, path, NULL, NULL), FERRY_EINVALID);
	cr_assert_eq(ferry__sftp_pending(sf), 0);
	sc_free(&s, sf);
}

Test(sftp_proto, free_calls_pending_callbacks)
{
	script s = sc_hello();
	ferry__sftp *sf = started(&s, 0, 0);
	cap a = {0}, b = {0};
	cr_assert_eq(ferry__sftp_stat(sf, "a", cap_cb, &a), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), FERRY_ETIMEOUT);
	cr_assert_eq(ferry__sftp_stat(sf, "b", cap_cb, &b), 0);
	ferry__sftp_free(sf);
	cr_assert_eq(a.n, 1);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(a.error, FERRY_ECONN);
	ferry__buf_free(&s.b);
}

Test(sftp_proto, replies_in_any_order)
{
	script s = sc_hello();
	/* Three requests (ids 2, 3, 4), answered 4, 2, 3. */
	sc_status(&s, 4, FERRY__FX_PERMISSION_DENIED, "four");
	size_t at = sc_begin(&s, FERRY__FXP_ATTRS, 2);
	ferry__buf_put_u32(&s.b, FERRY__ATTR_SIZE);
	ferry__buf_put_u64(&s.b, 22);
	sc_end(&s, at);
	sc_status(&s, 3, FERRY__FX_NO_SUCH_FILE, "three");
	ferry__sftp *sf = started(&s, 0, 0);
	cap a = {0}, b = {0}, c = {0};
	cr_assert_eq(ferry__sftp_stat(sf, "a", cap_cb, &a), 0);
	cr_assert_eq(ferry__sftp_stat(sf, "b", cap_cb, &b), 0);
	cr_assert_eq(ferry__sftp_remove(sf, "c", cap_cb, &c), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	cr_assert_eq(a.error, 0);
	cr_assert_eq(b.error, FERRY_ENOTFOUND);
	cr_assert_str_eq(b.msg, "three");
	cr_assert_eq(c.error, FERRY_EPERM);
	cr_assert_str_eq(c.msg, "four");
	sc_free(&s, sf);
}

Test(sftp_proto, latency_replies_beyond_the_window_refused)
{
	script s = sc_hello();
	/* Far more than any request asked for. */
	for (uint32_t i = 0; i < 700; i++) {
		size_t at = sc_begin(&s, FERRY__FXP_DATA, 1000 + i);
		uint8_t junk[8192] = {0};
		ferry__buf_put_string(&s.b, junk, sizeof(junk));
		sc_end(&s, at);
	}
	ferry__sftp_opts o = {0};
	fx_sftp_latency(&o, 1);
	o.window_bytes = 65536;
	ferry__sftp *sf = sh_mem(s.b.data, s.b.len, 0, 0, &o);
	cr_assert_eq(ferry__sftp_start(sf), 0);
	int rc = ferry__sftp_run(sf, NULL, NULL, 0);
	cr_assert_eq(rc, FERRY_EPROTO, "%s", ferry_strerror(rc));
	cr_assert(strstr(ferry__sftp_errmsg(sf), "more than was asked"), "%s",
	          ferry__sftp_errmsg(sf));
	sc_free(&s, sf);
}
