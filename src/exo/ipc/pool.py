"""What a ring needs from the shared pool (``exo.mm.SharedPool`` provides it).

The ring never copies a large payload: the producer writes it once into a block of
this pool, the slot carries (offset, length), the consumer reads it in place and frees
the block. Any object with this shape works, so the ring does not import ``exo.mm``.
A type for annotations only: importing it loads ``typing``, which the boot path avoids
(``exo.ipc`` exports it lazily).
"""

from __future__ import annotations

from typing import Protocol


class PoolLike(Protocol):
    """The slice of ``exo.mm.SharedPool`` the zero-copy path uses."""

    @property
    def buffer(self) -> memoryview:
        """The whole pool, writable, mapped in every attached process."""
        ...

    def alloc(self, nbytes: int) -> int:
        """Return the offset of a new block; raise MemoryError when the pool is full."""
        ...

    def free(self, offset: int) -> None:
        """Give a block back (callable from any attached process)."""
        ...
