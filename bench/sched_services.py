"""The kernel's periodic services as Exo tasks vs a thread each: kernel threads and RSS
after boot, two kernels in the same run.

Each round boots a fresh ephemeral kernel in a child process (so RSS and thread counts
are the kernel's alone), runs its DEFERRED phase (AI-Res's sampler and Eco++ placer, and
the audit anchor timer when swtpm is installed: a swtpm per kernel), waits ``--settle``
seconds so every service has ticked, then reads its own ``/proc/self/status`` (Threads,
VmRSS) and counts the ticks of each service. "tasks" is the system as built; the peer
"threads" is the same kernel with ``EXO_KERNEL_SERVICES=threads`` (each service on a
thread of its own, as before). Rounds alternate so the host's noise hits both; medians.

Writes bench/results/sched_services.json. ``--quick``: 2 rounds instead of 5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "sched_services.json"

CHILD = r"""
import json, os, sys, threading, time
from pathlib import Path
from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel
from exo.security import tpm

root, settle, use_tpm = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
if use_tpm:
    tpm.start_swtpm(root)
try:
    k = Kernel(KernelConfig(root=root), ephemeral=True)
    k.boot()
    try:
        k.start_deferred()
        k.wait_deferred(120)
        time.sleep(settle)
        status = dict(line.split(":", 1) for line in
                      Path("/proc/self/status").read_text().splitlines())
        res = k._started("agents").monitor.service
        sec = k._by_key.get("security")
        anchors = getattr(sec, "anchors", None)
        print(json.dumps({
            "threads": int(status["Threads"]),
            "rss_kib": int(status["VmRSS"].split()[0]),
            "names": sorted(t.name for t in threading.enumerate()),
            "res_on_task": res.on_task, "res_ticks": res.ticks,
            "anchor_on_task": None if anchors is None else anchors.service.on_task,
            "anchor_ticks": None if anchors is None else anchors.service.ticks,
        }))
    finally:
        k.shutdown()
finally:
    if use_tpm:
        tpm.stop_swtpm(root)
"""


def _one(mode: str, settle: float, use_tpm: bool) -> dict[str, Any]:
    env = dict(os.environ, EXO_AUDIT_ANCHOR_S="0.5")
    env.pop("EXO_TPM", None)
    if mode == "threads":
        env["EXO_KERNEL_SERVICES"] = "threads"
    else:
        env.pop("EXO_KERNEL_SERVICES", None)
    with tempfile.TemporaryDirectory(prefix="exo-bench-svc-") as tmp:
        env["EXO_ROOT"] = str(Path(tmp) / "root")
        out = subprocess.run([sys.executable, "-c", CHILD, env["EXO_ROOT"], str(settle),
                              "1" if use_tpm else "0"], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--settle", type=float, default=3.0)
    args = ap.parse_args()
    rounds = 2 if args.quick else 5
    use_tpm = shutil.which("swtpm") is not None and not os.path.exists("/dev/tpmrm0")
    runs: dict[str, list[dict[str, Any]]] = {"tasks": [], "threads": []}
    for _ in range(rounds):
        for mode in ("tasks", "threads"):
            runs[mode].append(_one(mode, args.settle, use_tpm))
    summary: dict[str, Any] = {}
    for mode, rs in runs.items():
        summary[mode] = {
            "threads": statistics.median(r["threads"] for r in rs),
            "rss_mib": round(statistics.median(r["rss_kib"] for r in rs) / 1024, 1),
            "res_ticks_per_s": round(statistics.median(r["res_ticks"] for r in rs)
                                     / args.settle, 2),
            "services_on_tasks": bool(rs[0]["res_on_task"]),
            "thread_names": rs[0]["names"],
        }
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load": os.getloadavg()[0]},
        "rounds": rounds, "settle_s": args.settle, "swtpm_anchor": use_tpm,
        "threads": {"tasks": summary["tasks"]["threads"],
                    "threads": summary["threads"]["threads"]},
        "rss_mib": {"tasks": summary["tasks"]["rss_mib"],
                    "threads": summary["threads"]["rss_mib"]},
        "summary": summary, "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("threads", "rss_mib", "swtpm_anchor")}))


if __name__ == "__main__":
    main()
