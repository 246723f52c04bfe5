"""Eco++ placement in a booted kernel: a CPU-burning Exo process and an interactive one end
up with different CPU affinity and cgroup CPU weights, as AI-Res measures them; a user's
override from the shell sticks; bad input gets one clear line."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.system.helpers import APP_PYTHON
from tests.unit.shell._support import run

from exo.kernel.kernel import Kernel
from exo.sched.topology import read as read_topology
from exo.shell import Shell, Vfs

BURN = "while True: pass"
IDLE = "import time\nwhile True: time.sleep(0.05)"


@pytest.fixture
def placed_kernel(kernel: Kernel) -> Iterator[Kernel]:
    kernel.start_deferred()
    kernel.wait_deferred()
    yield kernel


def _spawn(kernel: Kernel, code: str) -> Any:
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        return kernel.processes.spawn([APP_PYTHON, "-c", code], [],
                                      stdio=(null, null, null), cwd="/")
    finally:
        os.close(null)


def _placement(shell: Shell) -> dict[int, dict[str, Any]]:
    status, out, err = run(shell, "sched --json")
    assert (status, err) == (0, "")
    data = json.loads(out)["placement"]
    return {} if data is None else {r["pid"]: r for r in data["processes"]}


def _wait_roles(shell: Shell, want: dict[int, str], timeout: float = 40.0) -> dict[int, Any]:
    deadline = time.monotonic() + timeout
    rows: dict[int, Any] = {}
    while time.monotonic() < deadline:
        rows = _placement(shell)
        if all(rows.get(pid, {}).get("role") == role for pid, role in want.items()):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"placement never reached {want}: {rows}")


def _affinities(proc: Any) -> set[frozenset[int]]:
    """The CPU affinity of every thread of every host process in the Exo process's group."""
    found = set()
    for path in proc.sandbox.cgroup.procs_files:
        for hp in path.read_text().split():
            for tid in os.listdir(f"/proc/{hp}/task"):
                found.add(frozenset(os.sched_getaffinity(int(tid))))
    return found


def _weight(proc: Any) -> int:
    for d in proc.sandbox.cgroup.dirs:
        for name in ("cpu.shares", "cpu.weight"):
            if (d / name).exists():
                return int((d / name).read_text())
    raise AssertionError("no CPU controller in the process's cgroup")


def test_a_burner_and_an_interactive_process_are_placed_apart_and_overrides_stick(
        placed_kernel: Kernel) -> None:
    kernel = placed_kernel
    (kernel.root / "home" / "root").mkdir(parents=True, exist_ok=True)
    shell = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()))
    burner, idle = _spawn(kernel, BURN), _spawn(kernel, IDLE)
    try:
        rows = _wait_roles(shell, {burner.pid: "batch", idle.pid: "interactive"})
        assert rows[burner.pid]["class"] == "cold" and rows[idle.pid]["class"] == "hot"
        assert rows[burner.pid]["mode"] == rows[idle.pid]["mode"] == "auto"
        assert _weight(burner) < _weight(idle)
        cpus = os.sched_getaffinity(0)
        if len(cpus) >= 2:
            assert _affinities(burner) == {frozenset(rows[burner.pid]["cpus"])}
            assert _affinities(idle) == {frozenset(rows[idle.pid]["cpus"])}
            assert not set(rows[burner.pid]["cpus"]) & set(rows[idle.pid]["cpus"])
        status, out, err = run(shell, "sched")
        assert status == 0 and err == ""
        summary = next(line for line in out.splitlines() if line.startswith("placement"))
        if not read_topology().heterogeneous:  # this VM: 2 identical cores, and it says so
            assert "identical" in summary and "no efficiency cores" in summary
        else:
            assert "heterogeneous" in summary and "efficiency CPU" in summary
        assert any(line.split()[:3] == [str(burner.pid), "batch", "auto"]
                   for line in out.splitlines())

        # The user's word beats the measurement, and keeps beating it.
        status, out, err = run(shell, f"sched place {idle.pid} batch")
        assert (status, err) == (0, "")
        assert out.startswith(f"process {idle.pid}: batch (override), CPUs ")
        time.sleep(3.5)  # three more samples, all measuring it as interactive
        row = _placement(shell)[idle.pid]
        assert (row["role"], row["mode"], row["class"]) == ("batch", "override", "hot")
        assert _weight(idle) == _weight(burner)
        if len(cpus) >= 2:
            assert _affinities(idle) == {frozenset(row["cpus"])}
        assert run(shell, f"sched place {idle.pid} auto")[0] == 0
        _wait_roles(shell, {idle.pid: "interactive"}, timeout=10)

        # top shows each process's class and role
        status, out, _ = run(shell, "top -n 1")
        line = next(x for x in out.splitlines() if x.split()[:1] == [str(burner.pid)])
        assert line.split()[2] == "cold:batch"
        assert any(x.startswith("placement (Eco++) on:") for x in out.splitlines())
    finally:
        for proc in (burner, idle):
            kernel.processes.kill(proc.pid)
            kernel.processes.wait(proc.pid, timeout=30)


def test_sched_place_bad_input_is_one_clear_line(placed_kernel: Kernel) -> None:
    kernel = placed_kernel
    (kernel.root / "home" / "root").mkdir(parents=True, exist_ok=True)
    shell = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()))
    for line, code in (("sched place 4242 batch", 1), ("sched place x batch", 2),
                       ("sched place 2 fast", 2), ("sched place", 2), ("sched --bogus", 2)):
        status, out, err = run(shell, line)
        assert (status, out) == (code, ""), line
        assert err.count("\n") == 1 and err.startswith("sched: "), (line, err)
        assert not err.startswith("sched: sched:"), err


def test_a_user_may_place_only_their_own_jobs(placed_kernel: Kernel) -> None:
    from exo.kernel.users import UserDatabase, session_grants
    from exo.shell import Session

    kernel = placed_kernel
    user = UserDatabase(kernel.root).add("alice", "wonderland")
    (kernel.root / "home" / "alice").mkdir(parents=True)
    session = Session(user.name, user.uid, user.home, session_grants(kernel.root, user))
    alice = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()), session)
    other = _spawn(kernel, IDLE)  # the administrator's, not alice's
    try:
        status, out, err = run(alice, f"sched place {other.pid} batch")
        assert (status, out) == (126, "") and "permission denied" in err
        status, out, _ = run(alice, "sched --json")
        assert status == 0 and other.pid not in _placement(alice)
    finally:
        kernel.processes.kill(other.pid)
        kernel.processes.wait(other.pid, timeout=30)
