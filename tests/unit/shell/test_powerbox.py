"""The powerbox: the host's everyday programs, sandboxed, holding what their command
line names (inputs read, outputs written) within what the session holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.shell._support import run

from exo.kernel.kernel import Kernel
from exo.shell import Shell
from exo.shell.powerbox import Policy, parse_policies


def test_roles_from_the_policy() -> None:
    sort = parse_policies('[programs.sort]\ninputs = "operands"\n'
                          'output_options = ["-o", "--output"]\n', "t")["sort"]
    assert sort.roles(["-r", "a", "b", "-o", "out", "--output=o2", "--", "-c"]) == [
        ("out", "write"), ("o2", "write"), ("a", "read"), ("b", "read"), ("-c", "read")]
    assert Policy().roles(["x", "y"]) == []  # unknown programs: nothing beyond the cwd


def test_sort_uniq_and_find_with_nothing_more_granted(alice: Shell) -> None:
    run(alice, "printf 'b\\na\\nb\\nc\\n' > notes.txt")
    status, out, err = run(alice, "sort notes.txt | uniq -c > counts.txt; cat counts.txt")
    assert status == 0, err
    assert out.split() == ["1", "a", "2", "b", "1", "c"]
    run(alice, "mkdir -p src/pkg; touch src/a.py src/pkg/b.py src/c.txt")
    status, out, err = run(alice, "find . -name '*.py'")
    assert status == 0, err
    assert sorted(out.split()) == ["./src/a.py", "./src/pkg/b.py"]
    assert [r["pid"] for r in alice.kernel.ps()] == [1]  # every stage reaped


def test_an_output_argument_is_granted_for_writing(alice: Shell) -> None:
    run(alice, "printf '3\\n1\\n2\\n' > n.txt")
    status, _, err = run(alice, "sort -o sorted.txt n.txt")
    assert status == 0, err
    assert run(alice, "cat sorted.txt")[1] == "1\n2\n3\n"


def test_unknown_programs_get_the_working_directory_read_only(alice: Shell) -> None:
    run(alice, "echo keep > kept.txt")
    status, out, _ = run(alice, "sh -c 'cat kept.txt; echo x > new.txt'")
    assert out == "keep\n"
    assert status != 0 and run(alice, "test -e new.txt")[0] != 0


def test_a_user_cannot_hand_a_program_what_they_do_not_hold(alice: Shell,
                                                            kernel: Kernel) -> None:
    (kernel.root / "home" / "root").mkdir(parents=True, exist_ok=True)
    (kernel.root / "home" / "root" / "secret").write_text("s3cret\n")
    for line in ("sort /home/root/secret", "sort -o /home/root/out x", "uniq /etc/passwd"):
        status, out, err = run(alice, line)
        assert status == 126, (line, err)
        assert "permission denied" in err and "s3cret" not in out
    assert not (kernel.root / "home" / "root" / "out").exists()


def test_the_administrator_policy_overrides_and_bad_policies_are_named(
        root_shell: Shell, kernel: Kernel) -> None:
    import pytest

    from exo.shell.powerbox import Powerbox, PowerboxError, _builtin_policies

    assert {"sort", "uniq", "find", "less", "nano", "sed"} <= set(_builtin_policies())
    (kernel.root / "etc" / "exo").mkdir(parents=True, exist_ok=True)
    (kernel.root / "etc" / "exo" / "powerbox.toml").write_text(
        '[programs.sort]\ninputs = "none"\n')
    assert Powerbox.for_shell(root_shell).policies["sort"].roles(["a"]) == []
    with pytest.raises(PowerboxError, match=r"programs.sort.inputs"):
        parse_policies('[programs.sort]\ninputs = "everything"\n', "p.toml")
    with pytest.raises(PowerboxError, match=r"p\.toml"):
        parse_policies("[programs\n", "p.toml")
    (kernel.root / "etc" / "exo" / "powerbox.toml").write_text("[programs\n")
    status, _, err = run(root_shell, "sort x")
    assert status == 126 and "/etc/exo/powerbox.toml" in err  # said, not a traceback


def test_type_says_what_runs_and_completion_offers_the_powerbox_programs(
        root_shell: Shell) -> None:
    from exo.shell.completion import ShellCompleter

    out = run(root_shell, "type cd sort expand")[1].splitlines()
    assert out == ["cd is a shell builtin",
                   "sort is /usr/bin/sort (through the powerbox: the files its arguments "
                   "name)",
                   "expand is /usr/bin/expand (through the powerbox: its directory "
                   "read-only)"]
    assert run(root_shell, "type no-such-program")[0] == 1
    assert {"sort", "uniq", "find", "cd"} <= ShellCompleter(root_shell).commands()


def test_host_programs_get_no_syscall_channel_python_gets_one(alice: Shell) -> None:
    """A host program does not speak the Exo ABI: it gets no bootstrap channel (nor the
    kernel thread that would serve one). Python runs exo_std apps: its policy says
    ``syscalls = true``, and ``python3 app.py`` makes Exo syscalls."""
    import pytest

    from exo.shell.powerbox import PowerboxError

    status, out, err = run(alice, "/usr/bin/env")
    assert status == 0, err
    assert "EXO_PID=" in out and "EXO_BOOTSTRAP" not in out
    run(alice, "printf 'from exo_std import process\\nprint(process.getpid() > 1)\\n' > app.py")
    status, out, err = run(alice, "python3 app.py")
    assert (status, out) == (0, "True\n"), err
    with pytest.raises(PowerboxError, match=r"programs\.cat\.syscalls"):
        parse_policies('[programs.cat]\nsyscalls = "yes"\n', "p.toml")


def test_a_script_operand_is_not_a_file_and_sed_i_holds_the_directory(
        root_shell: Shell) -> None:
    """``sed -i s/one/ONE/ notes.txt`` took the script for a file to create and failed."""
    run(root_shell, "echo one two > /tmp/n.txt; cd /tmp")
    _, out, err = run(root_shell, "sed -i s/one/ONE/ n.txt; sed -i -e s/two/TWO/ n.txt;"
                                  " cat n.txt")
    assert out == "ONE TWO\n" and "No such file" not in err, err
    # and it says nothing else: it warned "preserving permissions" on every edit (its
    # new file's ACL: Linux refused the non-owner before the file server could answer)
    assert run(root_shell, "sed -i s/ONE/one/ n.txt") == (0, "", "")
    assert not (root_shell.vfs.root / "tmp" / "s").exists()
    assert run(root_shell, "echo a b | awk '{print $2}'")[1] == "b\n"  # via /etc/alternatives
    assert run(root_shell, "grep -e one -e ONE n.txt")[1] == "one TWO\n"


def test_a_refused_command_leaves_no_output_file_behind(alice: Shell) -> None:
    (alice.vfs.root / "home" / "root").mkdir(parents=True, exist_ok=True)
    (alice.vfs.root / "home" / "root" / "secret").write_text("root's\n")
    status, _, err = run(alice, "sort /home/root/secret -o /tmp/stolen")
    assert status == 126 and "permission denied" in err
    assert not (alice.vfs.root / "tmp" / "stolen").exists()
    status, _, err = run(alice, "echo b > /tmp/in; sort /tmp/in -o /tmp/sorted; cat /tmp/sorted")
    assert (status, err) == (0, "")


def test_the_hosts_rm_mkdir_mv_and_cp_r_hold_the_directory_they_change(
        alice: Shell, kernel: Kernel) -> None:
    """They make, remove or rename names: what they write is the directory the name is
    in. They held only the working directory read-only ("Read-only file system"), and
    `cp -r a b` found `b` made ahead as an empty file ("cannot overwrite non-directory")."""
    assert Policy({"entries": "operands"}).roles(["-rf", "a", "b/c"]) == [
        ("a", "entry"), ("b/c", "entry")]
    cp = Policy({"outputs": "last", "inputs": "all-but-last", "entry_flags": ["-r"]})
    assert cp.roles(["-vr", "a", "b"]) == [("a", "read"), ("b", "entry")]
    assert cp.roles(["a", "b"]) == [("a", "read"), ("b", "write")]
    run(alice, "mkdir -p src/sub; echo x > src/sub/f")
    for line in ("/usr/bin/cp -r src copy", "/usr/bin/mkdir -p made/a/b",
                 "/usr/bin/mv copy moved", "/usr/bin/rm -r src", "/usr/bin/rmdir made/a/b"):
        status, _, err = run(alice, line)
        assert (status, err) == (0, ""), line
    assert run(alice, "cat moved/sub/f; ls; ls made/a")[1] == "x\nmade\nmoved\n"
    # Only within what the session holds: not another home, not the directory of homes.
    _refused_in_roots_home(alice, kernel, (
        "/usr/bin/rm /home/root/keep", "/usr/bin/mkdir /home/root/x",
        "/usr/bin/rm -r /home/alice", "/usr/bin/mv moved /home/root/"))


def _refused_in_roots_home(alice: Shell, kernel: Kernel, lines: tuple[str, ...]) -> None:
    """Each of ``lines`` is refused (permission denied, before it runs) and root's home
    is as it was: its one file ``keep``, unchanged."""
    home = kernel.root / "home" / "root"
    home.mkdir(parents=True, exist_ok=True)
    (home / "keep").write_text("k\n")
    for line in lines:
        status, _, err = run(alice, line)
        assert status == 126 and "permission denied" in err, (line, err)
    assert (home / "keep").read_text() == "k\n"
    assert sorted(p.name for p in home.iterdir()) == ["keep"]


def test_an_options_value_is_not_a_file_and_chmod_ln_touch_truncate_gzip_work(
        alice: Shell, kernel: Kernel) -> None:
    """`touch -d 2020-01-01 f` made an empty file named 2020-01-01 (the date was taken
    for an output), `uniq -f 1 a b` granted `a` for writing; chmod, ln, truncate, gzip
    and split held the working directory read-only ("Read-only file system")."""
    uniq = parse_policies('[programs.uniq]\ninputs = "first"\noutputs = "second"\n'
                          'value_options = ["-f"]\n', "t")["uniq"]
    assert uniq.roles(["-f", "1", "a", "b"]) == [("a", "read"), ("b", "write")]
    assert uniq.roles(["-f1", "a"]) == [("a", "read")]
    run(alice, "printf 'a\\nb\\n' > f.txt")
    for line in ("/usr/bin/touch -d 2020-01-01 f.txt", "/usr/bin/chmod 700 f.txt",
                 "/usr/bin/ln -s f.txt link", "/usr/bin/split -l 1 f.txt part_",
                 "/usr/bin/gzip part_aa", "/usr/bin/truncate -s 1 part_ab"):
        status, _, err = run(alice, line)
        assert (status, err) == (0, ""), line
    assert run(alice, "ls") == (0, "f.txt\nlink\npart_aa.gz\npart_ab\n", "")
    out = run(alice, "ls -l f.txt link part_ab")[1].splitlines()
    assert out[0].startswith("-rwx------") and " Jan  1  2020 f.txt" in out[0]
    assert out[1].startswith("lrwxrwxrwx") and out[1].endswith("link -> f.txt")
    assert " 1 " in out[2]  # truncated to one byte
    _refused_in_roots_home(alice, kernel, (
        "/usr/bin/chmod 777 /home/root/keep", "/usr/bin/gzip /home/root/keep",
        "/usr/bin/ln -s x /home/root/link", "/usr/bin/truncate -s 0 /home/root/keep"))


def test_an_entrys_directory_is_found_from_the_root_down(alice: Shell,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Walked up from a typed path of missing components, the lookup cost grew with their
    square (8,000 took 0.4 s of the kernel); from the root down it stops at the first
    missing one."""
    from exo.shell.powerbox import Powerbox

    run(alice, "mkdir -p a/b")
    looked: list[str] = []
    is_dir = alice.vfs.is_dir
    monkeypatch.setattr(alice.vfs, "is_dir", lambda p: looked.append(p) or is_dir(p))
    grants = Powerbox.for_shell(alice).grants("mkdir", ["-p", "a/b/" + "x/" * 10_000])
    assert [str(g.name) for g in grants][-1] == "storage://home/alice/a/b"
    assert len(looked) == 5  # home, alice, a, b, and the first x


