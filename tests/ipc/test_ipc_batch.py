"""Packed batches: ``send_batch_packed(buffer, lengths)`` and ``recv_batch_into(buffer,
lengths)`` move up to 16 messages with one C call each way and no Python object per
message; one publish, one release. Bad arguments are one clear error and leave the ring
untouched."""

from __future__ import annotations

import os
import struct
from array import array
from typing import Any

import pytest
from _procs import fork_child, reap

from exo.ipc import BATCH_MAX, INLINE_MAX, FusionRing, ProtocolError, _fring

MSG = bytes(range(56))


@pytest.fixture
def ring() -> Any:
    p, c = FusionRing.pair(64)
    yield p, c
    p.close()
    c.close()


def _lengths(n: int = BATCH_MAX) -> array[int]:
    return array("I", bytes(4 * n))


def test_packed_equal_sizes_one_publish_one_release(ring: Any) -> None:
    p, c = ring
    packed = b"".join(bytes([i]) * 56 for i in range(BATCH_MAX))
    p.send_batch_packed(packed, 56)
    assert p.stats()["sent_batches"] == 1 and p.stats()["sent_msgs"] == BATCH_MAX
    buf, lens = bytearray(BATCH_MAX * 56), _lengths()
    assert c.recv_batch_into(buf, lens) == BATCH_MAX
    assert bytes(buf) == packed
    assert list(lens) == [56] * BATCH_MAX
    st = c.stats()
    assert st["recv_batches"] == 1 and st["recv_msgs"] == BATCH_MAX
    assert st["occupancy"] == 0


def test_packed_variable_sizes_and_interop_with_object_batches(ring: Any) -> None:
    p, c = ring
    sizes = [0, 1, 55, 56, 3, 0, 17]
    msgs = [bytes([65 + i]) * n for i, n in enumerate(sizes)]
    p.send_batch_packed(b"".join(msgs), sizes)
    assert c.recv_batch() == msgs  # packed in, objects out
    p.send_batch(msgs)  # objects in, packed out
    buf, lens = bytearray(1000), _lengths()
    n = c.recv_batch_into(buf, lens, timeout=0)
    assert n == len(msgs) and list(lens[:n]) == sizes
    assert bytes(buf[: sum(sizes)]) == b"".join(msgs)
    # a memoryview or bytearray source, a tuple of lengths, a memoryview destination
    p.send_batch_packed(memoryview(bytearray(b"abcdef")), (2, 4))
    out = memoryview(bytearray(6))
    assert c.recv_batch_into(out, lens) == 2 and bytes(out) == b"abcdef"
    assert list(lens[:2]) == [2, 4]


def test_recv_batch_into_without_lengths_counts_messages(ring: Any) -> None:
    p, c = ring
    p.send_batch_packed(MSG * 5, 56)
    buf = bytearray(56 * BATCH_MAX)
    assert c.recv_batch_into(buf) == 5
    assert bytes(buf[: 56 * 5]) == MSG * 5


def test_recv_batch_into_stops_at_max_lengths_room(ring: Any) -> None:
    p, c = ring
    p.send_batch_packed(MSG * 10, 56)
    buf = bytearray(56 * BATCH_MAX)
    assert c.recv_batch_into(buf, max=3) == 3
    assert c.recv_batch_into(buf, _lengths(2)) == 2  # capped by the lengths array
    assert c.recv_batch_into(memoryview(buf)[: 56 * 4 + 10]) == 4  # capped by the room
    assert c.recv_batch_into(buf) == 1
    with pytest.raises(TimeoutError):
        c.recv_batch_into(buf, timeout=0)


def test_message_bigger_than_the_buffer_stays_in_the_ring(ring: Any) -> None:
    p, c = ring
    p.send_batch_packed(MSG[:10] + MSG, (10, 56))
    small = bytearray(20)
    assert c.recv_batch_into(small) == 1  # the 56-byte one does not fit: left for later
    with pytest.raises(ValueError, match="next message is 56 bytes but the buffer holds 20"):
        c.recv_batch_into(small)
    assert c.recv() == MSG  # still there, intact


