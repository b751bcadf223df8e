/* pull_helpers.h - helpers of the pull tests (tests/sync/pull*.c): in a
 * PH_ENV environment (push_env.h) the remote tree is e.src (the fixture
 * sshd serves local paths) and the local destination e.dst; e.o pulls
 * "e.src/" into e.dst. */
#ifndef FERRY_TEST_PULL_HELPERS_H
#define FERRY_TEST_PULL_HELPERS_H

#include "push_env.h"

/* Pull e->o into e->dst (the sources set to e->src/ first when none were
 * changed by the test); the report is filled (the caller frees it). */
int pl_pull(ph_env *env, ferry_sync_report *r);
/* Pull and assert success; the report freed when r is NULL. */
void pl_pull_ok(ph_env *env, ferry_sync_report *r);

#endif
