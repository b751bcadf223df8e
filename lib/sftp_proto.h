/* sftp_proto.h - SFTP version 3 wire format (draft-ietf-secsh-filexfer-02
 * plus OpenSSH's extensions): constants, attributes, reply parsing.
 *
 * Pure functions without I/O so that the fuzz target can reach every
 * parser.  Everything the server sends is untrusted: every length and count
 * is checked against the bytes actually present before it is used.
 */
#ifndef FERRY_SFTP_PROTO_H
#define FERRY_SFTP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Packet types */
enum {
	FERRY__FXP_INIT = 1,
	FERRY__FXP_VERSION = 2,
	FERRY__FXP_OPEN = 3,
	FERRY__FXP_CLOSE = 4,
	FERRY__FXP_READ = 5,
	FERRY__FXP_WRITE = 6,
	FERRY__FXP_LSTAT = 7,
	FERRY__FXP_FSTAT = 8,
	FERRY__FXP_SETSTAT = 9,
	FERRY__FXP_FSETSTAT = 10,
	FERRY__FXP_OPENDIR = 11,
	FERRY__FXP_READDIR = 12,
	FERRY__FXP_REMOVE = 13,
	FERRY__FXP_MKDIR = 14,
	FERRY__FXP_RMDIR = 15,
	FERRY__FXP_REALPATH = 16,
	FERRY__FXP_STAT = 17,
	FERRY__FXP_RENAME = 18,
	FERRY__FXP_READLINK = 19,
	FERRY__FXP_SYMLINK = 20,
	FERRY__FXP_STATUS = 101,
	FERRY__FXP_HANDLE = 102,
	FERRY__FXP_DATA = 103,
	FERRY__FXP_NAME = 104,
	FERRY__FXP_ATTRS = 105,
	FERRY__FXP_EXTENDED = 200,
	FERRY__FXP_EXTENDED_REPLY = 201
};

/* Status codes (v3, plus the later drafts' codes some servers send) */
enum {
	FERRY__FX_OK = 0,
	FERRY__FX_EOF = 1,
	FERRY__FX_NO_SUCH_FILE = 2,
	FERRY__FX_PERMISSION_DENIED = 3,
	FERRY__FX_FAILURE = 4,
	FERRY__FX_BAD_MESSAGE = 5,
	FERRY__FX_NO_CONNECTION = 6,
	FERRY__FX_CONNECTION_LOST = 7,
	FERRY__FX_OP_UNSUPPORTED = 8,
	FERRY__FX_NO_SUCH_PATH = 10,
	FERRY__FX_FILE_ALREADY_EXISTS = 11,
	FERRY__FX_WRITE_PROTECT = 12,
	FERRY__FX_NO_SPACE_ON_FILESYSTEM = 14,
	FERRY__FX_QUOTA_EXCEEDED = 15,
	/* Not on the wire: the request was completed by ferry itself
	 * (cancelled, connection lost, local error). */
	FERRY__FX_LOCAL = 0xffffffffu
};

/* OPEN pflags */
#define FERRY__FXF_READ   0x01u
#define FERRY__FXF_WRITE  0x02u
#define FERRY__FXF_APPEND 0x04u
#define FERRY__FXF_CREAT  0x08u
#define FERRY__FXF_TRUNC  0x10u
#define FERRY__FXF_EXCL   0x20u

/* Attribute flags */
#define FERRY__ATTR_SIZE        0x00000001u
#define FERRY__ATTR_UIDGID      0x00000002u
#define FERRY__ATTR_PERMISSIONS 0x00000004u
#define FERRY__ATTR_ACMODTIME   0x00000008u
#define FERRY__ATTR_EXTENDED    0x80000000u

/* Extensions ferry knows (bits of ferry__sftp_version.ext) */
#define FERRY__EXT_POSIX_RENAME 0x001u /* posix-rename@openssh.com */
#define FERRY__EXT_STATVFS      0x002u /* statvfs@openssh.com */
#define FERRY__EXT_FSTATVFS     0x004u /* fstatvfs@openssh.com */
#define FERRY__EXT_HARDLINK     0x008u /* hardlink@openssh.com */
#define FERRY__EXT_FSYNC        0x010u /* fsync@openssh.com */
#define FERRY__EXT_LSETSTAT     0x020u /* lsetstat@openssh.com */
#define FERRY__EXT_LIMITS       0x040u /* limits@openssh.com */
#define FERRY__EXT_COPY_DATA    0x080u /* copy-data */
#define FERRY__EXT_ALL          0x0ffu

/* Largest handle the protocol allows (draft-02: 256 bytes). */
#define FERRY__SFTP_HANDLE_MAX 256
/* Largest packet ferry accepts from a server.  OpenSSH sends at most
 * 256 KiB; a READDIR reply of 100 long names stays far below this. */
#define FERRY__SFTP_MAX_IN_PACKET (4u << 20)

typedef struct ferry__sftp_attrs {
	uint32_t flags; /* FERRY__ATTR_* present */
	uint64_t size;
	uint32_t uid, gid;
	uint32_t perm; /* st_mode as the server sends it (type bits too) */
	uint32_t atime, mtime;
} ferry__sftp_attrs;

typedef struct ferry__sftp_handle {
	uint32_t len;
	uint8_t data[FERRY__SFTP_HANDLE_MAX];
} ferry__sftp_handle;

