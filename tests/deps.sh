#!/bin/sh
# Install the Debian packages ferry needs to build, test and benchmark;
# do nothing when they are all present.
pkgs="build-essential clang libssh2-1-dev libxxhash-dev zlib1g-dev libcriterion-dev
pkg-config openssh-server openssh-client rsync gnuplot-nox inotify-tools python3
clang-format dropbear-bin strace gesftpserver proftpd-core proftpd-mod-crypto
python3-asyncssh python3-paramiko procps python3-pytest python3-setuptools"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
