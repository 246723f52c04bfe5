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


def _cpu_group(pid: int) -> str:
    """The v1 cpu cgroup path of a host process ("" when cpu is not a v1 hierarchy)."""
    with open(f"/proc/{pid}/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "cpu" in controllers.split(","):
                return path
    return ""


def _v1_cpu() -> bool:
    from exo.sandbox._cgroups import select

    return select(["cpu"])[0] == 1


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/cpu"), reason="no v1 cpu hierarchy")
def test_cpu_groups_only_for_a_cpu_limit_and_accounting_stays_in_the_boot() -> None:
    """Issue 10: no cpu group per process. Without a cpu limit a process sits in the
    boot's cpu group (where the power profiles cap the boot); with one it has its own, in
    that group; a child without a limit sits in its parent's cpu group, so the parent's
    limit binds it."""
    if not _v1_cpu():
        pytest.skip("cpu is not a v1 hierarchy here")
    boot = f"exo-{default_boot_id()}"
    plain = spawn(SandboxSpec(memory_max=64 << 20, pids_max=8), ["/bin/sleep", "60"])
    limited = spawn(SandboxSpec(pids_max=8, cpu_max=0.5), ["/bin/sleep", "60"])
    try:
        assert plain.cgroup is not None and limited.cgroup is not None
        assert not any((d / "cpu.shares").exists() for d in plain.cgroup.dirs)
        assert _cpu_group(plain.pid).endswith(f"/{boot}")
        own = _cpu_group(limited.pid)
        assert own.endswith(f"/{boot}/{limited.cgroup.dirs[0].name}")
        child = spawn(SandboxSpec(pids_max=4), ["/bin/sleep", "60"], cgroup_parent=limited)
        assert child.cgroup is not None
        assert _cpu_group(child.pid) == own  # charged to the parent's cpu limit
        # the child's memory and pids groups are still its own, nested in the parent's
        assert [d.parent for d in child.cgroup.dirs] == [
            d for d in limited.cgroup.dirs if not (d / "cpu.shares").exists()]
        child.kill()
        # A weight of its own (the scheduler's) gives a process its own cpu group.
        assert plain.cgroup.ensure_cpu_group()
        assert _cpu_group(plain.pid).endswith(f"/{boot}/{plain.cgroup.dirs[0].name}")
    finally:
        plain.close()
        limited.close()
    assert leftover_groups(default_boot_id()) == []
    assert not os.path.exists(f"/sys/fs/cgroup/cpu{_cpu_group(os.getpid()).rstrip('/')}/{boot}")


def test_a_pool_keeps_groups_ready_per_set_of_limits_and_removes_the_untaken() -> None:
    """``CgroupPool`` (the zygote's commands' groups): a take with none ready creates one;
    after the refill each set of limits asked for has ``SIZE`` ready, with those limits,
    empty; a take returns one of them; ``close`` removes what no one took."""
    import time

    from exo.sandbox._cgroups import CgroupPool

    boot = default_boot_id()
    pool = CgroupPool(boot, "pooltest")
    taken = []
    try:
        taken.append(pool.take(32 << 20, 7, None))
        deadline = time.monotonic() + 10
        while len(pool._ready.get((32 << 20, 7, None), [])) < CgroupPool.SIZE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ready = list(pool._ready[(32 << 20, 7, None)])
        for group in ready:
            assert group.members() == set()
            pids = [d / "pids.max" for d in group.dirs if (d / "pids.max").exists()]
            assert [p.read_text().strip() for p in pids] == ["7"]
        taken.append(pool.take(32 << 20, 7, None))
        assert taken[-1] in ready  # made ahead, not now
    finally:
        pool.close()
        for group in taken:
            group.remove()
    assert leftover_groups(boot) == []


def test_two_pools_of_one_process_never_name_a_group_alike() -> None:
    """A zygote that restarts gets a new pool while the old pool's groups are still in
    use: one numbering for the process keeps their names apart."""
    from exo.sandbox._cgroups import CgroupPool

    boot = default_boot_id()
    first, second = CgroupPool(boot, "pooltest"), CgroupPool(boot, "pooltest")
    taken = []
    try:
        taken = [first.take(None, 4, None), second.take(None, 4, None)]
        assert {g.dirs[0].name for g in taken} == {g.dirs[0].name for g in taken} and \
            taken[0].dirs[0].name != taken[1].dirs[0].name
    finally:
        first.close()
        second.close()
        for group in taken:
            group.remove()
    assert leftover_groups(boot) == []


def test_a_pool_takes_on_when_no_thread_can_refill_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no thread to refill on (the process at its thread limit), a take still makes
    its group (the error reached the spawn), and the next take tries the refill again
    (none was marked under way forever, which also held ``close`` 10 s)."""
    import time

    from exo import _threadcache
    from exo.sandbox._cgroups import CgroupPool

    def no_thread(fn: object, name: str) -> None:
        raise RuntimeError("can't start new thread")

    boot = default_boot_id()
    pool = CgroupPool(boot, "pooltest")
    taken = []
    try:
        with monkeypatch.context() as m:
            m.setattr(_threadcache, "start", no_thread)
            taken.append(pool.take(None, 5, None))
            taken.append(pool.take(None, 5, None))
        assert pool._idle.is_set()
        taken.append(pool.take(None, 5, None))  # a thread again: the refill starts
        deadline = time.monotonic() + 10
        while len(pool._ready.get((None, 5, None), [])) < CgroupPool.SIZE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        pool.close()
        for group in taken:
            group.remove()
    assert leftover_groups(boot) == []
