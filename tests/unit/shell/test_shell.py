"""The shell's behaviour as a user sees it, on a real booted kernel."""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel
from exo.shell import Shell, ShellExit, Vfs

from ._support import run


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    kernel = Kernel(KernelConfig(root=tmp_path / "root"), ephemeral=True)
    kernel.boot()
    try:
        yield Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()))
    finally:
        kernel.shutdown()


def test_ls_root_shows_the_exo_tree(shell: Shell) -> None:
    status, out, _ = run(shell, "ls /")
    assert status == 0
    assert out.split() == ["bin", "dev", "etc", "exo", "home", "lib", "proc", "sys", "tmp",
                           "usr", "var"]


def test_echo_pipes_and_redirection(shell: Shell) -> None:
    assert run(shell, "echo hello > /tmp/a; echo world >> /tmp/a; cat /tmp/a | wc -l")[1] \
        == "2\n"
    assert (shell.kernel.root / "tmp" / "a").read_text() == "hello\nworld\n"
    assert run(shell, "grep wor < /tmp/a")[1] == "world\n"


def test_head_tail_and_grep_options(shell: Shell) -> None:
    text = b"".join(f"line {i}\n".encode() for i in range(1, 13))
    assert run(shell, "head", text)[1].splitlines() == [f"line {i}" for i in range(1, 11)]
    assert run(shell, "head -3", text)[1] == "line 1\nline 2\nline 3\n"
    assert run(shell, "head -n 2", text)[1] == "line 1\nline 2\n"
    assert run(shell, "tail -2", text)[1] == "line 11\nline 12\n"
    assert run(shell, "tail -n 0", text)[1] == ""
    assert run(shell, "grep -c 1", text)[1] == "4\n"  # 1, 10, 11, 12
    assert run(shell, "grep -n 'line 1[12]'", text)[1] == "11:line 11\n12:line 12\n"
    assert run(shell, "grep -vc line", text)[:2] == (1, "0\n")
    # an option the builtin lacks: the host's grep, through the powerbox
    assert run(shell, "grep -m1 line", text)[1] == "line 1\n"
    # what the helper's afternoon as a new user needed (2026-12-04)
    assert run(shell, "tail -n +11", text)[1] == "line 11\nline 12\n"
    assert run(shell, "head -n -10", text)[1] == "line 1\nline 2\n"
    assert run(shell, "head -c 8", text)[1] == "line 1\nl"
    assert run(shell, "tail -c 3", text)[1] == "12\n"
    assert run(shell, "grep -q 'line 5'; echo $?", text)[1] == "0\n"
    assert run(shell, "grep -q nothing; echo $?", text)[1] == "1\n"
    assert run(shell, "grep -x 'line 1'", text)[1] == "line 1\n"
    assert run(shell, "grep -w 1", text)[1] == "line 1\n"
    assert run(shell, "grep -o 'e [0-9]*' -m1", text)[1] == "e 1\n"  # the host's grep
    assert run(shell, "grep -oE 'e 1[01]'", text)[1] == "e 10\ne 11\n"
    assert run(shell, "grep -F -e '1[' -e 'line 9'", text)[1] == "line 9\n"
    run(shell, "mkdir -p /tmp/g/d; echo x > /tmp/g/d/f")
    assert run(shell, "cd /tmp/g; grep -r x .") == (0, "./d/f:x\n", "")


def test_line_tools_name_files_as_coreutils_do(shell: Shell) -> None:
    run(shell, "echo a > /tmp/f; echo b >> /tmp/f; echo c > /tmp/g")
    assert run(shell, "wc /tmp/f /tmp/g")[1] == "2 2 4 /tmp/f\n1 1 2 /tmp/g\n3 3 6 total\n"
    assert run(shell, "wc -l /tmp/f")[1] == "2 /tmp/f\n"
    assert run(shell, "wc -l < /tmp/f")[1] == "2\n"
    assert run(shell, "grep -c . /tmp/f /tmp/g")[1] == "/tmp/f:2\n/tmp/g:1\n"
    assert run(shell, "grep -l b /tmp/f /tmp/g")[1] == "/tmp/f\n"
    assert run(shell, "grep -h . /tmp/f /tmp/g")[1] == "a\nb\nc\n"
    assert run(shell, "head -1 /tmp/f /tmp/g")[1] == "==> /tmp/f <==\na\n\n==> /tmp/g <==\nc\n"
    status, out, err = run(shell, "head -1 /tmp/nope /tmp/g")
    assert status == 1 and out.endswith("c\n") and "cannot open '/tmp/nope'" in err


