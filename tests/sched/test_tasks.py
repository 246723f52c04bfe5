"""Exo tasks through exo_std.task: spawn, join, sleep, yield, cancel, task-local values,
events, blocking on a pipe and on a Fusion Ring without blocking the other tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exo.sched.predict import COLD
from exo.sched.scheduler import Scheduler
from exo_std import task

SRC = Path(__file__).resolve().parents[2] / "src"


def test_spawn_and_join_return_results() -> None:
    log: list[str] = []

    def worker(name: str, n: int) -> str:
        for i in range(n):
            log.append(f"{name}{i}")
            task.yield_()
        return name.upper()

    a = task.spawn(worker, "a", 2)
    b = task.spawn(worker, "b", 2)
    assert task.join(a) == "A" and task.join(b) == "B"
    # Each task's own steps in order; how they interleave is the scheduler's choice (a
    # new task is Normal, one that yielded after a short burst is Hot and goes first).
    assert [x for x in log if x[0] == "a"] == ["a0", "a1"]
    assert sorted(log) == ["a0", "a1", "b0", "b1"]


def test_sleep_blocks_only_the_sleeping_task() -> None:
    order: list[str] = []

    def sleeper() -> None:
        task.sleep(0.02)
        order.append("sleeper")

    def busy() -> None:
        for _ in range(3):
            order.append("busy")
            task.yield_()

    s = task.spawn(sleeper)
    b = task.spawn(busy)
    task.join(b)
    task.join(s)
    assert order == ["busy", "busy", "busy", "sleeper"]


def test_a_task_can_join_another_and_sees_its_exception() -> None:
    def boom() -> None:
        raise ValueError("boom")

    def parent() -> str:
        child = task.spawn(boom)
        try:
            task.join(child)
        except ValueError as exc:
            return str(exc)
        return "no error"

    assert task.run(parent) == "boom"


def test_cancel_a_blocked_task_and_a_task_that_never_ran() -> None:
    def forever() -> None:
        task.sleep(3600)

    blocked = task.spawn(forever)
    task.yield_()  # it runs and blocks
    task.cancel(blocked)
    with pytest.raises(task.Cancelled):
        task.join(blocked)
    never = task.spawn(forever)
    task.cancel(never)
    with pytest.raises(task.Cancelled):
        task.join(never)
    assert not never.started


def test_join_with_a_timeout_from_outside_any_task() -> None:
    t = task.spawn(task.sleep, 3600)
    with pytest.raises(TimeoutError):
        task.join(t, timeout=0.01)
    task.cancel(t)
    with pytest.raises(task.Cancelled):
        task.join(t)


def test_task_local_values_are_per_task() -> None:
    local = task.Local()
    local.who = "main"

    def worker(name: str) -> str:
        local.who = name
        task.yield_()
        return str(local.who)

    ts = [task.spawn(worker, n) for n in ("x", "y")]
    assert [task.join(t) for t in ts] == ["x", "y"]
    assert local.who == "main"


def test_events_wake_their_waiters() -> None:
    ev = task.Event()

    def waiter() -> bool:
        return ev.wait()

    def setter() -> None:
        task.sleep(0.005)
        ev.set()

    w = task.spawn(waiter)
    task.spawn(setter)
    assert task.join(w) is True


def test_the_task_object_shows_class_prediction_and_statistics() -> None:
    def short() -> None:
        for _ in range(5):
            task.yield_()

    t = task.spawn(short, name="short")
    task.join(t)
    stats = t.stats()
    assert stats["bursts"] == 6 and stats["class"] in ("hot", "normal", "cold")
    assert stats["accuracy"] is not None
    assert "short" in repr(t) and "predicted" in repr(t)


def test_a_task_waits_on_a_pipe_while_others_run() -> None:
    r, w = os.pipe()
    ticks = 0

    def reader() -> bytes:
        assert task.wait_readable(r, timeout=5)
        return os.read(r, 10)

    def ticker() -> None:
        nonlocal ticks
        for _ in range(3):
            ticks += 1
            task.sleep(0.001)
        os.write(w, b"hi")

    try:
        rd = task.spawn(reader)
        task.spawn(ticker)
        assert task.join(rd) == b"hi"
        assert ticks == 3
    finally:
        os.close(r)
        os.close(w)


def test_a_task_blocks_on_a_fusion_ring_without_blocking_the_others() -> None:
    from exo.ipc import FusionRing
    from exo.mm import SharedPool

    pool = SharedPool.create(1 << 20)
    prod, cons = FusionRing.pair(capacity=8, pool=pool)
    sched = task.scheduler()
    idle_before = sched.idle_waits
    progress = 0

    def receiver() -> bytes:
        return bytes(task.recv(cons, timeout=5))

    def other() -> None:
        nonlocal progress
        for _ in range(3):
            progress += 1
            task.sleep(0.002)

    sender = threading.Timer(0.05, prod.send, args=(b"ping",))
    try:
        rx = task.spawn(receiver)
        ot = task.spawn(other)
        sender.start()
        assert task.join(rx) == b"ping"
        task.join(ot)
        assert progress == 3
        # Nothing was runnable while it waited: the scheduler slept in epoll.
        assert sched.idle_waits > idle_before
        with pytest.raises(TimeoutError):
            task.run(task.recv, cons, 0.01)
    finally:
        sender.join()
        prod.close()
        cons.close()
        pool.close()


def test_cold_tasks_that_never_ran_are_stolen_by_an_idle_peer() -> None:
    busy = Scheduler("busy")
    thief = Scheduler("thief")
    thief.add_peer(busy)
    ran_in: list[int] = []

    def work() -> None:
        ran_in.append(threading.get_ident())

    for _ in range(4):
        busy.spawn(work, klass=COLD)
    th = threading.Thread(target=thief.run, kwargs={"timeout": 0.2})
    th.start()
    th.join()
    assert thief.stolen == 4 and len(ran_in) == 4
    assert set(ran_in) == {th.ident}
    assert not busy.tasks


def test_proc_sched_text_lists_the_tasks() -> None:
    sched = Scheduler("shown")

    def idle() -> None:
        sched.sleep(0.001)

    sched.spawn(idle, name="idle-one")
    sched.run(timeout=0.0005)
    text = sched.proc_text()
    assert text.startswith("scheduler shown: predictive, EMA alpha 0.3 over 16 bursts")
    assert "idle-one" in text and "prediction accuracy" in text
    sched.run()
    assert sched.stats()["finished"] == 1


def test_without_greenlet_exo_std_task_says_so_in_one_line() -> None:
    probe = subprocess.run(["/usr/bin/python3", "-c", "import greenlet"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the host's python3 has greenlet")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    r = subprocess.run(["/usr/bin/python3", "-c", "import exo_std; import exo_std.task"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: exo_std.task needs the greenlet package")
    assert "python3-greenlet" in last


def test_the_scheduler_module_does_not_import_greenlet() -> None:
    """The kernel's boot path creates a scheduler; greenlet loads with the first task."""
    code = ("import sys; from exo.sched.scheduler import Scheduler; Scheduler('k'); "
            "print('greenlet' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


def test_the_timeout_of_run_is_respected_without_tasks_finishing() -> None:
    sched = Scheduler("t")
    sched.spawn(sched.sleep, 3600)
    start = time.monotonic()
    sched.run(timeout=0.01)
    assert time.monotonic() - start < 60  # it returned (no timing claim)
    assert len(sched.tasks) == 1


def test_a_stop_before_run_is_not_lost() -> None:
    """The kernel may stop its scheduler before its thread has entered run()."""
    sched = Scheduler("stopped-early")
    sched.stop()
    sched.run(forever=True)  # returns at once
    sched.spawn(lambda: None)
    sched.run()
    assert sched.stats()["finished"] == 1
    sched.close()


def test_a_fresh_scheduler_waits_on_a_pipe() -> None:
    """The first wait of a scheduler creates its epoll (and registers the fd once)."""
    sched = Scheduler("fresh")
    r, w = os.pipe()

    def reader() -> bytes:
        assert sched.wait_readable(r, timeout=5)
        return os.read(r, 10)

    def writer() -> None:
        sched.sleep(0.001)
        os.write(w, b"ok")

    try:
        rd = sched.spawn(reader)
        sched.spawn(writer)
        sched.run()
        assert rd.result == b"ok" and rd.error is None
        assert not sched._fd_waiters
    finally:
        sched.close()
        os.close(r)
        os.close(w)


def test_a_message_for_a_cancelled_ring_waiter_goes_to_the_next_recv() -> None:
    from exo.ipc import FusionRing
    from exo.mm import SharedPool

    pool = SharedPool.create(1 << 20)
    prod, cons = FusionRing.pair(capacity=8, pool=pool)
    sched = Scheduler("ring-cancel")
    got: list[bytes] = []

    def first() -> None:
        sched.recv(cons)

    def second() -> None:
        for _ in range(2):
            got.append(bytes(sched.recv(cons, timeout=10)))

    def conductor() -> None:
        sched.sleep(0.01)           # `first` is parked in recv, its watcher waiting
        sched.cancel(waiter)
        sched.spawn(second, name="second")
        sched.sleep(0.01)
        prod.send(b"one")
        sched.sleep(0.01)
        prod.send(b"two")

    try:
        waiter = sched.spawn(first, name="first")
        sched.spawn(conductor)
        sched.run(timeout=30)
        assert isinstance(waiter.error, task.Cancelled)
        assert got == [b"one", b"two"]
        assert not sched.tasks
    finally:
        sched.close()
        prod.close()
        cons.close()
        pool.close()


def test_a_task_waiting_on_a_ring_alone_costs_no_switches() -> None:
    """Nothing else to run: the scheduler sleeps in epoll until the watcher posts the
    message; a polling implementation would switch (or wake) again and again."""
    from exo.ipc import FusionRing
    from exo.mm import SharedPool

    pool = SharedPool.create(1 << 20)
    prod, cons = FusionRing.pair(capacity=8, pool=pool)
    sched = Scheduler("ring-alone")
    sender = threading.Timer(0.1, prod.send, args=(b"late",))
    try:
        rx = sched.spawn(lambda: bytes(sched.recv(cons)), name="rx")
        sender.start()
        sched.run()
        assert rx.result == b"late"
        assert sched.switches == 2            # started once, resumed once by the wake-up
        assert sched.idle_waits <= 3           # one sleep (plus the eventfd's own wake)
        assert rx.predictor.bursts == 2
    finally:
        sender.join()
        sched.close()
        prod.close()
        cons.close()
        pool.close()
