"""The kernel's rotating logs (kernel log, audit streams) never write through a link or
into a FIFO planted at their name: the kernel runs as root, an app granted WRITE on the
log's directory could otherwise make it write to any host file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from exo.kernel.rotating import RotatingFile


def test_a_plain_log_is_appended_and_rotated(tmp_path: Path) -> None:
    log = RotatingFile(tmp_path / "k.log", max_bytes=10, keep=2)
    log.write(b"12345678\n")
    log.write(b"abc\n")  # over 10 bytes: rotated first
    log.close()
    assert (tmp_path / "k.log.1").read_bytes() == b"12345678\n"
    assert (tmp_path / "k.log").read_bytes() == b"abc\n"


def test_a_symlink_at_the_name_is_not_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("host data\n")
    (tmp_path / "k.log").symlink_to(precious)
    with pytest.raises(OSError) as caught:
        RotatingFile(tmp_path / "k.log", max_bytes=1 << 20, keep=2)
    assert caught.value.errno == errno.ELOOP
    assert precious.read_text() == "host data\n"


def test_a_fifo_or_a_hard_link_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.log")
    with pytest.raises(OSError) as caught:
        RotatingFile(tmp_path / "fifo.log", max_bytes=1 << 20, keep=2)
    assert caught.value.errno in (errno.EACCES, errno.ENXIO)  # no reader: ENXIO at open
    precious = tmp_path / "precious"
    precious.write_text("host data\n")
    os.link(precious, tmp_path / "hard.log")
    with pytest.raises(OSError, match="not a plain file of its own"):
        RotatingFile(tmp_path / "hard.log", max_bytes=1 << 20, keep=2)
    assert precious.read_text() == "host data\n"


def test_a_link_planted_before_a_rotation_is_rotated_away_not_followed(
        tmp_path: Path) -> None:
    log = RotatingFile(tmp_path / "k.log", max_bytes=10, keep=2)
    log.write(b"12345678\n")
    precious = tmp_path / "precious"
    precious.write_text("host data\n")
    # a racing app swaps the live log for a link: the rotation renames the link itself
    # and opens a new plain file at the name
    os.rename(tmp_path / "k.log", tmp_path / "moved")
    (tmp_path / "k.log").symlink_to(precious)
    log.write(b"abcdefghij\n")
    log.close()
    assert precious.read_text() == "host data\n"
    assert (tmp_path / "k.log.1").is_symlink()
    assert (tmp_path / "k.log").read_bytes() == b"abcdefghij\n"


def test_a_fifo_planted_before_a_rotation_stops_the_log_not_the_kernel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = RotatingFile(tmp_path / "k.log", max_bytes=10, keep=2)
    log.write(b"12345678\n")
    real_replace = os.replace

    def replace_then_plant(src: str, dst: str) -> None:
        real_replace(src, dst)
        if src.endswith("k.log"):
            os.mkfifo(src)  # planted in the window between the rename and the open

    monkeypatch.setattr(os, "replace", replace_then_plant)
    with pytest.raises(OSError):
        log.write(b"abcdefghij\n")
    monkeypatch.undo()
    log.write(b"dropped\n")  # no exception, no block: the log is closed
    log.close()
