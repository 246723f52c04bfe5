"""The ``kill`` syscall: an app signals its own children, and nobody else."""

from __future__ import annotations

from exo.kernel.kernel import Kernel

from .helpers import run_app


def test_an_app_stops_resumes_and_kills_its_child(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        import signal, time
        from exo_std import process
        pid = process.spawn(["/bin/sleep", "60"])
        process.kill(pid, signal.SIGSTOP)
        process.kill(pid, signal.SIGCONT)
        t0 = time.monotonic()
        process.kill(pid)                      # SIGTERM by default
        print("status", process.wait(pid), "quick", time.monotonic() - t0 < 10)
        try:
            process.kill(pid, signal.SIGKILL)  # reaped: no longer ours to signal
        except Exception as exc:
            print("again:", type(exc).__name__)
    """)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "status 143 quick True"  # 128 + SIGTERM, as a POSIX shell shows it
    assert lines[1] == "again: NotFound"


def test_an_app_cannot_signal_its_parent_the_kernel_or_a_stranger(kernel: Kernel) -> None:
    child = """
import os
from exo_std import process
for pid in (int(os.environ["EXO_PARENT_PID"]), 1, process.getpid(), 99999):
    try:
        process.kill(pid, 9)
        print(pid, "SIGNALLED")
    except Exception as exc:
        print(type(exc).__name__)
"""
    status, out, err = run_app(kernel, f"""
        from exo_std import process
        pid = process.spawn(["/usr/bin/python3", "-c", {child!r}])
        print("child exit", process.wait(pid))
        print("parent alive")
    """)
    assert status == 0, err
    assert out.splitlines() == ["NotFound"] * 4 + ["child exit 0", "parent alive"], out + err
