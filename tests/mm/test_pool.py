"""Single-process behaviour of SharedPool: blocks, errors, statistics."""

from __future__ import annotations

import os
import threading
import time

import pytest

from exo.mm import SharedPool


def test_create_rounds_to_power_of_two_and_maps_the_arena() -> None:
    with SharedPool.create(300_000) as p:
        assert p.size == 1 << 19
        assert len(p.buffer) == p.size
        assert not p.buffer.readonly
        assert os.readlink(f"/proc/self/fd/{p.fd}").startswith("/memfd:exo-pool")
    assert p.closed


def test_blocks_are_writable_distinct_and_big_enough(pool: SharedPool) -> None:
    sizes = [1, 63, 64, 65, 1000, 4096, 5000, 65536, 100_000]
    offs = [pool.alloc(n) for n in sizes]
    for i, (off, n) in enumerate(zip(offs, sizes, strict=True)):
        assert pool.usable_size(off) >= n
        pool.buffer[off : off + n] = bytes([i]) * n
    for i, (off, n) in enumerate(zip(offs, sizes, strict=True)):
        assert pool.buffer[off : off + n] == bytes([i]) * n
    pool.check()
    for off in offs:
        pool.free(off)
    pool.check()


def test_freeing_everything_coalesces_back_to_one_block(pool: SharedPool) -> None:
    offs = [pool.alloc(n) for n in (64, 128, 4096, 64, 70_000, 300)]
    for off in offs:
        pool.free(off)
    pool.trim()
    s = pool.stats()
    assert s["l3_free_bytes"] == pool.size
    assert s["l3_largest_free"] == pool.size
    assert s["bytes_in_use"] == 0


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (-64, "outside the pool"),
        (1 << 20, "outside the pool"),
        (65, "not the start of a block"),
        (1 << 19, "not an allocated block"),
    ],
)
def test_malformed_free_is_a_clear_error(pool: SharedPool, offset: int, message: str) -> None:
    keep = pool.alloc(64)
    with pytest.raises(ValueError, match=message):
        pool.free(offset)
    pool.check()
    pool.free(keep)


def test_double_free_is_detected_and_harmless(pool: SharedPool) -> None:
    a = pool.alloc(100)
    pool.free(a)
    with pytest.raises(ValueError, match=r"double free|not an allocated"):
        pool.free(a)
    b, c = pool.alloc(100), pool.alloc(100)
    assert b != c  # the block was not cached twice
    pool.check()


def test_free_inside_a_larger_block_is_refused(pool: SharedPool) -> None:
    big = pool.alloc(4096)
    with pytest.raises(ValueError, match="not an allocated block"):
        pool.free(big + 64)
    pool.free(big)


def test_bad_sizes(pool: SharedPool) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        pool.alloc(0)
    with pytest.raises(MemoryError, match="pool full"):
        pool.alloc(pool.size + 1)
    with pytest.raises(TypeError):
        pool.alloc(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"power of two|positive"):
        SharedPool.create(0)


def test_pool_full_raises_memory_error_then_recovers(pool: SharedPool) -> None:
    held = []
    with pytest.raises(MemoryError):
        while True:
            held.append(pool.alloc(4096))
    assert len(held) == pool.size // 4096  # caches were drained before giving up
    pool.check()
    for off in held:
        pool.free(off)
    pool.trim()
    assert pool.stats()["l3_free_bytes"] == pool.size


def test_closed_pool_refuses_work() -> None:
    p = SharedPool.create(1 << 16)
    view = p.buffer[0:64]
    p.close()
    p.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        p.alloc(64)
    view[0] = 1  # still mapped while a view exists: no crash
    view.release()


def test_owning_something_else_is_refused() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises((ValueError, OSError)):
            SharedPool.own(r)
    finally:
        os.close(r)
        os.close(w)
    fd = os.memfd_create("not-a-pool")
    try:
        os.ftruncate(fd, (1 << 20) + 1)
        with pytest.raises(ValueError, match="not a pool segment"):
            SharedPool.own(fd)
    finally:
        os.close(fd)


def test_stats_and_meminfo(pool: SharedPool) -> None:
    offs = [pool.alloc(200) for _ in range(10)]
    s = pool.stats()
    assert s["allocs"] == 10
    assert s["bytes_in_use"] == 10 * 256
    assert s["l1_hits"] + s["l2_hits"] + s["l3_hits"] == 10
    assert 0.0 <= s["fragmentation_pct"] <= 100.0
    assert abs(s["l1_hit_rate"] + s["l2_hit_rate"] + s["l3_hit_rate"] - 1.0) < 1e-9
    text = pool.meminfo_text()
    assert "PoolTotal:" in text and "PoolL1HitRate:" in text
    assert "PoolInUse:" in text and text.endswith("\n")
    for off in offs:
        pool.free(off)
    assert pool.stats()["bytes_in_use"] == 0


def test_thread_exit_returns_its_cache(pool: SharedPool) -> None:
    def work() -> None:
        offs = [pool.alloc(64) for _ in range(5)]
        for off in offs:
            pool.free(off)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    # join() returns before the OS thread runs its exit destructors: wait for them
    deadline = time.monotonic() + 10
    while pool.check()["cached_blocks"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.check()["cached_blocks"] == 0
    assert pool.stats()["l3_free_bytes"] == pool.size


def test_block_freed_by_another_thread(pool: SharedPool) -> None:
    off = pool.alloc(64)
    t = threading.Thread(target=pool.free, args=(off,))
    t.start()
    t.join()
    pool.check()
    assert pool.stats()["bytes_in_use"] == 0


# -- level 1 gives back what would pin a 64 KiB region (docs/memory-pool.md, Level 1) ------

_BIG_POOL = 64 << 20  # full-size refill batches (a small pool caps them at 1/64 of free)


def test_free_completing_a_64k_block_skips_the_cache() -> None:
    with SharedPool.create(_BIG_POOL) as p:
        blocks = [p.alloc(32 << 10) for _ in range(8)]  # one refill batch, neighbours
        for off in blocks[1:]:
            p.free(off)
        p.trim()  # only blocks[0] is left; its 32 KiB buddy is free in level 3
        p.free(blocks[0])
        s = p.stats()
        assert s["bytes_cached"] == 0  # not kept in the cache ...
        assert s["l3_largest_free"] == p.size  # ... but coalesced at once
        p.check()


def test_cached_neighbours_go_back_with_the_block_that_completes_their_region() -> None:
    with SharedPool.create(_BIG_POOL) as p:
        blocks = sorted(p.alloc(8 << 10) for _ in range(64))  # 8 regions of 64 KiB
        assert blocks == [blocks[0] + i * (8 << 10) for i in range(64)]
        for off in blocks:
            p.free(off)
        s = p.stats()
        # without the rule all 64 stay cached (the cache holds 64 of this class); with
        # it, once the class has a surplus, each completed region goes back whole
        assert 0 < s["bytes_cached"] <= 32 * (8 << 10)
        assert s["fragmentation_pct"] == 0.0
        assert all(n == 0 for n in s["l3_free_blocks_by_order"][:10])
        p.check()


def test_a_thread_cycling_through_its_batch_keeps_it() -> None:
    with SharedPool.create(_BIG_POOL) as p:
        for n in (64, 4096, 8192, 32 << 10):
            for _ in range(200):
                p.free(p.alloc(n))
        s = p.stats()
        assert s["refills_l3"] == 4  # one refill per class, not one per free
        assert s["l1_hits"] == 4 * 199
        p.check()