def test_tar_creates_lists_and_extracts_and_mktemp_makes_its_file(alice: Shell,
                                                                  kernel: Kernel) -> None:
    """tar's archive is an output when it creates and an input when it extracts, into the
    working directory or -C DIR; it had no policy (its archive could not be written).
    mktemp -p DIR was refused the same way."""
    tar = _policy("tar")
    assert tar.roles(["czf", "a.tgz", "src"]) == [("a.tgz", "write"), ("src", "read")]
    assert tar.roles(["-x", "-f", "a.tgz"]) == [("a.tgz", "read"), (".", "dir")]
    assert tar.roles(["-xzf", "a.tgz", "-C", "out"]) == [("a.tgz", "read"), ("out", "dir")]
    assert tar.roles(["--list", "--file=a.tar"]) == [("a.tar", "read")]
    assert tar.roles(["-C", "src", "-cf", "a.tar", "sub"]) == [
        ("src", "read"), ("a.tar", "write"), ("src/sub", "read")]
    sort = _policy("sort")
    assert sort.roles(["-uo", "out", "-k2", "in"]) == [("out", "write"), ("in", "read")]
    assert _policy("chmod").roles(["-R", "-w", "f"]) == [("f", "edit")]  # -w: a mode
    assert _policy("grep").roles(["-e", "notes.txt", "-r", "src"]) == [
        ("src", "read")]  # -e's pattern is not a file, even when a file has its name
    run(alice, "mkdir -p src/sub out; echo one > src/sub/f; echo two > src/g")
    for line in ("/usr/bin/tar czf a.tgz src", "/usr/bin/tar -xzf a.tgz -C out",
                 "/usr/bin/mkdir x", "cd x", "/usr/bin/tar xf ../a.tgz", "cd .."):
        status, _, err = run(alice, line)
        assert (status, err) == (0, ""), line
    assert run(alice, "cat out/src/sub/f x/src/g") == (0, "one\ntwo\n", "")
    assert sorted(run(alice, "/usr/bin/tar tzf a.tgz")[1].split()) == [
        "src/", "src/g", "src/sub/", "src/sub/f"]
    status, out, err = run(alice, "/usr/bin/mktemp -p out; /usr/bin/mktemp -d "
                                  "made.XXXX; /usr/bin/mktemp")
    assert status == 0, err
    made = out.split()  # in -p DIR, in the working directory, in the session's /tmp
    assert made[0].startswith("out/tmp.") and made[1].startswith("made.")
    assert made[2].startswith("/tmp/tmp.")
    assert run(alice, f"test -f {made[0]} && test -d {made[1]} && test -f {made[2]}")[0] == 0
    # Within the session's rights: root's home is neither read, written nor extracted to.
    _refused_in_roots_home(alice, kernel, (
        "/usr/bin/tar cf /home/root/a.tar src", "/usr/bin/tar cf a.tar /home/root",
        "/usr/bin/tar xzf a.tgz -C /home/root", "/usr/bin/mktemp -p /home/root"))


