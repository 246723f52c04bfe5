"""Issue 11: after ``exo install``, typing the package's name in the Exo shell runs it,
sandboxed by exactly its manifest (plus reading its own files), started by the shell
through the kernel's API rather than through the ``/exo/bin`` launcher script.

A real package: ``exo new`` → ``exo build`` → ``exo publish`` into a directory
repository → ``exo repo add`` → ``exo install -y``, through the real ``exo`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._support.kernels import booted_kernel
from tests.unit.shell._support import run

from exo.kernel.kernel import Kernel
from exo.kernel.manifest import Grant, Manifest
from exo.kernel.process import ExoProcess
from exo.kernel.users import UserDatabase, session_grants
from exo.pkg.installed import installed_app
from exo.shell import Session, Shell, Vfs

EXO = [sys.executable, "-m", "exo"]
# The app writes into the one directory its manifest grants, and tries a file it does not.
PROGRAM = '''#!/usr/bin/env python3
import os, sys
who = sys.argv[1] if len(sys.argv) > 1 else "world"
print(f"Hello, {who}, from hello!")
with open("/home/hello/greeted", "a") as f:
    f.write(who + "\\n")
try:
    open("/home/root/secret").read()
    print("read a file it was not granted")
except OSError:
    print("/home/root is out of reach")
print("cwd", os.getcwd())
'''


def _exo(*args: str, cwd: Path, env: dict[str, str]) -> None:
    r = subprocess.run([*EXO, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"exo {' '.join(args)}: {r.stderr}{r.stdout}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Exo tree with ``hello`` 0.1.0 installed from a directory repository."""
    work = tmp_path_factory.mktemp("apps")
    root = work / "root"
    env = dict(os.environ, EXO_ROOT=str(root))
    env.pop("EXO_PKG_CRASH_AT", None)
    _exo("new", "hello", "--template", "cli", cwd=work, env=env)
    (work / "hello" / "bin" / "hello").write_text(PROGRAM)
    _exo("build", "--release", cwd=work / "hello", env=env)
    _exo("repo", "init", "./repo", cwd=work, env=env)
    _exo("publish", "--repo", "../repo", "dist/hello-0.1.0.exopkg", cwd=work / "hello",
         env=env)
    _exo("repo", "add", "local", str(work / "repo"), cwd=work, env=env)
    _exo("install", "-y", "hello", cwd=work, env=env)
    return root


@pytest.fixture
def kernel(installed: Path) -> Iterator[Kernel]:
    with booted_kernel(installed) as k:
        yield k


@pytest.fixture
def shell(kernel: Kernel) -> Shell:
    home = kernel.root / "home" / "root"
    home.mkdir(parents=True, exist_ok=True)
    (home / "secret").write_text("root's\n")
    return Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()))


def test_the_helper_reads_the_current_generation(installed: Path) -> None:
    app = installed_app(installed, "hello")
    assert app is not None and (app.name, app.version) == ("hello", "0.1.0")
    assert app.program == "/exo/apps/hello/0.1.0/bin/hello"
    assert (installed / app.manifest.lstrip("/")).is_file()
    assert (installed / "exo" / "bin" / "hello").is_file()
    assert installed_app(installed, "nope") is None
    assert installed_app(installed / "elsewhere", "hello") is None


def test_typing_its_name_runs_it_under_its_manifest(shell: Shell) -> None:
    status, out, err = run(shell, "hello Exo")
    assert (status, err) == (0, ""), err
    lines = out.splitlines()
    assert lines[0] == "Hello, Exo, from hello!"
    assert lines[1] == "/home/root is out of reach"  # only what the manifest names
    assert lines[2] == "cwd /"  # the shell's /home/root is not the app's to see
    assert (shell.kernel.root / "home" / "hello" / "greeted").read_text() == "Exo\n"
    # in a directory it holds, it starts there; a pipe and $? as for any command
    assert run(shell, "cd /home/hello && hello | head -1; echo $?")[1] == (
        "Hello, world, from hello!\n0\n")
    assert "cwd /home/hello" in run(shell, "hello")[1]
    from exo.shell.completion import ShellCompleter

    assert "hello" in ShellCompleter(shell).commands()  # Tab completes it
    assert run(shell, "type hello")[1] == (
        "hello is /exo/bin/hello (package hello 0.1.0: its manifest's capabilities)\n")


