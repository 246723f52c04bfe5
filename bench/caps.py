"""Benchmark: capability revocation, lookup and duplication (writes bench/results/caps.json).

Claim under test: revoking a capability with 10,000 derived capabilities spread over 100
process spaces takes < 50 ms. Peers measured in the same run:

* ``naive``: a textbook recursive implementation (per-node recursion, list children,
  per-node audit record, handle search by scanning the table) over the same trees;
* ``os_close``: the host kernel closing 10,000 file descriptors (``os.close`` each), the
  closest "release 10,000 kernel handles" operation Linux offers.

Run: ``.venv/bin/python bench/caps.py [--repeat N]``.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exo.kernel.caps import AuditLog, CapabilityManager, Rights

N = 10_000
SPACES = 100
RESULTS = Path(__file__).resolve().parent / "results" / "caps.json"
ALL = Rights.all()


# -- trees built through the real manager -------------------------------------------------


def build(mgr: CapabilityManager, shape: str) -> int:
    """A root in space 0 and N descendants over SPACES spaces; return the root handle."""
    root = mgr.grant_root(0, "storage://home/demo", ALL)
    if shape == "chain":
        pid, h = 0, root
        for i in range(N):
            h = mgr.duplicate(pid, h, ALL)
            nxt = (i + 1) % SPACES
            if nxt != pid:
                h = mgr.transfer(pid, h, nxt)
                pid = nxt
    elif shape == "fanout":
        for i in range(N):
            h = mgr.duplicate(0, root, ALL)
            if i % SPACES:
                mgr.transfer(0, h, i % SPACES)
    else:
        raise ValueError(shape)
    return root


def fresh_manager(log_dir: Path) -> CapabilityManager:
    mgr = CapabilityManager(audit=AuditLog(log_dir / "audit.jsonl"))
    for pid in range(SPACES):
        mgr.create_space(pid)
    mgr.on_revoke(lambda caps: None)  # a listener is always registered in the kernel
    return mgr


def bench_revoke(shape: str, repeat: int, log_dir: Path, tick: Callable[[], None]) -> list[float]:
    times = []
    for _ in range(repeat):
        mgr = fresh_manager(log_dir)
        root = build(mgr, shape)
        t0 = time.perf_counter()
        count = mgr.revoke(0, root)
        times.append((time.perf_counter() - t0) * 1e3)
        assert count == N, count
        assert sum(len(mgr.handles(p)) for p in range(SPACES)) == 1
        mgr.audit.close()
        tick()
    return times


# -- peer 1: a naive recursive implementation -------------------------------------------------


class _NaiveCap:
    def __init__(self, parent: _NaiveCap | None, owner: int) -> None:
        self.parent, self.owner = parent, owner
        self.children: list[_NaiveCap] = []
        self.revoked = False
        if parent is not None:
            parent.children.append(self)


class _Naive:
    def __init__(self) -> None:
        self.tables: dict[int, dict[int, _NaiveCap]] = {p: {} for p in range(SPACES)}
        self.audit: list[dict[str, Any]] = []
        self.next = 1

    def add(self, parent: _NaiveCap | None, owner: int) -> _NaiveCap:
        cap = _NaiveCap(parent, owner)
        self.tables[owner][self.next] = cap
        self.next += 1
        return cap

    def revoke(self, cap: _NaiveCap) -> None:
        for child in list(cap.children):
            self.revoke(child)
            table = self.tables[child.owner]
            handle = next(h for h, c in table.items() if c is child)
            del table[handle]
            child.revoked = True
            cap.children.remove(child)
            self.audit.append({"event": "revoke", "pid": child.owner, "time": time.time()})


def bench_naive(shape: str, repeat: int, tick: Callable[[], None]) -> list[float]:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(N * 3)
    times = []
    try:
        for _ in range(repeat):
            nv = _Naive()
            root = nv.add(None, 0)
            node = root
            for i in range(N):
                owner = (i + 1) % SPACES
                node = nv.add(node if shape == "chain" else root, owner)
            t0 = time.perf_counter()
            nv.revoke(root)
            times.append((time.perf_counter() - t0) * 1e3)
            assert sum(len(t) for t in nv.tables.values()) == 1
            tick()
    finally:
        sys.setrecursionlimit(old)
    return times


# -- peer 2: the host kernel closing 10,000 fds ---------------------------------------------


def bench_os_close(repeat: int, tick: Callable[[], None]) -> list[float]:
    times = []
    for _ in range(repeat):
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(N)]
        t0 = time.perf_counter()
        for fd in fds:
            os.close(fd)
        times.append((time.perf_counter() - t0) * 1e3)
        tick()
    return times


# -- lookup and duplicate ------------------------------------------------------------------


def bench_lookup(repeat: int, tick: Callable[[], None]) -> list[float]:
    mgr = CapabilityManager()
    mgr.create_space(1)
    handles = [mgr.grant_root(1, f"ipc://svc{i}", "READ,WRITE") for i in range(1000)]
    h = handles[500]
    check, need, loops = mgr.check, Rights.READ, 50_000
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            check(1, h, need)
        out.append((time.perf_counter_ns() - t0) / loops)
        tick()
    return out


def bench_dict_get(repeat: int) -> list[float]:
    table = {i * 7919: object() for i in range(1000)}
    get, key, loops = table.get, 500 * 7919, 50_000
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            get(key)
        out.append((time.perf_counter_ns() - t0) / loops)
    return out


def bench_duplicate(repeat: int, log_dir: Path, tick: Callable[[], None]) -> list[float]:
    out = []
    for _ in range(repeat):
        mgr = CapabilityManager(audit=AuditLog(log_dir / "dup.jsonl"))
        mgr.create_space(1)
        root = mgr.grant_root(1, "storage://home/demo", ALL)
        loops = 5_000
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            mgr.duplicate(1, root, Rights.READ)
        out.append((time.perf_counter_ns() - t0) / loops / 1e3)
        mgr.audit.close()
        tick()
    return out


# -- driver --------------------------------------------------------------------------------


def _p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    if sys.stdout.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("benchmarking capabilities", total=total)
            yield lambda: progress.advance(task)
    else:
        yield lambda: None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=15, help="repetitions per measurement")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    r = max(1, args.repeat)

    raw: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, _progress(r * 8) as tick:
        log_dir = Path(tmp)
        for shape in ("chain", "fanout"):
            raw[f"revoke_{shape}"] = bench_revoke(shape, r, log_dir, tick)
            raw[f"naive_{shape}"] = bench_naive(shape, r, tick)
        raw["os_close"] = bench_os_close(r, tick)
        raw["lookup"] = bench_lookup(r, tick)
        raw["dict_get"] = bench_dict_get(r)
        raw["duplicate"] = bench_duplicate(r, log_dir, tick)

    both = raw["revoke_chain"] + raw["revoke_fanout"]
    med = statistics.median
    result: dict[str, Any] = {
        "claim": "revoke 10,000 derived capabilities over 100 spaces in < 50 ms",
        "revoke_10000_ms_median": round(med(both), 3),
        "revoke_10000_ms_p95": round(_p95(both), 3),
        "claim_met": _p95(both) < 50.0,
        "revoke_chain_ms_median": round(med(raw["revoke_chain"]), 3),
        "revoke_chain_ms_p95": round(_p95(raw["revoke_chain"]), 3),
        "revoke_fanout_ms_median": round(med(raw["revoke_fanout"]), 3),
        "revoke_fanout_ms_p95": round(_p95(raw["revoke_fanout"]), 3),
        "peer_naive_recursive_chain_ms_median": round(med(raw["naive_chain"]), 3),
        "peer_naive_recursive_fanout_ms_median": round(med(raw["naive_fanout"]), 3),
        "peer_os_close_10000_fds_ms_median": round(med(raw["os_close"]), 3),
        "lookup_ns_median": round(med(raw["lookup"]), 1),
        "lookup_ns_p95": round(_p95(raw["lookup"]), 1),
        "peer_dict_get_ns_median": round(med(raw["dict_get"]), 1),
        "duplicate_us_median": round(med(raw["duplicate"]), 3),
        "duplicate_us_p95": round(_p95(raw["duplicate"]), 3),
        "repeat": r,
        "derived": N,
        "spaces": SPACES,
        "audit": "JSON Lines file + in-memory ring; one revoke listener registered",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"capabilities (10,000 derived over {SPACES} spaces, n={r})")
        table.add_column("measurement")
        table.add_column("median", justify="right")
        table.add_column("p95", justify="right")
        rows = [
            ("revoke chain (ms)", "revoke_chain"),
            ("revoke fan-out (ms)", "revoke_fanout"),
            ("peer: naive recursive chain (ms)", "naive_chain"),
            ("peer: naive recursive fan-out (ms)", "naive_fanout"),
            ("peer: os.close × 10,000 (ms)", "os_close"),
            ("check() lookup (ns)", "lookup"),
            ("peer: dict.get (ns)", "dict_get"),
            ("duplicate (µs)", "duplicate"),
        ]
        for label, key in rows:
            table.add_row(label, f"{med(raw[key]):.3f}", f"{_p95(raw[key]):.3f}")
        Console().print(table)
    else:
        print(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
