"""NORMAL: the kernel's scheduler instance and ``/proc/sched``.

Starting it costs a thread that sleeps in ``epoll_wait`` on the scheduler's eventfd;
greenlet is imported only when the first task runs, so the boot path pays neither for
greenlet nor for any task. The kernel's periodic services (AI-Res's sampler and Eco++
placer, the audit anchor timer) run here as tasks (``exo.sched.services``); serving
syscalls stays on a thread per process: on Exo tasks it was measured slower and no lighter
until one thread can wait on many rings (docs/scheduler.md, "Syscall serving").
"""

from __future__ import annotations

import os
import threading

from exo.kernel.subsystem import Subsystem
from exo.sched.services import register_kernel, unregister_kernel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.core import KernelCore
    from exo.sched.scheduler import Scheduler


class KernelScheduler(Subsystem):
    """Owns the kernel's ``Scheduler`` and the thread that runs it."""

    __slots__ = ("_core", "_thread", "sched")

    def __init__(self, core: KernelCore) -> None:
        self._core = core
        self.sched: Scheduler | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        from exo.sched.scheduler import Scheduler

        sched = self.sched = Scheduler("kernel")
        self._thread = threading.Thread(target=self._run, name="exo-scheduler", daemon=True)
        self._thread.start()
        register_kernel(self._core.boot_id, sched)
        c = sched.config
        return (f"predictive O(1), EMA α {c.alpha} over {c.history} bursts, hot < "
                f"{c.hot_ns / 1e6:g} ms, cold ≥ {c.cold_ns / 1e6:g} ms; {os.cpu_count()} CPUs")

    def _run(self) -> None:
        assert self.sched is not None
        try:
            self.sched.run(forever=True)
        except BaseException as exc:  # the boot log is the only place to say it
            # services started from now on get threads of their own, not a dead loop
            unregister_kernel(self._core.boot_id, self.sched)
            self._core.log(f"scheduler: stopped: {exc!r}")

    def stop(self) -> None:
        if self.sched is None:
            return
        unregister_kernel(self._core.boot_id, self.sched)
        self.sched.stop()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._thread is None or not self._thread.is_alive():
            self.sched.close()

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return {"sched": self.sched.proc_text} if self.sched is not None else {}
