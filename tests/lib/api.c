/* The functions a binding uses instead of macros: opts_init, error names,
 * the thread's last error message. */
#include <criterion/criterion.h>
#include <string.h>

#include "ferry.h"

Test(api, opts_init_equals_the_init_macros)
{
	ferry_session_opts so = FERRY_SESSION_OPTS_INIT, si;
	ferry_sync_opts yo = FERRY_SYNC_OPTS_INIT, yi;
	ferry_exec_opts eo = FERRY_EXEC_OPTS_INIT, ei;
	memset(&si, 0x5a, sizeof si);
	memset(&yi, 0x5a, sizeof yi);
	memset(&ei, 0x5a, sizeof ei);
	cr_assert_eq(ferry_session_opts_init(&si, FERRY_SESSION_OPTS_VERSION),
	             0);
	cr_assert_eq(ferry_sync_opts_init(&yi, FERRY_SYNC_OPTS_VERSION), 0);
	cr_assert_eq(ferry_exec_opts_init(&ei, FERRY_EXEC_OPTS_VERSION), 0);
	cr_assert_str_empty(ferry_last_errmsg());
	cr_assert(!memcmp(&so, &si, sizeof so));
	cr_assert(!memcmp(&yo, &yi, sizeof yo));
	cr_assert(!memcmp(&eo, &ei, sizeof eo));
}

Test(api, opts_init_refuses_unknown_versions_and_says_why)
{
	ferry_sync_opts o;
	cr_assert_eq(ferry_sync_opts_init(&o, 0), FERRY_EINVALID);
	cr_assert(strstr(ferry_last_errmsg(), "unknown version 0"),
	          "message: %s", ferry_last_errmsg());
	cr_assert_eq(ferry_exec_opts_init(&(ferry_exec_opts){0},
	                                  FERRY_EXEC_OPTS_VERSION + 1),
	             FERRY_EINVALID);
	cr_assert_eq(ferry_session_opts_init(NULL, 1), FERRY_EINVALID);
	cr_assert(strstr(ferry_last_errmsg(), "NULL"));
}

Test(api, error_names_follow_the_table)
{
	cr_assert_str_eq(ferry_error_name(FERRY_EAUTH), "FERRY_EAUTH");
	cr_assert_str_eq(ferry_error_name(0), "FERRY_OK");
	cr_assert_str_eq(ferry_error_name(FERRY_ELOCKED), "FERRY_ELOCKED");
	cr_assert_str_eq(ferry_error_name(12345), "FERRY_EUNKNOWN");
}

Test(api, struct_sizes_match_the_header)
{
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SESSION_OPTS,
	                               FERRY_SESSION_OPTS_VERSION),
	             sizeof(ferry_session_opts));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SESSION_OPTS, 1),
	             offsetof(ferry_session_opts, ssh_config));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SYNC_OPTS,
	                               FERRY_SYNC_OPTS_VERSION),
	             sizeof(ferry_sync_opts));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_EXEC_OPTS,
	                               FERRY_EXEC_OPTS_VERSION),
	             sizeof(ferry_exec_opts));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SESSION_INFO, 0),
	             sizeof(ferry_session_info));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SESSION_INFO,
	                               FERRY_SESSION_INFO_VERSION),
	             sizeof(ferry_session_info));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SESSION_INFO, 1),
	             offsetof(ferry_session_info, home));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SESSION_INFO,
	                               FERRY_SESSION_INFO_VERSION + 1),
	             0);
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_CHANGE, 0),
	             sizeof(ferry_change));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_PROGRESS, 0),
	             sizeof(ferry_progress));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_FILE_ERROR, 0),
	             sizeof(ferry_file_error));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SYNC_REPORT, 0),
	             sizeof(ferry_sync_report));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_EXEC_RESULT, 0),
	             sizeof(ferry_exec_result));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_MAPPING, 0),
	             sizeof(ferry_mapping));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SYNC_OPTS, 1),
	             offsetof(ferry_sync_opts, max_dir_entries));
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SESSION_OPTS, 2),
	             offsetof(ferry_session_opts, io_timeout_ms));
}

Test(api, struct_size_is_0_for_unknown_structs_and_versions)
{
	cr_assert_eq(ferry_struct_size(0, 0), 0);
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_MAPPING + 1, 0), 0);
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SYNC_OPTS, 0), 0);
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_SYNC_OPTS,
	                               FERRY_SYNC_OPTS_VERSION + 1),
	             0);
	cr_assert_eq(ferry_struct_size(FERRY_STRUCT_CHANGE, 1), 0);
}
