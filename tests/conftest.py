"""Shared fixtures: a private Exo root per test, and the `exo` command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def exo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "exo-root"
    monkeypatch.setenv("EXO_ROOT", str(root))
    yield root


@pytest.fixture
def exo_cmd() -> list[str]:
    """How to invoke the `exo` command in a subprocess."""
    return [sys.executable, "-m", "exo"]


@pytest.fixture
def exo_env(exo_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["EXO_ROOT"] = str(exo_root)
    env.pop("EXO_BOOTSTRAP_FD", None)
    return env


@pytest.fixture
def exo_module(exo_cmd: list[str], exo_env: dict[str, str]
               ) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """``exo boot -q`` running on the test's root, its module manager (a DEFERRED step)
    answering; yields ``exo module ARGS...`` as a function. Shut down after."""
    kernel = subprocess.Popen([*exo_cmd, "boot", "-q"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=exo_env,
                              text=True)

    def exo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*exo_cmd, "module", *args], env=exo_env, text=True,
                              capture_output=True, timeout=60)

    try:
        deadline = time.monotonic() + 60
        while (r := exo("list")).returncode != 0:
            assert time.monotonic() < deadline, r.stderr
            time.sleep(0.2)
        yield exo
    finally:
        subprocess.run([*exo_cmd, "shutdown"], env=exo_env, capture_output=True, timeout=30)
        kernel.communicate(timeout=30)


# ------------------------------------------------------------------ suite-wide leak check
# Every test cleans up after itself; this catches the one that does not. What a test run
# must leave as it found it: POSIX shared memory, the kernel's FUSE mounts, Exo cgroups and
# child processes. (/dev/shm entries of iceoryx2, which the IPC benchmark may run beside the
# tests, are not ours.)


def _leak_snapshot() -> dict[str, set[str]]:
    import psutil

    return {
        "shared memory (/dev/shm)": {e for e in os.listdir("/dev/shm")
                                     if not e.startswith("iox2_")},
        "FUSE mounts": {line.split()[4] for line in
                        Path("/proc/self/mountinfo").read_text().splitlines()
                        if " exo-files " in line or " exo-dirs " in line},
        "cgroups": _exo_cgroups(),
        "child processes": {f"{c.pid} {c.name()}" for c in psutil.Process().children(True)
                            if c.is_running() and c.status() != psutil.STATUS_ZOMBIE},
    }


def _exo_cgroups() -> set[str]:
    """Exo cgroup directories; groups removed while we walk (a reaper finishing) are
    skipped rather than failing the walk."""
    found: set[str] = set()
    for top, dirs, _ in os.walk("/sys/fs/cgroup", onerror=lambda _exc: None):
        found.update(os.path.join(top, d) for d in dirs if d.startswith("exo-"))
    return found


_BEFORE: dict[str, set[str]] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _BEFORE.update(_leak_snapshot())


def _drop_other_sessions(session: pytest.Session,
                         leaks: dict[str, list[str]]) -> dict[str, list[str]]:
    """Leave out what other test runs and benchmarks on this host own: their kernels mount
    under their own pytest base directory (``pytest-of-USER/pytest-N``, another N) or a
    benchmark's ``/tmp/exo-bench-*``/``exo-isolation-*``, and their cgroups carry those
    kernels' boot ids. Only one run exists in CI; this keeps a developer's concurrent runs
    from failing each other."""
    import re

    ours = str(session.config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]
    other = re.compile(r"/pytest-of-[^/]+/pytest-\d+/|/tmp/exo-(bench|isolation)-")

    def foreign(path: str) -> bool:
        return not path.startswith(ours + "/") and bool(other.search(path))

    mounts = leaks.get("FUSE mounts", [])
    foreign_ids = {m.rsplit("-", 1)[-1] for m in mounts if foreign(m)}
    kept = {"FUSE mounts": [m for m in mounts if not foreign(m)],
            "cgroups": [c for c in leaks.get("cgroups", [])
                        if c.rsplit("exo-", 1)[-1] not in foreign_ids]}
    out = {**leaks, **{k: v for k, v in kept.items() if k in leaks}}
    return {kind: items for kind, items in out.items() if items}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _BEFORE or getattr(session.config, "workerinput", None) is not None:
        return
    import time

    deadline = time.monotonic() + 10  # exits and unmounts already under way may finish
    while True:
        leaks = {kind: sorted(found - _BEFORE.get(kind, set()))
                 for kind, found in _leak_snapshot().items()}
        leaks = {kind: items for kind, items in leaks.items() if items}
        if not leaks or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    leaks = _drop_other_sessions(session, leaks)
    if leaks:
        lines = [f"  {kind}: {', '.join(items[:10])}" for kind, items in leaks.items()]
        print("\nLEAK CHECK FAILED: the test run left behind\n" + "\n".join(lines))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
