#!/usr/bin/env bash
# tests/pyserver.sh - a private SFTP-only server written in Python on
# 127.0.0.1 for the tests of servers other than OpenSSH: asyncssh
# (tests/asyncssh_server.py) or paramiko (tests/paramiko_server.py), run by
# Debian's /usr/bin/python3 with its python3-asyncssh or python3-paramiko.
# The server runs as the user who starts it, lets in any user name with the
# client key, and works on the real filesystem from DIR/home.
#
#   tests/pyserver.sh start DIR asyncssh|paramiko   start; prints the port
#   tests/pyserver.sh stop DIR                      stop it by its pid
#
# DIR receives: host key, a client key (id_ed25519), authorized_keys,
# known_hosts ("[127.0.0.1]:PORT key"), server.pid, port, user, server.log
# and home/.  Exit 77 when python3 or the library is missing (the tests
# then skip).
set -euo pipefail

cmd=${1:?usage: pyserver.sh start|stop DIR [asyncssh|paramiko]}
dir=${2:?usage: pyserver.sh start|stop DIR [asyncssh|paramiko]}
kind=${3:-}
here=$(cd "$(dirname "$0")" && pwd)

. "$here/server.sh"
server_command pyserver.sh "$cmd" "$dir/server.pid"

case $kind in
asyncssh | paramiko) ;;
*) echo "pyserver.sh: which server? asyncssh or paramiko" >&2; exit 2 ;;
esac
# Debian's python3, whatever python3 comes first on PATH.
py=/usr/bin/python3
[ -x "$py" ] || { echo "pyserver.sh: no $py" >&2; exit 77; }
"$py" -W ignore -c "import $kind" 2>/dev/null ||
	{ echo "pyserver.sh: no $kind for $py (apt-get install python3-$kind)" >&2; exit 77; }
mkdir -p "$dir/home"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"

[ -f "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-host -f "$dir/host_ed25519"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-client -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys"
id -un > "$dir/user"

rm -f "$dir/server.pid" "$dir/port"
setsid "$py" "$here/${kind}_server.py" "$dir" </dev/null >>"$dir/server.log" 2>&1 &
for _ in $(seq 200); do
	[ -s "$dir/server.pid" ] && break
	kill -0 $! 2>/dev/null || break
	sleep 0.05
done
if [ -s "$dir/port" ] && server_ready "$dir/server.pid" "$(cat "$dir/port")"; then
	port=$(cat "$dir/port")
	printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" > "$dir/known_hosts"
	echo "$port"
	exit 0
fi
kill $! 2>/dev/null || true
echo "pyserver.sh: could not start the $kind server; see $dir/server.log" >&2
tail -5 "$dir/server.log" >&2 || true
exit 1