typedef struct ferry__sftp_name {
	const char *name; /* NUL-terminated; no NUL inside but in READDIR's */
	size_t name_len;
	const char *longname; /* ls -l style text of the server */
	ferry__sftp_attrs attrs;
} ferry__sftp_name;

typedef struct ferry__sftp_vfs_info {
	uint64_t bsize, frsize, blocks, bfree, bavail, files, ffree, favail,
	        fsid, flag, namemax;
} ferry__sftp_vfs_info;

typedef struct ferry__sftp_limits_info {
	uint64_t max_packet, max_read, max_write, max_handles;
} ferry__sftp_limits_info;

/* What the server does with symlinks (lib/sftp_probe.c, sftp.h). */
enum {
	FERRY__SYMLINK_TARGET_FIRST = 1, /* OpenSSH's (target, linkpath) */
	FERRY__SYMLINK_LINK_FIRST = 2,   /* the draft's (linkpath, target) */
	FERRY__SYMLINK_FAILED = 3        /* the probe made no link */
};
enum {
	FERRY__SYMLINK_RENAME_SAFE = 1,  /* RENAME moves the link itself */
	FERRY__SYMLINK_RENAME_UNSAFE = 2 /* it may move the link's target */
};
enum {
	FERRY__READLINK_LITERAL = 1, /* READLINK returns the link's text */
	FERRY__READLINK_RESOLVED = 2 /* a relative target joined to the link's
	                              * directory as named (ProFTPD) */
};

typedef struct ferry__sftp_version {
	uint32_t version;
	unsigned ext; /* FERRY__EXT_* advertised */
	/* symlink-order@rjk.greenend.org.uk: FERRY__SYMLINK_LINK_FIRST for
	 * "linkpath-targetpath" (the draft's order), _TARGET_FIRST for
	 * "targetpath-linkpath" (OpenSSH's), 0 when not advertised. */
	int symlink_order;
} ferry__sftp_version;

/* Extended request kinds, to know how to parse their reply. */
enum {
	FERRY__XK_NONE = 0,
	FERRY__XK_STATUS,  /* posix-rename, hardlink, fsync, lsetstat, copy-data
	                    */
	FERRY__XK_STATVFS, /* statvfs, fstatvfs */
	FERRY__XK_LIMITS
};

/* A parsed reply.  Pointers point into the packet or into mem; both must
 * outlive the use of the reply. */
typedef struct ferry__sftp_parsed {
	uint8_t type; /* FERRY__FXP_* of the reply */
	uint32_t id;
	uint32_t status; /* FERRY__FX_*; FX_OK for a non-STATUS reply */
	const uint8_t *msg;
	size_t msg_len;
	ferry__sftp_handle handle;
	const uint8_t *data;
	size_t data_len;
	ferry__sftp_attrs attrs;
	ferry__sftp_name *names;
	uint32_t count;
	ferry__sftp_vfs_info vfs;
	ferry__sftp_limits_info limits;
	void *mem; /* names arena: ferry__free */
} ferry__sftp_parsed;

/* Framing: given the bytes received so far, 1 when a whole packet is
 * there (*total = 4 + its length), 0 when more bytes are needed, or
 * FERRY_EPROTO when the length is impossible (0 or above max). */
int ferry__sftp_frame(const uint8_t *p, size_t avail, size_t max,
                      size_t *total);

int ferry__sftp_put_attrs(ferry_buf *b, const ferry__sftp_attrs *a);
int ferry__sftp_get_attrs(ferry_buf *b, ferry__sftp_attrs *a);

/* The body of SSH_FXP_VERSION (after the type byte). */
int ferry__sftp_parse_version(const uint8_t *p, size_t n,
                              ferry__sftp_version *v);

/* Only the type and id of a reply body (type byte first): FERRY_EPROTO
 * when shorter than 5 bytes. */
int ferry__sftp_peek_id(const uint8_t *p, size_t n, uint8_t *type,
                        uint32_t *id);

/* Parse a reply body (type byte first) to a request of req_type (and ext
 * kind for EXTENDED).  A reply type that cannot answer that request, a
 * short or over-long body, a NUL inside a REALPATH or READLINK name, a
 * handle above 256 bytes: FERRY_EPROTO.  READDIR names are not judged
 * here: they may hold any bytes (name_len tells), '/' and NUL included.
 * FERRY_ENOMEM.  On success free with ferry__sftp_parsed_free. */
int ferry__sftp_parse_reply(const uint8_t *p, size_t n, uint8_t req_type,
                            int ext_kind, ferry__sftp_parsed *out);
void ferry__sftp_parsed_free(ferry__sftp_parsed *r);

/* FERRY_E* for a status code (FX_OK: 0; FX_FAILURE: FERRY_EREMOTE). */
int ferry__sftp_status_error(uint32_t status);
/* "SSH_FX_NO_SUCH_FILE"... */
const char *ferry__sftp_status_name(uint32_t status);
/* "OPEN", "posix-rename"... for messages */
const char *ferry__sftp_type_name(uint8_t type);

/* Untrusted bytes as printable text: printable ASCII kept, other bytes
 * as \xNN; truncated with "..." to fit; always NUL-terminated. */
void ferry__sftp_sanitize(char *dst, size_t size, const uint8_t *src, size_t n);

#endif
