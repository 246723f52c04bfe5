"""No starvation under a Hot flood: the bound of exo.sched.queues, checked on the real
scheduler.

The bound is in picks, not milliseconds (no timing assertion): with the budget cycle of
L = hot_budget + normal_budget + 1 picks, the k-th task in the Cold queue is picked within
k·L picks, whatever floods the Hot queue. Here 200 Hot tasks yield as fast as they can
while 3 Cold tasks (each burst a busy wait of 2 ms of wall time, so Cold by any clock with
the thresholds below) keep coming back: every Cold task must run again within k·L picks of
queueing, k its position in the Cold queue (3 unless the host preempted a Hot task long
enough to make it Cold). FIFO round robin, on the same load, makes them wait for the flood.
"""

from __future__ import annotations

import time

from exo.sched.predict import COLD, Config
from exo.sched.scheduler import Scheduler

CONFIG = Config(hot_ns=100_000, cold_ns=1_000_000)  # hot < 0.1 ms, cold ≥ 1 ms
FLOOD, COLD_TASKS, ROUNDS = 200, 3, 6


def worst_cold_wait_in_picks(policy: str) -> tuple[int, int]:
    """The largest (picks waited − position · L) of any Cold task (≤ 0: the bound held),
    and the largest wait in picks."""
    # Aging off (an hour): it only ever shortens waits, and is tested in test_queues.
    sched = Scheduler(policy=policy, config=CONFIG, age_ms=3_600_000)
    stop = False
    worst = 0  # the largest wait, in picks, over the bound for its queue position
    longest = 0

    def hot() -> None:
        while not stop:
            sched.yield_()

    def cold() -> None:
        nonlocal worst, longest, stop
        for _ in range(ROUNDS):
            end = time.perf_counter() + 0.002
            while time.perf_counter() < end:
                pass
            # Where it will queue: behind the Cold tasks already there (a Hot task
            # that the host preempted for milliseconds may have turned Cold too).
            position = len(sched.queues.queues[COLD]) + 1
            queued_at = sched.switches
            sched.yield_()
            waited = sched.switches - queued_at
            worst = max(worst, waited - position * sched.queues.cycle)
            longest = max(longest, waited)
        stop = True

    for _ in range(FLOOD):
        sched.spawn(hot, name="hot")
    colds = [sched.spawn(cold, name="cold", klass=COLD) for _ in range(COLD_TASKS)]
    sched.run()
    assert all(t.done and t.error is None for t in colds)
    assert all(t.klass == "cold" for t in colds)
    return worst, longest


def test_every_cold_task_runs_within_the_bound_under_a_hot_flood() -> None:
    over, longest = worst_cold_wait_in_picks("predictive")
    assert over <= 0, longest


def test_round_robin_makes_them_wait_for_the_flood() -> None:
    _, longest = worst_cold_wait_in_picks("fifo")
    assert longest >= FLOOD
