#!/usr/bin/env bash
# cli/mkman.sh FERRY - write the ferry(1) man page to stdout from the
# program's own help texts, so `ferry help CMD` and the man page say the
# same thing.  `make man` refreshes cli/ferry.1; a test checks it is current.
set -euo pipefail
ferry=${1:?usage: mkman.sh path/to/ferry}
version=$("$ferry" --version | cut -d' ' -f2)

esc() { # roff-escape a block of text: backslashes, leading . and '
	sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

cat <<EOF2
.TH FERRY 1 "" "ferry $version" "User Commands"
.SH NAME
ferry \\- keep a remote copy of local files current over SSH, and run commands there
.SH SYNOPSIS
.nf
.B ferry push [OPTIONS] SRC... [USER@]HOST:DEST
.B ferry pull [OPTIONS] [USER@]HOST:SRC... DEST
.B ferry status [OPTIONS] SRC... [USER@]HOST:DEST
.B ferry exec [OPTIONS] [USER@]HOST [\\-\\-] COMMAND...
.B ferry ping [OPTIONS] [USER@]HOST
.B ferry master status | stop [TARGET|\\-\\-all]
.B ferry help COMMAND
.fi
.SH DESCRIPTION
ferry makes a remote directory equal to local files over SFTP, pipelining
every request on one channel, and keeps a manifest per target so that a push
where nothing changed costs no network round trip; pull brings a remote tree
into a local directory the same way, every name the server sends checked.  The remote needs only
sshd's SFTP subsystem (and bash for
.BR exec ).
Each command below is shown with the text of
.BR "ferry help COMMAND" .
EOF2
for cmd in push pull status exec ping master; do
	printf '.SH %s\n.nf\n' "$(echo "$cmd" | tr a-z A-Z)"
	"$ferry" help "$cmd" | esc
	printf '.fi\n'
done
cat <<'EOF2'
.SH EXIT STATUS
.nf
0    done
1    error
2    bad usage
23   partial: some files could not be transferred
124  exec: the command timed out (it was killed remotely)
130  interrupted (exec: the remote command was killed)
255  connection, host key or authentication failure
.fi
For
.BR exec ,
any other status is the remote command's own.
.SH ENVIRONMENT
.TP
.B FERRY_PASSPHRASE
passphrase of an encrypted identity file (ferry never prompts)
.TP
.B SSH_AUTH_SOCK
ssh-agent, tried before identity files
.TP
.B XDG_STATE_HOME
manifests live in $XDG_STATE_HOME/ferry (default ~/.local/state/ferry)
.TP
.B FERRY_PERSIST
as \\-\\-persist on every call: yes (300 s), no, or seconds
.TP
.B XDG_RUNTIME_DIR
holder sockets live in $XDG_RUNTIME_DIR/ferry (else
~/.local/state/ferry/run), a directory only the user may enter
.SH FILES
.TP
.I ~/.ssh/known_hosts
host keys (hashed entries and [host]:port understood)
.TP
.I ~/.ssh/config
read when present: Host, HostName, User, Port, IdentityFile,
UserKnownHostsFile, StrictHostKeyChecking, ConnectTimeout
.TP
.I ~/.local/state/ferry/
one manifest and one lock file per target
.SH SEE ALSO
.BR ssh (1),
.BR rsync (1),
.BR sftp-server (8)
EOF2
