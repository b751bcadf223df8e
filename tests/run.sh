#!/usr/bin/env bash
# tests/run.sh - run the whole suite: starts one private sshd shared by the
# tests (tests may start more), runs every Criterion binary and a short
# fuzz run, stops the sshd, prints one closing line.
set -uo pipefail
B=${B:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
src=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "$src" && mkdir -p "$B" && cd "$B" && pwd)
export FERRY_TEST_TMP=$(mktemp -d /tmp/ferry-test.XXXXXX)
export XDG_STATE_HOME=$FERRY_TEST_TMP/state
export FERRY_BIN=$B/ferry
export FERRY_TEST_SAN=${SAN:-}
export LSAN_OPTIONS=suppressions=$src/tests/lsan.supp:print_suppressions=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
unset SSH_AUTH_SOCK
sv=$FERRY_TEST_TMP/sshd
cleanup() {
	"$src/tests/sshd.sh" stop "$sv" >/dev/null 2>&1
	# Private servers started by tests that crashed before stopping them
	# (tests/sshd.sh, dropbear.sh, proftpd.sh, pyserver.sh).
	for p in "$FERRY_TEST_TMP"/ferry-*/{sshd,dropbear,proftpd,server}.pid; do
		[ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null
	done
	rm -rf "$FERRY_TEST_TMP"
}
trap cleanup EXIT
"$src/tests/sshd.sh" start "$sv" >/dev/null || { echo "run.sh: cannot start the test sshd"; exit 1; }
export FERRY_TEST_SSHD_DIR=$sv

passed=0 failed=0 status=0
for t in "$B"/tests/test-*; do
	[ -x "$t" ] || continue
	echo "== $(basename "$t")"
	out=$("$t" --jobs 2 --timeout 300 ${CRITERION_ARGS:-} 2>&1); rc=$?
	# Criterion prints an assertion's file:line and message on "[----]"
	# lines: a failed run shows them all; a passing one only its summary.
	if [ "$rc" = 0 ]; then
		printf '%s\n' "$out" | grep -vE '^\[----\]|^$' | tail -n 40
	else
		printf '%s\n' "$out" | grep -vE '^$' | tail -n 400
	fi
	syn=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
	p=$(printf '%s' "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
	f=$(printf '%s' "$syn" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
	c=$(printf '%s' "$syn" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${c:-0}))
	[ "$rc" = 0 ] || { status=1; [ -z "$syn" ] && failed=$((failed + 1)); }
	# A leak is reported after a test passed: it fails the run all the same.
	if printf '%s\n' "$out" | grep -q 'ERROR: LeakSanitizer'; then
		printf '%s\n' "$out" | grep -A30 'ERROR: LeakSanitizer' | head -60
		echo "run.sh: memory leaked in $(basename "$t")"; failed=$((failed + 1)); status=1
	fi
done

# The Python package's tests (python/tests, pytest from Debian's
# python3-pytest), against the same sshd and this build's libferry.so.
python_tests() {
	local py=${PYTHON:-/usr/bin/python3} rt= out rc sum p f e
	local pyenv=(FERRY_LIB="$B/libferry.so" PYTHONDONTWRITEBYTECODE=1)
	if ! "$py" -c 'import pytest' 2>/dev/null; then
		echo "run.sh: $py has no pytest (apt-get install python3-pytest, or make deps)"
		failed=$((failed + 1)); status=1; return
	fi
	# A sanitized library needs its runtime loaded first; Python's own
	# allocations are not ours to check for leaks.
	case ${SAN:-} in
	*address*) rt=libasan.so; pyenv+=(ASAN_OPTIONS=detect_leaks=0) ;;
	*undefined*) rt=libubsan.so ;;
	esac
	if [ -n "$rt" ]; then
		rt=$(${CC:-cc} -print-file-name=$rt)
		if [ ! -e "$rt" ]; then
			echo "run.sh: python tests skipped: ${CC:-cc} has no sanitizer runtime $rt to preload"
			return
		fi
		pyenv+=(LD_PRELOAD="$rt")
	fi
	out=$(env "${pyenv[@]}" "$py" -m pytest -q -p no:cacheprovider \
		${PYTEST_ARGS:-} "$src/python/tests" 2>&1); rc=$?
	if [ "$rc" = 0 ]; then
		printf '%s\n' "$out" | tail -n 3
	else
		printf '%s\n' "$out" | tail -n 200
	fi
	sum=$(printf '%s\n' "$out" | grep -E '^(=+ )?[0-9]+ (passed|failed|error)' | tail -1)
	p=$(printf '%s' "$sum" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
	f=$(printf '%s' "$sum" | sed -n 's/.*\b\([0-9][0-9]*\) failed.*/\1/p')
	e=$(printf '%s' "$sum" | sed -n 's/.*\b\([0-9][0-9]*\) error.*/\1/p')
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0}))
	[ "$rc" = 0 ] || { status=1; [ -z "$sum" ] && failed=$((failed + 1)); }
}
if [ -d "$src/python/tests" ] && [ -z "${SKIP_PYTHON:-}" ]; then
	echo "== python (pytest)"
	python_tests
fi

if [ "$FUZZ_SECONDS" -gt 0 ] && command -v clang >/dev/null && ls "$src"/tests/fuzz/*.c >/dev/null 2>&1; then
	echo "== fuzz (${FUZZ_SECONDS}s each)"
	if make -s -C "$src" B="$B" FUZZ_SECONDS="$FUZZ_SECONDS" fuzz >"$FERRY_TEST_TMP/fuzz.log" 2>&1; then
		grep -E '^fuzz |stat::number_of_executed_units' "$FERRY_TEST_TMP/fuzz.log"
		passed=$((passed + 1))
	else
		tail -40 "$FERRY_TEST_TMP/fuzz.log"; failed=$((failed + 1)); status=1
	fi
fi
echo
echo "ferry tests: $passed passed, $failed failed"
exit $status
