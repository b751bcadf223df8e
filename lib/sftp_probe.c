/* sftp_probe.c - what a server does with symlinks, found out once per
 * client with names the caller owns (see ferry__sftp_probe_symlinks in
 * sftp.h).
 *
 * The argument order of SYMLINK.  OpenSSH reads (target, linkpath), the
 * draft (linkpath, target); a server may say which
 * (symlink-order@rjk.greenend.org.uk), asyncssh picks one from the
 * client's banner, others say nothing.  Guessing wrong creates a link at
 * the path the caller meant as the target, which may lie anywhere, so the
 * order is never guessed: with F an existing file (OPENed with
 * CREAT|EXCL in the same pipeline), SYMLINK(F, A) creates A -> F in the
 * target-first order and fails in the other (F exists), SYMLINK(B, F) the
 * reverse; READLINK A and READLINK B say which one made a link (not LSTAT:
 * ProFTPD's follows a link whose target exists).  Every path named is one
 * of the caller's, so nothing lands anywhere else.
 *
 * Renaming a symlink.  ProFTPD's mod_sftp renames a link's target, not
 * the link, when the target exists.  Once the order is known: L -> "F"
 * (relative: F is beside it, so the link resolves), RENAME L to R,
 * READLINK R: a link is a server that renames links; none after a rename
 * that succeeded is one that moved F.
 * READLINK L before the rename says how READLINK answers: "F" as made, or
 * (ProFTPD) F joined to L's directory as named.
 *
 * Then every name is removed (a failure there is left to the caller's
 * journal of temporary names). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "sftp_int.h"

typedef struct probe {
	ferry__sftp *sf;
	void (*done)(void *ctx, int finished);
	void *ctx;
	char *name[FERRY__PROBE_NAMES];
	int pending;
	int f_ok;       /* F was created */
	int order_left; /* READLINKs of A and B unanswered */
	int raw_failed; /* SYMLINKs of the order test that failed */
	int rename_sent;
	int rename_failed;           /* R holds no answer */
	char msg[FERRY_ERRMSG_SIZE]; /* the server's text for a failure */
} probe;

enum { P_F, P_A, P_B, P_L, P_R };

static void probe_note(probe *j, const char *what, const ferry__sftp_reply *r)
{
	if (!j->msg[0])
		snprintf(j->msg, sizeof(j->msg), "%s: %s", what, r->message);
}

static void probe_finish(probe *j)
{
	ferry__sftp *sf = j->sf;
	/* Without F nothing was tried (its directory may be missing): a
	 * later call tries again.  With it, what is still unknown stays
	 * so: no symlinks, or none renamed. */
	if (j->f_ok && !sf->symlink_order)
		sf->symlink_order = FERRY__SYMLINK_FAILED;
	if (j->f_ok && !sf->symlink_rename)
		sf->symlink_rename = FERRY__SYMLINK_RENAME_UNSAFE;
	ferry__sftp__textcpy(sf->symlink_msg, sizeof(sf->symlink_msg),
	                     j->msg[0] ? j->msg : "the server made no symlink");
	for (int i = 0; i < FERRY__PROBE_NAMES; i++)
		ferry__free(j->name[i]);
	void (*done)(void *, int) = j->done;
	void *ctx = j->ctx;
	ferry__free(j);
	sf->jobs--;
	done(ctx, 1);
}

static void probe_drop(probe *j)
{
	if (!--j->pending)
		probe_finish(j);
}

static void probe_sent(probe *j, int rc)
{
	if (!rc)
		j->pending++;
}

static void ignore_cb(void *ctx, const ferry__sftp_reply *r)
{
	(void)r;
	probe_drop(ctx);
}

static void remove_name(probe *j, int i)
{
	probe_sent(j, ferry__sftp_remove(j->sf, j->name[i], ignore_cb, j));
}

static void renamed_readlink_cb(void *ctx, const ferry__sftp_reply *r)
{
	probe *j = ctx;
	ferry__sftp *sf = j->sf;
	if (!r->error && r->count >= 1)
		sf->symlink_rename = FERRY__SYMLINK_RENAME_SAFE;
	else if (!j->rename_failed)
		sf->symlink_rename = FERRY__SYMLINK_RENAME_UNSAFE;
	probe_drop(j);
}

