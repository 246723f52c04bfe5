"""Benchmark: a well-behaved app's syscall latency before and during each attack.

Claim under test (issue "Kernel integrity against hostile applications"): one process's
behaviour cannot deny service to another; for each attack of tests/system/attacks.py,
the p99 of a well-behaved app's syscalls while the attack runs is at most 3 x its p99
with no attack, measured in the same run.

How: one ephemeral kernel booted in this process (as the system tests do). For each
attack and each round, the well-behaved app runs alone (baseline), then again while a
hostile app attacks (under the limits an operator gives an untrusted app: 0.5 CPU,
256 MiB, 32 pids). It measures every ``getpid`` round trip (the null syscall) and every
``fs.File.open`` + read 4 KiB + close through a capability, with ``perf_counter_ns``
inside the sandbox. Baselines are taken right before each attack so that drift of the
machine is shared. The ratio reported is p99(during) / p99(baseline) per round; the
verdict uses the median over rounds.

Run: ``.venv/bin/python bench/isolation.py [--quick] [--rounds N] [--only NAME]``;
writes bench/results/isolation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.system import attacks

from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel

RESULTS = Path(__file__).resolve().parent / "results" / "isolation.json"
TARGET = 3.0


def _summary(sample: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in ("getpid_us", "open_read_us"):
        values = sample[key]
        out[f"{key[:-3]}_p50_us"] = round(attacks.percentile(values, 0.50), 2)
        out[f"{key[:-3]}_p99_us"] = round(attacks.percentile(values, 0.99), 2)
    out["failures"] = len(sample["failures"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls, one round")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", action="append", help="run only this attack (repeatable)")
    opts = ap.parse_args()
    calls, opens = (500, 50) if opts.quick else (3000, 300)
    rounds = opts.rounds or (1 if opts.quick else 3)
    names = opts.only or sorted(attacks.ATTACKS)
    unknown = set(names) - set(attacks.ATTACKS)
    if unknown:
        print(f"isolation: unknown attack(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="exo-isolation-")) / "root"
    kernel = Kernel(KernelConfig(root=root), ephemeral=True)
    kernel.boot()
    results: dict[str, Any] = {}
    try:
        attacks.prepare(kernel)
        attacks.good_app(kernel, 50, 5)  # warm: spawn path, file servers
        for name in names:
            per_round = []
            for r in range(rounds):
                base = attacks.good_app(kernel, calls, opens)
                hostile = attacks.start_attack(kernel, name)
                try:
                    t0 = time.perf_counter()
                    during = attacks.good_app(kernel, calls, opens)
                    seconds = time.perf_counter() - t0
                    alive = hostile.status is None
                finally:
                    attacks.stop_attack(kernel, hostile)
                b, d = _summary(base), _summary(during)
                row = {"round": r, "baseline": b, "during": d,
                       "attacker_still_running": alive, "during_seconds": round(seconds, 2),
                       "getpid_p99_ratio": round(d["getpid_p99_us"] / b["getpid_p99_us"], 2),
                       "open_read_p99_ratio": round(d["open_read_p99_us"]
                                                    / b["open_read_p99_us"], 2)}
                per_round.append(row)
                print(f"{name:20s} round {r}: getpid p99 {b['getpid_p99_us']:8.1f} -> "
                      f"{d['getpid_p99_us']:8.1f} us (x{row['getpid_p99_ratio']}), "
                      f"open+read p99 {b['open_read_p99_us']:8.1f} -> "
                      f"{d['open_read_p99_us']:8.1f} us (x{row['open_read_p99_ratio']}), "
                      f"failures {d['failures']}", flush=True)
            g = statistics.median(r["getpid_p99_ratio"] for r in per_round)
            o = statistics.median(r["open_read_p99_ratio"] for r in per_round)
            results[name] = {"getpid_p99_ratio": g, "open_read_p99_ratio": o,
                             "failures": sum(r["during"]["failures"] for r in per_round),
                             "met": g <= TARGET and o <= TARGET
                             and all(r["during"]["failures"] == 0 for r in per_round),
                             "per_round": per_round}
    finally:
        kernel.shutdown()
    out = {"claim": f"p99 during an attack <= {TARGET} x p99 before, same run",
           "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "python": platform.python_version()},
           "calls": calls, "opens": opens, "rounds": rounds, "attacks": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:20s} getpid x{r['getpid_p99_ratio']:<6} open+read "
              f"x{r['open_read_p99_ratio']:<6} {'met' if r['met'] else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
