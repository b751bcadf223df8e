#!/usr/bin/env bash
# bench/run.sh - `make bench`: ferry against rsync and ssh on one machine,
# on loopback and through bench/relay at simulated round trips.
#
#   B=build RTT="20 50" bench/run.sh
#
# Environment (all optional):
#   B         build directory holding ferry and bench/* (default build)
#   RTT       extra round trips in ms besides loopback, e.g. "20 50"
#   SIM       how a round trip is simulated: wire (packets delayed between
#             two TUN devices across a network namespace: real TCP
#             behaviour), relay (bench/relay, a userspace TCP relay: no
#             kernel support needed), or auto (default: wire when this
#             machine allows it, else relay; tc netem when present is
#             not used by either - neither needs it)
#   RUNS      measured runs per tool and case (default 10, at least 10 for
#             a committed result); WARM warm-up rounds (default 2)
#   BIG_RUNS  runs for the 256 MiB case (default RUNS); BIG_MIB (256)
#   DELTA_RUNS runs for the delta case (default 5); DELTA_MIB its file (512)
#   CASES     subset of: cold noop change5 touch5 exec connect big delta
#             pcold pnoop pchange5 (pulls of the tree into a local directory)
#             scale (= cold10k noop10k cold100k noop100k: cold and no-op
#             pushes of 10,000 and 100,000 files, each case with a held
#             driver of its own, so its first push is the first in its
#             process; at loopback and at the SCALE_RTT levels)
#             python (bench/python_bench.py: the Python package's rows, on
#             loopback with its own sshd; results in OUT/python/latest.md)
#   TREE100K  0 skips the 100,000-file cases
#   SCALE_RUNS measured runs of the scale cases (default 3, one warm-up:
#             the first push, reported apart); SCALE_RTT the RTTs besides
#             loopback where they run (default 20; only those in RTT)
#   FERRY     0 marks every ferry cell n/a without trying (peers only)
#   NETNS     1 (default): as root, the bench re-runs itself in a network
#             namespace of its own (unshare -n), so lo carries nothing but
#             the bench's traffic (the bytes on the wire of the big and delta
#             cases count lo); 0 stays in the machine's namespace
#   OUT       results directory (default bench/results)
#   KEEP      1 keeps the work directory
#
# Tools: ferry-held (bench/held.c, one session), ferry-cli (a process and a
# connection per call), ferry-persist (the same CLI through a holder:
# --persist, started by the first warm-up run), rsync/ssh new or through a
# ControlMaster.
#
# Runs alternate between tools round-robin (A B C A B C ...) so drift hits
# every tool alike.  Each ferry cell is measured only when that part of
# ferry works (probed first); otherwise it is reported as n/a with the reason.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
B=$(cd "$src" && mkdir -p "$B" && cd "$B" && pwd)
BIN=$B/bench
RTT=${RTT:-}
RUNS=${RUNS:-10}
WARM=${WARM:-2}
BIG_RUNS=${BIG_RUNS:-$RUNS}
BIG_MIB=${BIG_MIB:-256}
DELTA_RUNS=${DELTA_RUNS:-5}
DELTA_MIB=${DELTA_MIB:-512}
CASE_ABORT=
WB0=
WB_DEV=lo
WB_MODE=lo
TREE100K=${TREE100K:-1}
CASES=${CASES:-cold noop change5 touch5 exec connect big delta pcold pnoop pchange5 scale python}
CASES=${CASES/scale/cold10k noop10k cold100k noop100k}
SCALE_RUNS=${SCALE_RUNS:-3}
SCALE_RTT=${SCALE_RTT:-20}
FERRY=${FERRY:-1}
OUT=${OUT:-$src/bench/results}
FERRY_BIN=$B/ferry

for t in gentree relay wire rttprobe tm xxhfloor; do
	[ -x "$BIN/$t" ] || { echo "bench: $BIN/$t missing (make B=${B#$src/} bench builds it)" >&2; exit 1; }
done
for t in rsync ssh gnuplot; do
	command -v $t >/dev/null || { echo "bench: $t not installed (make deps)" >&2; exit 1; }
done

# A network namespace of our own: lo (and so its counters, the bytes on the
# wire) is the bench's alone; same kernel, same loopback, same TCP settings.
NETNS=${NETNS:-1}
if [ "$NETNS" = 1 ] && [ -z "${FERRY_BENCH_IN_NETNS:-}" ] && [ "$(id -u)" = 0 ] &&
	command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
	export FERRY_BENCH_IN_NETNS=1
	exec unshare -n -- bash -c 'ip link set lo up || exit 1; exec "$@"' bench-netns "$0" "$@"
fi

W=$(mktemp -d /tmp/ferry-bench.XXXXXX)
RAW=$W/raw.tsv
META=$W/meta.tsv
: >"$RAW"
: >"$META"
export XDG_STATE_HOME=$W/state
# ferry --persist: the holders of this run (stopped at the end of each
# level and in cleanup).
export XDG_RUNTIME_DIR=$W/run
mkdir -m 700 "$XDG_RUNTIME_DIR"
PERSIST=--persist=600
unset SSH_AUTH_SOCK
PIDS=()
CMS=()
HPID=
HIN=
HOUT=
mounted=0
NS=
TA=
WIRE_PID=
SIM=${SIM:-auto}
H=127.0.0.1

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

holders_stop() { "$FERRY_BIN" master stop --all >/dev/null 2>&1; }

