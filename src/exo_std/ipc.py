"""Channels between Exo processes: Fusion Rings with a private zero-copy pool.

``channel()`` returns two connected endpoints. Keep one, hand the other to a child with
``process.spawn(..., channels=[endpoint])``; the child finds it with ``inherited()``.
Messages up to the inline size travel in the ring's slots; larger ones are written once
into the sender's own segment and read in place through a read-only view (``recv``
returns a ``Block``: ``with block as view: ...`` then it goes back to the sender). Each
direction has its own segment, owned by its sender, so a hostile peer can break only
the channel it shares. Capabilities travel with a message and
leave the sender, as Zircon handles do: the kernel moves them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from exo.abi import PARENT_PID_ENV, Rights
from exo_std._kernel import call
from exo_std.caps import Capability

TYPE_CHECKING = False  # no typing import at run time: every app imports this (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any

CHANNEL_FDS_ENV = "EXO_CHANNEL_FDS"
DEFAULT_POOL = 4 << 20


class Endpoint:
    """One end of a channel: ``send(data, caps=())``, ``recv() -> (data, caps)``.

    ``peer`` is the Exo pid at the other end: capabilities sent here can be redeemed by
    that process only. ``process.spawn(..., channels=[end])`` sets it on the end kept here,
    ``inherited()`` on the child's; ``None`` means both ends are in this process. Set it
    yourself when an endpoint travels further.
    """

    def __init__(self, channel: Any, pool: Any, peer_pool: Any) -> None:
        self._channel = channel
        self._pool = pool  # exo.mm.SharedPool: the segment this end owns and sends from
        self._peer_pool = peer_pool  # the peer's segment (a read-only PoolView in a child)
        self._arrived: dict[int, Capability] = {}
        self.peer: int | None = None
        self.twin: Endpoint | None = None  # the other end, while it is in this process
        channel.on_send_handles = self._issue
        channel.on_recv_handles = self._redeem

    def _issue(self, handles: tuple[int, ...]) -> list[int]:
        """The kernel takes each handle out of our space for a token only ``peer`` can use."""
        from exo_std.process import getpid

        to = self.peer if self.peer is not None else getpid()
        return [int(call("transfer_out", handle=h, to=to)[0]["token"]) for h in handles]

    def _redeem(self, tokens: tuple[int, ...]) -> list[int]:
        """Turn the tokens that came with a message into handles in our space."""
        out = []
        for token in tokens:
            r = call("transfer_in", token=token)[0]
            cap = Capability(int(r["handle"]), str(r["resource"]), Rights(int(r["rights"])))
            self._arrived[cap.handle] = cap
            out.append(cap.handle)
        return out

    @property
    def fds(self) -> tuple[int, ...]:
        """The descriptors that carry this endpoint to another process: 4 for the rings,
        then its own segment, then the peer's (mapped read-only there)."""
        return (*self._channel.fds, self._pool.fd, self._peer_pool.fd)

    def send(self, data: bytes | bytearray | memoryview, caps: Sequence[Capability] = (),
             timeout: float | None = None) -> None:
        self._channel.send(data, [c.handle for c in caps], timeout)

    def recv(self, timeout: float | None = None) -> tuple[Any, list[Capability]]:
        """(bytes, or a Block for zero-copy messages; the capabilities that came with it)."""
        data, handles = self._channel.recv(timeout)
        return data, [self._arrived.pop(h) for h in handles]

    def peer_alive(self) -> bool:
        return bool(self._channel.peer_alive())

    def close(self) -> None:
        self._channel.close()
        self._pool.close()
        self._peer_pool.close()

    def detach(self) -> None:
        """Forget this endpoint here after handing it to another process."""
        self._channel.detach()
        self._pool.close()
        self._peer_pool.close()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def channel(*, capacity: int = 256, pool_size: int = DEFAULT_POOL) -> tuple[Endpoint, Endpoint]:
    """Two connected endpoints, each sending from a segment of its own.

    ``a`` keeps a sealed segment (no other process can ever map it writable); ``b``'s is a
    fresh memfd that whoever ends up holding ``b`` owns (``SharedPool.own``), here or in
    the child it is handed to (hand ``b`` over before sending on it: the child starts a
    fresh allocator over the segment). Each end reads the other's segment.
    """
    from exo.ipc import Channel
    from exo.mm import PoolView, SharedPool, new_segment

    pool_a = SharedPool.create(pool_size)
    seg_b = new_segment(pool_size)
    try:
        pool_b = SharedPool.own(seg_b)
    finally:
        os.close(seg_b)
    view_a, view_b = PoolView.attach(pool_a.fd), PoolView.attach(pool_b.fd)
    a, b = Channel.pair(capacity, name=f"exo_std:{os.getpid()}")
    a.use_pools(pool_a, view_b)
    b.use_pools(pool_b, view_a)
    return _twins(Endpoint(a, pool_a, view_b), Endpoint(b, pool_b, view_a))


def _twins(a: Endpoint, b: Endpoint) -> tuple[Endpoint, Endpoint]:
    a.twin, b.twin = b, a  # so that handing one to a child tells the other its peer
    return a, b


def attach_endpoint(fds: Sequence[int]) -> Endpoint:
    """Rebuild an endpoint from its 6 descriptors (4 ring fds, its own segment, the
    peer's segment), taking them over."""
    from exo.ipc import Channel
    from exo.mm import PoolView, SharedPool

    if len(fds) != 6:
        raise ValueError("an endpoint is 6 descriptors: 4 for the rings, its own segment "
                         "and the peer's")
    pool = SharedPool.own(fds[4])
    os.close(fds[4])
    peer = PoolView.attach(fds[5])
    os.close(fds[5])
    name = f"exo_std:{os.getpid()}"
    return Endpoint(Channel.attach(fds[:4], pool=pool, peer_pool=peer, name=name), pool, peer)


def inherited() -> list[Endpoint]:
    """The endpoints our parent passed to ``process.spawn(..., channels=[...])``."""
    raw = os.environ.get(CHANNEL_FDS_ENV, "")
    ends = [attach_endpoint([int(x) for x in group.split(",")])
            for group in filter(None, raw.split(";"))]
    parent = os.environ.get(PARENT_PID_ENV)
    for end in ends:  # the parent handed them to us: it holds the other ends
        end.peer = int(parent) if parent else None
    return ends
