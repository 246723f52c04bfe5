"""``posix-x``, ``top`` and ``sched`` in the shell (issues 10 and 14)."""

from __future__ import annotations

import json
import os
import select
import threading
import time

from exo.kernel.kernel import Kernel
from exo.shell import Shell

from ._support import run


def test_posix_x_syscalls_is_posix_x_main(root_shell: Shell) -> None:
    status, out, err = run(root_shell, "posix-x syscalls openat getpid --json")
    assert (status, err) == (0, "")
    assert [r["name"] for r in json.loads(out)] == ["openat", "getpid"]
    status, _, err = run(root_shell, "posix-x syscalls nosuchcall")
    assert status == 1 and "no such x86-64 syscall" in err
    assert run(root_shell, "posix-x bogus")[0] == 2
    status, out, _ = run(root_shell, "posix-x analyze --help")
    assert status == 0 and "--deep" in out  # on the command's stdout, not the shell's


def test_posix_x_analyze_takes_exo_paths(root_shell: Shell, kernel: Kernel) -> None:
    # the system directories are the host's, as inside every Exo process
    status, out, err = run(root_shell, "posix-x analyze /usr/bin/true --json")
    assert (status, err) == (0, "")
    assert json.loads(out)["path"] == "/usr/bin/true"
    # anything else is the Exo tree's, named by its Exo path (relative to the cwd too)
    (kernel.root / "home" / "root" / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    status, out, err = run(root_shell, "posix-x analyze tool.sh")
    assert (status, err) == (0, "")
    assert "/home/root/tool.sh" in out and str(kernel.root) not in out
    status, out, err = run(root_shell, "posix-x analyze /home/nope")
    assert status == 1 and err == "posix-x analyze: /home/nope: no such file\n"


def test_posix_x_analyze_is_bounded_by_the_session(alice: Shell, kernel: Kernel) -> None:
    (kernel.root / "home" / "root" / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    status, out, err = run(alice, "posix-x analyze /home/root/tool.sh")
    assert (status, out) == (126, "") and "permission denied" in err


def test_posix_x_run_runs_a_linux_program_as_a_shell_job(root_shell: Shell) -> None:
    """`posix-x run` in the shell: a bare name found in the system directories, the
    [posix_x] defaults (system directories, no fork), the shell's pipes."""
    assert run(root_shell, "posix-x run -- python3 -c 'print(6*7)'") == (0, "42\n", "")
    status, out, err = run(root_shell, "posix-x run -- nosuchprog")
    assert (status, out) == (127, "") and err.count("\n") == 1
    assert "no such program in the system directories" in err
    status, _, err = run(root_shell, "posix-x run -- python3 -c 'import os; os.fork()'")
    assert status == 1 and "Resource temporarily unavailable" in err  # fork = false
    status, _, err = run(root_shell, "posix-x run")
    assert status == 2 and err.startswith("posix-x: usage: posix-x run")


def test_posix_x_run_is_bounded_by_the_session(alice: Shell) -> None:
    status, _, err = run(alice, "posix-x run --cap storage://=READ -- /bin/true")
    assert status == 126 and err.count("\n") == 1


def test_sched_prints_the_summary(root_shell: Shell) -> None:
    status, out, err = run(root_shell, "sched")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("scheduler kernel: predictive, EMA alpha 0.3 over 16 bursts")
    # then Eco++ placement: not running in a kernel whose DEFERRED phase has not started
    assert lines[-2].startswith("prediction accuracy")
    assert lines[-1].startswith("placement (Eco++): not running yet")
    assert run(root_shell, "sched -a")[1].splitlines()[-2].split()[:2] == ["ID", "NAME"]


def test_top_once_shows_processes_and_scheduler_tasks(root_shell: Shell,
                                                      kernel: Kernel) -> None:
    release = threading.Event()

    def ticker() -> None:
        while not release.is_set():
            sched.sleep(0.01)

    sched = kernel._started("scheduler").sched
    sched.spawn_threadsafe(ticker, name="ticker")
    try:
        time.sleep(0.2)
        status, out, err = run(root_shell, "run -- /bin/sleep 5 & sleep 0.3; top -n 1")
        assert (status, err.split("\n")[1:]) == (0, [""])
    finally:
        release.set()
        run(root_shell, "kill %1; wait")
    lines = out.splitlines()
    assert lines[0].startswith("top - ") and "processes 2 (2 running)" in lines[0]
    assert lines[1].split() == ["PID", "STATE", "CLASS", "PRED_MS", "CPU_S", "%CPU", "MEM",
                                "TIME", "COMMAND"]
    kernel_row, sleep_row = lines[2].split(), lines[3].split()
    assert kernel_row[:2] == ["1", "running"] and kernel_row[-1] == "exo-kernel"
    assert sleep_row[:2] == ["2", "running"] and sleep_row[-2:] == ["/bin/sleep", "5"]
    assert sleep_row[6].endswith(("K", "M"))  # memory, from its cgroup or /proc
    assert any(line.startswith("scheduler kernel: predictive") for line in lines)
    task = next(line.split() for line in lines if "ticker" in line)
    assert task[2] in ("runnable", "running", "blocked")
    assert task[3] in ("hot", "normal", "cold")


def test_top_frames_and_bad_options(root_shell: Shell) -> None:
    status, out, _ = run(root_shell, "top -n 2 -d 0.1")
    assert status == 0 and out.count("top - ") == 2
    assert run(root_shell, "top --once")[1].count("top - ") == 1
    assert run(root_shell, "top -b -n 1 | head -1")[1].startswith("top - ")  # procps's -b
    assert run(root_shell, "top -n 0")[0] == 2
    assert run(root_shell, "top -x")[0] == 2


def test_top_live_quits_on_q(root_shell: Shell) -> None:
    """At a terminal ``top`` redraws until ``q`` (the keys are read, not signals)."""
    master, slave = os.openpty()
    try:
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(
            root_shell.run_line("top -d 0.1", slave, slave, slave)))
        t.start()
        seen = b""
        deadline = time.monotonic() + 20
        while seen.count(b"top - ") < 2 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
        assert seen.count(b"top - ") >= 2  # redrawn
        os.write(master, b"q")
        t.join(10)
        assert not t.is_alive() and result == [0]
    finally:
        os.close(master)
        os.close(slave)
