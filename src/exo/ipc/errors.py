"""Errors of the Fusion Ring IPC.

Every way a ring can fail has its own exception so that callers (the kernel's syscall
server, POSIX-X pipes) can map it to one clear message or errno instead of a hang.
"""

from __future__ import annotations


class IpcError(Exception):
    """Base class of every Fusion Ring error."""


class ProtocolError(IpcError, ValueError):
    """The shared memory holds something the protocol forbids (a malformed slot, a
    descriptor outside the pool, corrupt indices). The peer is not trusted: its slot
    is rejected and consumed, never interpreted."""


class PeerGoneError(IpcError, ConnectionError):
    """The other end of the ring is gone; nothing more will arrive or be read."""


class PeerDiedError(PeerGoneError):
    """The peer process died (its liveness socket hung up) without closing the ring."""


class PeerClosedError(PeerGoneError, EOFError):
    """The peer closed its end of the ring in an orderly way."""
