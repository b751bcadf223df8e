#!/usr/bin/python3
# tests/sftp_noperm.py [--setstat-too] SFTP-SERVER... - a server that
# ignores the permissions a client asks for: OpenSSH's sftp-server (the
# rest of the command line) behind a filter that strips the attributes of
# every OPEN (so the file gets 0666 & ~umask) and, with --setstat-too, of
# every FSETSTAT and SETSTAT.  For the test that a file meant to be
# unreadable by others gets no byte before its mode is confirmed.
import os
import struct
import subprocess
import sys
import threading

OPEN, SETSTAT, FSETSTAT = 3, 9, 10

args = sys.argv[1:]
setstat_too = bool(args) and args[0] == "--setstat-too"
if setstat_too:
    args = args[1:]
os.umask(0o022)
child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=sys.stdout.buffer)


def read_exact(f, n):
    b = b""
    while len(b) < n:
        c = f.read(n - len(b))
        if not c:
            return None
        b += c
    return b


def strip_attrs(body, at):
    """body[at:] starts with ATTRS: replace them with empty ones."""
    return body[:at] + struct.pack(">I", 0)


def rewrite(p):
    t = p[0]
    if t == OPEN:
        (n,) = struct.unpack(">I", p[5:9])
        return strip_attrs(p, 9 + n + 4)
    if setstat_too and t in (SETSTAT, FSETSTAT):
        (n,) = struct.unpack(">I", p[5:9])
        return strip_attrs(p, 9 + n)
    return p


stdin = sys.stdin.buffer
while True:
    h = read_exact(stdin, 4)
    if h is None:
        break
    (n,) = struct.unpack(">I", h)
    p = read_exact(stdin, n)
    if p is None:
        break
    p = rewrite(p)
    child.stdin.write(struct.pack(">I", len(p)) + p)
    child.stdin.flush()
child.stdin.close()
child.wait()
