"""Exo tasks for applications: user-level threads the predictive scheduler runs.

    from exo_std import task

    def worker(n):
        task.sleep(0.01)              # blocks this task only
        return n * 2

    t = task.spawn(worker, 21)
    print(task.join(t), t)            # 42 <Task 1 'worker' done normal predicted ...>

Each OS thread has its own scheduler (``exo.sched.Scheduler``). Inside a task the calls
block only that task; outside any task (the program's main code) ``join``, ``sleep`` and
``yield_`` drive the thread's scheduler until they can return, so a program needs no
explicit event loop. A task is cooperative: it gives the CPU up at ``yield_``, ``sleep``,
``join``, ``recv``, ``wait_readable`` and ``Event.wait``.

Needs greenlet. The host's system Python, which runs sandboxed apps, may not have it
(Debian: ``python3-greenlet``); inside a sandbox the kernel shows its own, read-only, at
``RUNTIME_SITE`` and this module imports it from there. Elsewhere without greenlet,
importing this module fails with one line saying so, and the rest of exo_std works.
"""

from __future__ import annotations

import sys
import threading

#: Where the kernel shows its own greenlet, read-only, inside every sandbox (the host's
#: python3 may have none): ``exo.sandbox.namespace.RUNTIME_SITE``, which apps cannot import.
RUNTIME_SITE = "/run/exo/site"


def _runtime_greenlet() -> bool:
    """Import greenlet from ``RUNTIME_SITE``, if it is there and built for this CPython
    (its extension's name says which); the path is on ``sys.path`` only meanwhile."""
    import importlib
    import os

    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    try:
        names = os.listdir(f"{RUNTIME_SITE}/greenlet")
    except OSError:
        return False
    if not any(n.startswith("_greenlet.") and tag in n for n in names):
        return False
    sys.path.insert(0, RUNTIME_SITE)
    try:
        importlib.import_module("greenlet")
        return True
    except ImportError:
        return False
    finally:
        sys.path.remove(RUNTIME_SITE)


try:
    import greenlet  # type: ignore[import-untyped]  # noqa: F401 - checked here, used by exo.sched
except ImportError:
    if not _runtime_greenlet():
        raise ImportError(
            f"exo_std.task needs the greenlet package, which this Python ({sys.executable}, "
            f"{sys.version.split()[0]}) does not have: install it (Debian: apt install "
            f"python3-greenlet) or run under Exo-OS's own environment") from None

from exo.sched.predict import COLD, HOT, NORMAL  # noqa: E402 - after the greenlet check
from exo.sched.scheduler import Cancelled, Event, Scheduler, Task, outcome  # noqa: E402

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_threads = threading.local()


def scheduler() -> Scheduler:
    """The scheduler of the calling thread: the one running, else the thread's own."""
    from exo.sched.scheduler import _current

    running: Scheduler | None = getattr(_current, "sched", None)
    if running is not None:
        return running
    sched: Scheduler | None = getattr(_threads, "sched", None)
    if sched is None:
        sched = _threads.sched = Scheduler(f"thread-{threading.get_ident()}")
    return sched


def current() -> Task | None:
    """The task calling this, or None from outside any task."""
    from exo.sched.scheduler import _current

    running: Scheduler | None = getattr(_current, "sched", None)
    return running.current if running is not None else None


def spawn(fn: Callable[..., Any], *args: Any, name: str | None = None,
          klass: str | None = None, **kwargs: Any) -> Task:
    """Start ``fn(*args, **kwargs)`` as a task. ``klass`` ("hot", "normal", "cold") is a
    hint for its first burst; its own bursts decide afterwards."""
    hint = None if klass is None else {"hot": HOT, "normal": NORMAL, "cold": COLD}[klass]
    return scheduler().spawn(fn, *args, name=name, klass=hint, **kwargs)


def join(task: Task, timeout: float | None = None) -> Any:
    """``task``'s result (or its exception, re-raised); TimeoutError after ``timeout``."""
    sched = scheduler()
    if current() is not None:
        return sched.join(task, timeout)
    if not task.done:
        sched.run(until=task, timeout=timeout)
        if not task.done:
            raise TimeoutError(f"task {task.id} still running after {timeout} s")
    return outcome(task)


def _sleep_then(seconds: float) -> None:
    scheduler().sleep(seconds)


def sleep(seconds: float) -> None:
    """Block the calling task (outside a task: run the others meanwhile)."""
    if current() is not None:
        scheduler().sleep(seconds)
    else:
        join(spawn(_sleep_then, seconds, name="sleep"))


def yield_() -> None:
    """Give the other runnable tasks a turn."""
    if current() is not None:
        scheduler().yield_()
    else:
        join(spawn(_nothing, name="yield"))


def _nothing() -> None:
    """A task that returns at once: running it lets the tasks queued before it run."""


def cancel(task: Task) -> None:
    """Raise ``Cancelled`` in ``task`` at its next switch point (at once if blocked)."""
    task.sched.cancel(task)


def recv(endpoint: Any, timeout: float | None = None) -> Any:
    """Receive from a channel (``exo_std.ipc.Endpoint``, an ``exo.ipc`` ring or channel)
    blocking only the calling task."""
    return scheduler().recv(endpoint, timeout)


def wait_readable(fd: int, timeout: float | None = None) -> bool:
    """Block the calling task until ``fd`` is readable; False on timeout."""
    return scheduler().wait_readable(fd, timeout)


def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` as a task and everything it spawns until it returns; its result."""
    return join(spawn(fn, *args, **kwargs))


class Local:
    """Task-local attributes, as ``threading.local`` is per thread: each task sees its
    own values. Outside any task, the values belong to the calling thread."""

    __slots__ = ()

    def _store(self) -> dict[str, Any]:
        task = current()
        if task is not None:
            store: dict[str, Any] = task.locals.setdefault(self, {})
            return store
        per_thread: dict[Local, dict[str, Any]] = _threads.__dict__.setdefault("locals", {})
        return per_thread.setdefault(self, {})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._store()[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._store()[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._store()[name]
        except KeyError:
            raise AttributeError(name) from None


__all__ = ["Cancelled", "Event", "Local", "Task", "cancel", "current", "join", "recv",
           "run", "scheduler", "sleep", "spawn", "wait_readable", "yield_"]