def _policy(name: str) -> Policy:
    from exo.shell.powerbox import _builtin_policies

    return _builtin_policies()[name]


def test_the_administrator_policy_binds_every_user(alice: Shell, kernel: Kernel) -> None:
    """It was read through the session's view: a user holds no /etc/exo, so the built-in
    policy applied to everyone but root (a hostile review: `sort -o o n` wrote `o`)."""
    run(alice, "echo 1 > n")
    (kernel.root / "etc" / "exo").mkdir(parents=True, exist_ok=True)
    policy = kernel.root / "etc" / "exo" / "powerbox.toml"
    policy.write_text('[programs.sort]\ninputs = "operands"\n')  # no -o: no output
    status, _, err = run(alice, "/usr/bin/sort -o o n")
    assert status != 0 and run(alice, "test -e o")[0] == 1, err
    policy.write_text("[programs\n")  # a broken one refuses, for users too
    status, _, err = run(alice, "/usr/bin/sort n")
    assert status == 126 and "/etc/exo/powerbox.toml" in err


def test_option_values_target_directories_and_the_standard_streams(alice: Shell) -> None:
    """Found by a hostile review: an option's value the policy did not list shifted the
    operands (`xxd -l 4 notes.txt` granted notes.txt read-write; `cp -t dest a b` granted
    `b` read-write), `-` was made as a file, tar's old-style `xfC a.tar dir` read `C`'s
    value as `f`'s, and `prog < DIR` handed over the host's directory."""
    run(alice, "mkdir dest sub; echo n > notes.txt; echo k > keep.txt; echo l > l.txt")
    assert _policy("xxd").roles(["-l", "4", "notes.txt"]) == [("notes.txt", "read")]
    assert _policy("cp").roles(["-t", "dest", "a", "b"]) == [
        ("dest", "dir"), ("a", "read"), ("b", "read")]
    assert _policy("tar").roles(["xfC", "o.tar", "dest"]) == [
        ("o.tar", "read"), ("dest", "dir")]
    assert _policy("tar").roles(["cfz", "o.tgz", "sub"]) == [("o.tgz", "write"),
                                                             ("sub", "read")]
    for line in ("/usr/bin/cp -t dest notes.txt", "/usr/bin/mv -t dest keep.txt",
                 "/usr/bin/ln -s -t dest /home/alice/l.txt", "/usr/bin/tar cf o.tar sub",
                 "/usr/bin/tar xfC o.tar dest", "/usr/bin/mkdir -m 700 sub/x"):
        status, _, err = run(alice, line)
        assert (status, err) == (0, ""), line
    assert run(alice, "ls dest")[1] == "keep.txt\nl.txt\nnotes.txt\nsub\n"
    assert run(alice, "/usr/bin/tar -cf - notes.txt | /usr/bin/tar -tf -")[1] == "notes.txt\n"
    assert run(alice, "test -e ./-")[0] == 1
    status, _, err = run(alice, "/bin/cat < dest")
    assert status == 1 and "is a directory" in err


