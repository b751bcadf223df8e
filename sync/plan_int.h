/* plan_int.h - shared by the files of the plan (plan.c, apply.c): not for
 * the executor. */
#ifndef FERRY_SYNC_PLAN_INT_H
#define FERRY_SYNC_PLAN_INT_H

#include <stdint.h>

#include "sync/plan.h"

/* The phase of an action in the execution order (plan.h: 0..8). */
int ferry__action_phase(const ferry__action *a);

/* 1 when a file with these times, recorded in a manifest whose stat_ns is
 * ref_ns, is racily clean: a change after the stat may have left every
 * compared field the same (window: ferry__scan.racy_ns). */
static inline int ferry__racy(int64_t mtime_ns, int64_t ctime_ns,
                              int64_t ref_ns, int64_t window_ns)
{
	return mtime_ns >= ref_ns - window_ns || ctime_ns >= ref_ns - window_ns;
}

#endif
