"""The boot table's Scheduler step: a real subsystem that serves /proc/sched."""

from __future__ import annotations

import json
import subprocess
import sys

from exo.kernel.bootlog import Phase
from exo.kernel.boottable import BOOT_TABLE


def test_the_scheduler_row_is_built_and_normal() -> None:
    row = next(r for r in BOOT_TABLE if r.key == "scheduler")
    assert row.name == "Scheduler" and row.phase is Phase.NORMAL
    assert row.target == "exo.sched.subsystem:KernelScheduler"


def test_boot_starts_it_and_proc_sched_shows_it(exo_env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-m", "exo", "boot", "--json-boot"], env=exo_env,
                       text=True, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    steps = {s["name"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["Scheduler"]["status"] == "OK", steps["Scheduler"]
    r = subprocess.run([sys.executable, "-m", "exo", "boot", "--quiet"], env=exo_env,
                       input="cat /proc/sched\n", text=True, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("scheduler kernel: predictive, EMA alpha 0.3 over 16 bursts")
    assert "prediction accuracy" in r.stdout
