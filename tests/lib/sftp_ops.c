/* Every SFTP operation against a real OpenSSH sftp-server child (the pipe
 * transport): success, and the error statuses it can give. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <unistd.h>

#include "alloc.h"
#include "fixture.h"
#include "sftp.h"
#include "sftp_helpers.h"

static ferry__sftp *sf;

static void setup(void)
{
	sh_dir_new("sftp-ops");
	sf = sh_pipe(NULL);
}

static void teardown(void)
{
	ferry__sftp_free(sf);
	sf = NULL;
	sh_dir_free();
}

TestSuite(sftp_ops, .init = setup, .fini = teardown, .timeout = 60);

static void put(const char *name, const char *text, mode_t mode)
{
	cr_assert_eq(fx_write_file(P("%s", name), text, strlen(text), mode), 0);
}

static char *get(const char *name)
{
	return fx_read_file(P("%s", name), NULL);
}

Test(sftp_ops, init_extensions_and_limits)
{
	unsigned want = FERRY__EXT_POSIX_RENAME | FERRY__EXT_STATVFS |
	                FERRY__EXT_FSTATVFS | FERRY__EXT_HARDLINK |
	                FERRY__EXT_FSYNC | FERRY__EXT_LSETSTAT |
	                FERRY__EXT_LIMITS | FERRY__EXT_COPY_DATA;
	cr_assert_eq(ferry__sftp_extensions(sf) & want, want, "ext %x",
	             ferry__sftp_extensions(sf));
	ferry__sftp_limits_info l;
	ferry__sftp_limits_get(sf, &l);
	cr_assert_eq(l.max_packet, 256 * 1024);
	cr_assert_eq(l.max_write, 255 * 1024);
	cr_assert_eq(l.max_read, 255 * 1024);
	cr_assert_gt(l.max_handles, 0);
	/* INIT and the limits request went together: one round trip. */
	cr_assert_eq(ferry__sftp_round_trips(sf), 1);
	cr_assert_gt(ferry__sftp_pipe_pid(sf), 0);
}

Test(sftp_ops, open_close)
{
	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_open_wait(sf, P("f"),
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                           FERRY__FXF_TRUNC,
	                                   NULL, &h),
	             0, "%s", ferry__sftp_errmsg(sf));
	cr_assert_eq(ferry__sftp_close_wait(sf, &h), 0);
	struct stat st;
	cr_assert_eq(stat(P("f"), &st), 0);

	int rc = ferry__sftp_open_wait(sf, P("missing"), FERRY__FXF_READ, NULL,
	                               &h);
	cr_assert_eq(rc, FERRY_ENOTFOUND);
	cr_assert(strstr(ferry__sftp_errmsg(sf), "No such file"), "%s",
	          ferry__sftp_errmsg(sf));
	cr_assert(strstr(ferry__sftp_errmsg(sf), "missing"));

	rc = ferry__sftp_open_wait(sf, P("nodir/f"),
	                           FERRY__FXF_WRITE | FERRY__FXF_CREAT, NULL,
	                           &h);
	cr_assert_eq(rc, FERRY_ENOTFOUND);

	rc = ferry__sftp_open_wait(sf, P("f"),
	                           FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                   FERRY__FXF_EXCL,
	                           NULL, &h);
	cr_assert_eq(rc, FERRY_EEXIST, "%s", ferry__sftp_errmsg(sf));
	cr_assert(strstr(ferry__sftp_errmsg(sf), "already exists"));

	/* A handle the server never gave. */
	ferry__sftp_handle bogus = {4, {0xde, 0xad, 0xbe, 0xef}};
	cr_assert_neq(ferry__sftp_close_wait(sf, &bogus), 0);
}

