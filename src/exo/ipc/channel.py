"""Channel: a bidirectional Fusion Ring endpoint that can carry capability handles.

Two rings, one per direction, and one segment per direction owned by its sender: each
end allocates zero-copy blocks from its own pool and reads the peer's through a
read-only view, so a hostile peer can break only this channel. Handles travel as a
HANDLES slot chained to the data slot and published with it, so a message and its
handles arrive together or not at all. The ring moves only u32 values: making a handle
*leave* the sender (Zircon semantics) is the kernel's job, done in the
``on_send_handles`` hook, which turns the sender's handles into transfer tokens;
``on_recv_handles`` turns tokens back into handles in the receiver's table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exo.ipc.ring import DEFAULT_CAPACITY, FusionRing

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any, Self

    from exo.ipc._fring import Message, Payload
    from exo.ipc.pool import PoolLike, PoolViewLike

HandleHook = Callable[[tuple[int, ...]], Sequence[int]]


class Channel:
    """One end of a channel: ``send(data, handles=())`` and ``recv() -> (data, handles)``.

    ``tx`` and ``rx`` are the underlying rings (for the batch and loan fast paths).
    """

    def __init__(
        self,
        tx: FusionRing,
        rx: FusionRing,
        *,
        on_send_handles: HandleHook | None = None,
        on_recv_handles: HandleHook | None = None,
    ) -> None:
        if tx.role != "producer" or rx.role != "consumer":
            raise ValueError("a Channel needs a producer ring (tx) and a consumer ring (rx)")
        self.tx = tx
        self.rx = rx
        self.on_send_handles = on_send_handles
        self.on_recv_handles = on_recv_handles

    @classmethod
    def pair(
        cls,
        capacity: int = DEFAULT_CAPACITY,
        *,
        pools: tuple[PoolLike, PoolLike] | None = None,
        name: str = "channel",
    ) -> tuple[Self, Self]:
        """Two connected endpoints. ``pools`` = (a's own segment, b's own segment): each
        end sends from its own, and reads the other's (in this process, through the same
        object; an end handed to another process attaches a read-only view there). Hand
        one end to another process (``fds`` + ``attach``, or fork), then ``detach()`` it
        in this process."""
        pa, pb = pools if pools is not None else (None, None)
        ab_tx, ab_rx = FusionRing.pair(capacity, pool=pa, name=f"{name}:a>b")
        ba_tx, ba_rx = FusionRing.pair(capacity, pool=pb, name=f"{name}:b>a")
        return cls(ab_tx, ba_rx), cls(ba_tx, ab_rx)

    @classmethod
    def attach(
        cls,
        fds: Sequence[int],
        *,
        pool: PoolLike | None = None,
        peer_pool: PoolViewLike | None = None,
        name: str = "channel",
    ) -> Self:
        """Rebuild an endpoint in another process from its ``fds`` (which it takes over).

        ``pool`` is the segment this end owns and sends from; ``peer_pool`` a view
        (``exo.mm.PoolView``, read-only) of the peer's, which this end reads from."""
        if len(fds) != 4:
            raise ValueError("Channel.attach needs the 4 fds of Channel.fds")
        tx_fd, tx_live, rx_fd, rx_live = fds
        tx = FusionRing.attach(
            tx_fd, live_fd=tx_live, role="producer", pool=pool, name=f"{name}:tx"
        )
        rx = FusionRing.attach(
            rx_fd, live_fd=rx_live, role="consumer", pool=peer_pool, name=f"{name}:rx"
        )
        return cls(tx, rx)

    @property
    def fds(self) -> tuple[int, int, int, int]:
        """(tx ring, tx liveness, rx ring, rx liveness): pass them with ``pass_fds``."""
        return (*self.tx.fds, *self.rx.fds)

    def use_pools(self, pool: PoolLike, peer_pool: PoolViewLike) -> None:
        """Attach this end's own segment (sending) and a view of the peer's (receiving)."""
        self.tx.use_pool(pool)
        self.rx.use_pool(peer_pool)

    def send(
        self, data: Payload, handles: Sequence[int] = (), timeout: float | None = None
    ) -> None:
        """Send one message; its handles (if any) go through ``on_send_handles`` first."""
        if not handles:
            self.tx.send(data, None, timeout)
            return
        values = tuple(handles)
        if self.on_send_handles is not None:
            values = tuple(self.on_send_handles(values))
        self.tx.send(data, values, timeout)

    def recv(self, timeout: float | None = None) -> tuple[Message, tuple[int, ...]]:
        """Receive one message and its handles (bytes, or a Block to release)."""
        data, values = self.rx.recv_msg(timeout)
        if values and self.on_recv_handles is not None:
            values = tuple(self.on_recv_handles(values))
        return data, values

    def peer_alive(self) -> bool:
        """False once the peer closed or its process is gone."""
        return self.tx.peer_alive() and self.rx.peer_alive()

    def stats(self) -> dict[str, Any]:
        """Both rings' state, for /proc/ipc."""
        return {"tx": self.tx.stats(), "rx": self.rx.stats()}

    def close(self) -> None:
        """Orderly close: the peer's pending and future recv/send get PeerClosedError."""
        self.tx.close()
        self.rx.close()

    def detach(self) -> None:
        """Let go of this endpoint silently (after handing it to another process)."""
        self.tx.detach()
        self.rx.detach()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("a Channel cannot be pickled: pass .fds (pass_fds) and Channel.attach()")