def test_what_a_user_holds_nothing_over_is_refused_whether_it_exists_or_not(
        alice: Shell, kernel: Kernel) -> None:
    """A hostile review: `/bin/cat /home/bob/nothing` said "No such file" where an
    existing file was refused, and `test -e`, `[ -f ]`, `cd` and `cp f DIR` answered
    differently too: each told alice what is in bob's home."""
    bob = kernel.root / "home" / "bob"
    (bob / "dir").mkdir(parents=True)
    (bob / "secret").write_text("s\n")
    run(alice, "echo a > a.txt")
    for there, missing in (("/home/bob/secret", "/home/bob/nothing"),
                           ("/home/bob/dir", "/home/bob/nodir")):
        for line in ("/bin/cat {}", "/usr/bin/stat {}", "test -e {}; echo $?",
                     "[ -d {} ]; echo $?", "ls {}", "cd {}", "/bin/cp a.txt {}",
                     "tar -xf a.tar -C {}", "grep x {}"):
            seen = run(alice, line.format(there))
            said = run(alice, line.format(missing))
            assert seen == (said[0], said[1], said[2].replace(missing, there)), line
    assert "permission denied" in run(alice, "/bin/cat /home/bob/nothing")[2]
    assert run(alice, "ls /home/bob/nothing")[2] == \
        "ls: cannot access '/home/bob/nothing': permission denied\n"


