"""Anonymous shared memory for rings: one Linux memfd per ring.

A memfd has no name in ``/dev/shm``: when the last process holding a mapping or a file
descriptor exits, however it exits, the kernel reclaims the memory. Nothing can leak.
"""

from __future__ import annotations

import fcntl
import mmap
import os


def create_shared(size: int, name: str) -> tuple[int, mmap.mmap]:
    """Return (fd, mapping) of a new zero-filled shared memory object of ``size`` bytes."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        # the size can never change under a peer's mapping (no SIGBUS from a shrink)
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        return fd, mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        raise


def map_shared(fd: int) -> mmap.mmap:
    """Map the whole of an existing shared memory fd (its size comes from the kernel)."""
    size = os.fstat(fd).st_size
    if size <= 0:
        raise ValueError(f"fd {fd} is empty: not a ring")
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
