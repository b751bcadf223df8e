#!/usr/bin/env python3
"""tests/hostile_sftp.py - a lying SFTP server for the pull tests.

Set as the Subsystem of a private sshd, it runs OpenSSH's sftp-server
and relays its packets unchanged, except the NAME replies of a READDIR
on a directory called "hostile-MODE": those are rewritten by MODE.

  dotdot    an extra ".." listed as a regular file
  dotdir    an extra "." listed as a regular file
  dotdotx   an extra "../x"
  abs       an extra "/etc/x"
  slash     an extra "a/b"
  empty     an extra ""
  nul       an extra "a\\0b"
  long      an extra name of 300 bytes
  dup       the first entry listed twice
  sizebig   every regular file listed 100 bytes larger than it is
  sizesmall every regular file listed 1 byte smaller than it is
  nosize    every regular file listed without its size
  setuid    every regular file listed with the set-user-ID bit
  dirlie    every regular file listed as a directory
  filelie   every directory listed as a regular file of 10 bytes

The extra entries are regular files of 4 bytes.  Nothing else changes:
what is read is what the real server has.
"""
import os
import select
import struct
import subprocess
import sys

SERVER = "/usr/lib/openssh/sftp-server"
OPENDIR, READDIR, HANDLE, NAME = 11, 12, 102, 104
S_IFMT, S_IFREG, S_IFDIR = 0o170000, 0o100000, 0o040000
A_SIZE, A_UIDGID, A_PERM, A_TIME, A_EXT = 1, 2, 4, 8, 0x80000000


def u32(b, o):
    return struct.unpack_from(">I", b, o)[0], o + 4


def sstr(b, o):
    n, o = u32(b, o)
    return b[o:o + n], o + n


def attrs_get(b, o):
    a = {}
    a["flags"], o = u32(b, o)
    f = a["flags"]
    if f & A_SIZE:
        a["size"] = struct.unpack_from(">Q", b, o)[0]
        o += 8
    if f & A_UIDGID:
        a["uid"], o = u32(b, o)
        a["gid"], o = u32(b, o)
    if f & A_PERM:
        a["perm"], o = u32(b, o)
    if f & A_TIME:
        a["atime"], o = u32(b, o)
        a["mtime"], o = u32(b, o)
    if f & A_EXT:
        n, o = u32(b, o)
        ext = []
        for _ in range(n):
            k, o = sstr(b, o)
            v, o = sstr(b, o)
            ext.append((k, v))
        a["ext"] = ext
    return a, o


def attrs_put(a):
    f = a["flags"]
    out = struct.pack(">I", f)
    if f & A_SIZE:
        out += struct.pack(">Q", a["size"])
    if f & A_UIDGID:
        out += struct.pack(">II", a["uid"], a["gid"])
    if f & A_PERM:
        out += struct.pack(">I", a["perm"])
    if f & A_TIME:
        out += struct.pack(">II", a["atime"], a["mtime"])
    if f & A_EXT:
        out += struct.pack(">I", len(a["ext"]))
        for k, v in a["ext"]:
            out += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    return out


def sput(s):
    return struct.pack(">I", len(s)) + s


def file_attrs():
    return {"flags": A_SIZE | A_PERM | A_TIME, "size": 4,
            "perm": S_IFREG | 0o644, "atime": 1700000000, "mtime": 1700000000}


EXTRA = {"dotdot": b"..", "dotdir": b".", "dotdotx": b"../x",
         "abs": b"/etc/x", "slash": b"a/b", "empty": b"", "nul": b"a\0b",
         "long": b"L" * 300}


def rewrite(mode, body):
    """body: a NAME reply after type and id."""
    count, o = u32(body, 0)
    ents = []
    for _ in range(count):
        n, o = sstr(body, o)
        ln, o = sstr(body, o)
        a, o = attrs_get(body, o)
        ents.append([n, ln, a])
    real = [e for e in ents if e[0] not in (b".", b"..")]
    if mode in EXTRA:
        ents.append([EXTRA[mode], b"-rw-r--r-- 1 x x 4 lie", file_attrs()])
    elif mode == "dup" and real:
        ents.append(list(real[0]))
    for n, ln, a in real:
        isreg = a.get("perm", 0) & S_IFMT == S_IFREG
        isdir = a.get("perm", 0) & S_IFMT == S_IFDIR
        if mode == "sizebig" and isreg:
            a["size"] += 100
        elif mode == "sizesmall" and isreg and a["size"] > 0:
            a["size"] -= 1
        elif mode == "nosize" and isreg:
            a["flags"] &= ~A_SIZE
        elif mode == "setuid" and isreg:
            a["perm"] |= 0o4000
        elif mode == "dirlie" and isreg:
            a["perm"] = S_IFDIR | 0o755
        elif mode == "filelie" and isdir:
            a["perm"] = S_IFREG | 0o644
            a["size"] = 10
    out = struct.pack(">I", len(ents))
    for n, ln, a in ents:
        out += sput(n) + sput(ln) + attrs_put(a)
    return out


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def main():
    child = subprocess.Popen([SERVER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, bufsize=0)
    cin, cout = sys.stdin.buffer.raw, child.stdout
    up, down = b"", b""
    opendir = {}   # request id -> path
    handles = {}   # handle -> mode
    readdir = {}   # request id -> mode
    while True:
        r, _, _ = select.select([cin, cout], [], [])
        if cin in r:
            d = os.read(cin.fileno(), 65536)
            if not d:
                break
            up += d
            while len(up) >= 4:
                n = struct.unpack_from(">I", up, 0)[0]
                if len(up) < 4 + n:
                    break
                pkt, up = up[4:4 + n], up[4 + n:]
                t = pkt[0]
                if t in (OPENDIR, READDIR) and len(pkt) >= 5:
                    rid = struct.unpack_from(">I", pkt, 1)[0]
                    s, _ = sstr(pkt, 5)
                    if t == OPENDIR:
                        base = os.path.basename(s.rstrip(b"/"))
                        hostile = base.startswith(b"hostile-")
                        opendir[rid] = base[8:].decode() if hostile else None
                    elif handles.get(s):
                        readdir[rid] = handles[s]
                write_all(child.stdin.fileno(), struct.pack(">I", n) + pkt)
        if cout in r:
            d = os.read(cout.fileno(), 65536)
            if not d:
                break
            down += d
            while len(down) >= 4:
                n = struct.unpack_from(">I", down, 0)[0]
                if len(down) < 4 + n:
                    break
                pkt, down = down[4:4 + n], down[4 + n:]
                t = pkt[0]
                rid = struct.unpack_from(">I", pkt, 1)[0] if len(pkt) >= 5 else 0
                mode = readdir.pop(rid, None)
                if rid in opendir:
                    # handles are reused: each OPENDIR says what its is
                    m = opendir.pop(rid)
                    if t == HANDLE:
                        h, _ = sstr(pkt, 5)
                        handles[h] = m
                elif t == NAME and mode:
                    pkt = pkt[:5] + rewrite(mode, pkt[5:])
                write_all(sys.stdout.fileno(),
                          struct.pack(">I", len(pkt)) + pkt)
    child.stdin.close()
    child.wait()


if __name__ == "__main__":
    main()
