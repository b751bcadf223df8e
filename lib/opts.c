/* opts.c - ferry_*_opts_init: the option-struct defaults for callers that
 * cannot use the *_INIT macros (bindings), for every struct version this
 * library accepts. */
#include <stddef.h>
#include <string.h>

#include "error.h"
#include "ferry.h"

/* Copy the defaults of version v (1..cur) of a struct whose first field is
 * its unsigned version: sizes[v - 1] bytes, the size of that version, so a
 * caller's older, smaller struct is never written past. */
static int opts_init(void *opts, const void *def, const size_t *sizes,
                     const char *what, unsigned int v, unsigned int cur)
{
	if (!opts) {
		ferry__last_errmsg_set("%s_init: NULL options pointer", what);
		return FERRY_EINVALID;
	}
	if (v < 1 || v > cur) {
		ferry__last_errmsg_set("%s: unknown version %u (this library "
		                       "knows 1 to %u)",
		                       what, v, cur);
		return FERRY_EINVALID;
	}
	memcpy(opts, def, sizes[v - 1]);
	memcpy(opts, &v, sizeof v);
	ferry__last_errmsg_set(NULL);
	return 0;
}

int ferry_session_opts_init(ferry_session_opts *opts, unsigned int version)
{
	static const ferry_session_opts def = FERRY_SESSION_OPTS_INIT;
	static const size_t sizes[] = {
	        offsetof(ferry_session_opts, ssh_config),
	        offsetof(ferry_session_opts, io_timeout_ms), sizeof def};
	return opts_init(opts, &def, sizes, "ferry_session_opts", version,
	                 FERRY_SESSION_OPTS_VERSION);
}

int ferry_sync_opts_init(ferry_sync_opts *opts, unsigned int version)
{
	static const ferry_sync_opts def = FERRY_SYNC_OPTS_INIT;
	static const size_t sizes[] = {
	        offsetof(ferry_sync_opts, max_dir_entries), sizeof def};
	return opts_init(opts, &def, sizes, "ferry_sync_opts", version,
	                 FERRY_SYNC_OPTS_VERSION);
}

int ferry_exec_opts_init(ferry_exec_opts *opts, unsigned int version)
{
	static const ferry_exec_opts def = FERRY_EXEC_OPTS_INIT;
	static const size_t sizes[] = {sizeof def};
	return opts_init(opts, &def, sizes, "ferry_exec_opts", version,
	                 FERRY_EXEC_OPTS_VERSION);
}
