#!/usr/bin/env bash
# bench/servers.sh - ferry push against every SFTP server of the test matrix
# (issue 12), on loopback: cold and no-op push medians per server, with
# OpenSSH's for reference, and 20 cold pushes in a row against Dropbear
# with its default window.
#
#   B=build RUNS=10 bench/servers.sh
#
# Environment (all optional):
#   B        build directory holding ferry and bench/gentree, bench/tm
#   RUNS     measured runs per server and case (default 10, at least 10)
#   WARM     warm-up rounds (default 1)
#   SERVERS  subset of: openssh dropbear gesftpserver proftpd asyncssh
#            paramiko (default all)
#   ROW      Dropbear's cold pushes in a row (default 20)
#   KEEP     1 keeps the work directory
#
# The tree is bench/run.sh's default (gentree create -n 400 -s 1: 403
# files in 62 directories, about 2 MB).  Each server is started privately
# by the tests' own scripts (tests/sshd.sh, dropbear.sh, proftpd.sh,
# pyserver.sh); a server that cannot start here is reported as such.
# Runs alternate between servers round-robin (A B C ... A B C ...), so drift
# hits every server alike.  A cold push goes to a new destination with a
# new manifest; a no-op push repeats a push of the same tree to the same
# destination.  Every cold push's remote tree is compared with the source
# (untimed); a push that failed or differs is counted and shown.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
B=$(cd "$src" && mkdir -p "$B" && cd "$B" && pwd)
RUNS=${RUNS:-10}
WARM=${WARM:-1}
ROW=${ROW:-20}
SERVERS=${SERVERS:-openssh dropbear gesftpserver proftpd asyncssh paramiko}
FERRY_BIN=$B/ferry
for t in "$FERRY_BIN" "$B/bench/gentree" "$B/bench/tm"; do
	[ -x "$t" ] || { echo "servers.sh: $t missing (make B=${B#$src/} tests)" >&2; exit 1; }
done
[ "$RUNS" -ge 10 ] 2>/dev/null || echo "servers.sh: warning: RUNS=$RUNS (a result needs at least 10)" >&2

W=$(mktemp -d /tmp/ferry-bench-servers.XXXXXX)
export XDG_STATE_HOME=$W/state
unset SSH_AUTH_SOCK
STARTED=()
mounted=0
log() { printf '%s servers: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

script_of() {
	case $1 in
	openssh | gesftpserver) echo sshd.sh ;;
	dropbear) echo dropbear.sh ;;
	proftpd) echo proftpd.sh ;;
	asyncssh | paramiko) echo pyserver.sh ;;
	*) return 1 ;;
	esac
}

cleanup() {
	local s
	for s in "${STARTED[@]}"; do
		"$src/tests/$(script_of "$s")" stop "$W/$s" >/dev/null 2>&1
		[ -f "$W/$s/root" ] && rm -rf "$(cat "$W/$s/root")"
	done
	[ "$mounted" = 1 ] && umount "$W/remote" 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start server $1 in $W/$1; on success it is listed in STARTED and
# $W/$1/root names a new directory its account owns for the trees.
start() {
	local s=$1 d=$W/$1 arg="" rc
	mkdir -p "$d"
	case $s in
	gesftpserver)
		[ -x /usr/libexec/gesftpserver ] || { echo "not installed" > "$d/why"; return 1; }
		echo "Subsystem sftp /usr/libexec/gesftpserver" > "$d/extra_config"
		arg=$d/extra_config ;;
	asyncssh | paramiko) arg=$s ;;
	esac
	"$src/tests/$(script_of "$s")" start "$d" $arg >/dev/null 2>"$d/why"
	rc=$?
	[ $rc = 0 ] || { [ $rc = 77 ] && sed -i '1s/^/cannot run here: /' "$d/why"; return 1; }
	STARTED+=("$s")
	local user base
	user=$(cat "$d/user" 2>/dev/null || id -un)
	echo "$user" > "$d/user"
	if [ "$mounted" = 1 ]; then
		base=$W/remote/$s
		mkdir "$base"
	elif [ "$user" = "$(id -un)" ]; then
		base=$(mktemp -d "$d/ferry-bench-XXXXXX")
	else
		base=$(mktemp -d "$(getent passwd "$user" | cut -d: -f6)/ferry-bench-XXXXXX")
	fi
	chown "$user" "$base" || return 1
	echo "$base" > "$d/root"
}

# ferry push --json of the tree to server $1's DEST $2 with state dir $3;
# prints tm's "MS RSS STATUS".
push() {
	local d=$W/$1
	"$B/bench/tm" -o "$W/push.json" -e "$W/push.err" -- "$FERRY_BIN" push --json \
		--state-dir "$3" -p "$(cat "$d/port")" -i "$d/id_ed25519" \
		--known-hosts "$d/known_hosts" "$W/tree/" \
		"$(cat "$d/user")@127.0.0.1:$(cat "$d/root")/$2"
}