def test_into_a_directory_the_files_not_the_directory(alice: Shell, kernel: Kernel) -> None:
    """`cp a b DIR` holds DIR/a and DIR/b, not DIR whole; `cp -r x .` and `mv /tmp/x .`
    were refused (the entry "." meant its parent, /home); an output that is a directory
    is only read (`tee /tmp` held /tmp read-write)."""
    from exo.shell.powerbox import Powerbox

    run(alice, "echo a > a.txt; echo b > b.txt; mkdir d; mkdir -p /tmp/t/x")
    box = Powerbox.for_shell(alice)
    names = sorted((str(g.name), g.rights.format()) for g in box.grants("cp", [
        "a.txt", "b.txt", "d"]))
    assert names == [("storage://home/alice", "READ"),  # (the inputs: through it)
                     ("storage://home/alice/d/a.txt", "READ,WRITE"),
                     ("storage://home/alice/d/b.txt", "READ,WRITE")]
    assert [(str(g.name), g.rights.format()) for g in box.grants("tee", ["/tmp"])] == [
        ("storage://home/alice", "READ"), ("storage://tmp", "READ")]
    status, out, err = run(alice, "/bin/cp a.txt b.txt d && /bin/cp -r /tmp/t . && "
                                  "/bin/mv /tmp/t/x . && ls d t . && ls /tmp/t")
    assert (status, err) == (0, ""), err
    assert out.split() == ["d:", "a.txt", "b.txt", "t:", "x", ".:", "a.txt", "b.txt", "d",
                           "t", "x"]
    status, _, err = run(alice, "/usr/bin/tee /tmp < a.txt")
    assert status == 1 and "Is a directory" in err


