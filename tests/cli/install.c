/* make install DESTDIR=..., then the README's library example compiled
 * against the installed ferry.pc and run against the test sshd. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

Test(install, readme_example_builds_and_runs_against_installed_ferry,
     .timeout = 600)
{
	const fx_sshd *sv = fx_shared();
	char *d = fx_tmpdir("inst");
	const char *san = getenv("FERRY_TEST_SAN");
	if (!san)
		san = "";
	cr_assert_eq(
	        fx_sh("make -s -C %s B=%s SAN='%s' install DESTDIR=%s/root "
	              "PREFIX=/usr/local >%s/make.log 2>&1",
	              FERRY_SRCDIR, FERRY_BUILDDIR, san, d, d),
	        0, "make install failed (see %s/make.log)", d);
	cr_assert_eq(
	        fx_sh("cd %s/root/usr/local && test -x bin/ferry && test -f "
	              "lib/libferry.a && test -L lib/libferry.so && test -f "
	              "include/ferry.h && test -f lib/pkgconfig/ferry.pc && "
	              "test -f share/man/man1/ferry.1",
	              d),
	        0, "installed files missing");
	/* The example is the first C block after <!-- example.c -->. */
	cr_assert_eq(fx_sh("awk '/<!-- example.c -->/{f=1;next} "
	                   "f&&/^```c/{p=1;next} "
	                   "p&&/^```/{exit} p' %s/README.md > %s/example.c && "
	                   "test -s %s/example.c",
	                   FERRY_SRCDIR, d, d),
	             0);
	cr_assert_eq(fx_sh("cd %s && "
	                   "PKG_CONFIG_PATH=%s/root/usr/local/lib/pkgconfig "
	                   "PKG_CONFIG_SYSROOT_DIR=%s/root cc -std=c99 -Wall "
	                   "-Werror %s example.c $(PKG_CONFIG_PATH=%s/root/usr/"
	                   "local/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=%s/root "
	                   "pkg-config --cflags --libs ferry) -o example "
	                   ">cc.log 2>&1",
	                   d, d, d, san, d, d),
	             0, "the README example does not compile (see %s/cc.log)",
	             d);
	/* It runs with the defaults: ~/.ssh/id_ed25519, ~/.ssh/known_hosts. */
	cr_assert_eq(fx_sh("mkdir -p %s/home/.ssh %s/src/sub && cp %s "
	                   "%s/home/.ssh/id_ed25519 && cp %s "
	                   "%s/home/.ssh/known_hosts "
	                   "&& echo one > %s/src/a && echo two > %s/src/sub/b",
	                   d, d, sv->key_ed25519, d, sv->known_hosts, d, d, d),
	             0);
	char *out = fx_sh_out("cd %s && HOME=%s/home XDG_STATE_HOME=%s/state "
	                      "LD_LIBRARY_PATH=%s/root/usr/local/lib ./example "
	                      "127.0.0.1 %d %s/src/ %s/dst 2>&1; echo rc=$?",
	                      d, d, d, d, sv->port, d, d);
	cr_assert_not_null(out);
	cr_assert(strstr(out, ">f+++++++++ a") &&
	                  strstr(out, "cd+++++++++ sub/"),
	          "%s", out);
	cr_assert(strstr(out, "push: ok, 2 uploaded"), "%s", out);
	cr_assert(strstr(out, "exit 0: 2\n") && strstr(out, "rc=0"), "%s", out);
	cr_assert_eq(fx_sh("cmp -s %s/src/sub/b %s/dst/sub/b", d, d), 0);
	free(out);
	fx_sh("rm -rf %s", d);
	free(d);
}