def test_line_tools_stop_reading_an_endless_input(shell: Shell) -> None:
    """``yes | head -3`` read all of an endless pipe into the kernel (10 GB in 30 s,
    found by a new user's afternoon); the tools stream, and stop when done."""
    assert run(shell, "/usr/bin/yes | head -3") == (0, "y\ny\ny\n", "")
    assert run(shell, "/usr/bin/yes | grep y | head -2") == (0, "y\ny\n", "")
    assert run(shell, "/usr/bin/yes | grep -q y; echo $?")[1] == "0\n"
    status, _, err = run(shell, "/usr/bin/head -c 70000000 /dev/zero | grep x")
    assert status == 2 and "a line longer than 1 MiB" in err


def test_run_start_failures_set_a_shells_status(shell: Shell) -> None:
    status, _, err = run(shell, "run -- /nonexistent; echo $?")
    assert err == "run: cannot run '/nonexistent': No such file or directory\n"
    assert run(shell, "run -- /nonexistent")[0] == 127
    status, _, err = run(shell, "run --cap storage://home/nope=READ -- /bin/true")
    assert status == 126
    assert err == "run: storage://home/nope: no such file or directory in the Exo tree\n"


def test_unknown_command_is_127_and_status_variable(shell: Shell) -> None:
    status, out, err = run(shell, "nosuchcmd; echo $?")
    assert err == "exo: nosuchcmd: command not found\n"
    assert out == "127\n"
    assert status == 0
    assert run(shell, "nosuchcmd")[0] == 127


def test_and_or_lists(shell: Shell) -> None:
    assert run(shell, "false && echo no || echo yes")[1] == "yes\n"
    assert run(shell, "true && echo ok")[1] == "ok\n"


def test_cd_pwd_mkdir_cp_mv_rm(shell: Shell) -> None:
    assert run(shell, "mkdir -p /home/u/d && cd /home/u && pwd")[1] == "/home/u\n"
    run(shell, "echo x > f && cp f d/ && mv f g")
    assert run(shell, "ls d; ls")[1].split() == ["f", "d", "g"]
    assert run(shell, "rm d")[0] == 1
    assert run(shell, "rm -r d g && ls")[1] == ""


def test_cannot_escape_the_tree(shell: Shell) -> None:
    run(shell, "cd /../../..")
    assert shell.cwd == "/"
    host_secret = Path(tempfile.mkdtemp()) / "secret"
    host_secret.write_text("host data")
    os.symlink(host_secret, shell.kernel.root / "tmp" / "link")
    status, out, err = run(shell, "cat /tmp/link")
    assert status == 1 and "does not follow links" in err and out == ""


def test_env_export_and_expansion(shell: Shell) -> None:
    assert run(shell, "export GREETING='hi there'; echo \"$GREETING!\"")[1] == "hi there!\n"
    assert "GREETING=hi there" in run(shell, "env")[1]


def test_proc_and_sys_are_synthesised(shell: Shell) -> None:
    out = run(shell, "ls /proc")[1].split()
    assert {"boot", "uptime", "version", "1"} <= set(out)
    assert "exo-kernel" in run(shell, "cat /proc/1/cmdline")[1]
    assert run(shell, "cat /sys/kernel/boot_id")[1].strip() == shell.kernel.boot_id
    assert run(shell, "echo x > /proc/version")[0] == 1


def test_glob(shell: Shell) -> None:
    run(shell, "touch /tmp/a.txt /tmp/b.txt /tmp/c.md")
    assert run(shell, "cd /tmp; echo *.txt")[1] == "a.txt b.txt\n"


