"""The kernel's periodic services as Exo tasks on the kernel's scheduler thread.

Why: each periodic service (AI-Res's one-second sampler and Eco++ placer, the audit
chain's TPM anchor timer) used to own an OS thread that slept in ``Event.wait``. As tasks
they share the one ``exo-scheduler`` thread, which sleeps in a single ``epoll_wait`` until
the earliest timer is due: no thread, stack or GIL hand-off per service, and ``/proc/sched``
and ``top`` list them with their class and prediction. Stopping one posts to the
scheduler's eventfd, so the task wakes at once instead of at its next tick.

Only work that is short between sleeps belongs here (a ``/proc`` sample, one TPM extend):
a burst blocks every other task of the kernel's scheduler while it runs. Work that waits
in a blocking system call for an unbounded time keeps its own thread.

With no kernel scheduler in this process (a unit test, ``exo ai`` outside a kernel) the
service runs on a thread of its own, the same loop; ``EXO_KERNEL_SERVICES=threads`` forces
that in a kernel too (the peer ``bench/sched_services.py`` measures against).
"""

from __future__ import annotations

import contextlib
import os
import threading

from exo.sched.predict import COLD

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.sched.scheduler import Event, Scheduler

THREADS_ENV = "EXO_KERNEL_SERVICES"  # "threads": every service on its own thread
_KERNEL: dict[str, Scheduler] = {}
_KERNEL_LOCK = threading.Lock()


def register_kernel(boot_id: str, sched: Scheduler) -> None:
    """The kernel ``boot_id``'s scheduler is running (``KernelScheduler.start``)."""
    with _KERNEL_LOCK:
        _KERNEL[boot_id] = sched


def unregister_kernel(boot_id: str, sched: Scheduler) -> None:
    with _KERNEL_LOCK:
        if _KERNEL.get(boot_id) is sched:
            del _KERNEL[boot_id]


def kernel_scheduler(boot_id: str | None) -> Scheduler | None:
    """The running scheduler of kernel ``boot_id`` in this process, if any."""
    if not boot_id or os.environ.get(THREADS_ENV, "").lower() == "threads":
        return None
    with _KERNEL_LOCK:
        return _KERNEL.get(boot_id)


class Periodic:
    """Calls ``fn`` every ``interval`` seconds until ``stop``: a task of the kernel's
    scheduler when kernel ``boot_id`` runs one here, else a daemon thread. An exception
    from ``fn`` is passed to ``on_error`` (if given) and the next tick still comes."""

    def __init__(self, fn: Callable[[], object], interval: float, name: str,
                 boot_id: str | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.fn = fn
        self.interval = interval
        self.name = name
        self.boot_id = boot_id
        self.on_error = on_error
        self.ticks = 0
        self.sched: Scheduler | None = None
        self._wake: Event | None = None       # the task's stop flag (scheduler thread only)
        self._stopped = threading.Event()     # the thread's stop flag; also set by stop()
        self._done = threading.Event()        # the loop has returned
        self._thread: threading.Thread | None = None

    @property
    def on_task(self) -> bool:
        """True when the service runs as an Exo task, not on a thread."""
        return self.sched is not None

    def start(self) -> None:
        sched = kernel_scheduler(self.boot_id)
        if sched is None:
            self._thread = threading.Thread(target=self._thread_loop, daemon=True,
                                            name=self.name)
            self._thread.start()
            return
        from exo.sched.scheduler import Event

        self.sched = sched
        self._wake = Event()
        # periodic, mostly asleep, a few ms per tick: a Cold hint keeps its first burst
        # out of the Hot queue until its own bursts say otherwise
        sched.spawn_threadsafe(self._task_loop, name=self.name, klass=COLD)

    def _tick(self) -> None:
        self.ticks += 1
        try:
            self.fn()
        except Exception as exc:  # a service must survive its own bad tick
            if self.on_error is not None:
                with contextlib.suppress(Exception):
                    self.on_error(exc)

    def _task_loop(self) -> None:
        assert self._wake is not None
        try:
            while not self._stopped.is_set() and not self._wake.wait(self.interval):
                self._tick()
        finally:
            self._done.set()

    def _thread_loop(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                self._tick()
        finally:
            self._done.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and wait (at most ``timeout`` s) for a tick in progress; False if the
        loop had not returned by then (the scheduler was already gone, or a tick hung)."""
        self._stopped.set()
        if self.sched is not None and self._wake is not None:
            wake = self._wake
            self.sched.post(wake.set)  # Event.set runs in the scheduler's thread
            if not self.sched.running:
                return self._done.is_set()
        elif self._thread is None:
            return True
        else:
            self._thread.join(timeout)
        return self._done.wait(timeout)


__all__ = ["Periodic", "kernel_scheduler", "register_kernel", "unregister_kernel"]
