"""``SandboxSpec.bind_sources``: a granted path shown from a different source (the kernel's
revocable FUSE export), with the same checks and the same Landlock rules at the destination."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exo.kernel.caps import CapabilityManager
from exo.kernel.revocable import RevocableDirs
from exo.sandbox import SandboxError, SandboxSpec, spawn

needs_fuse = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="needs /dev/fuse and root")


def test_destination_must_be_a_granted_path(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="not a granted path"):
        SandboxSpec(read_paths=(tmp_path,), bind_sources={tmp_path / "x": tmp_path})
    with pytest.raises(SandboxError, match="not absolute"):
        SandboxSpec(read_paths=(tmp_path,), bind_sources={tmp_path: Path("rel")})
    with pytest.raises(SandboxError, match="must map"):
        SandboxSpec(read_paths=(tmp_path,), bind_sources=[(tmp_path, tmp_path)])  # type: ignore[arg-type]


def test_source_must_be_an_export_of_the_kernels_file_server(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "grant").mkdir()
    spec = SandboxSpec(read_paths=(tmp_path / "grant",),
                       bind_sources={tmp_path / "grant": other})
    with pytest.raises(SandboxError, match="not an export of the kernel's file server"):
        spawn(spec, ["/bin/true"])


def test_an_exo_path_with_a_link_on_it_is_refused(tmp_path: Path) -> None:
    """With ``tree`` (the kernel's way) a served grant is an Exo path: a symbolic link
    swapped in on its host path since the kernel checked it moves nothing."""
    tree = tmp_path / "tree"
    (tree / "home" / "real").mkdir(parents=True)
    os.symlink("real", tree / "home" / "demo")
    spec = SandboxSpec(read_paths=(Path("/home/demo"),), tree=tree,
                       bind_sources={Path("/home/demo"): tmp_path})
    with pytest.raises(SandboxError, match="'/home/demo' has a symbolic link on it"):
        spawn(spec, ["/bin/true"])
    spec = SandboxSpec(read_paths=(Path("/home/real"),), tree=tree,
                       bind_sources={Path("/home/real"): tmp_path})
    with pytest.raises(SandboxError) as info:  # past the link check: the source's turn
        spawn(spec, ["/bin/true"])
    assert "not an export of the kernel's file server" in str(info.value)
    assert str(tmp_path) not in str(info.value)


def test_an_exo_path_leading_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "home").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tree / "home" / "out")
    with pytest.raises(SandboxError, match="'/home/out' leads out of the Exo tree"):
        spawn(SandboxSpec(read_paths=(Path("/home/out"),), tree=tree), ["/bin/true"])


def test_destination_keeps_the_grant_checks(tmp_path: Path) -> None:
    spec = SandboxSpec(read_paths=(Path("/etc"),), bind_sources={Path("/etc"): tmp_path})
    with pytest.raises(SandboxError, match="would expose /etc/shadow"):
        spawn(spec, ["/bin/true"])


@pytest.fixture
def export(tmp_path: Path) -> Iterator[tuple[Path, Path, CapabilityManager, int]]:
    grant = tmp_path / "grant"
    grant.mkdir()
    (grant / "in.txt").write_text("through the export\n")
    caps = CapabilityManager()
    caps.create_space(1)
    root = caps.grant_root(1, "storage://", "ALL")
    srv = RevocableDirs(tmp_path / "dirs-test")
    srv.start()
    unsubscribe = caps.on_revoke(srv.revoke)
    fd = os.open(grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    path = srv.export(fd, caps.pin(1, root, "READ,WRITE"), writable=True, owner=1)
    try:
        yield grant, path, caps, root
    finally:
        unsubscribe()
        srv.close()


@needs_fuse
def test_export_is_bound_at_the_granted_path_under_landlock(
        export: tuple[Path, Path, CapabilityManager, int]) -> None:
    grant, path, caps, root = export
    code = f"""
import errno, os, sys
g = {str(grant)!r}
print(open(g + "/in.txt").read().strip())
open(g + "/out.txt", "w").write("written")
print(sorted(os.listdir(g)))
print(os.getcwd())
try:
    os.execv(g + "/out.txt", ["x"])
except OSError as exc:
    print("exec", errno.errorcode[exc.errno])
sys.stdin.readline()
try:
    os.listdir(g)
    print("after: listed")
except OSError as exc:
    print("after", errno.errorcode[exc.errno])
"""
    proc = spawn(SandboxSpec(write_paths=(grant,), bind_sources={grant: path}, cwd=grant),
                 [sys.executable, "-u", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        lines = [proc.stdout.readline().decode().strip() for _ in range(4)]
        assert lines[0] == "through the export"
        assert lines[1] == "['in.txt', 'out.txt']"
        assert lines[2] == str(grant)
        assert lines[3] == "exec EACCES"  # Landlock: no EXECUTE on the destination
        assert (grant / "out.txt").read_text() == "written"
        caps.revoke(1, root)
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert proc.stdout.readline().decode().strip() == "after EACCES"
        assert proc.wait(timeout=30) == 0
    finally:
        proc.close()
