/* fuzz_sftp.c - libFuzzer target for everything the SFTP client reads from
 * a server: framing, VERSION, every reply type, and the client's dispatch
 * (ids, generations, handle slots, disambiguation, the building blocks).
 *
 * Input: byte 0 selects options (chunking of the stream, extensions
 * ignored, cancel or not); the rest is what the "server" sends.  A fixed
 * set of requests is submitted first (ids 2.., after the limits request
 * with id 1), so that seeds can answer them; see corpus/fuzz_sftp/. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "sftp.h"
#include "sftp_int.h"
#include "sftp_proto.h"
#include "sftp_mem.h"

static ferry__sftp_handle handle;
static int have_handle;

static void any_cb(void *ctx, const ferry__sftp_reply *r)
{
	(void)ctx;
	/* Touch what the reply points to, as a caller would. */
	volatile size_t sink = strlen(r->message);
	if (r->handle) {
		handle = *r->handle;
		have_handle = 1;
	}
	if (r->data && r->data_len)
		sink += r->data[r->data_len - 1];
	for (uint32_t i = 0; i < r->count; i++)
		sink += strlen(r->names[i].name) + strlen(r->names[i].longname);
	(void)sink;
}

static void up_cb(void *ctx, const ferry__sftp_upload_result *r)
{
	(void)ctx;
	volatile size_t sink = strlen(r->message);
	(void)sink;
}

static void small_cb(void *ctx, int err, const char *msg, const uint8_t *data,
                     size_t len, int truncated)
{
	(void)ctx;
	(void)err;
	(void)truncated;
	volatile size_t sink = strlen(msg);
	if (len)
		sink += data[len - 1];
	(void)sink;
}

static void list_cb(void *ctx, int err, const char *msg,
                    const ferry__sftp_dirent *ents, size_t n)
{
	(void)ctx;
	(void)err;
	volatile size_t sink = strlen(msg);
	for (size_t i = 0; i < n; i++)
		sink += strlen(ents[i].name);
	(void)sink;
}

static int dl_opened(void *ctx)
{
	(void)ctx;
	return 0;
}

static int dl_data(void *ctx, uint64_t off, const uint8_t *p, size_t n)
{
	(void)ctx;
	volatile size_t sink = (size_t)off;
	if (n)
		sink += p[0] + p[n - 1];
	(void)sink;
	return 0;
}

static void dl_done(void *ctx, const ferry__sftp_download_result *r)
{
	(void)ctx;
	volatile size_t sink = strlen(r->message);
	(void)sink;
}

static void parse_all(const uint8_t *p, size_t n)
{
	static const uint8_t types[] = {
	        FERRY__FXP_OPEN,    FERRY__FXP_READ,     FERRY__FXP_STAT,
	        FERRY__FXP_READDIR, FERRY__FXP_REALPATH, FERRY__FXP_READLINK,
	        FERRY__FXP_REMOVE,  FERRY__FXP_EXTENDED};
	for (size_t i = 0; i < sizeof(types); i++) {
		for (int k = 0; k <= FERRY__XK_LIMITS; k++) {
			ferry__sftp_parsed r;
			if (!ferry__sftp_parse_reply(p, n, types[i], k, &r))
				ferry__sftp_parsed_free(&r);
			if (types[i] != FERRY__FXP_EXTENDED)
				break;
		}
	}
	ferry__sftp_version v;
	ferry__sftp_parse_version(p, n, &v);
	char text[64];
	ferry__sftp_sanitize(text, sizeof(text), p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t opt = data[0];
	data++;
	size--;
	parse_all(data, size);

	static const size_t chunks[4] = {0, 1, 7, 4096};
	fx_mem_tr *m = fx_mem_new(data, size, chunks[opt & 3], 1);
	if (!m)
		return 0;
	ferry__sftp_opts o;
	memset(&o, 0, sizeof(o));
	if (opt & 0x04)
		o.ignore_ext = FERRY__EXT_POSIX_RENAME | FERRY__EXT_STATVFS;
	if (opt & 0x08)
		o.max_handles = 1;
	if (opt & 0x10)
		o.window_bytes = 1024;
	ferry__sftp *sf = NULL;
	if (ferry__sftp_new(&sf, &m->t, NULL, &o))
		return 0;
	have_handle = 0;
	memset(&handle, 0, sizeof(handle));
	ferry__sftp_handle h = {4, {0, 0, 0, 0}};
	ferry__sftp_attrs a = {FERRY__ATTR_PERMISSIONS | FERRY__ATTR_ACMODTIME,
	                       0,
	                       0,
	                       0,
	                       0644,
	                       1,
	                       2};
	ferry__sftp_start(sf);
	ferry__sftp_stat(sf, "a", any_cb, NULL);  /* 2 */
	ferry__sftp_lstat(sf, "a", any_cb, NULL); /* 3 */
	ferry__sftp_open(sf, "f",
	                 FERRY__FXF_WRITE | FERRY__FXF_CREAT | FERRY__FXF_EXCL,
	                 &a, any_cb, NULL);                    /* 4 */
	ferry__sftp_opendir(sf, "d", any_cb, NULL);            /* 5 */
	ferry__sftp_read(sf, &h, 0, 1000, any_cb, NULL);       /* 6 */
	ferry__sftp_readdir(sf, &h, any_cb, NULL);             /* 7 */
	ferry__sftp_realpath(sf, ".", any_cb, NULL);           /* 8 */
	ferry__sftp_readlink(sf, "l", any_cb, NULL);           /* 9 */
	ferry__sftp_statvfs(sf, "/", any_cb, NULL);            /* 10 */
	ferry__sftp_limits(sf, any_cb, NULL);                  /* 11 */
	ferry__sftp_posix_rename(sf, "a", "b", any_cb, NULL);  /* 12 */
	ferry__sftp_mkdir(sf, "x/d", &a, any_cb, NULL);        /* 13 */
	ferry__sftp_write(sf, &h, 0, "data", 4, any_cb, NULL); /* 14 */
	ferry__sftp_fstat(sf, &h, any_cb, NULL);               /* 15 */
	ferry__sftp_close(sf, &h, any_cb, NULL);               /* 16 */
	ferry__sftp_upload_opts u;
	memset(&u, 0, sizeof(u));
	u.path = "dir/.t.ferry-1";
	u.rename_to = "dir/t";
	u.data = "0123456789abcdef0123456789abcdef";
	u.size = 32;
	u.has_perm = 1;
	u.perm = 0600;
	u.has_attrs = 1;
	u.attrs = a;
	u.fsync = 1;
	u.remove_on_error = 1;
	u.done = up_cb;
	ferry__sftp_upload(sf, &u);                               /* 17 */
	ferry__sftp_read_small(sf, "marker", 64, small_cb, NULL); /* 18 */
	ferry__sftp_list(sf, "dir", list_cb, NULL);               /* 19 */
	ferry__sftp_download_opts dl = {.path = "got",
	                                .size = 70000,
	                                .window = 40000,
	                                .opened = dl_opened,
	                                .data = dl_data,
	                                .done = dl_done};
	ferry__sftp_download(sf, &dl); /* 20 */

	ferry__sftp_run(sf, NULL, NULL, 0);
	if (have_handle && !ferry__sftp_dead(sf)) {
		ferry__sftp_close(sf, &handle, any_cb, NULL);
		ferry__sftp_run(sf, NULL, NULL, 0);
	}
	if (opt & 0x20)
		ferry__sftp_cancel_all(sf, FERRY_EINTR);
	ferry__sftp_free(sf);
	return 0;
}
