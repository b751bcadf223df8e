#!/usr/bin/python3
"""bench/python_bench.py - the Python rows of `make bench` (issue 17):

  execute("true") through ferry.agent.RemoteEnvironment   vs
  `ssh -o ControlPath=... HOST bash -c true` run by subprocess through a
  ControlMaster (the runtime's way today);
  a no-op sync of the 403-file tree (bench/gentree create -n 400 -s 1);
  `echo` while another thread's `sleep 3` runs, for both;
  the Python layer's overhead over the C call (wall time of the Python
  call minus the time the library reports for itself).

A private sshd (tests/sshd.sh) on loopback, the remote tree on /dev/shm
(a tmpfs).  Runs alternate between the tools.  Writes a Markdown table to
stdout and OUT/latest.md.

  RUNS=10 WARM=2 B=build bench/python_bench.py [--out DIR]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "python"))


def ms(t):
    return t * 1000.0


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rng(xs):
    return f"{min(xs):.3g}–{max(xs):.3g}" if xs else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", 10)))
    ap.add_argument("--warm", type=int, default=int(os.environ.get("WARM", 2)))
    ap.add_argument("--build", default=os.environ.get("B", "build"))
    ap.add_argument("--out", default=os.path.join(SRC, "bench", "results",
                                                  "python"))
    a = ap.parse_args()
    build = os.path.join(SRC, a.build) if not os.path.isabs(a.build) else \
        a.build
    os.environ.setdefault("FERRY_LIB", os.path.join(build, "libferry.so"))
    w = tempfile.mkdtemp(prefix="ferry-pybench.")
    shm = tempfile.mkdtemp(prefix="ferry-pybench.", dir="/dev/shm") \
        if os.path.isdir("/dev/shm") else os.path.join(w, "remote")
    os.environ["XDG_STATE_HOME"] = os.path.join(w, "state")
    os.environ.pop("SSH_AUTH_SOCK", None)
    sv = os.path.join(w, "sshd")
    cm = os.path.join(w, "cm")
    port = subprocess.run([os.path.join(SRC, "tests", "sshd.sh"), "start", sv],
                          check=True, capture_output=True,
                          text=True).stdout.strip()
    ssh = ["ssh", "-p", port, "-i", f"{sv}/id_ed25519", "-o",
           f"UserKnownHostsFile={sv}/known_hosts", "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=yes", "-o", f"ControlPath={cm}"]
    host = "root@127.0.0.1" if os.getuid() == 0 else "127.0.0.1"
    try:
        subprocess.run(ssh + ["-o", "ControlMaster=yes", "-o",
                              "ControlPersist=yes", "-f", "-N", host],
                       check=True)
        sshcm = ssh + ["-o", "ControlMaster=no", host]
        rows = run(a, build, w, shm, sv, int(port), sshcm)
    finally:
        subprocess.run(ssh + ["-O", "exit", host], capture_output=True)
        subprocess.run([os.path.join(SRC, "tests", "sshd.sh"), "stop", sv],
                       capture_output=True)
        shutil.rmtree(w, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    report(a, rows)


def run(a, build, w, shm, sv, port, sshcm):
    import ferry
    from ferry.agent import RemoteEnvironment
    tree = os.path.join(w, "tree")
    info = subprocess.run([os.path.join(build, "bench", "gentree"), "create",
                           tree, "-n", "400", "-s", "1"], check=True,
                          capture_output=True, text=True).stdout.strip()
    env = RemoteEnvironment("127.0.0.1", None, port=port,
                            key_path=f"{sv}/id_ed25519",
                            known_hosts=f"{sv}/known_hosts",
                            host_key_policy="strict", use_agent=False)
    s = env.session
    R = {"tree": info, "runs": a.runs, "ferry": ferry.library_path}
    sub = lambda *cmd: subprocess.run(sshcm + list(cmd), check=True,
                                      stdin=subprocess.DEVNULL,
                                      capture_output=True)

    # 1. execute("true"), alternating with ssh through the ControlMaster.
    ex, sh, ovh_exec = [], [], []
    for i in range(a.warm + a.runs):
        t = time.perf_counter()
        r = env.execute("true")
        t1 = time.perf_counter() - t
        assert r["returncode"] == 0, r
        t = time.perf_counter()
        sub("bash -c true")
        t2 = time.perf_counter() - t
        t = time.perf_counter()
        res = s.exec("true")
        t3 = time.perf_counter() - t
        if i >= a.warm:
            ex.append(ms(t1))
            sh.append(ms(t2))
            ovh_exec.append(ms(t3) - res.duration * 1000.0)
    R["exec"], R["ssh"], R["ovh_exec"] = ex, sh, ovh_exec

    # 2. No-op sync of the tree through RemoteEnvironment.sync (one
    # mapping: the tree's contents at BASE/tree), after one cold push.
    mapping = [(tree, "tree")]
    env.sync(mapping, shm)
    nop, rts, ovh_sync, c_ms = [], [], [], []
    for i in range(a.warm + a.runs):
        t = time.perf_counter()
        rep = env.sync(mapping, shm)
        t1 = time.perf_counter() - t
        assert rep.files_uploaded == 0 and rep.files_scanned == 403, rep
        if i >= a.warm:
            nop.append(ms(t1))
            rts.append(rep.round_trips)
            c_ms.append(rep.ms_total)
            ovh_sync.append(ms(t1) - rep.ms_total)
    R["noop"], R["noop_rt"], R["noop_c"], R["ovh_sync"] = nop, rts, c_ms, \
        ovh_sync

    # 3. echo while another thread's sleep 3 runs.
    def during(long_call, short_call):
        th = threading.Thread(target=long_call)
        th.start()
        time.sleep(0.2)  # the sleep is running
        t = time.perf_counter()
        short_call()
        el = time.perf_counter() - t
        th.join()
        return ms(el)

    fe, se = [], []
    for i in range(a.runs):  # each takes 3 s: no warm-up rounds
        fe.append(during(lambda: env.execute("sleep 3"),
                         lambda: env.execute("echo x")))
        se.append(during(lambda: sub("bash -c 'sleep 3'"),
                         lambda: sub("bash -c 'echo x'")))
    R["conc"], R["conc_ssh"] = fe, se

    # 4. The Python layer over the C call: Session.exec / Session.sync
    # against the bare ctypes call with options built once, alternating,
    # many pairs (the difference is small against the calls' jitter).
    import ctypes
    from ferry import _lib
    L = ferry._clib
    eo = _lib.ExecOpts()
    L.ferry_exec_opts_init(ctypes.byref(eo), eo.VERSION)
    so = _lib.SyncOpts()
    L.ferry_sync_opts_init(ctypes.byref(so), so.VERSION)
    srcs = (ctypes.c_char_p * 1)(tree.encode() + b"/")
    so.sources, so.source_count = srcs, 1
    so.dest = os.path.join(shm, "tree2").encode()

    def raw_exec():
        r = _lib.ExecResult()
        assert L.ferry_exec(s._s, b"true", ctypes.byref(eo),
                            ctypes.byref(r)) == 0
        L.ferry_exec_result_free(ctypes.byref(r))

    def raw_sync():
        r = _lib.SyncReport()
        assert L.ferry_sync(s._s, ctypes.byref(so), ctypes.byref(r)) == 0
        L.ferry_sync_report_free(ctypes.byref(r))

    s.sync([tree + "/"], os.path.join(shm, "tree2"))  # cold, once
    pairs = max(100, 20 * a.runs)
    for name, py_call, raw in (
            ("layer_exec", lambda: s.exec("true"), raw_exec),
            ("layer_sync", lambda: s.sync([tree + "/"],
                                          os.path.join(shm, "tree2")),
             raw_sync)):
        pys, raws = [], []
        for i in range(pairs + 5):
            t = time.perf_counter()
            py_call()
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            raw()
            t2 = time.perf_counter() - t
            if i >= 5:
                pys.append(ms(t1))
                raws.append(ms(t2))
        R[name] = (med(pys), med(raws), pairs)

    # 5. The ctypes floor: one trivial library call.
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        ferry._clib.ferry_version()
    R["ffi_us"] = (time.perf_counter() - t) / n * 1e6
    env.cleanup()
    return R


def layer(what, t):
    py, raw, n = t
    return (f"| Python layer over the C call: {what} (`Session` call "
            f"{py:.3g} vs the bare ctypes call {raw:.3g}, medians of {n} "
            f"alternating pairs) | {py - raw:.3f} | – | – | ≤ 0.2 ms |")


def report(a, R):
    ratio = med(R["exec"]) / med(R["ssh"])
    lines = [
        f"# ferry Python rows ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"Loopback, private sshd, remote on a tmpfs; {R['runs']} runs per "
        f"cell (alternating), medians in ms (min–max); library "
        f"`{R['ferry']}`; tree: {R['tree']}.",
        "",
        "| case | ferry (Python) | peer | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| `execute(\"true\")` via RemoteEnvironment vs `ssh -o ControlPath=… "
        f"bash -c true` via subprocess | {med(R['exec']):.3g} ({rng(R['exec'])}) "
        f"| {med(R['ssh']):.3g} ({rng(R['ssh'])}) | {ratio:.2f}× | ≤ 0.3× |",
        f"| no-op `sync` of the 403-file tree | {med(R['noop']):.3g} "
        f"({rng(R['noop'])}) · {max(R['noop_rt'])} rt | – | – | ≤ 2 ms, 0 rt |",
        f"| `echo` while another thread's `sleep 3` runs | "
        f"{med(R['conc']):.4g} ({rng(R['conc'])}) | {med(R['conc_ssh']):.3g} "
        f"({rng(R['conc_ssh'])}) | {med(R['conc']) / med(R['conc_ssh']):.2f}× "
        f"| ≤ 1 rt + 5 ms |",
        layer("exec", R["layer_exec"]),
        layer("no-op sync", R["layer_sync"]),
        f"| Python wall time minus the library's own duration: exec "
        f"`true` | {med(R['ovh_exec']):.3f} ({rng(R['ovh_exec'])}) | – | – "
        f"| (includes C work outside the timed span) |",
        f"| the same: no-op sync (C's own ms_total {med(R['noop_c']):.3g}) "
        f"| {med(R['ovh_sync']):.3f} ({rng(R['ovh_sync'])}) | – | – | |",
        f"| one ctypes call (`ferry_version`), µs | {R['ffi_us']:.2f} | – | – "
        f"| |",
        "",
        "Calls from several threads run at once on one session (each "
        "command on its own channel), so the `echo` does not wait for the "
        "`sleep 3`.",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