def test_a_long_option_abbreviated_is_the_option(alice: Shell) -> None:
    """getopt_long takes an unambiguous prefix: `tar -x --dir sub` is `--directory
    sub`. Taken for a flag, sub was an operand and the working directory was granted
    read-write instead."""
    from exo.shell.powerbox import Powerbox

    run(alice, "echo a > a.txt; mkdir sub; tar -cf a.tar a.txt")
    box = Powerbox.for_shell(alice)
    rights = {str(g.name): g.rights.format()
              for g in box.grants("tar", ["-x", "--dir", "sub", "-f", "a.tar"])}
    assert rights["storage://home/alice/sub"] == "READ,WRITE"
    assert rights["storage://home/alice"] == "READ"
    status, out, err = run(alice, "tar -x --dir sub -f a.tar && ls sub")
    assert (status, out) == (0, "a.txt\n"), err
    assert box.policies["cp"].roles(["--target", "d", "a"]) == [("d", "dir"), ("a", "read")]


def test_an_editor_may_show_what_the_user_only_reads_and_leaves_no_empty_file(
        alice: Shell) -> None:
    """`nano /etc/hostname` was refused (alice may read it, not write it): it is now
    shown, the editor saying it cannot write it. `nano new.txt` made new.txt empty
    for the editor, and it stayed after a quit without saving."""
    from exo.shell.powerbox import Powerbox

    rights = {str(g.name): g.rights.format()
              for g in Powerbox.for_shell(alice).grants("nano", ["/etc/hostname"])}
    assert rights["storage://etc/hostname"] == "READ"
    assert run(alice, "nano /etc/hostname")[0] != 126  # (not a terminal: nano ends)
    run(alice, "nano new.txt < /dev/null")  # it quits: nothing saved
    assert run(alice, "test -e new.txt; echo $?")[1] == "1\n"
    assert run(alice, "truncate -s 3 sized.txt; wc -c < sized.txt")[1] == "3\n"  # kept
    run(alice, "echo keep > old.txt; nano old.txt < /dev/null")
    assert run(alice, "cat old.txt")[1] == "keep\n"  # (what it had: not tidied away)


