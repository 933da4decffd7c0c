#!/usr/bin/env python3
"""Measures processes side by side, for tests/bench/footprint.sh.

    footprint_sample.py --warmup 15 --duration 60 --interval 5 NAME=PID ...

For each NAME: the process PID and all its descendants (found through
/proc/*/stat's ppid on every sample, so forked workers count), sampled every
0.5 s during DURATION seconds after WARMUP:
  steady RSS  median over the samples of the tree's summed VmRSS
  peak RSS    the tree's summed VmHWM at the end (each process's own peak;
              catches bursts between samples), or the largest sample if higher
  CPU/collection  schedstat CPU time (ns, /proc/PID/task/*/schedstat, first
              field, summed over every thread of the tree) used during the
              window, divided by DURATION / INTERVAL collections.
Prints one JSON object per line.

The CPU of a thread or child that exits inside the window is lost from the
sum (schedstat belongs to live tasks); none of the measured daemons spawns
short-lived workers in steady state, which the printed task counts show.
"""

import argparse
import json
import os
import statistics
import sys
import time


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: split after the last ')'.
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(root, kids):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ns(pid):
    total, tasks = 0, 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                    tasks += 1
            except OSError:
                pass
    except OSError:
        pass
    return total, tasks


def snapshot(roots):
    kids = children_map()
    snap = {}
    for name, root in roots.items():
        pids = tree(root, kids)
        cpu, tasks = 0, 0
        for pid in pids:
            c, t = cpu_ns(pid)
            cpu += c
            tasks += t
        snap[name] = {
            "rss_kib": sum(status_kib(p, "VmRSS") for p in pids),
            "anon_kib": sum(status_kib(p, "RssAnon") for p in pids),
            "hwm_kib": sum(status_kib(p, "VmHWM") for p in pids),
            "cpu_ns": cpu,
            "processes": len(pids),
            "threads": tasks,
        }
    return snap


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--interval", type=float, default=5)
    parser.add_argument("--period", type=float, default=0.5)
    parser.add_argument("procs", nargs="+", help="NAME=PID")
    args = parser.parse_args()
    roots = {}
    for item in args.procs:
        name, pid = item.split("=", 1)
        roots[name] = int(pid)
    time.sleep(args.warmup)
    start = snapshot(roots)
    rss = {name: [] for name in roots}
    anon = {name: [] for name in roots}
    peak = {name: 0 for name in roots}
    t0 = time.monotonic()
    while True:
        snap = snapshot(roots)
        for name, s in snap.items():
            rss[name].append(s["rss_kib"])
            anon[name].append(s["anon_kib"])
            peak[name] = max(peak[name], s["rss_kib"], s["hwm_kib"])
        elapsed = time.monotonic() - t0
        if elapsed >= args.duration:
            break
        time.sleep(min(args.period, args.duration - elapsed))
    end = snap
    collections = args.duration / args.interval
    for name in roots:
        if end[name]["processes"] == 0 or not any(rss[name]):
            print(json.dumps({"name": name, "error": "process gone"}))
            continue
        used = end[name]["cpu_ns"] - start[name]["cpu_ns"]
        print(
            json.dumps(
                {
                    "name": name,
                    "steady_rss_mib": round(statistics.median(rss[name]) / 1024, 2),
                    "peak_rss_mib": round(peak[name] / 1024, 2),
                    # Private memory, without the shared code pages counted in RSS.
                    "steady_anon_mib": round(statistics.median(anon[name]) / 1024, 2),
                    "cpu_ms_per_collection": round(used / collections / 1e6, 3),
                    "processes": end[name]["processes"],
                    "threads": end[name]["threads"],
                }
            )
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
