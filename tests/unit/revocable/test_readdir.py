"""READDIR through both FUSE servers: the real directory page by page, nothing kept.

The attack these guard against: a process opened a directory of 30,000 long names 300 times
and started reading each; the servers kept every handle's whole listing until release and
the kernel grew by gigabytes. Now a READDIR reads one page of the real directory at the
client's offset (the real filesystem's cookie) and keeps nothing.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.unit.revocable.served import PID, Holder, served

from exo.kernel.revocable import RevocableDirs, RevocableFiles, _getdents

pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or os.geteuid() != 0,
    reason="needs /dev/fuse and root (mount(2) of a FUSE file system)",
)

FILES = 3000
HANDLES = 40

Opener = Callable[[], int]      # opens the big directory through a server: an fd on its mount


def _long(i: int) -> str:
    return f"{i:06d}-" + "x" * 193            # 200 characters


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("readdir") / "big"
    d.mkdir()
    for i in range(FILES):
        (d / _long(i)).touch()
    (d / "sub").mkdir()
    (d / "link").symlink_to("sub")
    return d


@pytest.fixture(params=["dirs", "files"])
def opener(request: pytest.FixtureRequest, big: Path, tmp_path: Path) -> Iterator[Opener]:
    """Opens ``big`` through the directory server (an export) or the file server (a
    registered directory descriptor, as the kernel's ``open`` syscall does)."""
    holder = Holder(tmp_path)
    if request.param == "dirs":
        with served(RevocableDirs, tmp_path / "mnt", holder.caps) as dirs:
            fd = os.open(big.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            grant = dirs.export(fd, holder.pin(), writable=True, owner=PID)
            yield lambda: os.open(grant / "big", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        with served(RevocableFiles, tmp_path / "mnt", holder.caps) as files:
            def open_dir() -> int:
                real = os.open(big, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                return files.open(real, holder.pin("READ"), os.O_RDONLY, owner=PID)
            yield open_dir


def test_many_open_directories_being_read_keep_no_listing(opener: Opener) -> None:
    fds: list[int] = []
    iterators: list[Iterator[os.DirEntry[str]]] = []
    try:
        warm = opener()                          # the server's one-time allocations
        fds.append(warm)
        with os.scandir(warm) as it:
            next(it)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(HANDLES):
            fd = opener()
            fds.append(fd)
            it = os.scandir(fd)
            iterators.append(it)
            next(it)                             # the first READDIR of this handle
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        for it in iterators:
            it.close()                           # type: ignore[attr-defined]
        for fd in fds:
            os.close(fd)
    # A kept listing of 3,000 names of 200 bytes is ~1 MB per handle (40 MB here); what
    # is left is the handles' bookkeeping, a few hundred bytes each.
    assert grown < 400_000, grown


def test_a_full_listing_through_the_mount_is_the_real_directory(opener: Opener,
                                                                big: Path) -> None:
    fd = opener()
    try:
        real = os.listdir(big)
        listed = os.listdir(fd)
        assert len(listed) == len(real) == FILES + 2
        assert sorted(listed) == sorted(real)
        os.lseek(fd, 0, os.SEEK_SET)
        with os.scandir(fd) as it:
            entries = {e.name: e for e in it}
        assert sorted(entries) == sorted(real)
        assert entries["sub"].is_dir(follow_symlinks=False)
        assert entries["link"].is_symlink()
        assert entries[_long(7)].is_file(follow_symlinks=False)
    finally:
        os.close(fd)


def test_small_reads_resume_at_the_last_entry_taken(opener: Opener, big: Path) -> None:
    """getdents64 with a buffer of two entries: each call is a READDIR at the offset of the
    last entry the client took, so nothing is skipped or repeated."""
    fd = opener()
    try:
        names: list[bytes] = []
        cookie = 0
        while page := _getdents.read_at(fd, cookie, 600):
            names += [name for name, _ino, _type, _off in page]
            cookie = page[-1][3]
        assert names[:2] == [b".", b".."]
        assert len(names) == len(set(names)) == FILES + 4
        assert sorted(os.fsdecode(n) for n in names[2:]) == sorted(os.listdir(big))
    finally:
        os.close(fd)


def test_changes_between_reads_are_seen_as_on_the_real_directory(opener: Opener,
                                                                 big: Path) -> None:
    """Names neither added nor removed while listing appear exactly once, and none twice
    (getdents' guarantee, which the servers now pass through; whether the added and
    removed ones appear is unspecified, as on the real directory)."""
    fd = opener()
    added = [big / f"new-{i}" for i in range(50)]
    removed: list[str] = []
    try:
        seen: list[str] = []
        with os.scandir(fd) as it:
            for entry in it:
                seen.append(entry.name)
                if len(seen) == FILES // 2:
                    for p in added:
                        p.touch()
                    rest = sorted(set(os.listdir(big)) - set(seen) - {p.name for p in added})
                    removed = rest[:50]
                    for name in removed:
                        os.rename(big / name, big.parent / name)
        assert len(seen) == len(set(seen))
        untouched = set(os.listdir(big)) - {p.name for p in added}
        assert untouched <= set(seen)
    finally:
        os.close(fd)
        for p in added:
            p.unlink(missing_ok=True)
        for name in removed:
            os.rename(big.parent / name, big / name)
