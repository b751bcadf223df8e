#include "sftp_proto.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "ferry.h"

int ferry__sftp_frame(const uint8_t *p, size_t avail, size_t max, size_t *total)
{
	if (avail < 4)
		return 0;
	uint32_t len = ferry__peek_u32(p);
	if (len == 0 || len > max)
		return FERRY_EPROTO;
	if (avail - 4 < len)
		return 0;
	*total = 4 + (size_t)len;
	return 1;
}

int ferry__sftp_put_attrs(ferry_buf *b, const ferry__sftp_attrs *a)
{
	uint32_t f = a ? a->flags & ~FERRY__ATTR_EXTENDED : 0;
	ferry__buf_put_u32(b, f);
	if (f & FERRY__ATTR_SIZE)
		ferry__buf_put_u64(b, a->size);
	if (f & FERRY__ATTR_UIDGID) {
		ferry__buf_put_u32(b, a->uid);
		ferry__buf_put_u32(b, a->gid);
	}
	if (f & FERRY__ATTR_PERMISSIONS)
		ferry__buf_put_u32(b, a->perm);
	if (f & FERRY__ATTR_ACMODTIME) {
		ferry__buf_put_u32(b, a->atime);
		ferry__buf_put_u32(b, a->mtime);
	}
	return b->error;
}

int ferry__sftp_get_attrs(ferry_buf *b, ferry__sftp_attrs *a)
{
	int error;
	memset(a, 0, sizeof(*a));
	if ((error = ferry__buf_get_u32(b, &a->flags)))
		return error;
	if ((a->flags & FERRY__ATTR_SIZE) &&
	    (error = ferry__buf_get_u64(b, &a->size)))
		return error;
	if (a->flags & FERRY__ATTR_UIDGID) {
		if ((error = ferry__buf_get_u32(b, &a->uid)) ||
		    (error = ferry__buf_get_u32(b, &a->gid)))
			return error;
	}
	if ((a->flags & FERRY__ATTR_PERMISSIONS) &&
	    (error = ferry__buf_get_u32(b, &a->perm)))
		return error;
	if (a->flags & FERRY__ATTR_ACMODTIME) {
		if ((error = ferry__buf_get_u32(b, &a->atime)) ||
		    (error = ferry__buf_get_u32(b, &a->mtime)))
			return error;
	}
	if (a->flags & FERRY__ATTR_EXTENDED) {
		uint32_t count;
		if ((error = ferry__buf_get_u32(b, &count)))
			return error;
		/* Each pair is at least two empty strings: 8 bytes. */
		if (count > ferry__buf_avail(b) / 8)
			return FERRY_EPROTO;
		for (uint32_t i = 0; i < count; i++) {
			const uint8_t *s;
			size_t n;
			if ((error = ferry__buf_get_string_ptr(b, &s, &n)) ||
			    (error = ferry__buf_get_string_ptr(b, &s, &n)))
				return error;
		}
	}
	return 0;
}

static const struct {
	const char *name;
	unsigned bit;
} known_ext[] = {
        {"posix-rename@openssh.com", FERRY__EXT_POSIX_RENAME},
        {"statvfs@openssh.com", FERRY__EXT_STATVFS},
        {"fstatvfs@openssh.com", FERRY__EXT_FSTATVFS},
        {"hardlink@openssh.com", FERRY__EXT_HARDLINK},
        {"fsync@openssh.com", FERRY__EXT_FSYNC},
        {"lsetstat@openssh.com", FERRY__EXT_LSETSTAT},
        {"limits@openssh.com", FERRY__EXT_LIMITS},
        {"copy-data", FERRY__EXT_COPY_DATA},
};

#define SYMLINK_ORDER "symlink-order@rjk.greenend.org.uk"

