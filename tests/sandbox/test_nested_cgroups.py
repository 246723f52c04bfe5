"""A sandbox nested in another's cgroup: the parent's limits bind the whole subtree, and
the parent's group going away takes the child with it."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from exo.sandbox import SandboxedProcess, SandboxError, SandboxSpec, default_boot_id, spawn
from exo.sandbox._cgroups import leftover_groups


def _value(proc: SandboxedProcess, name: str) -> int:
    assert proc.cgroup is not None
    for d in proc.cgroup.dirs:
        if (d / name).exists():
            return int((d / name).read_text().split()[0])
    raise AssertionError(f"no {name}")


def test_a_child_group_sits_in_its_parents_and_counts_against_it() -> None:
    parent = spawn(SandboxSpec(memory_max=64 << 20, pids_max=4), ["/bin/sleep", "60"])
    try:
        child = spawn(SandboxSpec(memory_max=32 << 20, pids_max=4), ["/bin/sleep", "60"],
                      cgroup_parent=parent)
        assert parent.cgroup is not None and child.cgroup is not None
        assert [d.parent for d in child.cgroup.dirs] == parent.cgroup.dirs
        # Hierarchical accounting: the parent's pids.current includes the child's tasks,
        # and its member list (the whole subtree) the child's process.
        assert _value(parent, "pids.current") == 3 + 3
        assert child.pid in parent.cgroup.members()
        assert parent.cgroup.pids_room() == 0
        # Full: a third sandbox in the subtree cannot even start its bubblewrap.
        with pytest.raises(SandboxError):
            spawn(SandboxSpec(pids_max=4), ["/bin/true"], cgroup_parent=parent)
        # The parent's end (its group removed) ends the child too.
        parent.kill()
        assert child.wait(30) == 128 + signal.SIGKILL
        assert not any(d.exists() for d in child.cgroup.dirs + parent.cgroup.dirs)
    finally:
        parent.close()
    assert leftover_groups(default_boot_id()) == []


def test_a_child_may_exit_first_and_its_group_goes_alone() -> None:
    parent = spawn(SandboxSpec(memory_max=64 << 20, pids_max=16), ["/bin/sleep", "60"])
    try:
        for _ in range(3):
            child = spawn(SandboxSpec(pids_max=4), ["/bin/true"], cgroup_parent=parent,
                          stdout=subprocess.DEVNULL)
            assert child.wait(30) == 0
        assert parent.cgroup is not None
        assert [p for d in parent.cgroup.dirs for p in d.iterdir() if p.is_dir()] == []
        assert parent.poll() is None and os.path.exists(f"/proc/{parent.pid}")
    finally:
        parent.kill()
    assert leftover_groups(default_boot_id()) == []
