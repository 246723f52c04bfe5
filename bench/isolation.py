"""Benchmark: a well-behaved app's syscall latency before and during each attack.

Claim under test (issue "Kernel integrity against hostile applications"): one process's
behaviour cannot deny service to another; for each attack of tests/system/attacks.py,
the p99 of a well-behaved app's syscalls while the attack runs is at most 3 x its p99
with no attack, measured in the same run.

How: one ephemeral kernel booted in this process (as the system tests do). For each
attack, several rounds; each round runs the well-behaved app alone (baseline) and again
while a hostile app attacks (under the limits an operator gives an untrusted app: 0.5
CPU, 256 MiB, 32 pids), in alternating order (baseline first in even rounds, attack first
in odd ones), so that drift of this shared machine falls on both sides alike. The app
times every ``getpid`` round trip (the null syscall) and every ``fs.File.open`` + read
4 KiB + close through a capability with ``perf_counter_ns`` inside its sandbox.

The well-behaved app is *well-behaved*: it starts one open every ``PACE_US`` (2 ms).
An open + read + close is three round trips through the kernel's FUSE server, ~200 us
of kernel CPU, so paced it asks for ~10 % of a CPU of kernel time, well within the
25 % share (exo.kernel.fairshare.RATE) that any process keeps while others use the
kernel. Its getpid calls come 200 back to back (~0.6 ms) then 3 ms asleep (~17 % of a
CPU; 5,000 back to back cost more than the 10 ms burst and were throttled too; a sleep
every 200, not 50, keeps the first call after each, a wake-up, under 1 % of the
samples). Opening back to back, it would demand ~100 % of a CPU: then, as soon as the
attacker is active too, the victim itself is over its share and the policy throttles
it, and its tail is the policy's doing rather than the attacker's. That figure is not
hidden: in each phase a second instance of the app (a process of its own, so the
policy's figures are its own) then opens as many times back to back, reported as the
``open_read_saturating`` column (not part of the verdict). For both, each phase records
what the fair-share policy made the app wait (syscall pauses, file requests put aside:
exo.kernel.fairshare.FairShare.final): this is how the diagnosis above was checked.

Statistics: a p99 of a few hundred samples is the third-worst sample, i.e. noise. So
each phase takes thousands of getpid calls and a thousand opens, the ratio reported is
p99(during) / p99(baseline) *per round*, and the verdict uses the median of those ratios
over the rounds (with their spread, and the ratio of the pooled samples beside it). Every
sample is kept in bench/results/isolation_raw.json.gz; the machine's load average before
and after is recorded, because other sessions run on it too.

Run: ``.venv/bin/python bench/isolation.py [--quick] [--rounds N] [--only NAME]``;
writes bench/results/isolation.json (and isolation_raw.json.gz).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.system import attacks

from exo.kernel.config import KernelConfig
from exo.kernel.fairshare import RATE
from exo.kernel.kernel import Kernel

RESULTS = Path(__file__).resolve().parent / "results" / "isolation.json"
RAW = RESULTS.with_name("isolation_raw.json.gz")
TARGET = 3.0
KEYS = ("getpid", "open_read")  # the verdict
REPORTED = (*KEYS, "open_read_saturating")  # reported beside it
#: Between the starts of two opens of the well-behaved app (see the docstring).
PACE_US = 2000


def _summary(sample: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in REPORTED:
        values = sample[f"{key}_us"]
        out[f"{key}_p50_us"] = round(attacks.percentile(values, 0.50), 2)
        out[f"{key}_p99_us"] = round(attacks.percentile(values, 0.99), 2)
    out["failures"] = len(sample["failures"])
    for key, suffix in (("fair_share", ""), ("fair_share_saturating", "_saturating")):
        fair = sample.get(key) or {}
        out[f"fair_share_pauses{suffix}"] = fair.get("pauses", 0)
        out[f"fair_share_paused_ms{suffix}"] = round(1000 * fair.get("paused_s", 0.0), 1)
        out[f"fair_share_deferred{suffix}"] = fair.get("deferred", 0)
    return out


def _good(kernel: Kernel, calls: int, opens: int) -> dict[str, Any]:
    """The paced app, then the saturating one: their samples and policy figures."""
    sample = attacks.good_app(kernel, calls, opens, pace_us=PACE_US)
    saturating = attacks.good_app(kernel, 0, opens)
    sample["open_read_saturating_us"] = saturating["open_read_us"]
    sample["failures"] += saturating["failures"]
    sample["fair_share_saturating"] = saturating["fair_share"]
    return sample


def _phase(kernel: Kernel, name: str | None, calls: int, opens: int
           ) -> tuple[dict[str, Any], bool, float]:
    """One run of the well-behaved app, alone (``name`` None) or beside attack ``name``."""
    if name is None:
        t0 = time.perf_counter()
        return _good(kernel, calls, opens), True, time.perf_counter() - t0
    hostile = attacks.start_attack(kernel, name)
    try:
        t0 = time.perf_counter()
        sample = _good(kernel, calls, opens)
        seconds = time.perf_counter() - t0
        alive = hostile.status is None
    finally:
        attacks.stop_attack(kernel, hostile)
    return sample, alive, seconds


def _attack(kernel: Kernel, name: str, rounds: int, calls: int, opens: int,
            raw: list[dict[str, Any]]) -> dict[str, Any]:
    per_round = []
    pooled: dict[str, dict[str, list[float]]] = {
        side: {key: [] for key in REPORTED} for side in ("baseline", "during")}
    for r in range(rounds):
        order = (None, name) if r % 2 == 0 else (name, None)
        got: dict[str, Any] = {}
        for which in order:
            sample, alive, seconds = _phase(kernel, which, calls, opens)
            side = "baseline" if which is None else "during"
            got[side] = (sample, alive, seconds)
            for key in REPORTED:
                pooled[side][key] += sample[f"{key}_us"]
        (base, _, _), (during, alive, seconds) = got["baseline"], got["during"]
        raw.append({"attack": name, "round": r,
                    "order": "baseline first" if r % 2 == 0 else "attack first",
                    "baseline": {k: [round(v, 1) for v in base[f"{k}_us"]] for k in REPORTED},
                    "during": {k: [round(v, 1) for v in during[f"{k}_us"]]
                               for k in REPORTED}})
        b, d = _summary(base), _summary(during)
        row = {"round": r, "order": raw[-1]["order"], "baseline": b, "during": d,
               "attacker_still_running": alive, "during_seconds": round(seconds, 2),
               "failures": during["failures"][:5]}
        for key in REPORTED:
            row[f"{key}_p99_ratio"] = round(d[f"{key}_p99_us"] / b[f"{key}_p99_us"], 2)
        per_round.append(row)
        print(f"{name:20s} round {r}: getpid p99 {b['getpid_p99_us']:7.1f} -> "
              f"{d['getpid_p99_us']:7.1f} us (x{row['getpid_p99_ratio']}), "
              f"open+read p99 {b['open_read_p99_us']:7.1f} -> "
              f"{d['open_read_p99_us']:7.1f} us (x{row['open_read_p99_ratio']}), "
              f"saturating x{row['open_read_saturating_p99_ratio']}; throttled: paced "
              f"{d['fair_share_pauses']}+{d['fair_share_deferred']}, saturating "
              f"{d['fair_share_pauses_saturating']}+"
              f"{d['fair_share_deferred_saturating']} (pauses+deferred), "
              f"failures {d['failures']}", flush=True)
    result: dict[str, Any] = {}
    for key in REPORTED:
        ratios = [r[f"{key}_p99_ratio"] for r in per_round]
        result[f"{key}_p99_ratio"] = round(statistics.median(ratios), 2)
        result[f"{key}_p99_ratio_range"] = [min(ratios), max(ratios)]
        pb = attacks.percentile(pooled["baseline"][key], 0.99)
        pd = attacks.percentile(pooled["during"][key], 0.99)
        result[f"{key}_pooled_p99_us"] = {"baseline": round(pb, 2), "during": round(pd, 2),
                                          "ratio": round(pd / pb, 2)}
    result["failures"] = sum(r["during"]["failures"] for r in per_round)
    result["met"] = (all(result[f"{key}_p99_ratio"] <= TARGET for key in KEYS)
                     and result["failures"] == 0)
    result["per_round"] = per_round
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", action="append", help="run only this attack (repeatable)")
    opts = ap.parse_args()
    calls, opens = (1000, 200) if opts.quick else (5000, 1000)
    rounds = opts.rounds or (2 if opts.quick else 5)
    if rounds < 1:
        print("isolation: --rounds must be at least 1", file=sys.stderr)
        return 2
    names = opts.only or sorted(attacks.ATTACKS)
    unknown = set(names) - set(attacks.ATTACKS)
    if unknown:
        print(f"isolation: unknown attack(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="exo-isolation-")) / "root"
    load_before = os.getloadavg()
    started = time.perf_counter()
    kernel = Kernel(KernelConfig(root=root), ephemeral=True)
    kernel.boot()
    results: dict[str, Any] = {}
    raw: list[dict[str, Any]] = []
    try:
        attacks.prepare(kernel)
        # warm: spawn path, file servers
        attacks.good_app(kernel, 50, 5, pace_us=PACE_US)
        for name in names:
            results[name] = _attack(kernel, name, rounds, calls, opens, raw)
    finally:
        kernel.shutdown()
        shutil.rmtree(root.parent, ignore_errors=True)
    out = {"claim": f"p99 during an attack <= {TARGET} x p99 before, same run",
           "verdict": "median over rounds of p99(during) / p99(baseline), each round "
                      "measuring both phases in alternating order",
           "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "python": platform.python_version(),
                       "loadavg_before": [round(x, 2) for x in load_before],
                       "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
           "seconds": round(time.perf_counter() - started, 1),
           "calls": calls, "opens": opens, "rounds": rounds,
           "well_behaved_app": {
               "open_pace_us": PACE_US,
               "getpid_pace": "200 back to back, then 3 ms asleep",
               "why": "one open + read 4 KiB + close (~200 us of kernel CPU) every "
                      f"{PACE_US / 1000:g} ms asks ~10 % of a CPU of kernel time, within "
                      f"the {RATE:g} CPU fair share a process keeps while others use the "
                      "kernel; back to back it would be over its share itself",
               "open_read_saturating": f"a second app of its own then opens {opens} "
                                       "times back to back: reported beside the "
                                       "verdict, not part of it"},
           "raw_samples": RAW.name, "attacks": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    with gzip.open(RAW, "wt") as fh:
        json.dump({"unit": "us", "calls": calls, "opens": opens, "open_pace_us": PACE_US,
                   "rounds": raw}, fh)
    for name, r in results.items():
        print(f"{name:20s} getpid x{r['getpid_p99_ratio']:<6} "
              f"{r['getpid_p99_ratio_range']}  open+read x{r['open_read_p99_ratio']:<6} "
              f"{r['open_read_p99_ratio_range']}  {'met' if r['met'] else 'NOT MET'}  "
              f"(saturating x{r['open_read_saturating_p99_ratio']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
