"""The run queues: FIFO per class, the budget, aging, stealing (fake tasks, fake time)."""

from __future__ import annotations

from exo.sched.predict import COLD, HOT, NORMAL
from exo.sched.queues import FifoQueue, RunQueues


class Fake:
    __slots__ = ("enq_ns", "name", "started")

    def __init__(self, name: str, started: bool = False) -> None:
        self.name = name
        self.enq_ns = 0
        self.started = started

    def __repr__(self) -> str:
        return self.name


def test_each_class_is_fifo_and_hot_goes_first() -> None:
    q = RunQueues()
    for i in range(3):
        q.push(Fake(f"n{i}"), NORMAL, 0)
        q.push(Fake(f"h{i}"), HOT, 0)
    picked = [q.pick(1).name for _ in range(6)]
    assert picked == ["h0", "h1", "h2", "n0", "n1", "n2"]
    assert q.pick(1) is None


def test_the_budget_gives_normal_and_cold_their_turns_under_a_hot_flood() -> None:
    q = RunQueues(hot_budget=4, normal_budget=2, age_ns=10**18)  # no aging here
    cycle = 4 + 2 + 1
    for i in range(100):
        q.push(Fake(f"h{i}"), HOT, 0)
    q.push(Fake("n"), NORMAL, 0)
    q.push(Fake("c"), COLD, 0)
    picked = [q.pick(0).name for _ in range(cycle)]
    assert "n" in picked and "c" in picked


def test_aging_promotes_the_oldest_waiter() -> None:
    q = RunQueues(age_ns=1000)
    q.push(Fake("h"), HOT, 500)
    q.push(Fake("c"), COLD, 0)
    assert q.pick(999).name == "h"      # not old enough yet: Hot first
    q.push(Fake("h2"), HOT, 999)
    q.push(Fake("h3"), HOT, 999)
    assert q.pick(1001).name == "h2"    # aged, but the heads are looked at every age/8
    assert q.pick(999 + 125).name == "c"  # now: promoted past Hot
    assert q.promotions == 1


def test_stealing_takes_only_movable_cold_tasks() -> None:
    q = RunQueues()
    q.push(Fake("h"), HOT, 0)
    q.push(Fake("c-started", started=True), COLD, 0)
    assert q.steal_cold(lambda t: not t.started) is None
    q.push(Fake("c-new"), COLD, 0)
    stolen = q.steal_cold(lambda t: not t.started)
    assert stolen is not None and stolen.name == "c-new"
    assert len(q) == 2


def test_the_fifo_baseline_ignores_classes() -> None:
    q = FifoQueue()
    for name, klass in (("c", COLD), ("h", HOT), ("n", NORMAL)):
        q.push(Fake(name), klass, 0)
    assert [q.pick(0).name for _ in range(3)] == ["c", "h", "n"]
