"""The shared memory pool: a memfd every Exo process maps, carved by a 3-level allocator.

The allocator itself is C (`_pool.c`): Python cannot issue the atomic operations a
cross-process allocator needs. This module adds what is policy rather than mechanism:
how the memfd is made and sealed, who may be reclaimed, and derived statistics.
"""

from __future__ import annotations

import fcntl
import os

from exo.mm import _pool
from exo.mm.meminfo import derive_stats, format_meminfo

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any

#: Size of the pool the kernel creates at boot.
DEFAULT_POOL_SIZE = 64 << 20


def _round_size(size: int) -> int:
    """Round a requested size up to the power of two a buddy allocator manages."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError(f"pool size must be an int, not {type(size).__name__}")
    if size <= 0:
        raise ValueError(f"pool size must be positive, not {size}")
    if size > _pool.MAX_SIZE:
        raise ValueError(f"pool size {size} exceeds the maximum of {_pool.MAX_SIZE} bytes")
    return max(_pool.MIN_SIZE, 1 << (size - 1).bit_length())


def _is_alive(pid: int) -> bool:
    """True while `pid` is a running (not zombie) process.

    Reads the state letter from /proc/PID/stat directly: importing psutil for this
    one check would cost the kernel's boot several milliseconds.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
    return state not in (b"Z", b"X")


class SharedPool(_pool.Pool):
    """A pool of shared memory; `alloc`/`free` are single C calls (see docs/memory-pool.md).

    Offsets index `buffer`, which is the same memory in every attached process.
    """

    @classmethod
    def create(cls, size: int = DEFAULT_POOL_SIZE) -> SharedPool:
        """Create a pool of at least `size` bytes (rounded up to a power of two) in a memfd.

        The memfd has no name in /dev/shm and is sealed against resizing, so no peer can
        shrink it under the others' mappings; it disappears with its last mapping or fd.
        """
        arena = _round_size(size)
        fd = os.memfd_create("exo-pool", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, _pool.file_size_for(arena))
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            return cls(fd, create=True)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd: int, owner: int | None = None) -> SharedPool:
        """Attach to a pool another process created (fd inherited or received by SCM_RIGHTS).

        The fd is duplicated: the caller keeps its own. `owner` is the pid blocks are
        charged to for `reclaim`; it defaults to os.getpid(), and a process in its own
        PID namespace should pass the pid the kernel knows it by.
        """
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise ValueError(f"not a file descriptor: {fd!r}")
        mine = os.dup(fd)
        try:
            return cls(mine, create=False, owner=-1 if owner is None else owner)
        except BaseException:
            os.close(mine)
            raise

    def reclaim(self, pid: int) -> int:
        """Kernel side: free every block held by dead process `pid`; return how many.

        That includes blocks it had sent to others and that were not freed yet: a
        crashed producer's in-flight messages die with it (see the ownership rules).
        """
        if pid == os.getpid() or pid == self.owner:
            raise ValueError(f"cannot reclaim process {pid}: it is the caller")
        if _is_alive(pid):
            raise ValueError(f"cannot reclaim process {pid}: it is still running")
        return self._reclaim_slots(pid)

    def reclaim_dead(self) -> int:
        """Reclaim every attached process that no longer runs; return blocks freed."""
        freed = 0
        for pid in sorted(set(self._attached_pids())):
            if pid not in (os.getpid(), self.owner) and not _is_alive(pid):
                freed += self._reclaim_slots(pid)
        return freed

    def stats(self) -> dict[str, Any]:
        """Pool-wide statistics: per-level hits and rates, bytes in use, fragmentation."""
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
