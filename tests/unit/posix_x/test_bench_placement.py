"""The benchmark says where each mode's server was scheduled (its cpu cgroup, shares and
CPUs): a server in a nested cpu group loses to root tasks on a loaded host
(bench/posix_x_cgroup.py), so a result without this is not comparable."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from exo.posix_x.benchmark import _placement


def _own_cpu_group() -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _n, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return None


def test_placement_of_a_child_server() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        where = _placement(proc, "sleep")
        assert where["cpus"] == sorted(os.sched_getaffinity(proc.pid))
        group = _own_cpu_group()
        if group is not None:
            assert where["cpu_cgroup"] == group
    finally:
        proc.kill()
        proc.wait()


def test_placement_of_a_server_not_found_is_empty() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert _placement(proc, "no-such-server") == {}
    finally:
        proc.kill()
        proc.wait()


def test_the_seccomp_peer_is_bubblewrap_under_posix_x_filter(tmp_path: Path) -> None:
    """``--seccomp-peer``: the same bubblewrap view, with the seccomp program a POSIX-X
    program runs under loaded (mode 2: a filter) where plain bubblewrap has none."""
    import shutil

    import pytest

    from exo.posix_x.benchmark import _bwrap_view, _with_filter

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    plain = [*_bwrap_view([]), "--", "/bin/grep", "^Seccomp:", "/proc/self/status"]
    out = subprocess.run(plain, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Seccomp:", "0"]
    peer = _with_filter(plain, tmp_path)
    out = subprocess.run(peer, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Seccomp:", "2"]
