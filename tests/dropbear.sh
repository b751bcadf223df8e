#!/usr/bin/env bash
# tests/dropbear.sh - a private Dropbear server on 127.0.0.1 for the tests
# of servers other than OpenSSH.  Dropbear reads a user's own
# ~/.ssh/authorized_keys and no other file, so the server lets in one
# account made for it, ferry-dropbear (created when missing; needs root).
#
#   tests/dropbear.sh start DIR [DROPBEAR_OPTIONS...]   start; prints the port
#   tests/dropbear.sh stop DIR                          stop it by its pid
#
# DIR receives: host key, a client key (id_ed25519), known_hosts
# ("[127.0.0.1]:PORT key"), dropbear.pid, port, user, dropbear.log.
# Exit 77 when Dropbear or root is missing (the tests then skip).
set -euo pipefail

cmd=${1:?usage: dropbear.sh start|stop DIR [OPTIONS]}
dir=${2:?usage: dropbear.sh start|stop DIR [OPTIONS]}
shift 2
user=ferry-dropbear

. "$(dirname "$0")/server.sh"
server_command dropbear.sh "$cmd" "$dir/dropbear.pid"

db=$(command -v dropbear || echo /usr/sbin/dropbear)
[ -x "$db" ] || { echo "dropbear.sh: dropbear not found (apt-get install dropbear-bin)" >&2; exit 77; }
[ "$(id -u)" = 0 ] || { echo "dropbear.sh: needs root (it logs in as $user)" >&2; exit 77; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"

if ! getent passwd "$user" >/dev/null; then
	useradd -m -p '*' -s /bin/bash "$user" >/dev/null 2>&1 ||
		getent passwd "$user" >/dev/null ||
		{ echo "dropbear.sh: cannot create $user" >&2; exit 77; }
fi
home=$(getent passwd "$user" | cut -d: -f6)
[ -f "$dir/host_ed25519" ] || dropbearkey -t ed25519 -f "$dir/host_ed25519" >/dev/null 2>&1
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-client -f "$dir/id_ed25519"
install -d -m 700 -o "$user" "$home/.ssh"
# This server's key first, then the newest of earlier ones (servers of
# tests running at the same time), under a lock: bounded, never torn.
ak=$home/.ssh/authorized_keys
flock "$home/.ssh" sh -c 'touch "$2" && { cat "$1"; grep -v -F -x -f "$1" "$2" | head -n 15; } > "$2.new" && mv -f "$2.new" "$2"' \
	sh "$dir/id_ed25519.pub" "$ak"
chown "$user" "$ak"; chmod 600 "$ak"
# Neither the login nor every command pays for startup files.
: > "$home/.bashrc"; : > "$home/.profile"; chown "$user" "$home/.bashrc" "$home/.profile"
echo "$user" > "$dir/user"

for try in $(seq 40); do
	port=$(server_port)
	rm -f "$dir/dropbear.pid"
	"$db" -E -s -m -r "$dir/host_ed25519" -p "127.0.0.1:$port" \
		-P "$dir/dropbear.pid" "$@" 2>>"$dir/dropbear.log" || continue
	if server_ready "$dir/dropbear.pid" "$port"; then
		echo "$port" > "$dir/port"
		printf '[127.0.0.1]:%s %s\n' "$port" \
			"$(dropbearkey -y -f "$dir/host_ed25519" | grep '^ssh-' | cut -d' ' -f1,2)" \
			> "$dir/known_hosts"
		echo "$port"
		exit 0
	fi
	server_stop "$dir/dropbear.pid"
done
echo "dropbear.sh: could not start dropbear; see $dir/dropbear.log" >&2
tail -5 "$dir/dropbear.log" >&2 || true
exit 1