def test_exit_raises_with_status(shell: Shell) -> None:
    with pytest.raises(ShellExit) as info:
        run(shell, "exit 3")
    assert info.value.status == 3


def test_syntax_error_is_status_2(shell: Shell) -> None:
    status, _, err = run(shell, "echo 'unterminated")
    assert status == 2 and "unterminated" in err


def test_ps_lists_the_kernel(shell: Shell) -> None:
    out = run(shell, "ps")[1]
    assert "exo-kernel" in out and "PID" in out


def test_help_lists_required_commands(shell: Shell) -> None:
    out = run(shell, "help")[1]
    required = ("cd", "ls", "cat", "echo", "pwd", "mkdir", "rm", "cp", "mv", "ps", "kill",
                "env", "export", "help", "exit")
    for cmd in required:
        assert f"  {cmd} " in out


def test_kill_unknown_pid(shell: Shell) -> None:
    status, _, err = run(shell, "kill 999")
    assert status == 1 and "no such process" in err


def test_a_background_program_says_its_pid_and_ps_time_is_its_cpu(shell: Shell) -> None:
    """`cmd &` says `[N] PID` (the last stage's pid), as sh; ps's TIME is CPU time (it
    was the time since the start): a busy loop's grows, a sleeper's stays near zero."""
    import json
    import re
    import time

    status, _, err = run(shell, "/usr/bin/python3 -c 'while 1: pass' &")
    found = re.fullmatch(r"\[1\] (\d+)\n", err)
    assert status == 0 and found, err
    busy = int(found[1])
    second = re.fullmatch(r"\[2\] (\d+)\n", run(shell, "/bin/sleep 30 &")[2])
    assert second
    sleeper = int(second[1])

    def cpu() -> dict[int, float]:
        rows = json.loads(run(shell, "ps --json")[1])
        return {r["pid"]: r["cpu_s"] for r in rows if r["pid"] in (busy, sleeper)}

    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (cpu().get(busy) or 0) < 0.3:
            time.sleep(0.05)
        seen = cpu()
        assert seen[busy] >= 0.3 and seen[sleeper] < 0.1, seen
        row = next(r.split() for r in run(shell, "ps")[1].splitlines()[1:]
                   if r.split()[0] == str(busy))
        assert float(row[4].rstrip("s")) >= 0.3  # TIME
    finally:
        assert run(shell, f"kill {busy} {sleeper}")[0] == 0
        run(shell, "wait")


def test_background_job_ps_and_kill(shell: Shell) -> None:
    import time

    status, _, err = run(shell, "run --cap storage://tmp=READ -- /bin/sleep 30 &")
    assert status == 0 and err.startswith("[1] run")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "/bin/sleep 30" not in run(shell, "ps")[1]:
        time.sleep(0.05)
    rows = [r for r in run(shell, "ps")[1].splitlines() if "/bin/sleep 30" in r]
    assert len(rows) == 1 and rows[0].split()[2] == "running"
    pid = rows[0].split()[0]
    assert run(shell, f"cat /proc/{pid}/caps")[1].strip().endswith("storage://tmp")
    assert run(shell, f"kill {pid}")[0] == 0
    shell.jobs[0].done.wait(20)
    assert shell.jobs[0].status == 128 + 15
    assert "Terminated" in run(shell, "jobs")[1]  # (status 143, said as bash says it)
    assert "/bin/sleep 30" not in run(shell, "ps")[1]


def test_a_stopped_job_shows_stopped_and_a_kill_ends_it(shell: Shell) -> None:
    """``kill -STOP %1`` marks the job Stopped in ``jobs``; ``kill %1`` then ends it, as
    in bash (SIGTERM, then SIGCONT so that the signal is not left pending forever)."""
    import time

    assert run(shell, "/bin/sleep 30 &")[0] == 0
    assert run(shell, "kill -STOP %1")[0] == 0
    deadline = time.monotonic() + 10
    while "stopped" not in run(shell, "ps")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "Stopped" in run(shell, "jobs")[1]
    assert run(shell, "kill %1")[0] == 0
    assert shell.jobs[0].done.wait(10)
    assert shell.jobs[0].status == 128 + 15


