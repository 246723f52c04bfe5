"""A directory of symbolic links inside the Exo tree (``/exo/bin``) lists, for root and
for a user, with the shell's ``ls`` and the host's through the powerbox; a link never
leads out of a grant, whichever program follows it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exo.kernel.kernel import Kernel
from exo.shell import Shell

from ._support import run


@pytest.fixture
def links(kernel: Kernel) -> None:
    root = kernel.root
    app = root / "exo" / "apps" / "hello" / "1.0"
    app.mkdir(parents=True)
    (app / "hello").write_text("#!/bin/sh\necho hi\n")
    (root / "exo" / "bin").mkdir(parents=True, exist_ok=True)
    os.symlink("../apps/hello/1.0/hello", root / "exo" / "bin" / "hello")
    os.symlink("/etc/shadow", root / "exo" / "bin" / "shadow")  # out of the tree
    os.symlink("../../home/root", root / "exo" / "bin" / "roots")  # out of the grant
    (root / "home" / "root").mkdir(parents=True, exist_ok=True)
    (root / "home" / "root" / "secret").write_text("root's\n")


@pytest.mark.parametrize("who", ["root_shell", "alice"])
def test_a_directory_of_links_lists_and_no_link_leads_out(
        links: None, who: str, request: pytest.FixtureRequest) -> None:
    shell: Shell = request.getfixturevalue(who)
    names = ["hello", "roots", "shadow"]
    assert run(shell, "ls /exo/bin")[1].split() == names
    assert run(shell, "/bin/ls /exo/bin")[1].split() == names  # the host's ls, sandboxed
    assert run(shell, "cd /exo/bin; /bin/ls")[1].split() == names
    long = run(shell, "ls -l /exo/bin")[1]
    assert "hello -> ../apps/hello/1.0/hello" in long and "shadow -> /etc/shadow" in long
    host_long = run(shell, "/bin/ls -l /exo/bin")[1]
    assert "roots -> ../../home/root" in host_long
    for line in ("cat /exo/bin/shadow", "/bin/cat /exo/bin/shadow",
                 "/bin/cat /exo/bin/roots/secret", "cat /exo/bin/roots/secret",
                 "/bin/ls /exo/bin/roots/"):
        status, out, _ = run(shell, line)
        assert status != 0 and "root's" not in out and "root:" not in out, line


def test_a_program_is_found_only_as_an_executable_file_beneath_the_tree(
        root_shell: Shell, tmp_path: Path) -> None:
    """``find_program``: a regular executable file in the Exo tree, its name resolved
    without links; anything else (missing, a directory, not executable, a link, a path
    that leaves the tree) is not a program there (the powerbox then looks on the host)."""
    root = root_shell.kernel.root
    bin_dir = root / "home" / "root" / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    (bin_dir / "notes").write_text("x\n")
    (bin_dir / "dir").mkdir()
    outside = tmp_path / "outside-tool"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    (bin_dir / "link").symlink_to(outside)
    assert root_shell.find_program("/home/root/bin/tool") == "/home/root/bin/tool"
    for name in ("/home/root/bin/missing", "/home/root/bin/notes", "/home/root/bin/dir",
                 "/home/root/bin/link", "/home/root/bin/missing/deeper", "/../../bin/sh"):
        assert root_shell.find_program(name) is None, name
    root_shell.env["PATH"] = "/nowhere:/home/root/bin"
    assert root_shell.find_program("tool") == "/home/root/bin/tool"
    assert root_shell.find_program("notes") is None
