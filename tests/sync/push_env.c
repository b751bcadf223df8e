#include "push_env.h"

#include <criterion/criterion.h>

ph_env e;

void ph_setup(void)
{
	ph_init(&e, criterion_current_test->name);
}

void ph_teardown(void)
{
	ph_fini(&e);
}
