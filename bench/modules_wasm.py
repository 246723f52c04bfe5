"""Benchmark: a WebAssembly module against the same service as a Python module
(writes bench/results/modules_wasm.json).

What a WebAssembly module costs next to its peer, the Python module, in the same run and
the same kernel: the time to start a version (verify, sandbox, interpreter, wasmtime
compiling the module, READY), the round trip of one request through the router (p50 and
p99 over back-to-back requests, rounds of the two interleaved), and the resident memory
of the module's process tree. Both echo the request with a version prefix and count
requests (``tests/modules/modlib.py`` and ``tests/modules/wasmlib.py``).

Run: ``.venv/bin/python bench/modules_wasm.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.modules.modlib import build
from tests.modules.wasmlib import build_wasm

RESULTS = Path(__file__).resolve().parent / "results" / "modules_wasm.json"


def rss_mib(host_pid: int) -> float:
    import psutil

    root = psutil.Process(host_pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    from exo.kernel.config import KernelConfig
    from exo.kernel.kernel import Kernel

    work = Path(tempfile.mkdtemp(prefix="exo-bench-modules-wasm-"))
    kernel = Kernel(KernelConfig(root=work / "root"), ephemeral=True)
    kinds = {"python": "echo", "wasm": "wecho"}
    starts: dict[str, list[float]] = {k: [] for k in kinds}
    rtts: dict[str, list[float]] = {k: [] for k in kinds}
    rss: dict[str, float] = {}
    try:
        kernel.boot()
        kernel.start_deferred()
        kernel.wait_deferred(120)
        manager = kernel._by_key["modules"].manager  # type: ignore[attr-defined]
        pkgs = {"python": build(work, kernel.root, "1.0"),
                "wasm": build_wasm(work, kernel.root, "1.0")}
        for _ in range(3 if args.quick else 5):  # start: load, then unload
            for kind, name in kinds.items():
                t0 = time.perf_counter()
                manager.load(str(pkgs[kind]))
                starts[kind].append((time.perf_counter() - t0) * 1000)
                manager.unload(name)
        for kind in kinds:
            manager.load(str(pkgs[kind]))
        for kind, name in kinds.items():
            inst = manager.service_named(name).instances["1.0"]
            rss[kind] = rss_mib(inst.proc.host_pid)
        body = b"x" * 32
        for _ in range(5 if args.quick else 20):
            for kind, name in kinds.items():
                for _ in range(500):
                    t0 = time.perf_counter()
                    manager.request(name, body)
                    rtts[kind].append((time.perf_counter() - t0) * 1e6)
        for name in kinds.values():
            manager.unload(name)
    finally:
        kernel.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    result = {kind: {"start_ms_median": round(statistics.median(starts[kind]), 1),
                     "rtt_us_p50": round(pct(rtts[kind], 0.5), 1),
                     "rtt_us_p99": round(pct(rtts[kind], 0.99), 1),
                     "rss_mib": round(rss[kind], 1),
                     "requests": len(rtts[kind])}
              for kind in kinds}
    result["peer"] = "python"  # type: ignore[assignment]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