static void readlink_cb(void *ctx, const ferry__sftp_reply *r)
{
	probe *j = ctx;
	ferry__sftp *sf = j->sf;
	const char *f = j->name[P_F];
	const char *base = strrchr(f, '/');
	base = base ? base + 1 : f;
	size_t bn = strlen(base);
	if (!r->error && r->count >= 1) {
		const char *got = r->names[0].name;
		size_t gn = r->names[0].name_len;
		if (gn == bn && memcmp(got, base, bn) == 0)
			sf->readlink_form = FERRY__READLINK_LITERAL;
		else if (ferry__sftp_link_same(sf, j->name[P_L], got, gn, base,
		                               bn))
			sf->readlink_form = FERRY__READLINK_RESOLVED;
	}
	probe_drop(j);
}

static void note_cb(void *ctx, const ferry__sftp_reply *r)
{
	probe *j = ctx;
	if (r->error)
		j->rename_failed = 1; /* the SYMLINK of L or its RENAME */
	if (r->error)
		probe_note(j,
		           r->req_type == FERRY__FXP_SYMLINK
		                   ? "symlink"
		                   : "rename of a symlink",
		           r);
	probe_drop(j);
}

/* The rename test, once the order is known, behind F's OPEN. */
static void probe_rename(probe *j)
{
	ferry__sftp *sf = j->sf;
	if (j->rename_sent || sf->symlink_rename)
		return;
	j->rename_sent = 1;
	const char *f = j->name[P_F];
	const char *base = strrchr(f, '/');
	base = base ? base + 1 : f;
	probe_sent(j, ferry__sftp_symlink(sf, j->name[P_L], base, note_cb, j));
	probe_sent(j, ferry__sftp_readlink(sf, j->name[P_L], readlink_cb, j));
	probe_sent(j, ferry__sftp_rename_replace(sf, j->name[P_L], j->name[P_R],
	                                         NULL, note_cb, j));
	probe_sent(j, ferry__sftp_readlink(sf, j->name[P_R],
	                                   renamed_readlink_cb, j));
	remove_name(j, P_R);
	remove_name(j, P_L);
}

static void order_seen(probe *j, const ferry__sftp_reply *r, int order)
{
	ferry__sftp *sf = j->sf;
	if (!r->error && r->count >= 1 && !sf->symlink_order)
		sf->symlink_order = order;
	if (--j->order_left == 0) {
		if (sf->symlink_order)
			probe_rename(j);
		remove_name(j, P_F);
		if (sf->symlink_order)
			j->done(j->ctx, 0);
	}
	probe_drop(j);
}

static void readlink_a_cb(void *ctx, const ferry__sftp_reply *r)
{
	order_seen(ctx, r, FERRY__SYMLINK_TARGET_FIRST);
}

static void readlink_b_cb(void *ctx, const ferry__sftp_reply *r)
{
	order_seen(ctx, r, FERRY__SYMLINK_LINK_FIRST);
}

static void raw_cb(void *ctx, const ferry__sftp_reply *r)
{
	probe *j = ctx;
	/* One of the two fails by design; a second failure's text is what
	 * the caller shows when no link was made. */
	if (r->error && j->raw_failed++)
		probe_note(j, "symlink", r);
	probe_drop(j);
}

static void open_cb(void *ctx, const ferry__sftp_reply *r)
{
	probe *j = ctx;
	if (r->error) {
		probe_note(j, "open", r);
	} else {
		j->f_ok = 1;
		probe_sent(j,
		           ferry__sftp_close(j->sf, r->handle, ignore_cb, j));
	}
	probe_drop(j);
}

int ferry__sftp_probe_symlinks(ferry__sftp *sf,
                               const char *const names[FERRY__PROBE_NAMES],
                               void (*done)(void *ctx, int finished), void *ctx)
{
	if (!done)
		return FERRY_EINVALID;
	probe *j = ferry__calloc(1, sizeof(*j));
	if (!j)
		return FERRY_ENOMEM;
	j->sf = sf;
	j->done = done;
	j->ctx = ctx;
	for (int i = 0; i < FERRY__PROBE_NAMES; i++) {
		if (!names[i] || !(j->name[i] = ferry__strdup(names[i]))) {
			for (int k = 0; k < i; k++)
				ferry__free(j->name[k]);
			ferry__free(j);
			return names[i] ? FERRY_ENOMEM : FERRY_EINVALID;
		}
	}
	sf->jobs++;
	j->pending = 1; /* this function's own hold */
	ferry__sftp_attrs at;
	memset(&at, 0, sizeof(at));
	at.flags = FERRY__ATTR_PERMISSIONS;
	at.perm = 0600;
	probe_sent(j, ferry__sftp_open(sf, j->name[P_F],
	                               FERRY__FXF_WRITE | FERRY__FXF_CREAT |
	                                       FERRY__FXF_EXCL,
	                               &at, open_cb, j));
	if (!sf->symlink_order) {
		probe_sent(j,
		           ferry__sftp__symlink_raw(sf, j->name[P_F],
		                                    j->name[P_A], raw_cb, j));
		probe_sent(j,
		           ferry__sftp__symlink_raw(sf, j->name[P_B],
		                                    j->name[P_F], raw_cb, j));
		j->order_left = 2;
		probe_sent(j, ferry__sftp_readlink(sf, j->name[P_A],
		                                   readlink_a_cb, j));
		probe_sent(j, ferry__sftp_readlink(sf, j->name[P_B],
		                                   readlink_b_cb, j));
		remove_name(j, P_A);
		remove_name(j, P_B);
	} else {
		probe_rename(j);
		remove_name(j, P_F);
	}
	probe_drop(j);
	return 0;
}