def test_man_reads_its_pages_and_programs_see_the_systems_host_name(alice: Shell) -> None:
    """`man ls` said "can't open the manpath configuration file": /etc/manpath.config
    (and groff's local macros) are now in every process's /etc. `hostname` said "exo"
    where `$HOSTNAME` and /etc/hostname say "exo-os"."""
    import shutil

    assert run(alice, "hostname; /bin/sh -c 'uname -n'; echo $HOSTNAME")[1] == \
        "exo-os\nexo-os\nexo-os\n"
    if shutil.which("man") is None or not Path("/usr/share/man/man1/ls.1.gz").exists():
        pytest.skip("man-db or ls's page is not installed on this host")
    status, out, err = run(alice, "man -P cat ls | head -3")
    assert (status, err) == (0, "") and out.split()[:1] == ["LS(1)"]


def test_an_output_made_for_a_command_that_failed_goes(alice: Shell) -> None:
    """`cp -p a b c` (no directory c) left an empty c, made ahead for cp; GNU's cp
    makes nothing. An output a command that succeeded left empty stays."""
    run(alice, "echo a > a; : > empty")
    assert run(alice, "/bin/cp -p a missing-dir/; /bin/cp -L missing x3; ls")[1] == \
        "a\nempty\n"
    assert run(alice, "sort empty -o out; ls")[1] == "a\nempty\nout\n"


def test_an_interpreter_that_failed_at_a_terminal_is_told_how_to_grant_more(
        alice: Shell) -> None:
    """`python3 app.py` writing out.txt beside itself failed with "Read-only file
    system" and nothing more: at a terminal the shell now says, once, what grants it."""
    import os

    leader, follower = os.openpty()
    try:
        def said(line: str) -> str:
            """What the line wrote to the terminal: a pty hands the program's output to
            its leader through a work queue, so it is read until it is quiet (reading
            once, at once, missed it now and then)."""
            import select

            alice.run_line(line, 0, follower, follower)
            out = b""
            while select.select([leader], [], [], 0.3)[0]:
                out += os.read(leader, 65536)
            return out.decode()

        line = "python3 -c \"open('out.txt', 'w')\""
        first = said(line)
        assert "Read-only file system" in first
        assert "run --cap storage://home/alice=READ,WRITE -- python3" in first
        assert "run --cap" not in said(line)  # once a session
        assert "run --cap" not in said("python3 -c 'pass'")  # (it did not fail)
    finally:
        os.close(leader)
        os.close(follower)


def test_vim_holds_the_directory_of_the_file_it_edits_or_makes(alice: Shell) -> None:
    """vim writes a swap file and a backup beside the file, and may save by a rename:
    with only the file granted (no policy: the working directory read-only) it said
    "E509: Cannot create backup file" and could not save. A file not there yet is
    vim's to make (nothing is made ahead); sed -i of a missing file still grants
    nothing."""
    from exo.shell.powerbox import Powerbox

    box = Powerbox.for_shell(alice)
    run(alice, "echo x > notes.txt; mkdir sub")

    def granted(name: str, args: list[str]) -> dict[str, str]:
        return {str(g.name): g.rights.format() for g in box.grants(name, args)}

    for editor in ("vim", "vi"):
        assert granted(editor, ["notes.txt"])["storage://home/alice"] == "READ,WRITE"
        assert granted(editor, ["sub/new.txt"])["storage://home/alice/sub"] == "READ,WRITE"
    assert run(alice, "test -e sub/new.txt; echo $?")[1] == "1\n"  # (vim's to make)
    assert "storage://home/alice/sub" not in granted("sed", ["-i", "s/a/b/", "sub/none"])
    assert granted("view", ["notes.txt"]).get("storage://home/alice") == "READ"


