"""A program with a terminal has ``/dev/tty`` (its terminal's own node), for root and for
a user whose processes run as their own host uid; the terminal goes back to its owner
when the session ends."""

from __future__ import annotations

import os
import time
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


def test_ctrl_z_stops_less_which_gives_the_terminal_back_and_fg_resumes_it(
        exo_env: dict[str, str]) -> None:
    """Ctrl-Z is SIGTSTP first: less leaves its screen and stops itself, the prompt
    comes back on a usable terminal, and `fg` brings less back. It was SIGSTOPped in
    its screen, the terminal left as less had set it."""
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline("seq 1 500 > /tmp/long.txt; less /tmp/long.txt")
        term.expect("\r\n39\r\n")  # less shows the start of the file
        term.sendcontrol("z")
        term.expect(r"\[1\]\+ Stopped  less /tmp/long.txt")
        # less left its screen itself (its stop was discarded before: the sandbox's
        # command was in an orphaned process group), and did not come back to it
        shown = term.before
        assert "\x1b[?1049l" in shown and "\x1b[?1049h" not in shown.split("\x1b[?1049l")[-1]
        term.expect(PROMPT)
        term.sendline("echo typed-$((2+3))")  # the terminal echoes and reads lines again
        term.expect("typed-5")
        term.expect(PROMPT)
        term.sendline("fg")
        term.send("G")  # less again: to the end of the file
        term.expect("500")
        term.send("q")
        term.expect(PROMPT)
        term.sendline("jobs; echo listed")
        term.expect("listed")
        assert "Stopped" not in term.before
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)


def test_ctrl_c_is_sigint_to_a_program_that_takes_it(exo_env: dict[str, str]) -> None:
    """Ctrl-C was SIGINT then SIGKILL a second later: python's prompt, less or a
    program with a handler was killed for taking it. Now a program that handles it
    goes on (its status is its own); one that dies of it stops the line, as in sh; a
    second Ctrl-C while it still runs ends it."""
    handler = ("python3 -c \"import signal,time; signal.signal(signal.SIGINT, lambda *a: "
               "print('caught', flush=True)); print('up', flush=True); time.sleep(3); "
               "print('finished')\"")
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline(handler + "; echo status=$?")
        term.expect("up")
        term.sendintr()
        term.expect("caught")
        term.expect("finished", timeout=15)  # not killed a second after
        term.expect("status=0")
        term.expect(PROMPT)
        term.sendline("python3 -c \"import signal,time; signal.signal(signal.SIGINT, "
                      "signal.SIG_IGN); print('deaf', flush=True); time.sleep(60)\"")
        term.expect("deaf")
        term.sendintr()
        time.sleep(0.5)
        term.sendintr()  # the second: it ends
        term.expect(PROMPT, timeout=15)
        term.sendline("for i in 1 2; do /bin/sleep 30; echo next-$i; done")
        time.sleep(1.5)
        term.sendintr()  # sleep dies of it: the loop stops too
        term.expect(PROMPT, timeout=15)
        assert "next-1" not in term.before and "next-2" not in term.before
        term.sendline("shutdown")
        term.expect(pexpect.EOF)


def test_ctrl_z_stops_the_builtin_sleep_and_bg_fg_go_on(exo_env: dict[str, str]) -> None:
    """`sleep 30` then Ctrl-Z: bash's /bin/sleep stops and the prompt comes back. The
    builtin ran in the shell's own thread, where Ctrl-Z did nothing (what was typed next
    waited for the whole sleep). Now a job: Stopped, its clock held; `bg` lets it go on,
    `fg` brings it back, Ctrl-C ends it."""
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline("sleep 30")
        time.sleep(0.5)
        term.sendcontrol("z")
        term.expect(r"\[1\]\+ Stopped  sleep 30")
        term.expect(PROMPT)
        term.sendline("jobs; bg; jobs")
        term.expect(r"\[1\] Stopped    sleep 30")
        term.expect(r"\[1\] Running    sleep 30")
        term.expect(PROMPT)
        term.sendline("fg")
        term.expect("sleep 30")
        time.sleep(0.3)
        term.sendcontrol("c")
        term.expect(PROMPT)
        term.sendline("jobs; echo listed-$?")
        term.expect("listed-0")
        assert "sleep" not in term.before
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)