def test_started_directly_not_through_the_launcher(shell: Shell,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What the shell asks the kernel for: the entry itself (no nested ``exo run``),
    holding its own prefix plus the manifest, under the manifest's limits."""
    calls: list[tuple[list[str], list[str], Manifest | None]] = []

    class Recording:
        def __init__(self, api: Any) -> None:
            self.api = api

        def __getattr__(self, name: str) -> Any:
            return getattr(self.api, name)

        def start(self, argv: list[str], grants: list[Grant], **kw: Any) -> ExoProcess:
            calls.append((list(argv), [str(g) for g in grants], kw.get("manifest")))
            proc: ExoProcess = self.api.start(argv, grants, **kw)
            return proc

    monkeypatch.setattr(shell, "kernel", Recording(shell.kernel))
    assert run(shell, "/exo/bin/hello direct")[0] == 0
    ((argv, grants, manifest),) = calls
    assert argv == ["/exo/apps/hello/0.1.0/bin/hello", "direct"]
    assert grants == ["storage://exo/apps/hello/0.1.0=READ,EXECUTE"]
    assert manifest is not None
    assert [str(g) for g in manifest.grants] == ["storage://home/hello=READ,WRITE"]
    assert manifest.limits.memory == 128 << 20 and manifest.limits.pids == 16


def test_a_user_without_the_manifests_capability_is_told_which(kernel: Kernel) -> None:
    user = UserDatabase(kernel.root).add("alice", "wonderland")
    (kernel.root / "home" / "alice").mkdir(parents=True, exist_ok=True)
    session = Session(user.name, user.uid, user.home, session_grants(kernel.root, user))
    alice = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()), session)
    status, out, err = run(alice, "hello")
    assert (status, out) == (126, "")
    assert err.count("\n") == 1
    assert err.startswith("exo: hello: storage://home/hello=READ,WRITE: not held by this "
                          "session (user alice)")
    # granted by the administrator, it runs for her (the session is derived at login)
    grants = kernel.root / "etc" / "exo" / "grants.toml"
    grants.parent.mkdir(parents=True, exist_ok=True)
    grants.write_text('[users.alice]\ncapabilities = ["storage://home/hello=READ,WRITE"]\n')
    session = Session(user.name, user.uid, user.home, session_grants(kernel.root, user))
    alice = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()), session)
    status, out, err = run(alice, "hello alice")
    assert (status, err) == (0, "") and out.startswith("Hello, alice, from hello!\n")


def test_through_exo_boot(installed: Path) -> None:
    """The same through the real entry point, as a script types it."""
    env = dict(os.environ, EXO_ROOT=str(installed))
    env.pop("EXO_BOOTSTRAP_FD", None)
    r = subprocess.run([*EXO, "boot", "--quiet"], input="hello Exo\necho $?\n", env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello, Exo, from hello!\n") and r.stdout.endswith("\n0\n")


def test_exo_remove_at_the_prompt_waits_for_the_answer(installed: Path,
                                                       tmp_path: Path) -> None:
    """``exo install``/``remove`` typed at the Exo prompt answered their own y/N with
    'cancelled' before anyone could type: the keys went to the shell's relay."""
    import shutil

    import pexpect
    from tests.system.test_interactive import PROMPT, boot_terminal, login

    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    env = dict(os.environ, EXO_ROOT=str(root))
    with boot_terminal(env) as term:
        login(term)
        term.sendline("exo remove hello")
        term.expect(r"Proceed\? \[y/N\]: ")
        term.sendline("n")
        term.expect("cancelled")
        term.expect(PROMPT)
        term.sendline("exo remove hello")
        term.expect(r"Proceed\? \[y/N\]: ")
        term.sendline("y")
        term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)
    assert installed_app(root, "hello") is None and installed_app(installed, "hello")


def test_exo_bin_lists_and_shows_the_installed_launchers(shell: Shell, kernel: Kernel) -> None:
    """``ls /exo/bin`` said no such file and ``cat /exo/bin/hello`` refused the link,
    while ``type hello`` named /exo/bin/hello: the store's own two links are read (in
    exactly their form), never followed."""
    assert run(shell, "ls /exo/bin") == (0, "hello\n", "")
    status, out, _ = run(shell, "cat /exo/bin/hello")
    assert status == 0 and out.startswith("#!")
    link = kernel.root / "exo" / "bin"
    target = os.readlink(link)
    try:  # any other form is a link like any other: shown as a link, never followed
        link.unlink()
        link.symlink_to("../etc")
        assert run(shell, "ls /exo/bin") == (0, "/exo/bin\n", "")
        assert run(shell, "ls -l /exo/bin")[1].endswith(" /exo/bin -> ../etc\n")
        assert run(shell, "cat /exo/bin/passwd")[0] == 1
    finally:
        link.unlink()
        link.symlink_to(target)