Test(sftp_ops, write_then_read_back)
{
	size_t n = 1000003;
	uint8_t *data = malloc(n), *back = malloc(n);
	sh_fill(data, n, 7);
	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_open_wait(sf, P("big"),
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT,
	                                   NULL, &h),
	             0);
	cr_assert_eq(ferry__sftp_write_wait(sf, &h, 0, data, n), 0, "%s",
	             ferry__sftp_errmsg(sf));
	/* Reading a write-only handle fails. */
	size_t got = 0;
	cr_assert_neq(ferry__sftp_read_wait(sf, &h, 0, back, 10, &got), 0);
	cr_assert_eq(ferry__sftp_close_wait(sf, &h), 0);

	cr_assert_eq(
	        ferry__sftp_open_wait(sf, P("big"), FERRY__FXF_READ, NULL, &h),
	        0);
	size_t off = 0;
	for (;;) {
		cr_assert_eq(ferry__sftp_read_wait(
		                     sf, &h, off, back + off,
		                     n - off < 100000 ? n - off : 100000, &got),
		             0);
		if (!got)
			break;
		off += got;
		if (off == n) {
			/* At the end: EOF. */
			uint8_t x;
			cr_assert_eq(
			        ferry__sftp_read_wait(sf, &h, off, &x, 1, &got),
			        0);
			cr_assert_eq(got, 0);
			break;
		}
	}
	cr_assert_eq(off, n);
	cr_assert_eq(memcmp(data, back, n), 0);
	cr_assert_eq(ferry__sftp_close_wait(sf, &h), 0);
	free(data);
	free(back);
}

Test(sftp_ops, stat_lstat_fstat)
{
	put("f", "hello", 0640);
	cr_assert_eq(symlink("f", P("l")), 0);
	ferry__sftp_attrs a;
	cr_assert_eq(ferry__sftp_stat_wait(sf, P("l"), &a), 0);
	cr_assert(S_ISREG(a.perm));
	cr_assert_eq(a.size, 5);
	cr_assert_eq(a.perm & 07777, 0640);
	cr_assert_eq(ferry__sftp_lstat_wait(sf, P("l"), &a), 0);
	cr_assert(S_ISLNK(a.perm));
	ferry__sftp_handle h;
	cr_assert_eq(
	        ferry__sftp_open_wait(sf, P("f"), FERRY__FXF_READ, NULL, &h),
	        0);
	cr_assert_eq(ferry__sftp_fstat_wait(sf, &h, &a), 0);
	cr_assert_eq(a.size, 5);
	cr_assert_eq(ferry__sftp_close_wait(sf, &h), 0);
	cr_assert_eq(ferry__sftp_stat_wait(sf, P("none"), &a), FERRY_ENOTFOUND);
	cr_assert_eq(ferry__sftp_lstat_wait(sf, P("none"), &a),
	             FERRY_ENOTFOUND);
	/* A dangling symlink: lstat yes, stat no. */
	cr_assert_eq(symlink("nowhere", P("dangling")), 0);
	cr_assert_eq(ferry__sftp_lstat_wait(sf, P("dangling"), &a), 0);
	cr_assert_eq(ferry__sftp_stat_wait(sf, P("dangling"), &a),
	             FERRY_ENOTFOUND);
	ferry__sftp_handle bogus = {4, {9, 9, 9, 9}};
	cr_assert_neq(ferry__sftp_fstat_wait(sf, &bogus, &a), 0);
}

