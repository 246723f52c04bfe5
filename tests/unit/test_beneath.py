"""exo.kernel.beneath: what the kernel and the shell may reach from a directory descriptor."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from exo.kernel import beneath


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "root"
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("f")
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink("f.txt", root / "d" / "rel")             # inside the tree
    os.symlink("../../outside.txt", root / "d" / "up")  # climbs out
    os.symlink(tmp_path / "outside.txt", root / "d" / "abs")
    os.symlink("d", root / "dlink")
    os.mkfifo(root / "d" / "fifo")
    fd = beneath.open_root(root)
    try:
        yield root, fd
    finally:
        os.close(fd)


def _errno(fn: object, *args: object) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.errno or 0


def test_strict_follows_no_link_anywhere_on_the_path(tree: tuple[Path, int]) -> None:
    _, fd = tree
    os.close(beneath.open_file(fd, "d/f.txt", os.O_RDONLY))
    for path in ("d/rel", "d/up", "d/abs", "dlink/f.txt", "dlink"):
        assert _errno(beneath.open_file, fd, path, os.O_RDONLY) == errno.ELOOP, path
    assert _errno(beneath.openat2, fd, "d/../../x", os.O_PATH) == errno.EXDEV
    assert _errno(beneath.openat2, fd, "/etc/passwd", os.O_PATH) == errno.EXDEV


def test_confined_follows_links_inside_and_refuses_the_way_out(tree: tuple[Path, int]
                                                               ) -> None:
    _, fd = tree
    for path in ("d/rel", "dlink/f.txt"):
        got = beneath.open_file(fd, path, os.O_RDONLY, resolve=beneath.CONFINED)
        assert os.read(got, 10) == b"f"
        os.close(got)
    for path in ("d/up", "d/abs"):
        assert _errno(beneath.open_file, fd, path, os.O_RDONLY, 0o644,
                      beneath.CONFINED) == errno.EXDEV


def test_a_fifo_is_refused_at_once_and_files_come_back_blocking(tree: tuple[Path, int]
                                                                ) -> None:
    _, fd = tree
    with pytest.raises(PermissionError, match="is a FIFO"):
        beneath.open_file(fd, "d/fifo", os.O_RDONLY)       # would block without O_NONBLOCK
    assert _errno(beneath.open_file, fd, "d/fifo", os.O_WRONLY) == errno.ENXIO  # no reader
    got = beneath.open_file(fd, "d/f.txt", os.O_RDONLY)
    assert not fcntl.fcntl(got, fcntl.F_GETFL) & os.O_NONBLOCK
    os.close(got)
    got = beneath.open_file(fd, "d/new.txt", os.O_WRONLY | os.O_CREAT, 0o600)
    assert os.fstat(got).st_mode & 0o777 == 0o600
    os.close(got)
    assert beneath.kind_name(os.stat(tree[0] / "d" / "fifo").st_mode) == "a FIFO"
