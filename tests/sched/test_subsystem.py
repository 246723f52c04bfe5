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


class _Core:
    """What KernelScheduler uses of the kernel's core: its log and boot id."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.boot_id = "sched-subsystem-test"

    def log(self, message: str) -> None:
        self.lines.append(message)


def test_start_runs_tasks_posted_from_other_threads_and_stop_ends_the_thread() -> None:
    import threading

    from exo.sched.subsystem import KernelScheduler

    sub = KernelScheduler(_Core())  # type: ignore[arg-type]
    assert sub.start().startswith("predictive O(1), EMA α 0.3 over 16 bursts")
    assert sub.sched is not None and sub._thread is not None
    ran = threading.Event()
    sub.sched.spawn_threadsafe(ran.set, name="posted")
    assert ran.wait(10)
    assert "posted" not in sub.proc_files()["sched"]()  # it finished
    from exo.sched.services import kernel_scheduler

    assert kernel_scheduler("sched-subsystem-test") is sub.sched  # services find it
    sub.stop()
    assert kernel_scheduler("sched-subsystem-test") is None
    assert not sub._thread.is_alive()
    assert sub.sched.stats()["finished"] == 1