int ferry__sftp_parse_version(const uint8_t *p, size_t n,
                              ferry__sftp_version *v)
{
	ferry_buf b;
	int error;
	ferry__buf_view(&b, p, n);
	memset(v, 0, sizeof(*v));
	if ((error = ferry__buf_get_u32(&b, &v->version)))
		return error;
	while (ferry__buf_avail(&b) > 0) {
		const uint8_t *name, *data;
		size_t nlen, dlen;
		if ((error = ferry__buf_get_string_ptr(&b, &name, &nlen)) ||
		    (error = ferry__buf_get_string_ptr(&b, &data, &dlen)))
			return error;
		if (nlen == sizeof(SYMLINK_ORDER) - 1 &&
		    !memcmp(name, SYMLINK_ORDER, nlen))
			v->symlink_order =
			        dlen == 19 && !memcmp(data,
			                              "linkpath-targetpath", 19)
			                ? FERRY__SYMLINK_LINK_FIRST
			        : dlen == 19 && !memcmp(data,
			                                "targetpath-linkpath",
			                                19)
			                ? FERRY__SYMLINK_TARGET_FIRST
			                : 0;
		for (size_t i = 0; i < sizeof(known_ext) / sizeof(known_ext[0]);
		     i++) {
			if (strlen(known_ext[i].name) == nlen &&
			    !memcmp(known_ext[i].name, name, nlen))
				v->ext |= known_ext[i].bit;
		}
	}
	return 0;
}

int ferry__sftp_peek_id(const uint8_t *p, size_t n, uint8_t *type, uint32_t *id)
{
	if (n < 5)
		return FERRY_EPROTO;
	*type = p[0];
	*id = ferry__peek_u32(p + 1);
	return 0;
}

/* What a successful reply to a request looks like. */
static uint8_t success_type(uint8_t req_type, int ext_kind)
{
	switch (req_type) {
	case FERRY__FXP_OPEN:
	case FERRY__FXP_OPENDIR:
		return FERRY__FXP_HANDLE;
	case FERRY__FXP_READ:
		return FERRY__FXP_DATA;
	case FERRY__FXP_LSTAT:
	case FERRY__FXP_STAT:
	case FERRY__FXP_FSTAT:
		return FERRY__FXP_ATTRS;
	case FERRY__FXP_READDIR:
	case FERRY__FXP_REALPATH:
	case FERRY__FXP_READLINK:
		return FERRY__FXP_NAME;
	case FERRY__FXP_EXTENDED:
		return ext_kind == FERRY__XK_STATVFS ||
		                       ext_kind == FERRY__XK_LIMITS
		               ? FERRY__FXP_EXTENDED_REPLY
		               : FERRY__FXP_STATUS;
	default:
		return FERRY__FXP_STATUS;
	}
}

static int parse_names(ferry_buf *b, uint8_t req_type, ferry__sftp_parsed *r)
{
	int error;
	uint32_t count;
	if ((error = ferry__buf_get_u32(b, &count)))
		return error;
	/* name, longname, attrs flags: at least 12 bytes each. */
	if (count > ferry__buf_avail(b) / 12)
		return FERRY_EPROTO;
	if ((req_type == FERRY__FXP_REALPATH ||
	     req_type == FERRY__FXP_READLINK) &&
	    count != 1)
		return FERRY_EPROTO;
	/* First pass: validate, and size the arena. */
	size_t save = b->off, strbytes = 0;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *s, *l;
		size_t sn, ln;
		ferry__sftp_attrs a;
		if ((error = ferry__buf_get_string_ptr(b, &s, &sn)) ||
		    (error = ferry__buf_get_string_ptr(b, &l, &ln)) ||
		    (error = ferry__sftp_get_attrs(b, &a)))
			return error;
		/* A READDIR name is passed on as it came (any bytes, NUL,
		 * '/' and empty included) so that its user can refuse it by
		 * name; a path (REALPATH, READLINK) never holds a NUL. */
		if (req_type != FERRY__FXP_READDIR && memchr(s, 0, sn))
			return FERRY_EPROTO;
		strbytes += sn + 1 + ln + 1;
	}
	b->off = save;
	size_t sz = (size_t)count * sizeof(ferry__sftp_name) + strbytes;
	uint8_t *mem = ferry__malloc(sz);
	if (!mem)
		return FERRY_ENOMEM;
	ferry__sftp_name *names = (ferry__sftp_name *)(void *)mem;
	char *str = (char *)mem + (size_t)count * sizeof(ferry__sftp_name);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *s, *l;
		size_t sn, ln;
		/* Validated above: cannot fail. */
		ferry__buf_get_string_ptr(b, &s, &sn);
		ferry__buf_get_string_ptr(b, &l, &ln);
		ferry__sftp_get_attrs(b, &names[i].attrs);
		memcpy(str, s, sn);
		str[sn] = '\0';
		names[i].name = str;
		names[i].name_len = sn;
		str += sn + 1;
		/* A NUL inside the long name only shortens it. */
		memcpy(str, l, ln);
		str[ln] = '\0';
		names[i].longname = str;
		str += ln + 1;
	}
	r->names = names;
	r->count = count;
	r->mem = mem;
	return 0;
}

