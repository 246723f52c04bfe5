"""Sessions, users and job control at a terminal, typed the way a person types them."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pexpect
from tests.system.test_interactive import PROMPT, boot_terminal, log_out, login, login_as

USER_PROMPT = r"exo-os:[^\r\n$]*\$"


def status_is(child: pexpect.spawn, status: int) -> None:
    child.sendline('echo "status=$?"')
    child.expect(f"status={status}\r\n")
    child.expect(PROMPT)


def test_ctrl_c_reaches_the_foreground_job_only(exo_env: dict[str, str]) -> None:
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline("sh -c 'sleep 60' &")
        term.expect(r"\[1\] \d+\r\n")  # as sh: the job's number and its pid
        term.expect(PROMPT)
        for line in ("/bin/sleep 30", "run --cap storage://tmp=READ -- /bin/sleep 30",
                     "sleep 30"):
            term.sendline(line)
            term.expect_exact(line)
            time.sleep(1.0)  # the process is up
            term.sendintr()
            term.expect(PROMPT, timeout=15)
            status_is(term, 130)
            term.sendline("jobs")
            term.expect(r"\[1\] Running +sh -c 'sleep 60'")  # untouched
            term.expect(PROMPT)
        term.sendline("kill %1")
        term.expect(PROMPT)
        term.sendline("wait %1; echo waited=$?")
        term.expect(r"waited=143")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)


def test_ctrl_z_stops_the_job_bg_and_fg_resume_it(exo_env: dict[str, str]) -> None:
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline("sh -c 'echo st\"\"arted; sleep 2; echo slept-well'")
        term.expect("started")  # its output, not the typed line: it runs
        term.sendcontrol("z")
        term.expect(r"\[1\]\+ Stopped  sh -c 'echo st\"\"arted; sleep 2; echo slept-well'")
        term.expect(PROMPT)
        status_is(term, 148)
        term.sendline("jobs")
        term.expect(r"\[1\] Stopped")
        term.expect(PROMPT)
        time.sleep(2.0)  # stopped: it does not finish meanwhile
        term.sendline("bg %1")
        term.expect(r"\[1\]\+ sh -c 'echo st\"\"arted; sleep 2; echo slept-well' &")
        term.expect("slept-well", timeout=15)
        term.sendline("")
        term.expect(r"\[1\]\+ Done ")
        term.expect(PROMPT)
        # fg brings a background job back; Ctrl-C then reaches it
        term.sendline("sh -c 'sleep 60' &")
        term.expect(PROMPT)
        term.sendline("fg")
        term.expect_exact("sh -c 'sleep 60'\r\n")
        time.sleep(0.5)
        term.sendintr()
        term.expect(PROMPT, timeout=15)
        term.sendline("jobs; echo listed")
        term.expect("listed")
        assert "Running" not in term.before and "Stopped" not in term.before
        term.expect(PROMPT)
        # `run` is a job too: Ctrl-Z stops its process, kill %N ends it
        term.sendline("run --cap storage://tmp=READ -- /bin/sleep 60")
        term.expect_exact("/bin/sleep 60")
        time.sleep(1.0)
        term.sendcontrol("z")
        term.expect(r"\[\d\]\+ Stopped  run --cap")
        term.expect(PROMPT)
        term.sendline("ps")
        term.expect(r"stopped|running")  # what the kernel reports (its ps owns states)
        term.expect(PROMPT)
        term.sendline("kill -s KILL %1; wait %1; echo killed=$?")
        term.expect("killed=137")
        term.expect(PROMPT)
        # leaving with a job left: warned once, then the job ends with the session
        term.sendline("sh -c 'sleep 60' &")
        term.expect(PROMPT)
        term.sendline("exit")
        term.expect("there are jobs; exit again")
        term.expect(PROMPT)
        term.sendline("exit")
        term.expect("exo-os login: ")
        term.sendline("root")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)


def test_ctrl_c_never_reaches_the_process_that_started_exo(exo_env: dict[str, str]) -> None:
    """As under ``make run``: the parent shares the terminal, and survives Ctrl-C."""
    env = dict(exo_env, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn("/bin/sh", ["-c", f"{sys.executable} -m exo boot; "
                                      "echo parent-survived-$?"],
                          env=env, encoding="utf-8", timeout=30, dimensions=(40, 120))
    try:
        login(child)
        child.sendline("sleep 30")
        child.expect_exact("sleep 30")
        time.sleep(0.5)
        child.sendintr()
        child.expect(PROMPT)
        child.sendline("shutdown")
        child.expect("parent-survived-0")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_passwd_asks_twice_without_echo_and_keeps_it_out_of_history(
        exo_env: dict[str, str], exo_root: Path) -> None:
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline("passwd")
        term.expect("New password: ")
        term.sendline("first-Secret")
        term.expect("Retype new password: ")
        term.sendline("other-Secret")
        term.expect("passwords do not match")
        term.expect(PROMPT)
        term.sendline("passwd")
        term.expect("New password: ")
        term.sendline("n3w-Secret")
        term.expect("Retype new password: ")
        term.sendline("n3w-Secret")
        term.expect("password updated for root")
        term.expect(PROMPT)
        status_is(term, 0)
        assert "Secret" not in term.before
        term.sendline("history")
        term.expect(PROMPT)
        assert "Secret" not in term.before
        log_out(term)
    history = (exo_root / "home" / "root" / ".exo_history").read_text()
    assert "passwd" in history and "Secret" not in history
    with boot_terminal(exo_env) as term:
        login_as(term, "root", "n3w-Secret")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)


def test_three_failed_logins_wait_and_ask_again(exo_env: dict[str, str]) -> None:
    with boot_terminal(exo_env) as term:
        term.expect("exo-os login: ")
        term.sendcontrol("z")  # neither stops nor kills the kernel at the login prompt
        term.sendcontrol("\\")
        term.sendline("")
        for _ in range(3):
            login_as(term, "nobody", "wrong")
            term.expect("Login incorrect")
        term.expect("Too many failed logins")
        term.expect("exo-os login: ", timeout=15)
        assert term.isalive()
        term.sendline("root")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)


def test_a_user_is_refused_what_root_holds(exo_env: dict[str, str], exo_root: Path) -> None:
    from exo.kernel.tree import ensure_tree
    from exo.kernel.users import UserDatabase

    ensure_tree(exo_root)
    UserDatabase(exo_root).add("alice", "wonderland")
    (exo_root / "home" / "alice").mkdir()
    (exo_root / "home" / "root").mkdir(exist_ok=True)
    (exo_root / "home" / "root" / ".exo_history").write_text("echo root-secret\n")
    with boot_terminal(exo_env) as term:
        login_as(term, "alice", "wonderland")
        term.expect(USER_PROMPT)
        for line, refusal in [
            ("cat /home/root/.exo_history", "permission denied"),
            ("cat /etc/passwd", "permission denied"),
            ("echo x > /home/root/planted", "permission denied"),
            ("run --cap storage://=READ,WRITE -- /bin/true", "not held by this session"),
            ("shutdown", "device://power"),
            ("exo shutdown", "device://power"),
            ("sort /home/root/.exo_history", "permission denied"),
        ]:
            term.sendline(line)
            term.expect(refusal)
            term.expect(USER_PROMPT)
            assert "root-secret" not in term.before and "$scrypt$" not in term.before
        term.sendline("su root")
        term.expect("Password: ")
        term.sendline("")
        term.expect("authentication failure")
        term.expect(USER_PROMPT)
        term.sendline("history")
        term.expect(USER_PROMPT)
        assert "root-secret" not in term.before
        log_out(term)
    assert not (exo_root / "home" / "root" / "planted").exists()


def test_su_runs_a_shell_as_the_other_user_until_exit(exo_env: dict[str, str]) -> None:
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline("useradd dave")
        term.expect("New password: ")
        term.sendline("d4ve-pw")
        term.expect("Retype new password: ")
        term.sendline("d4ve-pw")
        term.expect(PROMPT)
        term.sendline("su dave")  # root needs no password
        term.expect(USER_PROMPT)
        term.sendline("whoami; cat /etc/passwd")
        term.expect("dave")
        term.expect("permission denied")
        term.expect(USER_PROMPT)
        term.sendline("exit")
        term.expect(PROMPT)
        term.sendline("whoami")
        term.expect("root")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)


def test_blocks_continue_on_the_next_line_and_bang_bang_repeats(
        exo_env: dict[str, str]) -> None:
    with boot_terminal(exo_env) as term:
        login(term)
        term.sendline("for i in 1 2; do")
        term.expect("\x1b\\[0m>")  # the continuation prompt
        term.sendline("echo item-$((i * 10))")
        term.expect("\x1b\\[0m>")  # the continuation prompt
        term.sendline("done")
        term.expect("item-10")
        term.expect("item-20")
        term.expect(PROMPT)
        term.sendline("echo bang-$((6 * 7))")
        term.expect("bang-42")
        term.expect(PROMPT)
        term.sendline("!!")
        term.expect_exact("echo bang-$((6 * 7))")  # shown, as sh shows it
        term.expect("bang-42")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)


def test_the_powerbox_asks_before_giving_an_unknown_program_more(
        exo_env: dict[str, str], exo_root: Path) -> None:
    from exo.kernel.tree import ensure_tree

    ensure_tree(exo_root)
    (exo_root / "tmp" / "outside.txt").write_text("from-outside\n")
    with boot_terminal(exo_env) as term:
        login(term)
        # `expand` has no policy: its working directory, read-only, and what we allow
        term.sendline("expand ../../tmp/outside.txt")
        term.expect(r"let expand read /tmp/outside.txt\? \[y/N\] ")
        term.sendline("n")
        term.expect(PROMPT)
        assert "from-outside" not in term.before
        term.sendline("expand ../../tmp/outside.txt")
        term.expect(r"let expand read /tmp/outside.txt\? \[y/N\] ")
        term.sendline("y")
        term.expect("from-outside")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)
