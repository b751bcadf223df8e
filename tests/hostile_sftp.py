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

With --control FILE (read once, when the subsystem starts, so a test
changes the behaviour of the next session by rewriting it; a missing or
empty file means none), each line "MODE [ARG]" misbehaves further.  A
request "names" ARG when its path, or the path its handle was opened on,
contains ARG from the start of a component ("/ARG"):

  hold ARG        from the first request naming ARG on, no reply is sent
                  (requests are still read: the channel and the SSH
                  connection stay alive, keepalives are answered)
  holdh ARG       the same, from the first request on a handle opened on
                  a path naming ARG (its OPEN is answered)
  truncate ARG    the reply to the first request naming ARG promises 1000
                  bytes more than it holds; nothing is sent after it
  endless ARG     READDIR of a directory naming ARG never ends: 100 new
                  names of 200 bytes in every reply
  status ARG      every request naming ARG is answered with the status
                  code 77 (no such code exists) and the text "odd refusal"
  version empty   the VERSION reply is a packet of one byte (its type)
  version big     the VERSION reply claims 300000 bytes
  pidfile PATH    this wrapper's pid is added to PATH, a line for each
                  wrapper started
"""
import os
import select
import struct
import subprocess
import sys

SERVER = "/usr/lib/openssh/sftp-server"
OPENDIR, READDIR, HANDLE, NAME = 11, 12, 102, 104
OPEN, VERSION, STATUS, EXTENDED = 3, 2, 101, 200
PATH_REQS = (3, 7, 9, 11, 13, 14, 15, 16, 17, 18, 19, 20)
HANDLE_REQS = (4, 5, 6, 8, 10, 12)
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


def read_control(argv):
    ctl = {}
    if "--control" in argv:
        i = argv.index("--control")
        try:
            with open(argv[i + 1]) as f:
                for line in f:
                    w = line.split(None, 1)
                    if w:
                        ctl[w[0]] = w[1].strip() if len(w) > 1 else ""
        except OSError:
            pass
    if "pidfile" in ctl:
        with open(ctl["pidfile"], "a") as f:
            f.write("%d\n" % os.getpid())
    return ctl


def strings_of(pkt):
    """The first two strings after type and id (what may be a path)."""
    out, o = [], 5
    for _ in range(2):
        if len(pkt) < o + 4:
            break
        n = struct.unpack_from(">I", pkt, o)[0]
        if len(pkt) < o + 4 + n:
            break
        out.append(pkt[o + 4:o + 4 + n])
        o += 4 + n
    return out


def names_arg(pkt, hpath, arg):
    if not arg:
        return False
    a = arg.encode()
    # ARG from the start of a path component ("endless-d" names
    # DEST/endless-d, not a test directory ".../ferry-push-endless-dX3f/").
    if not a.startswith(b"/"):
        a = b"/" + a

    def hit(path):
        return a in b"/" + path

    t = pkt[0]
    ss = strings_of(pkt)
    if t in PATH_REQS:
        return any(hit(x) for x in ss)
    if t in HANDLE_REQS and ss:
        return hit(hpath.get(ss[0], b""))
    if t == EXTENDED and len(ss) > 1:
        return hit(ss[1]) or hit(hpath.get(ss[1], b""))
    return False


def endless_names(serial):
    out = struct.pack(">I", 100)
    for i in range(100):
        n = b"e%09d-" % (serial + i) + b"x" * 189
        out += sput(n) + sput(b"-rw-r--r-- 1 x x 4 lie") + \
            attrs_put(file_attrs())
    return out


def main():
    ctl = read_control(sys.argv)
    child = subprocess.Popen([SERVER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, bufsize=0)
    cin, cout = sys.stdin.buffer.raw, child.stdout
    up, down = b"", b""
    opendir = {}   # request id -> path
    handles = {}   # handle -> mode
    readdir = {}   # request id -> mode
    opened = {}    # OPEN/OPENDIR request id -> path
    hpath = {}     # handle -> the path it was opened on
    named = {}     # request id -> the control mode it triggers
    endless = {}   # READDIR request id -> True
    held = False   # hold/truncate: no reply goes out any more
    serial = [0]
    first = True
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
                rid0 = struct.unpack_from(">I", pkt, 1)[0] \
                    if len(pkt) >= 5 else 0
                if t in (OPEN, OPENDIR):
                    ss = strings_of(pkt)
                    if ss:
                        opened[rid0] = ss[0]
                for mode in ("hold", "truncate", "status"):
                    if mode in ctl and names_arg(pkt, hpath, ctl[mode]):
                        named[rid0] = mode
                if "holdh" in ctl and t in HANDLE_REQS and \
                        names_arg(pkt, hpath, ctl["holdh"]):
                    named[rid0] = "hold"
                if t == READDIR and "endless" in ctl and \
                        names_arg(pkt, hpath, ctl["endless"]):
                    endless[rid0] = True
                if named.get(rid0) == "hold":
                    held = True
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
                if first and t == VERSION:
                    first = False
                    v = ctl.get("version")
                    if v == "empty":
                        write_all(sys.stdout.fileno(),
                                  struct.pack(">IB", 1, VERSION))
                        continue
                    if v == "big":
                        write_all(sys.stdout.fileno(),
                                  struct.pack(">I", 300000) + pkt)
                        continue
                if t == VERSION:
                    # its "id" is the version: not a request's
                    write_all(sys.stdout.fileno(),
                              struct.pack(">I", len(pkt)) + pkt)
                    continue
                rid = struct.unpack_from(">I", pkt, 1)[0] if len(pkt) >= 5 else 0
                if rid in opened and t == HANDLE:
                    h, _ = sstr(pkt, 5)
                    hpath[h] = opened[rid]
                opened.pop(rid, None)
                if endless.pop(rid, None):
                    serial[0] += 100
                    pkt = struct.pack(">BI", NAME, rid) + \
                        endless_names(serial[0])
                trigger = named.pop(rid, None)
                if trigger == "status":
                    msg = b"odd refusal"
                    pkt = struct.pack(">BII", STATUS, rid, 77) + sput(msg) + \
                        sput(b"en")
                if held and trigger != "truncate":
                    continue
                if trigger == "truncate":
                    held = True
                    write_all(sys.stdout.fileno(),
                              struct.pack(">I", len(pkt) + 1000) + pkt)
                    continue
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
