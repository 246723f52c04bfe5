"""Process states (issue 9): one kernel per root, ps that tells the truth, Ctrl-C on an
attached ``exo run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from exo.kernel.kernel import Kernel
from exo.kernel.manifest import parse_grant

from .helpers import APP_PYTHON


def _wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _boot(exo_cmd: list[str], exo_env: dict[str, str], exo_root: Path) -> subprocess.Popen[bytes]:
    kernel = subprocess.Popen([*exo_cmd, "boot", "-q"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=exo_env)
    _wait_for((exo_root / "var" / "run" / "kernel.sock").exists)
    return kernel


def _stop(kernel: subprocess.Popen[bytes]) -> None:
    kernel.terminate()
    kernel.wait(timeout=30)


def _ps(exo_cmd: list[str], exo_env: dict[str, str]) -> list[dict[str, object]]:
    r = subprocess.run([*exo_cmd, "ps", "--json"], env=exo_env, text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rows: list[dict[str, object]] = json.loads(r.stdout)
    return rows


def test_a_second_boot_on_a_running_root_refuses(exo_cmd: list[str], exo_env: dict[str, str],
                                                 exo_root: Path) -> None:
    kernel = _boot(exo_cmd, exo_env, exo_root)
    try:
        r = subprocess.run([*exo_cmd, "boot", "-q"], input="echo booted-twice\n",
                           env=exo_env, text=True, capture_output=True, timeout=60)
        assert r.returncode != 0
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("exo: a kernel (pid "), r.stderr
        assert "already running" in lines[0] and "[FAILED]" not in r.stderr
        assert kernel.poll() is None  # the first one is untouched
    finally:
        _stop(kernel)


def test_attached_run_answers_ctrl_c_with_130(exo_cmd: list[str], exo_env: dict[str, str],
                                              exo_root: Path) -> None:
    kernel = _boot(exo_cmd, exo_env, exo_root)
    try:
        run = subprocess.Popen([*exo_cmd, "run", "--", "/bin/sleep", "60"], env=exo_env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: any("sleep" in str(r["command"]) for r in _ps(exo_cmd, exo_env)))
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 130
        assert "Aborted" not in err and "Traceback" not in err, err
        # the process is killed and, reaped, gone from ps
        _wait_for(lambda: [r["pid"] for r in _ps(exo_cmd, exo_env)] == [1])
    finally:
        _stop(kernel)


def _boot_groups() -> set[Path]:
    """The boot groups (``exo-BOOT``) in this process's cgroup hierarchies."""
    from exo.sandbox._cgroups import hierarchies

    return {d for h in hierarchies() for d in h.base.glob("exo-*")}


def test_a_one_command_kernel_shuts_down_cleanly_on_sigterm_and_ignored_sigint(
        exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    """``exo run`` with no kernel on the root boots one for the command: SIGTERM stops it
    with 143, and Ctrl-C with 130 even when it started with SIGINT ignored (a background
    job, as a benchmark's): in both, the one-command kernel shuts down cleanly and leaves
    no cgroup behind (a kernel killed instead leaves them to the next boot's sweep)."""
    before = _boot_groups()
    for sig, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        run = subprocess.Popen([*exo_cmd, "run", "--", "/bin/sleep", "60"], env=exo_env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        # started: the one-command kernel made its boot's groups
        _wait_for(lambda: _boot_groups() - before)
        time.sleep(0.5)
        run.send_signal(sig)
        _, err = run.communicate(timeout=30)
        assert run.returncode == status, err
        assert "Traceback" not in err, err
        _wait_for(lambda: not _boot_groups() - before, 10)


def test_ps_states_stopped_and_running(kernel: Kernel) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    try:
        proc = kernel.api.start(["/bin/sleep", "60"], stdio=(null, null, null))
    finally:
        os.close(null)

    def state() -> str:
        return next(str(r["state"]) for r in kernel.api.ps() if r["pid"] == proc.pid)

    assert state() == "running"
    kernel.api.kill(proc.pid, signal.SIGSTOP)
    _wait_for(lambda: state() == "stopped", 10)
    kernel.api.kill(proc.pid, signal.SIGCONT)
    _wait_for(lambda: state() == "running", 10)
    kernel.api.kill(proc.pid, signal.SIGKILL)
    assert kernel.api.wait(proc) == 137
    assert [r["pid"] for r in kernel.api.ps()] == [1]


def test_an_exited_process_leaves_ps_and_its_time_stops(kernel: Kernel) -> None:
    """A process the kernel started leaves ps once reaped, waited for or not; an Exo
    process's exited child stays (for its parent's wait) with its TIME frozen."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        done = kernel.api.start(["/bin/true"], stdio=(null, null, null))
        done.exited.wait(30)
        _wait_for(lambda: done.pid not in [r["pid"] for r in kernel.api.ps()], 10)
        assert kernel.processes.wait(done.pid) == 0  # a late wait still gets the status

        parent_code = textwrap.dedent("""
            import sys
            from exo_std import process
            child = process.spawn(["/bin/true"], [])
            print(child, flush=True)
            sys.stdin.readline()
            print(process.wait(child), flush=True)
        """)
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        parent = kernel.processes.spawn([APP_PYTHON, "-c", parent_code],
                                        [parse_grant("storage://home/a=READ")],
                                        stdio=(in_r, out_w, null))
        os.close(in_r)
        os.close(out_w)
    finally:
        os.close(null)
    with os.fdopen(out_r) as out, os.fdopen(in_w, "w") as go:
        child = int(out.readline())

        def row() -> dict[str, object]:
            return next(r for r in kernel.api.ps() if r["pid"] == child)

        _wait_for(lambda: row()["state"] == "exited", 10)
        first = row()["elapsed_s"]
        time.sleep(0.3)
        assert row()["elapsed_s"] == first
        go.write("go\n")
        go.flush()
        assert out.readline().strip() == "0"
    assert kernel.processes.wait(parent.pid, timeout=30) == 0
    assert [r["pid"] for r in kernel.api.ps()] == [1]
