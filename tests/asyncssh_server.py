#!/usr/bin/python3
"""tests/asyncssh_server.py - a small SFTP-only SSH server on 127.0.0.1
written with python3-asyncssh (Debian 12: 2.10), for the tests of servers
other than OpenSSH.  Started by tests/pyserver.sh, not by hand:

    asyncssh_server.py DIR

DIR holds host_ed25519 (the host key) and authorized_keys (the client keys
let in, for any user name).  The server binds a free port of 127.0.0.1,
writes it to DIR/port, then its pid to DIR/server.pid, and logs to
DIR/server.log.  Its working directory is DIR/home: relative paths from the
client resolve there, absolute paths are the real filesystem (asyncssh's
SFTPServer without a chroot).

It runs asyncssh's own SFTPServer, unchanged: whatever asyncssh does (for
example the SYMLINK argument order it picks from the client's banner) is
what the client meets.  No shell, no exec, no scp: asyncssh refuses those
channel requests.
"""
import asyncio
import logging
import os
import sys
import warnings

warnings.filterwarnings("ignore")  # cryptography's deprecation notices
import asyncssh  # noqa: E402


class Quiet(logging.Filter):
    """asyncssh's debug lines of every read and write are noise; the rest
    (symlink, rename, setstat requests) are kept as evidence."""

    def filter(self, record):
        msg = str(record.msg)
        return not msg.startswith(("Received read", "Received write"))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: asyncssh_server.py DIR")
    d = os.path.abspath(sys.argv[1])
    home = os.path.join(d, "home")
    os.makedirs(home, exist_ok=True)
    os.chdir(home)
    handler = logging.FileHandler(os.path.join(d, "server.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.addFilter(Quiet())
    log = logging.getLogger("asyncssh")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    asyncssh.set_debug_level(1)

    async def start():
        server = await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[os.path.join(d, "host_ed25519")],
            authorized_client_keys=os.path.join(d, "authorized_keys"),
            sftp_factory=asyncssh.SFTPServer,
            allow_scp=False,
            login_timeout=30,
        )
        port = server.sockets[0].getsockname()[1]
        write(os.path.join(d, "port"), "%d\n" % port)
        write(os.path.join(d, "server.pid"), "%d\n" % os.getpid())
        return server

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(start())
    loop.run_forever()


def write(path, text):
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


if __name__ == "__main__":
    main()