int ferry__sftp_parse_reply(const uint8_t *p, size_t n, uint8_t req_type,
                            int ext_kind, ferry__sftp_parsed *r)
{
	ferry_buf b;
	int error;
	uint8_t type;
	memset(r, 0, sizeof(*r));
	ferry__buf_view(&b, p, n);
	if ((error = ferry__buf_get_u8(&b, &type)) ||
	    (error = ferry__buf_get_u32(&b, &r->id)))
		return error;
	r->type = type;
	uint8_t want = success_type(req_type, ext_kind);
	if (type == FERRY__FXP_STATUS) {
		if ((error = ferry__buf_get_u32(&b, &r->status)))
			return error;
		/* v3 has message and language; be lenient when absent. */
		if (ferry__buf_avail(&b) && (error = ferry__buf_get_string_ptr(
		                                     &b, &r->msg, &r->msg_len)))
			return error;
		/* OK only answers requests whose success is a status. */
		if (r->status == FERRY__FX_OK && want != FERRY__FXP_STATUS)
			return FERRY_EPROTO;
		return 0;
	}
	if (type != want)
		return FERRY_EPROTO;
	r->status = FERRY__FX_OK;
	switch (type) {
	case FERRY__FXP_HANDLE: {
		const uint8_t *h;
		size_t hn;
		if ((error = ferry__buf_get_string_ptr(&b, &h, &hn)))
			return error;
		if (hn > FERRY__SFTP_HANDLE_MAX)
			return FERRY_EPROTO;
		r->handle.len = (uint32_t)hn;
		memcpy(r->handle.data, h, hn);
		return 0;
	}
	case FERRY__FXP_DATA:
		return ferry__buf_get_string_ptr(&b, &r->data, &r->data_len);
	case FERRY__FXP_ATTRS:
		return ferry__sftp_get_attrs(&b, &r->attrs);
	case FERRY__FXP_NAME:
		return parse_names(&b, req_type, r);
	case FERRY__FXP_EXTENDED_REPLY:
		if (ext_kind == FERRY__XK_LIMITS) {
			uint64_t *lf[4] = {
			        &r->limits.max_packet, &r->limits.max_read,
			        &r->limits.max_write, &r->limits.max_handles};
			for (int i = 0; i < 4; i++)
				if ((error = ferry__buf_get_u64(&b, lf[i])))
					return error;
			return 0;
		} else {
			uint64_t *vf[11] = {
			        &r->vfs.bsize, &r->vfs.frsize, &r->vfs.blocks,
			        &r->vfs.bfree, &r->vfs.bavail, &r->vfs.files,
			        &r->vfs.ffree, &r->vfs.favail, &r->vfs.fsid,
			        &r->vfs.flag,  &r->vfs.namemax};
			for (int i = 0; i < 11; i++)
				if ((error = ferry__buf_get_u64(&b, vf[i])))
					return error;
			return 0;
		}
	default:
		return FERRY_EPROTO;
	}
}

void ferry__sftp_parsed_free(ferry__sftp_parsed *r)
{
	ferry__free(r->mem);
	r->mem = NULL;
	r->names = NULL;
}

