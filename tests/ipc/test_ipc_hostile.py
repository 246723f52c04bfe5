"""A hostile peer attacks every shared word it can write; the victim stays correct.

The peer of a ring can write anything, at any time, into the ring's memory (slots,
indices, the return queue) and into its own segment. These tests play that peer — in
this process through a raw mapping, or in another process — and check that the victim
never crashes, hangs or spins, keeps its allocator consistent, and keeps serving other
rings. What used to be the targets (the pool's lock word, its level-2 list heads, its
next[] links) are no longer in shared memory at all (tests/mm/test_processes.py); the
closest equivalents left are the return queue and the ring indices, attacked here.
"""

from __future__ import annotations

import mmap
import os
import random
import struct
import threading
import time
from typing import Any

import pytest
from _procs import fork_child, kill, reap

from exo.ipc import FusionRing, PeerClosedError, PeerDiedError, ProtocolError, _fring
from exo.mm import PoolView, SharedPool, new_segment

BIG = 1000  # > 56 bytes: zero-copy


def _raw(ring: FusionRing) -> mmap.mmap:
    """A writable mapping of the ring, as the peer holds it."""
    return mmap.mmap(ring.fd, os.fstat(ring.fd).st_size)


def _rq(ring: FusionRing) -> tuple[int, int]:
    """(offset of the return queue in the ring's memory, its capacity)."""
    return _fring.HEADER_SIZE + ring.capacity * _fring.SLOT_SIZE, ring.stats()["return_queue"]


def _forge_returns(raw: mmap.mmap, ring: FusionRing, entries: list[int], advance: int) -> None:
    base, cap = _rq(ring)
    (tail,) = struct.unpack_from("<I", raw, _fring.RET_TAIL_OFFSET)
    for i, off in enumerate(entries):
        struct.pack_into("<Q", raw, base + 8 * ((tail + i) % cap), off % 2**64)
    struct.pack_into("<I", raw, _fring.RET_TAIL_OFFSET, (tail + advance) % 2**32)


@pytest.fixture
def seg() -> Any:
    pool = SharedPool.create(1 << 20)
    yield pool
    pool.close()


def test_bogus_duplicate_and_out_of_range_returns_are_rejected(seg: SharedPool) -> None:
    p, c = FusionRing.pair(16, pool=seg)
    held = []
    for i in range(3):
        p.send(bytes([i]) * BIG)
        held.append(c.recv())
    mine = seg.alloc(BIG)  # a block the producer never sent on this ring
    raw = _raw(p)
    first = held[0].offset
    bogus = [seg.size, seg.size + 64, 2**64 - 64, 2**63, 65, first + 64, mine, first, first]
    _forge_returns(raw, p, bogus, len(bogus))
    assert p.drain_returns() == 1  # only `first`, once
    st = p.stats()
    assert st["returns_rejected"] == len(bogus) - 1
    assert st["blocks_outstanding"] == 2
    seg.check()
    assert seg.stats()["bytes_in_use"] == 3 * 1024  # `mine` and the two still out
    # the ring still carries messages both ways of the slot protocol
    p.send(b"still fine")
    assert c.recv() == b"still fine"
    # the forged tail put the consumer's own index behind: its honest returns are now
    # dropped (never blocking), which breaks only this ring's zero-copy traffic
    for blk in held:
        blk.release()
    assert c.stats()["returns_dropped"] == 3
    c.close()
    with pytest.raises(PeerClosedError):
        p.send(b"x" * BIG)
    assert p.stats()["blocks_outstanding"] == 0  # reclaimed when the consumer left
    seg.free(mine)
    seg.check()
    assert seg.stats()["bytes_in_use"] == 0
    raw.close()
    p.close()


def test_a_flood_of_returns_is_bounded_then_corrupt_indices_break_only_this_ring(
    seg: SharedPool,
) -> None:
    p, c = FusionRing.pair(16, pool=seg)
    other_p, other_c = FusionRing.pair(16, pool=seg)
    raw = _raw(p)
    _, cap = _rq(p)
    rnd = random.Random(5)
    for _ in range(50):  # each drain reads at most `cap` entries: the flood is bounded
        _forge_returns(raw, p, [rnd.getrandbits(64) for _ in range(cap)], cap)
        assert p.drain_returns() == 0
    assert p.stats()["returns_rejected"] == 50 * cap
    _forge_returns(raw, p, [], cap + 1)  # indices farther apart than the queue
    with pytest.raises(ProtocolError, match="return queue"):
        p.drain_returns()
    with pytest.raises(ProtocolError, match="broken"):
        p.send(b"y" * BIG)
    assert p.stats()["broken"]
    # the other ring on the same segment is untouched
    for i in range(200):
        other_p.send(bytes([i % 256]) * BIG)
        with other_c.recv() as mv:
            assert mv[0] == i % 256 and len(mv) == BIG
    other_p.drain_returns()
    seg.check()
    raw.close()
    for r in (other_p, other_c, p, c):
        r.close()


