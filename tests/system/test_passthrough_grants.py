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
