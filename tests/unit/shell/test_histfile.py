"""The history file is read from its end only (exo.shell.histfile): it lies in a home
the user's programs write, and a login read it whole into the kernel."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from prompt_toolkit.history import FileHistory

from exo.shell.histfile import TAIL, TailFileHistory


def test_it_reads_what_prompt_toolkit_writes(tmp_path: Path) -> None:
    path = tmp_path / "h"
    writer = FileHistory(str(path))
    for line in ("ls", "cd /tmp", "for i in 1 2\ndo echo $i\ndone", "+plus"):
        writer.store_string(line)
    assert list(TailFileHistory(str(path)).load_history_strings()) == \
        list(FileHistory(str(path)).load_history_strings())


def test_a_huge_history_file_is_read_from_its_end_only(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_bytes(b"+" + b"y" * (3 * TAIL))  # one endless "line", no newline
    TailFileHistory(str(path)).store_string("after")
    real_open = open
    read: list[int] = []

    def counting_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        f = real_open(*args, **kwargs)
        real_read = f.read
        f.read = lambda n=-1: read.append(n) or real_read(n)  # type: ignore[method-assign]
        return f

    with mock.patch("builtins.open", counting_open):
        strings = list(TailFileHistory(str(path)).load_history_strings())
    assert strings[0] == "after" and all(len(s) <= TAIL for s in strings)
    assert read == [TAIL]
    assert list(TailFileHistory(str(tmp_path / "none")).load_history_strings()) == []
