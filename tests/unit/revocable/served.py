"""What the revocable file and directory server tests share: a server wired to a
capability manager, how to tell whether a mount is still there, and the disk reserve's
checks."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from exo.kernel.caps import Capability, CapabilityManager
from exo.kernel.revocable import RevocableDirs, RevocableFiles

PID = 42  # the process holding storage:// in these tests

_S = TypeVar("_S", RevocableFiles, RevocableDirs)


class Holder:
    """A capability manager and process ``PID`` holding ``storage://`` with every right."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.caps = CapabilityManager()
        self.caps.create_space(PID)
        self.root = self.caps.grant_root(PID, "storage://", "ALL")

    def pin(self, rights: str = "READ,WRITE") -> Capability:
        return self.caps.pin(PID, self.root, rights)

    def revoke(self) -> None:
        self.caps.revoke(PID, self.root)


def mounted(path: Path) -> bool:
    text = Path("/proc/self/mountinfo").read_text()
    return any(line.split()[4] == str(path) for line in text.splitlines())


@contextlib.contextmanager
def served(cls: type[_S], mount_dir: Path, caps: CapabilityManager,
           **options: int) -> Iterator[_S]:
    """A started server whose revocations come from ``caps``; what it released is in
    ``server.released``. Closed at the end, and its mount must be gone then."""
    released: list[object] = []
    server = cls(mount_dir, on_release=released.append, **options)
    server.start()
    unsubscribe = caps.on_revoke(server.revoke)
    server.released = released  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        unsubscribe()
        server.close()
    assert not mounted(mount_dir)


def reserve_past(path: Path) -> int:
    """A reserve (``min_free``) the file system of ``path`` is already 1 GiB short of."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize + (1 << 30)


def write_refused_for_room(fd: int) -> None:
    """A write on ``fd`` is ENOSPC (the reserve); ``fd`` is closed either way."""
    try:
        with pytest.raises(OSError) as full:
            os.write(fd, b"more")
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