def test_git_works_on_the_repository_it_is_in(alice: Shell) -> None:
    """`git init proj` said "cannot mkdir proj: Read-only file system" (no policy: the
    working directory read-only). git now holds the working directory read-write, or the
    top of the work tree it is in (from a subdirectory too), and reads ~/.gitconfig."""
    run(alice, "printf '[user]\\n\\tname = Alice\\n\\temail = a@x\\n' > .gitconfig")
    status, out, err = run(alice, "git init -q proj && cd proj && echo a > f && "
                                  "git add f && git commit -qm first && mkdir sub && "
                                  "cd sub && echo b > g && git add g && "
                                  "git commit -qm second && git log --format=%an:%s")
    assert (status, out) == (0, "Alice:second\nAlice:first\n"), err
    assert run(alice, "cd; git -C proj status --short; echo rc=$?")[1] == "rc=0\n"


def test_the_build_tools_write_where_they_build(alice: Shell) -> None:
    """gcc, make and zip had no policy (the working directory read-only): `gcc -o h
    h.c` could not write h, `make` could not run a recipe that writes, `zip a.zip f`
    could not make its archive. A compiler and make hold the working directory
    read-write; zip the archive's directory (an empty archive made ahead for it was
    "Zip file structure invalid"); unzip extracts into the working directory."""
    run(alice, "printf '#include <stdio.h>\\nint main(){puts(\"hi\");return 0;}\\n' > h.c")
    status, out, err = run(alice, "gcc -o h h.c && ./h && cc -c h.c && test -e h.o && "
                                  "echo objects")
    assert (status, out) == (0, "hi\nobjects\n"), err
    run(alice, "printf 'all:\\n\\techo built > out.txt\\n' > Makefile")
    assert run(alice, "make -s && cat out.txt")[1] == "built\n"
    status, out, err = run(alice, "zip -q a.zip h.c && mkdir x && cd x && unzip -q ../a.zip "
                                  "&& cat h.c | wc -l")
    assert (status, out) == (0, "2\n"), err


def test_python_m_works_in_the_working_directory(alice: Shell) -> None:
    """`python3 -m venv ve` said "Read-only file system": a module run with -m (venv,
    pip, zipfile) holds the working directory read-write; a script stays a script
    (read), and -c's code is no file."""
    status, out, err = run(alice, "python3 -m venv --without-pip ve && test -f "
                                  "ve/pyvenv.cfg && echo made")
    assert (status, out) == (0, "made\n"), err
    assert run(alice, "python3 -c 'print(6*7)'")[1] == "42\n"
    from exo.shell.powerbox import Powerbox

    grants = {str(g.name): g.rights.format()
              for g in Powerbox.for_shell(alice).grants("python3", ["s.py", "out.txt"])}
    assert grants == {"storage://home/alice": "READ"}


def test_a_policy_may_be_like_another() -> None:
    """`like = "gcc"`: that program's table with this one's keys over it (cc, g++, c++,
    vi, python3.11 share their table so); one level, within one file."""
    from exo.shell.powerbox import PowerboxError, _builtin_policies, parse_policies

    policies = _builtin_policies()
    assert policies["cc"].output_options == policies["gcc"].output_options == ("-o",)
    assert policies["vi"].creates and set(policies["python3.11"].modes) == {"module"}
    mine = parse_policies('[programs.a]\ninputs = "first"\n'
                          '[programs.b]\nlike = "a"\noutputs = "last"\n', "p.toml")
    assert (mine["b"].inputs, mine["b"].outputs) == ("first", "last")
    for bad in ('[programs.b]\nlike = "nobody"\n',
                '[programs.a]\nlike = "b"\n[programs.b]\nlike = "a"\n'):
        with pytest.raises(PowerboxError, match=r"programs\.\w\.like"):
            parse_policies(bad, "p.toml")