int ferry__sftp_status_error(uint32_t status)
{
	switch (status) {
	case FERRY__FX_OK:
		return 0;
	case FERRY__FX_EOF:
		return FERRY_EIO;
	case FERRY__FX_NO_SUCH_FILE:
	case FERRY__FX_NO_SUCH_PATH:
		return FERRY_ENOTFOUND;
	case FERRY__FX_PERMISSION_DENIED:
	case FERRY__FX_WRITE_PROTECT:
		return FERRY_EPERM;
	case FERRY__FX_BAD_MESSAGE:
		return FERRY_EINVALID;
	case FERRY__FX_NO_CONNECTION:
	case FERRY__FX_CONNECTION_LOST:
		return FERRY_ECONN;
	case FERRY__FX_OP_UNSUPPORTED:
		return FERRY_EUNSUPPORTED;
	case FERRY__FX_FILE_ALREADY_EXISTS:
		return FERRY_EEXIST;
	case FERRY__FX_NO_SPACE_ON_FILESYSTEM:
	case FERRY__FX_QUOTA_EXCEEDED:
		return FERRY_ENOSPACE;
	default:
		return FERRY_EREMOTE;
	}
}

const char *ferry__sftp_status_name(uint32_t status)
{
	switch (status) {
	case FERRY__FX_OK:
		return "SSH_FX_OK";
	case FERRY__FX_EOF:
		return "SSH_FX_EOF";
	case FERRY__FX_NO_SUCH_FILE:
		return "SSH_FX_NO_SUCH_FILE";
	case FERRY__FX_PERMISSION_DENIED:
		return "SSH_FX_PERMISSION_DENIED";
	case FERRY__FX_FAILURE:
		return "SSH_FX_FAILURE";
	case FERRY__FX_BAD_MESSAGE:
		return "SSH_FX_BAD_MESSAGE";
	case FERRY__FX_NO_CONNECTION:
		return "SSH_FX_NO_CONNECTION";
	case FERRY__FX_CONNECTION_LOST:
		return "SSH_FX_CONNECTION_LOST";
	case FERRY__FX_OP_UNSUPPORTED:
		return "SSH_FX_OP_UNSUPPORTED";
	case FERRY__FX_NO_SUCH_PATH:
		return "SSH_FX_NO_SUCH_PATH";
	case FERRY__FX_FILE_ALREADY_EXISTS:
		return "SSH_FX_FILE_ALREADY_EXISTS";
	case FERRY__FX_WRITE_PROTECT:
		return "SSH_FX_WRITE_PROTECT";
	case FERRY__FX_NO_SPACE_ON_FILESYSTEM:
		return "SSH_FX_NO_SPACE_ON_FILESYSTEM";
	case FERRY__FX_QUOTA_EXCEEDED:
		return "SSH_FX_QUOTA_EXCEEDED";
	case FERRY__FX_LOCAL:
		return "local";
	default:
		return "SSH_FX_unknown";
	}
}

const char *ferry__sftp_type_name(uint8_t type)
{
	static const char *const names[] = {
	        NULL,       "init",     "version", "open",   "close",
	        "read",     "write",    "lstat",   "fstat",  "setstat",
	        "fsetstat", "opendir",  "readdir", "remove", "mkdir",
	        "rmdir",    "realpath", "stat",    "rename", "readlink",
	        "symlink"};
	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	if (type == FERRY__FXP_EXTENDED)
		return "extended";
	return "request";
}

void ferry__sftp_sanitize(char *dst, size_t size, const uint8_t *src, size_t n)
{
	size_t o = 0, limit;
	if (!size)
		return;
	limit = size - 1;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = src[i];
		char tmp[5];
		size_t tl;
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			tmp[0] = (char)c;
			tl = 1;
		} else if (c == '\n') {
			memcpy(tmp, "\\n", 2);
			tl = 2;
		} else if (c == '\\') {
			memcpy(tmp, "\\\\", 2);
			tl = 2;
		} else {
			snprintf(tmp, sizeof(tmp), "\\x%02x", c);
			tl = 4;
		}
		if (o + tl > limit) {
			/* Truncated: end with "..." when it fits. */
			if (limit >= 3) {
				if (o > limit - 3)
					o = limit - 3;
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(dst + o, tmp, tl);
		o += tl;
	}
	dst[o] = '\0';
}
