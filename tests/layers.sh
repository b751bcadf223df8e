#!/bin/sh
# tests/layers.sh - the layering rules, checked mechanically (make check-layers):
#  1. cli/ sees only the public header: it compiles against an include
#     directory holding ferry.h alone, and includes no library header;
#  2. sync/ and exec/ never include each other; lib/ includes neither;
#  3. no include cycle between modules (a module is dir/name: name.c,
#     name.h and its private name_int.h) of lib/, sync/, exec/ and cli/.
# Prints each violation; exits 1 when there is one.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
CC=${CC:-cc}
bad=0
fail() { echo "check-layers: $*"; bad=1; }

# Every quoted include of lib/ sync/ exec/ cli/ as "file module-included",
# the included header resolved as the compiler would (the including file's
# directory, then lib/, then the top directory).
edges() {
	for f in lib/*.[ch] sync/*.[ch] exec/*.[ch] cli/*.[ch]; do
		d=$(dirname "$f")
		sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
		while read -r h; do
			if [ -f "$d/$h" ]; then r="$d/$h"
			elif [ -f "lib/$h" ]; then r="lib/$h"
			elif [ -f "$h" ]; then r="$h"
			else r="?/$h"; fi
			echo "$f ${r%.*}"
		done
	done
}
E=$(edges)

# 1. cli/: only ferry.h and its own headers.
inc="$B/layers/include"
mkdir -p "$inc" && rm -f "$inc"/* && cp lib/ferry.h "$inc/"
printf '%s\n' "$E" | awk '$1 ~ /^cli\// && $2 !~ /^cli\// && $2 != "lib/ferry" {print}' |
while read -r f m; do echo "check-layers: $f includes $m.h (cli/ may use only ferry.h)"; done | grep . && bad=1
for f in cli/*.c; do
	$CC -std=gnu11 -D_GNU_SOURCE -fsyntax-only -I"$inc" "$f" 2>"$B/layers/err" ||
		{ fail "$f does not compile against ferry.h alone:"; head -5 "$B/layers/err"; }
done

# 2. sync/ <-> exec/, lib/ -> sync/ or exec/.
printf '%s\n' "$E" | awk '
	$1 ~ /^sync\// && $2 ~ /^exec\// {print $1 " includes " $2 ".h (sync/ and exec/ never include each other)"}
	$1 ~ /^exec\// && $2 ~ /^sync\// {print $1 " includes " $2 ".h (sync/ and exec/ never include each other)"}
	$1 ~ /^lib\// && $2 ~ /^(sync|exec|cli)\// {print $1 " includes " $2 ".h (lib/ depends on no module above it)"}
	$2 ~ /^\?\// {print $1 " includes " substr($2, 3) ": not found"}' |
while read -r l; do echo "check-layers: $l"; done | grep . && bad=1

# 3. Module cycles: tsort reports a loop on its stderr.
printf '%s\n' "$E" | awk '{m=$1; sub(/\.[ch]$/, "", m); sub(/_int$/, "", m); t=$2; sub(/_int$/, "", t); if (m != t) print m, t}' |
	tsort >/dev/null 2>"$B/layers/tsort"
if grep -q loop "$B/layers/tsort"; then
	fail "include cycle between modules:"
	sed 's/^tsort: /  /' "$B/layers/tsort"
fi

[ "$bad" = 0 ] && echo "check-layers: ok ($(printf '%s\n' "$E" | wc -l) includes checked)"
exit "$bad"
