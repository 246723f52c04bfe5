"""The run queues: one FIFO per class, and an O(1) pick that cannot starve anyone.

``pick`` looks at no more than the heads of three deques, whatever the number of runnable
tasks, in this order:

1. **Aging.** If the oldest Cold task (the head of its FIFO) or else the oldest Normal one
   has been waiting longer than ``age_ns``, it is promoted: picked now, before Hot. The
   heads are looked at every ``age_ns / 8`` (not at every pick: see ``_promote``); when
   one is promoted they are looked at again at the next pick.
2. **Budget.** Otherwise the next slot of a fixed cycle decides which class goes first:
   ``hot_budget`` Hot slots, then ``normal_budget`` Normal slots, then one Cold slot. A slot
   whose class is empty falls through to the others (Hot, Normal, Cold order from a Hot
   slot; its own class first otherwise), so no CPU time is wasted.

**No starvation, the bound.** A cycle has L = hot_budget + normal_budget + 1 slots and at
least one of them serves Cold first, so whatever floods the Hot queue, the k-th task in the
Cold queue is picked within k·L picks (L = 16 by default). In time, with cooperative tasks
whose bursts last at most B: a Cold task waits at most ``age_ns`` · 9/8 + B before the
heads are checked with it aged; the tasks ahead of it in its FIFO are older, so aged too,
and are promoted at consecutive picks; so the k-th waits at most ``age_ns`` · 9/8 + k·B
(Normal likewise, after Cold's aged tasks). ``tests/sched/test_starvation.py`` checks the
pick bound under a Hot flood; ``bench/sched.py`` measures the time.

Removal from the middle is never needed: a cancelled task stays queued and finishes when
picked; a stolen task is taken from a queue's end.
"""

from __future__ import annotations

from collections import deque

from exo.sched.predict import COLD, HOT, NORMAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AGE_NS = 100_000_000  # 100 ms
HOT_BUDGET = 12
NORMAL_BUDGET = 3


class RunQueues:
    """Three FIFO queues (Hot, Normal, Cold) with a budgeted, aging O(1) pick."""

    __slots__ = ("_next_age_check", "_orders", "_tick", "age_ns", "cycle", "picks",
                 "promotions", "queues")

    def __init__(self, hot_budget: int = HOT_BUDGET, normal_budget: int = NORMAL_BUDGET,
                 age_ns: int = AGE_NS) -> None:
        if hot_budget < 1 or normal_budget < 0 or age_ns <= 0:
            raise ValueError("need hot_budget ≥ 1, normal_budget ≥ 0, age_ns > 0")
        hot: deque[Any] = deque()
        normal: deque[Any] = deque()
        cold: deque[Any] = deque()
        self.queues = (hot, normal, cold)
        self.age_ns = age_ns
        by_slot = {HOT: ((HOT, hot), (NORMAL, normal), (COLD, cold)),
                   NORMAL: ((NORMAL, normal), (HOT, hot), (COLD, cold)),
                   COLD: ((COLD, cold), (NORMAL, normal), (HOT, hot))}
        slots = [HOT] * hot_budget + [NORMAL] * normal_budget + [COLD]
        self.cycle = len(slots)
        self._orders = [by_slot[s] for s in slots]
        self._tick = 0
        self._next_age_check = 0
        self.promotions = 0
        self.picks = [0, 0, 0]

    def __len__(self) -> int:
        hot, normal, cold = self.queues
        return len(hot) + len(normal) + len(cold)

    def push(self, task: Any, klass: int, now: int) -> None:
        """Append ``task`` (which must have an ``enq_ns`` slot) to its class's FIFO."""
        task.enq_ns = now
        self.queues[klass].append(task)

    def pick(self, now: int) -> Any:
        """The next task to run, or None when every queue is empty. O(1)."""
        if now >= self._next_age_check:
            task = self._promote(now)
            if task is not None:
                return task
        tick = self._tick
        order = self._orders[tick]
        self._tick = tick + 1 if tick + 1 < self.cycle else 0
        for klass, q in order:
            if q:
                self.picks[klass] += 1
                return q.popleft()
        return None

    def _promote(self, now: int) -> Any:
        """Aging: the oldest Cold, else Normal, task if it waited over ``age_ns``. Looked
        at every ``age_ns / 8`` only (a head is a task that may be far out of the CPU
        cache: reading it at every pick would cost more than the pick)."""
        _, normal, cold = self.queues
        if cold and now - cold[0].enq_ns > self.age_ns:
            self.promotions += 1
            self.picks[COLD] += 1
            return cold.popleft()
        if normal and now - normal[0].enq_ns > self.age_ns:
            self.promotions += 1
            self.picks[NORMAL] += 1
            return normal.popleft()
        self._next_age_check = now + self.age_ns // 8
        return None

    def steal_cold(self, movable: Any) -> Any:
        """Take the newest Cold task for which ``movable(task)`` holds, or None. Another
        thread may call this: each deque operation is atomic under the GIL."""
        cold = self.queues[COLD]
        try:
            task = cold.pop()
        except IndexError:
            return None
        if movable(task):
            return task
        cold.append(task)
        return None


class FifoQueue:
    """The baseline: one round-robin FIFO, classes ignored (same interface)."""

    __slots__ = ("age_ns", "cycle", "picks", "promotions", "queue", "queues")

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        self.queues = (self.queue, self.queue, self.queue)  # every class, one FIFO
        self.age_ns = 0
        self.cycle = 1
        self.promotions = 0
        self.picks = [0, 0, 0]

    def __len__(self) -> int:
        return len(self.queue)

    def push(self, task: Any, klass: int, now: int) -> None:
        task.enq_ns = now
        self.queue.append(task)

    def pick(self, now: int) -> Any:
        return self.queue.popleft() if self.queue else None

    def steal_cold(self, movable: Any) -> Any:
        return None
