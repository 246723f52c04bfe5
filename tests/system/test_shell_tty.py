"""A program with a terminal has ``/dev/tty`` (its terminal's own node), for root and for
a user whose processes run as their own host uid; the terminal goes back to its owner
when the session ends."""

from __future__ import annotations

import os
from pathlib import Path

import pexpect
import pytest
from tests.system.test_interactive import PROMPT, boot_terminal, login, login_as

from exo.kernel.sessions import EXO_UID_BASE

USER_PROMPT = r"exo-os:[^\r\n$]*\$"


def _talk_through_dev_tty(term: pexpect.spawn, prompt: str) -> None:
    term.sendline("/bin/sh -c 'echo out-$((6*7)) > /dev/tty'")
    term.expect("out-42")
    term.expect(prompt)
    term.sendline("/bin/sh -c 'read x < /dev/tty; echo got-$x'")
    term.expect_exact("read x")
    term.sendline("abc")
    term.expect("got-abc")
    term.expect(prompt)


def test_dev_tty_for_root_and_a_user(exo_env: dict[str, str], exo_root: Path) -> None:
    from exo.kernel.tree import ensure_tree
    from exo.kernel.users import UserDatabase

    ensure_tree(exo_root)
    alice = UserDatabase(exo_root).add("alice", "wonderland")
    (exo_root / "home" / "alice").mkdir()
    with boot_terminal(exo_env) as term:
        pts = os.readlink(f"/proc/{term.pid}/fd/0")  # the terminal exo boot runs on
        owner = os.stat(pts).st_uid
        login(term)
        _talk_through_dev_tty(term, PROMPT)
        term.sendline("exit")
        login_as(term, "alice", "wonderland")
        term.expect(USER_PROMPT)
        if os.geteuid() == 0:  # the terminal is alice's host uid's while she is on it
            assert os.stat(pts).st_uid == EXO_UID_BASE + alice.uid
        _talk_through_dev_tty(term, USER_PROMPT)
        term.sendline("exit")
        term.expect("exo-os login: ")
        assert os.stat(pts).st_uid == owner  # given back at logout
        term.sendeof()
        term.expect(pexpect.EOF)


@pytest.mark.skipif(not os.path.exists("/usr/bin/nano"), reason="nano is not installed "
                    "(make setup installs it when run as root)")
def test_nano_edits_a_file_through_the_powerbox(exo_env: dict[str, str],
                                                exo_root: Path) -> None:
    """``nano notes.txt``, as issue 9 asks: the editor runs sandboxed on the terminal,
    holding the file it names, and what it saves is in the Exo tree."""
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline("cd /tmp; nano notes.txt")
        term.expect("GNU nano")
        term.send("written in nano")
        term.sendcontrol("o")  # write out ...
        term.expect("File Name to Write")
        term.send("\r")  # ... under its name
        term.expect("Wrote 1 line")
        term.sendcontrol("x")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)
    assert (exo_root / "tmp" / "notes.txt").read_text() == "written in nano\n"