def test_outstanding_blocks_are_bounded_so_an_honest_queue_never_overflows(
    seg: SharedPool,
) -> None:
    p, c = FusionRing.pair(16, pool=seg)
    _, cap = _rq(p)
    held = []
    for i in range(cap):  # the consumer keeps every block it receives
        p.send(bytes([i % 256]) * 100)
        held.append(c.recv())
    with pytest.raises(TimeoutError):
        p.send(b"z" * 100, timeout=0.05)  # waits for a return instead of overflowing
    p.send(b"inline still goes", timeout=0)
    held.pop().release()
    p.send(b"z" * 100, timeout=1)  # one came back: room again
    for blk in held:
        blk.release()
    assert c.stats()["returns_dropped"] == 0
    assert c.recv() == b"inline still goes"
    c.recv().release()  # type: ignore[union-attr]
    p.drain_returns()
    assert p.stats()["blocks_outstanding"] == 0
    assert seg.stats()["bytes_in_use"] == 0
    p.close()
    c.close()


def test_a_dead_consumers_blocks_are_reclaimed(seg: SharedPool) -> None:
    p, c = FusionRing.pair(16, pool=seg)
    r, w = os.pipe()

    def consumer() -> None:
        p.detach()
        keep = [c.recv() for _ in range(5)]  # held, never released
        os.write(w, b"k")
        assert keep
        time.sleep(60)

    pid = fork_child(consumer)
    c.detach()
    for i in range(5):
        p.send(bytes([i]) * BIG)
    assert os.read(r, 1) == b"k"
    assert p.stats()["blocks_outstanding"] == 5
    kill(pid)
    assert reap(pid) == -9
    with pytest.raises(PeerDiedError):
        for _ in range(64):  # fills the ring, then the wait sees the death
            p.send(b"after", timeout=5)
    assert p.stats()["blocks_outstanding"] == 0
    assert p.stats()["blocks_reclaimed"] == 5
    seg.check()
    assert seg.stats()["bytes_in_use"] == 0
    os.close(r)
    os.close(w)
    p.close()


def _flipper(fd: int, offset: int, stop_after: float) -> None:
    """The hostile peer: flips an index back and forth as fast as it can."""
    m = mmap.mmap(fd, os.fstat(fd).st_size)
    (v,) = struct.unpack_from("<I", m, offset)
    end = time.monotonic() + stop_after
    while time.monotonic() < end:
        for _ in range(1000):
            struct.pack_into("<I", m, offset, (v - 1) % 2**32)
            struct.pack_into("<I", m, offset, v)


def _round_trips(n: int, done: list[int]) -> None:
    a_p, a_c = FusionRing.pair(8, name="bystander-ab")
    b_p, b_c = FusionRing.pair(8, name="bystander-ba")

    def echo() -> None:
        for _ in range(n):
            b_p.send(a_c.recv(timeout=30))

    t = threading.Thread(target=echo)
    t.start()
    for i in range(n):
        a_p.send(i.to_bytes(4, "little"))
        assert b_c.recv(timeout=30) == i.to_bytes(4, "little")
        done.append(i)
    t.join()
    for r in (a_p, a_c, b_p, b_c):
        r.close()


@pytest.mark.parametrize("victim", ["consumer", "producer"])
def test_flipping_an_index_neither_hangs_the_victim_nor_starves_its_other_threads(
    victim: str,
) -> None:
    p, c = FusionRing.pair(16, name="flipped")
    if victim == "producer":
        for i in range(16):
            p.send(bytes([i]))  # full: the producer will wait for `head`
        offset, target = _fring.HEAD_OFFSET, p
    else:
        offset, target = _fring.TAIL_OFFSET, c
    pid = fork_child(_flipper, target.fd, offset, 30.0)
    try:
        done: list[int] = []
        bystander = threading.Thread(target=_round_trips, args=(2000, done))
        bystander.start()
        # the victim waits with a deadline while the peer flips its index: the deadline
        # holds (no endless loop), and the bystander thread keeps running meanwhile
        # (a full ring's `head` has one valid value: flipping it is a corrupt ring for
        # the producer, a clear ProtocolError; `tail` flips within range for a consumer)
        expected = (TimeoutError, ProtocolError) if victim == "producer" else TimeoutError
        for _ in range(5):
            with pytest.raises(expected):
                if victim == "producer":
                    p.send(b"more", timeout=0.2)
                else:
                    c.recv(timeout=0.2)
        bystander.join(60)
        assert not bystander.is_alive()
        assert len(done) == 2000
    finally:
        kill(pid)
        reap(pid)
    st = target.stats()
    assert st["role"] == victim
    p.close()
    c.close()


