"""Sender-owned shared-memory segments, carved by a 3-level allocator.

The allocator itself is C (`_pool.c`). This module adds what is policy rather than
mechanism: how a segment's memfd is made and sealed, how a peer maps it read-only,
and derived statistics.

Trust model (docs/memory-pool.md): a segment belongs to the one process that sends
from it. Its allocator's metadata lives in that process's private memory; the memfd
holds only the data arena. A peer maps the arena read-only (`PoolView`) and gives
blocks back through a ring's return queue, never by touching the allocator.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os

from exo.mm import _pool
from exo.mm.meminfo import derive_stats, format_meminfo

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    _T = TypeVar("_T")

#: Size of the pool the kernel creates at boot.
DEFAULT_POOL_SIZE = 64 << 20

# Linux 5.1; not exported by the fcntl module of every Python. After it no new
# writable mapping of the memfd can be made (mmap PROT_WRITE and a later
# mprotect both fail with EPERM), while mappings made before it stay writable.
F_SEAL_FUTURE_WRITE = 0x0010
_SIZE_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW


def _round_size(size: int) -> int:
    """Round a requested size up to the power of two a buddy allocator manages."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError(f"pool size must be an int, not {type(size).__name__}")
    if size <= 0:
        raise ValueError(f"pool size must be positive, not {size}")
    if size > _pool.MAX_SIZE:
        raise ValueError(f"pool size {size} exceeds the maximum of {_pool.MAX_SIZE} bytes")
    return max(_pool.MIN_SIZE, 1 << (size - 1).bit_length())


def new_segment(size: int, name: str = "exo-pool") -> int:
    """A fresh memfd for a segment another process will own (returns the fd).

    The creator (the kernel, at spawn) hands it over; the receiver builds its
    allocator with `SharedPool.own(fd)` and the creator maps it with
    `PoolView.attach(fd)`. Its size is sealed: no side can shrink it under the
    other's mapping (SIGBUS).
    """
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, _round_size(size))
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SIZE_SEALS)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_fd(fd: int) -> None:
    if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
        raise ValueError(f"not a file descriptor: {fd!r}")


def _on_own_fd(cls: Callable[[int], _T], fd: int) -> _T:
    """``cls(dup(fd))``: the object owns a duplicate, the caller keeps ``fd``."""
    _check_fd(fd)
    mine = os.dup(fd)
    try:
        return cls(mine)
    except BaseException:
        os.close(mine)
        raise


class SharedPool(_pool.Pool):
    """A segment this process owns and sends from; `alloc`/`free` are single C calls.

    Offsets index `buffer`. Peers read the same bytes through `PoolView.attach(peer_fd())`.
    """

    @classmethod
    def create(cls, size: int = DEFAULT_POOL_SIZE) -> SharedPool:
        """Create a segment of at least `size` bytes (a power of two) in a new memfd.

        After mapping it, the memfd is sealed F_SEAL_FUTURE_WRITE: any process that gets
        the fd can map it only read-only. No name in /dev/shm; it disappears with its last
        mapping or fd.
        """
        fd = os.memfd_create("exo-pool", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, _round_size(size))
            pool = cls(fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            seals = _SIZE_SEALS | F_SEAL_FUTURE_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        except BaseException:
            pool.close()
            raise
        return pool

    @classmethod
    def own(cls, fd: int) -> SharedPool:
        """Become the owner of segment `fd` that another process created for us.

        The fd is duplicated (the caller keeps its own). The allocator starts empty: a
        segment has exactly one owner, and its state is never read from the memfd.
        """
        return _on_own_fd(cls, fd)

    def peer_fd(self) -> int:
        """The fd to hand to a peer, which maps it with `PoolView.attach`."""
        return self.fd

    def stats(self) -> dict[str, Any]:
        """Statistics: per-level hits and rates, bytes in use, fragmentation."""
        return derive_stats(self._stats_raw())

    def meminfo_text(self) -> str:
        """The pool's state as a /proc/meminfo-style text."""
        return format_meminfo(self.stats())

    def __enter__(self) -> SharedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        return f"<SharedPool size={self.size} {state}>"


class PoolView:
    """A peer's read-only mapping of another process's segment (a ring's consumer side).

    `buffer` is a read-only memoryview: the process cannot write the owner's arena
    through it (PROT_READ), nor, for a sealed segment, through any other mapping.
    """

    __slots__ = ("_map", "buffer", "closed", "fd", "size")

    def __init__(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size < _pool.MIN_SIZE or size > _pool.MAX_SIZE or size & (size - 1):
            raise ValueError(f"fd {fd} is not a pool segment (size {size})")
        self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        self.buffer = memoryview(self._map).toreadonly()
        self.fd = fd
        self.size = size
        self.closed = False

    @classmethod
    def attach(cls, fd: int) -> PoolView:
        """Map segment `fd` read-only; the fd is duplicated (the caller keeps its own)."""
        return _on_own_fd(cls, fd)

    def close(self) -> None:
        """Drop the fd and the mapping (the mapping stays while a Block or view uses it)."""
        if self.closed:
            return
        self.closed = True
        os.close(self.fd)
        self.fd = -1
        # a ring or a Block may still hold the buffer: then the mapping goes with its
        # last user (the memoryview keeps the mmap object alive until then)
        with contextlib.suppress(BufferError):
            self.buffer.release()
            self._map.close()

    def __enter__(self) -> PoolView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PoolView size={self.size} {'closed' if self.closed else f'fd={self.fd}'}>"
