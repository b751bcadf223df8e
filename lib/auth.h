/* auth.h - user authentication: ssh-agent, then identity files. */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include "session.h"

/* Authenticate before deadline.  *how receives a description of what
 * succeeded ("agent key ...", "publickey FILE"); caller frees. */
int ferry__auth(ferry_session *s, const ferry_session_opts *o, int64_t deadline,
                char **how, const char **method);

#endif
