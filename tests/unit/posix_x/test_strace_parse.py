"""Reading strace's ``-ff`` output back (``exo.posix_x._strace``): the parts that are easy
to get wrong — split calls, translated pids, escapes, the program's tree only."""

from __future__ import annotations

from pathlib import Path

from exo.posix_x import _strace
from exo.posix_x.profile import summarise


def test_a_call_split_by_another_thread_is_counted_once_with_its_result() -> None:
    calls = _strace.parse_lines([
        'wait4(-1,  <unfinished ...>\n',
        '--- SIGCHLD {si_signo=SIGCHLD} ---\n',
        '<... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 7 <0.25>\n',
        'openat(AT_FDCWD, "/etc/x", O_RDONLY) = -1 ENOENT (No such file or directory) '
        '<0.000010>\n',
        '+++ exited with 0 +++\n',
    ])
    assert [(c.name, c.result, c.errno) for c in calls] == [("wait4", 7, ""),
                                                            ("openat", -1, "ENOENT")]
    assert calls[0].seconds == 0.25 and calls[1].path() == "/etc/x"


def test_paths_are_unescaped_and_ports_read() -> None:
    (call,) = _strace.parse_lines(['openat(AT_FDCWD, "/tmp/a\\"b\\nc", O_RDONLY) = 3 <0.1>'])
    assert call.path() == '/tmp/a"b\nc'
    (bind,) = _strace.parse_lines([
        'bind(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("0.0.0.0")}, '
        '16) = -1 EACCES (Permission denied) <0.00002>'])
    assert bind.port() == ("0.0.0.0", 8080) and bind.errno == "EACCES"


def _write(tmp: Path, tid: int, lines: list[str]) -> None:
    (tmp / f"t.{tid}").write_text("\n".join(lines) + "\n")


def test_only_the_programs_tree_from_its_own_execve(tmp_path: Path) -> None:
    _write(tmp_path, 100, ["futex(0x1, FUTEX_WAIT, 0) = 0 <0.1>",  # the kernel's own
                           "vfork() = 101 <0.001>"])
    _write(tmp_path, 101, [
        'execve("/run/exo/src/exo/sandbox/exo-stage2", ["x"], 0x1 /* 1 var */) = 0 <0.001>',
        "close(3) = 0 <0.00001>",  # stage 2's: not the program's
        'execve("/bin/sh", ["sh"], 0x1 /* 9 vars */) = 0 <0.001>',
        "vfork() = 3 /* 102 in strace's PID NS */ <0.002>",
        'write(1, "x\\n", 2) = 2 <0.00001>'])
    _write(tmp_path, 102, ['execve("/bin/true", ["true"], 0x1 /* 9 vars */) = 0 <0.001>',
                           "exit_group(0) = ?"])
    calls, threads = _strace.program_calls(str(tmp_path))
    assert threads == 2
    assert sorted(c.name for c in calls) == ["execve", "execve", "exit_group", "vfork",
                                             "write"]
    prof = summarise(calls, ["/bin/sh"], 0, threads, False)
    assert prof.processes == 1 and prof.execs == 2
    assert prof.by_tier()["hybrid"]["calls"] == 2  # the two execve


def test_a_program_that_never_started_has_no_threads(tmp_path: Path) -> None:
    _write(tmp_path, 7, [
        'execve("/run/exo/src/exo/sandbox/exo-stage2", ["x"], 0x1 /* 1 var */) = 0 <0.001>',
        'execve("/no/such", ["x"], 0x1 /* 1 var */) = -1 ENOENT (No such file) <0.001>'])
    assert _strace.program_calls(str(tmp_path)) == ([], 0)
