"""The kernel's one reaper: every exit noticed, no thread or descriptor kept when idle."""

from __future__ import annotations

import os
import subprocess
import threading

from exo.kernel.reaper import Reaper


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _reaper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "exo-reaper"]


def test_one_thread_watches_many_processes_and_ends_when_idle() -> None:
    fds_before = _fds()
    idle = _reaper_threads()
    reaper = Reaper()
    procs = [subprocess.Popen(["/bin/cat"], stdin=subprocess.PIPE)
             for _ in range(8)]
    exited: dict[int, int] = {}
    done = threading.Event()

    def on_exit(p: subprocess.Popen[bytes]) -> None:
        exited[p.pid] = p.wait()
        if len(exited) == len(procs):
            done.set()

    for p in procs:
        reaper.watch(p.pid, lambda p=p: on_exit(p))  # type: ignore[misc]
    assert reaper.watching() == 8
    # The kernel's own reaper may still linger from an earlier test (LINGER) and end
    # meanwhile: this reaper's threads are those not there before.
    mine = [t for t in _reaper_threads() if t not in idle]
    assert len(mine) == 1  # one, not eight
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
    assert done.wait(30)
    assert sorted(exited) == sorted(p.pid for p in procs)
    assert set(exited.values()) == {0}
    mine[0].join(30)  # it ends LINGER seconds after its last process
    assert reaper.watching() == 0 and not mine[0].is_alive()
    assert _fds() <= fds_before  # pidfds and the epoll set are closed


def test_a_process_already_reaped_is_handled_at_once() -> None:
    p = subprocess.Popen(["/bin/true"])
    p.wait()
    called = threading.Event()
    Reaper().watch(p.pid, called.set)
    assert called.wait(30)


def test_a_process_given_by_its_pidfd_is_watched_through_that_pidfd_not_its_number() -> None:
    """A zygote's command is not the kernel's child: by the time the kernel watches it,
    its pid may have been reaped and reused, so it is watched through the pidfd the
    zygote sent (a duplicate: the caller keeps and closes its own), never a
    ``pidfd_open`` of a number that may name another process by then."""
    reaper = Reaper()
    proc = subprocess.Popen(["/bin/cat"], stdin=subprocess.PIPE)
    pidfd = os.pidfd_open(proc.pid)
    done = threading.Event()
    try:
        # A pid that names no process: only the descriptor can say when it ends.
        reaper.watch(4_194_304 + 11, done.set, pidfd)
        assert reaper.watching() == 1 and not done.wait(0.3)
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
        assert done.wait(5.0)
        os.fstat(pidfd)  # still the caller's
    finally:
        os.close(pidfd)
