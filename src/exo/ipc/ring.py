"""FusionRing: one direction of Fusion Ring IPC between two OS processes.

The hot path (send/recv/batches/loans) is inherited unchanged from the C type
``_fring.Ring`` so a message costs one C call; this class only creates and maps the
shared memory, wires the liveness socket and the pool, and handles the lifecycle.
"""

from __future__ import annotations

import os
import socket
import weakref

from exo.ipc import _fring
from exo.ipc._memfd import create_shared, map_shared
from exo.ipc.errors import PeerClosedError, PeerDiedError, ProtocolError

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    import mmap
    from typing import Any, Self

    from exo.ipc.pool import PoolLike, PoolViewLike

_fring._set_exceptions(ProtocolError, PeerDiedError, PeerClosedError)

PRODUCER = 0
CONSUMER = 1
_ROLES = {"producer": PRODUCER, "consumer": CONSUMER}

DEFAULT_CAPACITY = 256
INLINE_MAX = _fring.INLINE_MAX
BATCH_MAX = _fring.BATCH_MAX
MAX_HANDLES = _fring.MAX_HANDLES

Block = _fring.Block

# every endpoint alive in this process, for /proc/ipc
_LIVE: weakref.WeakSet[FusionRing] = weakref.WeakSet()


def ring_size(capacity: int) -> int:
    """Bytes of shared memory a ring of ``capacity`` slots needs (header, slots, and
    the return queue zero-copy blocks travel back through)."""
    return _fring.ring_size(capacity)


