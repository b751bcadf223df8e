#!/usr/bin/env bash
# cli/demo.sh - `make demo`: ferry's main job against a private sshd on
# 127.0.0.1 that this script starts (and stops).  Nothing outside a
# temporary directory is touched.
set -euo pipefail
B=${B:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
ferry=$src/$B/ferry
work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
cleanup() { "$src/tests/sshd.sh" stop "$work/sshd" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

echo "== starting a private sshd on 127.0.0.1"
port=$("$src/tests/sshd.sh" start "$work/sshd")
conn=(-p "$port" -i "$work/sshd/id_ed25519" --known-hosts "$work/known_hosts" --state-dir "$work/state")
ping_conn=(-p "$port" -i "$work/sshd/id_ed25519" --known-hosts "$work/known_hosts")
echo "   port $port, client key $work/sshd/id_ed25519, known_hosts $work/known_hosts (accept-new)"

step() { # step TITLE CMD...: run, show output and wall time
	local title=$1; shift
	echo
	echo "== $title"
	echo "   \$ ferry ${*:2}" | sed "s|$work|\$DEMO|g"
	local t0 t1 rc=0
	t0=$(date +%s%N)
	"$@" 2>&1 | sed 's/^/   /' || rc=$?
	t1=$(date +%s%N)
	printf '   -> exit %d, %d ms\n' "$rc" $(( (t1 - t0) / 1000000 ))
	return $rc
}

step "ping: connect, verify and record the host key, authenticate" \
	"$ferry" ping "${ping_conn[@]}" 127.0.0.1

if "$ferry" push --help >/dev/null 2>&1; then
	echo
	echo "== generating a sample skills tree with credential files"
	tree=$work/agent
	mkdir -p "$tree/skills" "$tree/creds"
	for d in $(seq 1 12); do
		mkdir -p "$tree/skills/group-$d/tool"
		for f in $(seq 1 8); do
			{ echo "# skill $d.$f"; seq 1 $((d * f * 7)); } > "$tree/skills/group-$d/skill-$f.md"
		done
		echo "helper $d" > "$tree/skills/group-$d/tool/run.sh"
	done
	for c in api-key oauth-token ssh-config; do
		umask 077; echo "secret-$c-$RANDOM" > "$tree/creds/$c"; umask 022
	done
	echo "   $(find "$tree" -type f | wc -l) files in $(find "$tree" -type d | wc -l) directories, 3 owner-only credentials"
	dest=$work/remote/agent
	step "cold push" "$ferry" push "${conn[@]}" --stats --delete "$tree/" "127.0.0.1:$dest"
	step "no-op push (nothing changed)" "$ferry" push "${conn[@]}" --stats --delete "$tree/" "127.0.0.1:$dest"
	echo "edited" >> "$tree/skills/group-3/skill-2.md"
	rm "$tree/skills/group-5/skill-1.md"
	step "push after editing one file and deleting another" \
		"$ferry" push "${conn[@]}" --itemize-changes --stats --delete "$tree/" "127.0.0.1:$dest"
	printf '   remote credential modes: %s\n' "$(stat -c '%A %n' "$dest"/creds/* | sed "s|$work|\$DEMO|g" | tr '\n' ' ')"
fi
if "$ferry" exec --help >/dev/null 2>&1; then
	step "exec: a command over a new session" \
		"$ferry" exec "${ping_conn[@]}" 127.0.0.1 -- 'echo "hello from $(hostname) as $(id -un)"; ls '"$work"'/remote/agent 2>/dev/null | head -5'
fi
echo
echo "== done; stopping the private sshd"