# One measured push: CASE SERVER DEST STATE -> a line of $W/raw.tsv
measure() {
	local r ms st ok=1
	r=$(push "$2" "$3" "$4")
	ms=${r%% *}
	st=${r##* }
	[ "$st" = 0 ] || ok=0
	if [ "$1" = cold ]; then
		diff -r -x .ferry-id "$W/tree" "$(cat "$W/$2/root")/$3" >/dev/null 2>&1 || ok=0
	fi
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$ms" "$ok" >> "$W/raw.tsv"
	echo "$ms"
}

# The remote trees on a tmpfs, as bench/run.sh's, when we may mount one;
# the test accounts reach it through $W.
mounted=0
mkdir -p "$W/remote"
if mount -t tmpfs -o size=4g,mode=0755 ferry-bench-servers "$W/remote" 2>/dev/null; then
	mounted=1
	chmod 711 "$W"
	remote_fs="tmpfs (mounted for the run)"
else
	remote_fs="plain directories on $(df -T /tmp | awk 'NR==2{print $2}') (mount -t tmpfs not permitted)"
fi
tree_info=$("$B/bench/gentree" create "$W/tree" -n 400 -s 1) || exit 1
log "tree: $tree_info; remote: $remote_fs"
: > "$W/raw.tsv"
UP=()
for s in $SERVERS; do
	if start "$s"; then
		UP+=("$s")
		log "$s on 127.0.0.1:$(cat "$W/$s/port")"
	else
		log "$s: not measured: $(head -1 "$W/$s/why")"
	fi
done
[ ${#UP[@]} -gt 0 ] || { echo "servers.sh: no server started" >&2; exit 1; }

# The no-op destinations, pushed once.
for s in "${UP[@]}"; do push "$s" noop "$W/$s/state-noop" >/dev/null; done

# Each round: a cold push to every server in turn, then a no-op push to
# every server in turn (so that two pushes to one server are never back to
# back).
n=0
for round in $(seq $((WARM + RUNS))); do
	for s in "${UP[@]}"; do
		n=$((n + 1))
		if [ "$round" -le "$WARM" ]; then
			push "$s" cold-$n "$W/$s/state-$n" >/dev/null
		else
			measure cold "$s" cold-$n "$W/$s/state-$n" >/dev/null
		fi
		rm -rf "$(cat "$W/$s/root")/cold-$n" "$W/$s/state-$n"
	done
	for s in "${UP[@]}"; do
		if [ "$round" -le "$WARM" ]; then
			push "$s" noop "$W/$s/state-noop" >/dev/null
		else
			measure noop "$s" noop "$W/$s/state-noop" >/dev/null
		fi
	done
done

# Dropbear, default window: ROW cold pushes in a row.
row=""
if [[ " ${UP[*]} " == *" dropbear "* ]]; then
	for i in $(seq "$ROW"); do
		measure row dropbear "row-$i" "$W/dropbear/state-row-$i" >/dev/null
		rm -rf "$(cat "$W/dropbear/root")/row-$i" "$W/dropbear/state-row-$i"
	done
	row=1
fi

# ---- report ------------------------------------------------------------------
python3 - "$W/raw.tsv" "$tree_info" "$ROW" "${UP[*]}" "$SERVERS" "$W" "$remote_fs" <<'PY'
import statistics, sys
raw, tree, row_n, up, wanted, w, remote = sys.argv[1:8]
up = up.split()
cells = {}
for line in open(raw):
    case, server, ms, ok = line.rstrip("\n").split("\t")
    cells.setdefault((case, server), []).append((float(ms), ok == "1"))

def med(case, s):
    v = [ms for ms, _ in cells.get((case, s), [])]
    return statistics.median(v) if v else None

def bad(case, s):
    return sum(1 for _, ok in cells.get((case, s), []) if not ok)

def fmt(case, s):
    m = med(case, s)
    if m is None:
        return "n/a"
    v = [ms for ms, _ in cells[(case, s)]]
    out = "%.1f (%.1f–%.1f)" % (m, min(v), max(v))
    if bad(case, s):
        out += " **%d failed**" % bad(case, s)
    return out

runs = max((len(v) for k, v in cells.items() if k[0] == "cold"), default=0)
print("Tree: %s; remote: %s; %d alternating runs per server and case;"
      " ferry push CLI, a new connection each; ms, median (min–max)." % (tree, remote, runs))
print()
print("| server | cold push | no-op push | cold / OpenSSH | no-op / OpenSSH |")
print("| --- | --- | --- | --- | --- |")
ref_c, ref_n = med("cold", "openssh"), med("noop", "openssh")
for s in wanted.split():
    if s not in up:
        why = open("%s/%s/why" % (w, s)).readline().strip() or "did not start"
        print("| %s | not measured: %s | | | |" % (s, why))
        continue
    rc = "%.2f" % (med("cold", s) / ref_c) if ref_c else "n/a"
    rn = "%.2f" % (med("noop", s) / ref_n) if ref_n else "n/a"
    print("| %s | %s | %s | %s | %s |" % (s, fmt("cold", s), fmt("noop", s), rc, rn))
row = [ms for ms, _ in cells.get(("row", "dropbear"), [])]
if row:
    print()
    mx = max(row)
    line = "Dropbear, default window: %d cold pushes in a row: median %.1f ms, max %.1f ms" % (len(row), statistics.median(row), mx)
    if ref_c:
        lim = 3 * ref_c
        line += "; 3× the OpenSSH cold median = %.1f ms: %s" % (lim, "within" if mx <= lim else "**exceeded**")
    if bad("row", "dropbear"):
        line += "; **%d failed**" % bad("row", "dropbear")
    print(line + ".")
PY
