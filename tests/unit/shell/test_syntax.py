"""The shell syntax people use daily: assignments, substitutions, blocks, aliases."""

from __future__ import annotations

import time

import pytest
from tests.unit.shell._support import run, script_output

from exo.kernel.kernel import Kernel
from exo.shell import Shell
from exo.shell.builtins import BUILTINS, usage
from exo.shell.parser import IncompleteInput, ParseError, parse_blocks, split_list


def test_assignment_arithmetic_and_command_substitution(root_shell: Shell) -> None:
    assert run(root_shell, "a=5; echo $((a * 2 + 1)) $(( (7 - 9) / 2 )) $((7 % 3))")[1] \
        == "11 -1 1\n"
    assert run(root_shell, "echo [$(echo one; echo two)]")[1] == "[one two]\n"
    assert run(root_shell, 'echo "$(echo "a  b")"')[1] == "a  b\n"  # quoted: kept whole
    assert run(root_shell, "echo $(echo $(echo nested))")[1] == "nested\n"
    assert run(root_shell, "x=$(echo 4); echo $((x+1))")[1] == "5\n"
    assert run(root_shell, "echo $$")[1].strip().isdigit()
    assert run(root_shell, "echo $(true) x \"$(true)\" ''")[1] == "x  \n"  # sh's words
    assert run(root_shell, "a=; echo $a$a y")[1] == "y\n"


def test_arithmetic_refuses_anything_but_integers(root_shell: Shell) -> None:
    for expr in ("__import__('os')", "1/0", "a.b", "'x'", "2**-1"):
        status, out, err = run(root_shell, f'echo "$(({expr}))"')
        assert status == 2 and out == "", expr
        assert "exo:" in err


def test_var_before_a_builtin_is_for_that_command_only(root_shell: Shell) -> None:
    assert run(root_shell, "GREETING=hi env")[1].count("GREETING=hi") == 1
    assert "GREETING" not in run(root_shell, "env")[1]
    # and before a program: in its environment only
    assert run(root_shell, "GREETING=hi sh -c 'echo $GREETING'")[1] == "hi\n"
    assert run(root_shell, "echo [$GREETING]")[1] == "[]\n"


def test_if_elif_else_while_for(root_shell: Shell) -> None:
    out = run(root_shell, "if false; then echo a; elif true; then echo b; else echo c; fi")[1]
    assert out == "b\n"
    assert run(root_shell, "for i in 1 2 3; do echo n$i; done")[1] == "n1\nn2\nn3\n"
    assert run(root_shell, "i=0; while [ $i -lt 3 ]; do i=$((i+1)); done; echo $i")[1] \
        == "3\n"
    assert run(root_shell, "until test -e /tmp/flag; do touch /tmp/flag; done; echo ok")[1] \
        == "ok\n"
    # a block's redirections, after its last word
    assert run(root_shell, "for i in 3 1 2; do echo $i; done > /tmp/n; sort < /tmp/n")[1] \
        == "1\n2\n3\n"
    assert run(root_shell, "if true; then echo in; fi >> /tmp/n; tail -1 /tmp/n")[1] == "in\n"
    assert run(root_shell, "for i in 1; do echo $i; done | cat") == (0, "1\n", "")
    assert run(root_shell, "true &&\necho continued")[1] == "continued\n"
    # read, line by line, from a block's input
    run(root_shell, "printf 'a b c\\nd e\\n' > /tmp/f")
    assert run(root_shell, "while read x y; do echo $y$x; done < /tmp/f")[1] == "b ca\ned\n"
    assert run(root_shell, "read -r one; echo [$one]", b"  lone line  \n")[1] == \
        "[lone line]\n"
    assert run(root_shell, "read x", b"")[0] == 1
    # over several lines, as in a sourced file
    assert run(root_shell, "for w in $(echo x y)\ndo\n  echo $w\ndone")[1] == "x\ny\n"


def test_open_blocks_ask_for_more_and_stray_keywords_are_errors(root_shell: Shell) -> None:
    for line in ("if true; then echo", "for i in 1; do echo $i", "echo 'open", "echo $(ls",
                 "true &&"):
        assert root_shell.needs_more(line), line
    with pytest.raises(IncompleteInput):
        parse_blocks(split_list("while true"))
    status, out, err = run(root_shell, "for i in $((1/0)); do echo $i; done; echo after")
    assert status == 2 and "division by zero" in err and out == ""
    for line in ("fi", "done", "then echo x", "if; then echo; fi"):
        with pytest.raises(ParseError):
            parse_blocks(split_list(line))
        assert not root_shell.needs_more(line)
        assert run(root_shell, line)[0] == 2


def test_source_alias_history_and_cd_back(root_shell: Shell) -> None:
    run(root_shell, "echo 'greet=hello' > /tmp/rc; echo 'alias say=echo' >> /tmp/rc")
    assert run(root_shell, "source /tmp/rc; say $greet")[1] == "hello\n"
    assert run(root_shell, ". /tmp/rc; alias")[1] == "alias say='echo'\n"
    assert run(root_shell, "unalias say; say x")[0] == 127
    root_shell.remember("echo again")
    assert root_shell.expand_history("!! && !!") == "echo again && echo again"
    # bounded: the expansion (a line of !! after a long one), and the lines kept
    root_shell.remember("echo " + "x" * 100_000)
    with pytest.raises(ParseError, match="longer than 1 MiB"):
        root_shell.expand_history("!!" * 20)
    for n in range(1500):
        root_shell.remember(f"echo {n}")
    assert len(root_shell.history) == 1000 and root_shell.history[-1] == "echo 1499"
    run(root_shell, "cd /tmp; cd /home")
    assert run(root_shell, "cd -")[1] == "/tmp\n"
    assert root_shell.cwd == "/tmp"


def test_every_builtin_has_help(root_shell: Shell, kernel: Kernel) -> None:
    for name in BUILTINS:
        status, out, err = run(root_shell, f"{name} --help")
        assert status == 0, (name, err)
        assert out.startswith(f"{name}: "), name
    for sub in ("shutdown", "run", "ps", "caps"):  # `exo shutdown --help` powered off
        for flag in ("--help", "-h"):
            assert run(root_shell, f"exo {sub} {flag}")[:2] == (0, usage(sub) + "\n")
    assert not kernel.shutdown_requested.is_set()


def test_audit_rows_show_blanks_not_none(root_shell: Shell) -> None:
    run(root_shell, "run --cap storage://tmp=READ -- /bin/true")
    # its capabilities are released just after its status is known (the reclaim)
    deadline = time.monotonic() + 30
    while True:
        status, out, _ = run(root_shell, "caps --audit")
        if "release" in out or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 0 and "release" in out
    assert "None" not in out


def test_background_jobs_are_listed_signalled_and_waited_for(root_shell: Shell) -> None:
    status, _, err = run(root_shell, "run --cap storage://tmp=READ -- /bin/sleep 30 &")
    assert status == 0 and err.startswith("[1] run")
    deadline = time.monotonic() + 20
    while not root_shell.jobs[0].processes() and time.monotonic() < deadline:
        time.sleep(0.05)  # `run` has started its process
    run(root_shell, "sh -c 'exit 3' &")
    assert run(root_shell, "wait %2; echo $?")[1] == "3\n"
    assert "[1] Running" in run(root_shell, "jobs")[1]
    assert run(root_shell, "kill %1; wait %1; echo $?")[1] == "143\n"  # 128 + SIGTERM
    assert run(root_shell, "jobs")[1] == ""
    assert run(root_shell, "kill %7")[0] == 1
    assert run(root_shell, "fg")[2] == "fg: no current job\n"
    assert [r["pid"] for r in root_shell.kernel.ps()] == [1]


def test_a_program_runs_in_the_shells_working_directory(root_shell: Shell) -> None:
    """The kernel starts a program where the shell is (an Exo path); `run` with
    capabilities that do not cover it starts the program at / of its tree."""
    assert run(root_shell, "cd /tmp; /bin/pwd") == (0, "/tmp\n", "")
    assert run(root_shell, "cd /home/root; run --cap storage://tmp=READ -- /bin/pwd")[1] == "/\n"
    assert run(root_shell, "run --cap storage://home/root=READ -- /bin/pwd")[1] == \
        "/home/root\n"


def test_a_background_job_whose_redirection_fails_is_said_and_the_shell_goes_on(
        alice: Shell, root_shell: Shell) -> None:
    """It took the kernel down with a traceback (the shell runs in the kernel)."""
    status, _, err = run(root_shell, "cat < /nope &")
    assert status == 1 and err == "exo: /nope: no such file or directory\n"
    status, _, err = run(alice, "echo hi > /etc/passwd &")
    assert status == 1 and "permission denied" in err and err.count("\n") == 1
    assert not alice.jobs and not root_shell.jobs
    assert run(alice, "echo still here") == (0, "still here\n", "")


def test_arithmetic_is_bash_s_64_bit_and_costs_the_kernel_nothing_unbounded(
        root_shell: Shell) -> None:
    """Python's integers have no bound: `$((1<<100000000))` made 30 million digits (then
    an internal error), `$(((2**4096)**4096))` seconds of work. As bash: signed 64-bit
    values that wrap, a shift's count modulo 64."""
    line = ("echo $((2**64)) $((2**63)) $((2**62)) $((1<<64)) $((-7/2)) $((-7%2))"
            " $((99999999999999999999)) $((1<<100000000)) $(((2**4096)**4096))")
    assert run(root_shell, line)[1] == ("0 -9223372036854775808 4611686018427387904 1 -3 -1"
                                        " 7766279631452241919 1 0\n")
    assert run(root_shell, "echo $((2**-1))")[2] == "exo: exponent less than 0 in " \
        "$((2**-1))\n"
    # A variable's expression referenced thousands of times: bounded in text evaluated
    # (4000 terms, 2000 references took 14 s of the kernel's thread), not in references.
    assert run(root_shell, "y=\"1$(printf ' + 1%.0s' $(seq 399))\"; "
               "x=\"y$(printf ' + y%.0s' $(seq 199))\"; echo $((x))")[1] == "80000\n"
    status, _, err = run(root_shell, "y=\"1$(printf ' + 1%.0s' $(seq 3999))\"; "
                         "x=\"y$(printf ' + y%.0s' $(seq 1999))\"; echo $((x))")
    assert status == 2 and "more than 1 MiB" in err


def test_substitution_nested_without_end_is_refused_not_a_crash(
        root_shell: Shell, capfd: pytest.CaptureFixture[str]) -> None:
    """An alias that runs itself through ``$(...)``, or 150 nested ``$(``, recursed until
    a RecursionError took the kernel down. (A substitution's errors go to its line's
    stderr, as its commands' do.)"""
    capfd.readouterr()
    status, out, err = run(root_shell, 'alias x="echo \\$(x)"; x')
    assert status == 0 and out == "\n"
    assert err == "exo: $(...) nested more than 32 deep\n" and capfd.readouterr().err == ""
    deep = "$(echo " * 150 + "hi" + ")" * 150
    status, out, err = run(root_shell, f"echo {deep}")
    said = err + capfd.readouterr().err
    assert "nested" in said and said.count("\n") == 1, said
    assert run(root_shell, "echo $(echo $(echo ok))") == (0, "ok\n", "")


def test_substitution_output_is_bounded_and_an_assignment_takes_it_whole(
        root_shell: Shell) -> None:
    """`echo $(yes)` read an endless output into the kernel; `x=$(seq 3)` split it into
    `x=1` and a command `2 3` (sh assigns it whole)."""
    for line in ("echo $(/usr/bin/yes)", "echo $(cat /dev/zero)"):
        assert run(root_shell, line) == (2, "", "exo: $(...): its output is longer than "
                                               "1 MiB\n"), line
    assert run(root_shell, 'x=$(/usr/bin/seq 3); echo "$x"; echo $x') == \
        (0, "1\n2\n3\n1 2 3\n", "")
    env = "/usr/bin/env | /usr/bin/grep -A1 ^y="
    assert run(root_shell, f"y=$(/usr/bin/seq 2) {env}")[1] == "y=1\n2\n"
    assert run(root_shell, "echo a=$(echo 1 2)")[1] == "a=1 2\n"  # an argument: split
    # what a line's expansions bring in is bounded too: `x=$x$x` doubled without end
    run(root_shell, "x=$(/usr/bin/head -c 1000000 /dev/zero | /usr/bin/tr '\\0' a)")
    assert run(root_shell, "echo $x | wc -c")[1] == "1000001\n"
    assert run(root_shell, "x=$x$x$x$x$x") == (2, "", "exo: the line expands to more "
                                                      "than 4 MiB\n")


def test_export_takes_a_substitution_whole_as_bash_does(root_shell: Shell) -> None:
    """`export W=$(echo p q)` exported `W=p` (dash's splitting); bash and POSIX.1-2024
    expand a declaration's NAME=value arguments as assignments: whole, not globbed."""
    assert run(root_shell, 'export W=$(echo p q) V=* U; echo "[$W][$V]"') == \
        (0, "[p q][*]\n", "")
    assert run(root_shell, "/usr/bin/env | /usr/bin/grep ^W=")[1] == "W=p q\n"
    # not after another command's name, a redirection's target, or once the command ends
    args = "/usr/bin/printf '[%s]' a=$(echo 1 2)"
    assert run(root_shell, f"{args} export")[1] == "[a=1][2][export]"
    assert run(root_shell, f"echo x > export; {args}")[1] == "[a=1][2]"
    assert run(root_shell, f"export Q=1; {args}")[1] == "[a=1][2]"
    assert run(root_shell, "/usr/bin/printf '[%s]' export a=$(echo 1 2)")[1] == \
        "[export][a=1][2]"
    assert run(root_shell, 'true && export K=$(echo 3 4); echo "[$K]"')[1] == "[3 4]\n"


def test_a_user_cannot_make_the_kernel_hold_a_thread_per_word(alice: Shell) -> None:
    """A builtin, a background job's waiter and a redirection into a file are threads
    of the kernel: 1,200 `sleep 1000 &` made every command take seconds, 30,000 `cat |`
    stages held them all 8 s. Each has a bound, said, and what is below it works."""
    from exo.shell.core import MAX_JOBS, MAX_REDIRECTS, MAX_STAGES

    line = " ".join(["sleep 1000 &"] * (MAX_JOBS + 3))
    status, _, err = run(alice, line)
    assert err.count("exo: too many jobs (64)") == 3, err
    assert len(alice.jobs) == MAX_JOBS
    assert run(alice, "echo busy | /usr/bin/tr a-z A-Z") == (0, "BUSY\n", "")
    run(alice, "kill %1")
    assert run(alice, "wait %1")[0] == 143  # (a builtin ended by kill's SIGTERM, as sh)
    status, _, err = run(alice, "sleep 1000 &")  # room for one again
    assert status == 0 and err == f"[{MAX_JOBS + 1}] sleep 1000\n", err  # (as sh: max + 1)
    for job in list(alice.jobs):
        alice.interrupt(job)
    alice.jobs.clear()
    many = " ".join(f"> f{i}" for i in range(MAX_REDIRECTS + 1))
    assert run(alice, f"echo x {many}") == (1, "", f"exo: too many redirections "
                                            f"({MAX_REDIRECTS + 1}; at most {MAX_REDIRECTS}"
                                            " a command)\n")
    assert run(alice, "ls f0")[0] != 0  # refused before any was made
    stages = "echo hi" + " | cat" * MAX_STAGES
    assert run(alice, stages) == (1, "", f"exo: too many commands in one pipeline "
                                         f"({MAX_STAGES + 1}; at most {MAX_STAGES})\n")
    assert run(alice, "echo hi" + " | cat" * (MAX_STAGES - 1)) == (0, "hi\n", "")


