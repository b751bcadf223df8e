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

/* The size of each version of each option struct (index version - 1): what
 * opts_init copies and ferry_struct_size reports.  A new version adds its
 * size here. */
static const size_t session_opts_sizes[] = {
        offsetof(ferry_session_opts, ssh_config),
        offsetof(ferry_session_opts, io_timeout_ms),
        offsetof(ferry_session_opts, reconnect), sizeof(ferry_session_opts)};
static const size_t sync_opts_sizes[] = {
        offsetof(ferry_sync_opts, max_dir_entries),
        offsetof(ferry_sync_opts, streams), offsetof(ferry_sync_opts, marker),
        offsetof(ferry_sync_opts, stop), sizeof(ferry_sync_opts)};
static const size_t exec_opts_sizes[] = {offsetof(ferry_exec_opts, stop),
                                         sizeof(ferry_exec_opts)};

int ferry_session_opts_init(ferry_session_opts *opts, unsigned int version)
{
	static const ferry_session_opts def = FERRY_SESSION_OPTS_INIT;
	return opts_init(opts, &def, session_opts_sizes, "ferry_session_opts",
	                 version, FERRY_SESSION_OPTS_VERSION);
}

int ferry_sync_opts_init(ferry_sync_opts *opts, unsigned int version)
{
	static const ferry_sync_opts def = FERRY_SYNC_OPTS_INIT;
	return opts_init(opts, &def, sync_opts_sizes, "ferry_sync_opts",
	                 version, FERRY_SYNC_OPTS_VERSION);
}

int ferry_exec_opts_init(ferry_exec_opts *opts, unsigned int version)
{
	static const ferry_exec_opts def = FERRY_EXEC_OPTS_INIT;
	return opts_init(opts, &def, exec_opts_sizes, "ferry_exec_opts",
	                 version, FERRY_EXEC_OPTS_VERSION);
}

size_t ferry_struct_size(int which, unsigned int version)
{
	const size_t *sizes = NULL;
	unsigned int count = 0;
	switch (which) {
	case FERRY_STRUCT_SESSION_OPTS:
		sizes = session_opts_sizes, count = FERRY_SESSION_OPTS_VERSION;
		break;
	case FERRY_STRUCT_SYNC_OPTS:
		sizes = sync_opts_sizes, count = FERRY_SYNC_OPTS_VERSION;
		break;
	case FERRY_STRUCT_EXEC_OPTS:
		sizes = exec_opts_sizes, count = FERRY_EXEC_OPTS_VERSION;
		break;
	case FERRY_STRUCT_SESSION_INFO:
		if (version == 1)
			return offsetof(ferry_session_info, home);
		return version == 0 || version == FERRY_SESSION_INFO_VERSION
		               ? sizeof(ferry_session_info)
		               : 0;
	case FERRY_STRUCT_CHANGE:
		return version ? 0 : sizeof(ferry_change);
	case FERRY_STRUCT_PROGRESS:
		return version ? 0 : sizeof(ferry_progress);
	case FERRY_STRUCT_FILE_ERROR:
		return version ? 0 : sizeof(ferry_file_error);
	case FERRY_STRUCT_SYNC_REPORT:
		return version ? 0 : sizeof(ferry_sync_report);
	case FERRY_STRUCT_EXEC_RESULT:
		return version ? 0 : sizeof(ferry_exec_result);
	case FERRY_STRUCT_MAPPING:
		return version ? 0 : sizeof(ferry_mapping);
	default:
		return 0;
	}
	return version >= 1 && version <= count ? sizes[version - 1] : 0;
}