Test(sftp_ops, setstat_fsetstat_lsetstat)
{
	put("f", "x", 0600);
	ferry__sftp_attrs a = {FERRY__ATTR_PERMISSIONS | FERRY__ATTR_ACMODTIME,
	                       0,
	                       0,
	                       0,
	                       0751,
	                       1000000000,
	                       1234567890};
	cr_assert_eq(ferry__sftp_setstat_wait(sf, P("f"), &a), 0);
	struct stat st;
	cr_assert_eq(stat(P("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0751);
	cr_assert_eq(st.st_mtime, 1234567890);
	cr_assert_eq(st.st_atime, 1000000000);
	cr_assert_eq(ferry__sftp_setstat_wait(sf, P("none"), &a),
	             FERRY_ENOTFOUND);

	ferry__sftp_handle h;
	cr_assert_eq(
	        ferry__sftp_open_wait(sf, P("f"), FERRY__FXF_WRITE, NULL, &h),
	        0);
	ferry__sftp_attrs b = {FERRY__ATTR_PERMISSIONS | FERRY__ATTR_SIZE,
	                       100,
	                       0,
	                       0,
	                       0604,
	                       0,
	                       0};
	cr_assert_eq(ferry__sftp_fsetstat_wait(sf, &h, &b), 0);
	cr_assert_eq(ferry__sftp_close_wait(sf, &h), 0);
	cr_assert_eq(stat(P("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0604);
	cr_assert_eq(st.st_size, 100);
	cr_assert_neq(ferry__sftp_fsetstat_wait(sf, &h, &b), 0); /* closed */

	/* lsetstat: the times of the link itself, its target untouched. */
	time_t target_mtime = st.st_mtime;
	cr_assert_eq(symlink("f", P("l")), 0);
	ferry__sftp_attrs t = {FERRY__ATTR_ACMODTIME, 0, 0, 0, 0, 500, 600};
	cr_assert_eq(ferry__sftp_lsetstat_wait(sf, P("l"), &t), 0, "%s",
	             ferry__sftp_errmsg(sf));
	cr_assert_eq(lstat(P("l"), &st), 0);
	cr_assert_eq(st.st_mtime, 600);
	cr_assert_eq(stat(P("f"), &st), 0);
	cr_assert_eq(st.st_mtime, target_mtime);
	cr_assert_eq(ferry__sftp_lsetstat_wait(sf, P("none"), &t),
	             FERRY_ENOTFOUND);
}

typedef struct rd_cap {
	int n, eof, x, y;
	unsigned names;
} rd_cap;

static void rd_cb(void *ctx, const ferry__sftp_reply *r)
{
	rd_cap *c = ctx;
	c->n++;
	cr_assert_eq(r->error, 0);
	c->eof += r->eof;
	c->names += r->count;
	for (uint32_t i = 0; i < r->count; i++) {
		c->x += !strcmp(r->names[i].name, "x");
		c->y += !strcmp(r->names[i].name, "y");
	}
}

Test(sftp_ops, mkdir_rmdir_opendir_readdir)
{
	ferry__sftp_attrs a = {FERRY__ATTR_PERMISSIONS, 0, 0, 0, 0700, 0, 0};
	cr_assert_eq(ferry__sftp_mkdir_wait(sf, P("d"), &a), 0);
	struct stat st;
	cr_assert_eq(stat(P("d"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0700);
	cr_assert_eq(ferry__sftp_mkdir_wait(sf, P("d"), NULL), FERRY_EEXIST,
	             "%s", ferry__sftp_errmsg(sf));
	cr_assert_eq(ferry__sftp_mkdir_wait(sf, P("no/d"), NULL),
	             FERRY_ENOTFOUND);
	put("d/x", "1", 0644);
	put("d/y", "2", 0644);
	int rc = ferry__sftp_rmdir_wait(sf, P("d"));
	cr_assert(rc == FERRY_EREMOTE || rc == FERRY_EEXIST, "%s",
	          ferry_strerror(rc));
	cr_assert_eq(ferry__sftp_rmdir_wait(sf, P("none")), FERRY_ENOTFOUND);

	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_opendir_wait(sf, P("d"), &h), 0);
	/* READDIR by hand: names ("." and ".." too), then EOF. */
	rd_cap c = {0};
	cr_assert_eq(ferry__sftp_readdir(sf, &h, rd_cb, &c), 0);
	cr_assert_eq(ferry__sftp_readdir(sf, &h, rd_cb, &c), 0);
	cr_assert_eq(ferry__sftp_run(sf, NULL, NULL, 0), 0);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.names, 4);
	cr_assert_eq(c.eof, 1);
	cr_assert_eq(c.x + c.y, 2);
	int seen = 0;
	ferry__sftp_dirent *ents;
	size_t n;
	cr_assert_eq(ferry__sftp_list_wait(sf, P("d"), &ents, &n), 0);
	cr_assert_eq(n, 2);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(ents[i].name, "x") || !strcmp(ents[i].name, "y"))
			seen++;
		cr_assert(S_ISREG(ents[i].attrs.perm));
		cr_assert_eq(ents[i].attrs.size, 1);
	}
	ferry__sftp_dirents_free(ents, n);
	cr_assert_eq(seen, 2);
	cr_assert_eq(ferry__sftp_close_wait(sf, &h), 0);
	cr_assert_eq(ferry__sftp_opendir_wait(sf, P("none"), &h),
	             FERRY_ENOTFOUND);
	cr_assert_neq(ferry__sftp_opendir_wait(sf, P("d/x"), &h), 0);

	cr_assert_eq(unlink(P("d/x")), 0);
	cr_assert_eq(unlink(P("d/y")), 0);
	cr_assert_eq(ferry__sftp_rmdir_wait(sf, P("d")), 0);
	cr_assert_neq(stat(P("d"), &st), 0);
}

Test(sftp_ops, remove)
{
	put("f", "x", 0644);
	cr_assert_eq(ferry__sftp_remove_wait(sf, P("f")), 0);
	cr_assert_neq(access(P("f"), F_OK), 0);
	cr_assert_eq(ferry__sftp_remove_wait(sf, P("f")), FERRY_ENOTFOUND);
	cr_assert_eq(mkdir(P("d"), 0755), 0);
	cr_assert_neq(ferry__sftp_remove_wait(sf, P("d")), 0);
	/* A symlink is removed, not its target. */
	put("t", "keep", 0644);
	cr_assert_eq(symlink("t", P("l")), 0);
	cr_assert_eq(ferry__sftp_remove_wait(sf, P("l")), 0);
	cr_assert_eq(access(P("t"), F_OK), 0);
}

Test(sftp_ops, realpath)
{
	char *out = NULL;
	cr_assert_eq(mkdir(P("a"), 0755), 0);
	cr_assert_eq(ferry__sftp_realpath_wait(sf, P("a/../a/."), &out), 0);
	char *want = realpath(P("a"), NULL);
	cr_assert_str_eq(out, want);
	free(want);
	ferry__free(out);
	cr_assert_eq(ferry__sftp_realpath_wait(sf, ".", &out), 0);
	cr_assert_eq(out[0], '/');
	ferry__free(out);
	cr_assert_eq(ferry__sftp_realpath_wait(sf, P("none/x"), &out),
	             FERRY_ENOTFOUND);
}

Test(sftp_ops, rename_never_replaces)
{
	put("a", "A", 0644);
	put("b", "B", 0644);
	cr_assert_eq(ferry__sftp_rename_wait(sf, P("a"), P("b")), FERRY_EEXIST,
	             "%s", ferry__sftp_errmsg(sf));
	char *a = get("a"), *b = get("b");
	cr_assert_str_eq(a, "A");
	cr_assert_str_eq(b, "B");
	free(a);
	free(b);
	cr_assert_eq(ferry__sftp_rename_wait(sf, P("a"), P("c")), 0);
	cr_assert_neq(access(P("a"), F_OK), 0);
	cr_assert_eq(ferry__sftp_rename_wait(sf, P("none"), P("d")),
	             FERRY_ENOTFOUND);
}

Test(sftp_ops, posix_rename_replaces_atomically)
{
	put("new", "NEW", 0600);
	put("old", "OLD", 0644);
	struct stat before, after;
	cr_assert_eq(stat(P("new"), &before), 0);
	cr_assert_eq(ferry__sftp_posix_rename_wait(sf, P("new"), P("old")), 0,
	             "%s", ferry__sftp_errmsg(sf));
	char *t = get("old");
	cr_assert_str_eq(t, "NEW");
	free(t);
	cr_assert_eq(stat(P("old"), &after), 0);
	/* The same inode moved: rename(2), not a copy. */
	cr_assert_eq(before.st_ino, after.st_ino);
	cr_assert_eq(after.st_mode & 07777, 0600);
	cr_assert_neq(access(P("new"), F_OK), 0);
	cr_assert_eq(ferry__sftp_posix_rename_wait(sf, P("none"), P("old")),
	             FERRY_ENOTFOUND);
}

Test(sftp_ops, symlink_in_openssh_order_and_readlink)
{
	put("target", "T", 0644);
	cr_assert_eq(ferry__sftp_symlink_wait(sf, P("link"), "target"),
	             FERRY_EUNSUPPORTED,
	             "no SYMLINK while the order is unknown");
	cr_assert_eq(ferry__sftp_probe_symlinks_wait(sf, sh_dir), 0, "%s",
	             ferry__sftp_errmsg(sf));
	cr_assert(ferry__sftp_symlink_rename_safe(sf));
	/* OpenSSH's READLINK returns the link's text: the probe saw it, so a
	 * target joined to the link's directory is another target. */
	cr_assert(ferry__sftp_link_same(sf, "d/l", "f", 1, "f", 1));
	cr_assert_not(ferry__sftp_link_same(sf, "d/l", "d/f", 3, "f", 1));
	/* The probe's names are gone; only the test's file is there. */
	char *ls = fx_sh_out("ls -A '%s'", sh_dir);
	cr_assert_str_eq(ls, "target\n");
	free(ls);
	cr_assert_eq(ferry__sftp_symlink_wait(sf, P("link"), "target"), 0, "%s",
	             ferry__sftp_errmsg(sf));
	char buf[256];
	ssize_t n = readlink(P("link"), buf, sizeof(buf) - 1);
	cr_assert_eq(n, 6);
	buf[n] = 0;
	cr_assert_str_eq(buf, "target");
	char *out = NULL;
	cr_assert_eq(ferry__sftp_readlink_wait(sf, P("link"), &out), 0);
	cr_assert_str_eq(out, "target");
	ferry__free(out);
	cr_assert_eq(ferry__sftp_symlink_wait(sf, P("link"), "other"),
	             FERRY_EEXIST, "%s", ferry__sftp_errmsg(sf));
	cr_assert_neq(ferry__sftp_readlink_wait(sf, P("target"), &out), 0);
	cr_assert_eq(ferry__sftp_readlink_wait(sf, P("none"), &out),
	             FERRY_ENOTFOUND);
	cr_assert_eq(ferry__sftp_symlink_wait(sf, P("no/l"), "t"),
	             FERRY_ENOTFOUND);
}

Test(sftp_ops, hardlink)
{
	put("a", "A", 0644);
	cr_assert_eq(ferry__sftp_hardlink_wait(sf, P("a"), P("b")), 0);
	struct stat sa, sb;
	cr_assert_eq(stat(P("a"), &sa), 0);
	cr_assert_eq(stat(P("b"), &sb), 0);
	cr_assert_eq(sa.st_ino, sb.st_ino);
	cr_assert_eq(ferry__sftp_hardlink_wait(sf, P("a"), P("b")),
	             FERRY_EEXIST);
	cr_assert_eq(ferry__sftp_hardlink_wait(sf, P("none"), P("c")),
	             FERRY_ENOTFOUND);
}

Test(sftp_ops, fsync)
{
	ferry__sftp_handle h;
	cr_assert_eq(ferry__sftp_open_wait(sf, P("f"),
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT,
	                                   NULL, &h),
	             0);
	cr_assert_eq(ferry__sftp_write_wait(sf, &h, 0, "abc", 3), 0);
	cr_assert_eq(ferry__sftp_fsync_wait(sf, &h), 0);
	cr_assert_eq(ferry__sftp_close_wait(sf, &h), 0);
	cr_assert_neq(ferry__sftp_fsync_wait(sf, &h), 0);
}

Test(sftp_ops, statvfs)
{
	ferry__sftp_vfs_info v;
	struct statvfs want;
	cr_assert_eq(ferry__sftp_statvfs_wait(sf, sh_dir, &v), 0);
	cr_assert_eq(statvfs(sh_dir, &want), 0);
	cr_assert_eq(v.bsize, want.f_bsize);
	cr_assert_eq(v.blocks, want.f_blocks);
	cr_assert_eq(v.namemax, want.f_namemax);
	cr_assert_eq(ferry__sftp_statvfs_wait(sf, P("none"), &v),
	             FERRY_ENOTFOUND);
}

Test(sftp_ops, copy_data)
{
	size_t n = 300000;
	uint8_t *data = malloc(n);
	sh_fill(data, n, 3);
	cr_assert_eq(fx_write_file(P("src"), data, n, 0644), 0);
	ferry__sftp_handle r, w;
	cr_assert_eq(
	        ferry__sftp_open_wait(sf, P("src"), FERRY__FXF_READ, NULL, &r),
	        0);
	cr_assert_eq(ferry__sftp_open_wait(sf, P("dst"),
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT,
	                                   NULL, &w),
	             0);
	cr_assert_eq(ferry__sftp_copy_data_wait(sf, &r, 0, 0, &w, 0), 0, "%s",
	             ferry__sftp_errmsg(sf));
	cr_assert_eq(ferry__sftp_close_wait(sf, &r), 0);
	cr_assert_eq(ferry__sftp_close_wait(sf, &w), 0);
	size_t got = 0;
	char *back = fx_read_file(P("dst"), &got);
	cr_assert_eq(got, n);
	cr_assert_eq(memcmp(back, data, n), 0);
	free(back);
	free(data);
	ferry__sftp_handle bogus = {4, {7, 7, 7, 7}};
	cr_assert_neq(ferry__sftp_copy_data_wait(sf, &bogus, 0, 0, &bogus, 0),
	              0);
}

typedef struct lim_cap {
	int n, error;
	ferry__sftp_limits_info l;
} lim_cap;

static void lim_cb(void *ctx, const ferry__sftp_reply *r)
{
	lim_cap *c = ctx;
	c->n++;
	c->error = r->error;
	if (r->limits)
		c->l = *r->limits;
}

static int lim_done(void *ctx)
{
	return ((lim_cap *)ctx)->n > 0;
}

Test(sftp_ops, limits_asked_again)
{
	lim_cap c = {0};
	cr_assert_eq(ferry__sftp_limits(sf, lim_cb, &c), 0);
	cr_assert_eq(ferry__sftp_run(sf, lim_done, &c, 0), 0);
	cr_assert_eq(c.error, 0);
	cr_assert_eq(c.l.max_packet, 256 * 1024);
	cr_assert_eq(c.l.max_write, 255 * 1024);
}

Test(sftp_ops, read_small)
{
	put("m", "0123456789abcdef", 0644);
	char *out = NULL;
	size_t n = 0;
	uint64_t rt0 = ferry__sftp_round_trips(sf);
	cr_assert_eq(ferry__sftp_read_small_wait(sf, P("m"), 4096, &out, &n),
	             0);
	/* LSTAT; OPEN; READ + CLOSE */
	cr_assert_eq(ferry__sftp_round_trips(sf) - rt0, 3);
	cr_assert_eq(n, 16);
	cr_assert_str_eq(out, "0123456789abcdef");
	ferry__free(out);
	cr_assert_eq(ferry__sftp_read_small_wait(sf, P("m"), 4, &out, &n), 0);
	cr_assert_eq(n, 4);
	ferry__free(out);
	put("empty", "", 0644);
	cr_assert_eq(ferry__sftp_read_small_wait(sf, P("empty"), 10, &out, &n),
	             0);
	cr_assert_eq(n, 0);
	ferry__free(out);
	cr_assert_eq(ferry__sftp_read_small_wait(sf, P("none"), 10, &out, &n),
	             FERRY_ENOTFOUND);
	cr_assert(strstr(ferry__sftp_errmsg(sf), "lstat "), "%s",
	          ferry__sftp_errmsg(sf));
	cr_assert_null(out);
	/* Neither a fifo nor a symlink is opened: sftp-server would block
	 * in open() of a fifo with no writer. */
	cr_assert_eq(mkfifo(P("fifo"), 0644), 0);
	cr_assert_eq(ferry__sftp_read_small_wait(sf, P("fifo"), 10, &out, &n),
	             FERRY_EEXIST);
	cr_assert(strstr(ferry__sftp_errmsg(sf), "not a regular file (a fifo)"),
	          "%s", ferry__sftp_errmsg(sf));
	cr_assert_null(out);
	cr_assert_eq(symlink("m", P("link")), 0);
	cr_assert_eq(ferry__sftp_read_small_wait(sf, P("link"), 10, &out, &n),
	             FERRY_EEXIST);
	cr_assert(strstr(ferry__sftp_errmsg(sf), "a symlink"), "%s",
	          ferry__sftp_errmsg(sf));
}

static void list_case(size_t count)
{
	char sub[64];
	snprintf(sub, sizeof(sub), "d%zu", count);
	cr_assert_eq(mkdir(P("%s", sub), 0755), 0);
	for (size_t i = 0; i < count; i++) {
		char name[128];
		snprintf(name, sizeof(name), "%s/entry-%05zu", sub, i);
		put(name, "", 0644);
	}
	uint64_t rt0 = ferry__sftp_round_trips(sf);
	ferry__sftp_dirent *ents;
	size_t n;
	cr_assert_eq(ferry__sftp_list_wait(sf, P("%s", sub), &ents, &n), 0,
	             "%s", ferry__sftp_errmsg(sf));
	uint64_t rts = ferry__sftp_round_trips(sf) - rt0;
	cr_assert_eq(n, count);
	char *seen = calloc(count + 1, 1);
	for (size_t i = 0; i < n; i++) {
		unsigned k;
		cr_assert_eq(sscanf(ents[i].name, "entry-%05u", &k), 1);
		cr_assert_lt(k, count);
		cr_assert_eq(seen[k], 0, "twice: %s", ents[i].name);
		seen[k] = 1;
	}
	free(seen);
	ferry__sftp_dirents_free(ents, n);
	if (count <= 290)
		cr_assert_eq(rts, 2, "%zu entries: %llu round trips", count,
		             (unsigned long long)rts);
	cr_log_info("list of %zu entries: %llu round trips", count,
	            (unsigned long long)rts);
}

Test(sftp_ops, list_directories)
{
	list_case(0);
	list_case(5);
	list_case(250);
	list_case(290);
	list_case(1234);
	ferry__sftp_dirent *ents;
	size_t n;
	cr_assert_eq(ferry__sftp_list_wait(sf, P("none"), &ents, &n),
	             FERRY_ENOTFOUND);
	cr_assert(strstr(ferry__sftp_errmsg(sf), "opendir"));
}

Test(sftp_ops, permission_denied)
{
	if (!sh_is_root())
		cr_skip_test("needs root to run sftp-server as nobody");
	/* The server runs as nobody; the directory belongs to root. */
	static const char *const argv[] = {"/usr/bin/setpriv", "--reuid=65534",
	                                   "--regid=65534",    "--clear-groups",
	                                   SFTP_SERVER,        NULL};
	ferry__sftp *nb = sh_pipe_argv(argv, NULL);
	cr_assert_eq(chmod(sh_dir, 0755), 0);
	put("f", "secret", 0600);
	ferry__sftp_handle h;
	int rc = ferry__sftp_open_wait(nb, P("f"), FERRY__FXF_READ, NULL, &h);
	cr_assert_eq(rc, FERRY_EPERM, "%s", ferry_strerror(rc));
	cr_assert(strstr(ferry__sftp_errmsg(nb), "Permission denied"), "%s",
	          ferry__sftp_errmsg(nb));
	cr_assert_eq(ferry__sftp_mkdir_wait(nb, P("d"), NULL), FERRY_EPERM);
	cr_assert_eq(ferry__sftp_remove_wait(nb, P("f")), FERRY_EPERM);
	cr_assert_eq(ferry__sftp_open_wait(nb, P("new"),
	                                   FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                           FERRY__FXF_EXCL,
	                                   NULL, &h),
	             FERRY_EPERM);
	cr_assert_eq(ferry__sftp_rename_wait(nb, P("f"), P("g")), FERRY_EPERM);
	ferry__sftp_attrs a = {FERRY__ATTR_PERMISSIONS, 0, 0, 0, 0777, 0, 0};
	cr_assert_eq(ferry__sftp_setstat_wait(nb, P("f"), &a), FERRY_EPERM);
	ferry__sftp_free(nb);
}

Test(sftp_ops, upload_block)
{
	const char *text = "credential=1\n";
	put("final", "old content", 0644);
	ferry__sftp_upload_opts o = {.path = P(".final.ferry-abc123"),
	                             .has_perm = 1,
	                             .perm = 0600,
	                             .data = text,
	                             .size = strlen(text),
	                             .has_attrs = 1};
	o.attrs.flags = FERRY__ATTR_ACMODTIME | FERRY__ATTR_PERMISSIONS;
	o.attrs.perm = 0600;
	o.attrs.atime = o.attrs.mtime = 1700000000;
	o.fsync = 1;
	o.rename_to = P("final");
	uint64_t rt0 = ferry__sftp_round_trips(sf);
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(sf));
	cr_assert_eq(ferry__sftp_round_trips(sf) - rt0, 3);
	cr_assert(r.fsynced);
	cr_assert(r.renamed);
	cr_assert(!r.rename_fallback);
	cr_assert_eq(r.bytes, strlen(text));
	char *t = get("final");
	cr_assert_str_eq(t, text);
	free(t);
	struct stat st;
	cr_assert_eq(stat(P("final"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(st.st_mtime, 1700000000);
	cr_assert_neq(access(o.path, F_OK), 0);

	/* An empty file, no rename: 2 round trips. */
	ferry__sftp_upload_opts e = {.path = P("empty")};
	rt0 = ferry__sftp_round_trips(sf);
	cr_assert_eq(ferry__sftp_upload_wait(sf, &e, &r), 0);
	cr_assert_eq(ferry__sftp_round_trips(sf) - rt0, 2);
	cr_assert_eq(stat(P("empty"), &st), 0);
	cr_assert_eq(st.st_size, 0);

	/* Into a missing directory: fails at open. */
	e.path = P("missing/x");
	cr_assert_eq(ferry__sftp_upload_wait(sf, &e, &r), FERRY_ENOTFOUND);
	cr_assert_str_eq(r.step, "open");

	/* Bad arguments. */
	e.path = NULL;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &e, &r), FERRY_EINVALID);
	ferry__sftp_upload_opts two = {
	        .path = P("two"), .data = text, .use_fd = 1, .size = 1};
	cr_assert_eq(ferry__sftp_upload_wait(sf, &two, &r), FERRY_EINVALID);
}

static int read_fail(void *rctx, void *buf, size_t n, uint64_t off)
{
	(void)rctx;
	(void)buf;
	(void)n;
	return off >= 300000 ? FERRY_EIO : 0;
}

Test(sftp_ops, upload_local_read_failure_removes_temp)
{
	put("final", "keep me", 0644);
	ferry__sftp_upload_opts o = {.path = P(".final.ferry-tmp"),
	                             .read = read_fail,
	                             .size = 1000000,
	                             .rename_to = P("final"),
	                             .remove_on_error = 1};
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EIO);
	cr_assert_str_eq(r.step, "read");
	cr_assert(r.removed);
	cr_assert(!r.renamed);
	cr_assert_neq(access(o.path, F_OK), 0);
	char *t = get("final");
	cr_assert_str_eq(t, "keep me");
	free(t);
}

Test(sftp_ops, upload_from_fd_that_shrinks)
{
	put("src", "short", 0644);
	int fd = open(P("src"), O_RDONLY);
	cr_assert_geq(fd, 0);
	ferry__sftp_upload_opts o = {.path = P("dst"), .use_fd = 1, .fd = fd};
	o.size = 100; /* the scan saw 100 bytes; the file has 5 now */
	o.remove_on_error = 1;
	ferry__sftp_upload_result r;
	cr_assert_eq(ferry__sftp_upload_wait(sf, &o, &r), FERRY_EIO);
	cr_assert_str_eq(r.step, "read");
	cr_assert(strstr(ferry__sftp_errmsg(sf), "shrank"), "%s",
	          ferry__sftp_errmsg(sf));
	cr_assert_neq(access(P("dst"), F_OK), 0);
	close(fd);
}

/* A server that ignores the permissions of OPEN (tests/sftp_noperm.py in
 * front of sftp-server): an upload of a file others may not read sets the
 * mode again and checks it before its first byte; when the server will
 * not have it at all, nothing is written and the temp is removed. */
Test(sftp_ops, upload_confirms_the_mode_before_writing)
{
	static const char *const argv[] = {"/usr/bin/python3",
	                                   FERRY_SRCDIR "/tests/sftp_noperm.py",
	                                   SFTP_SERVER, NULL};
	static const char *const argv_all[] = {
	        "/usr/bin/python3", FERRY_SRCDIR "/tests/sftp_noperm.py",
	        "--setstat-too", SFTP_SERVER, NULL};
	const char *text = "secret=1\n";
	ferry__sftp_upload_opts o = {.path = P(".c.ferry-aaaaaa"),
	                             .has_perm = 1,
	                             .perm = 0600,
	                             .confirm_perm = 1,
	                             .remove_on_error = 1,
	                             .data = text,
	                             .size = strlen(text),
	                             .rename_to = P("cred")};
	ferry__sftp_upload_result r;
	/* Without the check the server would make it 0644. */
	ferry__sftp *np = sh_pipe_argv(argv, NULL);
	ferry__sftp_upload_opts plain = o;
	plain.confirm_perm = 0;
	plain.path = P(".p.ferry-aaaaaa");
	plain.rename_to = P("plain");
	cr_assert_eq(ferry__sftp_upload_wait(np, &plain, &r), 0, "%s",
	             ferry__sftp_errmsg(np));
	struct stat st;
	cr_assert_eq(stat(P("plain"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0644, "the filter let 0600 through");
	cr_assert_eq(ferry__sftp_upload_wait(np, &o, &r), 0, "%s",
	             ferry__sftp_errmsg(np));
	cr_assert_eq(stat(P("cred"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	char *t = get("cred");
	cr_assert_str_eq(t, text);
	free(t);
	ferry__sftp_free(np);

	ferry__sftp *ns = sh_pipe_argv(argv_all, NULL);
	o.path = P(".d.ferry-aaaaaa");
	o.rename_to = P("cred2");
	int rc = ferry__sftp_upload_wait(ns, &o, &r);
	cr_assert_eq(rc, FERRY_EPERM, "%s", ferry_strerror(rc));
	cr_assert(strstr(ferry__sftp_errmsg(ns), "mode 0644, not 0600"), "%s",
	          ferry__sftp_errmsg(ns));
	cr_assert(r.removed);
	cr_assert_neq(access(P("cred2"), F_OK), 0);
	cr_assert_neq(access(o.path, F_OK), 0);
	ferry__sftp_free(ns);
}