cleanup() {
	held_stop
	holders_stop
	for cm in "${CMS[@]}"; do ssh -o ControlPath="$cm" -O exit x >/dev/null 2>&1; done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	"$src/tests/sshd.sh" stop "$W/sshd" >/dev/null 2>&1
	"$src/tests/sshd.sh" stop "$W/sshd-ns" >/dev/null 2>&1
	[ -n "$WIRE_PID" ] && kill "$WIRE_PID" 2>/dev/null && wait "$WIRE_PID" 2>/dev/null
	[ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
	[ -n "$TA" ] && ip tuntap del dev "$TA" mode tun 2>/dev/null
	[ "$mounted" = 1 ] && umount "$W/remote" 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the remote: private sshd, destination on a tmpfs if we may mount one --
PORT=$("$src/tests/sshd.sh" start "$W/sshd") || { echo "bench: cannot start sshd" >&2; exit 1; }
KEY=$W/sshd/id_ed25519
KH=$W/known_hosts
cp "$W/sshd/known_hosts" "$KH"
mkdir -p "$W/remote"
if mount -t tmpfs -o size=12g,mode=0755 ferry-bench "$W/remote" 2>/dev/null; then
	mounted=1
	meta remote_fs "tmpfs (mounted for the run)"
else
	meta remote_fs "plain directory on $(df -T "$W" | awk 'NR==2{print $2}') (mount -t tmpfs not permitted)"
fi
R=$W/remote
log "sshd on 127.0.0.1:$PORT, remote destination: $(grep remote_fs "$META" | cut -f2)"

add_known_host() { # HOST PORT SSHD_DIR
	local k
	for k in "$3/host_ed25519.pub" "$3/host_ecdsa.pub"; do
		printf '[%s]:%s %s\n' "$1" "$2" "$(cut -d' ' -f1,2 "$k")" >>"$KH"
	done
}

# ---- machine and tools -----------------------------------------------------
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
if [ -n "${FERRY_BENCH_IN_NETNS:-}" ]; then
	meta netns "own (unshare -n): lo carries only the bench's traffic"
else
	meta netns "the machine's: lo is shared with whatever else runs here"
fi
meta machine "$(uname -srm), $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
meta ssh "$(ssh -V 2>&1)"
meta rsync "$(rsync --version | head -1 | sed 's/  */ /g')"
meta libssh2 "$(pkg-config --modversion libssh2 2>/dev/null || echo unknown)"
meta ferry_commit "$(git -C "$src" log -1 --format='%h %s' 2>/dev/null | cut -c1-100)"
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta runs "$RUNS"
meta warm "$WARM"
meta scale_runs "$SCALE_RUNS"
meta big_mib "$BIG_MIB"
meta big_runs "$BIG_RUNS"
meta delta_mib "$DELTA_MIB"
meta delta_runs "$DELTA_RUNS"
bashrc_ms=$("$BIN/tm" -- bash -c '. ~/.bashrc' | cut -d' ' -f1)
meta bashrc_ms "$bashrc_ms"
# ferry's session shell starts with one `bash -l` (the login-environment
# snapshot); a login shell reads ~/.profile, which on Debian sources
# ~/.bashrc whatever SHLVL says.  What that costs here, for the report:
meta bash_login_ms "$("$BIN/tm" -- bash -l -c true | cut -d' ' -f1)"
meta bash_plain_ms "$("$BIN/tm" -- bash -c true | cut -d' ' -f1)"

# ---- trees ---------------------------------------------------------------
tree_info=$("$BIN/gentree" create "$W/tree" -n 400 -s 1) || exit 1
meta tree "$tree_info"
# Levels of directories below the top (the pull's round-trip target).
meta tree_depth "$(find "$W/tree" -mindepth 1 -type d -printf '%d\n' | sort -n | tail -1)"
log "tree: $tree_info"
TOOLS_PUSH="ferry-cli ferry-persist ferry-held rsync-new rsync-cm"
mkdir -p "$W/src"
for t in $TOOLS_PUSH; do cp -a "$W/tree" "$W/src/$t"; done
big_needed=0
case " $CASES " in *" big "*) big_needed=1 ;; esac
if [ $big_needed = 1 ]; then
	mkdir -p "$W/big"
	"$BIN/gentree" big "$W/big/big.bin" -m "$BIG_MIB" >/dev/null || exit 1
fi
case " $CASES " in
*" delta "*)
	# the delta case's original; each level copies it once per tool
	mkdir -p "$W/delta"
	"$BIN/gentree" big "$W/delta/delta.bin" -m "$DELTA_MIB" -s 2 >/dev/null || exit 1
	;;
esac

# ---- the ways to reach the server at one round trip --------------------------
# Sets P (port), SSHC (ssh command for this port), SSHCM (through the master).
ssh_base() { # PORT
	printf 'ssh -F /dev/null -p %s -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR' "$1" "$KEY" "$KH"
}

# ---- packet-level simulation: wire between this namespace and $NS -----------
# The second sshd runs inside $NS on $HW; packets between $HA (here) and
# $HW cross bench/wire, which holds them RTT/2 each way.
wire_setup() {
	[ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] && command -v ip >/dev/null || return 1
	NS=ferry-bench-$$
	TA=fbA$$
	local TB=fbB$$ oct=$(($$ % 250 + 1))
	HA=10.77.$oct.1
	HW=10.77.$oct.2
	ip netns add "$NS" 2>/dev/null || { NS=; return 1; }
	ip netns exec "$NS" ip link set lo up &&
		ip tuntap add dev "$TA" mode tun &&
		ip netns exec "$NS" ip tuntap add dev "$TB" mode tun &&
		ip addr add "$HA" peer "$HW" dev "$TA" && ip link set "$TA" up &&
		ip netns exec "$NS" ip addr add "$HW" peer "$HA" dev "$TB" &&
		ip netns exec "$NS" ip link set "$TB" up || return 1
	TB_NAME=$TB
	printf 'ListenAddress %s\n' "$HW" >"$W/ns-extra.conf"
	PORT_NS=$(ip netns exec "$NS" "$src/tests/sshd.sh" start "$W/sshd-ns" "$W/ns-extra.conf") || return 1
	add_known_host "$HW" "$PORT_NS" "$W/sshd-ns"
	wire_start 0 || return 1
	# a sanity check through a zero-delay wire
	"$BIN/rttprobe" banner "$PORT_NS" 3 "$HW" >/dev/null || return 1
	wire_stop
	return 0
}

