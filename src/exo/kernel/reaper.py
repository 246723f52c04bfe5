"""One thread notices every Exo process's exit, instead of one blocked thread per process.

A thread blocked in ``waitpid`` per process made every live process cost the kernel a
thread (and a hostile app spawning children made the kernel spend them). Here each
process's bubblewrap monitor (a direct child of the kernel) is watched through a pidfd
(``pidfd_open``, Linux 5.3+) in one epoll set: a pidfd becomes readable when its process
ends. The exit handler then runs on a thread of its own, so that a slow reclaim (a cgroup
that takes time to empty) never delays noticing the next exit: threads now follow the
processes *exiting* at a moment, not the processes alive.

The watcher thread exists only while something is watched, and ``LINGER`` seconds after:
it then closes its epoll set and ends, and the next ``watch`` starts a new one, so a kernel
with no processes holds no thread and no descriptor here for long. The exit handlers run on
threads of the kernel's thread cache (``exo._threadcache``): each on a thread of its own,
one that has just finished another handler when there is one. Linux-only, like the
sandbox that starts the processes.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading

from exo import _threadcache

TYPE_CHECKING = False  # boot path rules (docs/ARCHITECTURE.md): no typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable

#: Seconds the watcher thread stays with nothing to watch before it ends (a shell's
#: commands follow each other closely: a thread started and ended per command cost each
#: its creation and a GIL handoff on the shell's path).
LINGER = 2.0


class Reaper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[int, Callable[[], None]]] = {}  # pidfd -> (pid, fn)
        self._epoll: select.epoll | None = None
        self._thread: threading.Thread | None = None

    def watch(self, pid: int, on_exit: Callable[[], None], pidfd: int = -1) -> None:
        """Call ``on_exit()`` (on a thread of its own) once process ``pid`` has ended.

        ``pidfd``: a pidfd of it already held (a zygote's command: not the kernel's child,
        so its pid may be reaped and reused before a ``pidfd_open`` of the number); a
        duplicate is watched. If the process cannot be watched (no descriptor left for its
        pidfd) ``on_exit`` is started at once: it must wait for the exit itself
        (``waitpid``, as the kernel's ``_reap`` does), which costs a thread for that
        process only, as before.
        """
        try:
            pidfd = (fcntl.fcntl(pidfd, fcntl.F_DUPFD_CLOEXEC, 3) if pidfd >= 0
                     else os.pidfd_open(pid))
        except OSError:  # already gone and reaped, or no pidfd to be had: handle it now
            self._dispatch(pid, on_exit)
            return
        with self._lock:
            try:
                if self._epoll is None:
                    self._epoll = select.epoll()
                self._epoll.register(pidfd, select.EPOLLIN)
            except OSError:
                os.close(pidfd)
                watched = False
            else:
                self._watched[pidfd] = (pid, on_exit)
                watched = True
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, args=(self._epoll,),
                                                    name="exo-reaper", daemon=True)
                    self._thread.start()
        if not watched:
            self._dispatch(pid, on_exit)

    def watching(self) -> int:
        with self._lock:
            return len(self._watched)

    def _run(self, epoll: select.epoll) -> None:
        while True:
            with self._lock:
                timeout = -1.0 if self._watched else LINGER
            try:
                events = epoll.poll(timeout)
            except InterruptedError:
                continue
            done: list[tuple[int, Callable[[], None]]] = []
            with self._lock:
                for fd, _ in events:
                    entry = self._watched.pop(fd, None)
                    if entry is None:
                        continue
                    epoll.unregister(fd)
                    os.close(fd)
                    done.append(entry)
                last = not events and not self._watched
                if last:  # nothing watched for LINGER s: this thread and its epoll set end
                    self._thread = self._epoll = None
                    epoll.close()
            for pid, fn in done:
                self._dispatch(pid, fn)
            if last:
                return

    @staticmethod
    def _dispatch(pid: int, fn: Callable[[], None]) -> None:
        _threadcache.start(fn, f"exo-reclaim-{pid}")


_reaper: Reaper | None = None
_reaper_lock = threading.Lock()


def watch(pid: int, on_exit: Callable[[], None], pidfd: int = -1) -> None:
    """The kernel process's one reaper (several ``Kernel`` objects in tests share it)."""
    global _reaper
    with _reaper_lock:
        if _reaper is None:
            _reaper = Reaper()
    _reaper.watch(pid, on_exit, pidfd)


def settle(timeout: float = 2 * LINGER + 1.0) -> bool:
    """Wait until the kernel's reaper watches nothing and its thread has ended (it lingers
    ``LINGER`` seconds with its epoll set open), so that a count of this process's
    descriptors or threads taken next stays put. False when it still watches a process
    (or did not end in time). For tests that compare such counts."""
    reaper = _reaper
    if reaper is None:
        return True
    with reaper._lock:
        if reaper._watched:
            return False
        thread = reaper._thread
    if thread is not None:
        thread.join(timeout)
    with reaper._lock:
        return not reaper._watched and reaper._thread is None