def test_redirections_into_files_neither_hang_nor_pile_up(alice: Shell) -> None:
    """`cmd 2>&1 > f | cat` hung: the sink kept a copy of the command's stderr (the pipe
    to cat), so cat never saw its end. `> a > b` kept a pipe and a thread for a. Ended
    jobs counted against MAX_JOBS until a prompt said them."""
    assert run(alice, "/bin/echo a 2>&1 > f | cat") == (0, "", "")
    assert run(alice, "echo b 2>&1 > g | cat") == (0, "", "")
    assert run(alice, "cat f g") == (0, "a\nb\n", "")
    assert run(alice, "echo c > a > b; cat a b") == (0, "c\n", "")
    assert not alice._sinks
    status, _, err = run(alice, "for i in $(/usr/bin/seq 70); do true & done; wait")
    assert status == 0 and "too many jobs" not in err
    # and what a session's jobs hold at once is bounded
    line = " ".join(["sleep 30 " + "| cat " * 60 + "&"] * 10)  # builtins: the kernel's
    status, _, err = run(alice, line)
    assert "exo: too many streams open in this session" in err, err
    for job in list(alice.jobs):
        alice.interrupt(job)
    alice.jobs.clear()
    assert run(alice, "echo still") == (0, "still\n", "")


def test_globs_are_bounded_and_list_a_directory_once(alice: Shell) -> None:
    """`* * * …` on a long line listed the directory once per pattern, in the kernel."""
    from exo.shell.core import MAX_ARGV_BYTES, MAX_GLOBS

    run(alice, "touch a.txt b.txt")
    assert run(alice, "echo *.txt " + "*.txt " * (MAX_GLOBS - 1))[1] == \
        " ".join(["a.txt b.txt"] * MAX_GLOBS) + "\n"
    assert run(alice, "echo " + "* " * (MAX_GLOBS + 1)) == \
        (1, "", f"exo: too many patterns in one command (at most {MAX_GLOBS})\n")
    loop = "for f in " + "* " * (MAX_GLOBS + 1) + "; do echo $f; done"
    assert run(alice, loop) == \
        (1, "", f"exo: too many patterns in one command (at most {MAX_GLOBS})\n")
    long = "x" * 100_000
    status, _, err = run(alice, f"echo {long} " * (MAX_ARGV_BYTES // 100_000 + 1))
    assert (status, err) == (1, "exo: the command's words are longer than 2 MiB\n")


def test_exported_variables_reach_programs_and_plain_ones_do_not(root_shell: Shell) -> None:
    """``export A=1; env`` showed no A: programs got only the kernel's variables."""
    env = "/usr/bin/env | /usr/bin/sort"
    out = run(root_shell, f"export A=1; B=2; C=3 {env}")[1].splitlines()
    assert "A=1" in out and "C=3" in out and not any(v.startswith("B=") for v in out)
    assert "USER=root" in out and "PWD=/home/root" in out
    assert not any(v.startswith("EXO_ROOT=") for v in out)  # a host path: never passed
    out = run(root_shell, f"unset A; cd /tmp; {env}")[1].splitlines()
    assert not any(v.startswith("A=") for v in out) and "PWD=/tmp" in out
    assert run(root_shell, "export B; export")[1] == (
        "export B=2\nexport HOME=/home/root\nexport PWD=/tmp\nexport USER=root\n")


def test_dev_holds_the_devices_for_every_user(alice: Shell, root_shell: Shell) -> None:
    """The shell's /dev was the tree's empty directory: ``echo hi > /dev/null`` made a
    file there, and a user's ``2>/dev/null`` was refused."""
    assert run(root_shell, "echo hi > /dev/null; cat /dev/null") == (0, "", "")
    assert not (root_shell.vfs.root / "dev" / "null").exists()
    assert run(alice, "ls /nope 2>/dev/null; echo $?") == (0, "1\n", "")
    assert run(alice, "head -c 4 /dev/zero | wc -c")[1] == "4\n"
    assert run(alice, "ls /dev")[1].split() == [
        "null", "random", "stderr", "stdin", "stdout", "urandom", "zero"]
    # never the kernel's own terminal (the console's: the next login's keys)
    assert run(alice, "cat /dev/tty")[0] == 1
    assert run(alice, "echo to-err > /dev/stderr") == (0, "", "to-err\n")
    assert run(alice, "echo x 2>&1 >/dev/null") == (0, "", "")
    assert run(alice, "/usr/bin/cat /dev/null; echo $?") == (0, "0\n", "")
    status = run(alice, "rm /dev/null")[0]
    assert status == 1 and (root_shell.vfs.root / "dev").is_dir()


def test_user_mistakes_are_said_as_such_not_as_internal_errors(root_shell: Shell,
                                                               kernel: Kernel) -> None:
    for line, said in (("caps --audit --event bogus", "caps: unknown audit event 'bogus'"),
                       ('ai ""', "ai: empty sentence"),
                       ("shutdown -r now", "shutdown: rebooting is not supported"),
                       ("shutdown later", "shutdown: unexpected argument 'later'")):
        status, _, err = run(root_shell, line)
        assert status == 2 and err.startswith(said) and "internal" not in err, (line, err)
    assert not kernel.shutdown_requested.is_set()


def test_run_takes_a_working_directory_it_holds(root_shell: Shell) -> None:
    """``exo run --cwd`` was 'unexpected argument' in the shell, though the README says
    exo run works the same there."""
    line = "exo run --cap storage://home/root=READ --cwd /home/root -- /usr/bin/pwd"
    assert run(root_shell, line)[:2] == (0, "/home/root\n")
    status, _, err = run(root_shell, "run --cwd /home/root -- /usr/bin/pwd")
    assert status == 2 and "holds no capability on it" in err


def test_echo_escapes_cd_messages_and_history_without_a_previous_line(
        root_shell: Shell) -> None:
    assert run(root_shell, 'echo -e "a\\tb\\nc"')[1] == "a\tb\nc\n"
    assert run(root_shell, 'echo -n x; echo -e "y\\cz"; echo -E "\\t"')[1] == "xy\\t\n"
    assert run(root_shell, "cd a b")[2] == "cd: too many arguments\n"
    assert run(root_shell, "cd /etc/motd")[2] == "cd: /etc/motd: not a directory\n"
    fresh = Shell(root_shell.kernel, root_shell._tree)
    with pytest.raises(ParseError, match="event not found"):
        fresh.expand_history("!!")


def test_backquotes_and_parameter_expansion_forms(root_shell: Shell) -> None:
    """Backquotes were printed as they were, ``${X:-y}`` and ``${#x}`` were 'bad
    substitution'."""
    assert run(root_shell, 'echo `echo hi` "x`echo y`z"')[1] == "hi xyz\n"
    assert run(root_shell, "unset X; echo ${X:-def} ${X-d2} ${HOME:+set} ${X:+no}.")[1] == \
        "def d2 set .\n"
    assert run(root_shell, "X=abc; echo ${#X} ${X:-no} ${Y:-$X}")[1] == "3 abc abc\n"
    status, out, err = run(root_shell, "echo ${Z:?must be set}; echo after")
    assert "Z: must be set" in err and (status, out) == (1, "")  # the line ends, as in sh
    # ${NAME:=WORD} assigns (an unset or empty NAME); ${NAME=WORD} an unset one only
    assert run(root_shell, "echo ${Z:=v}; echo $Z") == (0, "v\nv\n", "")
    assert run(root_shell, "E=; echo [${E=w}] [${E:=x}] $E")[1] == "[] [x] x\n"
    assert run(root_shell, "echo ${1:=v}")[0] == 2  # not a variable's name
    assert run(root_shell, "readonly RO; : ${RO:=1}; echo no") == (
        1, "", "exo: RO: readonly variable\n")
    # ${!NAME}: the variable NAME names (bash's indirection)
    assert run(root_shell, "P=Q; Q=deep; set -- one two; N=2; echo ${!P} ${!N}")[1] == \
        "deep two\n"
    assert run(root_shell, "P='a b'; echo ${!P}")[2] == \
        "exo: ${!P}: P holds 'a b', not a variable's name\n"
    assert run(root_shell, "echo ${a b}")[2] == "exo: bad substitution: ${a b}\n"


def test_what_a_builtin_reads_whole_is_a_bounded_regular_file(alice: Shell) -> None:
    """``source /dev/zero`` (and a manifest of /dev/urandom) grew the kernel by GiBs;
    ``cp /dev/zero ... &`` could not be stopped (a hostile review, 2026-12-04)."""
    for line in ("source /dev/zero", "cp /dev/zero /tmp/z",
                 "run --manifest /dev/urandom -- /bin/true"):
        status, _, err = run(alice, line)
        assert status != 0 and "a device, not a file" in err, (line, err)
    big = alice.vfs.root / "tmp" / ".users" / "alice" / "big.sh"  # (her own /tmp)
    with open(big, "wb") as fh:
        fh.truncate(17 << 20)
    status, _, err = run(alice, "source /tmp/big.sh")  # a script: 1 MiB (its parse costs)
    assert status == 1 and "larger than 1 MiB" in err
    status, _, err = run(alice, "run --manifest /tmp/big.sh -- /bin/true")
    assert status != 0 and "larger than 16 MiB" in err
    status, _, err = run(alice, "read x < /dev/zero")  # a line of the shell's: 1 MiB
    assert status == 1 and "a line longer than 1 MiB" in err
    assert run(alice, "wc nosuchfile")[2] == "wc: nosuchfile: no such file or directory\n"


def test_session_builtins_are_refused_in_the_background(root_shell: Shell,
                                                        kernel: Kernel) -> None:
    """``shutdown &`` did nothing and said nothing (status 0)."""
    for name in ("shutdown", "exit", "logout", "su alice"):
        status, _, err = run(root_shell, f"{name} &")
        assert status == 1 and "not in the background" in err, name
    assert not kernel.shutdown_requested.is_set() and not root_shell.jobs


def test_here_documents_and_here_strings(root_shell: Shell) -> None:
    """`cat <<EOF` read the terminal (or said "'<' needs a file name"): the body of a
    here-document is the command's input, expanded unless its word is quoted."""
    run(root_shell, "cd /tmp")
    assert run(root_shell, 'cat <<EOF\nhello $USER\n  "q" \\$x \\\\ \\n\nEOF') == (
        0, 'hello root\n  "q" $x \\ \\n\n', "")
    assert run(root_shell, "cat <<'EOF'\n$USER 'it''s' \\$x\nEOF")[1] == \
        "$USER 'it''s' \\$x\n"
    assert run(root_shell, "cat <<-END | /usr/bin/wc -l\n\tone\n\ttwo\n\tEND")[1] == "2\n"
    assert run(root_shell, "/usr/bin/sort <<EOF > s.txt; cat s.txt\nb\na\nEOF") == (
        0, "a\nb\n", "")
    assert run(root_shell, "x=5; cat <<EOF; echo after\n$x $((x+1)) $(echo sub)\nEOF")[1] \
        == "5 6 sub\nafter\n"
    assert run(root_shell, "for i in 1 2; do cat <<EOF\nn=$i\nEOF\ndone")[1] == "n=1\nn=2\n"
    assert run(root_shell, "/usr/bin/wc -w <<< 'a b c'")[1] == "3\n"
    with pytest.raises(IncompleteInput, match="here-document: 'EOF' expected"):
        split_list("cat <<EOF\nno end yet")
    assert root_shell.needs_more("cat <<EOF\nmore")


def test_a_variables_prefix_and_suffix_patterns_are_trimmed(root_shell: Shell) -> None:
    """${v#pat} ${v##pat} ${v%pat} ${v%%pat} were "bad substitution"."""
    line = "v=path/to/file.tar.gz; echo ${v#*/} ${v##*/} ${v%.*} ${v%%.*} ${v#nomatch}"
    assert run(root_shell, line)[1] == \
        "to/file.tar.gz file.tar.gz path/to/file.tar path/to/file path/to/file.tar.gz\n"
    assert run(root_shell, "f() { echo ${1%.txt}.md; }; f report.txt")[1] == "report.md\n"
    status, _, err = run(root_shell, "v=$(/usr/bin/head -c 5000 /dev/zero | /usr/bin/tr "
                                     "'\\0' a); echo ${v%a}")
    assert status == 2 and "longer than 4096 characters" in err  # each length is a match


def test_an_alias_expands_in_every_command_of_a_pipeline(root_shell: Shell) -> None:
    """`echo hello | g hell` was "g: command not found": only a line's first command."""
    run(root_shell, 'alias g="grep -n"')
    assert run(root_shell, "echo hello | g hell")[1] == "1:hello\n"
    assert run(root_shell, 'echo "a|b" | g "a|b"')[1] == "1:a|b\n"  # a quoted | is text


@pytest.mark.parametrize(("expr", "true"), [
    ("-e f", True), ("-f f", True), ("-d dd", True), ("-f dd", False), ("-s f", True),
    ("-s empty", False), ("-r f", True), ("-w f", True), ("-x f", False), ("-x dd", True),
    ("-L f", False), ("-L link", True), ("-e nothing", False), ("! -e f", False),
    ("-n x -a -z ''", True), ("a = a -o b = c", True), ("a = b -o b = c", False),
    ("1 -lt 2", True), ("3 -le 2", False), ("' 7' -eq 7", True), ("\\( a = b \\)", False),
    ("! = x", False), ("-e", True), ("''", False), ("x", True), ("b \\> a", True),
    ("-r /etc/motd", True), ("-w /etc/motd", False), ("-c /dev/null", True),
    ("f -nt nothing", True), ("f -ot nothing", False), ("-e /home/root", False),
    ("-d /home", True), ("! \\( -e f -a -e nothing \\)", True)])
def test_test_evaluates_posix_conditions(alice: Shell, expr: str, true: bool) -> None:
    """``test``/``[`` knew -e -d -f -z -n and comparisons only; ``-r``, ``-s``, ``-a``,
    ``!`` and parentheses were "too many arguments". A user's ``-r``/``-w`` say what
    their capabilities allow; a name they hold nothing over is absent."""
    run(alice, "echo hi > f; mkdir dd; echo -n > empty; /bin/ln -s f link")
    assert run(alice, f"test {expr}; echo $?")[1] == ("0\n" if true else "1\n"), expr
    assert run(alice, f"[ {expr} ]; echo $?")[1] == ("0\n" if true else "1\n"), expr


def test_test_says_what_is_malformed_with_status_2(root_shell: Shell) -> None:
    for line, said in (("test 1 -eq x", "test: x: integer expression expected"),
                       ("test a b c", "test: b: binary operator expected"),
                       ("[ a = a", "[: missing ']'"),
                       ("test a = b c d", "test: too many arguments"),
                       ("test \\( a", "test: ')' expected"),
                       ("test " + "! " * 100 + "x", "test: expression nested deeper")):
        status, _, err = run(root_shell, line)
        assert status == 2 and err.startswith(said), (line, err)


def test_colon_eval_and_command(root_shell: Shell) -> None:
    """`:`, `eval` and `command` were "command not found": scripts use `: > file`,
    `eval "$cmd"`, a function wrapping the program of its name, and `command -v`."""
    assert run(root_shell, ": ignored; echo $?; : > made; test -f made; echo $?")[1] == \
        "0\n0\n"
    assert run(root_shell, "x=3; eval 'echo $x; y=4'; echo $y")[1] == "3\n4\n"
    assert run(root_shell, "eval; echo $?")[1] == "0\n"
    out = run(root_shell, "mkdir d; touch d/a; ls() { echo wrapped; command ls \"$@\"; }; "
                          "ls d; unset -f ls")[1]
    assert out == "wrapped\na\n"
    status, out, _ = run(root_shell, "alias ll='ls -l'; command -v ll cd sort no-such")
    assert (status, out) == (1, "alias ll='ls -l'\ncd\n/usr/bin/sort\n")
    assert run(root_shell, "command ll")[0] == 127  # an alias is not a command
    assert run(root_shell, "command -V cd")[1] == "cd is a shell builtin\n"


def test_an_option_a_builtin_lacks_runs_the_hosts_program(alice: Shell) -> None:
    """`ls -lh`, `cat -n`, `grep -rn`, `tail -f`: the builtin said "invalid option" (or
    took `-n` for a file); the host's program of that name now runs, through the
    powerbox, holding what its command line names."""
    run(alice, "printf 'b\\na\\n' > f.txt; mkdir d; echo hit > d/x.txt")
    assert run(alice, "cat -n f.txt")[1].split() == ["1", "b", "2", "a"]
    status, out, err = run(alice, "grep -rn hit .")
    assert (status, out) == (0, "./d/x.txt:1:hit\n"), err
    assert run(alice, "ls -R d")[1].split() == ["d:", "x.txt"]
    assert run(alice, "wc -m f.txt")[1] == "4 f.txt\n"
    assert run(alice, "cat /home/root/x -n")[0] == 126  # through the powerbox: refused
    # what the builtin takes stays the builtin's; `--` ends the options
    assert run(alice, "ls -la d")[1].split()[-1] == "x.txt"
    assert run(alice, "cat -- f.txt")[1] == "b\na\n"
    assert run(alice, "type cat")[1] == "cat is a shell builtin\n"
    run(alice, "cat() { echo mine; }")
    assert run(alice, "cat -n f.txt")[1] == "mine\n"  # a function of the name still wins


def test_env_runs_a_command_with_more_variables(alice: Shell) -> None:
    assert run(alice, "env A=1 B='x y' sh -c 'echo $A/$B'")[1] == "1/x y\n"
    assert run(alice, "env A=1 | grep '^A='")[1] == "A=1\n"
    assert "A=" not in run(alice, "env")[1]  # for that command only
    status, out, _ = run(alice, "env -i /usr/bin/env")  # another option: the host's env
    assert (status, out) == (0, "")


def test_env_runs_programs_not_the_shells_own_builtins(alice: Shell) -> None:
    """sh's env finds no program `cd`: the shell's directory never moves through it, and
    a function or alias of a program's name is not what env runs."""
    before = alice.cwd
    status, _, err = run(alice, "env X=1 cd /tmp")
    assert (status, alice.cwd) == (127, before)
    assert "cd: a builtin of the shell's own state" in err
    assert run(alice, "env unset HOME")[0] == 127 and alice.env.get("HOME")
    run(alice, "alias wc=false")
    run(alice, "true() { echo mine; }")
    assert run(alice, "printf 'a\\n' | env X=1 wc -l")[1].strip() == "1"
    assert run(alice, "env true")[1] == ""


def test_the_readme_lists_every_builtin() -> None:
    """The README's "Built-ins:" line is where a new user looks: it names each one
    (`.` is `source`'s other name, given with it)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    found = re.search(r"Built-ins: `([^`]*)`", text)
    assert found is not None
    assert set(found.group(1).split()) == set(BUILTINS) - {"."}


def test_both_streams_dynamic_variables_and_arithmetic_of_expansions(
        alice: Shell) -> None:
    """`&> f` wrote a file named `> f`'s background job; `$RANDOM`, `$UID` and
    `$HOSTNAME` were empty; `$(( $x + 1 ))` was "bad arithmetic"; `${x:?}` said so
    and ran the rest of the line."""
    assert run(alice, "(echo out; echo err >&2) &> both; echo more &>> both; cat both")[1] \
        == "out\nerr\nmore\n"
    assert run(alice, "/bin/ls nope &>ls.txt; cat ls.txt")[1].startswith("/bin/ls: ")
    first, second = run(alice, "echo $RANDOM $RANDOM")[1].split()
    assert 0 <= int(first) < 32768 and 0 <= int(second) < 32768
    assert run(alice, "echo $UID $HOSTNAME")[1] == f"{alice.session.uid} exo-os\n"
    assert run(alice, "x=5; echo $(( $x + 1 )) $(( $(echo 3) * ${x} ))")[1] == "6 15\n"
    status, out, err = run(alice, "echo ${nope:?is unset}; echo after")
    assert (status, out, err) == (1, "", "exo: nope: is unset\n")
    status, _, _ = run(alice, "echo $(( $(printf '1+%.0s' $(seq 40000))1 ))")
    assert status == 2  # longer than 64 KiB once expanded: refused, not evaluated
    # (a long chain of one operator is evaluated in a loop, not nested)
    assert run(alice, "echo $(( $(printf '1+%.0s' $(seq 20000))1 ))")[1] == "20001\n"


def test_completion_follows_tilde_and_variables_and_escapes_names(alice: Shell) -> None:
    """`cat ~/pr<Tab>` and `cat $HOME/pr<Tab>` offered nothing; a name with a blank was
    inserted bare, so the line named two files."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from exo.shell.completion import ShellCompleter

    run(alice, "mkdir proj; echo n > 'my notes.txt'")
    completer = ShellCompleter(alice)

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]

    assert complete("cat ~/pr") == ["~/proj/"]
    assert complete("cat $HOME/pr") == ["$HOME/proj/"]
    assert complete("cat my") == ["my\\ notes.txt"]
    assert run(alice, "cat " + complete("cat my")[0])[1] == "n\n"  # one word, that file


def test_negation_and_bash_s_case_slice_and_replace_expansions(root_shell: Shell) -> None:
    """`if ! grep -q …` was "!: command not found"; `${x:1:3}`, `${p//a/b}` and
    `${x^^}` were "bad substitution". Each as bash gives it (compared by hand)."""
    run(root_shell, "cd /tmp; echo a > x.txt")
    for line, out in (
            ("if ! grep -q zz x.txt; then echo absent; fi; ! true; echo $?", "absent\n1\n"),
            ("set -e; ! true; echo survived; set +e", "survived\n"),
            ("x=hello; echo ${x^^} ${x^} ${x:1:3} ${x:2} ${x: -2} ${x:1:-1}",
             "HELLO Hello ell llo lo ell\n"),
            ("p=/a/b/c.txt; echo ${p/b/B} ${p//\\//_} ${p/#\\/a/X} ${p/%.txt/.md} ${p/*./Y.}",
             "/a/B/c.txt _a_b_c.txt X/b/c.txt /a/b/c.md Y.txt\n"),
            ("X=ABC; f=a.b.c; s=abcdef; i=0; echo ${X,,} ${X,} ${f//./-} ${s:i+1:2}",
             "abc aBC a-b-c bc\n")):
        assert run(root_shell, line)[1] == out, line
    status, _, err = run(root_shell, "x=hello; echo ${x:1:-9}")
    assert status == 2 and "substring expression < 0" in err
    # a long value: sliced and cased (its length's cost), not replaced (a pattern each place)
    run(root_shell, 'x=$(printf "a%.0s" $(seq 5000))')
    assert run(root_shell, "echo ${x:4998} ${#x}; echo ${x^^} | wc -c")[1] == "aa 5000\n5001\n"
    assert "longer than 4096" in run(root_shell, "echo ${x/a/b}")[2]


def test_a_reviews_hangs_and_wrong_answers(root_shell: Shell) -> None:
    """What a review of the day's shell found: lines that parsed themselves again at
    every level (`command command …`, minutes in the kernel), a MemoryError, and
    answers unlike sh's."""
    import time

    start = time.monotonic()
    for line in ("command " * 20_000 + "echo hi", "env " * 20_000 + "echo hi"):
        assert run(root_shell, line)[1] == "hi\n"
    status, _, err = run(root_shell, "eval " * 2000 + "echo hi")
    assert status == 2 and "nested too deeply" in err
    assert time.monotonic() - start < 60  # (it was minutes for 800 KB lines)
    status, _, err = run(root_shell, "echo $(( " + "-" * 6000 + "1 ))")
    assert (status, err) == (2, "exo: bad arithmetic: nested too deeply\n")
    for line, out in (
            ("env A='a b' B='$x' C=\"a'b\" /usr/bin/printenv A B C", "a b\n$x\na'b\n"),
            ("x=; echo [${x?empty}] [${x-def}] [${x+alt}]; unset x; echo [${x-def}]",
             "[] [] [alt]\n[def]\n"),
            ("[ -e / ] && [ -d / ] && [ -c /dev/null ] && ! [ -f /dev/null ] && echo ok",
             "ok\n"),
            ("mkdir -p /tmp/tw/d; cd /tmp/tw; ls -lh | (cat) | wc -l", "2\n"),
            ("y=3+4; b=a; a=3; echo $((y*2)) $(($y*2)) $((b+1))", "14 11 4\n")):
        assert run(root_shell, line)[1] == out, line
    assert "recursion level" in run(root_shell, "x=x; echo $((x))")[2]


def test_bash_s_indexed_arrays(root_shell: Shell) -> None:
    """`x=(a b)` ran `b)` as a command, then was refused; now bash's indexed arrays:
    made by `=(…)` (its words expanded and split as a command's), grown by `+=(…)` and
    `a[i]=v`, read by `${a[i]}` (an arithmetic subscript; negative from the end),
    `${a[@]}`, `"${a[@]}"` (a word each), `${#a[@]}`, `${!a[@]}`; `$a` is element 0;
    `unset 'a[i]'`; local, declared, read-only like any variable; never exported;
    `x="(a b)"` and `x=$(…)` stay strings."""
    sh = root_shell
    assert run(sh, 'a=(one "two three" $HOME); echo ${#a[@]} ${a[1]} ${a[-1]} $a; '
                   'for x in "${a[@]}"; do echo "[$x]"; done')[1] == \
        "3 two three /home/root one\n[one]\n[two three]\n[/home/root]\n"
    assert run(sh, "a=(1 2 3); a+=(4 5); a[7]=eight; echo ${a[@]}; echo ${!a[@]}; "
                   "echo ${#a[7]} ${#a[*]}")[1] == "1 2 3 4 5 eight\n0 1 2 3 4 7\n5 6\n"
    assert run(sh, "a=(x y z); unset 'a[1]'; echo \"${a[@]}\" ${#a[@]}; i=2; "
                   "echo ${a[i]} ${a[$i-2]}")[1] == "x z 2\nz x\n"
    assert run(sh, "a=(1 '2 3'); declare -p a")[1] == "declare -a a=([0]=1 [1]='2 3')\n"
    assert run(sh, 'f() { local arr=(l1 l2); echo ${arr[1]}; }; f; echo "[${arr[@]}]"')[1] \
        == "l2\n[]\n"
    assert run(sh, "export b=(1 2); env | grep -c '^b='")[1] == "0\n"
    assert run(sh, "readonly R=(1 2); R[0]=3; echo no") == (
        1, "", "exo: R: readonly variable\n")
    assert run(sh, "e=(); n=scalar; echo ${#e[@]} [${e[@]}] ${n[0]} ${#n[@]}")[1] == \
        "0 [] scalar 1\n"
    assert run(sh, "a=($(seq 3)); echo ${a[2]}")[1] == "3\n"
    # in arithmetic too: $(( a[i] )), (( a[0]++ )), let 'a[2] *= 2', for (( … )) s[i]=…
    assert run(sh, "a=(10 20 30); echo $(( a[1] + a[-1] )); (( a[0]++ )); "
                   "let 'a[2] *= 2'; echo ${a[@]}")[1] == "50\n11 20 60\n"
    assert run(sh, "for ((i=0; i<3; i++)); do s[i]=$((i*i)); done; echo ${s[@]}; "
                   "((c[2]=7)); declare -p c")[1] == "0 1 4\ndeclare -a c=([2]=7)\n"
    # over several lines, as scripts list files (a line that is a comment is no word)
    assert run(sh, 'files=(\n  one.txt\n  # a comment\n  "two words"\n)\n'
                   'echo ${#files[@]} "${files[1]}"')[1] == "2 two words\n"
    for line, said in (("a=(1 2", "')' expected"),
                       ("a=(1 2) x", "syntax error near 'x'"),
                       ("a=(1); echo ${a[-5]}", "bad array subscript")):
        status, _, err = run(sh, line)
        assert status != 0 and said in err, line
    assert run(sh, 'x="(a b)"; y=$(echo hi); echo $x $y')[1] == "(a b) hi\n"


def test_a_substitution_says_its_errors_where_its_line_does(root_shell: Shell) -> None:
    """`x=$(cat nofile)` wrote cat's error on the kernel's own stderr (the console), not
    the line's; `set -x` in `$(…)` did the same."""
    _, out, err = run(root_shell, 'x=$(cat /nonexistent-file); echo "[$x]"')
    assert (out, err) == ("[]\n", "cat: /nonexistent-file: no such file or directory\n")
    assert run(root_shell, "set -x; y=$(echo in); set +x")[2] == \
        "+ echo in\n+ y=in\n+ set +x\n"  # (the assignment traced too, as bash does)
    # and $? after a $(…) of the same command is its status, as in sh
    assert run(root_shell, "echo $(exit 5) $?; false; echo $?")[1] == "5\n1\n"


def test_arithmetic_is_bash_s_grammar_not_python_s(root_shell: Shell) -> None:
    """A review found Python's syntax leaking through `$((…))` (`not 1`, `1 if 1 else
    2`, `0b101`, `1//2`) and bash's refused (`?:`, `,`, octal `010`, `$((i++))`), and
    `&&` evaluating both sides: each as bash answers it."""
    sh = root_shell
    for line, out in (
            ("echo $((!0)) $((!5)) $((~0)) $((1?2:3)) $((0?2:3)) $((1,2))", "1 0 -1 2 3 2\n"),
            ("echo $((010)) $((0x10)) $((2#101)) $((64#@)) $((36#z))", "8 16 5 62 35\n"),
            ("echo $((0 && 1/0)) $((1 || 1/0)) $(( 3 > 2 > 1 ))", "0 1 0\n"),
            ("echo $((-2**2)) $((2**3**2)) $((--5)) $((- -5))", "4 512 5 5\n"),
            ("i=0; echo $((i++)) $((i++)) $((++i)) $i; echo $((x=3)) $x", "0 1 3 3\n3 3\n"),
            ('echo $(( "1" + 2 ))', "3\n"),
            ("((a=3, b=a+1)); echo $a $b; x=5; ((x*=2, x<<=1)); echo $x", "3 4\n20\n")):
        assert run(sh, line)[1] == out, line
    for line in ("echo $((not 1))", "echo $((1 if 1 else 2))", "echo $((0b101))",
                 "echo $((1//2))", "echo $((08))", "echo $((1_000))", "echo $((1e3))"):
        status, _, err = run(sh, line)
        assert status == 2 and "bad arithmetic" in err, line


def test_numbers_of_thousands_of_digits_are_refused_not_crashes(root_shell: Shell) -> None:
    """Python's int() refuses more than 4300 digits: `shift 9…9`, `${9…9}` and a variable
    of 5000 digits in `$((…))` each ended in "internal error" (status 70)."""
    n = "9" * 5000
    for line in (f"shift {n}", f"f() {{ return {n}; }}; f", f"head -n {n} /etc/hostname",
                 f"for i in 1; do break {n}; done"):
        status, _, err = run(root_shell, line)
        assert (status, err.split(": ", 1)[1]) == (2, "a number with too many digits\n"), line
    assert run(root_shell, f"echo ${{{n}:-d}} ${{{n}}}.")[1] == "d .\n"
    assert run(root_shell, f"x={n}; echo $((x)) $((x == -1))")[1] == "-1 1\n"
    assert run(root_shell, "x=010; echo $((x))")[1] == "8\n"


def test_brace_ranges_of_huge_or_padded_numbers_are_bounded(root_shell: Shell) -> None:
    """A review: `{000…001..65536}` (4000 zeros) took 50 s of the kernel's thread, and
    5000-digit bounds ended in "internal error"."""
    import time

    start = time.monotonic()
    assert run(root_shell, "echo {" + "0" * 4000 + "1..65536}")[0] == 2
    assert run(root_shell, "echo {" + "0" * 5000 + "1..2} | wc -c")[1].strip() == "10004"
    assert run(root_shell, "echo {a..z.." + "1" * 5000 + "}")[0] == 2
    assert time.monotonic() - start < 30
    assert run(root_shell, "echo {1..3} {-3..3..2} {01..3}")[1] == "1 2 3 -3 -1 1 3 01 02 03\n"


def test_a_substitution_s_word_is_read_as_sh_reads_it(root_shell: Shell) -> None:
    """``${…}`` ended at its first ``}`` (``${u:-${x}}`` was 'unterminated'), a WORD's
    spaces were lost (``"${u:-a  b}"`` was ``a b``, ``${x/h/a  b}`` dropped them), a
    ``;`` in a quoted ``$(…)`` or in ``${…}`` split the line, and a case subject or
    pattern with spaces in quotes did not parse: each as bash does now."""
    cases = [
        ('x=hi; u=; echo "${u:-${x}}" ${u:-${x}x}', "hi hix\n"),
        ('u=; echo "${u:-a  b}" ${u:-a  b}.', "a  b a b.\n"),
        ('x=hi; echo "${x/h/a  b}"', "a  bi\n"),
        ('echo "$( echo "a;b" )" "${u:-c;d}"', "a;b c;d\n"),
        ('echo "${u:-"}"}" ${u:-{a} ${u:-{a}} ${u:-x}y}', "} {a {a} xy}\n"),
        ('echo "${u:-$(echo "1;2")}" "${u:-`echo 3`}"', "1;2 3\n"),
        ('z="p  q"; case $z in "p  q") echo yes;; *) echo no;; esac', "yes\n"),
        ('case "a|b" in "a|b") echo bar;; esac; case b in (a | b) echo alt;; esac',
         "bar\nalt\n"),
        # a quoted pattern character matches itself alone; an unquoted $p's is a glob
        ('case x in "*") echo star;; *) echo other;; esac', "other\n"),
        ('p="a*"; case ab in $p) echo glob;; esac; case ab in "$p") echo q;; *) echo lit;;'
         " esac", "glob\nlit\n"),
        ('x="a*b*c"; echo ${x#"a*"} ${x#a*} ${x%\\*c}', "b*c *b*c a*b\n"),
        ('x=hello; echo ${x//l/"*"} ${x/"l*"/Z}', "he**o hello\n"),
    ]
    for line, expected in cases:
        assert run(root_shell, line) == (0, expected, ""), line
    # A replacement's result is bounded before it is built (4096 places of 0.9 MB were
    # 3.7 GB of the kernel's memory), and nesting is: each level is read again.
    status, _, err = run(root_shell, "x=$(printf '%04096d' 0); r=$(head -c 900000 "
                         "/dev/zero | tr '\\0' y); echo ${x//0/$r}")
    assert status == 2 and "longer than 4 MiB" in err
    status, _, err = run(root_shell, "echo " + "${u:-" * 5000 + "x" + "}" * 5000)
    assert status == 2 and "nested more than 64 deep" in err
    assert run(root_shell, "echo " + "${u:-" * 30 + "x" + "}" * 30)[1] == "x\n"


def test_scripts_habits_pipefail_errexit_subshells_trap_p_and_read(root_shell: Shell) -> None:
    """What scripts start with and lean on, as bash runs it: ``set -euo pipefail`` was
    refused; a failed ``( … )`` did not end a ``set -e`` script; ``if ( … )`` was a
    syntax error; ``trap -p EXIT`` set a trap named "-p"; ``read`` kept a variable at
    the end of input, answered 0 for a last line without its newline, did not join a
    line ended by a backslash and kept ``a:b:``'s last ``:``; ``[ 99…9 -gt 1 ]`` (past 64
    bits) was true."""
    cases = [
        ("set -euo pipefail; echo $-; set -o | grep pipefail; set +euo pipefail; echo $-.",
         "eu\npipefail        on\n.\n"),
        ("set -o pipefail; false | true; echo $?; true | false | true; echo $?; "
         "set +o pipefail; false | true; echo $?", "1\n1\n0\n"),
        ("(set -e; (false); echo no); echo st=$?", "st=1\n"),
        ("(set -e; (false) || echo ok; true && (false); echo no); echo st=$?", "ok\nst=1\n"),
        ("if (false); then :; else echo else; fi; while (false); do :; done; echo w",
         "else\nw\n"),
        ("trap 'echo bye' EXIT; trap 'echo i' INT; trap -p EXIT; trap - EXIT INT; trap -p",
         "trap -- 'echo bye' EXIT\n"),
        ("x=old; read x < /dev/null; echo \"$? [$x]\"", "1 []\n"),
        ("printf 'l1\\nl2' > rl; while read l; do echo \"[$l]\"; done < rl; echo \"[$l]\"",
         "[l1]\n[l2]\n"),
        ("printf 'a\\\\\\nb\\n' > rb; read z < rb; echo \"[$z]\"; read -r z < rb; "
         "echo \"[$z]\"", "[ab]\n[a\\]\n"),
        ("IFS=: read p q <<< a:b:; echo \"[$p][$q]\"; IFS=: read p q <<< a:b:c:; "
         "echo \"[$p][$q]\"", "[a][b]\n[a][b:c:]\n"),
        ("[ 9223372036854775807 -gt 1 ]; echo $?", "0\n"),
    ]
    for line, expected in cases:
        assert run(root_shell, line)[1] == expected, line
    _, out, err = run(root_shell, "[ 99999999999999999999 -gt 1 ]; echo $?")
    assert out == "2\n" and "integer expression expected" in err


def test_nul_bytes_read_are_dropped_as_bash_drops_them(root_shell: Shell) -> None:
    """A NUL in `$(…)`'s output, in `read`'s input or in a sourced file reached the
    shell's variables, where its markers live (an array's encoding): `v=$(printf
    '\\0array\\0x')` was an internal error. bash drops them; so does the shell."""
    sh = root_shell
    assert run(sh, "v=$(printf '\\0array\\0x\\0y'); echo \"[$v]\" ${v[0]}")[1] == \
        "[arrayxy] arrayxy\n"
    assert run(sh, "printf '\\0array\\0zz\\0y\\n' > /tmp/nul.txt; read w < /tmp/nul.txt; "
                   "echo \"[$w]\"")[1] == "[arrayzzy]\n"
    assert run(sh, "printf 'echo in\\0side\\n' > /tmp/nul.sh; source /tmp/nul.sh")[1] == \
        "inside\n"


def test_ansi_c_quoting_and_field_splitting_at_ifs(root_shell: Shell) -> None:
    """`$'…'` was `$` then a quoted string (`IFS=$'\\n'` set IFS to `$\\n`); an unquoted
    expansion was split at white space whatever IFS said (`IFS=:` changed nothing)."""
    sh = root_shell
    assert run(sh, "printf '%s' $'a\\tb\\nc\\x41\\101\\u00e9\\e.' | od -An -c")[1].split() == \
        ["a", "\\t", "b", "\\n", "c", "A", "A", "303", "251", "033", "."]
    assert run(sh, "x=$'one\\ntwo'; echo \"$x\" ${#x}; echo $'a\\0b' \"$'q'\"")[1] == \
        "one\ntwo 7\na $'q'\n"
    assert run(sh, "IFS=$'\\n'; for l in $(printf 'a b\\nc d\\n'); do echo \"<$l>\"; done"
               )[1] == "<a b>\n<c d>\n"
    assert run(sh, "IFS=:; x=a:b::c; for p in $x; do echo \"[$p]\"; done")[1] == \
        "[a]\n[b]\n[]\n[c]\n"
    assert run(sh, "IFS=; z='p q'; for w in $z; do echo \"{$w}\"; done")[1] == "{p q}\n"
    assert run(sh, "unset IFS; y=' 1  2 '; set -- $y; echo $#")[1] == "2\n"
    assert run(sh, "echo $'unterminated")[0] == 2
    # slices of $@ and of arrays, as bash's: "${@:2}" a word each
    assert run(sh, 'set -- a "b c" d; for x in "${@:2}"; do echo "[$x]"; done; '
                   'echo "${@: -1}" ${*:1:1}; a=(p q r s); echo ${a[@]:1:2} "${a[@]: -1}"'
               )[1] == "[b c]\n[d]\nd a\nq r s\n"
    assert "substring expression < 0" in run(sh, 'echo "${@:1:-1}"')[2]
    # "$*" and "${a[*]}" joined by IFS's first character, as sh joins them
    assert run(sh, "set -- a b c; a=(x y); IFS=,; echo \"$*\" \"${a[*]}\"; IFS=; "
                   "echo \"$*\"; unset IFS; echo \"$*\"")[1] == "a,b,c x,y\nabc\na b c\n"


def test_bash_s_conditional_command(root_shell: Shell) -> None:
    """`[[ … ]]` was "command not found" (its && split the line): bash's conditional —
    words never split or globbed, && || ! ( ) inside, == as a pattern (quoted parts
    literal), =~ with BASH_REMATCH, < > on strings, -lt… on arithmetic, test's file
    tests, -v; short-circuit expansion; a malformed one answers 2."""
    sh = root_shell
    assert run(sh, "x=123; [[ $x =~ ^[0-9]+$ ]] && echo num; [[ abc =~ b(.) ]] && "
                   "echo ${BASH_REMATCH[1]} ${BASH_REMATCH[0]}")[1] == "num\nc bc\n"
    assert run(sh, 'f="a b"; [[ -n $f && $f == a* ]] && echo both; '
                   '[[ $f == "a*" ]] || echo literal')[1] == "both\nliteral\n"
    assert run(sh, "[[ -f /etc/hostname ]] && echo file; [[ ! -d /none ]] && echo nodir"
               )[1] == "file\nnodir\n"
    assert run(sh, 'if [[ 3 -lt 10 && ( "b" > "a" || 1 -eq 2 ) ]]; then echo ok; fi; '
                   "[[ 1+1 -eq 2 ]] && echo arith")[1] == "ok\narith\n"
    assert run(sh, "i=; while [[ $i != xxx ]]; do i=${i}x; done; echo $i")[1] == "xxx\n"
    assert run(sh, "[[ -z '' || $(echo ran >&2) ]]; echo $?") == (0, "0\n", "")
    assert run(sh, "v=1; [[ -v v ]] && echo set; [[ -v nope ]] || echo unset; "
                   "! [[ a == b ]] && echo neg")[1] == "set\nunset\nneg\n"
    assert run(sh, '[[ "a|b" =~ ^(a|b)$ ]]; echo $?; [[ b =~ ^(a|b)$ ]]; echo $?')[1] == \
        "1\n0\n"
    # =~ is RE2, linear: Python's re backtracked, holding the GIL, for ages on this
    assert run(sh, "x=$(printf 'a%.0s' {1..40})!; [[ $x =~ ^(a+)+$ ]]; echo $?")[1] == "1\n"
    for line in ("[[ ]]", "[[ a == ]]", "[[ a =~ ( ]]", "[[ a", "[[ a ]] | cat",
                 "[[ a =~ ((.*a){1,30}){1,30} ]]"):
        assert run(sh, line)[0] == 2, line
    assert run(sh, "[[ -f /none ]] 2>/dev/null || echo no; [[ a ]] > /tmp/c.out; echo $?"
               )[1] == "no\n0\n"
    # with no ]] after it, [[ is a word as any; type says what the keywords are
    assert run(sh, "type if [[; type -t while")[1] == \
        "if is a shell keyword\n[[ is a shell keyword\nkeyword\n"


def test_mapfile_read_a_and_reading_a_file_by_substitution(root_shell: Shell) -> None:
    """mapfile/readarray, `read -a` (and letters together: `read -ra`), `$(< FILE)`
    were "command not found", a usage error and an error of an empty command."""
    sh = root_shell
    assert run(sh, "printf 'l1\\nl2\\r\\nl3' > /tmp/m.txt; mapfile -t L < /tmp/m.txt; "
                   "echo ${#L[@]} \"${L[2]}\"; readarray -s 1 -n 1 M < /tmp/m.txt; "
                   "declare -p M")[1] == "3 l3\ndeclare -a M=([0]='l2\r\n')\n"
    assert run(sh, 'read -a parts <<< "x y  z"; echo ${#parts[@]} ${parts[2]}; '
                   'IFS=: read -ra p2 <<< "a::b"; echo ${#p2[@]}')[1] == "3 z\n3\n"
    assert run(sh, 'c=$(< /tmp/m.txt); echo "$c" | wc -l; x=$(</tmp/m.txt); echo ${#x}'
               )[1] == "3\n9\n"
    assert run(sh, "mapfile -x")[0] == 2


def test_printf_is_bash_s_builtin(root_shell: Shell) -> None:
    """printf was the host's /usr/bin/printf through the powerbox (`printf -v v …`
    printed "-v"): bash's builtin, with -v, the format reused over the arguments."""
    sh = root_shell
    assert run(sh, "printf -v v '%03d' 7; echo $v")[1] == "007\n"
    assert run(sh, "printf '%s-%d\\n' a 1 b 2 c; printf '[%5s|%-5s|%.2f|%x|%o|%c|%e]\\n' "
                   "ab cd 3.14159 255 8 xyz 12345.678")[1] == \
        "a-1\nb-2\nc-0\n[   ab|cd   |3.14|ff|10|x|1.234568e+04]\n"
    assert run(sh, "printf '%b|' 'a\\tb' 'x\\cy'; printf '%*d|%%\\101\\n' 5 42")[1] == \
        "a\tb|x   42|%A\n"
    status, out, err = run(sh, "printf '%d\\n' abc 0x1F 010 \"'A\"")
    assert (status, out, err) == (1, "0\n31\n8\n65\n", "printf: abc: invalid number\n")
    assert run(sh, "printf '%999999999s' x")[0] == 1 and run(sh, "printf")[0] == 2


def test_arrays_and_printf_are_bounded(root_shell: Shell) -> None:
    """What the shell holds for a user is the kernel's memory: an array at most 16 MiB
    (a loop of `a+=("$one_mib")` grew it without end), printf's output at most 4 MiB
    whatever its conversions ask for."""
    sh = root_shell
    _, out, err = run(sh, 'x=$(printf "%1000000s" a); for i in {1..20}; do '
                          'a+=("$x"); done; echo ${#a[@]}')
    assert out == "16\n" and "an array holds at most 16 MiB" in err
    assert "would pass 4 MiB" in run(sh, 'printf "%4000000s%4000000s" a b')[2]


def test_a_command_substitution_is_a_subshell(root_shell: Shell) -> None:
    """`$(…)` ran in the shell itself with nothing put back: `DIR=$(cd "$d" && pwd)`,
    the commonest idiom, moved the shell, and `y=$(x=2)` changed x. As sh's subshell,
    what it changes stays its own; `$(exit 3)` still gives its status."""
    sh = root_shell
    assert run(sh, "x=1; y=$(x=2; cd /tmp; echo $x); echo $x $y; pwd")[1] == \
        "1 2\n/home/root\n"
    assert run(sh, "d=$(cd /etc && pwd); echo $d; pwd")[1] == "/etc\n/home/root\n"
    assert run(sh, "z=$(exit 3); echo $?; w=`cd /tmp; pwd`; echo $w; pwd")[1] == \
        "3\n/tmp\n/home/root\n"


def _times(err: str, posix: bool = False) -> dict[str, float]:
    """The real/user/sys lines a `time` printed (bash's layout, or -p's)."""
    import re

    if posix:
        found = re.findall(r"^(real|user|sys) (\d+\.\d\d)$", err, re.M)
        return {k: float(v) for k, v in found}
    found = re.findall(r"^(real|user|sys)\t(\d+)m(\d+\.\d{3})s$", err, re.M)
    return {k: int(m) * 60 + float(s) for k, m, s in found}


def test_time_is_bash_s_reserved_word(root_shell: Shell) -> None:
    """`time` ran the host's GNU time through the powerbox ("let time read /?" for
    `time ls /`; `time { …; }` and a builtin could not be timed). Now bash's keyword: the
    whole pipeline or block, its status kept, its times on stderr in bash's layout."""
    sh = root_shell
    status, out, err = run(sh, "time { echo a; sleep 0.1; } | cat")
    assert (status, out) == (0, "a\n") and err.startswith("\nreal\t")
    assert set(_times(err)) == {"real", "user", "sys"} and _times(err)["real"] >= 0.1
    status, out, err = run(sh, "time -p ( exit 3 ); echo $?")
    assert out == "3\n" and set(_times(err, posix=True)) == {"real", "user", "sys"}
    assert run(sh, "time ! false; echo $?")[1] == "0\n"
    assert run(sh, "time for i in 1 2; do echo $i; done 2>/dev/null")[1] == "1\n2\n"
    assert run(sh, "type time; type -t time")[1] == "time is a shell keyword\nkeyword\n"
    assert set(_times(run(sh, "time")[2])) == {"real", "user", "sys"}  # (as bash: zeros)
    assert run(sh, "time sleep 1 &") == (2, "", "exo: time: not with '&' (time it in the "
                                             "job: { time COMMAND; } &)\n")
    # $TIMEFORMAT: bash's %[p][l]R/U/S, %P, %%; set and empty: nothing said
    assert run(sh, "TIMEFORMAT='%0R|%1lR|%%'; time true")[2] == "0|0m0.0s|%\n"
    assert run(sh, "TIMEFORMAT=; time true")[2] == ""


def test_time_counts_a_program_s_cpu_and_what_it_waited_for(root_shell: Shell) -> None:
    """A program's CPU comes from its init's report (what it reaped: the command and
    the children it waited for), the host having no CPU account in its cgroups: `user`
    is the work done, not 0. (A lower bound only: the loop's work is fixed.)"""
    run(root_shell, "echo 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done' > loop.sh")
    status, _, err = run(root_shell, "time /bin/sh -c '/bin/sh loop.sh; exit $?'")
    times = _times(err)
    assert status == 0 and times["user"] + times["sys"] >= 0.005, err
    assert times["real"] >= times["user"] * 0.5  # (one CPU's worth, at most, of a loop)


def test_timeformat_layouts() -> None:
    from exo.shell.timing import DEFAULT_FORMAT, POSIX_FORMAT, report

    assert report(DEFAULT_FORMAT, 61.23456, 0.5, 0.0) == \
        "\nreal\t1m1.234s\nuser\t0m0.500s\nsys\t0m0.000s\n"
    assert report(POSIX_FORMAT, 2.999, 1.0, 0.25) == "real 2.99\nuser 1.00\nsys 0.25\n"
    assert report("%P %3U %9S %x", 2.0, 0.5, 0.5) == "50.00 0.500 0.500 %x\n"
    assert report("", 1.0, 1.0, 1.0) == ""


def test_process_substitution(root_shell: Shell) -> None:
    """`<(LIST)` and `>(LIST)` (bash's; `diff <(…) <(…)` said "/home/…/(echo: no such
    file"): a pipe's end as /dev/fd/N, for builtins (through the Vfs) and for host
    programs through the powerbox (the descriptor passed at its own number)."""
    sh = root_shell
    run(sh, "printf 'b\\na\\n' > /tmp/x1; printf 'a\\nc\\n' > /tmp/x2")
    assert run(sh, "diff <(sort /tmp/x1) <(sort /tmp/x2); echo rc=$?")[1] == \
        "2c2\n< b\n---\n> c\nrc=1\n"
    assert run(sh, "cat <(echo hello; echo world)")[1] == "hello\nworld\n"  # a builtin
    assert run(sh, "/bin/cat <(echo via-host)")[1] == "via-host\n"
    assert run(sh, "while read l; do echo \"got $l\"; done < <(printf '1\\n2\\n')")[1] == \
        "got 1\ngot 2\n"
    assert run(sh, "paste <(seq 1 3) <(seq 4 6)")[1] == "1\t4\n2\t5\n3\t6\n"
    assert run(sh, "echo hi | tee >(/usr/bin/wc -c > /tmp/count) > /dev/null; sleep 0.5; "
                   "cat /tmp/count")[1] == "3\n"
    assert run(sh, "x=$(cat <(echo in-subst)); echo $x")[1] == "in-subst\n"
    assert run(sh, "echo '<(quoted)' \\<\\(escaped\\)")[1] == "<(quoted) <(escaped)\n"
    with pytest.raises(IncompleteInput, match=r"unterminated <\( … \)"):
        split_list("echo a <(echo b")


def test_process_substitution_reaches_only_its_own_pipes_and_is_bounded(
        root_shell: Shell) -> None:
    """/dev/fd/N is a process substitution's pipe only while its command runs: never
    another of the kernel's descriptors (`cat /dev/fd/3`), nor one after its command
    ended; a function calling itself through <(…) stops at the budget. (/dev/fd/0 is
    the command's own standard input.)"""
    sh = root_shell
    status, out, err = run(sh, "cat /dev/fd/0 /dev/fd/3 /dev/fd/7", stdin=b"in\n")
    assert (status, out) == (1, "in\n") and err.count("no such file or directory") == 2
    status, out, _ = run(sh, "p=$(echo <(true)); cat $p; echo rc=$?")
    assert out == "rc=1\n" and not sh.vfs.pipes
    status, _, err = run(sh, "f() { cat <(f); }; f")
    assert "more than 64 process substitutions running at once" in err
    deadline = time.monotonic() + 10
    while sh._producers._value < 64 and time.monotonic() < deadline:  # (all ended)
        time.sleep(0.05)
    assert sh._producers._value == 64 and not sh.vfs.pipes


def test_a_stopped_builtin_job_waits_and_goes_on_when_continued(root_shell: Shell) -> None:
    """`kill -STOP %1` on a job of builtins ended it (every signal was an end for them);
    now it stops: a stopped sleep's clock is held, as /bin/sleep's is, until -CONT."""
    _, out, _ = run(root_shell, "sleep 1 & sleep 0.1; kill -STOP %1; jobs; sleep 1.5; "
                                "jobs; kill -CONT %1; jobs; wait %1; echo waited $?")
    assert out == ("[1] Stopped    sleep 1\n[1] Stopped    sleep 1\n"
                   "[1] Running    sleep 1\nwaited 0\n")


def test_script_idioms_bash_takes(root_shell: Shell) -> None:
    """Found by running everyday script lines under bash and here, and comparing: each
    was wrong or refused here."""
    sh = root_shell
    # POSIX classes in patterns (fnmatch knows none): the trim idiom, case, [[ ]], globs
    assert run(sh, 'x="  trim  "; x="${x#"${x%%[![:space:]]*}"}"; echo "[$x]"')[1] == \
        "[trim  ]\n"
    assert run(sh, "case 7 in [[:digit:]]) echo digit;; esac; "
                   "[[ ab1 == *[[:digit:]] ]] && echo cond")[1] == "digit\ncond\n"
    assert run(sh, "touch f1.txt fa.txt; echo f[[:digit:]].txt")[1] == "f1.txt\n"
    assert run(sh, "x='[:space:]'; case ' ' in \"$x\") echo literal;; *) echo no;; esac"
               )[1] == "no\n"  # quoted: the characters themselves
    # "${!a[@]}": each index a word (it was one word, "0 1 2")
    assert run(sh, 'a=(x y z); for i in "${!a[@]}"; do echo "$i=${a[$i]}"; done')[1] == \
        "0=x\n1=y\n2=z\n"
    # `for NAME; do` with no `in`: over "$@" (it ran over nothing)
    assert run(sh, 'set -- a "b c"; for x; do echo "[$x]"; done')[1] == "[a]\n[b c]\n"
    # read -d DELIM, and -d '' (to a NUL: a here-document whole into a variable)
    assert run(sh, "read -r -d '' doc <<'END'\nline1\nline2\nEND\necho \"$doc\"")[1] == \
        "line1\nline2\n"
    assert run(sh, "printf 'a:b:c' | { read -d : x; echo $x; }")[1] == "a\n"


def test_numbered_redirections(root_shell: Shell) -> None:
    """`echo ok 3>/dev/null` printed nothing: `3` was an argument and `>` sent the output
    away. Numbered descriptors redirect, duplicate and close in order, as in sh."""
    sh = root_shell
    assert run(sh, "echo ok 3>/dev/null; echo two 4>&1")[1] == "ok\ntwo\n"
    run(sh, "printf 'l1\\nl2\\n' > /tmp/nr")
    assert run(sh, "cat 3</tmp/nr <&3")[1] == "l1\nl2\n"
    # the swap: stdout to stderr and stderr to stdout, through 3
    status, out, err = run(sh, "{ echo out; echo err >&2; } 3>&1 1>&2 2>&3")
    assert (status, out, err) == (0, "err\n", "out\n")
    assert run(sh, "f() { echo out; echo err >&2; }; f 3>&1 1>/dev/null 2>&3")[1] == "err\n"
    assert run(sh, "echo a 2>&1 >/dev/null; echo b >| /tmp/nr2; cat /tmp/nr2")[1] == "b\n"
    status, _, err = run(sh, "echo x >&7")
    assert status == 1 and err == "exo: 7: bad file descriptor\n"
    # a closed stream is /dev/null: the shell's own messages there are dropped (they
    # were an internal error), a program writes nowhere
    assert run(sh, "echo x >&-; echo $?")[1] == "0\n"
    assert run(sh, "nosuchcmd 2>&-; echo rc=$?; ls /nope 2>&-; echo rc=$?") == \
        (0, "rc=127\nrc=1\n", "")
    assert run(sh, "(exec 2>&-; nosuchcmd; set -u; echo $nope); echo after") == \
        (0, "after\n", "")
    assert run(sh, "echo x 300>/dev/null")[2].startswith("exo: 300: bad file descriptor")
    # a host program gets 0, 1 and 2: a number of its own is refused, with a line
    status, _, err = run(sh, "/bin/echo x 3>/tmp/nr3")
    assert status == 126 and "descriptor 3: a program gets 0, 1 and 2 here" in err


def test_exec_keeps_descriptors_for_the_shell(root_shell: Shell) -> None:
    """`exec 3> f` (refused before: scripts' logs), `exec 3>&-`, `read -u`, `done 3< f`,
    `exec > log 2>&1` for the rest of the script; a subshell's are its own."""
    sh = root_shell
    assert run(sh, "exec 3>/tmp/e3; echo hi >&3; echo there >&3; exec 3>&-; "
                   "cat /tmp/e3")[1] == "hi\nthere\n"
    assert run(sh, "echo late >&3")[2] == "exo: 3: bad file descriptor\n"
    run(sh, "printf 'l1\\nl2\\n' > /tmp/e4")
    assert run(sh, "exec 4</tmp/e4; read -u 4 a; read -u 4 b; exec 4<&-; echo $a $b"
               )[1] == "l1 l2\n"
    assert run(sh, "while read -u 3 l; do echo got $l; done 3< /tmp/e4")[1] == \
        "got l1\ngot l2\n"
    assert run(sh, "read -u 9 x")[2] == "read: 9: bad file descriptor\n"
    # a subshell's exec ends with it; the shell's own stays, across lines
    status, out, _ = run(sh, "( exec 3>/tmp/e5; echo in >&3 ); echo out >&3; echo $?; "
                             "cat /tmp/e5")
    assert out == "1\nin\n"
    run(sh, "exec 3>/tmp/e6")
    assert run(sh, "echo next-line >&3; exec 3>&-; cat /tmp/e6")[1] == "next-line\n"
    # the same number opened again and again holds one descriptor; at most 32 at once
    run(sh, "for i in 1 2 3 4 5 6 7 8; do exec 3>/tmp/e7; done")
    assert len(sh._owned) == 1
    many = "; ".join(f"exec {n}>/dev/null" for n in range(3, 40))
    status, _, err = run(sh, many + "; echo $?")
    assert "exec: more than 32 descriptors of the shell's own" in err
    sh.close_fds()
    assert sh.fds == {} and sh._owned == []
    # the shell's own stdout and stderr, from the next command on (a function's too)
    status, out, err = run(sh, "exec >/tmp/e8 2>&1; echo logged; ls /nonexistent-e8; "
                               "exec >&-")
    assert out == err == ""
    sh.close_fds()
    assert run(sh, "cat /tmp/e8")[1].startswith("logged\nls: ")
    assert run(sh, "f() { exec 2>/dev/null; }; f; ls /nonexistent-e9; echo $?")[1:] == \
        ("1\n", "")
    sh.close_fds()
    # inside a redirected block there is no shell-wide stdout to move: refused
    status, _, err = run(sh, "{ exec >/tmp/e10; } > /tmp/e11")
    assert status == 1 and "inside a redirected block or a pipeline" in err
    assert run(sh, "exec; echo still")[1] == "still\n"
    # `exec 3>&1 | cat`: a pipeline's exec has no shell to keep them for
    status, out, err = run(sh, "exec 3>&1 | cat; echo still")
    assert "exec 3> FILE alone" in err and out == "still\n"


def test_exec_descriptors_close_with_the_shell(root_shell: Shell) -> None:
    """What `exec` opened is closed when the shell ends (a script, a session), with the
    file's contents settled; a background block's copy holds copies of its own."""
    from exo.shell.repl import run_script

    sh = root_shell
    assert run_script(sh, ["exec 5>/tmp/c5", "{ echo bg >&5; } &", "wait",
                           "echo fg >&5"]) == 0
    assert sh.fds == {} and sh._owned == []
    assert sorted(run(sh, "cat /tmp/c5")[1].split()) == ["bg", "fg"]


def test_associative_arrays(root_shell: Shell) -> None:
    """bash's `declare -A` (refused before): string keys in the order they were set,
    `m[$k]=v`, `${m[$k]}`, "${!m[@]}", "${m[@]}", `${#m[@]}`, `unset 'm[k]'`, `m+=(…)`,
    arithmetic on an element (the counting idiom), `local -A`, `declare -p`."""
    sh = root_shell
    assert run(sh, 'declare -A m=([a]=1 [b]=2); m[c]=3; k=b; '
                   'echo ${m[a]} ${#m[@]} ${m[$k]} "${!m[@]}" "${m[@]}"')[1] == \
        "1 3 2 a b c 1 2 3\n"
    assert run(sh, 'declare -A n; for w in apple pear apple fig apple; do '
                   '(( n[$w]++ )); done; for k in "${!n[@]}"; do echo "$k ${n[$k]}"; done'
               )[1] == "apple 3\npear 1\nfig 1\n"
    assert run(sh, 'declare -A h; h["two words"]=x; echo "${h["two words"]}" ${#h[@]}; '
                   "unset 'h[two words]'; echo ${#h[@]}")[1] == "x 1\n0\n"
    assert run(sh, "declare -A p=([x]=1); p+=([y]='a b'); declare -p p")[1] == \
        "declare -A p=([x]=1 [y]='a b')\n"
    assert run(sh, 'f() { local -A l=([k]=v); echo ${l[k]}; }; f; echo "[${l[k]}]"')[1] == \
        "v\n[]\n"
    assert run(sh, "i=(x y); declare -A i")[2] == \
        "declare: i: cannot convert an indexed array to an associative one\n"
    status, _, err = run(sh, "declare -A q; q=(plain)")
    assert status == 1 and "an associative array's words are [KEY]=VALUE" in err
    # never exported, as any array
    assert run(sh, "declare -A e=([a]=1); export e; env | grep -c '^e='")[1] == "0\n"


def test_an_indexed_array_reads_in_index_order(root_shell: Shell) -> None:
    """`a[5]=x; a[1]=y` then "${a[@]}" said "x y" (the order they were set; bash: by
    index); `[N]=v` words inside a=(…) set that index (the next word the one after)."""
    sh = root_shell
    assert run(sh, 'a[5]=x; a[1]=y; echo "${a[@]}" "${!a[@]}"')[1] == "y x 1 5\n"
    assert run(sh, 'b=([2]=two [0]=zero one); declare -p b; echo "${b[@]}"')[1] == \
        "declare -a b=([0]=zero [1]=one [2]=two)\nzero one two\n"
    assert run(sh, 'c=(q); c+=([7]=s [3]=r); echo "${c[@]}" "${!c[@]}"')[1] == \
        "q r s 0 3 7\n"


def test_ls_a_shows_the_directory_and_its_parent(root_shell: Shell) -> None:
    """`ls -a` had no `.` and `..` (coreutils' and bash users' ls shows them); -A is
    the listing without them."""
    run(root_shell, "mkdir -p d/e; touch d/x d/.h")
    assert run(root_shell, "ls -a d")[1] == ".\n..\n.h\ne\nx\n"
    assert run(root_shell, "ls -A d")[1] == ".h\ne\nx\n"
    assert run(root_shell, "ls -la d")[1].splitlines()[0].endswith(" ./")


def test_bash_s_parameter_transformations(root_shell: Shell) -> None:
    """`${x@Q}` (and @U @L @u @E @A) were "bad substitution", as was a case change of
    every element (`${a[@]^^}`); the same as bash's output."""
    sh = root_shell
    assert run(sh, "x=\"it's a b\"; echo ${x@Q}; y=hello; echo ${y@U} ${y@u} ${y@A}; "
                   "z=$'a\\tb'; echo ${z@Q}; q=''; echo ${q@Q}")[1] == \
        "'it'\\''s a b'\nHELLO Hello y='hello'\n$'a\\tb'\n''\n"
    assert run(sh, "a=(one two); echo ${a[@]^^} ${a[*]@Q} ${a[@]^}")[1] == \
        "ONE TWO 'one' 'two' One Two\n"
    assert run(sh, "e='a\\tb'; printf '%s' \"${e@E}\"")[1] == "a\tb"
    assert run(sh, "v=$'x\\001y'; eval \"w=${v@Q}\"; [[ $w == \"$v\" ]] && echo same")[1] == \
        "same\n"  # (read back by the shell: what @Q is for)


def test_case_clauses_may_fall_through(root_shell: Shell) -> None:
    """bash's `;&` (on into the next body) and `;;&` (on to test the next patterns)
    were "syntax error near '&'"."""
    sh = root_shell
    assert run(sh, "case b in a) echo A;; b) echo B;& c) echo C;; d) echo D;; esac")[1] == \
        "B\nC\n"
    assert run(sh, "case ab in a*) echo 1;;& *b) echo 2;;& x) echo 3;; *) echo 4;; esac"
               )[1] == "1\n2\n4\n"
    assert run(sh, "case z in\n  z) echo multi\n     ;&\n  w) echo fell\n     ;;\nesac")[1] \
        == "multi\nfell\n"


def test_pushd_popd_dirs_builtin_and_hash(root_shell: Shell) -> None:
    """bash's directory stack, `builtin NAME` (past a function of that name) and `hash
    NAME` (scripts' "is it installed?" test) were "command not found"."""
    sh = root_shell
    out = run(sh, "mkdir -p /tmp/a /tmp/b; pushd /tmp/a; pushd /tmp/b; dirs; popd; pwd; "
                  "popd; pwd")[1]
    assert out == "/tmp/a ~\n/tmp/b /tmp/a ~\n/tmp/b /tmp/a ~\n/tmp/a ~\n/tmp/a\n~\n" \
        "/home/root\n"
    assert run(sh, "popd") == (1, "", "popd: directory stack empty\n")
    assert run(sh, "pushd /nonexistent; dirs")[1:] == (
        "~\n", "pushd: /nonexistent: no such directory\n")
    assert run(sh, "(pushd /tmp >/dev/null); dirs")[1] == "~\n"  # (a subshell's own)
    assert run(sh, 'echo() { builtin echo wrapped "$@"; }; echo hi; unset -f echo')[1] == \
        "wrapped hi\n"
    assert run(sh, "builtin nosuch")[2] == "builtin: nosuch: not a shell builtin\n"
    assert run(sh, "hash ls gcc && echo found; hash nosuchprog")[1:] == (
        "found\n", "hash: nosuchprog: not found\n")


def test_defaults_of_all_the_words_and_pipestatus(root_shell: Shell) -> None:
    """`"${@:-none}"` printed "exosh" (read as the slice `${@:-none}` from $0) and
    `${a[@]:-x}` was a bad substitution; `${#@}`; bash's PIPESTATUS was empty."""
    sh = root_shell
    assert run(sh, 'echo "${@:-none}" ${*:-none}; set -- a b; echo "${@:-none}"; '
                   'echo "${@: -1}" "${@:2}" ${#@}')[1] == "none none\na b\nb b 2\n"
    # ("${@:+set}" of no arguments is no word at all, as bash's: not an empty one)
    assert run(sh, 'f() { echo "${@:-empty}" "${@:+set}"; }; f; f x')[1] == \
        "empty\nx set\n"
    assert run(sh, 'a=(); echo "${a[@]:-empty}" ${a[@]+set}x; a=(1 2); '
                   'echo "${a[@]:-empty}" ${a[@]:+set}')[1] == "empty x\n1 2 set\n"
    status, _, err = run(sh, "set --; echo ${@:?no arguments}")
    assert status == 1 and err == "exo: @: no arguments\n"
    assert run(sh, 'true | false | true; echo "${PIPESTATUS[@]}" ${#PIPESTATUS[@]}')[1] == \
        "0 1 0 3\n"
    assert run(sh, 'false; echo "${PIPESTATUS[@]}" $PIPESTATUS')[1] == "1 1\n"


def test_a_builtin_job_killed_ends_with_the_signal(root_shell: Shell) -> None:
    """`sleep 5 & kill %1; wait %1` said 130 (Ctrl-C's) where sh says 143 (SIGTERM)."""
    sh = root_shell
    assert run(sh, "sleep 5 & kill %1; wait %1; echo $?")[1] == "143\n"
    assert run(sh, "sleep 5 & kill -INT %1; wait %1; echo $?")[1] == "130\n"


def test_wait_n_and_disown(root_shell: Shell) -> None:
    """`wait -n` (the next job to end, its status) and `disown` (out of the table), which
    were refused and "command not found". A disowned job still counts against the
    session's 64 jobs (or `& disown` in a loop made threads without end)."""
    sh = root_shell
    assert run(sh, "sleep 0.5 & (exit 3) & wait -n; echo $?; jobs | wc -l")[1] == "3\n1\n"
    assert run(sh, "wait; wait -n; echo $?")[1] == "127\n"
    assert run(sh, "sleep 100 & disown; jobs | wc -l; echo ${#}")[1] == "0\n0\n"
    assert len(sh.disowned) == 1
    _, _, err = run(sh, "for i in $(seq 70); do sleep 100 & disown; done")
    assert "too many jobs (64)" in err and len(sh.disowned) == 64
    status, _, err = run(sh, "disown %9")
    assert status == 1 and "no such job" in err
    for job in sh.disowned:
        sh.interrupt(job)
    assert all(job.done.is_set() for job in sh.disowned)


def test_the_shells_variables_are_bounded_in_all(root_shell: Shell) -> None:
    """Each array was bounded, the variables together were not: `eval "v$i=$x"` in a
    loop grew the kernel (where the shell runs) without end. At most 32 MiB and 65,536
    names a shell; past that an assignment is refused with a line, and nothing set
    before is lost."""
    from exo.shell.variables import MAX_BYTES, MAX_NAMES

    sh = root_shell
    _, out, err = run(sh, 'x=$(printf "%1000000s" a); '
                          'for i in $(seq 60); do eval "v$i=\\$x"; done; echo $i')
    assert out == "60\n" and MAX_BYTES - 1_000_000 < sh.env.size <= MAX_BYTES
    first = err.splitlines()[0]
    assert first.endswith(": the shell's variables would hold more than 32 MiB (unset some)")
    refused = int(first.removeprefix("exo: v").partition(":")[0])
    assert len(sh.env[f"v{refused - 1}"]) == 1_000_000  # (what was set stays)
    run(sh, "unset x; for i in $(seq 60); do unset v$i; done")
    assert sh.env.size < 1 << 20
    sh.env.update({f"w{i}": "1" for i in range(MAX_NAMES - len(sh.env))})  # (fast)
    assert len(sh.env) == MAX_NAMES
    assert run(sh, "new=1")[2] == f"exo: new: more than {MAX_NAMES} variables (unset some)\n"
    assert run(sh, "w1=changed; echo $w1")[1] == "changed\n"  # (an existing name: fine)


def test_umask(root_shell: Shell) -> None:
    """`umask` was "command not found": it is the session's, octal or symbolic, a
    subshell's own, and every file or directory the shell or a program it starts
    creates goes without its bits (a program gets it through its sandbox's stage 2)."""
    sh = root_shell
    assert run(sh, "umask; umask -S")[1] == "0022\nu=rwx,g=rx,o=rx\n"
    assert run(sh, "umask u=rwx,g=rx,o=; umask; umask g-r; umask -S; (umask 0); umask")[1] \
        == "0027\nu=rwx,g=x,o=\n0067\n"
    status, _, err = run(sh, "umask 999")
    assert status == 1 and "umask: 999: invalid symbolic mode" in err
    assert run(sh, "umask 1000")[0] == 1
    assert run(sh, "umask 077; echo x > /tmp/u1; touch /tmp/u2; mkdir /tmp/u3; "
                   "stat -c %a /tmp/u1 /tmp/u2 /tmp/u3")[1] == "600\n600\n700\n"
    assert run(sh, "umask 002; /usr/bin/touch /tmp/u4; /usr/bin/mkdir /tmp/u5; "
                   "/usr/bin/stat -c %a /tmp/u4 /tmp/u5")[1] == "664\n775\n"
    assert run(sh, "umask 022; echo x > /tmp/u6; stat -c %a /tmp/u6")[1] == "644\n"
    # through the kernel's file server (make's work tree is a served grant): its own
    # umask (022) took the bits the program's kept (0664 came out 0644)
    run(sh, "mkdir /tmp/mk; cd /tmp/mk; printf 'all:\\n\\techo x > s; mkdir d\\n' > Makefile")
    assert run(sh, "umask 000; /usr/bin/make -s; /usr/bin/stat -c %a s d")[1] == "666\n777\n"


def test_a_sandbox_takes_only_a_mode_mask_as_umask() -> None:
    from exo.sandbox import SandboxError, SandboxSpec

    assert SandboxSpec(umask=0o077).umask == 0o077
    for bad in (-1, 0o1000, "022", 2.0):
        with pytest.raises(SandboxError, match="umask must be a mode mask"):
            SandboxSpec(umask=bad)  # type: ignore[arg-type]


def test_lineno(root_shell: Shell) -> None:
    """`$LINENO` was empty (scripts' "error at line N" messages): the line the command
    starts on, in a sourced file its own, a function's body its definition's; a script
    counts its blank lines."""
    sh = root_shell
    text = ("echo $LINENO; echo $LINENO\nf() {\n  echo in $LINENO\n}\nf\n( echo $LINENO )\n"
            "cat <<E\nbody\nE\nif true; then\n  echo if $LINENO\nfi\necho last $LINENO\n")
    run(sh, f"cat > /tmp/lines.sh <<'END'\n{text}END")
    assert run(sh, "source /tmp/lines.sh")[1] == "1\n1\nin 3\n6\nbody\nif 11\nlast 13\n"
    before = int(run(sh, "echo $LINENO")[1])
    assert int(run(sh, "echo $LINENO")[1]) == before + 1  # (a session's lines, one by one)
    script = Shell(sh.kernel, sh.whole_tree)
    assert script_output(script, ["true\n", "\n", "\n", "echo at $LINENO\n"])[1] == \
        b"at 4\n"


def test_append_assignments(root_shell: Shell) -> None:
    """`x+=v` (PATH+=:/opt/bin, s+="$w,") was "command not found"."""
    sh = root_shell
    assert run(sh, 's=; for w in a b c; do s+="$w,"; done; echo $s')[1] == "a,b,c,\n"
    assert run(sh, "PATH+=:/opt/x; echo ${PATH##*:}; unset q; q+=new; echo $q")[1] == \
        "/opt/x\nnew\n"
    assert run(sh, 'a=(1 2); a+=x; echo "${a[@]}"; echo x+=1')[1] == "1x 2\nx+=1\n"
    assert run(sh, "x=a; export x+=b; declare y+=1; y+=2; echo $x $y; "
                   "f() { local x+=1; echo $x; }; f")[1] == "ab 12\n1\n"
    status, _, err = run(sh, "readonly r=1; r+=2")
    assert status == 1 and "r: readonly variable" in err


def test_read_timeout_and_element_subscripts(root_shell: Shell) -> None:
    """`read -t SECONDS` was a usage error; `arr[${#arr[@]}]=x` (append by index) was
    "command not found": its subscript held a `]`."""
    sh = root_shell
    assert run(sh, "read -t 1 v < /dev/null; echo $?")[1] == "1\n"
    started = time.monotonic()
    assert run(sh, 'sleep 2 | { read -t 0.3 v; echo $? "[$v]"; }')[1] == "142 []\n"
    assert time.monotonic() - started < 5
    assert run(sh, "echo hi | { read -t 5 v; echo $? $v; }")[1] == "0 hi\n"
    assert run(sh, "read -t abc v")[2] == "read: abc: invalid timeout specification\n"
    assert run(sh, 'declare -a arr; arr[${#arr[@]}]=x; arr[${#arr[@]}]=y; n=3; '
                   'arr[$((n-1))]=z; echo "${arr[@]}"')[1] == "x y z\n"


def test_a_block_piped_into_a_block(root_shell: Shell) -> None:
    """`for …; done | while read n; do …; done` and `{ …; } | { …; }` were "'done'
    expected" and "'}' expected": the first block is the pipeline's first stage, its own
    redirections its own, commands between the two as any."""
    sh = root_shell
    assert run(sh, "for i in 3 1 2; do echo $i; done | sort | while read n; do echo n$n; "
                   "done")[1] == "n1\nn2\nn3\n"
    assert run(sh, "{ echo a; echo err >&2; } 2>/dev/null | { read x; echo got $x; }") == \
        (0, "got a\n", "")
    assert run(sh, "f() { for i in 1 2; do echo $i; done | while read n; do echo f$n; "
                   "done; }; f; if true; then echo t; fi | { read v; echo v=$v; }")[1] == \
        "f1\nf2\nv=t\n"
    assert run(sh, "false && for i in 1; do echo $i; done | while read n; do echo n$n; "
                   "done; { echo a; } | { read x; exit 3; }; echo $?")[1] == "3\n"
    status, _, err = run(sh, "{ echo a; } | { cat; } | { cat; }")
    assert status == 2 and "one block piped into another, at most" in err


def test_printf_times(root_shell: Shell) -> None:
    """bash's `printf '%(FORMAT)T'` (scripts' timestamps) printed nothing."""
    import time as clock

    sh = root_shell
    day = clock.strftime("%Y-%m-%d", clock.localtime(86400))
    assert run(sh, "printf '%(%Y-%m-%d)T|%s\\n' 86400 x")[1] == f"{day}|x\n"
    assert run(sh, "printf '%(%Y)T\\n'")[1] == clock.strftime("%Y\n")
    status, _, err = run(sh, "printf '%(%Y)T' abc")
    assert status == 1 and "abc: invalid number" in err


def test_dev_tty_is_the_sessions_terminal(root_shell: Shell) -> None:
    """`echo hi > /dev/tty` printed nothing: it made a file `dev/tty` in the Exo tree.
    It is the session's terminal; without one, a line says so; /dev holds no file the
    shell makes."""
    import os
    import pty

    sh = root_shell
    status, _, err = run(sh, "echo x > /dev/tty")
    assert status == 1 and "/dev/tty: no terminal here" in err
    assert run(sh, "echo y > /dev/other")[2] == "exo: /dev/other: no such device\n"
    assert not (sh.vfs.root / "dev" / "tty").exists()
    master, slave = pty.openpty()
    try:
        with open("/dev/null", "wb") as null:
            assert sh.run_line("echo via-tty > /dev/tty", slave, null.fileno(), slave) == 0
        assert b"via-tty" in os.read(master, 100)
    finally:
        os.close(master)
        os.close(slave)


def test_dev_stdin_and_stdout_by_name(root_shell: Shell) -> None:
    """`echo hi | cat /dev/stdin` (a builtin: no such file; a program: permission
    denied, reopening the kernel's pipe as another uid), `tee /dev/stderr 2> f`."""
    sh = root_shell
    assert run(sh, "echo hi | cat /dev/stdin; echo x | wc -l /dev/fd/0")[1] == \
        "hi\n1 /dev/fd/0\n"
    assert run(sh, "echo hi | /bin/cat /dev/stdin | /bin/cat /dev/stdin; "
                   "x=$(echo sub | /bin/cat /dev/stdin); echo $x")[1] == "hi\nsub\n"
    assert run(sh, "echo hi | /usr/bin/tee /dev/stderr 2>/tmp/te >/dev/null; cat /tmp/te"
               )[1] == "hi\n"


def test_a_function_whose_body_is_a_subshell(root_shell: Shell) -> None:
    """`f() ( LIST )` was "'{' expected": each call runs LIST in a subshell."""
    sh = root_shell
    assert run(sh, "f() ( cd /tmp; x=2; echo $x; exit 3 ); x=1; f; echo $? $x; pwd")[1] \
        == "2\n3 1\n/home/root\n"


def test_the_shells_descriptors_are_its_own_thread_s_and_bounded(root_shell: Shell) -> None:
    """A review: `{ …; } | { exec 4<&-; }` closed the shell's 4 from a stage's thread
    while its number stayed in the table, and the kernel gave that number to another
    session's file (a normal user read and wrote root's); background blocks each held
    32 more; `printf` of a 512 KiB `%(%(…` format held the kernel 9.6 s; `read -t`
    past 2^31 ms and `>&²` were internal errors."""
    import os

    sh = root_shell
    status, _, err = run(sh, "exec 4</dev/null; { sleep 0.1; } | { exec 4<&-; }; echo $?")
    assert "not changed from a pipeline's stage or a background job" in err
    assert 4 in sh.fds and os.path.exists(f"/proc/self/fd/{sh.fds[4]}")
    assert run(sh, "echo x > /tmp/d4; exec 4</tmp/d4; read -u 4 l; echo $l")[1] == "x\n"
    sh.close_fds()
    # one budget for the shell and its background blocks' copies
    many = "; ".join(f"exec {n}>/dev/null" for n in range(3, 23))
    run(sh, many)
    _, _, err = run(sh, "{ " + "; ".join(f"exec {n}>/dev/null" for n in range(23, 40))
                    + "; } & wait")
    assert "more than 32 descriptors of the shell's own" in err
    sh.close_fds()
    assert sh._fd_slots._value == 32  # (every slot given back)
    started = time.monotonic()
    status, _, err = run(sh, "f='%('; for i in $(seq 18); do f=$f$f; done; printf \"$f\"")
    assert status == 1 and "a time format is %(FORMAT)T" in err
    assert time.monotonic() - started < 3
    assert run(sh, "echo now | { read -t 3000000 x; echo $? $x; }")[1] == "0 now\n"
    assert run(sh, "exec 3>&²")[2].startswith("exo: ²: ambiguous redirect")
    assert run(sh, "read -u ² x")[2] == "read: -u ²: not a descriptor number\n"
    # `exec` alone (or piped) with the shell's own descriptors held: nothing to refuse
    assert run(sh, "exec 3>/dev/null; exec; echo rc=$?; exec | cat; echo rc=$?; "
                   "exec 3>&-")[1:] == ("rc=0\nrc=0\n", "")


def test_a_copy_of_the_shell_adds_little_to_its_variables(root_shell: Shell) -> None:
    """A background block's copy may add 4 MiB to the variables it was given (16 of them
    held 519 MiB of the kernel, a review)."""
    sh = root_shell
    _, out, err = run(sh, 'x=$(printf "%1000000s" a); { for i in $(seq 8); do '
                          'eval "v$i=\\$x"; done; echo ${#v4} ${#v5}; } & wait')
    assert out == "1000000 0\n" and "would hold more than" in err
    assert run(sh, 'y=$x$x$x; z=$y; echo ${#z}')[1] == "3000000\n"  # (the shell's own: 32 MiB)


def test_background_jobs_are_bounded_across_the_shells_copies(root_shell: Shell) -> None:
    """A background block is run by a copy of the shell with a job table of its own: 64
    jobs each, nested, made 64^depth threads in the kernel. 64 in all now."""
    sh = root_shell
    _, _, err = run(sh, "for i in $(seq 40); do sleep 100 & done; "
                        "{ for i in $(seq 40); do sleep 100 & done; } & wait $!")
    assert "too many jobs (64)" in err
    assert len([j for j in sh._live_jobs if not j.done.is_set()]) <= 64
    for job in list(sh._live_jobs):  # (their ends asked at once, then waited for)
        job.cancel.set()
    assert all(job.done.wait(5) for job in list(sh._live_jobs))


def test_redirection_sinks_are_bounded_across_the_shells_copies(root_shell: Shell) -> None:
    """Each redirection into a file is a pipe and a thread in the kernel; a background
    block's copy had 64 of its own. 64 in all, for the shell and its copies."""
    sh = root_shell
    _, _, err = run(sh, "for i in $(seq 30); do sleep 100 > /tmp/sa$i 2> /tmp/sb$i & done; "
                        "{ for i in $(seq 30); do sleep 100 > /tmp/sc$i 2> /tmp/sd$i & "
                        "done; } & wait $!")
    assert "too many redirections into files open in this session (64)" in err
    assert sh._sink_total[0] <= 64
    for job in list(sh._live_jobs):
        job.cancel.set()
    assert all(job.done.wait(5) for job in list(sh._live_jobs))
    deadline = time.monotonic() + 5
    while sh._sink_total[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sh._sink_total[0] == 0  # (every slot given back)


def test_a_negated_block_pipeline_negates_the_whole_pipeline(root_shell: Shell) -> None:
    """`! A | B` with A a block fed into B: the `!` is the pipeline's, as in sh."""
    assert run(root_shell, "! for i in 1; do false; done | while read x; do :; done; "
                           "echo $?")[1] == "1\n"


def test_ulimit(root_shell: Shell) -> None:
    """`ulimit` was "command not found": it shows the limits the shell's programs start
    with (the kernel's own until changed), bash's table for -a, and changes reach every
    program it starts (exo-stage2 sets them before exec); a hard limit only goes down,
    a subshell's changes stay its own."""
    import resource

    sh = root_shell
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert run(sh, "ulimit -n; ulimit -Hn")[1] == f"{soft}\n{hard}\n"
    table = run(sh, "ulimit -a")[1].splitlines()
    assert len(table) == 17 and f"open files                          (-n) {soft}" in table
    assert "core file size              (blocks, -c) " in table[1]
    # a program gets them: soft and hard, then soft alone
    assert run(sh, "ulimit -n 100; /bin/sh -c 'ulimit -Sn; ulimit -Hn'")[1] == "100\n100\n"
    assert run(sh, "ulimit -Sn 50; /usr/bin/cat /proc/self/limits")[1].count(
        "Max open files            50                   100") == 1
    status, _, err = run(sh, "ulimit -n 200")  # past the hard limit it went down to
    assert status == 1 and "open files: cannot modify limit: Operation not permitted" in err
    status, _, err = run(sh, "ulimit -Sn 101")
    assert status == 1 and "cannot modify limit: Invalid argument" in err
    assert run(sh, "(ulimit -Sn 10; ulimit -n); ulimit -n")[1] == "10\n50\n"
    status, _, err = run(sh, "ulimit -Hn 40")  # below the soft limit: refused, as bash
    assert status == 1 and "Invalid argument" in err
    assert run(sh, "run -- /bin/sh -c 'ulimit -n'")[1] == "50\n"  # (`run`'s too)
    # the file size limit is the program's own: past it, SIGXFSZ (153), as under bash
    assert run(sh, "cd /tmp; ulimit -f 1; /usr/bin/head -c 5000 /dev/zero | "
                   "/usr/bin/tee big.out >/dev/null; echo ${PIPESTATUS[1]}; "
                   "/usr/bin/stat -c %s big.out")[1] == "153\n1024\n"
    # a redirection's file too (the shell writes it, through its sink), and a builtin's
    # (a program that wrote all it had into the pipe may exit 0 before the sink stops)
    status, out, err = run(sh, "/usr/bin/head -c 5000 /dev/zero > r.out; stat -c %s r.out;"
                               " yes > y.out; echo $?; stat -c %s y.out; echo fits > z.out;"
                               " cat z.out")
    assert out == "1024\n141\n1024\nfits\n"
    assert err.count("file size limit (ulimit -f) reached") == 2
    for line, said in (("ulimit -n abc", "abc: invalid number"),
                       ("ulimit -p 4", "pipe size: cannot modify limit"),
                       ("ulimit -k", "-k: invalid option")):
        status, _, err = run(sh, line)
        assert status in (1, 2) and said in err, (line, err)
    assert run(sh, "ulimit -c 0 -s 4096; ulimit -c -s")[1] == (
        "core file size              (blocks, -c) 0\n"
        "stack size                  (kbytes, -s) 4096\n")


def test_a_program_a_signal_ended_is_said(root_shell: Shell) -> None:
    """A crash was a bare `$?` of 139: as sh, the shell says what ended the foreground
    job's last program (its spare's init reports the raw wait status, so an `exit 139`
    is no crash), never SIGINT or SIGPIPE."""
    sh = root_shell
    assert run(sh, "/bin/sh -c 'kill -SEGV $$'; echo $?")[1:] == ("139\n",
                                                                  "Segmentation fault\n")
    assert run(sh, "/bin/sh -c 'exit 139'; echo $?")[1:] == ("139\n", "")
    assert run(sh, "/bin/sh -c 'kill -KILL $$' | /bin/cat")[2] == ""  # (not the last)
    assert run(sh, "/bin/cat /dev/null | /bin/sh -c 'kill -TERM $$'")[2] == "Terminated\n"
    assert run(sh, "/bin/sh -c 'kill -PIPE $$'; /bin/sh -c 'kill -INT $$'")[2] == ""


def test_the_kernel_refuses_rlimits_above_its_own() -> None:
    """`rlimits` come from a user's line: the spec keeps only settable resources, each
    once, soft <= hard, and no hard limit above the kernel's own (exo-stage2 runs them
    after dropping to the session's uid too, so it could only lower one)."""
    import resource

    from exo.sandbox import SandboxError, SandboxSpec

    nofile = resource.RLIMIT_NOFILE
    hard = resource.getrlimit(nofile)[1]
    assert SandboxSpec(rlimits=((nofile, 10, 20),)).rlimits == ((nofile, 10, 20),)
    bad: list[object] = [((nofile, 20, 10),), ((nofile, 1, 2), (nofile, 1, 2)), ((99, 1, 1),),
                         ((nofile, -2, 1),), ((nofile, "1", 1),), ((nofile, 1),), "x",
                         ((nofile, 1 << 64, 1 << 64),)]
    if hard != resource.RLIM_INFINITY:
        bad += [((nofile, 1, hard + 1),), ((nofile, 1, -1),)]
    for rlimits in bad:
        with pytest.raises(SandboxError, match="rlimit"):
            SandboxSpec(rlimits=rlimits)  # type: ignore[arg-type]


def test_a_delimiter_at_an_expansions_end_cuts_the_word(root_shell: Shell) -> None:
    """`[$x]` of " a b " was `[a b]` (the blanks at the value's ends were dropped, and
    the text around joined to its first and last fields); sh makes `[ a b ]`. A
    backquoted expansion alone that is empty is no word, as `$(…)`."""
    sh = root_shell
    for line, out in (("x=' a b '; printf '<%s>' [$x]", "<[><a><b><]>"),
                      ("x=' a '; printf '<%s>' p$x $x'q' \"\"$x", "<p><a><a><q><><a>"),
                      ("x=' '; printf '<%s>' a${x}b ${x}", "<a><b>"),
                      ("IFS=:; x='a:'; printf '<%s>' ${x}b; x=':a'; printf '<%s>' p$x",
                       "<a><b><p><a>"),
                      ("unset IFS; printf '<%s>' `echo ' a '`x `true`", "<a><x>"),
                      ("a=' 1 2 '; c=(p${a}q); echo ${#c[@]}", "4\n")):
        assert run(sh, line)[1] == out, line


def test_assign_default_whatever_the_word(root_shell: Shell) -> None:
    """`${x:=set}` answered nothing and set nothing: the word "set" made the assignment
    read as the kernel's is-it-set query."""
    assert run(root_shell, "echo ${u:=set} ${v:=elements}; echo $u $v")[1] == \
        "set elements\nset elements\n"


def test_an_array_among_other_assignments(root_shell: Shell) -> None:
    """`IFS=$'\\n' sorted=($(… | sort))` (the idiom for an array of lines) assigned
    `(a\\nb\\nc)` as text; `b=(x y) A=1` was a syntax error: assignments alone are made
    one after the other, as in sh."""
    sh = root_shell
    assert run(sh, "arr=(c b a); IFS=$'\\n' sorted=($(printf '%s\\n' \"${arr[@]}\" | sort));"
                   " echo \"${sorted[@]}\" ${#sorted[@]}")[1] == "a b c 3\n"
    assert run(sh, "unset IFS; b=(x y) A=1 c=(\"p q\" r); echo ${b[1]} $A ${c[0]}")[1] == \
        "y 1 p q\n"


def test_set_e_ends_a_script(root_shell: Shell) -> None:
    """A script under `set -e` went on past a failed command (and ended 0): only the
    line ended. As sh's, the script ends there with its status, after its EXIT trap;
    an interactive line ends alone."""
    assert script_output(root_shell, ["set -e\n", "trap 'echo cleanup' EXIT\n",
                                      "echo a; false; echo b\n", "echo c\n"]) == \
        (1, b"a\ncleanup\n")
    sh = Shell(root_shell.kernel, root_shell.whole_tree)
    assert run(sh, "set -e; false; echo no")[1] == "" and run(sh, "echo goes on")[1] == \
        "goes on\n"
    # ${x?} and set -u's unbound variable end a script too (a read-only name does not)
    for lines, said, ends in ((["echo ${nope?boom}\n", "echo after\n"], b"", 1),
                              (["set -u\n", "echo $nope\n", "echo after\n"], b"", 1),
                              (["readonly r=1\n", "r=2\n", "echo after\n"], b"after\n", 0)):
        script = Shell(root_shell.kernel, root_shell.whole_tree)
        assert script_output(script, lines) == (ends, said), lines


def test_names_by_prefix(root_shell: Shell) -> None:
    """`${!PREFIX*}` was a bad substitution: the names of the set variables that start
    with PREFIX, sorted; `"${!PREFIX@}"` a word each."""
    sh = root_shell
    assert run(sh, "p_b=1 p_a=2; echo ${!p_*}; for v in \"${!p_@}\"; do echo \"[$v]\"; done;"
                   " echo \"<${!nothing_*}>\"")[1] == "p_a p_b\n[p_a]\n[p_b]\n<>\n"


def test_every_word_through_an_operator(root_shell: Shell) -> None:
    """Inside double quotes, only a whole "$@" or "${a[@]}" made a word per element:
    "${a[@]^^}" and "pre${a[@]}post" joined the elements into one word, "${@%d}"
    trimmed the joined string, "${a[@]/b/X}" and "${a[@]#a}" were bad substitutions.
    Each element goes through the operator, the text around joins the first and the
    last, as in bash."""
    sh = root_shell
    for line, out in (
            ("a=(ab cd); printf '<%s>' \"${a[@]^^}\" \"${a[@]/b/X}\" \"${a[@]#a}\"",
             "<AB><CD><aX><cd><b><cd>"),
            ("set -- ab cd; printf '<%s>' \"${@^}\" \"${@%d}\" \"x$@y\"",
             "<Ab><Cd><ab><c><xab><cdy>"),
            ("a=(x y); printf '<%s>' \"${a[@]:-none}\" \"pre${a[@]}post\" \"${a[@]:+alt}\"",
             "<x><y><prex><ypost><alt>"),
            ("a=(); printf '<%s>' \"${a[@]}\" \"${a[@]:-none}\" \"k${a[@]}\"", "<none><k>"),
            ("a=(one two); b=(three); printf '<%s>' \"${a[@]}${b[@]}\"", "<one><twothree>"),
            ("a=(ax bx); y=Y; printf '<%s>' \"${a[@]/x/$y}\" \"${a[*]}\"",
             "<aY><bY><ax bx>"),
            # an assignment's value is one string: the words joined by spaces
            ("a=(ab cd); x=\"${a[@]/b/X}\"; y=\"${a[@]^^}\"; set -- p q; z=\"$@\"; "
             "w=\"x$@y\"; printf '<%s>' \"$x\" \"$y\" \"$z\" \"$w\"",
             "<aX cd><AB CD><p q><xp qy>"),
            ("a=(ab cd); case 'AB CD' in \"${a[@]^^}\") echo same;; esac", "same\n"),
            # unquoted, and the * forms: each word through it, then joined (IFS's first)
            ("set -- ab cd; IFS=-; printf '<%s>' \"${*^}\" \"${*/b/X}\"; unset IFS; "
             "printf '<%s>' ${@%d}", "<Ab-Cd><aX-cd><ab><c>"),
            ("a=(ax bx); printf '<%s>' ${a[*]/x/z} ${a[@]/x/d e}", "<az><bz><ad><e><bd><e>"),
            # unquoted $@: each parameter split on its own (they were joined by a space
            # first, so an IFS without one made `a b` and `c` one word)
            ("set -- 'a b' c; IFS=-; printf '<%s>' $@ x$@y; IFS=; printf '<%s>' $@; "
             "unset IFS", "<a b><c><xa b><cy><a b><c>"),
            ("set -- a '' b; printf '<%s>' $@", "<a><b>")):
        assert run(sh, line)[1] == out, line


def test_a_functions_definition_is_shown(root_shell: Shell) -> None:
    """`declare -f` was an invalid option and `type f` said only "f is a function": both
    print the definition (from the parsed body, ``exo.shell.printer``), which reads back
    as the same function."""
    sh = root_shell
    body = ("f() { echo \"in $1\"; x=1 && echo y || echo z; if [ -n \"$1\" ]; then echo one;"
            " else echo none; fi; for i in a b; do echo $i; done; case $1 in a|b) echo ab;;"
            " *) echo other;; esac; { echo grp; } > /dev/null; for ((i=0;i<2;i++)); do "
            "echo $i; done; }")
    run(sh, body)
    shown = run(sh, "declare -f f")[1]
    assert shown.startswith("f () \n{ \n    echo \"in $1\";\n    x=1 && echo y || echo z;\n")
    assert run(sh, "type f")[1] == "f is a function\n" + shown
    expected = run(sh, "f a")[1]
    assert expected == "in a\ny\none\na\nb\nab\n0\n1\n"
    assert run(sh, "declare -f f > /tmp/fdef; unset -f f; source /tmp/fdef; f a")[1] == \
        expected
    assert run(sh, "unset -f f; eval \"$(cat /tmp/fdef)\"; f a")[1] == expected
    run(sh, "h() ( echo sub )")
    assert run(sh, "declare -f h; declare -f nope")[:2] == (1, "h () \n(\n    echo sub;\n)\n")


def test_integer_variables(root_shell: Shell) -> None:
    """`declare -i` was refused: each value assigned to the variable (`=`, `+=`, `read`,
    `for`, `local -i`) is evaluated as arithmetic; a local's mark ends with its call
    (the outer value is not evaluated when it comes back); a subshell's stays its own."""
    sh = root_shell
    for line, out in (("x=5; declare -i n; n=x+3; echo $n; n+=2; echo $n", "8\n10\n"),
                      ("declare -i i=010 j=0x10; echo $i $j", "8 16\n"),
                      ("declare -i r; read r <<< '2*21'; for r in 1+1; do echo $r; done; "
                       "echo $r", "2\n2\n"),
                      ("f() { local -i c=2+2; echo $c; }; c=hello; f; echo $c",
                       "4\nhello\n"),
                      ("declare -i s=3; (s=9*2; echo $s); s=s+1; echo $s", "18\n4\n"),
                      ("declare -i p=6; declare -p p", "declare -i p=6\n"),
                      ("declare -i u; declare -p u; u+=2; u+='3*2'; echo $u",
                       "declare -i u\n8\n")):
        assert run(sh, line)[1] == out, line
    status, _, err = run(sh, "declare -i q; q='1+'")  # refused, q left as it was
    assert status != 0 and "arithmetic" in err and run(sh, "echo ${q:-unset}")[1] == "unset\n"


def test_review_of_this_stops_shell_code(root_shell: Shell,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What a hostile review of the new code found (each was reproduced first)."""
    import contextlib
    import threading
    import time

    sh = root_shell
    # NUL bytes reached the shell's own markers: `[[ -v ]]` assigned IFS
    assert run(sh, "printf -v v 'IFS\\0assign\\0x'; [[ -v $v ]]; y=axbxc; echo $y ${#v}")[1] \
        == "axbxc 3\n"
    # `>>` went past `ulimit -f` (an append's held tail was written whole)
    assert run(sh, "(ulimit -f 1; x=$(printf 'a%.0s' {1..6000}); printf '%s' $x >> /tmp/ap);"
                   " stat -c %s /tmp/ap")[1] == "1024\n"
    # a blank then another IFS character: the empty first field joins the text before
    assert run(sh, "IFS=': '; x=' :a: '; printf '[%s]' [$x]; unset IFS")[1] == "[[][a][]]"
    assert run(sh, "a=('' ''); printf '[%s]' \"${a[@]:-none}\"")[1] == "[][]"
    assert run(sh, "a=(x); echo \"${a[@]@A}\"")[0] == 2  # (it named the stand-in)
    # an empty anchored pattern is the start or the end (it changed nothing)
    assert run(sh, "x=abc; a=(p q); echo ${x/#/-} ${x/%/+} \"${a[@]/#/-}\"")[1] == \
        "-abc abc+ -p -q\n"
    # the full launcher cannot tell `exit 139` from a crash: it says nothing
    monkeypatch.setenv("EXO_ZYGOTE", "0")
    assert run(sh, "/bin/sh -c 'exit 139'; echo $?")[1:] == ("139\n", "")
    monkeypatch.delenv("EXO_ZYGOTE")
    # each element through an operator is a step a killed job stops at
    busy = Shell(sh.kernel, sh.whole_tree)
    busy.cancel_on = threading.Event()
    run(busy, "x=$(printf 'a%.0s' {1..4000}); x=b${x}c; a=(); "
              "for ((i=0;i<300;i++)); do a+=(\"$x\"); done")

    def spin() -> None:
        with contextlib.suppress(KeyboardInterrupt):
            run(busy, "for w in \"${a[@]//*b*a*b/}\"; do :; done")

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    time.sleep(0.5)
    busy.cancel_on.set()
    worker.join(15)
    assert not worker.is_alive()


def test_a_functions_definition_reads_back_with_its_heredocs_and_functions(
        root_shell: Shell) -> None:
    sh = root_shell
    run(sh, "x=X; f() { cat <<EOF\nhello $x \"q\"\nEOF\ncat <<'E2'\nraw $x\nE2\n"
            "g() { echo inner; }; g; cat <<E4\nE4\n}")
    before = run(sh, "f")[1]
    assert before == "hello X \"q\"\nraw $x\ninner\n"
    assert run(sh, "declare -f f > /tmp/fd; unset -f f g; source /tmp/fd; f")[1] == before
