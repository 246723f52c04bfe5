"""`exo run`: a sandboxed process with exactly the capabilities given, on an ephemeral
kernel or on a running one, driven through the real CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.system.helpers import booted_kernel

APP = textwrap.dedent("""
    import os, sys
    from exo_std import Rights, fs, handles
    print("cwd", os.getcwd())
    with fs.File.open("storage://home/demo/out.txt", Rights.WRITE, create=True) as f:
        f.write("written through a capability\\n")
    print("handles", [(c.resource, int(c.rights)) for c in handles()])
    try:
        open("/etc/shadow")
    except OSError as exc:
        print("shadow", type(exc).__name__)
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
""")


@pytest.fixture
def demo(exo_root: Path) -> Path:
    home = exo_root / "home" / "demo"
    home.mkdir(parents=True)
    (home / "app.py").write_text(APP)
    return home


def exo_run(exo_cmd: list[str], env: dict[str, str], *args: str,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*exo_cmd, "run", *args], env=env, text=True, capture_output=True,
                          timeout=timeout)


def test_run_on_an_ephemeral_kernel(exo_cmd: list[str], exo_env: dict[str, str],
                                    demo: Path) -> None:
    r = exo_run(exo_cmd, exo_env, "--cap", "storage://home/demo=READ,WRITE", "--cwd",
                "/home/demo", "--", "/usr/bin/python3", "app.py", "3")
    assert r.returncode == 3, r.stderr
    assert "cwd /home/demo" in r.stdout
    assert "handles [('storage://home/demo', 3)]" in r.stdout
    assert "shadow FileNotFoundError" in r.stdout or "shadow PermissionError" in r.stdout
    assert (demo / "out.txt").read_text() == "written through a capability\n"


def test_run_without_the_capability_is_refused(exo_cmd: list[str], exo_env: dict[str, str],
                                               demo: Path) -> None:
    r = exo_run(exo_cmd, exo_env, "--cap", "storage://home/demo=READ", "--",
                "/usr/bin/python3", "/home/demo/app.py")
    assert r.returncode != 0
    assert "PermissionError" in r.stderr
    assert not (demo / "out.txt").exists()


def test_run_uses_the_running_kernel(exo_cmd: list[str], exo_env: dict[str, str],
                                     demo: Path, exo_root: Path) -> None:
    with booted_kernel(exo_cmd, exo_env, exo_root) as kernel:
        r = exo_run(exo_cmd, exo_env, "--cap", "storage://home/demo=READ,WRITE", "--cwd",
                    "/home/demo", "--", "/usr/bin/python3", "app.py", "5")
        assert r.returncode == 5, r.stderr
        assert "written" in (demo / "out.txt").read_text()
        # Start failures carry a shell's statuses through the control socket too.
        r = exo_run(exo_cmd, exo_env, "--", "/nonexistent/program")
        assert r.returncode == 127
        assert r.stderr == "exo: cannot run '/nonexistent/program': No such file or directory\n"
        ps = subprocess.run([*exo_cmd, "ps", "--json"], env=exo_env, text=True,
                            capture_output=True, timeout=30)
        assert '"exo-kernel"' in ps.stdout
        down = subprocess.run([*exo_cmd, "shutdown"], env=exo_env, text=True,
                              capture_output=True, timeout=30)
        assert down.returncode == 0, down.stderr
        kernel.wait(timeout=30)
        assert not (exo_root / "var" / "run" / "kernel.sock").exists()


@pytest.mark.parametrize("args, message", [
    (["--cap", "nosuch://x=READ", "--", "true"], "unknown scheme"),
    (["--cap", "storage://home=FLY", "--", "true"], "unknown right"),
    (["--cap", "storage://home", "--", "true"], "NAME=RIGHTS"),
    (["--manifest", "/nonexistent.toml", "--", "true"], "no such manifest"),
    # Clear ends (issue 9): rights a scheme does not use, objects that do not exist, no rights.
    (["--cap", "process://99=READ", "--", "true"], "READ means nothing for process://"),
    (["--cap", "net://loopback=READ", "--", "true"], "READ means nothing for net://"),
    (["--cap", "device://gpu0=READ", "--", "true"], "no such device 'gpu0'"),
    (["--cap", "process://99=SEND", "--", "true"], "no such process 99"),
    (["--cap", "storage://home/demo=", "--", "true"], "no rights given for storage://home/demo"),
    (["--cwd", "home/demo", "--", "true"], "expected an Exo path"),
])
def test_bad_input_is_one_clear_line(exo_cmd: list[str], exo_env: dict[str, str],
                                     args: list[str], message: str) -> None:
    r = exo_run(exo_cmd, exo_env, *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exo: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_malformed_manifest(exo_cmd: list[str], exo_env: dict[str, str],
                            tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text("[sandbox]\ncapabilities = [\"storage://home=READ\"]\n[limits]\npids = -1\n")
    r = exo_run(exo_cmd, exo_env, "--manifest", str(bad), "--", "true")
    assert r.returncode == 2 and "limits.pids" in r.stderr and "Traceback" not in r.stderr
    bad.write_text("this is = = not toml")
    r = exo_run(exo_cmd, exo_env, "--manifest", str(bad), "--", "true")
    assert r.returncode == 2 and "invalid TOML" in r.stderr


def test_manifest_grants_and_limits(exo_cmd: list[str], exo_env: dict[str, str], demo: Path,
                                    tmp_path: Path) -> None:
    m = tmp_path / "app.toml"
    m.write_text('[sandbox]\ncapabilities = ["storage://home/demo=READ,WRITE"]\n'
                 '[limits]\nmemory = "128M"\npids = 16\n')
    r = exo_run(exo_cmd, exo_env, "--manifest", str(m), "--", "/usr/bin/python3",
                "/home/demo/app.py")
    assert r.returncode == 0, r.stderr
    assert (demo / "out.txt").exists()


def test_stdin_is_passed_through(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    r = subprocess.run([*exo_cmd, "run", "--", "/usr/bin/python3", "-c",
                        "import sys; print(sys.stdin.read().upper())"],
                       input="piped in", env=exo_env, text=True, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "PIPED IN"


def test_start_failures_get_a_shells_status_and_one_line(exo_cmd: list[str],
                                                         exo_env: dict[str, str]) -> None:
    r = exo_run(exo_cmd, exo_env, "--", "/nonexistent/program")
    assert r.returncode == 127
    assert r.stderr == "exo: cannot run '/nonexistent/program': No such file or directory\n"
    r = exo_run(exo_cmd, exo_env, "--", "/etc/passwd")  # there, but not a program
    assert r.returncode == 126
    assert r.stderr == "exo: cannot run '/etc/passwd': Permission denied\n"
    r = exo_run(exo_cmd, exo_env, "--cap", "storage://home/nope=READ", "--", "/bin/true")
    assert r.returncode == 126
    assert r.stderr == "exo: storage://home/nope: no such file or directory in the Exo tree\n"


def test_python_is_the_host_interpreter(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    r = exo_run(exo_cmd, exo_env, "--", sys.executable, "-c", "import json; print('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
