"""Benchmark: the 56-byte round trip with the two processes pinned to different CPUs.

Why pinned: `bench/ipc.py` lets the scheduler place its processes, which on a busy
2-CPU machine puts both on one CPU (its C ping-pong limit then reads ~0.1 µs instead of
~0.4 µs) and every transport pays context switches. Pinning measures what the code
costs: here, what GIL-free waits (the waiter releases the GIL before it spins) add to a
round trip. The peer, `os.pipe`, is measured in the same run, pinned the same way.

``--baseline SRC`` (repeatable) also measures another source tree's build of the same
code (e.g. an earlier commit's ``src/`` with its extensions compiled in place), the
rounds interleaved with this tree's. Writes bench/results/ipc_pinned_rtt.json.

    .venv/bin/python bench/ipc_pinned_rtt.py [--rounds 6] [--baseline /tmp/old/src]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ipc_pinned_rtt.json"

CHILD = r"""
import json, os, statistics, sys, time
N, WARM = 20000, 2000

def fusion():
    from exo.ipc import FusionRing
    a_p, a_c = FusionRing.pair(64); b_p, b_c = FusionRing.pair(64)
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {1}); a_p.detach(); b_c.detach()
        for _ in range(N + WARM):
            b_p.send(a_c.recv())
        os._exit(0)
    a_c.detach(); b_p.detach()
    send, recv, msg, ts = a_p.send, b_c.recv, bytes(56), []
    for _ in range(N + WARM):
        t = time.perf_counter_ns(); send(msg); recv(); ts.append(time.perf_counter_ns() - t)
    os.waitpid(pid, 0)
    for r in (a_p, b_c):
        r.close()
    return ts[WARM:]

def pipe():
    r1, w1 = os.pipe(); r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {1})
        for _ in range(N + WARM):
            os.write(w2, os.read(r1, 56))
        os._exit(0)
    msg, ts = bytes(56), []
    for _ in range(N + WARM):
        t = time.perf_counter_ns(); os.write(w1, msg); os.read(r2, 56)
        ts.append(time.perf_counter_ns() - t)
    os.waitpid(pid, 0)
    return ts[WARM:]

os.sched_setaffinity(0, {0})
out = {}
for name, fn in (("fusion_ring", fusion), ("os.pipe", pipe)):
    ts = fn()
    out[name] = round(statistics.median(ts) / 1000, 3)
print(json.dumps(out))
"""


def run(src: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--baseline", type=Path, action="append", default=[])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("needs two CPUs", file=sys.stderr)
        return 1
    # Results name trees by label, never by this machine's paths.
    trees = {"this": HERE.parent / "src",
             **{f"baseline-{i}" if len(args.baseline) > 1 else "baseline": b
                for i, b in enumerate(args.baseline, 1)}}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        order = list(trees.items())
        if r % 2:
            order.reverse()  # alternate who goes first
        for name, src in order:
            rounds[name].append(run(src))
            print(f"round {r + 1}: {name}: {rounds[name][-1]}", flush=True)
    summary = {}
    for name, per in rounds.items():
        f = statistics.median(x["fusion_ring"] for x in per)
        p = statistics.median(x["os.pipe"] for x in per)
        summary[name] = {"fusion_ring_rtt_median_us": f, "os_pipe_rtt_median_us": p,
                         "pipe_over_fusion": round(p / f, 2)}
    result = {
        "what": "56-byte round trip, parent on CPU 0, child on CPU 1, 20,000 round trips "
                "after 2,000 warm-up, median per round; medians over rounds",
        "trees": {name: ("this checkout's src/" if name == "this"
                         else "another checkout's src/ (--baseline)") for name in trees},
        "summary": summary,
        "rounds": rounds,
        "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Linux {platform.release()}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
