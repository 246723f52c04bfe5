"""exo.kernel.api.KernelApi on a booted kernel: what the shell, the control socket and
``exo run`` share, run once ("start under capabilities and a manifest, wait, map")."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest
from tests.system.helpers import APP_PYTHON

from exo.kernel.api import KernelApi, ProcessesUnavailable, exit_code, failure_status
from exo.kernel.kernel import Kernel
from exo.kernel.manifest import Manifest, parse_grant
from exo.sandbox import ExecFailed

NULL = os.devnull


def _stdio() -> tuple[int, int, int]:
    fd = os.open(NULL, os.O_RDWR | os.O_CLOEXEC)
    return fd, fd, fd


def test_exit_statuses_follow_the_shell() -> None:
    assert [exit_code(s) for s in (0, 3, -signal.SIGKILL, -signal.SIGINT)] == [0, 3, 137, 130]
    assert failure_status(ExecFailed("no such program", errno.ENOENT)) == 127
    assert failure_status(ExecFailed("not executable", errno.EACCES)) == 126
    assert failure_status(ProcessesUnavailable("no sandbox")) == 126
    assert failure_status(ValueError("other")) == 1


def test_run_waits_and_maps_the_status(kernel: Kernel) -> None:
    api = kernel.api
    stdio = _stdio()
    try:
        assert api.run([APP_PYTHON, "-c", "raise SystemExit(3)"], stdio=stdio) == 3
        killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
        assert api.run([APP_PYTHON, "-c", killed], stdio=stdio) == 137
        with pytest.raises(ExecFailed) as info:
            api.run(["/nonexistent/program"], stdio=stdio)
        assert failure_status(info.value) == 127
    finally:
        os.close(stdio[0])
    assert api.ps()[0]["command"] == "exo-kernel" and len(api.ps()) == 1  # all waited for
    assert any("spawned pid" in line for line in api.dmesg())


def test_grants_and_manifest_are_what_the_process_holds(kernel: Kernel) -> None:
    api = kernel.api
    manifest = Manifest(grants=(parse_grant("storage://home/a=READ"),))
    stdio = _stdio()
    try:
        proc = api.start([APP_PYTHON, "-c", "import time; time.sleep(30)"],
                         [parse_grant("storage://home/b=READ,WRITE")], manifest=manifest,
                         stdio=stdio)
        held = {(c["resource"], c["rights"]) for c in api.caps(proc.pid)}
        assert {r for r, _ in held} == {"storage://home/a", "storage://home/b"}
        assert any(c["pid"] == proc.pid for c in api.caps())
        assert any(r["event"] == "grant" and r["pid"] == proc.pid
                   for r in api.audit(pid=proc.pid))
        # cancelled (the shell's Ctrl-C): SIGINT, SIGKILL after the grace
        t0 = time.monotonic()
        status = api.wait(proc, cancelled=lambda: time.monotonic() - t0 > 0.2, grace=0.5)
        assert status in (130, 137), status
    finally:
        os.close(stdio[0])
    with pytest.raises(LookupError):
        api.kill(proc.pid, signal.SIGTERM)  # waited for: gone


def test_a_kernel_without_processes_says_so(kernel: Kernel) -> None:
    api = KernelApi(kernel.core, None, None)
    assert api.ps() == []
    with pytest.raises(ProcessesUnavailable):
        api.run(["/bin/true"])
    with pytest.raises(LookupError, match="capability space is not running"):
        api.caps()
    with pytest.raises(LookupError):
        api.kill(2, signal.SIGTERM)