def test_big_messages_go_through_the_pool_and_come_back(pool: Any) -> None:
    p, c = FusionRing.pair(64, pool=pool)
    big = os.urandom(60_000)
    buf, lens = bytearray(200_000), _lengths()
    in_use = (lambda: pool.stats()["bytes_in_use"]) if hasattr(pool, "stats") else (lambda: 0)
    before = in_use()
    for _ in range(200):  # 12 MB through an 8 MiB pool: every block is freed after the copy
        p.send_batch_packed(MSG + big + MSG[:7], (56, len(big), 7))
        assert c.recv_batch_into(buf, lens) == 3
        assert list(lens[:3]) == [56, 60_000, 7]
        assert bytes(buf[:60_063]) == MSG + big + MSG[:7]
    p.drain_returns()  # the last block is still in the return queue: take it back
    assert in_use() == before
    assert c.stats()["blocks_held"] == 0
    p.close()
    c.close()


def test_big_packed_message_without_pool_is_refused(ring: Any) -> None:
    p, _ = ring
    with pytest.raises(ValueError, match="inline limit and the ring has no shared pool"):
        p.send_batch_packed(MSG + bytes(INLINE_MAX + 1), (56, INLINE_MAX + 1))
    assert p.stats()["tail"] == 0  # nothing published, not even the first message


BAD_SEND = [
    ((MSG * 2, [56, 55]), ValueError, "add up to 111 bytes but the buffer holds 112"),
    ((MSG * 2, [56, 57]), ValueError, "add up to more than the buffer"),
    ((MSG, [-1, 57]), ValueError, r"lengths\[0\] is not a non-negative int"),
    ((MSG, [56.0]), ValueError, r"lengths\[0\] is not a non-negative int"),
    ((MSG, ["56"]), ValueError, r"lengths\[0\] is not a non-negative int"),
    ((MSG, 0), ValueError, "message length must be > 0"),
    ((MSG, -56), ValueError, "message length must be > 0"),
    ((MSG, 10), ValueError, "not a whole number of 10-byte messages"),
    ((MSG * 17, 56), ValueError, "at most 16 messages, got 17"),
    ((bytes(17), [1] * 17), ValueError, "at most 16 messages, got 17"),
    ((MSG, None), TypeError, "lengths must be an int or a sequence of ints"),
    ((MSG, 2**70), OverflowError, "too large"),
    (("text", 4), TypeError, "bytes-like object is required"),
    ((MSG, 56, -1), ValueError, "timeout must be >= 0 or None"),
]


@pytest.mark.parametrize(("args", "exc", "match"), BAD_SEND)
def test_send_batch_packed_rejects_bad_input(
    ring: Any, args: tuple[Any, ...], exc: type[Exception], match: str
) -> None:
    p, c = ring
    with pytest.raises(exc, match=match):
        p.send_batch_packed(*args)
    assert p.stats()["tail"] == 0
    p.send_batch_packed(MSG, 56)  # the ring is unharmed
    assert c.recv() == MSG


def test_empty_packed_batch_sends_nothing(ring: Any) -> None:
    p, _ = ring
    p.send_batch_packed(b"", [])
    p.send_batch_packed(b"", ())
    assert p.stats()["sent_batches"] == 0


BAD_RECV = [
    ((b"read-only",), TypeError, "needs a writable contiguous buffer .*not bytes"),
    ((bytearray(),), ValueError, "non-empty writable buffer"),
    ((bytearray(64), array("H", bytes(32))), ValueError, "unsigned 4- or 8-byte ints"),
    ((bytearray(64), array("i", bytes(64))), ValueError, "unsigned 4- or 8-byte ints"),
    ((bytearray(64), array("I")), ValueError, "non-empty writable array"),
    ((bytearray(64), bytearray(64)), ValueError, "unsigned 4- or 8-byte ints"),
    ((bytearray(64), b"12345678"), TypeError, "lengths must be a writable array .*not bytes"),
    ((bytearray(64), None, 0), ValueError, r"max must be in \[1, 1024\], got 0"),
    ((bytearray(64), None, 5000), ValueError, r"max must be in \[1, 1024\], got 5000"),
    ((bytearray(64), None, 16, -1), ValueError, "timeout must be >= 0 or None"),
]


@pytest.mark.parametrize(("args", "exc", "match"), BAD_RECV)
def test_recv_batch_into_rejects_bad_input(
    ring: Any, args: tuple[Any, ...], exc: type[Exception], match: str
) -> None:
    p, c = ring
    p.send(MSG)
    with pytest.raises(exc, match=match):
        c.recv_batch_into(*args)
    assert c.recv() == MSG  # nothing was consumed