def test_a_command_that_stops_itself_gives_the_prompt_back(shell: Shell,
                                                          kernel: Kernel) -> None:
    """A foreground command stopped by its own doing (not Ctrl-Z) is a stopped job, as
    in sh: the shell says so and returns, and ``kill %1`` ends it."""
    home = kernel.root / "home" / "root"
    (home / "halt.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n")
    status, _, err = run(shell, "python3 halt.py")
    assert status == 128 + 20 and "Stopped" in err
    assert "Stopped" in run(shell, "jobs")[1]
    assert run(shell, "kill %1")[0] == 0
    assert shell.jobs[0].done.wait(10)


def test_a_crashing_builtin_does_not_kill_the_shell(shell: Shell) -> None:
    def broken(ctx: object) -> int:
        raise ZeroDivisionError("boom")

    shell.builtins["broken"] = broken
    status, out, err = run(shell, "broken; echo still")
    assert "internal error: ZeroDivisionError: boom" in err
    assert (status, out) == (0, "still\n")
    assert run(shell, "echo alive")[1] == "alive\n"


def test_useradd_and_passwd_store_scrypt_hashes(shell: Shell) -> None:
    from exo.kernel.users import UserDatabase

    status, out, err = run(shell, "useradd alice", stdin=b"s3cret\n")
    assert status == 0, err
    assert "user alice created (uid 1000" in out
    db = UserDatabase(shell.kernel.root)
    alice = db.get("alice")
    assert alice is not None and alice.password_hash.startswith("$scrypt$")
    assert "s3cret" not in (shell.kernel.root / "etc" / "passwd").read_text()
    assert db.authenticate("alice", "s3cret", dev_mode=True) is not None
    assert db.authenticate("alice", "wrong", dev_mode=True) is None
    assert shell.vfs.is_dir("/home/alice")
    assert run(shell, "useradd alice", stdin=b"x\n")[0] == 1
    assert run(shell, "passwd alice", stdin=b"n3w\n")[0] == 0
    assert db.authenticate("alice", "n3w", dev_mode=True) is not None
    assert run(shell, "useradd 'bad name'", stdin=b"x\n")[0] == 1


def _swap_forever(target: Path, outside: Path, stop: threading.Event) -> None:
    """An app's attack: ``target`` flips between a plain file and links out of the tree."""
    link, plain = target.with_name(".swap-link"), target.with_name(".swap-file")
    relative = os.path.relpath(outside, target.parent)
    while not stop.is_set():
        for dest in (str(outside), relative):
            os.symlink(dest, link)
            os.replace(link, target)
            plain.write_bytes(b"")
            os.replace(plain, target)


def test_a_racing_symlink_swap_never_redirects_a_root_write(shell: Shell,
                                                            tmp_path: Path) -> None:
    """`echo x > FILE` while an app swaps FILE for a link out of the tree, over and over:
    the shell (root) writes the file or refuses, never the host file behind the link."""
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    home = shell.kernel.root / "home" / "demo"
    home.mkdir(parents=True)
    stop = threading.Event()
    swapper = threading.Thread(target=_swap_forever, args=(home / "notes.txt", outside, stop))
    swapper.start()
    wrote = refused = tries = 0
    try:
        # Until both sides of the race were hit many times (bounded by tries, not time).
        while (wrote < 50 or refused < 50) and tries < 20_000:
            tries += 1
            try:
                fd = shell.vfs.open_write("/home/demo/notes.txt")
            except OSError:
                refused += 1
                continue
            os.write(fd, b"x")
            os.close(fd)
            wrote += 1
        status = [run(shell, "echo x > /home/demo/notes.txt")[0] for _ in range(100)]
    finally:
        stop.set()
        swapper.join()
    assert outside.read_text() == "untouched"
    assert wrote >= 50 and refused >= 50, (wrote, refused, tries)
    assert set(status) <= {0, 1}


