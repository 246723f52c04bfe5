"""A log file that rotates by size (the audit log's streams, the kernel log)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import BinaryIO


def own_plain_file(fd: int, name: str) -> os.stat_result:
    """``fd``'s status, if it is a regular file with one link; else ``EACCES``: a link or
    FIFO an app planted where the kernel (root) writes a log (``beneath.open_log`` too)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        raise OSError(errno.EACCES, f"{name}: not a plain file of its own (a link planted "
                      "there?): Exo does not write to it")
    return st


class RotatingFile:
    """A log file rotated by size: ``path`` -> ``.1`` ... ``.keep`` (dropped).

    Opened once and kept open (``O_APPEND``, one write per line, so a reader never sees
    half a line): a kernel out of descriptors must still be able to say so. Not locked
    itself: its owner calls it under its own lock."""

    __slots__ = ("_file", "_size", "keep", "max_bytes", "path")

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._file: BinaryIO | None = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        # Line-at-a-time writes with O_APPEND: readers never see half a record. The kernel
        # runs as root and an app granted WRITE on the log's directory could plant a link
        # or a FIFO at its name: the last component is never followed, the open never
        # blocks, and only a plain file of its own (one link) is written to.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, 0o600)
        try:
            st = own_plain_file(fd, str(self.path))
        except BaseException:
            os.close(fd)
            raise
        self._file = open(fd, "ab", buffering=0)  # noqa: SIM115 - kept open
        self._size = st.st_size

    def write(self, line: bytes) -> None:
        if self._file is None:
            return
        if self._size + len(line) > self.max_bytes and self._size > 0:
            self._rotate()
        assert self._file is not None
        self._file.write(line)
        self._size += len(line)

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        base = str(self.path)
        for n in range(self.keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{base}.{n}", f"{base}.{n + 1}")
        os.replace(base, f"{base}.1")  # renames a planted link itself, never its target
        self._file = None  # if the name cannot be opened again, later lines are dropped
        self._open()

    def files(self) -> list[Path]:
        """The files that exist, oldest first."""
        older = [Path(f"{self.path}.{n}") for n in range(self.keep, 0, -1)]
        return [p for p in (*older, self.path) if p.exists()]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