wire_start() { # RTT
	rm -f "$W/wire.ready"
	"$BIN/wire" -a "$TA" -b "$TB_NAME" -n "/var/run/netns/$NS" -r "$1" -R "$W/wire.ready" 2>>"$W/wire.log" &
	WIRE_PID=$!
	for _ in $(seq 100); do [ -e "$W/wire.ready" ] && return 0; sleep 0.02; done
	return 1
}

wire_stop() {
	[ -n "$WIRE_PID" ] && kill "$WIRE_PID" 2>/dev/null && wait "$WIRE_PID" 2>/dev/null
	WIRE_PID=
}

relay_start() { # RTT -> sets P
	local rtt=$1 pf=$W/relay-$1.port
	"$BIN/relay" -t "$PORT" -r "$rtt" -P "$pf" 2>>"$W/relay.log" &
	PIDS+=($!)
	RELAY_PID=$!
	for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.02; done
	P=$(cat "$pf")
	add_known_host 127.0.0.1 "$P" "$W/sshd"
}

# What a connection costs at this level, for the report: the relay's model
# (always checked, whichever simulator runs the cases) and, with the wire,
# the packet-level path.  A probe server sends one byte on accept, then
# echoes.
sim_check() { # RTT
	local rtt=$1 pf=$W/probe.port rp=$W/probe-relay-$1.port out
	if [ ! -s "$pf" ]; then
		"$BIN/rttprobe" serve "$pf" &
		PIDS+=($!)
		for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.02; done
	fi
	if [ "$rtt" = 0 ]; then
		out=$("$BIN/rttprobe" client "$(cat "$pf")" 20)
	else
		"$BIN/relay" -t "$(cat "$pf")" -r "$rtt" -P "$rp" 2>/dev/null &
		local rpid=$!
		for _ in $(seq 100); do [ -s "$rp" ] && break; sleep 0.02; done
		out=$("$BIN/rttprobe" client "$(cat "$rp")" 20)
		kill $rpid
		wait $rpid 2>/dev/null
	fi
	meta "relay_probe_$rtt" "$out"
	log "relay check at $rtt ms: $out"
	if [ "$rtt" != 0 ] && [ "$SIM" = wire ]; then
		if [ ! -s "$W/probe-ns.port" ]; then
			ip netns exec "$NS" "$BIN/rttprobe" serve "$W/probe-ns.port" "$HW" &
			PIDS+=($!)
			for _ in $(seq 100); do [ -s "$W/probe-ns.port" ] && break; sleep 0.02; done
		fi
		out=$("$BIN/rttprobe" client "$(cat "$W/probe-ns.port")" 20 "$HW")
		meta "wire_probe_$rtt" "$out"
		log "wire check at $rtt ms: $out"
	fi
	meta "sshd_banner_$rtt" "$("$BIN/rttprobe" banner "$P" 10 "$H")"
}

cm_start() { # RTT
	CMPATH=$W/cm-$1
	$SSHC -o ControlMaster=yes -o ControlPath="$CMPATH" -o ControlPersist=yes -f -N "$H" ||
		{ log "ControlMaster failed"; return 1; }
	CMS+=("$CMPATH")
	SSHCM="$SSHC -o ControlMaster=no -o ControlPath=$CMPATH"
}

cm_stop() { ssh -o ControlPath="$CMPATH" -O exit x >/dev/null 2>&1; }

# ---- the held-session driver (bench/held.c, once libferry has sync/exec) ----
# bash's coproc: HELDCO[0] reads its answers, HELDCO[1] writes commands.
held_start() {
	HPID=
	[ -x "$BIN/held" ] || return 1
	coproc HELDCO { exec "$BIN/held" -h "$H" -p "$P" -i "$KEY" -k "$KH" 2>>"$W/held.err"; }
	HPID=$HELDCO_PID
	HIN=${HELDCO[1]}
	HOUT=${HELDCO[0]}
	local line=
	if ! read -r -t 60 -u "$HOUT" line || [ "${line%% *}" != ready ]; then
		log "held driver: ${line:-no answer}"
		HELD_ERR=${line:-no answer}
		held_stop
		return 1
	fi
	meta "held_open_ms_$LVL" "${line#ready }"
	return 0
}

held_cmd() { # COMMAND... -> REPLY (one line)
	REPLY=
	[ -n "$HPID" ] || { REPLY="err driver not running"; return 1; }
	printf '%s\n' "$*" >&"$HIN" 2>/dev/null || { REPLY="err driver gone"; return 1; }
	if ! read -r -t 900 -u "$HOUT" REPLY; then
		REPLY="err driver timed out or died"
		held_stop
		return 1
	fi
	[ "${REPLY%% *}" = ok ]
}

held_stop() {
	if [ -n "${HPID:-}" ]; then
		printf 'quit\n' >&"$HIN" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$HPID" 2>/dev/null || break; sleep 0.05; done
		kill "$HPID" 2>/dev/null
		wait "$HPID" 2>/dev/null
		HPID=
	fi
}

