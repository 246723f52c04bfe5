"""A directory of symbolic links inside the Exo tree (``/exo/bin``) lists, for root and
for a user, with the shell's ``ls`` and the host's through the powerbox; a link never
leads out of a grant, whichever program follows it."""

from __future__ import annotations

import os

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
