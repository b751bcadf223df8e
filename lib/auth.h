/* auth.h - user authentication: ssh-agent, then identity files. */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include "session.h"

/* Authenticate before deadline.  *how receives a description of what
 * succeeded ("agent key ...", "publickey FILE"); caller frees. */
int ferry__auth(ferry_session *s, const ferry_session_opts *o, int64_t deadline,
                char **how, const char **method);

/* 1 when the running libssh2 signs RSA keys with SHA-1 only (< 1.11). */
int ferry__libssh2_rsa_sha1_only(void);

#endif