def test_files_are_opened_beneath_the_tree_and_never_block(shell: Shell,
                                                          tmp_path: Path) -> None:
    tmp = shell.kernel.root / "tmp"
    os.mkfifo(tmp / "fifo")
    for line in ("cat /tmp/fifo", "echo x > /tmp/fifo", "cat < /tmp/fifo",
                 "cp /tmp/fifo /tmp/y"):
        status, _out, err = run(shell, line)
        # Refused at once: a FIFO is not opened (for writing, with no reader, ENXIO first).
        assert status == 1 and ("FIFO" in err or "No such device" in err), (line, err)
    (tmp / "d").mkdir()
    os.symlink("../../../outside", tmp / "d" / "up")
    status, _out, err = run(shell, "echo x > /tmp/d/up")
    assert status == 1 and "does not follow links" in err
    assert not (tmp_path / "outside").exists()
    run(shell, "echo hi > /tmp/d/f; touch /tmp/d/g; cp -r /tmp/d /tmp/e; mv /tmp/e /tmp/h")
    assert sorted(os.listdir(tmp / "h")) == ["f", "g", "up"]
    assert os.readlink(tmp / "h" / "up") == "../../../outside"  # copied as a link
    assert (tmp / "h" / "f").read_text() == "hi\n"
    assert run(shell, "rm -r /tmp/h; ls /tmp")[1].split() == ["d", "fifo"]


def test_cp_r_and_rm_r_refuse_a_tree_deeper_than_they_go(shell: Shell) -> None:
    """A 1,500-deep tree ended the builtins in "internal error" (the recursion limit), and
    each level holds a kernel descriptor: they stop at MAX_TREE_DEPTH, say so, and a
    refused copy leaves nothing behind. The host's programs go deeper (the powerbox)."""
    from exo.shell.vfs import MAX_TREE_DEPTH

    tmp = shell.kernel.root / "tmp"
    fd = os.open(tmp, os.O_PATH)
    for name in ("deep", *["d"] * (MAX_TREE_DEPTH + 5)):
        os.mkdir(name, dir_fd=fd)
        fd, old = os.open(name, os.O_PATH, dir_fd=fd), fd
        os.close(old)
    os.close(fd)
    for line in ("cp -r /tmp/deep /tmp/copy", "rm -r /tmp/deep"):
        status, _out, err = run(shell, line)
        assert status == 1, line
        assert err == (f"{line.split()[0]}: /tmp/deep: more than {MAX_TREE_DEPTH} levels deep "
                       "(the host's programs go deeper: /usr/bin/cp -r, /usr/bin/rm -r)\n")
    assert sorted(os.listdir(tmp)) == ["deep"]
    assert run(shell, "cd /tmp; /usr/bin/cp -r deep copy && /usr/bin/rm -r deep copy; ls") \
        == (0, "", "")


def test_run_reads_its_manifest_through_the_tree(shell: Shell, tmp_path: Path) -> None:
    outside = tmp_path / "host.toml"
    outside.write_text("not = [toml")
    os.symlink(outside, shell.kernel.root / "tmp" / "m.toml")
    status, _out, err = run(shell, "run --manifest /tmp/m.toml -- /bin/true")
    assert status != 0 and "does not follow links" in err, err
    status, _out, err = run(shell, "run --manifest /tmp/none.toml -- /bin/true")
    assert status != 0 and "/tmp/none.toml: no such manifest" in err, err
    (shell.kernel.root / "tmp" / "bad.toml").write_text("x = [")
    status, _out, err = run(shell, "run --manifest /tmp/bad.toml -- /bin/true")
    assert status != 0 and "/tmp/bad.toml: invalid TOML" in err, err


