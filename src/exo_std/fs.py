"""Files reached through capabilities: the kernel opens them and passes the fd."""

from __future__ import annotations

import os

from exo.abi import Rights
from exo_std._kernel import call
from exo_std.caps import _rights_text

TYPE_CHECKING = False  # no typing import at run time: every app imports this (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any


class File:
    """An open file. Use ``File.open(name, rights)``; it is a context manager."""

    def __init__(self, fd: int, name: str, rights: Rights) -> None:
        self.fd = fd
        self.name = name
        self.rights = rights

    @classmethod
    def open(cls, name: str, rights: Rights | str = Rights.READ, *,
             create: bool = False, truncate: bool = False, append: bool = False) -> File:
        """Open ``storage://…`` (or a path relative to our first directory capability).

        The kernel checks our capabilities, opens the file beneath the granted
        directory (symlinks cannot lead out) and hands us the descriptor.
        """
        result, fds = call("open", name=name, rights=_rights_text(rights), create=create,
                           truncate=truncate, append=append)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError(f"kernel returned {len(fds)} descriptors for one file")
        return cls(fds[0], str(result["resource"]), Rights(int(result["rights"])))

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            chunks = []
            while chunk := os.read(self.fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        return os.read(self.fd, size)

    def write(self, data: bytes | str) -> int:
        buf = data.encode() if isinstance(data, str) else data
        view = memoryview(buf)
        while view:
            view = view[os.write(self.fd, view):]
        return len(buf)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fd, offset, whence)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def listdir(name: str) -> list[str]:
    """Names in a directory we hold a READ capability on."""
    result, _ = call("listdir", name=name)
    return [str(n) for n in result]
