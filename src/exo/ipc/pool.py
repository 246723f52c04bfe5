"""What a ring needs from the producer's segment (``exo.mm.SharedPool`` / ``PoolView``).

The ring never copies a large payload: the producer writes it once into a block of
the segment it owns, the slot carries (offset, length), the consumer reads it in place
(through a read-only view) and hands the block back through the ring's return queue;
the producer frees it. Any object with this shape works, so the ring does not import
``exo.mm``.
A type for annotations only: importing it loads ``typing``, which the boot path avoids
(``exo.ipc`` exports it lazily).
"""

from __future__ import annotations

from typing import Protocol


class PoolLike(Protocol):
    """The slice of ``exo.mm.SharedPool`` the zero-copy path uses."""

    @property
    def buffer(self) -> memoryview:
        """The whole segment, writable (the owner's mapping)."""
        ...

    def alloc(self, nbytes: int) -> int:
        """Return the offset of a new block; raise MemoryError when the pool is full."""
        ...

    def free(self, offset: int) -> None:
        """Give a block back (the owner only)."""
        ...


class PoolViewLike(Protocol):
    """What the consumer needs: the producer's segment, read-only is enough."""

    @property
    def buffer(self) -> memoryview:
        """The whole segment, as mapped in this process."""
        ...
