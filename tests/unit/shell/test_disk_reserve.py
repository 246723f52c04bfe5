"""What the shell writes for a user into the Exo tree stays above the disk reserve
(exo.kernel.diskreserve): a redirection is a pipe the kernel drains into its file
(exo.shell.sink), and the builtins that make files check it too.

Found by a hostile review (2026-12-04): a redirection handed the program the file's own
descriptor, so `/usr/bin/yes > f` as any user filled the host's disk; `cat /dev/zero > f`
(a builtin) did the same from the kernel itself."""

from __future__ import annotations

import os

import pytest
from tests.unit.shell._support import run

from exo.kernel.diskreserve import NO_ROOM
from exo.kernel.kernel import Kernel
from exo.kernel.users import UserDatabase, session_grants
from exo.shell import Session, Shell, Vfs

ROOM = 1 << 20  # what the reserve leaves the user in these tests


def _user_shell(kernel: Kernel, room: int | None) -> Shell:
    user = UserDatabase(kernel.root).add("mallory", "password1")
    (kernel.root / "home" / "mallory").mkdir(parents=True)
    vfs = Vfs(kernel.root, kernel.virtual_trees())
    if room is not None:  # the reserve: all that is free but ``room``
        st = os.statvfs(kernel.root)
        vfs.min_free = st.f_bavail * st.f_frsize - room
    session = Session(user.name, user.uid, user.home, session_grants(kernel.root, user))
    return Shell(kernel.api, vfs, session)


@pytest.fixture
def tight(kernel: Kernel) -> Shell:
    return _user_shell(kernel, ROOM)


def _size(kernel: Kernel, name: str) -> int:
    return (kernel.root / "home" / "mallory" / name).stat().st_size


def test_a_program_writing_endlessly_into_a_file_stops_at_the_reserve(
        tight: Shell, kernel: Kernel) -> None:
    status, _, err = run(tight, "/usr/bin/yes > y")
    assert status != 0  # the program was cut off (EPIPE or SIGPIPE)
    assert err == f"exo: y: {NO_ROOM}\n"
    # (about ROOM: the host's file system is shared, what else runs frees and takes room)
    assert 0 < _size(kernel, "y") <= 2 * ROOM
    # and the shell goes on: the next command works, what fit is in the file
    assert run(tight, "/usr/bin/head -c 4 y") == (0, "y\ny\n", "")


def test_a_builtin_writing_endlessly_stops_at_the_reserve(tight: Shell,
                                                         kernel: Kernel) -> None:
    status, _, err = run(tight, "cat /dev/zero > z")
    assert status != 0
    assert NO_ROOM in err
    assert _size(kernel, "z") <= ROOM


def test_copies_and_new_names_stop_at_the_reserve(kernel: Kernel) -> None:
    # (margins of tens of MB: the host's file system is shared with whatever else runs)
    sh = _user_shell(kernel, 64 << 20)
    assert run(sh, "/usr/bin/head -c 40000000 /dev/zero > big")[0] == 0
    assert _size(kernel, "big") == 40_000_000
    status, _, err = run(sh, "cp big copy")  # 40 MB more would pass the reserve
    assert status == 1 and NO_ROOM in err
    st = os.statvfs(kernel.root)  # no room at all now
    sh.vfs.min_free = st.f_bavail * st.f_frsize + (1 << 30)
    for line in ("mkdir d", "touch t", "echo hi > new", "cp big copy2"):
        status, _, err = run(sh, line)
        assert status == 1 and NO_ROOM in err, line
    home = kernel.root / "home" / "mallory"
    assert not {"d", "t", "new", "copy2"} & set(os.listdir(home))
    # an existing file can still be truncated (that frees room; its one byte does not
    # fit: said)
    assert run(sh, "echo > big") == (0, "", f"exo: big: {NO_ROOM}\n")
    assert _size(kernel, "big") == 0


def test_redirections_still_write_what_they_say(kernel: Kernel) -> None:
    sh = _user_shell(kernel, None)  # the default reserve
    lines = [
        "/bin/echo one > f", "echo two >> f", "/bin/echo three >> f",
        "/bin/ls /nonexistent 2> err", "/bin/sh -c 'echo out; echo err >&2' > both 2>&1",
        "/usr/bin/seq 100000 | /usr/bin/sort -n > sorted",
    ]
    for line in lines:
        run(sh, line)
    home = kernel.root / "home" / "mallory"
    assert (home / "f").read_text() == "one\ntwo\nthree\n"
    assert "nonexistent" in (home / "err").read_text()
    assert sorted((home / "both").read_text().split()) == ["err", "out"]
    assert (home / "sorted").read_text() == "".join(f"{i}\n" for i in range(1, 100001))
    assert run(sh, "echo new > f") == (0, "", "")  # > truncates
    assert (home / "f").read_text() == "new\n"


def test_a_background_jobs_output_is_in_the_file_once_it_is_waited_for(
        kernel: Kernel) -> None:
    sh = _user_shell(kernel, None)
    run(sh, "/usr/bin/seq 200000 > s &")
    assert run(sh, "wait")[0] == 0
    assert run(sh, "/usr/bin/tail -n 1 s") == (0, "200000\n", "")


def test_the_reserve_is_said_whatever_the_command_does_with_its_stderr(
        tight: Shell, kernel: Kernel) -> None:
    """`yes > y 2>&1` stopped at the reserve saying nothing (the sink said it on the
    command's stderr: the file itself); the line's own stderr hears it now."""
    for line in ("/usr/bin/yes > y 2>&1", "/usr/bin/yes > y 2> e"):
        status, _, err = run(tight, line)
        assert status != 0 and err == f"exo: y: {NO_ROOM}\n", (line, err)
    status, _, err = run(tight, "/usr/bin/touch new")  # a name the powerbox makes
    assert status != 0 and err == f"exo: /usr/bin/touch: /home/mallory/new: {NO_ROOM}\n"


def test_a_programs_writable_grant_keeps_the_reserve(tight: Shell, kernel: Kernel) -> None:
    """The powerbox exported a program's file arguments in FUSE passthrough, writable ones
    too: `yes | head -c 50000000 | tee big` wrote 48 MB with 16 MB of room."""
    run(tight, "touch big")
    assert run(tight, "/bin/cat big")[0] == 0  # (the kernel's file server is up)
    server = kernel.processes.files._dir_server.server
    st = os.statvfs(kernel.root)
    server._min_free = st.f_bavail * st.f_frsize - ROOM  # the same reserve as the shell's
    status, _, err = run(tight, "/usr/bin/yes | /usr/bin/head -c 5000000 | "
                                "/usr/bin/tee big > /dev/null")
    assert status != 0 and "No space left on device" in err, err
    assert _size(kernel, "big") <= 2 * ROOM


def test_appends_from_two_jobs_keep_their_lines_whole(kernel: Kernel) -> None:
    """A pipe hands the sink whatever it holds, a record cut anywhere: two jobs' `>>`
    tore 10 kB lines (each written whole, which O_APPEND keeps whole)."""
    sh = _user_shell(kernel, None)
    home = kernel.root / "home" / "mallory"
    (home / "rec.py").write_text(
        "import os, sys\n"
        "for _ in range(300):\n"
        "    os.write(1, sys.argv[1].encode() * 40000 + b'\\n')\n")
    run(sh, "/usr/bin/python3 rec.py A >> log & /usr/bin/python3 rec.py B >> log & wait")
    lines = (home / "log").read_text().splitlines()
    assert len(lines) == 600 and all(line in ("A" * 40000, "B" * 40000) for line in lines)
