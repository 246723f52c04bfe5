"""Eco++ placement: an interactive Exo process's wake-to-run latency beside CPU hogs, with
placement on and off, in the same run.

A booted in-process kernel (its DEFERRED phase started, so AI-Res samples and places)
runs ``--hogs`` sandboxed Exo processes spinning ``while True: pass`` and one sandboxed
probe that sleeps to an absolute deadline every 5 ms and reports how late it woke
(``time.monotonic() - deadline``: the wake-to-run latency, timer slack included, the
same in both modes). The peer is the same system with placement switched off
(``Placer.set_enabled(False)``: every process on every CPU with the default weight,
i.e. Linux's own CFS placement). Rounds alternate on/off so the host's noise hits both;
the first second after each switch is dropped (the move itself); placement "on" is
reached the real way: AI-Res measures the processes and the placer classes them
(the script waits for hogs=batch, probe=interactive before its first round).

Writes bench/results/sched_place.json. ``--quick``: 4 rounds of 4 s instead of 10 of 6 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel
from exo.sched.placement import running

RESULTS = Path(__file__).resolve().parent / "results" / "sched_place.json"
PYTHON = "/usr/bin/python3"
HOG = "while True: pass"
PROBE = """
import sys, time
period, out, buf = 0.005, sys.stdout, []
deadline = time.monotonic() + period
while True:
    time.sleep(max(0.0, deadline - time.monotonic()))
    now = time.monotonic()
    buf.append(f"{now:.6f} {(now - deadline) * 1e6:.1f}")
    if len(buf) >= 20:
        out.write("\\n".join(buf) + "\\n"); out.flush(); buf.clear()
    deadline += period
    if deadline < now:
        deadline = now + period
"""


def _spawn(kernel: Kernel, code: str, stdout: int) -> Any:
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        return kernel.processes.spawn([PYTHON, "-c", code], [], stdio=(null, stdout, null),
                                      cwd="/")
    finally:
        os.close(null)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_us": round(statistics.median(values), 1),
            "p99_us": round(_pct(values, 0.99), 1), "max_us": round(max(values), 1),
            "mean_us": round(statistics.fmean(values), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 rounds of 4 s")
    parser.add_argument("--hogs", type=int, default=2 * (os.cpu_count() or 1))
    ns = parser.parse_args()
    rounds, seconds, settle = (4, 4.0, 1.0) if ns.quick else (10, 6.0, 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        kernel = Kernel(KernelConfig(root=Path(tmp) / "root"), ephemeral=True)
        kernel.boot()
        procs: list[Any] = []
        read_fd, write_fd = os.pipe()
        try:
            kernel.start_deferred()
            kernel.wait_deferred()
            placer = running(kernel.boot_id)
            if placer is None:
                raise SystemExit("sched_place: placement did not start (AI agents step)")
            hogs = [_spawn(kernel, HOG, os.open(os.devnull, os.O_WRONLY)) for _ in
                    range(ns.hogs)]
            probe = _spawn(kernel, PROBE, write_fd)
            os.close(write_fd)
            procs = [*hogs, probe]
            want = {p.pid: "batch" for p in hogs} | {probe.pid: "interactive"}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                roles = {r["pid"]: r["role"] for r in placer.rows()}
                if all(roles.get(pid) == role for pid, role in want.items()):
                    break
                time.sleep(0.25)
            else:
                raise SystemExit(f"sched_place: placement never classed the processes: "
                                 f"{placer.rows()}")
            placed, summary = placer.rows(), placer.summary()
            samples: dict[str, list[float]] = {"on": [], "off": []}
            per_round: list[dict[str, Any]] = []
            sel = selectors.DefaultSelector()
            sel.register(read_fd, selectors.EVENT_READ)
            rest = b""
            for i in range(rounds):
                mode = "on" if i % 2 == 0 else "off"
                placer.set_enabled(mode == "on")
                start = time.monotonic()
                keep_from, end = start + settle, start + settle + seconds
                got: list[float] = []
                while time.monotonic() < end:
                    if not sel.select(0.5):
                        continue
                    rest += os.read(read_fd, 65536)
                    *lines, rest = rest.split(b"\n")
                    for line in lines:
                        t, _, late = line.partition(b" ")
                        if keep_from <= float(t) < end:
                            got.append(float(late))
                samples[mode] += got
                per_round.append({"mode": mode, **_summary(got)})
                print(f"round {i + 1}/{rounds} placement {mode}: p50 "
                      f"{per_round[-1]['p50_us']} us, p99 {per_round[-1]['p99_us']} us",
                      flush=True)
            sel.close()
            on, off = _summary(samples["on"]), _summary(samples["off"])
            report = {
                "wake_to_run_us": {"placement_on": on, "placement_off": off},
                "p99_ratio_off_over_on": round(off["p99_us"] / max(on["p99_us"], 0.1), 2),
                "p50_ratio_off_over_on": round(off["p50_us"] / max(on["p50_us"], 0.1), 2),
                "rounds": per_round,
                "hogs": ns.hogs, "probe_period_ms": 5, "round_s": seconds,
                "placement": {"summary": summary, "rows": placed},
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "loadavg_end": os.getloadavg()},
                "how": "probe = sandboxed Exo process sleeping to 5 ms deadlines; lateness = "
                       "wake-to-run latency; peer = the same processes with placement off "
                       "(all CPUs, default weight), rounds alternated in one run",
            }
        finally:
            for p in procs:
                kernel.processes.kill(p.pid, 9)
                kernel.processes.wait(p.pid, timeout=30)
            kernel.shutdown()
            os.close(read_fd)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("wake_to_run_us", "p99_ratio_off_over_on",
                                             "p50_ratio_off_over_on")}, indent=2))


if __name__ == "__main__":
    main()
