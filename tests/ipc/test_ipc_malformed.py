"""A hostile or broken peer writes garbage into the shared ring: every malformed slot is
rejected with ProtocolError (and skipped), never trusted."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest

from exo.ipc import FusionRing, ProtocolError, _fring

CAP = 8


Slot = tuple[int, int, int, int, bytes]


def _forge(p: FusionRing, words: list[Slot], publish: int | None = None) -> None:
    """Write raw slots at the producer's tail as a hostile producer would, then publish."""
    mem = p._map
    assert mem is not None
    (tail,) = struct.unpack_from("<I", mem, _fring.TAIL_OFFSET)
    pos = tail
    for seq_delta, typ, flags, size, payload in words:
        off = _fring.HEADER_SIZE + (pos % CAP) * _fring.SLOT_SIZE
        seq = (pos + seq_delta) & 0xFFFFFFFF
        struct.pack_into("<Q", mem, off, seq | typ << 32 | flags << 40 | size << 48)
        mem[off + 8 : off + 8 + len(payload)] = payload
        pos += 1
    struct.pack_into("<I", mem, _fring.TAIL_OFFSET, (tail + (publish or len(words))) & 0xFFFFFFFF)


def _desc(offset: int, length: int) -> bytes:
    return struct.pack("<QQ", offset, length)


D, H = _fring.TYPE_DATA, _fring.TYPE_HANDLES
ZC, MORE = _fring.FLAG_ZEROCOPY, _fring.FLAG_MORE

CASES = {
    "inline size": [(0, D, 0, 57, b"")],
    "stale or forged": [(-CAP, D, 0, 4, b"abcd")],
    "unknown slot type": [(0, 9, 0, 4, b"abcd")],
    "unknown flags": [(0, D, 0x80, 4, b"abcd")],
    "descriptor outside": [(0, D, ZC, 16, _desc(1 << 40, 16))],
    "descriptor outside the pool: offset 0, length 0": [(0, D, ZC, 16, _desc(0, 0))],
    "descriptor outside the pool: offset 16": [(0, D, ZC, 16, _desc(16, (1 << 64) - 8))],
    "zero-copy descriptor of size": [(0, D, ZC, 8, _desc(0, 16))],
    "malformed HANDLES": [(0, H, 0, 4, b"\1\0\0\0")],
    "truncated message": [(0, H, MORE, 4, b"\1\0\0\0")],
}


@pytest.mark.parametrize("expected", list(CASES))
def test_malformed_slot_is_rejected_and_skipped(expected: str, pool: Any) -> None:
    p, c = FusionRing.pair(CAP, pool=pool)
    _forge(p, CASES[expected])
    with pytest.raises(ProtocolError, match=expected.split(":")[0]):
        c.recv()
    assert c.stats()["rejected"] == 1
    # the ring goes on: the (honest) producer's next message arrives intact
    p2 = FusionRing.attach(os.dup(p.fd), role="producer", name="honest")
    p2.send(b"after")
    assert c.recv() == b"after"
    p2.detach()
    p.detach()
    c.close()


def test_corrupt_tail_is_rejected(pool: Any) -> None:
    p, c = FusionRing.pair(CAP, pool=pool)
    assert p._map is not None
    struct.pack_into("<I", p._map, _fring.TAIL_OFFSET, CAP + 5)
    with pytest.raises(ProtocolError, match="corrupt ring"):
        c.recv(timeout=0)
    with pytest.raises(ProtocolError, match="corrupt ring"):
        c.recv_batch(timeout=0)
    p.detach()
    c.close()


def test_corrupt_head_is_rejected() -> None:
    p, c = FusionRing.pair(CAP)
    for _ in range(CAP):
        p.send(b"x")
    assert p._map is not None
    struct.pack_into("<I", p._map, _fring.HEAD_OFFSET, 0xFFFF0000)
    with pytest.raises(ProtocolError, match="corrupt ring"):
        p.send(b"y", timeout=0)
    p.close()
    c.detach()


def test_descriptor_bounds_are_exact(pool: Any) -> None:
    p, c = FusionRing.pair(CAP, pool=pool)
    size = len(pool.buffer)
    off = pool.alloc(64)
    _forge(p, [(0, D, ZC, 16, _desc(off, 64)), (0, D, ZC, 16, _desc(size - 64, 65))])
    blk = c.recv()
    assert blk.nbytes == 64 and blk.offset == off  # type: ignore[union-attr]
    blk.release()  # type: ignore[union-attr]
    with pytest.raises(ProtocolError, match="outside the pool"):
        c.recv()
    p.detach()
    c.close()