# ---- which ferry cells can be measured --------------------------------------
NA_CLI_PUSH="" NA_CLI_EXEC="" NA_HELD_SYNC="" NA_HELD_EXEC="" NA_CLI_PULL="" NA_HELD_PULL=""
probe_ferry() {
	if [ "$FERRY" = 0 ]; then
		NA_CLI_PUSH="FERRY=0" NA_CLI_EXEC="FERRY=0" NA_HELD_SYNC="FERRY=0" NA_HELD_EXEC="FERRY=0"
		NA_CLI_PULL="FERRY=0" NA_HELD_PULL="FERRY=0"
		return
	fi
	if [ ! -x "$FERRY_BIN" ]; then
		NA_CLI_PUSH="no $FERRY_BIN" NA_CLI_EXEC="no $FERRY_BIN"
	else
		local r
		r=$("$BIN/tm" -o "$W/probe.out" -e "$W/probe.err" -- "$FERRY_BIN" push -p "$P" -i "$KEY" \
			--known-hosts "$KH" --delete --json "$W/tree/" "$H:$R/probe-push")
		if [ "$(echo "$r" | cut -d' ' -f3)" != 0 ]; then
			NA_CLI_PUSH="ferry push exits $(echo "$r" | cut -d' ' -f3): $(head -c 150 "$W/probe.err" | tr '\n\t' '  ')"
		elif ! diff -rq -x .ferry-id "$W/tree" "$R/probe-push" >/dev/null 2>&1; then
			NA_CLI_PUSH="ferry push exits 0 but the remote copy differs"
		fi
		r=$("$BIN/tm" -o "$W/probe.out" -e "$W/probe.err" -- "$FERRY_BIN" pull -p "$P" -i "$KEY" \
			--known-hosts "$KH" --delete --json "$H:$W/tree/" "$W/probe-pull")
		if [ "$(echo "$r" | cut -d' ' -f3)" != 0 ]; then
			NA_CLI_PULL="ferry pull exits $(echo "$r" | cut -d' ' -f3): $(head -c 150 "$W/probe.err" | tr '\n\t' '  ')"
		elif ! diff -rq "$W/tree" "$W/probe-pull" >/dev/null 2>&1; then
			NA_CLI_PULL="ferry pull exits 0 but the local copy differs"
		fi
		rm -rf "$W/probe-pull"
		r=$("$BIN/tm" -o "$W/probe.out" -e "$W/probe.err" -- "$FERRY_BIN" exec -p "$P" -i "$KEY" \
			--known-hosts "$KH" "$H" -- echo ferry-bench-ok)
		if ! grep -q ferry-bench-ok "$W/probe.out"; then
			NA_CLI_EXEC="ferry exec exits $(echo "$r" | cut -d' ' -f3): $(head -c 150 "$W/probe.err" | tr '\n\t' '  ')"
		fi
	fi
	if [ ! -x "$BIN/held" ]; then
		NA_HELD_SYNC="$BIN/held not built (make B=... bench builds bench/held.c)"
		NA_HELD_EXEC=$NA_HELD_SYNC
		NA_HELD_PULL=$NA_HELD_SYNC
	elif ! held_start; then
		NA_HELD_SYNC="held driver: ${HELD_ERR:-cannot start}"
		NA_HELD_EXEC=$NA_HELD_SYNC
		NA_HELD_PULL=$NA_HELD_SYNC
	else
		if ! held_cmd pull "$W/probe-pull" "$W/tree/"; then
			NA_HELD_PULL="ferry_pull: $REPLY"
		elif ! diff -rq "$W/tree" "$W/probe-pull" >/dev/null 2>&1; then
			NA_HELD_PULL="ferry_pull returns 0 but the local copy differs"
		fi
		rm -rf "$W/probe-pull"
		if ! held_cmd sync "$R/probe-held" "$W/tree/"; then
			NA_HELD_SYNC="ferry_sync: $REPLY"
		elif ! diff -rq -x .ferry-id "$W/tree" "$R/probe-held" >/dev/null 2>&1; then
			NA_HELD_SYNC="ferry_sync returns 0 but the remote copy differs"
		fi
		held_cmd exec "echo ferry-bench-ok" || NA_HELD_EXEC="ferry_exec: $REPLY"
		held_stop
	fi
	rm -rf "$R/probe-push" "$R/probe-held"
	meta na_ferry_cli_push "$NA_CLI_PUSH"
	meta na_ferry_cli_exec "$NA_CLI_EXEC"
	meta na_ferry_held_sync "$NA_HELD_SYNC"
	meta na_ferry_held_exec "$NA_HELD_EXEC"
	meta na_ferry_cli_pull "$NA_CLI_PULL"
	meta na_ferry_held_pull "$NA_HELD_PULL"
	log "ferry push CLI: ${NA_CLI_PUSH:-measured}; ferry exec CLI: ${NA_CLI_EXEC:-measured}; held sync: ${NA_HELD_SYNC:-measured}; held exec: ${NA_HELD_EXEC:-measured}"
}

# ---- bytes on the wire -----------------------------------------------------------
# Interface counters (/proc/net/dev) of the path the bench's traffic takes,
# read just before and just after one push, while the bench runs nothing
# else; the same for every tool (IP packets with their TCP/IP headers, both
# directions, ACKs, ssh handshake of a new connection included):
#   loopback level: lo's tx bytes (on lo each packet is sent once and
#     received once; tx counts it once; both directions together)
#   wire: the TUN device of this namespace (fbA...), which nothing but the
#     bench uses: tx = client->server, rx = server->client
#   relay: lo's tx bytes / 2 (the relay carries each byte over two
#     loopback connections: client->relay and relay->sshd)
wire_setup_counters() { # sets WB_DEV WB_MODE for this level
	if [ "$LVL" = 0 ]; then
		WB_DEV=lo WB_MODE=lo
	elif [ "$SIM" = wire ]; then
		WB_DEV=$TA WB_MODE=tun
	else
		WB_DEV=lo WB_MODE=relay
	fi
	meta "wire_bytes_method_$LVL" "$WB_MODE $WB_DEV"
}
wire_counters() { # -> "RX TX" of WB_DEV
	awk -v d="$WB_DEV:" '{sub(/^ +/, "")} $1 == d {print $2, $10; exit} \
		index($1, d) == 1 && length($1) > length(d) {sub(/^[^:]*:/, ""); print $1, $9; exit}' /proc/net/dev
}
wire_delta() { # "RX TX" at the start -> "TOTAL UP:DOWN" (UP:DOWN "-" when unknown)
	local rx0 tx0 rx1 tx1
	read -r rx0 tx0 <<<"$1"
	read -r rx1 tx1 <<<"$(wire_counters)"
	case $WB_MODE in
	lo) echo "$((tx1 - tx0)) -" ;;
	relay) echo "$(((tx1 - tx0) / 2)) -" ;;
	tun) echo "$((tx1 - tx0 + rx1 - rx0)) $((tx1 - tx0)):$((rx1 - rx0))" ;;
	esac
}
# Idle traffic on the counted device over 2 s, for the report: what else
# (other processes of this machine) would add to a push's count.
wire_idle() {
	local c
	c=$(wire_counters)
	sleep 2
	meta "wire_idle_bytes_2s_$LVL" "$(wire_delta "$c" | cut -d' ' -f1)"
}

