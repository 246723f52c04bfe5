"""TEST HELPER — a minimal stand-in for ``exo.mm.SharedPool`` (same interface).

Used by the ring tests and the IPC bench only when ``exo.mm.SharedPool`` is not
importable (it is built in parallel), or when ``EXO_IPC_POOL=double`` asks for it.
It is real shared memory (a memfd), not a mock: first-fit over 4 KiB blocks, a state
byte per block plus a run length. Allocation is serialised between processes by a
POSIX record lock; a free flips only the state bytes of a block it owns.
"""

from __future__ import annotations

import fcntl
import mmap
import os

BLOCK = 4096


class MemfdPool:
    """``create(size)``, ``attach(fd)``, ``fd``, ``size``, ``buffer``, ``alloc``, ``free``."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._nblocks = size // BLOCK
        meta = self._nblocks * 5
        self._map = mmap.mmap(fd, size + meta)
        self.buffer = memoryview(self._map)[:size]
        self._state = memoryview(self._map)[size : size + self._nblocks]
        self._runs = memoryview(self._map)[size + self._nblocks :].cast("I")
        self._hint = 0

    @classmethod
    def create(cls, size: int) -> MemfdPool:
        size = max(BLOCK, (size + BLOCK - 1) // BLOCK * BLOCK)
        fd = os.memfd_create("exo-test-pool", os.MFD_CLOEXEC)
        os.ftruncate(fd, size + (size // BLOCK) * 5)
        return cls(fd, size)

    @classmethod
    def attach(cls, fd: int) -> MemfdPool:
        total = os.fstat(fd).st_size
        return cls(fd, total // (BLOCK + 5) * BLOCK)

    def alloc(self, nbytes: int) -> int:
        k = max(1, (nbytes + BLOCK - 1) // BLOCK)
        want = b"\0" * k
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            states = self._state.tobytes()
            i = states.find(want, self._hint)
            if i < 0:
                i = states.find(want)
            if i < 0:
                raise MemoryError(f"pool full: no {k} free blocks for {nbytes} bytes")
            self._runs[i] = k
            self._state[i : i + k] = b"\1" * k
            self._hint = i + k
            return i * BLOCK
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def free(self, offset: int) -> None:
        i, rem = divmod(offset, BLOCK)
        if rem or not 0 <= i < self._nblocks or self._state[i] != 1:
            raise ValueError(f"free of {offset}: not an allocated block")
        k = self._runs[i]
        self._state[i : i + k] = b"\0" * k

    def in_use(self) -> int:
        """Blocks currently allocated (tests check for leaks)."""
        return self._state.tobytes().count(1)

    def close(self) -> None:
        self._runs.release()
        self._state.release()
        self.buffer.release()
        self._map.close()
        os.close(self.fd)
