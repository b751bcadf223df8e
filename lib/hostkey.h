/* hostkey.h - known_hosts handling for the session. */
#ifndef FERRY_HOSTKEY_H
#define FERRY_HOSTKEY_H

#include <stddef.h>

#include "session.h"

/* "$HOME/rel" (or the passwd home); caller frees.  NULL on ENOMEM. */
/* Before the handshake: prefer the host-key algorithms known_hosts holds
 * for this host. */
int ferry__hostkey_prefer(ferry_session *s, const char *path);
/* After the handshake: verify per policy; fp receives "SHA256:...". */
int ferry__hostkey_check(ferry_session *s, const char *path,
                         ferry_hostkey_policy policy, char *fp, size_t fpsz);

#endif