# ---- one timed run ------------------------------------------------------------
# record CASE TOOL RUN MS RT RSS STATUS [EXTRA]; with WB0 set (the counters
# before the push), also the bytes on the wire: WIRE_BYTES UP:DOWN.
record() {
	local wb="- -"
	[ -n "$WB0" ] && wb=$(wire_delta "$WB0")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$LVL" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${8:-}" \
		"${wb% *}" "${wb#* }" >>"$RAW"
}

# The last row of RAW, when it says the run succeeded, gets STATUS instead
# (e.g. "differs": the copy is wrong, so the run does not count).
record_fail_last() { # STATUS
	awk -F'\t' -v OFS='\t' -v st="$1" 'NR == FNR {n = NR; next} FNR == n && $8 == "0" {$8 = st} 1' \
		"$RAW" "$RAW" >"$RAW.tmp" && mv "$RAW.tmp" "$RAW"
}

tool_na() { # TOOL CASE -> reason or empty
	case $1 in
	ferry-cli | ferry-persist) case $2 in exec | connect) echo "$NA_CLI_EXEC" ;; p*) echo "$NA_CLI_PULL" ;; *) echo "$NA_CLI_PUSH" ;; esac ;;
	ferry-held) case $2 in exec | connect) echo "$NA_HELD_EXEC" ;; p*) echo "$NA_HELD_PULL" ;; *) echo "$NA_HELD_SYNC" ;; esac ;;
	ferry-lib) echo "$NA_HELD_EXEC" ;;
	esac
}

# tm output "MS RSS STATUS" -> record; ferry's --json gives round trips.
record_tm() { # CASE TOOL RUN TMOUT [RT [EXTRA]]
	local ms rss st
	read -r ms rss st <<<"$4"
	if [ "$st" != 0 ]; then
		cp "$W/run.err" "$W/err-$LVL-$1-$2.txt" 2>/dev/null
	fi
	record "$1" "$2" "$3" "$ms" "${5:--}" "$rss" "$st" "${6:-}"
}

json_field() { # FILE NAME: first numeric (or boolean) value of "NAME"
	grep -o "\"$2\"[[:space:]]*:[[:space:]]*[0-9a-z.eE+-]*" "$1" 2>/dev/null | head -1 | sed 's/.*:[[:space:]]*//'
}
json_rt() { json_field "$1" round_trips; }
json_extra() { # ferry push --json -> the same fields the held driver reports
	local f=$1
	[ -s "$f" ] || return 0
	printf 'up=%s upd=%s del=%s bytes=%s verified=%s scan=%s plan=%s transfer=%s manifest=%s total=%s' \
		"$(json_field "$f" files_uploaded)" "$(json_field "$f" files_updated)" \
		"$(json_field "$f" files_deleted)" "$(json_field "$f" bytes_sent)" \
		"$(json_field "$f" verified)" "$(json_field "$f" scan)" "$(json_field "$f" plan)" \
		"$(json_field "$f" transfer)" "$(json_field "$f" manifest)" "$(json_field "$f" total)"
}

# A push through tool TOOL of SRC (dir with trailing slash, or a file) into DEST.
push_run() { # CASE TOOL RUN SRC DEST
	local c=$1 t=$2 n=$3 s=$4 d=$5 out
	case $t in
	ferry-cli | ferry-persist)
		# ferry-persist: the same command through a holder (the first
		# warm-up run starts it)
		out=$("$BIN/tm" -o "$W/run.out" -e "$W/run.err" -- "$FERRY_BIN" push -p "$P" -i "$KEY" \
			--known-hosts "$KH" $([ $t = ferry-persist ] && echo "$PERSIST") --delete --json "$s" "$H:$d")
		record_tm "$c" "$t" "$n" "$out" "$(json_rt "$W/run.out")" "$(json_extra "$W/run.out")"
		;;
	ferry-held)
		if held_cmd sync "$d" "$s"; then
			set -- $REPLY
			# the scale cases: the driver's peak RSS so far (it is
			# started anew for each case) and the heap it holds now
			local rss=- heap=
			case $c in
			*10k | *100k) held_cmd rss && { read -r _ rss _ heap <<<"$REPLY"; heap=" heap=$heap"; } ;;
			esac
			record "$c" "$t" "$n" "$2" "$3" "$rss" 0 \
				"up=$4 upd=$5 del=$6 bytes=$7 verified=$8 scan=$9 plan=${10} transfer=${11} manifest=${12}$heap"
		else
			echo "$REPLY" >"$W/err-$LVL-$c-$t.txt"
			record "$c" "$t" "$n" 0 - - 1
		fi
		;;
	rsync-new | rsync-cm)
		local e=$SSHC
		[ $t = rsync-cm ] && e=$SSHCM
		out=$("$BIN/tm" -e "$W/run.err" -- rsync -az --delete -e "$e" "$s" "$H:$d/")
		record_tm "$c" "$t" "$n" "$out"
		;;
	rsync-inplace | rsync-plain)
		# the delta case: rsync's own delta transfer (no -z: the data is
		# incompressible), a new connection with rsync-new's ssh options
		local how=()
		[ $t = rsync-inplace ] && how=(--inplace)
		out=$("$BIN/tm" -e "$W/run.err" -- rsync -a "${how[@]}" -e "$SSHC" "$s" "$H:$d/")
		record_tm "$c" "$t" "$n" "$out"
		;;
	esac
}

