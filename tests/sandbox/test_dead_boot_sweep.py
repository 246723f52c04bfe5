"""A kernel killed with SIGKILL leaves its cgroups; the next boot's sweep removes them, and
never a live kernel's (its groups name its own pid) nor a group with a process in it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from exo.sandbox._cgroups import CgroupSet, leftover_groups, sweep_dead_boots

DEAD_PID = 4_194_304 + 7  # above any pid_max: no such process, ever


def _group(boot: str, name: str) -> CgroupSet:
    return CgroupSet.create(boot, name, memory_max=32 << 20, pids_max=8, cpu_max=None)


def test_only_dead_kernels_idle_groups_are_swept() -> None:
    dead = _group("sweep-dead", f"p2.{DEAD_PID}.1")
    dead_zygote = _group("sweep-dead", f"p3.{DEAD_PID}.z1")
    live = _group("sweep-live", f"p2.{os.getpid()}.1")
    busy = _group("sweep-busy", f"p2.{DEAD_PID}.1")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for procs in busy.procs_files:
            procs.write_text(str(sleeper.pid))
        removed = sweep_dead_boots("sweep-own")
        assert dead.dirs[0] in removed and dead_zygote.dirs[0] in removed
        assert leftover_groups("sweep-dead") == []
        assert leftover_groups("sweep-live") and leftover_groups("sweep-busy")
        assert not any(p.parent.name in ("exo-sweep-live", "exo-sweep-busy") for p in removed)
    finally:
        sleeper.kill()
        sleeper.wait()
        for group in (live, busy, dead, dead_zygote):
            group.remove()


def test_a_dead_kernels_cpu_boot_group_is_swept_a_live_ones_is_not() -> None:
    """v1: processes without a CPU limit join their boot's cpu group, which so has no
    group of its own to name a kernel pid; it goes when empty and no other hierarchy has
    a directory of its boot (a live kernel's processes always have one there)."""
    from exo.sandbox._cgroups import _cpu_only, hierarchies

    found = hierarchies()
    cpu = [h for h in found if h.version == 1 and _cpu_only(h.controllers)]
    if not cpu:
        pytest.skip("no v1 cpu hierarchy of its own here")
    others = [h for h in found if h not in cpu]
    dead, live, busy = (cpu[0].base / f"exo-sweep-cpu-{n}" for n in ("dead", "live", "busy"))
    beside = others[0].base / live.name
    sleeper = subprocess.Popen(["sleep", "60"])
    made = [dead, live, busy, beside]
    try:
        for d in made:
            d.mkdir()
        (busy / "cgroup.procs").write_text(str(sleeper.pid))
        removed = sweep_dead_boots("sweep-own")
        assert dead in removed and not dead.exists()
        assert live.exists() and busy.exists()  # a live boot's; a process in it
    finally:
        sleeper.kill()
        sleeper.wait()
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()


def test_a_held_boot_keeps_its_directories_until_cleanup_and_a_dead_ones_are_swept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``hold_boot``: the kernel's empty ``kernel.PID.0`` group keeps its boot's directories
    between commands; ``cleanup_all`` (shutdown) removes it with the rest, and a dead
    kernel's (its pid gone) is swept like any of its groups."""
    from exo.sandbox._cgroups import cleanup_all, hold_boot

    assert hold_boot("held-live").startswith("held")
    group = _group("held-live", f"p2.{os.getpid()}.1")
    tops = [d.parent for d in group.dirs]
    group.remove()
    assert all(top.is_dir() for top in tops)  # not removed with its last process's group
    assert [p.name for p in leftover_groups("held-live")] == [f"kernel.{os.getpid()}.0"] * len(tops)
    cleanup_all("held-live")
    assert leftover_groups("held-live") == [] and not any(top.exists() for top in tops)
    monkeypatch.setattr(os, "getpid", lambda: DEAD_PID)
    hold_boot("held-dead")
    monkeypatch.undo()
    try:
        assert leftover_groups("held-dead")
        sweep_dead_boots("sweep-own")
        assert leftover_groups("held-dead") == []
    finally:
        cleanup_all("held-dead")


def test_release_undoes_a_hold_and_keeps_a_boot_still_in_use() -> None:
    """``release_boot``: the kernel's hold goes, and its boot's directories with it unless a
    group of the boot still uses them."""
    from exo.sandbox._cgroups import (
        boot_dirname,
        cleanup_all,
        hierarchies,
        hold_boot,
        release_boot,
    )

    tops = [h.base / boot_dirname("held-released") for h in hierarchies()]
    try:
        hold_boot("held-released")
        release_boot("held-released")
        assert leftover_groups("held-released") == [] and not any(t.exists() for t in tops)
        release_boot("held-released")  # nothing held: nothing to do
        hold_boot("held-released")
        group = _group("held-released", f"p2.{os.getpid()}.1")
        release_boot("held-released")
        assert leftover_groups("held-released") == group.dirs
        group.remove()
        assert not any(t.exists() for t in tops)
    finally:
        cleanup_all("held-released")


def test_a_kernel_shut_down_while_its_sandbox_step_starts_leaves_no_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DEFERRED step that holds the boot's cgroup directories, still starting when the
    kernel shut down (a one-line script to `exo boot`), held them after the shutdown's
    cleanup_all: they stayed until the next boot's sweep. Replayed in that order: the
    shutdown arrives inside the step's start."""
    from tests._support.kernels import booted_kernel

    from exo.kernel.subsystems.processes import SandboxFilters

    with booted_kernel(tmp_path / "root") as kernel:
        boot_id = kernel.core.boot_id
        start = SandboxFilters.start

        def late_start(self: SandboxFilters) -> str:
            kernel.shutdown()  # the process manager's cleanup_all runs here
            return start(self)

        monkeypatch.setattr(SandboxFilters, "start", late_start)
        kernel.start_deferred()
        kernel.wait_deferred(60)
        assert any(s.name == "Sandbox filters" and s.status.value == "SKIP"
                   for s in kernel.report.steps), kernel.report.steps
        assert leftover_groups(boot_id) == []
