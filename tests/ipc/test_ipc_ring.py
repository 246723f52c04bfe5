"""FusionRing behaviour in one process: inline path, batches, handles, errors."""

from __future__ import annotations

import pickle

import pytest

from exo.ipc import (
    BATCH_MAX,
    INLINE_MAX,
    FusionRing,
    PeerClosedError,
    ProtocolError,
    _fring,
    proc_ipc_text,
)


@pytest.fixture
def ring() -> tuple[FusionRing, FusionRing]:
    p, c = FusionRing.pair(16)
    yield p, c
    p.close()
    c.close()


def test_inline_roundtrip_every_size(ring: tuple[FusionRing, FusionRing]) -> None:
    p, c = ring
    for n in range(INLINE_MAX + 1):
        msg = bytes(range(n))
        p.send(msg)
        assert c.recv() == msg


def test_slot_is_one_cache_line() -> None:
    assert _fring.SLOT_SIZE == 64
    assert _fring.HEADER_SIZE % 64 == 0
    assert _fring.TAIL_OFFSET // 64 != _fring.HEAD_OFFSET // 64  # separate cache lines
    assert INLINE_MAX == 56


def test_order_is_fifo() -> None:
    p, c = FusionRing.pair(8)
    got = []
    for i in range(100):
        p.send(i.to_bytes(2, "little"))
        if i % 5 == 4:
            got += [int.from_bytes(c.recv(), "little") for _ in range(5)]
    assert got == list(range(100))
    p.close()
    c.close()


def test_batch_publishes_once(ring: tuple[FusionRing, FusionRing]) -> None:
    p, c = ring
    msgs = [bytes([i]) * i for i in range(BATCH_MAX)]
    before = p.stats()["sent_batches"]
    p.send_batch(msgs)
    assert p.stats()["sent_batches"] == before + 1
    assert c.recv_batch() == msgs
    assert c.stats()["recv_batches"] == 1


def test_batch_limits(ring: tuple[FusionRing, FusionRing]) -> None:
    p, c = ring
    with pytest.raises(ValueError, match="at most 16"):
        p.send_batch([b"x"] * (BATCH_MAX + 1))
    p.send_batch([])
    p.send_batch([b"a", b"b", b"c"])
    assert c.recv_batch(max=2) == [b"a", b"b"]
    assert c.recv_batch() == [b"c"]


def test_full_ring_times_out_then_drains() -> None:
    p, c = FusionRing.pair(4)
    for i in range(4):
        p.send(bytes([i]))
    with pytest.raises(TimeoutError):
        p.send(b"x", timeout=0.01)
    assert c.recv_batch() == [b"\0", b"\1", b"\2", b"\3"]
    p.send(b"x", timeout=0)
    assert c.recv() == b"x"
    p.close()
    c.close()


def test_empty_ring_times_out(ring: tuple[FusionRing, FusionRing]) -> None:
    _, c = ring
    with pytest.raises(TimeoutError):
        c.recv(timeout=0)
    with pytest.raises(TimeoutError):
        c.recv(timeout=0.02)


def test_large_message_without_pool_is_refused(ring: tuple[FusionRing, FusionRing]) -> None:
    p, _ = ring
    with pytest.raises(ValueError, match="inline limit"):
        p.send(b"x" * (INLINE_MAX + 1))


def test_handles_travel_with_their_message(ring: tuple[FusionRing, FusionRing]) -> None:
    p, c = ring
    p.send(b"caps", handles=list(range(40)))
    p.send(b"plain")
    with pytest.raises(ProtocolError, match="recv_msg"):
        c.recv()
    assert c.recv_msg() == (b"caps", tuple(range(40)))
    assert c.recv_msg() == (b"plain", ())


def test_bad_arguments_are_clear_errors(ring: tuple[FusionRing, FusionRing]) -> None:
    p, c = ring
    with pytest.raises(TypeError, match="consumer"):
        c.send(b"x")
    with pytest.raises(TypeError, match="producer"):
        p.recv()
    with pytest.raises(ValueError, match="at most 64 handles"):
        p.send(b"x", handles=list(range(65)))
    with pytest.raises(ValueError, match="2\\*\\*32"):
        p.send(b"x", handles=[-1])
    with pytest.raises(ValueError, match="timeout"):
        c.recv(timeout=-1)
    with pytest.raises(TypeError):
        p.send(12345)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power of two"):
        FusionRing.pair(12)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(p)


def test_close_is_reported_after_draining() -> None:
    p, c = FusionRing.pair(8)
    p.send(b"last words")
    p.close()
    assert c.recv() == b"last words"
    with pytest.raises(PeerClosedError):
        c.recv(timeout=1)
    c.close()
    p2, c2 = FusionRing.pair(8)
    c2.close()
    with pytest.raises(PeerClosedError):
        p2.send(b"x")
    p2.close()


def test_closed_endpoint_refuses_use() -> None:
    p, c = FusionRing.pair(8)
    p.close()
    p.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        p.send(b"x")
    c.close()


def test_not_a_ring_is_rejected() -> None:
    import os

    fd = os.memfd_create("not-a-ring")
    os.ftruncate(fd, 4096)
    with pytest.raises(ProtocolError, match="not a Fusion Ring"):
        FusionRing.attach(fd, role="consumer")
    empty = os.memfd_create("empty")
    with pytest.raises(ValueError, match="empty"):
        FusionRing.attach(empty, role="consumer")
    os.close(empty)


def test_stats_and_proc_text(ring: tuple[FusionRing, FusionRing]) -> None:
    p, c = ring
    p.send(b"x")
    st = c.stats()
    assert st["occupancy"] == 1 and st["capacity"] == 16 and st["role"] == "consumer"
    text = proc_ipc_text()
    assert "fusion-ring" in text and "producer" in text and "consumer" in text
    assert c.recv() == b"x"