# A pull through tool TOOL of the remote directory SRC into the local DEST.
pull_run() { # CASE TOOL RUN SRC DEST
	local c=$1 t=$2 n=$3 s=$4 d=$5 out
	case $t in
	ferry-cli)
		out=$("$BIN/tm" -o "$W/run.out" -e "$W/run.err" -- "$FERRY_BIN" pull -p "$P" -i "$KEY" \
			--known-hosts "$KH" --delete --json "$H:$s/" "$d")
		record_tm "$c" "$t" "$n" "$out" "$(json_rt "$W/run.out")" "$(json_extra "$W/run.out")"
		;;
	ferry-held)
		if held_cmd pull "$d" "$s/"; then
			set -- $REPLY
			record "$c" "$t" "$n" "$2" "$3" - 0 \
				"up=$4 upd=$5 del=$6 bytes=$7 verified=$8 scan=$9 plan=${10} transfer=${11}"
		else
			echo "$REPLY" >"$W/err-$LVL-$c-$t.txt"
			record "$c" "$t" "$n" 0 - - 1
		fi
		;;
	rsync-new | rsync-cm)
		local e=$SSHC
		[ $t = rsync-cm ] && e=$SSHCM
		out=$("$BIN/tm" -e "$W/run.err" -- rsync -a --delete -e "$e" "$H:$s/" "$d/")
		record_tm "$c" "$t" "$n" "$out"
		;;
	esac
}

# Checked after every run, untimed: the remote copy must equal the source
# (ferry's marker .ferry-id aside, which DESIGN.md puts in the destination).
check_copy() { # CASE TOOL RUN SRC DEST
	local s=${4%/}
	if [ -d "$s" ]; then
		diff -rq -x .ferry-id "$s" "$5" >/dev/null 2>&1 && return 0
	else
		cmp -s "$s" "$5/$(basename "$s")" && return 0
	fi
	log "$LVL ms $1 $2 run $3: remote copy differs from the source"
	printf '%s\t%s\t%s\t%s\n' "$LVL" "$1" "$2" "$3" >>"$W/mismatch.tsv"
	return 1
}

exec_run() { # CASE TOOL RUN
	local c=$1 t=$2 n=$3 out
	case $t in
	ferry-cli | ferry-persist)
		out=$("$BIN/tm" -e "$W/run.err" -- "$FERRY_BIN" exec -p "$P" -i "$KEY" --known-hosts "$KH" \
			$([ $t = ferry-persist ] && echo "$PERSIST") "$H" -- true)
		record_tm "$c" "$t" "$n" "$out"
		;;
	ferry-held)
		if held_cmd exec true; then
			set -- $REPLY
			# ferry_session_round_trips counts the SFTP channel only
			record "$c" "$t" "$n" "$2" - - "$4"
		else
			echo "$REPLY" >"$W/err-$LVL-$c-$t.txt"
			record "$c" "$t" "$n" 0 - - 1
		fi
		;;
	ferry-lib)
		if held_cmd connect true; then
			set -- $REPLY
			record "$c" "$t" "$n" "$2" - - "$6" "open=$3 exec=$4 close=$5"
		else
			echo "$REPLY" >"$W/err-$LVL-$c-$t.txt"
			record "$c" "$t" "$n" 0 - - 1
		fi
		;;
	ssh-new) record_tm "$c" "$t" "$n" "$("$BIN/tm" -e "$W/run.err" -- $SSHC "$H" true)" ;;
	ssh-cm) record_tm "$c" "$t" "$n" "$("$BIN/tm" -e "$W/run.err" -- $SSHCM "$H" true)" ;;
	esac
}

floor_run() { # CASE TOOL RUN TREE
	local c=$1 t=$2 n=$3 tree=$4 out
	case $t in
	stat-find)
		out=$("$BIN/tm" -- find "$tree" -printf '%s %T@\n')
		record_tm "$c" "$t" "$n" "$out"
		;;
	hash-xxh3)
		out=$("$BIN/tm" -o "$W/floor.out" -- "$BIN/xxhfloor" hash "$tree")
		record_tm "$c" "$t" "$n" "$out" - 
		;;
	stat-inproc | hash-inproc)
		"$BIN/xxhfloor" "${t%-inproc}" "$tree" >"$W/floor.out"
		record "$c" "$t" "$n" "$(awk '{print $6}' "$W/floor.out")" - - 0
		;;
	esac
}