int ferry__sftp_symlink_order_known(const ferry__sftp *sf)
{
	return sf->symlink_order == FERRY__SYMLINK_TARGET_FIRST ||
	       sf->symlink_order == FERRY__SYMLINK_LINK_FIRST;
}

int ferry__sftp_symlinks_known(const ferry__sftp *sf)
{
	return sf->symlink_order && sf->symlink_rename;
}

int ferry__sftp_symlink_rename_safe(const ferry__sftp *sf)
{
	return sf->symlink_rename == FERRY__SYMLINK_RENAME_SAFE;
}

const char *ferry__sftp_symlink_failure(const ferry__sftp *sf)
{
	return !ferry__sftp_symlinks_known(sf) && sf->symlink_msg[0]
	               ? sf->symlink_msg
	               : NULL;
}

/* Fold "", "." and ".." out of a/b (b relative to a's directory, or
 * absolute) into out (room: strlen(a) + strlen(b) + 2): lexically, as a
 * server that does not look at the file system would. */
static size_t lexical_join(char *out, const char *a, size_t an, const char *b,
                           size_t bn)
{
	size_t n = 0;
	int abs = 0;
	const char *part[2] = {a, b};
	size_t len[2] = {an, bn};
	if (bn && b[0] == '/')
		part[0] = "", len[0] = 0;
	abs = len[0] ? a[0] == '/' : (bn && b[0] == '/');
	if (abs)
		out[n++] = '/';
	size_t floor = n; /* ".." never goes above this */
	for (int k = 0; k < 2; k++) {
		size_t i = 0;
		while (i < len[k]) {
			size_t e = i;
			while (e < len[k] && part[k][e] != '/')
				e++;
			const char *c = part[k] + i;
			size_t cn = e - i;
			i = e + 1;
			if (cn == 0 || (cn == 1 && c[0] == '.'))
				continue;
			if (cn == 2 && c[0] == '.' && c[1] == '.') {
				size_t last = n;
				while (last > floor && out[last - 1] != '/')
					last--;
				int up = n - last == 2 && out[last] == '.' &&
				         out[last + 1] == '.';
				if (n > floor && !up) {
					n = last > floor ? last - 1 : floor;
					continue;
				}
				if (abs)
					continue; /* "/.." is "/" */
			}
			if (n > floor)
				out[n++] = '/';
			memcpy(out + n, c, cn);
			n += cn;
		}
	}
	out[n] = '\0';
	return n;
}

int ferry__sftp_link_same(const ferry__sftp *sf, const char *linkpath,
                          const char *got, size_t gn, const char *want,
                          size_t wn)
{
	if (gn == wn && memcmp(got, want, wn) == 0)
		return 1;
	if (sf->readlink_form == FERRY__READLINK_LITERAL || !wn ||
	    want[0] == '/' || memchr(got, '\0', gn) || memchr(want, '\0', wn))
		return 0;
	const char *slash = strrchr(linkpath, '/');
	size_t dn = slash ? (size_t)(slash - linkpath) : 0;
	if (slash && dn == 0)
		dn = 1; /* the link is in "/" */
	char *x = ferry__malloc(dn + wn + 2);
	char *y = ferry__malloc(gn + 2);
	int same = 0;
	if (x && y) {
		size_t xn = lexical_join(x, linkpath, dn, want, wn);
		size_t yn = lexical_join(y, "", 0, got, gn);
		same = xn == yn && memcmp(x, y, xn) == 0;
	}
	ferry__free(x);
	ferry__free(y);
	return same;
}
