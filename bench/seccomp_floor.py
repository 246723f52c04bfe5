"""What a seccomp filter costs each syscall on this machine (writes
bench/results/seccomp_floor.json).

Why: POSIX-X's "Fast" tier is "allowed straight through by seccomp", and issue 10 asks
for a throughput no worse than plain bubblewrap's, which runs without any filter. This
measures the floor of that difference: ``c_probe/seccomp_floor.c`` times ``getpid``,
``pread`` of 64 cached bytes and ``write`` of 64 bytes to /dev/null (best of 5 runs of
200k calls) in a fresh process per configuration, interleaved over ``--rounds`` rounds:

* ``none``: no filter (plain bubblewrap, native Linux) — the peer;
* ``allow``: a one-instruction RET_ALLOW filter: every syscall hits the kernel's seccomp
  action cache, the program never runs; what is left is the syscall entry's slow path;
* ``exo``: the sandbox's own filter for a process without network (every Exo process);
* ``posix_x``: the two a POSIX-X program runs under: the sandbox's (deferring to the
  broker) and the broker's notification filter (``exo.posix_x.broker.compile_filter``).

Reported per configuration and syscall: the median over rounds (ns) and the difference
to ``none``. Run: ``.venv/bin/python bench/seccomp_floor.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import errno
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "seccomp_floor.json"
CALLS = ("getpid", "pread_64", "write_64")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if args.rounds < 1:
        print("seccomp_floor: --rounds: expected at least 1", file=sys.stderr)
        return 2
    from exo.posix_x.broker import compile_filter as broker_filter
    from exo.sandbox import _seccomp

    with tempfile.TemporaryDirectory(prefix="exo-bench-seccomp-") as tmp:
        work = Path(tmp)
        exe = work / "seccomp_floor"
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe),
                        str(HERE / "c_probe" / "seccomp_floor.c")], check=True)
        programs = {"exo": _seccomp.compiled_filter("none", errno.EPERM, True),
                    "posix_x_sandbox": _seccomp.compiled_filter("none", errno.EPERM, True,
                                                                True),
                    "posix_x_broker": broker_filter("none", True)}
        for name, program in programs.items():
            (work / name).write_bytes(program)
        configs = {"none": "none", "allow": "allow", "exo": str(work / "exo"),
                   "posix_x": f"{work / 'posix_x_sandbox'},{work / 'posix_x_broker'}"}
        samples: dict[str, dict[str, list[float]]] = {
            c: {call: [] for call in CALLS} for c in configs}
        for r in range(args.rounds):
            order = list(configs)[r % len(configs):] + list(configs)[:r % len(configs)]
            for config in order:
                out = subprocess.run([str(exe), configs[config]], capture_output=True,
                                     text=True, check=True).stdout
                for call, ns in json.loads(out).items():
                    samples[config][call].append(ns)
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    medians = {c: {call: round(statistics.median(v), 1) for call, v in per.items()}
               for c, per in samples.items()}
    added = {c: {call: round(medians[c][call] - medians["none"][call], 1) for call in CALLS}
             for c in configs if c != "none"}
    result = {"benchmark": "seccomp_floor", "rounds": args.rounds,
              "machine": platform.machine(), "kernel": platform.release(),
              "filter_instructions": {n: len(p) // 8 for n, p in programs.items()},
              "ns": medians, "added_ns": added, "samples": samples}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    for config, per in medians.items():
        extra = "" if config == "none" else "   (+" + ", +".join(
            f"{added[config][c]:.0f}" for c in CALLS) + ")"
        print(f"{config:8s} " + "  ".join(f"{c} {per[c]:6.1f} ns" for c in CALLS) + extra)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