# ---- the cases ------------------------------------------------------------------
# Each case: a list of tools, run round-robin WARM rounds unrecorded (except
# as warm-up rows) then RUNS rounds.
run_case() { # CASE ROUNDS TOOLS...
	local c=$1 rounds=$2
	shift 2
	local tools=() t na
	for t in "$@"; do
		na=$(tool_na "$t" "$c")
		if [ -n "$na" ]; then
			record "$c" "$t" na 0 - - na
		else
			tools+=("$t")
		fi
	done
	[ ${#tools[@]} -gt 0 ] || return 0
	log "$LVL ms: $c (${tools[*]}), $WARM warm-up + $rounds rounds"
	local i n
	CASE_ABORT=
	for ((i = 1; i <= WARM + rounds; i++)); do
		n=$((i - WARM))
		[ $i -le $WARM ] && n=w$i
		for t in "${tools[@]}"; do
			one_run "$c" "$t" "$n" "$i"
			[ -n "$CASE_ABORT" ] && break 2
		done
	done
	CASE_ABORT=
}

one_run() { # CASE TOOL RUN INDEX
	local c=$1 t=$2 n=$3 i=$4 d
	case $c in
	cold)
		d=$R/L$LVL/cold-$t-$i
		push_run cold "$t" "$n" "$W/tree/" "$d"
		check_copy cold "$t" "$n" "$W/tree/" "$d"
		rm -rf "$d"
		;;
	noop | change5 | touch5)
		case $t in
		stat-* | hash-*) floor_run "$c" "$t" "$n" "$W/tree"; return ;;
		esac
		d=$R/L$LVL/steady-$t
		if [ $c = change5 ]; then
			"$BIN/gentree" touch "$W/src/$t" -k 5 -s $((LVL * 1000 + i)) >/dev/null
		elif [ $c = touch5 ]; then
			"$BIN/gentree" touch "$W/src/$t" -k 5 -s $((LVL * 1000 + i)) --mtime-only >/dev/null
		fi
		push_run "$c" "$t" "$n" "$W/src/$t/" "$d"
		check_copy "$c" "$t" "$n" "$W/src/$t/" "$d"
		;;
	pcold)
		d=$W/pull/L$LVL/cold-$t-$i
		mkdir -p "$W/pull/L$LVL"
		pull_run pcold "$t" "$n" "$R/L$LVL/psrc" "$d"
		check_copy pcold "$t" "$n" "$R/L$LVL/psrc/" "$d"
		rm -rf "$d"
		;;
	pnoop | pchange5)
		d=$W/pull/L$LVL/steady-$t
		mkdir -p "$W/pull/L$LVL"
		[ -d "$R/L$LVL/psrc-$t" ] || cp -a "$W/tree" "$R/L$LVL/psrc-$t"
		if [ $c = pchange5 ]; then
			"$BIN/gentree" touch "$R/L$LVL/psrc-$t" -k 5 -s $((LVL * 1000 + i)) >/dev/null
		fi
		pull_run "$c" "$t" "$n" "$R/L$LVL/psrc-$t" "$d"
		check_copy "$c" "$t" "$n" "$R/L$LVL/psrc-$t/" "$d"
		;;
	exec | connect) exec_run "$c" "$t" "$n" ;;
	big)
		d=$R/L$LVL/big-$t-$i
		WB0=$(wire_counters)
		if [ $t = ssh-cat ]; then
			record_tm big ssh-cat "$n" "$("$BIN/tm" -i "$W/big/big.bin" -e "$W/run.err" -- $SSHC "$H" 'cat >/dev/null')"
			WB0=
		else
			push_run big "$t" "$n" "$W/big/big.bin" "$d"
			WB0=
			check_copy big "$t" "$n" "$W/big/big.bin" "$d"
		fi
		rm -rf "$d"
		;;
	delta)
		# Each tool has its own source copy and destination; the first
		# (warm-up) push is cold, each measured round first overwrites
		# 1 MiB near the middle (the same seed for every tool in a round:
		# the same bytes at the same offset), size kept, mtime bumped.
		local s=$W/delta/L$LVL/$t/delta.bin
		d=$R/L$LVL/delta-$t
		case $n in
		w*) ;;
		*) "$BIN/gentree" patch "$s" -s $((LVL * 1000 + i)) >/dev/null || { log "gentree patch failed"; CASE_ABORT=1; return; } ;;
		esac
		WB0=$(wire_counters)
		push_run delta "$t" "$n" "$s" "$d"
		WB0=
		if ! check_copy delta "$t" "$n" "$s" "$d"; then
			record_fail_last differs
			log "ERROR: $LVL ms delta $t run $n: the remote copy is not byte-identical to the source; the delta case stops here"
			meta "delta_failed_$LVL" "$t run $n: the remote copy differs from the source"
			DELTA_FAILED=1
			CASE_ABORT=1
		fi
		;;
	cold10k | cold100k)
		d=$R/L$LVL/$c-$t-$i
		push_run "$c" "$t" "$n" "$W/t${c#cold}/" "$d"
		check_copy "$c" "$t" "$n" "$W/t${c#cold}/" "$d"
		rm -rf "$d"
		;;
	noop10k | noop100k)
		# the warm-up round is each tool's cold push into its copy
		case $t in
		stat-* | hash-*) floor_run "$c" "$t" "$n" "$W/t${c#noop}"; return ;;
		esac
		d=$R/L$LVL/$c-$t
		push_run "$c" "$t" "$n" "$W/t${c#noop}/" "$d"
		check_copy "$c" "$t" "$n" "$W/t${c#noop}/" "$d"
		;;
	esac
}

has_case() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }

# The scale cases: trees of 10,000 and 100,000 files (3 of them the
# credentials), made once; each case gets a held driver of its own, and
# the driver's heap is read before its first push and after its last.
scale_level() {
	local k c w=$WARM
	for k in 10k 100k; do
		has_case cold$k || has_case noop$k || continue
		[ $k = 100k ] && [ "$TREE100K" = 0 ] && continue
		if [ ! -d "$W/t$k" ]; then
			log "generating the ${k}-file tree"
			meta tree$k "$("$BIN/gentree" create "$W/t$k" -n $((${k%k} * 1000 - 3)) -s 2)"
			# written back and read once, so the first tool's first
			# push neither competes with the writeback nor reads the
			# disk (relatime's first atime updates included)
			sync
			find "$W/t$k" -type f -exec cat {} + >/dev/null
		fi
		for c in cold$k noop$k; do
			has_case $c || continue
			if [ -z "$NA_HELD_SYNC" ]; then
				held_stop
				held_start && held_cmd rss && meta "held_mem_start_${LVL}_$c" "${REPLY#ok }"
			fi
			WARM=1
			if [ $c = noop$k ]; then
				run_case $c "$SCALE_RUNS" ferry-held ferry-cli rsync-new rsync-cm stat-find
			else
				run_case $c "$SCALE_RUNS" ferry-held ferry-cli rsync-new rsync-cm
			fi
			WARM=$w
			[ -n "$HPID" ] && held_cmd rss && meta "held_mem_end_${LVL}_$c" "${REPLY#ok }"
			rm -rf "$R/L$LVL/$c"-*
		done
	done
}

