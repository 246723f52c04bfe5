"""Benchmark: another session's commands beside a builtin loop in the Exo shell (writes
bench/results/shell_neighbor.json).

Claim under test (the kernel-integrity rule that no user stalls the kernel): the shell
runs inside the kernel, on threads of its one interpreter, so a session's builtin loop
(``while :; do :; done``) competes for the interpreter lock with every other session's
commands and every process's syscalls and file requests. ``exo.shell.core`` has each
command let the kernel's other threads run first (``_share_interpreter``). This measures,
in one run and one booted kernel, a second session's Enter-to-done time for ``ls`` (a
builtin), ``/bin/true`` and ``/bin/cat big.txt | /usr/bin/wc -l`` (through the
powerbox), quiet and beside the loop, with the sharing as built (``shared``) and with it
turned off in this process (``unshared``: the code before it, the peer); and the cost to
the loop itself: a lone ``for i in {1..20000}; do :; done`` in both modes.

Run: ``.venv/bin/python bench/shell_neighbor.py [--runs N] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests._support.kernels import booted_kernel

import shell as shell_bench
from exo.shell import Shell, Vfs
from exo.shell import core as shell_core

RESULTS = Path(__file__).resolve().parent / "results" / "shell_neighbor.json"
LINES = ("ls files", "/bin/true", "/bin/cat big.txt | /usr/bin/wc -l")
LOOP = "for i in {1..20000}; do :; done"


@contextlib.contextmanager
def _mode(shared: bool) -> Iterator[None]:
    saved = shell_core._share_interpreter
    if not shared:
        shell_core._share_interpreter = lambda depth: None  # type: ignore[assignment]
    try:
        yield
    finally:
        shell_core._share_interpreter = saved  # type: ignore[assignment]


@contextlib.contextmanager
def _busy(kernel_shell: Callable[[], Shell], null: int) -> Iterator[None]:
    """A session spinning ``while :; do :; done`` on a thread of the kernel."""
    busy = kernel_shell()
    busy.cancel_on = threading.Event()

    def spin() -> None:
        with contextlib.suppress(KeyboardInterrupt):
            busy.run_line("while :; do :; done", null, null, null)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    time.sleep(0.2)
    try:
        yield
    finally:
        busy.cancel_on.set()
        thread.join(30)


def _median_ms(sh: Shell, line: str, runs: int, null: int, out: int) -> float:
    samples = []
    for _ in range(runs):
        time.sleep(0.02)
        t0 = time.perf_counter()
        sh.run_line(line, null, out, null)
        samples.append((time.perf_counter() - t0) * 1000)
        os.ftruncate(out, 0)
    return round(statistics.median(samples), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 runs")
    args = ap.parse_args()
    runs = 5 if args.quick else args.runs
    # The unshared loop makes each neighbour's command take seconds: fewer runs there.
    stalled_runs = min(runs, 5)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, booted_kernel(Path(d) / "root") as k:
        shell_bench._prepare(k.root / "home" / "root")

        def new_shell() -> Shell:
            return Shell(k.api, Vfs(k.root, k.virtual_trees()))

        null = os.open(os.devnull, os.O_RDWR)
        out = os.open(os.path.join(d, "out"), os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        neighbour = new_shell()
        neighbour.run_line("cd /home/root", null, null, null)
        for line in LINES:  # warm: the zygote, the caches
            _median_ms(neighbour, line, 5, null, out)
        for mode in ("shared", "unshared"):
            with _mode(mode == "shared"):
                row: dict[str, Any] = {}
                for line in LINES:
                    row[line] = {"quiet_ms": _median_ms(neighbour, line, runs, null, out)}
                with _busy(new_shell, null):
                    for line in LINES:
                        n = runs if mode == "shared" else stalled_runs
                        row[line]["beside_loop_ms"] = _median_ms(neighbour, line, n, null,
                                                                 out)
                        print(f"{mode:9s} {line:40s} quiet {row[line]['quiet_ms']:8.2f} ms,"
                              f" beside a builtin loop {row[line]['beside_loop_ms']:9.2f} ms",
                              flush=True)
                lone = new_shell()
                best = min(_timed(lone, LOOP, null) for _ in range(3))
                row["lone_loop_ms"] = {"line": LOOP, "ms": round(best, 1)}
                print(f"{mode:9s} lone {LOOP}: {best:.1f} ms", flush=True)
                results[mode] = row
        os.close(null)
        os.close(out)
    doc = {"benchmark": "shell_neighbor", "runs": runs, "runs_beside_unshared": stalled_runs,
           "machine": platform.machine(), "cpus": os.cpu_count(),
           "python": platform.python_version(), "results": results,
           "loop_cost_ratio": round(results["shared"]["lone_loop_ms"]["ms"]
                                    / results["unshared"]["lone_loop_ms"]["ms"], 2)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def _timed(sh: Shell, line: str, null: int) -> float:
    t0 = time.perf_counter()
    sh.run_line(line, null, null, null)
    return (time.perf_counter() - t0) * 1000


if __name__ == "__main__":
    main()
