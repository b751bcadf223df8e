/* push_env.h - the environment of a push test as a Criterion fixture:
 * Test(suite, name, PH_ENV) runs with e set up by ph_init (the shared
 * server, the session open, the scratch directory tagged with the test's
 * name) and torn down by ph_fini afterwards, a failed assertion or not.
 * A test on a server of its own sets up e itself with ph_init_on. */
#ifndef FERRY_TEST_PUSH_ENV_H
#define FERRY_TEST_PUSH_ENV_H

#include "push_helpers.h"

extern ph_env e;
void ph_setup(void);
void ph_teardown(void);

#define PH_ENV .init = ph_setup, .fini = ph_teardown

#endif