def test_links_an_app_plants_inside_the_tree_never_make_the_shell_its_deputy(
        shell: Shell) -> None:
    """Review finding: with CONFINED resolution, root's ``echo > notes.txt`` followed an
    app's ``notes.txt -> ../../etc/passwd`` and overwrote the Exo /etc/passwd; ``cd`` into
    ``work -> ../..`` made the next program's cwd grant the whole tree."""
    root = shell.kernel.root
    home = root / "home" / "demo"
    home.mkdir(parents=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    os.symlink("../../etc/passwd", home / "notes.txt")
    os.symlink("../..", home / "work")
    for line in ("echo 'today: buy milk' > /home/demo/notes.txt",
                 "echo x >> /home/demo/notes.txt", "cat /home/demo/notes.txt"):
        status, _out, err = run(shell, line)
        assert status != 0 and "does not follow links" in err, (line, err)
    for line in ("cp /home/demo/notes.txt /home/demo/copy", "cd /home/demo/work"):
        assert run(shell, line)[0] != 0, line
    # `ls` of the link shows the link, never the tree it leads to
    assert run(shell, "ls /home/demo/work") == (0, "/home/demo/work\n", "")
    assert run(shell, "ls -l /home/demo/work")[1].endswith(" /home/demo/work -> ../..\n")
    assert (root / "etc" / "passwd").read_text() == "root:x:0:0\n"
    assert not (home / "copy").exists()
    assert shell.cwd != "/home/demo/work"
    # the links themselves are the app's: listed, and removable
    assert run(shell, "ls /home/demo")[1].split() == ["notes.txt", "work"]
    assert run(shell, "rm /home/demo/notes.txt")[0] == 0


def test_a_program_in_path_runs_sandboxed_in_the_working_directory(shell: Shell) -> None:
    """An installed program runs as an Exo process (the shell's ShellJob) holding the
    working directory and itself, with a shell's exit status."""
    root = shell.kernel.root
    (root / "exo" / "bin").mkdir(parents=True, exist_ok=True)
    program = root / "exo" / "bin" / "greet"  # /bin is the host's inside a process
    program.write_text('#!/bin/sh\necho "hello $1 from $(pwd)"\n'
                       'ls /etc/os-release >/dev/null 2>&1 && echo "Exo /etc visible"\n'
                       f'ls {root} >/dev/null 2>&1 && echo "host path visible"\n'
                       'exit 4\n')
    program.chmod(0o755)
    (root / "home" / "root").mkdir(parents=True, exist_ok=True)
    status, out, err = run(shell, "cd /home/root; greet world | cat; echo $?")
    assert out.splitlines() == ["hello world from /home/root", "0"], err
    status, out, err = run(shell, "greet again")
    assert status == 4, err
    assert out.splitlines() == ["hello again from /home/root"], err
    assert [r["pid"] for r in shell.kernel.ps()] == [1]  # waited for: reaped


def test_mv_and_cp_say_which_end_is_missing(shell: Shell) -> None:
    """``mv f.txt /nodir/`` renamed the file to /nodir (status 0); ``cp f /nodir/x``
    blamed the source."""
    run(shell, "echo x > /tmp/f.txt")
    status, _, err = run(shell, "mv /tmp/f.txt /nodir/")
    assert status == 1 and err == "mv: target '/nodir/' is not a directory\n"
    assert (shell.kernel.root / "tmp" / "f.txt").exists()
    assert not (shell.kernel.root / "nodir").exists()
    assert run(shell, "cp /tmp/f.txt /nodir/x")[2] == (
        "cp: cannot create '/nodir/x': no such directory\n")
    assert run(shell, "mv /tmp/nope /tmp/x")[2] == (
        "mv: cannot stat '/tmp/nope': no such file or directory\n")


def test_ls_l_shows_mode_size_and_time(shell: Shell) -> None:
    """``ls -l`` showed a type letter and a size only."""
    run(shell, "mkdir /tmp/d; echo hello > /tmp/d/f")
    os.chmod(shell.kernel.root / "tmp" / "d" / "f", 0o640)
    out = run(shell, "ls -l /tmp/d")[1]
    assert re.fullmatch(r"-rw-r----- +6 \w{3} [ \d]\d \d\d:\d\d f\n", out), out


def test_grep_matches_in_linear_time(shell: Shell) -> None:
    """Python's re backtracked on ``(a+)+$`` holding the GIL: every kernel thread stopped
    5 s at 26 letters (a hostile review); RE2 answers at once."""
    line = b"a" * 5000 + b"!\n"  # (with re, this line would not end: the suite's timeout)
    assert run(shell, "grep -E '(a+)+$'; echo $?", line)[1] == "1\n"
    status, _, err = run(shell, "grep '(a)\\1'", b"aa\n")
    assert status == 2 and "no backreferences" in err


def test_a_listing_holds_a_bounded_number_of_entries(shell: Shell,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`ls` or `echo *` of a directory of a million names took ~150 MB and a million stats
    in the kernel (and `cp -r`, `rm -r` read it whole): past MAX_LISTING entries they say
    so, and `cd` into it reads nothing."""
    from exo.shell import vfs

    monkeypatch.setattr(vfs, "MAX_LISTING", 20)
    big = shell.kernel.root / "tmp" / "big"
    big.mkdir()
    for i in range(21):
        (big / f"f{i:02}").touch()
    said = "/tmp/big: more than 20 entries (the host's /usr/bin/ls lists any number)\n"
    assert run(shell, "ls /tmp/big") == (1, "", f"ls: {said}")
    assert run(shell, "echo /tmp/big/*") == (1, "", f"exo: {said}")
    assert run(shell, "cd /tmp/big && pwd") == (0, "/tmp/big\n", "")
    assert run(shell, "/usr/bin/ls | /usr/bin/wc -l") == (0, "21\n", "")
    # cp -r and rm -r read each directory whole too: refused, and a refused copy is gone
    walks = ("the host's programs go further: /usr/bin/cp -r, /usr/bin/rm -r")
    assert run(shell, "cp -r /tmp/big /tmp/copy") == (
        1, "", f"cp: /tmp/big: more than 20 entries ({walks})\n")
    assert run(shell, "rm -r /tmp/big") == (
        1, "", f"rm: /tmp/big: more than 20 entries ({walks})\n")
    assert sorted(os.listdir(big.parent)) == ["big"] and len(os.listdir(big)) == 21
    (big / "f20").unlink()
    assert run(shell, "ls | wc -l; echo * | wc -w") == (0, "20\n20\n", "")
    assert run(shell, "cp -r /tmp/big /tmp/copy && rm -r /tmp/big; ls /tmp/copy | wc -l") \
        == (0, "20\n", "")


def test_an_afternoons_findings(alice: Shell) -> None:
    """Found by using the system as a user for an afternoon (2026-12-04): `cp a a`
    emptied a; `echo err >&2` wrote a file named `&2`; `echo hi > /dev/stdout | wc -l`
    hung; programs got the working directory as HOME; a refused file stopped cat, wc,
    head and grep before the next file; env listed unexported variables."""
    run(alice, "mkdir p; cd p; echo data > a.txt")
    status, _, err = run(alice, "cp a.txt a.txt; cp a.txt ../p/a.txt")
    assert status == 1 and "are the same file" in err
    assert run(alice, "cat a.txt")[1] == "data\n"
    assert run(alice, "echo err >&2; echo e2 1>&2; echo e3>&2; ls") == (
        0, "a.txt\n", "err\ne2\ne3\n")
    assert run(alice, "echo hi > /dev/stdout | /usr/bin/wc -l") == (0, "1\n", "")
    assert run(alice, "/usr/bin/env | /usr/bin/grep ^HOME=")[1] == "HOME=/home/alice\n"
    for line, out in (("cat /etc/passwd a.txt", "data\n"), ("wc -l /etc/passwd a.txt",
                                                              "1 a.txt\n"),
                      ("grep -h data /etc/passwd a.txt", "data\n")):
        status, got, err = run(alice, line)
        assert status != 0 and got == out and "permission denied" in err, line
    assert run(alice, "FOO=bar; env | grep -c FOO")[1] == "0\n"
    assert run(alice, "export FOO; env | grep FOO")[1] == "FOO=bar\n"
    assert run(alice, "wait 12345; echo $?; wait foo; echo $?") == (
        0, "127\n1\n", "wait: pid 12345 is not a job of this shell\n"
                        "wait: 'foo': not a pid or a job (%N)\n")
    assert run(alice, "/usr/bin/python3 -c 'raise SystemExit(3)' & wait $!; echo $?")[1] \
        == "3\n"


def test_a_directory_is_neither_copied_nor_moved_into_itself(shell: Shell) -> None:
    """`cp -r m m/x` copied m into itself 256 levels deep before giving up, and `mv m
    m/n` said "Invalid argument"; both now say what GNU's do, and change nothing."""
    run(shell, "cd /tmp; mkdir -p m/k")
    status, _, err = run(shell, "cp -r m m/x")
    assert status == 1 and "cannot copy a directory, '/tmp/m', into itself" in err
    status, _, err = run(shell, "mv m m/n")
    assert status == 1 and "cannot move '/tmp/m' to a subdirectory of itself" in err
    assert run(shell, "ls m")[1] == "k\n"
    assert run(shell, "cp -r m m2 && mv m2 m && ls m")[1] == "k\nm2\n"  # beside: fine


def test_a_finished_job_is_said_as_bash_says_it() -> None:
    """`jobs` and the prompt's notice said `Done(143)`; bash says how it ended: a
    builtin's stage cancelled by signal N is 128+N, a program's is what its sandbox
    reported (an `exit 143` is no signal)."""
    from types import SimpleNamespace

    from exo.shell.jobs import Job, ShellJob, Stage

    job = Job("sleep 30")
    job.stages = [Stage()]  # a builtin's
    for status, said in ((0, "Done"), (3, "Exit 3"), (143, "Terminated"), (137, "Killed"),
                         (130, "Interrupt"), (255, "Exit 255")):
        job.status = status
        assert job.outcome() == said
    program = ShellJob.__new__(ShellJob)
    ended: list[tuple[int, bool] | None] = [None]
    known = [True]  # (a zygote's spare tells a signal from `exit 143`)
    program.proc = SimpleNamespace(end_signal=lambda: ended[0],  # type: ignore[assignment]
                                   signal_known=lambda: known[0])
    job.stages[0].job = program
    job.status = 143
    assert job.outcome() == "Exit 143"
    known[0] = False  # (bubblewrap cannot: 128+N is read as the signal, as bash's)
    assert job.outcome() == "Terminated"
    known[0] = True
    ended[0] = (15, False)
    assert job.outcome() == "Terminated"
    ended[0], job.status = (11, True), 139
    assert job.outcome() == "Segmentation fault (core dumped)"


def test_a_builtin_loop_does_not_stall_the_kernel(root_shell: Shell) -> None:
    """An attack: the shell runs in the kernel, and `while :; do :; done` in one session
    held the interpreter so that each of another session's `ls` took ~2.7 s (and
    `/bin/true` 2.3 s: every process's syscalls and file requests waited alike). Each
    command now lets the kernel's other threads run first (``_share_interpreter``).
    The bound is loose (~100x what the shared loop costs, ~3x under the stall)."""
    import contextlib
    import time

    busy = Shell(root_shell.kernel, root_shell.whole_tree)
    busy.cancel_on = threading.Event()
    null = os.open(os.devnull, os.O_RDWR)
    def spin() -> None:
        with contextlib.suppress(KeyboardInterrupt):  # (its cancel, at the end)
            busy.run_line("while :; do :; done", null, null, null)

    loop = threading.Thread(target=spin, daemon=True)
    loop.start()
    try:
        time.sleep(0.2)
        started = time.perf_counter()
        for _ in range(10):
            assert run(root_shell, "ls /")[0] == 0
        took = time.perf_counter() - started
    finally:
        busy.cancel_on.set()
        loop.join(10)
        os.close(null)
    assert not loop.is_alive()
    assert took < 8.0, f"10 ls beside a builtin loop took {took:.1f} s"
