"""The frames between AI-Core (in the kernel) and an agent's process, over the agent's
one Fusion Ring channel: ``kind (1) · id (4) · body``.

``id`` is a connection for OPEN/DATA/CLOSE (the body of DATA is an opaque sealed frame of
``exo.agents.core.secure``: the router relays what it cannot read) and a request number
for SYS/SYS_REPLY (what an agent asks the kernel for: a resource snapshot, a power
profile; each agent may ask only for the services its spec lists).
"""

from __future__ import annotations

import struct

HEAD = struct.Struct(">BI")
# router → agent
OPEN, DATA, CLOSE, STOP = 1, 2, 3, 4
# agent → router
READY, SYS = 10, 11
# router → agent, answering SYS
SYS_REPLY, SYS_ERROR = 12, 13

MAX_BODY = (1 << 20) + 64  # a sealed frame of at most 1 MiB of data, plus its header
MAX_ID = (1 << 32) - 1


class WireError(ValueError):
    """A frame that is not one: too short, too long, or of an unknown kind."""


KINDS = frozenset({OPEN, DATA, CLOSE, STOP, READY, SYS, SYS_REPLY, SYS_ERROR})


def frame(kind: int, ident: int, body: bytes = b"") -> bytes:
    return HEAD.pack(kind, ident) + body


def to_bytes(data: object) -> bytes:
    """A received message as bytes: inline bytes, or a zero-copy Block (copied, freed)."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    with data as view:  # type: ignore[attr-defined]
        return bytes(view)


def parse(data: object) -> tuple[int, int, bytes]:
    """(kind, id, body) of a received frame; ``WireError`` for anything else."""
    raw = to_bytes(data)
    if not HEAD.size <= len(raw) <= HEAD.size + MAX_BODY:
        raise WireError(f"frame of {len(raw)} bytes")
    kind, ident = HEAD.unpack_from(raw)
    if kind not in KINDS:
        raise WireError(f"unknown frame kind {kind}")
    return kind, ident, raw[HEAD.size:]
