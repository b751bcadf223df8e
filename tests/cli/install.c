/* make install DESTDIR=... PREFIX=..., then programs compiled against the
 * installed ferry.pc alone and run against the test sshd: the README's
 * library example and tests/examples/opts_init.c (the *_opts_init API). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

/* make install into d/root with the given variables (PREFIX=... etc.). */
static void install_to(const char *d, const char *vars)
{
	const char *san = getenv("FERRY_TEST_SAN");
	cr_assert_eq(
	        fx_sh("make -s -C %s B=%s SAN='%s' install DESTDIR=%s/root "
	              "%s >%s/make.log 2>&1",
	              FERRY_SRCDIR, FERRY_BUILDDIR, san ? san : "", d, vars, d),
	        0, "make install %s failed (see %s/make.log)", vars, d);
}

/* Compile src (a path) into d/name with pkg-config over the installed
 * ferry.pc in d/root/pcdir. */
static void build_against_pc(const char *d, const char *pcdir, const char *src,
                             const char *name)
{
	const char *san = getenv("FERRY_TEST_SAN");
	cr_assert_eq(fx_sh("cd %s && export PKG_CONFIG_PATH=%s/root%s "
	                   "PKG_CONFIG_SYSROOT_DIR=%s/root && cc -std=c99 "
	                   "-Wall -Werror %s %s $(pkg-config --cflags --libs "
	                   "ferry) -o %s >cc-%s.log 2>&1",
	                   d, d, pcdir, d, san ? san : "", src, name, name),
	             0,
	             "%s does not compile against the installed ferry.pc "
	             "(see %s/cc-%s.log)",
	             src, d, name);
}

/* Run d/name HOST PORT SRC DST with the defaults the README names
 * (~/.ssh/id_ed25519, ~/.ssh/known_hosts under d/home); its output. */
static char *run_example(const char *d, const char *libdir, const char *name,
                         const char *dst)
{
	const fx_sshd *sv = fx_shared();
	cr_assert_eq(fx_sh("mkdir -p %s/home/.ssh %s/src/sub && cp %s "
	                   "%s/home/.ssh/id_ed25519 && cp %s "
	                   "%s/home/.ssh/known_hosts "
	                   "&& echo one > %s/src/a && echo two > %s/src/sub/b",
	                   d, d, sv->key_ed25519, d, sv->known_hosts, d, d, d),
	             0);
	char *out = fx_sh_out("cd %s && HOME=%s/home XDG_STATE_HOME=%s/state "
	                      "LD_LIBRARY_PATH=%s/root%s ./%s 127.0.0.1 %d "
	                      "%s/src/ %s/%s 2>&1; echo rc=$?",
	                      d, d, d, d, libdir, name, sv->port, d, d, dst);
	cr_assert_not_null(out);
	return out;
}

Test(install, readme_example_builds_and_runs_against_installed_ferry,
     .timeout = 600)
{
	char *d = fx_tmpdir("inst");
	install_to(d, "PREFIX=/opt/ferry-test");
	cr_assert_eq(
	        fx_sh("cd %s/root/opt/ferry-test && test -x bin/ferry && test "
	              "-f lib/libferry.a && test -L lib/libferry.so && test -f "
	              "include/ferry.h && test -f lib/pkgconfig/ferry.pc && "
	              "test -f share/man/man1/ferry.1",
	              d),
	        0, "installed files missing");
	/* The .pc names where the files went, not where they were built. */
	char *pc = fx_sh_out(
	        "cat %s/root/opt/ferry-test/lib/pkgconfig/ferry.pc", d);
	cr_assert(pc && strstr(pc, "prefix=/opt/ferry-test\n") &&
	                  strstr(pc, "includedir=/opt/ferry-test/include\n"),
	          "installed ferry.pc:\n%s", pc ? pc : "(none)");
	free(pc);
	/* The example is the first C block after <!-- example.c -->. */
	cr_assert_eq(fx_sh("awk '/<!-- example.c -->/{f=1;next} "
	                   "f&&/^```c/{p=1;next} "
	                   "p&&/^```/{exit} p' %s/README.md > %s/example.c && "
	                   "test -s %s/example.c",
	                   FERRY_SRCDIR, d, d),
	             0);
	build_against_pc(d, "/opt/ferry-test/lib/pkgconfig", "example.c",
	                 "example");
	char *out = run_example(d, "/opt/ferry-test/lib", "example", "dst");
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

Test(install, opts_init_program_builds_and_runs_with_split_dirs, .timeout = 600)
{
	char *d = fx_tmpdir("inst2");
	install_to(d, "PREFIX=/usr LIBDIR=/usr/lib64/ferry "
	              "INCDIR=/usr/include/ferry-0");
	cr_assert_eq(fx_sh("test -f %s/root/usr/include/ferry-0/ferry.h && "
	                   "test -f %s/root/usr/lib64/ferry/pkgconfig/ferry.pc",
	                   d, d),
	             0, "installed files not under LIBDIR and INCDIR");
	build_against_pc(d, "/usr/lib64/ferry/pkgconfig",
	                 FERRY_SRCDIR "/tests/examples/opts_init.c", "oi");
	char *out = run_example(d, "/usr/lib64/ferry", "oi", "dst2");
	cr_assert(strstr(out, "rc=0"), "%s", out);
	cr_assert_eq(fx_sh("cmp -s %s/src/sub/b %s/dst2/sub/b", d, d), 0,
	             "the push did not arrive:\n%s", out);
	free(out);
	fx_sh("rm -rf %s", d);
	free(d);
}