run_level() { # RTT
	LVL=$1
	H=127.0.0.1
	KEY=$W/sshd/id_ed25519
	if [ "$LVL" = 0 ]; then
		P=$PORT
	elif [ "$SIM" = wire ]; then
		wire_start "$LVL" || { log "wire did not start"; return 1; }
		H=$HW
		P=$PORT_NS
		KEY=$W/sshd-ns/id_ed25519
	else
		relay_start "$LVL"
	fi
	SSHC=$(ssh_base "$P")
	wire_setup_counters
	sim_check "$LVL"
	cm_start "$LVL" || return 1
	mkdir -p "$R/L$LVL"
	if [ -z "$NA_HELD_SYNC" ] || [ -z "$NA_HELD_EXEC" ]; then
		if ! held_start; then
			NA_HELD_SYNC="held driver: ${HELD_ERR:-cannot start} at $LVL ms"
			NA_HELD_EXEC=$NA_HELD_SYNC
		fi
	fi

	has_case cold && run_case cold "$RUNS" ferry-held ferry-cli ferry-persist rsync-cm rsync-new
	has_case noop && run_case noop "$RUNS" ferry-held ferry-cli ferry-persist rsync-cm rsync-new stat-find hash-xxh3 stat-inproc hash-inproc
	has_case change5 && run_case change5 "$RUNS" ferry-held ferry-cli ferry-persist rsync-cm rsync-new
	has_case touch5 && run_case touch5 "$RUNS" ferry-held ferry-cli rsync-cm rsync-new
	if has_case pcold || has_case pnoop || has_case pchange5; then
		rm -rf "$R/L$LVL"/psrc* "$W/pull/L$LVL"
		cp -a "$W/tree" "$R/L$LVL/psrc"
	fi
	has_case pcold && run_case pcold "$RUNS" ferry-held ferry-cli rsync-cm rsync-new
	has_case pnoop && run_case pnoop "$RUNS" ferry-held ferry-cli rsync-cm rsync-new
	has_case pchange5 && run_case pchange5 "$RUNS" ferry-held ferry-cli rsync-cm rsync-new
	has_case exec && run_case exec "$RUNS" ferry-held ferry-cli ferry-persist ssh-cm ssh-new
	has_case connect && run_case connect "$RUNS" ferry-lib ferry-cli ssh-new
	if has_case big; then
		local w=$WARM
		WARM=1
		run_case big "$BIG_RUNS" ferry-held ferry-cli ssh-cat rsync-new
		WARM=$w
	fi
	if has_case delta; then
		local w=$WARM t
		for t in ferry-held ferry-cli rsync-inplace rsync-plain; do
			mkdir -p "$W/delta/L$LVL/$t"
			cp -a "$W/delta/delta.bin" "$W/delta/L$LVL/$t/delta.bin"
		done
		wire_idle
		WARM=1
		run_case delta "$DELTA_RUNS" ferry-held ferry-cli rsync-inplace rsync-plain
		WARM=$w
		rm -rf "$W/delta/L$LVL" "$R/L$LVL"/delta-*
	fi
	case " 0 $SCALE_RTT " in *" $LVL "*) scale_level ;; esac
	held_stop
	holders_stop
	cm_stop
	if [ "$LVL" != 0 ] && [ "$SIM" = relay ]; then kill "$RELAY_PID" 2>/dev/null; fi
	wire_stop
	rm -rf "$R/L$LVL" "$W/pull/L$LVL"
}

# ---- go -------------------------------------------------------------------------
if [ -n "$RTT" ]; then
	case $SIM in
	auto | wire)
		if wire_setup; then
			SIM=wire
		elif [ "$SIM" = wire ]; then
			echo "bench: SIM=wire needs root, /dev/net/tun and ip netns" >&2
			exit 1
		else
			SIM=relay
		fi
		;;
	relay) ;;
	*) echo "bench: SIM must be auto, wire or relay" >&2; exit 1 ;;
	esac
	meta sim "$SIM"
	log "round trips simulated by: $SIM"
fi
LVL=0
P=$PORT
KEY=$W/sshd/id_ed25519
SSHC=$(ssh_base "$P")
probe_ferry
start=$(date +%s)
for lvl in 0 $RTT; do
	run_level "$lvl"
	log "level $lvl ms done after $(($(date +%s) - start)) s"
done
meta duration_s "$(($(date +%s) - start))"
meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
[ -s "$W/mismatch.tsv" ] && meta mismatches "$(wc -l <"$W/mismatch.tsv")"
DELTA_FAILED=${DELTA_FAILED:-0}
for f in "$W"/err-*.txt; do
	[ -f "$f" ] && meta "error_$(basename "$f" .txt)" "$(head -c 300 "$f" | tr '\n\t' '  ')"
done

mkdir -p "$OUT"
stamp=$(date -u +%Y%m%d-%H%M%S)
python3 "$src/bench/report.py" --raw "$RAW" --meta "$META" --out "$OUT" --stamp "$stamp" || exit 1
log "results: $OUT/latest.md, $OUT/latest.json, $OUT/latest.png (also bench-$stamp.*)"
if has_case python; then
	log "python rows (bench/python_bench.py)"
	RUNS=$RUNS WARM=$WARM /usr/bin/python3 "$src/bench/python_bench.py" --build "$B" \
		--out "$OUT/python" || log "bench/python_bench.py failed"
fi
if [ "$DELTA_FAILED" = 1 ]; then
	log "ERROR: the delta case left a remote copy that differs from its source (see the report)"
	exit 1
fi
