#!/usr/bin/env bash
# tests/proftpd.sh - a private ProFTPD 1.3.8 with mod_sftp on 127.0.0.1 for
# the tests of servers other than OpenSSH.  SFTP only (no FTP, no shell, no
# exec: mod_sftp offers the sftp and scp subsystems and nothing else),
# public-key authentication only.  ProFTPD refuses root logins, so the
# server lets in one account made for it, ferry-proftpd (created when
# missing; needs root), whose keys are in DIR/keys/ferry-proftpd in the
# RFC 4716 format mod_sftp reads (ssh-keygen -e).  No chroot: the account
# sees the real filesystem, and its login directory is its home.
#
#   tests/proftpd.sh start DIR   start; prints the port
#   tests/proftpd.sh stop DIR    stop it by its pid
#
# DIR receives: host keys, a client key (id_ed25519), known_hosts
# ("[127.0.0.1]:PORT key"), proftpd.conf, proftpd.pid, its scoreboard and
# delay table, port, user, proftpd.log and sftp.log.  Exit 77 when ProFTPD,
# mod_sftp or root is missing (the tests then skip).
set -euo pipefail

cmd=${1:?usage: proftpd.sh start|stop DIR}
dir=${2:?usage: proftpd.sh start|stop DIR}
user=ferry-proftpd

. "$(dirname "$0")/server.sh"
server_command proftpd.sh "$cmd" "$dir/proftpd.pid"

pf=$(command -v proftpd || echo /usr/sbin/proftpd)
[ -x "$pf" ] || { echo "proftpd.sh: proftpd not found (apt-get install proftpd-core)" >&2; exit 77; }
mods=/usr/lib/proftpd
[ -f "$mods/mod_sftp.so" ] || { echo "proftpd.sh: no $mods/mod_sftp.so (apt-get install proftpd-mod-crypto)" >&2; exit 77; }
[ "$(id -u)" = 0 ] || { echo "proftpd.sh: needs root (it logs in as $user)" >&2; exit 77; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"

if ! getent passwd "$user" >/dev/null; then
	useradd -m -p '*' -s /bin/bash "$user" >/dev/null 2>&1 ||
		getent passwd "$user" >/dev/null ||
		{ echo "proftpd.sh: cannot create $user" >&2; exit 77; }
fi
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 755 -o "$user" "$home"
: > "$home/.bashrc"; : > "$home/.profile"; chown "$user" "$home/.bashrc" "$home/.profile"
echo "$user" > "$dir/user"

[ -f "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-host -f "$dir/host_ed25519"
[ -f "$dir/host_rsa" ] || ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -C ferry-test-host -f "$dir/host_rsa"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-client -f "$dir/id_ed25519"
# mod_sftp reads authorized keys in the RFC 4716 format only.  The server
# switches to the user before it reads the file: the user must reach it.
install -d -m 755 "$dir/keys"
ssh-keygen -e -f "$dir/id_ed25519.pub" > "$dir/keys/$user"
chmod 644 "$dir/keys/$user"
chmod 711 "$dir"

for try in $(seq 40); do
	port=$(server_port)
	cat > "$dir/proftpd.conf" <<CFG
ServerName "ferry test"
ServerType standalone
DefaultServer on
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
Port $port
User nobody
Group nogroup
PidFile $dir/proftpd.pid
ScoreboardFile $dir/proftpd.scoreboard
DelayTable $dir/proftpd.delay
SystemLog $dir/proftpd.log
TransferLog none
WtmpLog off
UseLastlog off
UseReverseDNS off
RequireValidShell off
AuthOrder mod_auth_unix.c
MaxInstances 60
Umask 022
AllowOverwrite on
TimeoutIdle 600

ModulePath $mods
ModuleControlsACLs insmod,rmmod allow user root
ModuleControlsACLs lsmod allow user *
<IfModule mod_ctrls.c>
  ControlsEngine off
</IfModule>
LoadModule mod_sftp.c

<IfModule mod_sftp.c>
  SFTPEngine on
  SFTPLog $dir/sftp.log
  SFTPHostKey $dir/host_ed25519
  SFTPHostKey $dir/host_rsa
  SFTPAuthMethods publickey
  SFTPAuthorizedUserKeys file:$dir/keys/%u
  SFTPCompression delayed
  SFTPOptions IgnoreSFTPSetOwners
</IfModule>

<Directory />
  AllowOverwrite on
</Directory>
CFG
	rm -f "$dir/proftpd.pid"
	"$pf" -c "$dir/proftpd.conf" >>"$dir/proftpd.log" 2>&1 || continue
	if server_ready "$dir/proftpd.pid" "$port"; then
		echo "$port" > "$dir/port"
		{
			printf '[127.0.0.1]:%s ' "$port"; cut -d' ' -f1,2 "$dir/host_ed25519.pub"
			printf '[127.0.0.1]:%s ' "$port"; cut -d' ' -f1,2 "$dir/host_rsa.pub"
		} > "$dir/known_hosts"
		echo "$port"
		exit 0
	fi
	server_stop "$dir/proftpd.pid"
done
echo "proftpd.sh: could not start proftpd; see $dir/proftpd.log" >&2
tail -5 "$dir/proftpd.log" >&2 || true
exit 1
