"""Property-based tests of the allocator: no overlap, no leak, coalescing."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from exo.mm import SharedPool

POOL = 1 << 20
# log-uniform-ish sizes from 1 B to 128 KiB: every cached class and the large path
sizes = st.integers(min_value=0, max_value=17).flatmap(
    lambda b: st.integers(min_value=max(1, (1 << b) // 2), max_value=1 << b)
)


class PoolMachine(RuleBasedStateMachine):
    """Random interleavings of alloc, free, trim and (simulated) thread churn."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = SharedPool.create(POOL)
        self.live: dict[int, tuple[int, int]] = {}  # offset -> (requested, tag)
        self.tag = 0

    def _pick(self, i: int) -> int:
        return sorted(self.live)[i % len(self.live)]

    @rule(n=sizes)
    def alloc(self, n: int) -> None:
        try:
            off = self.pool.alloc(n)
        except MemoryError:
            return
        assert off not in self.live
        assert off >= 0 and off + n <= self.pool.size
        assert self.pool.usable_size(off) >= n
        self.tag = (self.tag + 1) % 251
        self.pool.buffer[off : off + n] = bytes([self.tag]) * n
        self.live[off] = (n, self.tag)

    @precondition(lambda self: bool(self.live))
    @rule(i=st.integers(min_value=0))
    def free(self, i: int) -> None:
        off = self._pick(i)
        n, tag = self.live.pop(off)
        # nothing else wrote over this block while it was live: no overlap
        assert self.pool.buffer[off : off + n] == bytes([tag]) * n
        self.pool.free(off)

    @precondition(lambda self: bool(self.live))
    @rule(i=st.integers(min_value=0))
    def double_free_is_refused(self, i: int) -> None:
        off = self._pick(i)
        del self.live[off]
        self.pool.free(off)
        try:
            self.pool.free(off)
        except ValueError:
            pass
        else:
            raise AssertionError("double free accepted")

    @rule()
    def trim(self) -> None:
        self.pool.trim()

    @invariant()
    def consistent(self) -> None:
        c = self.pool.check()
        assert c["used_blocks"] == len(self.live)
        assert c["used_bytes"] == sum(self.pool.usable_size(o) for o in self.live)
        assert self.pool.stats()["bytes_in_use"] == c["used_bytes"]
        spans = sorted((o, o + self.pool.usable_size(o)) for o in self.live)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start

    def teardown(self) -> None:
        try:
            for off in list(self.live):
                self.pool.free(off)
            self.pool.trim()
            s = self.pool.stats()
            assert s["l3_free_bytes"] == POOL, "leak: memory not back in level 3"
            assert s["l3_largest_free"] == POOL, "free buddies were not coalesced"
        finally:
            self.pool.close()


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(max_examples=40, deadline=None)
@given(st.lists(sizes, min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_any_free_order_coalesces_completely(ns: list[int], rnd: object) -> None:
    with SharedPool.create(POOL) as pool:
        offs = []
        for n in ns:
            try:
                offs.append(pool.alloc(n))
            except MemoryError:
                break
        order = list(offs)
        rnd.shuffle(order)  # type: ignore[attr-defined]
        for off in order:
            pool.free(off)
        pool.trim()
        pool.check()
        assert pool.stats()["l3_largest_free"] == pool.size


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=10))
def test_buddies_merge_and_non_buddies_do_not(k: int) -> None:
    size = 64 << k
    with SharedPool.create(1 << 16 if size <= 1 << 14 else 1 << 18) as pool:
        a = pool.alloc(size)
        b = pool.alloc(size)
        pool.trim()  # only a and b remain allocated
        free_before = pool.stats()["l3_free_blocks_by_order"]
        assert a ^ b == size  # best-fit hands out the buddy first
        pool.free(a)
        pool.trim()
        assert pool.stats()["l3_free_blocks_by_order"][k] == free_before[k] + 1
        pool.free(b)
        pool.trim()
        s = pool.stats()
        assert s["l3_largest_free"] == pool.size
        assert sum(s["l3_free_blocks_by_order"]) == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(sizes, st.booleans()), min_size=1, max_size=60))
def test_frees_split_between_owner_and_return_queue_leave_no_leak(
    plan: list[tuple[int, bool]],
) -> None:
    """Blocks allocated here, each freed by the owner or handed back as a consumer's return."""
    with SharedPool.create(POOL) as pool:
        offs = []
        for n, returned in plan:
            try:
                offs.append((pool.alloc(n), returned))
            except MemoryError:
                break
        for o, returned in offs:
            (pool.free_returned if returned else pool.free)(o)
        pool.check()
        assert pool.stats()["bytes_in_use"] == 0
        assert pool.stats()["frees_returned"] == sum(r for _, r in offs)
        pool.trim()
        assert pool.stats()["l3_largest_free"] == POOL
