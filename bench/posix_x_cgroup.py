"""Why redis under ``posix-x run`` fell to 0.4-0.7 of native on a loaded host (issue 10).

Not the broker: ``strace -c`` shows the same syscalls natively and under POSIX-X (read,
write, epoll_wait; nothing notified), and on a quiet host ``posix_x --quick --apps redis``
gives 0.97 with CPU/op 1.07. What differs is the *cgroup*: every Exo process is in its
own ``cpu`` cgroup (``exo-BOOT/pN``), native and bwrap redis are tasks of the root group.
With cgroup v1 group scheduling, a group's weight on a CPU is its ``cpu.shares`` scaled by
the share of the group's *load average* on that CPU; a server that sleeps between requests
has a small load average, so its group entity weighs less than one always-runnable root
task, and CPU-bound root tasks (other sessions' tests) take its CPU.

This measures it without POSIX-X at all, in one run: the same redis-server binary as a
root task, in an Exo-shaped nested group (parent/child, 1024 shares each) and in that
group with 10x the shares, then under ``posix-x run`` — each with ``2 x CPUs`` CPU-bound
loops running (bounded, killed at the end) and once without them. Writes
``bench/results/posix_x_cgroup.json``. Needs root and a v1 ``cpu`` hierarchy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from exo.posix_x.benchmark import Redis, _cpu, _free_port, _load, _stop, _wait_port

CPU_V1 = Path("/sys/fs/cgroup/cpu")
RESULTS = Path(__file__).parent / "results" / "posix_x_cgroup.json"
MODES = ("root", "nested", "nested_x10", "posix_x")


def _own_cpu_group() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _n, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return CPU_V1 / path.lstrip("/")
    raise SystemExit("posix_x_cgroup: no v1 cpu hierarchy here (it measures v1 group "
                     "scheduling)")


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _get_rate(port: int, requests: int) -> float:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-n",
                          str(requests), "-c", "16", "-q"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    rates = re.findall(r"([\d.]+) requests per second", out)
    if not rates:
        raise RuntimeError(f"redis-benchmark: no rate in {out!r}")
    return float(rates[-1])


@contextlib.contextmanager
def _busy(count: int) -> Iterator[None]:
    """``count`` CPU-bound loops (the host load the benchmark met), at most 10 minutes."""
    procs = [subprocess.Popen(["timeout", "600", "sh", "-c", "while :; do :; done"])
             for _ in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@contextlib.contextmanager
def _groups() -> Iterator[dict[str, Path]]:
    """Two Exo-shaped nested groups (parent/child) beside this process's own."""
    base = _own_cpu_group() / f"exo-bench-cg-{os.getpid()}"
    made: list[Path] = []
    try:
        for name, shares in (("nested", 1024), ("nested_x10", 10240)):
            parent = base / name
            child = parent / "p1"
            child.mkdir(parents=True)
            made += [child, parent]
            (parent / "cpu.shares").write_text(str(shares))
            (child / "cpu.shares").write_text(str(shares))
        yield {"nested": base / "nested" / "p1", "nested_x10": base / "nested_x10" / "p1"}
    finally:
        for d in [*made, base]:
            with contextlib.suppress(OSError):
                d.rmdir()


def run(rounds: int, requests: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="exo-bench-cg-"))
    data = tmp / "data"
    data.mkdir()
    results: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "rounds": rounds,
                                              "requests": requests}}
    with _groups() as groups:
        for busy in (0, 2 * (os.cpu_count() or 1)):
            rates: dict[str, list[float]] = {m: [] for m in MODES}
            cpu: dict[str, list[float]] = {m: [] for m in MODES}
            loads = [_load()]
            with _busy(busy):
                time.sleep(1)
                for r in range(rounds):
                    for mode in MODES[r % 4:] + MODES[:r % 4]:
                        rate, cpu_op = _one(mode, groups, data, tmp, requests)
                        rates[mode].append(rate)
                        cpu[mode].append(cpu_op)
                    loads.append(_load())
                    print(f"busy {busy} round {r + 1}: " + ", ".join(
                        f"{m} {rates[m][-1]:.0f}/s" for m in MODES) + f" (load {loads[-1][0]})",
                        file=sys.stderr)
            results[f"busy_{busy}"] = {
                "rate_median": {m: round(statistics.median(v)) for m, v in rates.items()},
                "ratio_to_root_median": {
                    m: round(statistics.median(a / b for a, b in zip(rates[m], rates["root"],
                                                                     strict=True)), 3)
                    for m in MODES},
                "cpu_per_op_ratio_median": {
                    m: round(statistics.median(a / b for a, b in zip(cpu[m], cpu["root"],
                                                                     strict=True)), 3)
                    for m in MODES if all(cpu["root"])},
                "load_1min": [x[0] for x in loads]}
    return results


def _one(mode: str, groups: dict[str, Path], data: Path, tmp: Path,
         requests: int) -> tuple[float, float]:
    """One server life in ``mode``: the GET rate and its CPU seconds per request."""
    port = _free_port()
    if mode == "posix_x":
        app = Redis(tmp / f"root{port}", port)
        with app.running("posix_x") as proc:
            _get_rate(port, requests // 4)
            before = _cpu(proc, "redis-server")
            rate = _get_rate(port, requests)
            return rate, (_cpu(proc, "redis-server") - before) / requests
    proc = subprocess.Popen(["/usr/bin/redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--dir", str(data), "--save", "", "--appendonly",
                             "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        if mode in groups:
            for tid in os.listdir(f"/proc/{proc.pid}/task"):
                (groups[mode] / "tasks").write_text(tid)
        _get_rate(port, requests // 4)
        before = _ticks(proc.pid)
        rate = _get_rate(port, requests)
        hz = os.sysconf("SC_CLK_TCK")
        return rate, (_ticks(proc.pid) - before) / hz / requests
    finally:
        _stop(proc, 15, port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("posix_x_cgroup: needs root (it creates cpu cgroups)", file=sys.stderr)
        return 1
    results = run(args.rounds, args.requests)
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
