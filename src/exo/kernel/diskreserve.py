"""The room the kernel keeps free on a file system an app's writes land on.

Whatever an app writes into the Exo tree lands on the host's file system: the kernel's
file server for ``storage://`` grants (``exo.kernel.revocable.dirs``), the shell's
redirections and its builtins that copy (``exo.shell``). None of them may fill it: the
kernel's own logs, the audit log and the other users need the room, and so does the host.
A write that would leave less than the reserve (``MIN_FREE_FRACTION`` of the file system,
at least ``MIN_FREE``; and of its inodes, for what makes a name) is ENOSPC.

As ext4's blocks reserved for root, this is a floor, not a quota per user: one user can
still take what lies above it from another. (Per-user quotas need the host's file system
to have them enabled; docs/revocable-files.md.)
"""

from __future__ import annotations

import errno
import os

#: What an app's writes leave free on the file system: this share of it, at least MIN_FREE.
MIN_FREE_FRACTION = 0.02
MIN_FREE = 1 << 30
MIN_FREE_INODES = 10_000
#: What a new name may take of the disk (a directory's block, a link's target).
NAME_COST = 8192

#: The error's text, as a person is told it (the file server answers its errno only).
NO_ROOM = "no space left on device (what is left is the system's reserve)"


class NoRoom(OSError):
    """ENOSPC at the reserve; said as its message alone (no ``[Errno 28]``)."""

    def __str__(self) -> str:
        return str(self.strerror)


def _reserve(st: os.statvfs_result, min_free: int | None) -> int:
    """The reserve in bytes of the file system ``st`` describes (``min_free``: instead of
    the default, for tests)."""
    if min_free is not None:
        return min_free
    return max(MIN_FREE, int(st.f_blocks * st.f_frsize * MIN_FREE_FRACTION))


def room(fd: int, min_free: int | None = None) -> int:
    """Bytes an app may still write on the file system of ``fd`` (≤ 0: none)."""
    st = os.fstatvfs(fd)
    return st.f_bavail * st.f_frsize - _reserve(st, min_free)


def check(fd: int, size: int, *, names: int = 0, min_free: int | None = None) -> None:
    """ENOSPC unless ``size`` more bytes and ``names`` more names (an inode and
    ``NAME_COST`` bytes each) fit above the reserve on the file system of ``fd``."""
    st = os.fstatvfs(fd)
    reserve = _reserve(st, min_free)
    # Inodes too, for what makes a name (a directory, a link, an empty file): a grant
    # made 3,000 of each a second past a full byte reserve (a hostile review).
    inodes = max(MIN_FREE_INODES, int(st.f_files * MIN_FREE_FRACTION)) if st.f_files else 0
    if st.f_bavail * st.f_frsize - size - names * NAME_COST < reserve or \
            (names and st.f_favail - names < inodes):
        raise NoRoom(errno.ENOSPC, NO_ROOM)