class FusionRing(_fring.Ring):
    """One endpoint (producer or consumer) of a single-producer/single-consumer ring.

    Create a ring with :meth:`pair` (both ends, in this process) or :meth:`create`
    (the producer end; the consumer's fds are in :attr:`peer_fds`), hand an end to
    another process (fork, or ``pass_fds`` + :meth:`attach`), and call :meth:`detach`
    on the copy you gave away. Sending: ``send``, ``send_batch``, ``send_batch_packed``,
    ``loan``; receiving: ``recv``, ``recv_batch``, ``recv_batch_into``, ``recv_msg`` — all
    inherited from the C hot path. The packed pair moves a whole batch (one buffer, its
    lengths) with one call and no Python object per message.

    Not thread-safe: one thread per endpoint (concurrent use raises RuntimeError).
    """

    name: str
    fd: int
    live_fd: int
    peer_fds: tuple[int, int] | None
    _map: mmap.mmap | None
    _live: socket.socket | None
    _pool: PoolLike | PoolViewLike | None

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        capacity: int = DEFAULT_CAPACITY,
        *,
        pool: PoolLike | None = None,
        name: str = "fusion-ring",
        _start: int = 0,
    ) -> Self:
        """Create a ring and return its producer end.

        The consumer's side is ``(ring_fd, live_fd)`` in :attr:`peer_fds`: pass both to
        the consumer process (``pass_fds``) and let it call :meth:`attach`, then call
        :meth:`close_peer_fds` here. ``_start`` sets the initial index (tests of wrap-around).
        """
        if capacity < 1 or capacity & (capacity - 1) or capacity > _fring.MAX_CAPACITY:
            raise ValueError(
                f"capacity must be a power of two in [1, {_fring.MAX_CAPACITY}], got {capacity}"
            )
        fd, mapping = create_shared(ring_size(capacity), name)
        try:
            _fring.init_header(mapping, capacity, _start & 0xFFFFFFFF)
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except BaseException:
            mapping.close()
            os.close(fd)
            raise
        ring = cls._bind(fd, mapping, PRODUCER, mine, pool, name)
        ring.peer_fds = (os.dup(fd), theirs.detach())
        return ring

    @classmethod
    def attach(
        cls,
        fd: int,
        *,
        live_fd: int = -1,
        role: str = "consumer",
        pool: PoolLike | PoolViewLike | None = None,
        name: str = "fusion-ring",
    ) -> Self:
        """Take over ``fd`` (a ring memfd) and ``live_fd`` (the liveness socket) as one end.

        Both fds become owned by the returned endpoint. Without a liveness socket the
        peer's death is noticed only if it closed the ring (use it only in tests).
        """
        if role not in _ROLES:
            raise ValueError(f"role must be 'producer' or 'consumer', got {role!r}")
        mapping = map_shared(fd)
        live = socket.socket(fileno=live_fd) if live_fd >= 0 else None
        return cls._bind(fd, mapping, _ROLES[role], live, pool, name)

    @classmethod
    def pair(
        cls,
        capacity: int = DEFAULT_CAPACITY,
        *,
        pool: PoolLike | None = None,
        name: str = "fusion-ring",
        _start: int = 0,
    ) -> tuple[Self, Self]:
        """Both ends of a new ring: (producer, consumer). ``pool`` is the producer's own;
        the consumer end, in this process, reads the same object's buffer."""
        producer = cls.create(capacity, pool=pool, name=name, _start=_start)
        assert producer.peer_fds is not None
        ring_fd, live_fd = producer.peer_fds
        producer.peer_fds = None
        consumer = cls.attach(ring_fd, live_fd=live_fd, role="consumer", pool=pool, name=name)
        return producer, consumer

    @classmethod
    def _bind(
        cls,
        fd: int,
        mapping: mmap.mmap,
        role: int,
        live: socket.socket | None,
        pool: PoolLike | PoolViewLike | None,
        name: str,
    ) -> Self:
        try:
            ring = cls(mapping, role, live.fileno() if live is not None else -1)
        except BaseException:
            mapping.close()
            os.close(fd)
            if live is not None:
                live.close()
            raise
        ring.name = name
        ring.fd = fd
        ring.live_fd = live.fileno() if live is not None else -1
        ring.peer_fds = None
        ring._map = mapping
        ring._live = live
        ring._pool = None
        if pool is not None:
            ring.use_pool(pool)
        _LIVE.add(ring)
        return ring

    def use_pool(self, pool: PoolLike | PoolViewLike) -> None:
        """Attach the producer's segment: the producer passes the pool it owns (it
        allocates from it and frees what comes back through the return queue); the
        consumer passes a view of it (``exo.mm.PoolView``, read-only), or in one process
        the pool itself (only its buffer is used)."""
        if self.role == "producer":
            returned = getattr(pool, "free_returned", None)
            owned: PoolLike = pool  # type: ignore[assignment]  # a producer owns its pool
            self.set_pool(owned.buffer, owned.alloc, owned.free, returned)
        else:
            self.set_pool(pool.buffer)
        self._pool = pool

    @property
    def fds(self) -> tuple[int, int]:
        """(ring_fd, live_fd) of this end, to hand it to another process with pass_fds."""
        return self.fd, self.live_fd

    # ------------------------------------------------------------------ lifecycle

    def close_peer_fds(self) -> None:
        """Close this process's copies of the peer's fds (after handing them over)."""
        if self.peer_fds is not None:
            for fd in self.peer_fds:
                os.close(fd)
            self.peer_fds = None

    def close(self) -> None:
        """Close this end in an orderly way: the peer gets PeerClosedError (after draining)."""
        self._release(announce=True)

    def detach(self) -> None:
        """Let go of this end without telling the peer: use after handing it to a child."""
        self._release(announce=False)

    def _release(self, *, announce: bool) -> None:
        if self.closed:
            return
        self._shutdown(announce)
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._live is not None:
            self._live.close()
            self._live = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.close_peer_fds()
        _LIVE.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError(
            "a FusionRing end cannot be pickled: pass its .fds to the other process "
            "(pass_fds) and call FusionRing.attach() there, or inherit it through fork"
        )

    def __repr__(self) -> str:
        if self.closed:
            return f"<FusionRing {self.name!r} closed>"
        st = self.stats()
        return (
            f"<FusionRing {self.name!r} {st['role']} {st['occupancy']}/{st['capacity']} "
            f"head={st['head']} tail={st['tail']}>"
        )


def live_rings() -> list[FusionRing]:
    """Ring endpoints open in this process (for /proc/ipc)."""
    return [r for r in list(_LIVE) if not r.closed]
