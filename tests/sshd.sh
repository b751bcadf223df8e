#!/usr/bin/env bash
# tests/sshd.sh - a private OpenSSH server on 127.0.0.1 for tests, the demo
# and the benchmarks.  No test depends on a system sshd.
#
#   tests/sshd.sh start DIR [EXTRA_CONFIG_FILE]   start; prints the port
#   tests/sshd.sh stop DIR                        stop it by its pid
#
# DIR receives: host keys, a client key (id_ed25519, id_ecdsa), sshd_config,
# known_hosts (the host keys as "[127.0.0.1]:PORT"), sshd.pid, port, sshd.log.
set -euo pipefail

cmd=${1:?usage: sshd.sh start|stop DIR [EXTRA_CONFIG]}
dir=${2:?usage: sshd.sh start|stop DIR [EXTRA_CONFIG]}
extra=${3:-}

. "$(dirname "$0")/server.sh"
server_command sshd.sh "$cmd" "$dir/sshd.pid"

sshd=$(command -v sshd || echo /usr/sbin/sshd)
[ -x "$sshd" ] || { echo "sshd.sh: sshd not found (apt-get install openssh-server)" >&2; exit 1; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
mkdir -p /run/sshd 2>/dev/null || true
chmod 700 "$dir"

[ -f "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-host -f "$dir/host_ed25519"
[ -f "$dir/host_ecdsa" ] || ssh-keygen -q -t ecdsa -b 256 -N '' -C ferry-test-host -f "$dir/host_ecdsa"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-client -f "$dir/id_ed25519"
[ -f "$dir/id_ecdsa" ] || ssh-keygen -q -t ecdsa -b 256 -N '' -C ferry-test-client -f "$dir/id_ecdsa"
cat "$dir/id_ed25519.pub" "$dir/id_ecdsa.pub" > "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys"

# An extra config may name another SFTP server (sshd refuses a second
# "Subsystem sftp" line).
sub="Subsystem sftp /usr/lib/openssh/sftp-server"
if [ -n "$extra" ] && grep -qiE '^[[:space:]]*Subsystem[[:space:]]+sftp' "$extra"; then sub=""; fi

for try in $(seq 40); do
	port=$(server_port)
	cat > "$dir/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
HostKey $dir/host_ecdsa
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
UseDNS no
MaxSessions 100
MaxStartups 200:30:400
LogLevel ERROR
$sub
SetEnv SHLVL=1
CFG
	[ -n "$extra" ] && cat "$extra" >> "$dir/sshd_config"
	rm -f "$dir/sshd.pid"
	if "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log" 2>>"$dir/sshd.log"; then
		if server_ready "$dir/sshd.pid" "$port"; then
			echo "$port" > "$dir/port"
			{
				printf '[127.0.0.1]:%s ' "$port"; cut -d' ' -f1,2 "$dir/host_ed25519.pub"
				printf '[127.0.0.1]:%s ' "$port"; cut -d' ' -f1,2 "$dir/host_ecdsa.pub"
			} > "$dir/known_hosts"
			echo "$port"
			exit 0
		fi
		server_stop "$dir/sshd.pid"
	fi
done
echo "sshd.sh: could not start sshd; see $dir/sshd.log" >&2
tail -5 "$dir/sshd.log" >&2 || true
exit 1
