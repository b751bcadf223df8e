#include "sync/util.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "ferry.h"
#include "session.h"
#include "sftp.h"

int ferry__grow(void *pv, size_t *cap, size_t need, size_t elem, size_t first)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : first;
	while (ncap < need)
		ncap *= 2;
	void *old;
	memcpy(&old, pv, sizeof(old));
	void *nv = ferry__reallocarray(old, ncap, elem);
	if (!nv)
		return FERRY_ENOMEM;
	memcpy(pv, &nv, sizeof(nv));
	*cap = ncap;
	return 0;
}

uint32_t ferry__mtime_s(int64_t ns)
{
	int64_t s = ns / 1000000000;
	if (ns < 0 && ns % 1000000000)
		s--;
	return (uint32_t)s;
}

int ferry__sftp_call(ferry_session *s, const ferry_sync_opts *opts,
                     ferry_sync_report *report,
                     int (*run)(ferry_session *s, const ferry_sync_opts *opts,
                                ferry_sync_report *report))
{
	if (!s)
		return run(s, opts, report);
	ferry__session_call_begin(s);
	if (opts && opts->version >= 5)
		ferry__session_call_stop(s, opts->stop);
	int rc = ferry__session_sftp_turn_begin(s);
	if (!rc) {
		rc = run(s, opts, report);
		ferry__sftp_trim(ferry__session_sftp_peek(s));
		ferry__session_sftp_turn_end(s);
	} else if (report) {
		memset(report, 0, sizeof(*report));
	}
	ferry__session_call_end(s);
	ferry__alloc_release();
	return rc;
}
