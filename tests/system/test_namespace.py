"""One namespace (issue 9): inside every Exo process the Exo tree is ``/``.

A process sees its ``storage://`` grants at their Exo paths, the host's system directories
read-only, a synthesised ``/etc`` without secrets, a real ``/dev``, a private ``/tmp`` and
``/proc``, runs in the working directory it was given, and never sees the host path of
``EXO_ROOT``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from exo.kernel.kernel import Kernel
from exo.kernel.manifest import parse_grant
from exo.sandbox import SandboxError

from .helpers import APP_PYTHON, run_app


def run_in(kernel: Kernel, argv: list[str], *caps: str, cwd: str = "/") -> tuple[int, str, str]:
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = kernel.api.start(argv, [parse_grant(c) for c in caps],
                                    stdio=(null, out.fileno(), err.fileno()), cwd=cwd)
        finally:
            os.close(null)
        status = kernel.api.wait(proc)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode()


def test_a_grant_is_seen_at_its_exo_path(kernel: Kernel) -> None:
    """The issue's first attack: `run -- /usr/bin/cat /home/demo/app.py` failed."""
    (kernel.root / "home" / "demo" / "app.py").write_text("print('hi')\n")
    status, out, err = run_in(kernel, ["/usr/bin/cat", "/home/demo/app.py"],
                              "storage://home/demo=READ")
    assert (status, out) == (0, "print('hi')\n"), err


def test_the_working_directory_is_the_one_asked_for(kernel: Kernel) -> None:
    (kernel.root / "home" / "demo" / "app.py").write_text(
        "import os; print(os.getcwd()); print(open('app.py').read() != '')\n")
    status, out, err = run_in(kernel, [APP_PYTHON, "app.py"], "storage://home/demo=READ",
                              cwd="/home/demo")
    assert (status, out) == (0, "/home/demo\nTrue\n"), err
    status, out, err = run_in(kernel, ["/bin/pwd"])
    assert (status, out) == (0, "/\n"), err


def test_a_working_directory_the_process_cannot_see_is_one_line(kernel: Kernel) -> None:
    with pytest.raises(SandboxError) as info:
        run_in(kernel, ["/bin/pwd"], "storage://home/a=READ", cwd="/home/demo")
    message = str(info.value)
    assert message == ("working directory /home/demo is not visible to the process "
                       "(it holds no capability covering it)")
    assert str(kernel.root) not in message


def test_what_a_process_sees(kernel: Kernel) -> None:
    (kernel.root / "home" / "demo" / "notes.txt").write_text("mine\n")
    (kernel.root / "home" / "b" / "secret.txt").write_text("b's\n")
    with open(kernel.root / "etc" / "passwd", "a") as passwd:
        passwd.write("bob:$scrypt$hash:1000:1000::/home/bob:/bin/exosh\n")
    code = """
        import os, stat, sys
        print("root", sorted(os.listdir("/home/demo")))
        for dev in ("null", "zero", "random", "urandom"):
            st = os.stat("/dev/" + dev)
            assert stat.S_ISCHR(st.st_mode), dev
            with open("/dev/" + dev, "rb+" if dev != "random" else "rb") as f:
                f.read(1) if dev != "null" else f.write(b"x")
        print("devices ok")
        print("dev", sorted(os.listdir("/dev")))
        with open("/tmp/scratch", "w") as f:
            f.write("private")
        print("tmp ok")
        print("proc", os.path.exists("/proc/self/status"))
        for name in ("/etc/ld.so.cache", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"):
            assert os.path.exists(name), name
        for name in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh"):
            assert not os.path.exists(name), name
        print("etc ok")
        try:
            open("/usr/bin/exo-planted", "w")
        except OSError as exc:
            print("usr", type(exc).__name__)
        for name in ("/home/a", "/home/b", "/var/run/kernel.sock", "/var", "/exo"):
            assert not os.path.exists(name), name  # not granted: not there at all
        assert "scrypt" not in open("/etc/passwd").read()
        print("python", sys.version_info[0])
        mounts = open("/proc/self/mountinfo").read()
        print("leak", ROOT in mounts or ROOT in str(os.environ))
    """.replace("ROOT", repr(str(kernel.root)))
    status, out, err = run_app(kernel, code, "storage://home/demo=READ")
    assert status == 0, err
    lines = out.splitlines()
    assert "root ['notes.txt']" in lines
    assert "devices ok" in lines and "tmp ok" in lines and "etc ok" in lines
    assert "proc True" in lines
    assert "usr OSError" in lines or "usr PermissionError" in lines
    assert "leak False" in lines, out


