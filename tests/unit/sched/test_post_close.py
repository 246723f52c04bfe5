"""A post racing close() never writes into the file that reuses the eventfd's number.

Found by bench/sched_syscalls.py: a ring watcher posting its message back while the
scheduler closed wrote the eventfd's 8 bytes into a new Fusion Ring's memfd header
("not a Fusion Ring"). Without the lock this loop corrupted about a quarter of the
files opened just after close()."""

from __future__ import annotations

import os
import threading

from exo.sched.scheduler import Scheduler


def test_post_racing_close_never_writes_into_a_reused_fd() -> None:
    corrupted = 0
    for _ in range(300):
        sched = Scheduler("race")
        sched._ensure_epoll()
        stop = threading.Event()

        def poster(s: Scheduler = sched, done: threading.Event = stop) -> None:
            while not done.is_set():
                s.post(lambda: None)

        thread = threading.Thread(target=poster)
        thread.start()
        sched.close()
        fds = [os.memfd_create("reuse") for _ in range(3)]  # take the freed numbers
        stop.set()
        thread.join()
        for fd in fds:
            corrupted += bool(os.pread(fd, 8, 0))
            os.close(fd)
    assert corrupted == 0
