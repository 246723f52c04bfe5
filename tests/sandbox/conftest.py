"""Fixtures for the sandbox tests: a real host world (files, listeners) to attack."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exo.sandbox import cleanup_all, probe

# The test modules import their shared helpers from this directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sandbox_testlib import World, _listener


@pytest.fixture(scope="session")
def host_probe() -> dict[str, object]:
    info = probe()
    if info["bwrap"] is None:
        pytest.skip("bubblewrap is not installed")
    return info


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, host_probe: object) -> Iterator[World]:
    root = tmp_path_factory.mktemp("sandbox-world")
    own_rw, own_ro, exec_dir, other = (root / n for n in ("own_rw", "own_ro", "bin", "other"))
    for d in (own_rw, own_ro, exec_dir, other):
        d.mkdir()
    (own_ro / "data.txt").write_text("read me")
    (other / "secret.txt").write_text("other app's secret")
    (own_rw / "planted-link").symlink_to(other / "secret.txt")
    # A setuid copy of `id` owned by nobody: exec'ing it must not change the euid.
    suid = exec_dir / "suid-id"
    shutil.copy2("/usr/bin/id", suid)
    os.chown(suid, 65534, 65534)
    os.chmod(suid, 0o4755)
    listen = _listener()
    allowed = _listener()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract_name = f"exo-test-kernel-{os.getpid()}"
    abstract.bind("\0" + abstract_name)
    abstract.listen(4)
    secret_fd = os.open(other / "secret.txt", os.O_RDONLY)  # inheritable? must not leak
    os.set_inheritable(secret_fd, True)
    ctx: dict[str, object] = {
        "own_rw": str(own_rw), "own_ro": str(own_ro), "exec_dir": str(exec_dir),
        "other": str(other), "kernel_pid": os.getpid(), "tcp_port": listen.getsockname()[1],
        "tcp_port_allowed": allowed.getsockname()[1], "abstract": abstract_name,
        "secret_fd": secret_fd, "python": sys.executable,
    }
    yield World(root, own_rw, own_ro, exec_dir, other, listen.getsockname()[1],
                allowed.getsockname()[1], abstract_name, secret_fd, ctx)
    for s in (listen, allowed, abstract):
        s.close()
    os.close(secret_fd)
    cleanup_all()
