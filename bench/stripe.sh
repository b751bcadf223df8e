#!/usr/bin/env bash
# bench/stripe.sh - striped uploads (bench/stripe) against `ssh cat` and
# rsync, on loopback and through bench/wire (as bench/run.sh sets it up).
#
#   B=build RTT="0 50" STREAMS="0 1 2 4 8" MIB=256 RUNS=3 bench/stripe.sh
#   STRIPE_ARGS="-b 4194304" ...   arguments for every bench/stripe run
#
# One Markdown table on stdout: median MiB/s (min-max) per tool and level.
# Every upload is compared (cmp) with the source, then removed.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
B=$(cd "$src" && cd "$B" && pwd)
BIN=$B/bench
RTT=${RTT:-0 50}
STREAMS=${STREAMS:-0 1 2 4 8}
MIB=${MIB:-256}
RUNS=${RUNS:-3}
W=$(mktemp -d /tmp/ferry-stripe.XXXXXX)
NS= TA= WIRE_PID= mounted=0
unset SSH_AUTH_SOCK
log() { printf '%s stripe.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
	"$src/tests/sshd.sh" stop "$W/sshd" >/dev/null 2>&1
	"$src/tests/sshd.sh" stop "$W/sshd-ns" >/dev/null 2>&1
	[ -n "$WIRE_PID" ] && kill "$WIRE_PID" 2>/dev/null && wait "$WIRE_PID" 2>/dev/null
	[ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
	[ -n "$TA" ] && ip tuntap del dev "$TA" mode tun 2>/dev/null
	[ "$mounted" = 1 ] && umount "$W/remote" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$("$src/tests/sshd.sh" start "$W/sshd") || { log "cannot start sshd"; exit 1; }
KH=$W/known_hosts
cp "$W/sshd/known_hosts" "$KH"
mkdir -p "$W/remote"
if mount -t tmpfs -o size=4g,mode=0755 ferry-stripe "$W/remote" 2>/dev/null; then
	mounted=1
	FS="tmpfs"
else
	FS="plain directory"
fi
R=$W/remote

add_known_host() { # HOST PORT SSHD_DIR
	local k
	for k in "$3/host_ed25519.pub" "$3/host_ecdsa.pub"; do
		printf '[%s]:%s %s\n' "$1" "$2" "$(cut -d' ' -f1,2 "$k")" >>"$KH"
	done
}

# bench/run.sh's wire: sshd in its own namespace, packets held RTT/2 each way.
wire_setup() {
	[ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] && command -v ip >/dev/null || return 1
	NS=ferry-stripe-$$
	TA=fsA$$
	local TB=fsB$$ oct=$(($$ % 250 + 1))
	HA=10.78.$oct.1
	HW=10.78.$oct.2
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

ssh_base() { # PORT KEY
	printf 'ssh -F /dev/null -p %s -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR' "$1" "$2" "$KH"
}

"$BIN/gentree" big "$W/big.bin" -m "$MIB" >/dev/null || exit 1
BYTES=$(stat -c %s "$W/big.bin")
SIMOK=0
if printf '%s\n' $RTT | grep -qv '^0$'; then
	wire_setup && SIMOK=1 || { log "wire not available"; exit 1; }
fi
log "sshd on 127.0.0.1:$PORT; remote: $FS; file $MIB MiB"

declare -A RES
rate() { # MS -> MiB/s
	awk -v b="$BYTES" -v ms="$1" 'BEGIN{printf "%.1f", b / 1048576 / (ms / 1000)}'
}
ms_since() { # T0 (date +%s%N)
	awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN{printf "%.1f", (b - a) / 1e6}'
}
check() { # FILE
	if ! cmp -s "$W/big.bin" "$1"; then log "MISMATCH: $1"; echo "cmp failed for $1" >>"$W/fail"; fi
	rm -f "$1"
}

for LVL in $RTT; do
	if [ "$LVL" = 0 ]; then
		H=127.0.0.1 P=$PORT KEY=$W/sshd/id_ed25519
	else
		wire_start "$LVL" || { log "wire did not start"; exit 1; }
		H=$HW P=$PORT_NS KEY=$W/sshd-ns/id_ed25519
	fi
	SSHC=$(ssh_base "$P" "$KEY")
	log "level $LVL ms: $($SSHC "$H" true && echo ssh ok)"
	for run in $(seq "$RUNS"); do
		for S in $STREAMS; do
			out=$("$BIN/stripe" -h "$H" -p "$P" -i "$KEY" -k "$KH" -f "$W/big.bin" -d "$R" -s "$S" -n 1 ${STRIPE_ARGS:-}) ||
				{ log "stripe S=$S: $out"; continue; }
			m=$(printf '%s\n' "$out" | sed -n 's/.* mibs=\([0-9.]*\).*/\1/p')
			f=$(printf '%s\n' "$out" | sed -n 's/.* path=\(.*\)$/\1/p')
			so=$(printf '%s\n' "$out" | sed -n 's/.* streams_ms=\([0-9.]*\).*/\1/p')
			check "$f"
			RES[$LVL,S$S]+="$m "
			RES[$LVL,O$S]+="$so "
			log "L$LVL run $run S=$S: $m MiB/s (streams opened in $so ms)"
		done
		t0=$(date +%s%N)
		$SSHC "$H" 'cat > /dev/null' <"$W/big.bin"
		m=$(rate "$(ms_since "$t0")")
		RES[$LVL,cat]+="$m "
		log "L$LVL run $run ssh cat: $m MiB/s"
		t0=$(date +%s%N)
		rsync -a -e "$SSHC" "$W/big.bin" "$H:$R/rsync-$run.bin"
		m=$(rate "$(ms_since "$t0")")
		check "$R/rsync-$run.bin"
		RES[$LVL,rsync]+="$m "
		log "L$LVL run $run rsync: $m MiB/s"
	done
	[ "$LVL" != 0 ] && wire_stop
done
[ -s "$W/wire.log" ] && sed 's/^/wire: /' "$W/wire.log" >&2

med() { # values -> "median (min-max)"
	printf '%s\n' $1 | sort -n | awk '{v[NR]=$1} END{if(!NR){print "n/a"; exit} printf "%s (%s-%s)", v[int((NR+1)/2)], v[1], v[NR]}'
}
printf '\n%s MiB file, remote on %s, %s runs each, MiB/s median (min-max)\n\n' "$MIB" "$FS" "$RUNS"
printf '| tool |'; for LVL in $RTT; do printf ' RTT %s ms |' "$LVL"; done; printf '\n|---|'
for LVL in $RTT; do printf -- '---|'; done; printf '\n'
for S in $STREAMS; do
	if [ "$S" = 0 ]; then printf '| ferry upload (1 channel, ferry__sftp_upload) |'; else printf '| ferry striped, S=%s |' "$S"; fi
	for LVL in $RTT; do printf ' %s |' "$(med "${RES[$LVL,S$S]:-}")"; done; printf '\n'
done
printf '| ssh cat > /dev/null |'; for LVL in $RTT; do printf ' %s |' "$(med "${RES[$LVL,cat]:-}")"; done; printf '\n'
printf '| rsync -a (new file) |'; for LVL in $RTT; do printf ' %s |' "$(med "${RES[$LVL,rsync]:-}")"; done; printf '\n'
printf '\nopening the extra channels (ms, median):'
for LVL in $RTT; do for S in $STREAMS; do [ "$S" -gt 1 ] && printf ' L%s/S=%s: %s' "$LVL" "$S" "$(med "${RES[$LVL,O$S]:-}" | cut -d' ' -f1)"; done; done
printf '\n'
[ -f "$W/fail" ] && { cat "$W/fail"; exit 1; }
exit 0