def test_grants_of_names_the_namespace_owns_are_refused(kernel: Kernel) -> None:
    (kernel.root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    for cap, owned in (("storage://usr/bin=READ", "/usr"), ("storage://proc=READ", "/proc"),
                       ("storage://dev=READ", "/dev")):
        with pytest.raises(SandboxError) as info:
            run_in(kernel, ["/bin/true"], cap)
        assert owned in str(info.value) and str(kernel.root) not in str(info.value)


def test_the_whole_tree_is_shown_as_its_top_level_entries(kernel: Kernel) -> None:
    """``storage://`` (the root's, a shell at ``/``): every top-level entry but what the
    namespace owns, the Exo /etc (password hashes) and /var (the kernel's run directory)."""
    (kernel.root / "home" / "demo" / "notes.txt").write_text("mine\n")
    status, out, err = run_in(kernel, ["/bin/sh", "-c",
                                       "cat home/demo/notes.txt; ls /exo; "
                                       "for d in /home /exo /tmp; do test -d $d && echo $d; "
                                       "done; "
                                       "test -e /var/run/kernel.sock || echo no-socket; "
                                       "cat /etc/passwd"],
                              "storage://=READ", cwd="/")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "mine"
    assert {"apps", "/home", "/exo", "/tmp", "no-socket"} <= set(lines), out
    assert "root:x:0:0:root:/root:/bin/sh" in lines  # the synthesised /etc, not the tree's
    status, out, err = run_in(kernel, ["/bin/sh", "-c", "echo x > /home/demo/new"],
                              "storage://=READ")
    assert status != 0 and not (kernel.root / "home" / "demo" / "new").exists()


def test_a_missing_grant_names_the_exo_path_only(kernel: Kernel) -> None:
    with pytest.raises(SandboxError) as info:
        run_in(kernel, ["/bin/true"], "storage://home/nope=READ")
    assert str(kernel.root) not in str(info.value)


def test_run_on_the_command_line_sees_the_exo_tree(exo_cmd: list[str],
                                                   exo_env: dict[str, str],
                                                   exo_root: Path) -> None:
    home = exo_root / "home" / "demo"
    home.mkdir(parents=True)
    (home / "app.py").write_text("print('hi from a sandbox')\n")
    r = subprocess.run([*exo_cmd, "run", "--cap", "storage://home/demo=READ", "--",
                        "/usr/bin/cat", "/home/demo/app.py"], env=exo_env, text=True,
                       capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "print('hi from a sandbox')\n"), r.stderr
    r = subprocess.run([*exo_cmd, "run", "--cap", "storage://home/demo=READ", "--cwd",
                        "/home/demo", "--", "/usr/bin/python3", "app.py"], env=exo_env,
                       text=True, capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "hi from a sandbox\n"), r.stderr
    r = subprocess.run([*exo_cmd, "run", "--cwd", "/home/demo", "--", "/bin/pwd"],
                       env=exo_env, text=True, capture_output=True, timeout=60)
    assert r.returncode == 126
    assert r.stderr == ("exo: working directory /home/demo is not visible to the process "
                        "(it holds no capability covering it)\n")


def test_a_process_with_a_terminal_has_dev_tty(kernel: Kernel) -> None:
    import pty

    leader, follower = pty.openpty()
    try:
        proc = kernel.api.start(["/bin/sh", "-c", "test -c /dev/tty && echo tty-node; "
                                 "test -t 0 && echo stdin-is-a-terminal"],
                                stdio=(follower, follower, follower))
        os.close(follower)
        assert kernel.api.wait(proc) == 0
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    assert b"tty-node" in out and b"stdin-is-a-terminal" in out, out
    status, text, err = run_in(kernel, ["/bin/sh", "-c", "test -e /dev/tty || echo no-tty"])
    assert (status, text) == (0, "no-tty\n"), err


def test_a_grant_of_an_exo_etc_file_wins_over_the_synthesised_one(kernel: Kernel) -> None:
    status, out, err = run_in(kernel, ["/bin/cat", "/etc/os-release", "/etc/hostname"],
                              "storage://etc/os-release=READ")
    assert status != 0 and "Exo-OS" in out  # hostname is not granted
    status, out, err = run_in(kernel, ["/bin/sh", "-c", "cat /etc/passwd; ls /etc"],
                              "storage://etc=READ")
    assert status == 0, err
    assert "root::0:0:root:/home/root" in out and "os-release" in out  # the Exo tree's
    status, out, err = run_in(kernel, ["/bin/cat", "/etc/passwd"])
    assert (status, out.splitlines()[0]) == (0, "root:x:0:0:root:/root:/bin/sh"), err
