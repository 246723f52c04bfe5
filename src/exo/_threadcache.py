"""Run a function on a thread of its own, reusing threads that have just finished one.

The kernel starts short jobs on threads where a job may block for long (a process's
reclaim waits for its cgroup to empty; a shell job waits for its programs): a pool with a
fixed number of workers would let a few slow jobs hold up every later one. A new
``threading.Thread`` per job keeps them apart, but costs a thread's creation, its first
GIL handoff and the caller's wait for it to start on every job (a powerbox pipeline
started four such threads, ~1 ms of its Enter-to-output, measured with py-spy).

So, as trio's thread cache does (``trio._core._thread_cache``): a job goes to a thread
that is idle when there is one and to a new thread otherwise (never queued behind another
job), and a thread that finds no job within ``LINGER`` seconds ends. A kernel with no
work holds no thread here for longer than that.
"""

from __future__ import annotations

import queue
import sys
import threading

TYPE_CHECKING = False  # boot path rules (docs/ARCHITECTURE.md): no typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable

#: Seconds an idle thread waits for another job before it ends.
LINGER = 2.0


class ThreadCache:
    def __init__(self, linger: float = LINGER) -> None:
        self.linger = linger
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], str]] = queue.SimpleQueue()
        # Threads waiting for a job that no caller has handed one yet. Every change, and
        # every put, is made under _lock, so idle == waiting threads - queued jobs.
        self._idle = 0

    def start(self, fn: Callable[[], object], name: str) -> None:
        """Run ``fn()`` on a thread (named ``name`` while it runs) at once."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put((fn, name))
                return
        threading.Thread(target=self._work, args=(fn, name), name=name, daemon=True).start()

    def idle(self) -> int:
        with self._lock:
            return self._idle

    def _work(self, fn: Callable[[], object], name: str) -> None:
        me = threading.current_thread()
        while True:
            me.name = name
            try:
                fn()
            except BaseException:  # as a plain thread would: reported, the thread goes on
                threading.excepthook(threading.ExceptHookArgs(
                    [*sys.exc_info(), me]))
            del fn
            me.name = "exo-idle"
            with self._lock:
                self._idle += 1
            try:
                fn, name = self._jobs.get(timeout=self.linger)
            except queue.Empty:
                with self._lock:
                    try:  # handed one between the timeout and the lock
                        fn, name = self._jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return


_cache = ThreadCache()


def start(fn: Callable[[], object], name: str) -> None:
    """Run ``fn()`` on a thread of the process's one cache (:class:`ThreadCache`)."""
    _cache.start(fn, name)
