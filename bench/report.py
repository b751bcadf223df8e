#!/usr/bin/env python3
"""bench/report.py - turn bench/run.sh's raw runs into the results.

    report.py --raw RAW.tsv --meta META.tsv --out DIR --stamp STAMP

RAW rows: level case tool run ms round_trips maxrss_kb status extra
[wire_bytes up:down] (run is 1..N for measured runs, wN for warm-ups, "na"
for a cell that could not be measured; wire_bytes, where measured (big,
delta), counts both directions of the push's IP packets, "-" elsewhere;
up:down splits it where the counter can tell, else "-").  Writes DIR/bench-STAMP.{md,json,png,raw.tsv,meta.tsv} and
copies them to DIR/latest.*; the two .tsv files regenerate the rest.  Standard library only (Debian's python3) + gnuplot.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

CASES = [
    ("cold", "cold push (tree)"),
    ("noop", "no-op push"),
    ("change5", "5 files changed"),
    ("touch5", "5 files touched (mtime only)"),
    ("exec", "`exec true`"),
    ("connect", "new connection to first command"),
    ("big", "256 MiB file"),
    ("delta", "1 MiB changed in a 512 MiB file"),
    ("cold10k", "10,000 files, cold"),
    ("noop10k", "10,000 files, no-op"),
    ("cold100k", "100,000 files, cold"),
    ("noop100k", "100,000 files, no-op"),
    ("pcold", "cold pull (tree)"),
    ("pnoop", "no-op pull"),
    ("pchange5", "pull, 5 files changed"),
]
CASE_LABEL = dict(CASES)
SHORT = {"cold": "cold", "noop": "no-op", "change5": "5 changed",
         "touch5": "5 touched", "exec": "exec true",
         "connect": "connect+cmd", "big": "256 MiB", "delta": "1 MiB delta",
         "cold10k": "10k cold", "noop10k": "10k no-op", "cold100k": "100k cold",
         "noop100k": "100k no-op", "pcold": "pull cold",
         "pnoop": "pull no-op", "pchange5": "pull 5 chg"}

TOOLS = {
    "ferry-held": "ferry, held session (libferry)",
    "ferry-lib": "ferry library: open + exec + close",
    "ferry-cli": "ferry CLI (one process, new connection)",
    "ferry-persist": "ferry CLI through a holder (--persist)",
    "rsync-cm": "rsync --delete via ssh ControlMaster (push -az, pull -a)",
    "rsync-new": "rsync --delete, new ssh connection (push -az, pull -a)",
    "rsync-inplace": "rsync -a --inplace, new ssh connection",
    "rsync-plain": "rsync -a (temp file + rename), new ssh connection",
    "ssh-cm": "ssh true via ControlMaster",
    "ssh-new": "ssh true, new connection",
    "ssh-cat": "ssh 'cat >/dev/null', new connection",
    "stat-find": "floor: stat walk, find -printf (process)",
    "hash-xxh3": "floor: read + XXH3-128 all files (process)",
    "stat-inproc": "floor: stat walk, in-process (openat/fstatat)",
    "hash-inproc": "floor: read + XXH3-128, in-process",
}
TOOL_ORDER = list(TOOLS)

# Plot series: which tool plays which role in each case.
SERIES = [
    ("ferry held session / library", {"ferry-held", "ferry-lib"}, "#1b7837"),
    ("ferry CLI process", {"ferry-cli"}, "#a6dba0"),
    ("ferry CLI through a holder", {"ferry-persist"}, "#762a83"),
    ("rsync/ssh via ControlMaster", {"rsync-cm", "ssh-cm"}, "#4575b4"),
    ("rsync/ssh new connection", {"rsync-new", "ssh-new", "rsync-inplace"}, "#f46d43"),
    ("ssh cat (256 MiB)", {"ssh-cat"}, "#fee090"),
    ("local stat walk (find)", {"stat-find"}, "#969696"),
]

# DESIGN.md "Numbers to beat" (medians, ms) for the peers.
DESIGN = {
    ("exec", "ssh-new"): {0: 195, 20: 450, 50: 784},
    ("connect", "ssh-new"): {0: 195, 20: 450, 50: 784},
    ("exec", "ssh-cm"): {0: 5.5, 20: 50, 50: 109},
    ("cold", "rsync-new"): {0: 263, 20: 710, 50: 1425},
    ("noop", "rsync-new"): {0: 237, 20: 590, 50: 1095},
    ("change5", "rsync-new"): {0: 244, 20: 585, 50: 1129},
    ("cold", "rsync-cm"): {0: 75, 20: 251, 50: 504},
    ("noop", "rsync-cm"): {0: 57, 20: 198, 50: 411},
    ("change5", "rsync-cm"): {0: 60, 20: 201, 50: 442},
    ("noop", "stat-find"): {0: 2.1},
    ("noop", "hash-xxh3"): {0: 5.9},
}
DESIGN_MIBS = {0: 404, 20: 70, 50: 28}  # ssh cat throughput


def within(limit):
    return lambda r, f, p, lvl: (r <= limit, "≤ %.2g×" % limit)


def below():
    return lambda r, f, p, lvl: (r < 1.0, "< 1×")


def rt_max(n, extra=None):
    def check(r, f, p, lvl):
        rt = f.get("round_trips")
        ok = rt is not None and rt <= n
        if extra:
            e_ok, e_txt = extra(r, f, p, lvl)
            return (ok and e_ok if rt is not None else None,
                    "%s and %s round trips" % (e_txt, "0" if n == 0 else "≤ %d" % n))
        return (ok if rt is not None else None,
                "0 round trips" if n == 0 else "≤ %d round trips" % n)
    return check


# Levels of directories in the tree (meta tree_depth): an unchanged pull
# of a tree of depth d takes at most d + 2 round trips.
DEPTH = {"d": None}


def rt_depth(extra=None):
    def check(r, f, p, lvl):
        d = DEPTH["d"]
        if d is None:
            return None, "(tree depth unknown)"
        return rt_max(d + 2, extra)(r, f, p, lvl)
    return check


def exec_target(r, f, p, lvl):
    rtt = lvl if lvl else 0.1
    ok = f["median"] <= rtt + 2.0 and r < 1.0
    return ok, "≤ 1 RTT + 2 ms and < 1×"


def at(lvls, check):
    def inner(r, f, p, lvl):
        if lvl not in lvls:
            return None, "(no target at this RTT)"
        return check(r, f, p, lvl)
    return inner


def throughput(limit_ratio, lvls):
    def check(r, f, p, lvl):
        if lvl not in lvls:
            return None, "(no target at this RTT)"
        # time ratio r; throughput ratio is 1/r
        return (1.0 / r) >= limit_ratio, "throughput ≥ %.2g× (time ≤ %.2f×)" % (
            limit_ratio, 1 / limit_ratio)
    return check


PAIRS = [
    ("cold", "ferry-held", "rsync-cm", rt_max(6, below())),
    ("cold", "ferry-cli", "rsync-new", None),
    ("cold", "ferry-persist", "rsync-cm", None),
    ("noop", "ferry-persist", "rsync-cm", rt_max(0)),
    ("noop", "ferry-persist", "stat-find", None),
    ("change5", "ferry-persist", "rsync-cm", rt_max(3)),
    ("exec", "ferry-persist", "ssh-cm", None),
    ("noop", "ferry-held", "stat-find", rt_max(0, within(1.5))),
    ("noop", "ferry-held", "stat-inproc", None),
    ("noop", "ferry-held", "rsync-cm", None),
    ("noop", "ferry-cli", "rsync-new", None),
    ("change5", "ferry-held", "rsync-cm", rt_max(3)),
    ("change5", "ferry-cli", "rsync-new", None),
    ("touch5", "ferry-held", "rsync-cm", None),
    ("touch5", "ferry-cli", "rsync-new", None),
    ("exec", "ferry-held", "ssh-cm", exec_target),
    ("exec", "ferry-cli", "ssh-new", None),
    ("connect", "ferry-lib", "ssh-new", below()),
    ("connect", "ferry-cli", "ssh-new", below()),
    ("big", "ferry-cli", "ssh-cat", throughput(1.0, {0})),
    ("big", "ferry-held", "ssh-cat", None),
    ("big", "ferry-cli", "rsync-new", throughput(2.0, {50})),
    ("big", "ferry-held", "rsync-new", throughput(2.0, {50})),
    ("delta", "ferry-held", "rsync-inplace", within(0.5)),
    ("delta", "ferry-cli", "rsync-inplace", within(0.5)),
    ("delta", "ferry-held", "rsync-plain", None),
    ("delta", "ferry-cli", "rsync-plain", None),
    ("cold10k", "ferry-held", "rsync-new", at({20}, within(0.8))),
    ("cold10k", "ferry-cli", "rsync-new", at({20}, within(0.8))),
    ("cold10k", "ferry-held", "rsync-cm", below()),
    ("cold10k", "ferry-cli", "rsync-cm", None),
    ("noop10k", "ferry-held", "rsync-cm", rt_max(0)),
    ("noop10k", "ferry-cli", "rsync-new", None),
    ("cold100k", "ferry-held", "rsync-new", at({0}, within(1.0))),
    ("cold100k", "ferry-cli", "rsync-new", at({0}, within(1.0))),
    ("cold100k", "ferry-held", "rsync-cm", None),
    ("noop100k", "ferry-held", "stat-find", within(1.5)),
    ("noop100k", "ferry-held", "rsync-cm", rt_max(0)),
    ("noop100k", "ferry-cli", "stat-find", None),
    ("noop100k", "ferry-cli", "rsync-new", None),
    ("pcold", "ferry-held", "rsync-cm", below()),
    ("pcold", "ferry-cli", "rsync-new", None),
    ("pnoop", "ferry-held", "rsync-cm", rt_depth(below())),
    ("pnoop", "ferry-cli", "rsync-new", None),
    ("pchange5", "ferry-held", "rsync-cm", below()),
    ("pchange5", "ferry-cli", "rsync-new", None),
]

# The same, on the medians of the bytes on the wire per push.
BYTE_PAIRS = [
    ("delta", "ferry-held", "rsync-inplace", within(1.5)),
    ("delta", "ferry-cli", "rsync-inplace", within(1.5)),
    ("delta", "ferry-held", "rsync-plain", None),
    ("delta", "ferry-cli", "rsync-plain", None),
    ("big", "ferry-cli", "ssh-cat", None),
    ("big", "ferry-cli", "rsync-new", None),
]


def fnum(x):
    if x is None:
        return "–"
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.2f" % x


def level_name(lvl):
    return "loopback" if lvl == 0 else "RTT %g ms" % lvl


def load(raw_path, meta_path):
    meta = {}
    with open(meta_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "\t" in line:
                k, v = line.split("\t", 1)
                meta[k] = v
    rows = []
    with open(raw_path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 8:
                continue
            rows.append({"level": float(p[0]), "case": p[1], "tool": p[2],
                         "run": p[3], "ms": float(p[4] or 0),
                         "rt": p[5], "rss": p[6], "status": p[7],
                         "extra": p[8] if len(p) > 8 else "",
                         "wire": int(p[9]) if len(p) > 9 and p[9].isdigit() else None,
                         "updown": p[10] if len(p) > 10 and ":" in p[10] else None})
    for r in rows:
        if r["level"] == int(r["level"]):
            r["level"] = int(r["level"])
    return meta, rows


def na_reason(meta, tool, case):
    kind = ("exec" if case in ("exec", "connect") else
            "pull" if case.startswith("p") else None)
    if tool in ("ferry-cli", "ferry-persist"):
        key = "na_ferry_cli_" + (kind or "push")
    else:
        key = "na_ferry_held_" + (kind or "sync")
    return meta.get(key) or meta.get("na_ferry_held") or "not measured"


def summarise(meta, rows):
    cells = {}
    for r in rows:
        key = (r["level"], r["case"], r["tool"])
        c = cells.setdefault(key, {"level": r["level"], "case": r["case"],
                                   "tool": r["tool"], "runs_ms": [],
                                   "rts": [], "rss": [], "failed": 0,
                                   "warmup_ms": [], "na": None,
                                   "extra": [], "wire": [], "updown": [],
                                   "warmup_wire": [], "warmup_rows": [],
                                   "differs": 0})
        if r["status"] == "na":
            c["na"] = na_reason(meta, r["tool"], r["case"])
            continue
        if r["status"] == "differs":
            c["differs"] += 1
        if r["run"].startswith("w"):
            if r["status"] == "0":
                c["warmup_ms"].append(r["ms"])
                c["warmup_rows"].append(r)
                if r["wire"] is not None:
                    c["warmup_wire"].append(r["wire"])
            continue
        if r["status"] != "0":
            c["failed"] += 1
            continue
        if r["wire"] is not None:
            c["wire"].append(r["wire"])
        if r["updown"]:
            c["updown"].append(r["updown"])
        c["runs_ms"].append(r["ms"])
        if r["rt"].isdigit():
            c["rts"].append(int(r["rt"]))
        if r["rss"].isdigit():
            c["rss"].append(int(r["rss"]))
        if r["extra"]:
            c["extra"].append(r["extra"])
    for c in cells.values():
        v = c["runs_ms"]
        c["n"] = len(v)
        c["median"] = statistics.median(v) if v else None
        c["min"] = min(v) if v else None
        c["max"] = max(v) if v else None
        c["round_trips"] = statistics.median(c["rts"]) if c["rts"] else None
        if c["round_trips"] is not None and c["round_trips"] == int(c["round_trips"]):
            c["round_trips"] = int(c["round_trips"])
        c["round_trips_range"] = [min(c["rts"]), max(c["rts"])] if c["rts"] else None
        c["max_rss_kb"] = max(c["rss"]) if c["rss"] else None
        w = c["wire"]
        c["wire_bytes"] = statistics.median(w) if w else None
        c["wire_bytes_range"] = [min(w), max(w)] if w else None
        if c["updown"]:
            ups = [int(x.split(":")[0]) for x in c["updown"]]
            downs = [int(x.split(":")[1]) for x in c["updown"]]
            c["wire_up_down"] = [statistics.median(ups), statistics.median(downs)]
        else:
            c["wire_up_down"] = None
        if c["failed"] and not v and not c["na"]:
            err = meta.get("error_err-%s-%s-%s" % (fmt_level(c["level"]), c["case"], c["tool"]), "")
            c["na"] = "all %d runs failed: %s" % (c["failed"], err[:200] or "see log")
    return cells


SCALE = ("cold10k", "noop10k", "cold100k", "noop100k")
SCALE_TOOLS = ("ferry-held", "ferry-cli", "rsync-new", "rsync-cm", "stat-find")


def tree_files(meta, case):
    t = meta.get("tree" + case[4:], "").split()
    n = dict(zip(t[::2], t[1::2])).get("files")
    return int(n) if n and n.isdigit() else None


def scale_section(cells, levels, meta):
    """The scale cases: the first push (the warm-up round: each tool's first
    push of the case; the held driver is new for each case, so it is the
    first push in its process; in a no-op case it is the cold push into
    the copy) apart from the later ones, round trips, peak RSS, and what
    the held session keeps per file."""
    if not any(cells.get((l, c, t)) for l in levels for c in SCALE for t in SCALE_TOOLS):
        return []
    md = ["## Scale: 10,000 and 100,000 files\n",
          "Each scale case has a held driver of its own, so the held session's first push "
          "(the warm-up round, shown apart) is the first in its process; in a no-op case "
          "the first push is the cold push into the copy. ms: median of the later runs "
          "(min–max); peak RSS: the client process (rsync, ferry CLI) or the held "
          "driver's peak so far in the case.\n",
          "| case | RTT | tool | first push | later runs | first / later | rt (first; later) | peak RSS MiB |",
          "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    checks = []
    for case in SCALE:
        for l in levels:
            for tool in SCALE_TOOLS:
                c = cells.get((l, case, tool))
                if not c or c["median"] is None:
                    continue
                w = c["warmup_rows"][0] if c["warmup_rows"] else None
                first = w["ms"] if w else None
                rts = "%s; %s" % (w["rt"] if w else "–",
                                  c["round_trips"] if c["round_trips"] is not None else "–")
                rss = [int(x["rss"]) for x in c["warmup_rows"] if x["rss"].isdigit()]
                rss += c["rss"]
                md.append("| %s | %s | %s | %s | %s (%s–%s) | %s | %s | %s |" % (
                    SHORT[case], level_name(l), tool, fnum(first), fnum(c["median"]),
                    fnum(c["min"]), fnum(c["max"]),
                    "%.2f×" % (first / c["median"]) if first and case.startswith("cold") else "–",
                    rts if tool.startswith("ferry") else "–",
                    "%.0f" % (max(rss) / 1024.0) if rss else "–"))
            h = cells.get((l, case, "ferry-held"))
            cli = cells.get((l, case, "ferry-cli"))
            if h and h["median"] and h["warmup_rows"] and case.startswith("cold"):
                r = h["warmup_rows"][0]["ms"] / h["median"]
                checks.append("%s, %s: held first push / later = %.2f× (target ≤ 1.2×) %s" % (
                    SHORT[case], level_name(l), r, "✓" if r <= 1.2 else "✗"))
            setup = meta.get("held_open_ms_%s" % l)
            if h and h["median"] and cli and cli["median"] and setup:
                base = h["median"] + float(setup)
                r = cli["median"] / base
                checks.append("%s, %s: CLI / (held + connection set-up %s ms) = %.2f× "
                              "(target ≤ 1.2×) %s" % (SHORT[case], level_name(l), fnum(float(setup)),
                                                       r, "✓" if r <= 1.2 else "✗"))
    md.append("")
    for l in levels:
        for case in ("noop10k", "noop100k"):
            a = meta.get("held_mem_start_%s_%s" % (l, case), "").split()
            b = meta.get("held_mem_end_%s_%s" % (l, case), "").split()
            n = tree_files(meta, case)
            if len(a) == 3 and len(b) == 3 and n:
                per = (int(b[2]) - int(a[2])) / float(n)
                checks.append("%s, %s: held session's heap %.1f → %.1f MiB after a cold and "
                              "%s no-op pushes of %d files: %.0f bytes per file kept "
                              "(target ≤ 256) %s; RSS %.0f MiB, peak %.0f MiB" % (
                                  SHORT[case], level_name(l), int(a[2]) / 1048576.0,
                                  int(b[2]) / 1048576.0, meta.get("scale_runs", "?"), n, per,
                                  "✓" if per <= 256 else "✗", int(b[1]) / 1024.0,
                                  int(b[0]) / 1024.0))
    if checks:
        md += ["- " + x for x in checks] + [""]
    return md


def fmt_level(lvl):
    return str(lvl)


def cell_text(c, big_mib):
    if c is None:
        return ""
    if c["median"] is None:
        return "n/a"
    t = "%s (%s–%s)" % (fnum(c["median"]), fnum(c["min"]), fnum(c["max"]))
    if c["case"] == "big":
        t += " · %.0f MiB/s" % (big_mib / (c["median"] / 1000.0))
    if c.get("wire_bytes") is not None:
        t += " (%s MiB on the wire)" % fnum(c["wire_bytes"] / 1048576.0)
    if c["round_trips"] is not None:
        rr = c["round_trips_range"]
        t += " · %s rt" % (c["round_trips"] if rr[0] == rr[1] else "%s–%s" % tuple(rr))
    if c["differs"]:
        t += " · **%d copies differ**" % c["differs"]
    elif c["failed"]:
        t += " · %d failed" % c["failed"]
    return t


def ratios(cells, levels):
    out = []
    for case, f, p, target in PAIRS:
        for lvl in levels:
            fc, pc = cells.get((lvl, case, f)), cells.get((lvl, case, p))
            if not fc or not pc:
                continue
            item = {"case": case, "ferry": f, "peer": p, "level": lvl,
                    "ratio": None, "target": None, "met": None}
            if target:
                item["target"] = target(1.0, {"median": 0, "round_trips": 0}, {}, lvl)[1]
            if fc["median"] is not None and pc["median"] is not None and pc["median"] > 0:
                r = fc["median"] / pc["median"]
                item["ratio"] = r
                if target:
                    met, txt = target(r, fc, pc, lvl)
                    item["met"], item["target"] = met, txt
            elif fc.get("na"):
                item["na"] = fc["na"]
            out.append(item)
    return out


def byte_ratios(cells, levels):
    out = []
    for case, f, p, target in BYTE_PAIRS:
        for lvl in levels:
            fc, pc = cells.get((lvl, case, f)), cells.get((lvl, case, p))
            if not fc or not pc:
                continue
            item = {"case": case, "ferry": f, "peer": p, "level": lvl,
                    "metric": "wire_bytes", "ratio": None, "met": None,
                    "target": target(1.0, {}, {}, lvl)[1] if target else None}
            fb, pb = fc.get("wire_bytes"), pc.get("wire_bytes")
            if fb is not None and pb:
                item["ratio"] = fb / pb
                if target:
                    item["met"], item["target"] = target(item["ratio"], fc, pc, lvl)
            elif fc.get("na"):
                item["na"] = fc["na"]
            out.append(item)
    return out


def write_plot(cells, levels, out_png, meta):
    base = out_png[:-4]
    dat_files = []
    for lvl in levels:
        path = "%s-L%s.dat" % (base, lvl)
        with open(path, "w") as f:
            f.write("# case " + " ".join('"%s" lo hi' % s[0] for s in SERIES) + "\n")
            for case, _ in CASES:
                if not any(k[0] == lvl and k[1] == case for k in cells):
                    continue
                vals = []
                for _, tools, _ in SERIES:
                    c = next((cells[k] for k in cells if k[0] == lvl and k[1] == case
                              and k[2] in tools and cells[k]["median"] is not None), None)
                    if c:
                        vals += ["%.3f" % max(c["median"], 0.01), "%.3f" % max(c["min"], 0.01),
                                 "%.3f" % max(c["max"], 0.01)]
                    else:
                        vals += ["?", "?", "?"]
                f.write('"%s" %s\n' % (SHORT[case], " ".join(vals)))
        dat_files.append((lvl, path))
    n = len(dat_files)
    gp = "%s.gp" % base
    with open(gp, "w") as g:
        g.write('set terminal pngcairo size 1500,%d font ",10"\n' % (420 * n + 40))
        g.write('set output "%s"\n' % out_png)
        g.write('set datafile missing "?"\n')
        g.write("set style data histogram\n")
        g.write("set style histogram errorbars gap 1 lw 1\n")
        g.write("set style fill solid 0.85 border -1\n")
        g.write("set logscale y\nset yrange [0.5:*]\n")
        g.write('set ylabel "ms (median, bars: min–max; log scale)"\n')
        g.write("set grid ytics\nset key outside right top vertical\n")
        g.write('set multiplot layout %d,1 title "ferry vs rsync/ssh — %s — %s"\n' % (
            n, meta.get("date", ""), meta.get("remote_fs", "").split(" (")[0]))
        for lvl, path in dat_files:
            g.write('set title "%s"\n' % level_name(lvl))
            parts = []
            for i, (name, _, color) in enumerate(SERIES):
                col = 2 + 3 * i
                parts.append("'%s' using %d:%d:%d%s lc rgb \"%s\" title \"%s\"" % (
                    path, col, col + 1, col + 2, ":xtic(1)" if i == 0 else "", color, name))
            g.write("plot " + ", \\\n     ".join(parts) + "\n")
        g.write("unset multiplot\n")
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write("report: gnuplot failed: %s\n" % r.stderr[-800:])
        return False
    for _, path in dat_files:
        os.unlink(path)
    os.unlink(gp)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stamp", required=True)
    a = ap.parse_args()
    meta, rows = load(a.raw, a.meta)
    if meta.get("tree_depth", "").isdigit():
        DEPTH["d"] = int(meta["tree_depth"])
    cells = summarise(meta, rows)
    levels = sorted({k[0] for k in cells})
    big_mib = float(meta.get("big_mib", 256))
    CASE_LABEL["big"] = "%s MiB file" % meta.get("big_mib", "256")
    CASE_LABEL["delta"] = "1 MiB changed in a %s MiB file" % meta.get("delta_mib", "512")
    rat = ratios(cells, levels)
    brat = byte_ratios(cells, levels)
    base = os.path.join(a.out, "bench-%s" % a.stamp)
    png_ok = write_plot(cells, levels, base + ".png", meta)

    md = []
    md.append("# ferry benchmark — %s\n" % meta.get("date", a.stamp))
    md.append("- Machine: %s" % meta.get("machine", "?"))
    md.append("- Tools: %s; %s; libssh2 %s; ferry at `%s`" % (
        meta.get("ssh", "?"), meta.get("rsync", "?"), meta.get("libssh2", "?"),
        meta.get("ferry_commit", "?")))
    t = meta.get("tree", "").split()
    tree = dict(zip(t[::2], t[1::2])) if t else {}
    if tree:
        md.append("- Tree (bench/gentree, seed 1): %s files in %s directories, %.2f MB, "
                  "median %s B (%s B – %s B), depth ≤ %s, incl. 3 owner-only credential files" % (
                      tree.get("files"), tree.get("dirs"), int(tree.get("bytes", 0)) / 1e6,
                      tree.get("median"), tree.get("min"), tree.get("max"), tree.get("maxdepth")))
    for k in ("10k", "100k"):
        if "tree" + k in meta:
            t = meta["tree" + k].split()
            t = dict(zip(t[::2], t[1::2]))
            md.append("- %s tree (seed 2): %s files in %s directories, %.0f MB" % (
                k, t.get("files"), t.get("dirs"), int(t.get("bytes", 0)) / 1e6))
    md.append("- Big file: %s MiB of PRNG bytes (incompressible), a cold upload each run; "
              "MiB/s counts the whole command, connection setup included" % meta.get("big_mib", "256"))
    md.append("- Remote: private sshd on 127.0.0.1 (tests/sshd.sh), destination on a %s" %
              meta.get("remote_fs", "?"))
    md.append("- Login shell: root's `~/.bashrc` here costs about %s ms per command "
              "(pyenv init; measured `bash -c '. ~/.bashrc'`: %s ms this run); the bench sshd "
              "sets `SetEnv SHLVL=1`, so bash does not source it for any tool — ssh, rsync and "
              "ferry alike." % ("100", fnum(float(meta.get("bashrc_ms", "0") or 0))))
    if meta.get("bash_login_ms"):
        md.append("- Login shell for ferry's session shell: ferry starts each session with one "
                  "`bash -l` (DESIGN.md: the login-environment snapshot); a login shell reads "
                  "`~/.profile`, which on Debian sources `~/.bashrc` regardless of SHLVL. Here "
                  "`bash -l -c true` takes %s ms against %s ms for `bash -c true` — a cost that "
                  "ferry's first command on a new session pays and `ssh true` does not." % (
                      fnum(float(meta["bash_login_ms"])), fnum(float(meta.get("bash_plain_ms", "0")))))
    sim = meta.get("sim")
    if sim == "wire":
        md.append("- Round trips: loopback is the direct connection to 127.0.0.1. Other RTTs: "
                  "`bench/wire` — every IP packet delayed RTT/2 each way between two TUN "
                  "devices, the server side in its own network namespace with its own sshd "
                  "(same config) — so both TCP stacks see a real path (handshake, Nagle, "
                  "delayed ACKs, slow start, windows). No `tc netem` on this kernel.")
    elif sim == "relay":
        md.append("- Round trips: loopback is the direct connection. Other RTTs: `bench/relay`, "
                  "a userspace TCP relay in front of sshd delaying each direction's bytes by "
                  "RTT/2 (TCP handshake modelled). It terminates TCP locally on both sides, so "
                  "TCP-level stalls of a real path (Nagle against delayed ACK) are not "
                  "reproduced: new ssh connections cost about 4 RTT less than over a "
                  "packet-delayed path.")
    else:
        md.append("- Round trips: loopback only.")
    md.append("- Method: %s warm-up rounds, then %s rounds (big file: %s) alternating the tools "
              "round-robin (A B C A B C …); median (min–max) in ms; `rt` = wire round trips "
              "ferry reported (`--json` `round_trips`, or ferry_sync_report); every push is "
              "checked against the source after each run (untimed)." % (
                  meta.get("warm"), meta.get("runs"), meta.get("big_runs", meta.get("runs"))))
    if any(k[1] == "delta" for k in cells):
        md.append("- Delta case: a %s MiB file of PRNG bytes, pushed once (cold, the warm-up, "
                  "not counted) by each tool to its own destination; each of %s measured "
                  "rounds first overwrites 1 MiB near the middle of each tool's source copy "
                  "with fresh PRNG bytes (`gentree patch`, a new offset and new bytes each "
                  "round, the same for every tool in a round; size kept, mtime bumped), then "
                  "times that tool's push; every copy is compared byte for byte (`cmp`) with "
                  "its source after each push, and a difference stops the case." % (
                      meta.get("delta_mib", "512"), meta.get("delta_runs", "?")))
    methods = {k[len("wire_bytes_method_"):]: v for k, v in meta.items()
               if k.startswith("wire_bytes_method_")}
    if methods and any(c.get("wire_bytes") is not None for c in cells.values()):
        lo_own = meta.get("netns", "").startswith("own")
        lo_note = ("; the bench runs in a network namespace of its own, so `lo` carries "
                   "only its traffic" if lo_own else
                   "; **`lo` is the machine's, shared with whatever else runs here**")
        how = {"lo": "`lo`'s tx bytes (each loopback packet counted once; both directions)" + lo_note,
               "tun": "the TUN device of the wire on the client side (tx: client→server, "
                      "rx: server→client), used by nothing but the bench",
               "relay": "`lo`'s tx bytes / 2 (the relay carries each byte over two "
                        "loopback connections)" + lo_note}
        parts = []
        for lvl in levels:
            m = methods.get(str(lvl), "").split()
            if m:
                idle = meta.get("wire_idle_bytes_2s_%s" % lvl)
                parts.append("%s: %s%s" % (level_name(lvl), how.get(m[0], m[0]),
                                           "; idle before the case: %s B in 2 s" % idle
                                           if idle is not None else ""))
        md.append("- MiB on the wire (big, delta): the interface counters (`/proc/net/dev`) "
                  "of the path the bench's ssh traffic takes, read just before and just "
                  "after each push while the bench runs nothing else — the same for every "
                  "tool: IP packets with their TCP/IP headers, both directions, ACKs and a "
                  "new connection's ssh handshake included. %s." % "; ".join(parts))
    for lvl in levels:
        if meta.get("delta_failed_%s" % lvl):
            md.append("- **DELTA CASE FAILED at %s: %s**" % (level_name(lvl),
                                                             meta["delta_failed_%s" % lvl]))
    if meta.get("mismatches"):
        md.append("- **%s runs left a remote copy that differs from the source** (see the log)" %
                  meta["mismatches"])
    md.append("- Duration: %s s; load average (1/5/15 min) at start %s, at end %s "
              "(other work on this machine shares its 2 CPUs)\n" % (
                  meta.get("duration_s", "?"), meta.get("load_start", "?"), meta.get("load_end", "?")))

    md.append("## Round-trip simulation check\n")
    md.append("A probe server that sends one byte on accept (as sshd sends its banner) and "
              "then echoes; medians of 20 connections (ms). Over a real path a connect "
              "costs 1 RTT, the server's first byte arrives at 2 RTT (SYN, SYN-ACK, then "
              "ACK + first byte), and each echo costs 1 RTT.\n")
    md.append("| configured RTT | relay: echo | relay: connect → first byte | "
              "wire: connect() | wire: echo | wire: connect → first byte | "
              "connect → sshd banner (as measured) |")
    md.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lvl in levels:
        def kv(key):
            v = meta.get(key, "").split()
            return dict(zip(v[::2], v[1::2]))
        pr, wp, bn = kv("relay_probe_%s" % lvl), kv("wire_probe_%s" % lvl), kv("sshd_banner_%s" % lvl)
        md.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            level_name(lvl), pr.get("echo_ms", "–"), pr.get("first_byte_ms", "–"),
            wp.get("connect_ms", "–"), wp.get("echo_ms", "–"), wp.get("first_byte_ms", "–"),
            bn.get("first_byte_ms", "–")))
    md.append("")

    md.append("## Results (ms: median (min–max) · round trips)\n")
    md.append("| case | tool | " + " | ".join(level_name(l) for l in levels) + " |")
    md.append("| --- | --- | " + " | ".join("---:" for _ in levels) + " |")
    notes = {}
    for case, _ in CASES:
        clabel = CASE_LABEL[case]
        for tool in TOOL_ORDER:
            cs = [cells.get((l, case, tool)) for l in levels]
            if not any(cs):
                continue
            texts = []
            for c in cs:
                if c and c["median"] is None and c["na"]:
                    notes.setdefault(c["na"], set()).add(tool)
                texts.append(cell_text(c, big_mib))
            md.append("| %s | %s | %s |" % (clabel, TOOLS[tool], " | ".join(texts)))
    md.append("")
    if notes:
        md.append("Cells marked n/a:\n")
        for reason, tools in notes.items():
            md.append("- %s: %s" % (", ".join(sorted(tools)), reason))
        md.append("")

    md.append("## ferry / peer (ratio of medians; < 1 means ferry is faster)\n")
    md.append("| case | ferry | peer | " + " | ".join(level_name(l) for l in levels) +
              " | DESIGN.md target |")
    md.append("| --- | --- | --- | " + " | ".join("---:" for _ in levels) + " | --- |")
    for case, f, p, target in PAIRS:
        items = {i["level"]: i for i in rat if i["case"] == case and i["ferry"] == f and i["peer"] == p}
        if not items:
            continue
        tx = []
        ttxt = ""
        for l in levels:
            i = items.get(l)
            if not i:
                tx.append("")
                continue
            if i["target"] and not i["target"].startswith("(no target"):
                ttxt = i["target"]
            elif not ttxt:
                ttxt = i["target"] or ""
            if i["ratio"] is None:
                tx.append("n/a")
            else:
                mark = "" if i["met"] is None else (" ✓" if i["met"] else " ✗")
                tx.append("%.2f×%s" % (i["ratio"], mark))
        md.append("| %s | %s | %s | %s | %s |" % (CASE_LABEL[case], f, p, " | ".join(tx), ttxt or "–"))
    for case, f, p, target in BYTE_PAIRS:
        items = {i["level"]: i for i in brat if i["case"] == case and i["ferry"] == f and i["peer"] == p}
        if not items:
            continue
        tx = []
        for l in levels:
            i = items.get(l)
            if not i:
                tx.append("")
            elif i["ratio"] is None:
                tx.append("n/a")
            else:
                mark = "" if i["met"] is None else (" ✓" if i["met"] else " ✗")
                tx.append("%.2f×%s" % (i["ratio"], mark))
        md.append("| %s — **bytes on the wire** | %s | %s | %s | %s |" % (
            CASE_LABEL[case], f, p, " | ".join(tx),
            next((i["target"] for i in items.values() if i["target"]), None) or "–"))
    md.append("")

    md += scale_section(cells, levels, meta)

    # Where ferry's time goes: medians of the phase times ferry reports.
    phase_rows = []
    for case, _ in CASES:
        clabel = CASE_LABEL[case]
        for tool in ("ferry-held", "ferry-cli", "ferry-persist"):
            for l in levels:
                c = cells.get((l, case, tool))
                if not c or c["median"] is None or not c["extra"]:
                    continue
                kv = {}
                for e in c["extra"]:
                    for pair in e.split():
                        if "=" in pair:
                            k, v = pair.split("=", 1)
                            try:
                                kv.setdefault(k, []).append(float(v))
                            except ValueError:
                                pass
                med = {k: statistics.median(v) for k, v in kv.items() if v}
                rt = c["round_trips"]
                phase_rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    clabel, tool, level_name(l), fnum(c["median"]),
                    fnum(med.get("scan")), fnum(med.get("plan")), fnum(med.get("transfer")),
                    fnum(med.get("manifest")),
                    "%s × %g = %s" % (rt, l, fnum(rt * l)) if rt is not None and l else (rt if rt is not None else "–"),
                    "%d/%d/%d" % (med.get("up", 0), med.get("upd", 0), med.get("del", 0))
                    if "up" in med else "–"))
    if phase_rows:
        md.append("## Where ferry's time goes (medians, ms, as ferry reports them)\n")
        md.append("Wall = the whole call (held) or the whole process (CLI); the phases are "
                  "ferry's own `time_ms`; round trips × RTT is the least network wait.\n")
        md.append("| case | ferry | RTT | wall | scan | plan | transfer | manifest | "
                  "round trips × RTT | uploaded/updated/deleted |")
        md.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        md += phase_rows
        md.append("")
    small = cells.get((0, "noop", "ferry-cli"))
    large = cells.get((0, "noop100k", "ferry-cli"))
    if small and large and small["max_rss_kb"] and large["max_rss_kb"]:
        t = meta.get("tree100k", "").split()
        nfiles = int(dict(zip(t[::2], t[1::2])).get("files", 100000))
        per = (large["max_rss_kb"] - small["max_rss_kb"]) * 1024.0 / max(nfiles - 403, 1)
        md.append("Memory, ferry CLI no-op: peak RSS %d KiB for 403 files, %d KiB for %d files: "
                  "%.0f bytes per file (DESIGN.md target ≤ 256) %s\n" % (
                      small["max_rss_kb"], large["max_rss_kb"], nfiles, per,
                      "✓" if per <= 256 else "✗"))

    md.append("## Peers against DESIGN.md \"Numbers to beat\" (medians, ms)\n")
    md.append("| case | peer | " + " | ".join("%s here / DESIGN" % level_name(l) for l in levels) + " |")
    md.append("| --- | --- | " + " | ".join("---:" for _ in levels) + " |")
    for (case, tool), ref in DESIGN.items():
        tx = []
        for l in levels:
            c = cells.get((l, case, tool))
            here = fnum(c["median"]) if c and c["median"] is not None else "–"
            tx.append("%s / %s" % (here, fnum(ref[l]) if l in ref else "–"))
        md.append("| %s | %s | %s |" % (CASE_LABEL[case], tool, " | ".join(tx)))
    tx = []
    for l in levels:
        c = cells.get((l, "big", "ssh-cat"))
        here = "%.0f" % (big_mib / (c["median"] / 1000.0)) if c and c["median"] else "–"
        tx.append("%s / %s MiB/s" % (here, DESIGN_MIBS.get(l, "–")))
    md.append("| %s | ssh cat (throughput) | %s |" % (CASE_LABEL["big"], " | ".join(tx)))
    md.append("")
    if png_ok:
        md.append("![latency per case and round trip](bench-%s.png)\n" % a.stamp)

    with open(base + ".md", "w") as f:
        f.write("\n".join(md))
    doc = {"meta": meta, "levels_ms": levels,
           "cases": {k: v for k, v in CASES}, "tools": TOOLS,
           "results": [
               {k: c[k] for k in ("level", "case", "tool", "n", "median", "min", "max",
                                  "round_trips", "round_trips_range", "max_rss_kb",
                                  "failed", "na", "runs_ms", "warmup_ms", "extra",
                                  "wire_bytes", "wire_bytes_range", "wire_up_down",
                                  "wire", "warmup_wire", "differs")}
               for c in sorted(cells.values(), key=lambda c: (c["level"], c["case"], c["tool"]))],
           "ratios": rat, "byte_ratios": brat}
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    if os.path.abspath(a.raw) != os.path.abspath(base + ".raw.tsv"):
        shutil.copy(a.raw, base + ".raw.tsv")
    if os.path.abspath(a.meta) != os.path.abspath(base + ".meta.tsv"):
        shutil.copy(a.meta, base + ".meta.tsv")
    for ext in (".md", ".json", ".png", ".raw.tsv", ".meta.tsv"):
        if os.path.exists(base + ext):
            shutil.copy(base + ext, os.path.join(a.out, "latest" + ext))
    # latest.md must point at latest.png
    lm = os.path.join(a.out, "latest.md")
    with open(lm) as f:
        s = f.read()
    with open(lm, "w") as f:
        f.write(s.replace("(bench-%s.png)" % a.stamp, "(latest.png)"))
    print("\n".join(md))


if __name__ == "__main__":
    main()
