#!/usr/bin/python3
"""tests/paramiko_server.py - a small SFTP-only SSH server on 127.0.0.1
written with python3-paramiko (Debian 12: 2.12), for the tests of servers
other than OpenSSH.  Started by tests/pyserver.sh, not by hand:

    paramiko_server.py DIR

DIR holds host_ed25519 (the host key) and authorized_keys (the client keys
let in, for any user name; read at each login).  The server binds a free
port of 127.0.0.1, writes it to DIR/port, then its pid to DIR/server.pid,
and logs to DIR/server.log.  Its working directory is DIR/home: relative
paths from the client resolve there, absolute paths are the real
filesystem.

paramiko ships the SFTP protocol (paramiko.SFTPServer) and leaves the
filesystem to an SFTPServerInterface: FS below maps it onto the real one,
as the interface's documentation asks (RENAME refuses an existing target,
posix-rename@openssh.com replaces it; SYMLINK is (target, link) as paramiko
reads it, like OpenSSH).  paramiko advertises no extension but check-file
and never says it takes posix-rename: that is paramiko, left as it is.
No shell, no exec: paramiko's ServerInterface refuses those requests.
"""
import logging
import os
import socket
import sys
import threading

import paramiko
from paramiko import SFTPAttributes, SFTPHandle, SFTPServer
from paramiko.sftp import SFTP_FAILURE, SFTP_OK

log = logging.getLogger("paramiko-server")


def errno_of(e):
    return SFTPServer.convert_errno(e.errno)


def read_keys(path):
    keys = set()
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and not line.startswith("#"):
                    keys.add((parts[0], parts[1]))
    except OSError:
        pass
    return keys


class Server(paramiko.ServerInterface):
    def __init__(self, keyfile):
        self.keys = read_keys(keyfile)

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if (key.get_name(), key.get_base64()) in self.keys:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED


class Handle(SFTPHandle):
    def fd(self):
        f = getattr(self, "writefile", None) or self.readfile
        return f.fileno()

    def stat(self):
        try:
            return SFTPAttributes.from_stat(os.fstat(self.fd()))
        except OSError as e:
            return errno_of(e)

    def chattr(self, attr):
        try:
            fd = self.fd()
            if attr._flags & attr.FLAG_PERMISSIONS:
                os.fchmod(fd, attr.st_mode)
            if attr._flags & attr.FLAG_UIDGID:
                os.fchown(fd, attr.st_uid, attr.st_gid)
            if attr._flags & attr.FLAG_AMTIME:
                os.utime(fd, (attr.st_atime, attr.st_mtime))
            if attr._flags & attr.FLAG_SIZE:
                os.ftruncate(fd, attr.st_size)
        except OSError as e:
            return errno_of(e)
        return SFTP_OK


class FS(paramiko.SFTPServerInterface):
    def list_folder(self, path):
        try:
            out = []
            for name in os.listdir(path):
                st = os.lstat(os.path.join(path, name))
                out.append(SFTPAttributes.from_stat(st, name))
            return out
        except OSError as e:
            return errno_of(e)

    def stat(self, path):
        try:
            return SFTPAttributes.from_stat(os.stat(path))
        except OSError as e:
            return errno_of(e)

    def lstat(self, path):
        try:
            return SFTPAttributes.from_stat(os.lstat(path))
        except OSError as e:
            return errno_of(e)

    def open(self, path, flags, attr):
        mode = getattr(attr, "st_mode", None)
        try:
            fd = os.open(path, flags | os.O_CLOEXEC,
                         0o666 if mode is None else mode)
        except OSError as e:
            return errno_of(e)
        try:
            if (flags & os.O_CREAT) and attr is not None:
                attr._flags &= ~attr.FLAG_PERMISSIONS
                SFTPServer.set_file_attr(path, attr)
            append = flags & os.O_APPEND
            if flags & os.O_WRONLY:
                fmode = "ab" if append else "wb"
            elif flags & os.O_RDWR:
                fmode = "a+b" if append else "r+b"
            else:
                fmode = "rb"
            f = os.fdopen(fd, fmode)
        except OSError as e:
            os.close(fd)
            return errno_of(e)
        h = Handle(flags)
        h.filename = path
        h.readfile = f
        if fmode != "rb":
            h.writefile = f
        return h

    def remove(self, path):
        try:
            os.remove(path)
        except OSError as e:
            return errno_of(e)
        return SFTP_OK

    def rename(self, oldpath, newpath):
        log.info("rename %r %r", oldpath, newpath)
        if os.path.lexists(newpath):
            return SFTP_FAILURE
        try:
            os.rename(oldpath, newpath)
        except OSError as e:
            return errno_of(e)
        return SFTP_OK

    def posix_rename(self, oldpath, newpath):
        log.info("posix-rename %r %r", oldpath, newpath)
        try:
            os.rename(oldpath, newpath)
        except OSError as e:
            return errno_of(e)
        return SFTP_OK

    def mkdir(self, path, attr):
        try:
            os.mkdir(path)
            if attr is not None:
                SFTPServer.set_file_attr(path, attr)
        except OSError as e:
            return errno_of(e)
        return SFTP_OK

    def rmdir(self, path):
        try:
            os.rmdir(path)
        except OSError as e:
            return errno_of(e)
        return SFTP_OK

    def chattr(self, path, attr):
        try:
            SFTPServer.set_file_attr(path, attr)
        except OSError as e:
            return errno_of(e)
        return SFTP_OK

    def canonicalize(self, path):
        return os.path.realpath(path)

    def readlink(self, path):
        try:
            return os.readlink(path)
        except OSError as e:
            return errno_of(e)

    def symlink(self, target_path, path):
        log.info("symlink target %r link %r", target_path, path)
        try:
            os.symlink(target_path, path)
        except OSError as e:
            return errno_of(e)
        return SFTP_OK


def serve(conn, hostkey, keyfile):
    t = paramiko.Transport(conn)
    t.add_server_key(hostkey)
    t.set_subsystem_handler("sftp", SFTPServer, FS)
    try:
        t.start_server(server=Server(keyfile))
        # A channel that nothing refers to is closed by its destructor:
        # hold each until it closes.
        chans = []
        while t.is_active():
            c = t.accept(1)
            chans = [x for x in chans if not x.closed] + ([c] if c else [])
    except Exception as e:  # a client gone mid-handshake
        log.info("connection ended: %s", e)
    finally:
        t.close()


def write(path, text):
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: paramiko_server.py DIR")
    d = os.path.abspath(sys.argv[1])
    home = os.path.join(d, "home")
    os.makedirs(home, exist_ok=True)
    os.chdir(home)
    logging.basicConfig(filename=os.path.join(d, "server.log"),
                        level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    hostkey = paramiko.Ed25519Key.from_private_key_file(
        os.path.join(d, "host_ed25519"))
    keyfile = os.path.join(d, "authorized_keys")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    write(os.path.join(d, "port"), "%d\n" % s.getsockname()[1])
    write(os.path.join(d, "server.pid"), "%d\n" % os.getpid())
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn, hostkey, keyfile),
                         daemon=True).start()


if __name__ == "__main__":
    main()
