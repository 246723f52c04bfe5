"""``block/file``: a block device backed by ``/var/lib/modules/block-file/disk.img``.

Requests: ``R`` + block number (u64) → the 512-byte block (zeros past the end);
``W`` + block number + 512 bytes → ``ok``; ``S`` → the size in blocks (u64). The image
is opened through the module's one storage capability, so the data survives upgrades
and rollbacks (state is on disk: nothing to hand over).
"""

from __future__ import annotations

import os
import struct

from exo_std import Rights, fs

BLOCK = 512
IMAGE = "storage://var/lib/modules/block-file/disk.img"
_disk: fs.File | None = None


def _fd() -> int:
    global _disk
    if _disk is None:
        _disk = fs.File.open(IMAGE, Rights.READ | Rights.WRITE, create=True)
    return _disk.fd


def handle(request: bytes) -> bytes:
    op = request[:1]
    if op == b"S":
        return struct.pack(">Q", os.fstat(_fd()).st_size // BLOCK)
    (block,) = struct.unpack_from(">Q", request, 1)
    if op == b"R":
        return os.pread(_fd(), BLOCK, block * BLOCK).ljust(BLOCK, b"\0")
    if op == b"W":
        data = request[9:]
        if len(data) != BLOCK:
            raise ValueError(f"a write carries {BLOCK} bytes, not {len(data)}")
        os.pwrite(_fd(), data, block * BLOCK)
        return b"ok"
    raise ValueError(f"unknown request {op!r}")


def health() -> bool:
    _fd()
    return True
