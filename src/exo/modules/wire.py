"""The frames between the module manager and a module process, over one Fusion Ring
channel: a 1-byte kind, a 64-bit request id, then the body. Kept tiny so a request of a
few bytes fits a ring slot inline (no pool block)."""

from __future__ import annotations

import struct

HEAD = struct.Struct(">BQ")
# manager → module
REQUEST, HEALTH, EXPORT, IMPORT, STOP = 1, 2, 3, 4, 5
# module → manager
READY, OK, ERROR = 10, 11, 12


def frame(kind: int, rid: int, body: bytes = b"") -> bytes:
    return HEAD.pack(kind, rid) + body


def parse(data: object) -> tuple[int, int, bytes]:
    """(kind, id, body) of a received message: bytes, or a zero-copy Block."""
    if isinstance(data, (bytes, bytearray)):
        raw = bytes(data)
    else:
        with data as view:  # type: ignore[attr-defined]
            raw = bytes(view)
    kind, rid = HEAD.unpack_from(raw)
    return kind, rid, raw[HEAD.size:]