def _scribbler(ring_fd: int, seg_fd: int, seconds: float, seed: int) -> None:
    """The hostile peer: random bytes at random places of everything it maps writable."""
    ring = mmap.mmap(ring_fd, os.fstat(ring_fd).st_size)
    maps = [ring]
    if seg_fd >= 0:
        maps.append(mmap.mmap(seg_fd, os.fstat(seg_fd).st_size))
    rnd = random.Random(seed)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = rnd.choice(maps)
        n = rnd.choice((1, 4, 8, 64))
        at = rnd.randrange(len(m) - n)
        if rnd.random() < 0.3:  # aim at the indices and the return queue's indices
            at = rnd.choice((64, 128, 384, 448)) + rnd.choice((0, 4))
            n = 4
        m[at : at + n] = rnd.randbytes(n)


def test_a_scribbling_producer_cannot_crash_or_hang_its_consumer() -> None:
    """The victim receives from a peer that owns its segment and scribbles everywhere."""
    fd = new_segment(1 << 20)
    owner = SharedPool.own(fd)  # the (soon hostile) peer's segment
    p, c = FusionRing.pair(64, name="scribbled")
    p.use_pool(owner)
    view = PoolView.attach(fd)
    c.use_pool(view)
    for i in range(32):
        p.send(bytes([i]) * (BIG if i % 2 else 10))
    pid = fork_child(_scribbler, p.fd, fd, 2.0, 11)
    p.detach()
    owner.close()
    seen = {"ok": 0, "protocol": 0, "timeout": 0}
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        try:
            msg = c.recv(timeout=0.01)
        except ProtocolError:
            seen["protocol"] += 1
        except TimeoutError:
            seen["timeout"] += 1
        except (PeerDiedError, PeerClosedError):
            break
        else:
            seen["ok"] += 1
            if not isinstance(msg, bytes):
                with msg as mv:
                    assert mv.readonly  # the peer's segment, read-only here
                    bytes(mv)
    assert reap(pid) == 0
    assert seen["ok"] + seen["protocol"] + seen["timeout"] > 0
    c.close()
    view.close()
    os.close(fd)
    # and the victim process still runs rings normally
    a, b = FusionRing.pair(8)
    a.send(b"alive")
    assert b.recv() == b"alive"
    a.close()
    b.close()


def test_a_scribbling_consumer_cannot_crash_or_hang_its_producer(seg: SharedPool) -> None:
    """The victim sends zero-copy into a ring whose consumer scribbles everywhere it can
    write (the ring, its return queue); the victim's segment stays consistent."""
    p, c = FusionRing.pair(64, pool=seg, name="scribbled-rq")
    pid = fork_child(_scribbler, c.fd, -1, 2.0, 13)
    c.detach()
    outcome = {"sent": 0, "protocol": 0, "timeout": 0, "memory": 0, "gone": 0}
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        try:
            p.send(os.urandom(8) * 100, timeout=0.01)
            outcome["sent"] += 1
        except ProtocolError:
            outcome["protocol"] += 1
            break  # the ring is broken for good (corrupt indices): only this one
        except TimeoutError:
            outcome["timeout"] += 1
        except MemoryError:
            outcome["memory"] += 1
        except (PeerDiedError, PeerClosedError):
            outcome["gone"] += 1  # its "closed" flag is one of the words it can write
            break
    assert reap(pid) == 0
    assert sum(outcome.values()) > 0
    seg.check()  # whatever the peer wrote, our allocator is intact
    p.close()  # the consumer is gone: every block still out comes back
    assert seg.stats()["bytes_in_use"] == 0
    q, r = FusionRing.pair(16, pool=seg)
    q.send(b"q" * BIG)
    with r.recv() as mv:
        assert bytes(mv) == b"q" * BIG
    q.close()
    r.close()


def test_a_spinning_waiter_does_not_hold_the_gil() -> None:
    """Even the spin phase runs without the GIL: a thread spinning on an index the peer
    never moves leaves the other threads of its process free to run."""
    p, c = FusionRing.pair(8, name="spin")
    c.configure(spin_us=3_000_000)  # spin for up to 3 s before sleeping
    outcome: list[str] = []

    def waiter() -> None:
        try:
            c.recv(timeout=3.0)
        except TimeoutError:
            outcome.append("timeout")

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)  # let it enter the spin
    total = sum(i * i for i in range(200_000))  # needs the GIL, a few ms of work
    still_spinning = t.is_alive()
    t.join()
    assert total > 0 and still_spinning  # we ran while it spun
    assert outcome == ["timeout"]
    p.close()
    c.close()
