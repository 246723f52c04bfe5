"""exo.sched.services.Periodic: on a registered kernel scheduler it is a task (no thread
of its own), a bad tick does not end it, stop wakes it at once; without one it is a
thread running the same loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from exo.sched.scheduler import Scheduler
from exo.sched.services import Periodic, kernel_scheduler, register_kernel, unregister_kernel

BOOT = "unit-services"


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    s = Scheduler("kernel")
    t = threading.Thread(target=s.run, kwargs={"forever": True}, name="exo-scheduler")
    t.start()
    register_kernel(BOOT, s)
    try:
        yield s
    finally:
        unregister_kernel(BOOT, s)
        s.stop()
        t.join(5)
        assert not t.is_alive()
        s.close()
    assert kernel_scheduler(BOOT) is None


def _wait(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition never held")


def test_on_the_kernel_scheduler_it_is_a_task_survives_errors_and_stops_at_once(
        sched: Scheduler) -> None:
    calls: list[int] = []
    errors: list[BaseException] = []

    def tick() -> None:
        calls.append(threading.get_ident())
        if len(calls) == 2:
            raise ValueError("a bad tick")

    before = {t.name for t in threading.enumerate()}
    svc = Periodic(tick, 0.02, "svc-under-test", boot_id=BOOT, on_error=errors.append)
    svc.start()
    assert svc.on_task
    _wait(lambda: len(calls) >= 4)
    assert "svc-under-test" not in {t.name for t in threading.enumerate()} - before
    assert len(set(calls)) == 1 and calls[0] != threading.get_ident()  # the scheduler's
    assert [type(e) for e in errors] == [ValueError]
    assert "svc-under-test" in sched.proc_text()
    # an interval far longer than the test: stop must wake the sleeping task, not wait
    slow = Periodic(lambda: None, 3600, "slow", boot_id=BOOT)
    slow.start()
    _wait(lambda: "slow" in sched.proc_text())
    assert slow.stop(5)
    assert svc.stop(5)
    _wait(lambda: "svc-under-test" not in sched.proc_text())
    n = len(calls)
    time.sleep(0.1)
    assert len(calls) == n


def test_without_a_kernel_scheduler_it_runs_on_its_own_thread() -> None:
    calls: list[int] = []
    svc = Periodic(lambda: calls.append(threading.get_ident()), 0.02, "svc-thread",
                   boot_id="no-such-kernel")
    svc.start()
    assert not svc.on_task
    _wait(lambda: len(calls) >= 2)
    assert "svc-thread" in {t.name for t in threading.enumerate()}
    assert svc.stop(5)
    assert "svc-thread" not in {t.name for t in threading.enumerate()}
