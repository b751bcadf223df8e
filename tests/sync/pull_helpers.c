#include "pull_helpers.h"

#include <criterion/criterion.h>
#include <string.h>

int pl_pull(ph_env *env, ferry_sync_report *r)
{
	memset(r, 0, sizeof(*r));
	env->loglen = 0;
	env->log[0] = '\0';
	return ferry_pull(env->s, &env->o, r);
}

void pl_pull_ok(ph_env *env, ferry_sync_report *r)
{
	ferry_sync_report tmp;
	if (!r)
		r = &tmp;
	int rc = pl_pull(env, r);
	cr_assert_eq(rc, 0, "pull: %s: %s\nlog:\n%s", ferry_strerror(rc),
	             ferry_session_errmsg(env->s), env->log);
	if (r == &tmp)
		ferry_sync_report_free(&tmp);
}
