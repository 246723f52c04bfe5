"""The zero-copy path: payloads live in the shared pool; the ring copies none of them."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from exo.ipc import INLINE_MAX, Block, FusionRing, ProtocolError


def _pool_address(pool: Any) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(pool.buffer))


def test_loan_is_received_in_place_without_a_copy(pool: Any) -> None:
    p, c = FusionRing.pair(8, pool=pool)
    loan = p.loan(100_000)
    with memoryview(loan) as mv:
        mv[:] = b"A" * 100_000
    offset = loan.offset
    p.send(loan)
    assert loan.released  # ownership moved to the consumer
    # the producer (same process here) overwrites the pool block after sending: if the
    # ring had copied the payload anywhere, the consumer would still see "A"s
    pool.buffer[offset : offset + 5] = b"BBBBB"
    blk = c.recv()
    assert isinstance(blk, Block)
    assert blk.offset == offset and blk.nbytes == 100_000
    assert blk.address == _pool_address(pool) + offset
    with blk as view:
        assert view.readonly
        assert bytes(view[:6]) == b"BBBBBA"
    assert blk.released
    p.close()
    c.close()


def test_plain_large_send_is_written_once_into_the_pool(pool: Any) -> None:
    p, c = FusionRing.pair(8, pool=pool)
    data = bytes(range(256)) * 300
    p.send(data)
    blk = c.recv()
    assert isinstance(blk, Block)
    assert blk.address == _pool_address(pool) + blk.offset
    with blk as mv:
        assert mv == data
    p.close()
    c.close()


def test_block_release_rules(pool: Any) -> None:
    p, c = FusionRing.pair(8, pool=pool)
    p.send(b"z" * (INLINE_MAX + 1))
    blk = c.recv()
    assert isinstance(blk, Block)
    mv = memoryview(blk)
    with pytest.raises(BufferError, match="still alive"):
        blk.release()
    mv.release()
    blk.release()
    blk.release()  # idempotent
    with pytest.raises(BufferError, match="released"):
        memoryview(blk)
    # a loan cannot be sent while a view of it is alive, nor twice
    loan = p.loan(10)
    view = memoryview(loan)
    with pytest.raises(BufferError, match="still alive"):
        p.send(loan)
    view.release()
    p.send(loan)
    with pytest.raises(ValueError, match="already sent"):
        p.send(loan)
    with pytest.raises(ValueError, match="twice"):
        loan2 = p.loan(10)
        p.send_batch([loan2, loan2])
    del loan2
    c.recv().release()  # type: ignore[union-attr]
    p.close()
    c.close()


def test_blocks_go_back_to_the_pool(make_pool: Any) -> None:
    pool = make_pool(1 << 20)
    p, c = FusionRing.pair(8, pool=pool)
    for _ in range(200):  # far more than the pool holds at once: blocks must be freed
        p.send_batch([b"q" * 60_000, b"r" * 50])
        a, b = c.recv_batch()
        assert isinstance(a, Block) and b == b"r" * 50
        a.release()
    # dropping a block without release() frees it too
    for _ in range(200):
        p.send(b"q" * 60_000)
        c.recv()
    loan = p.loan(60_000)
    del loan  # an unsent loan is given back
    with pytest.raises(BufferError, match="held"):
        blk = (p.send(b"w" * 100), c.recv())[1]
        c.close()
    del blk
    p.close()
    c.close()


def test_full_pool_is_a_clear_error(make_pool: Any) -> None:
    pool = make_pool(1 << 20)
    p, c = FusionRing.pair(64, pool=pool)
    held = []
    with pytest.raises(MemoryError):
        for _ in range(64):
            held.append(p.loan(256 << 10))
    held.clear()
    p.close()
    c.close()


def test_zero_copy_without_pool_on_the_consumer_is_rejected(pool: Any) -> None:
    p, c = FusionRing.pair(8)
    p.use_pool(pool)
    p.send(b"x" * 1000)
    with pytest.raises(ProtocolError, match="no pool"):
        c.recv()
    p.close()
    c.close()


def test_zero_copy_window_bounds_queued_pool_bytes(pool: Any) -> None:
    """A producer keeps at most `zc_window` bytes of zero-copy payload queued (like a
    pipe's buffer), so a fast producer cannot pin the pool; a message larger than the
    window still goes through when nothing is queued."""
    p, c = FusionRing.pair(64, pool=pool)
    in_use = (lambda: pool.stats()["bytes_in_use"]) if hasattr(pool, "stats") else (lambda: 0)
    before = in_use()
    assert p.stats()["zc_window"] == 1 << 20  # the default
    p.configure(zc_window=100_000)
    p.send(b"a" * 60_000)
    with pytest.raises(TimeoutError):
        p.send(b"b" * 60_000, timeout=0)  # 120 000 > 100 000 queued
    p.send(b"inline is not counted", timeout=0)
    with c.recv() as mv:  # the consumer takes the first one: room again
        assert bytes(mv[:1]) == b"a"
    p.send(b"b" * 60_000, timeout=0)
    assert c.recv() == b"inline is not counted"
    c.recv().release()  # type: ignore[union-attr]
    p.send(b"c" * 500_000, timeout=0)  # bigger than the window, nothing queued
    blk = c.recv()
    assert blk.nbytes == 500_000  # type: ignore[union-attr]
    blk.release()  # type: ignore[union-attr]
    st = p.stats()
    assert st["zc_bytes_sent"] == st["zc_bytes_received"] == 620_000
    p.configure(zc_window=0)  # no limit: only the slots bound the queue
    for _ in range(5):
        p.send(b"d" * 60_000, timeout=0)
    assert len(c.recv_batch()) == 5
    with pytest.raises(ValueError, match="zc_window >= 0"):
        p.configure(zc_window=-1)
    p.drain_returns()  # the five blocks came back through the return queue
    assert in_use() == before  # the refused send gave its block back
    p.close()
    c.close()