def test_wrong_end_and_closed_end(ring: Any) -> None:
    p, c = ring
    with pytest.raises(TypeError, match="consumer: it cannot send"):
        c.send_batch_packed(MSG, 56)
    with pytest.raises(TypeError, match="producer: it cannot receive"):
        p.recv_batch_into(bytearray(64))
    q, d = FusionRing.pair(4)
    q.close()
    d.close()
    with pytest.raises(ValueError, match="closed"):
        q.send_batch_packed(MSG, 56)
    with pytest.raises(ValueError, match="closed"):
        d.recv_batch_into(bytearray(64))


def test_packed_batch_waits_for_room_and_times_out() -> None:
    p, c = FusionRing.pair(16)
    p.send_batch_packed(MSG * 10, 56)
    with pytest.raises(TimeoutError):
        p.send_batch_packed(MSG * 7, 56, timeout=0)  # 10 + 7 > 16: all or nothing
    assert p.stats()["tail"] == 10
    p.send_batch_packed(MSG * 6, 56, timeout=0)
    assert c.recv_batch_into(bytearray(56 * BATCH_MAX)) == BATCH_MAX
    p.close()
    c.close()


def _forge_after(p: FusionRing, good: int, slot: tuple[int, int, int, bytes]) -> None:
    """Publish `good` honest messages, then one raw slot written as a hostile producer."""
    p.send_batch_packed(MSG * good, 56)
    mem = p._map
    assert mem is not None
    (tail,) = struct.unpack_from("<I", mem, _fring.TAIL_OFFSET)
    typ, flags, size, payload = slot
    off = _fring.HEADER_SIZE + (tail % p.capacity) * _fring.SLOT_SIZE
    struct.pack_into("<Q", mem, off, tail | typ << 32 | flags << 40 | size << 48)
    mem[off + 8 : off + 8 + len(payload)] = payload
    struct.pack_into("<I", mem, _fring.TAIL_OFFSET, tail + 1)


@pytest.mark.parametrize("receive", ["into", "objects"])
def test_malformed_slot_after_good_ones(ring: Any, receive: str) -> None:
    """The good messages are delivered; the bad slot is reported by the next call (not
    swallowed), skipped, and the ring goes on."""
    p, c = ring
    _forge_after(p, 3, (_fring.TYPE_DATA, 0, 57, b""))  # inline size 57: impossible
    buf = bytearray(56 * BATCH_MAX)

    def take() -> int:
        return c.recv_batch_into(buf) if receive == "into" else len(c.recv_batch())

    assert take() == 3
    with pytest.raises(ProtocolError, match="inline size 57"):
        take()
    assert c.stats()["rejected"] == 1
    honest = FusionRing.attach(os.dup(p.fd), role="producer", name="honest")
    honest.send_batch_packed(MSG * 2, 56)
    assert take() == 2
    honest.detach()


def test_message_with_handles_ends_a_packed_receive(ring: Any) -> None:
    p, c = ring
    p.send_batch_packed(MSG * 2, 56)
    p.send(b"with handles", handles=[7, 8])
    p.send(MSG)
    buf = bytearray(56 * BATCH_MAX)
    assert c.recv_batch_into(buf) == 2
    with pytest.raises(ProtocolError, match="carries handles: receive it with recv_msg"):
        c.recv_batch_into(buf)
    assert c.recv_msg() == (b"with handles", (7, 8))
    assert c.recv_batch_into(buf) == 1


def _packed_producer(ring: FusionRing, batches: int) -> None:
    for i in range(batches):
        k = i % BATCH_MAX + 1
        ring.send_batch_packed(b"".join(struct.pack("<Q", i * 100 + j) * 7 for j in range(k)), 56)
    ring.close()


def test_packed_batches_between_processes() -> None:
    """Every message arrives once, in order, whole, with a small ring that makes the
    producer wait for room and the consumer wait for data (futex sleeps and wakes)."""
    p, c = FusionRing.pair(32)
    c.configure(spin_us=0, tick_ms=5)
    batches = 3000
    pid = fork_child(_packed_producer, p, batches)
    p.detach()
    buf, lens = bytearray(56 * BATCH_MAX), _lengths()
    expect = [i * 100 + j for i in range(batches) for j in range(i % BATCH_MAX + 1)]
    got: list[int] = []
    try:
        while True:
            n = c.recv_batch_into(buf, lens, timeout=10)
            assert list(lens[:n]) == [56] * n
            for k in range(n):
                (v,) = struct.unpack_from("<Q", buf, 56 * k)
                assert buf[56 * k : 56 * k + 56] == struct.pack("<Q", v) * 7
                got.append(v)
    except EOFError:
        pass
    assert reap(pid) == 0
    assert got == expect
    c.close()
