"""A directory grant in passthrough mode, from inside a sandbox: files the app opened read
and write at native speed, and revoking the capability still cuts them off (EIO), as well
as every path, its cwd and new opens (EACCES). docs/revocable-files.md, "Passthrough mode".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.system.test_revocable_dirs import CHECKS, PROBE, WRITE_CHECKS, _run_probe

from exo.kernel.config import KernelConfig
from exo.kernel.files import PASSTHROUGH_ENV
from exo.kernel.kernel import Kernel

FD_CHECKS = {"read-kept-fd", "fstat-kept-fd", "write-kept-fd"}


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
    monkeypatch.setenv(PASSTHROUGH_ENV, "1")  # the operator's choice, read at boot
    k = Kernel(KernelConfig(root=tmp_path / "root"), ephemeral=True)
    k.boot()
    (k.root / "home" / "a").mkdir(parents=True)
    try:
        yield k
    finally:
        k.shutdown()


def test_revocation_cuts_a_passthrough_grant_inside_a_sandbox(kernel: Kernel) -> None:
    base = kernel.root / "home" / "a"
    (base / "data.txt").write_text("data\n")
    seen: dict[str, int] = {}

    def revoke() -> None:
        dirs = kernel.files.stats()["dirs"]
        if not dirs["passthrough"]:
            pytest.skip("no FUSE passthrough on this kernel")
        seen["opened"] = dirs["passthrough_opened"]
        kernel.caps.revoke_resource("storage://home/a")

    results = _run_probe(kernel, PROBE.replace("WRITABLE", "True"), "/home/a",
                         "storage://home/a=READ,WRITE", revoke, cwd="/home/a")
    assert seen["opened"] >= 1  # kept.txt (and data.txt) were passthrough files
    for check in CHECKS + WRITE_CHECKS:
        assert results["pre-" + check] == "ok", (check, results)
        want = "EIO" if check in FD_CHECKS else "EACCES"
        assert results["post-" + check] == want, (check, results)
    dirs = kernel.files.stats()["dirs"]
    assert dirs["cut"] >= 1 and dirs["cut_failed"] == 0
    assert (base / "kept.txt").read_bytes() == b"after!"  # the pre- write went through
    assert not (base / "post-new.txt").exists()
    assert os.listdir(base)  # the real directory is untouched


# A database's pattern: the length of an open file (lseek SEEK_END, fstat) and stat of
# names, over and over. A passthrough grant answers these from the client's attribute cache
# (no request), and revocation must still cut the very next one.
CACHED_PROBE = PROBE.replace('''    attempt(tag + "fstat-kept-fd", lambda: os.fstat(kept))''', '''\
    for i in range(ROUNDS):
        attempt(f"{tag}lseek-kept-fd-{i}", lambda: os.lseek(kept, 0, os.SEEK_END))
        attempt(f"{tag}fstat-kept-fd-{i}", lambda: os.fstat(kept))
        attempt(f"{tag}stat-cwd-{i}", lambda: os.stat("data.txt"))''').replace(
    "ROUNDS", "50")


def test_cached_attributes_of_a_passthrough_grant_are_cut_at_revocation(
        kernel: Kernel) -> None:
    base = kernel.root / "home" / "a"
    (base / "data.txt").write_text("data\n")
    seen: dict[str, int] = {}

    def revoke() -> None:
        dirs = kernel.files.stats()["dirs"]
        if not dirs["passthrough"]:
            pytest.skip("no FUSE passthrough on this kernel")
        seen["getattrs"] = dirs["ops"].get("GETATTR", 0)
        kernel.caps.revoke_resource("storage://home/a")

    assert "stat-cwd-" in CACHED_PROBE
    results = _run_probe(kernel, CACHED_PROBE.replace("WRITABLE", "True"), "/home/a",
                         "storage://home/a=READ,WRITE", revoke, cwd="/home/a")
    # 150 length and stat calls before revocation cost at most a few GETATTRs (the cache
    # lasts 1 s), where a served grant answers each.
    assert seen["getattrs"] < 50, seen
    for check in ("stat", "open", "open-cwd"):
        assert results["pre-" + check] == "ok", (check, results)
        assert results["post-" + check] == "EACCES", (check, results)
    # Every one after revocation fails, the first included.
    for i in range(50):
        for check in ("lseek-kept-fd", "fstat-kept-fd", "stat-cwd"):
            assert results[f"pre-{check}-{i}"] == "ok", (check, i, results)
        assert results[f"post-fstat-kept-fd-{i}"] == "EIO", (i, results)
        assert results[f"post-lseek-kept-fd-{i}"] in ("EIO", "EACCES"), (i, results)
        assert results[f"post-stat-cwd-{i}"] == "EACCES", (i, results)
