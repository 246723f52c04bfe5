"""Generations: atomic switch, rollback along parent links, and kill -9 at every step of
an install and an upgrade leaving the previous generation intact and recoverable."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exo.pkg import format as fmt
from exo.pkg import sign
from exo.pkg.store import STEPS, Installed, Store

SCRIPT = """
import sys
from pathlib import Path
from exo.pkg import format as fmt
from exo.pkg.store import Installed, Store
root, pkg_path = Path(sys.argv[1]), Path(sys.argv[2])
with Store(root).locked() as store:
    pkg = fmt.read_package(pkg_path)
    cur = store.current()
    pkgs = dict(cur.packages) if cur else {}
    from exo.pkg.store import crash_point
    crash_point("downloaded")
    store.unpack(pkg)
    pkgs[pkg.header.name] = Installed(pkg.header.name, pkg.header.version, "bin/hello")
    store.commit(pkgs, "install")
"""


def make_pkg(tmp: Path, version: str, signer: sign.Signer, size: int = 100) -> Path:
    manifest = f"""[package]
name = "hello"
version = "{version}"
[binary]
type = "python"
entry = "bin/hello"
""".encode()
    body = f"#!/bin/sh\necho {version}\n".encode() + b"#" * size
    items: list[tuple[fmt.Entry, bytes | None]] = [
        (fmt.Entry("bin", "dir", 0o755), None),
        (fmt.Entry("bin/hello", "file", 0o755, len(body), hashlib.sha256(body).hexdigest()),
         body)]
    return fmt.write_package(tmp / f"hello-{version}.exopkg", manifest, items, signer)


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pkgs")
    signer = sign.load_signer(d)
    return {v: make_pkg(d, v, signer) for v in ("0.1.0", "0.2.0")}


def run_install(root: Path, pkg: Path, crash: str | None = None) -> int:
    env = dict(os.environ)
    env.pop("EXO_PKG_CRASH_AT", None)
    if crash:
        env["EXO_PKG_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-c", SCRIPT, str(root), str(pkg)],
                          env=env, timeout=60).returncode


def active(root: Path) -> str | None:
    link = root / "exo" / "bin" / "hello"
    # the launcher's second line: "# exo package launcher: hello VERSION"
    return link.read_text().split("\n")[1].split()[-1] if link.exists() else None


def test_install_upgrade_rollback(tmp_path: Path, pkgs: dict[str, Path]) -> None:
    root = tmp_path / "root"
    assert run_install(root, pkgs["0.1.0"]) == 0
    assert active(root) == "0.1.0"
    assert run_install(root, pkgs["0.2.0"]) == 0
    assert active(root) == "0.2.0"
    store = Store(root)
    gens = store.generations()
    assert [(g.id, g.parent) for g in gens] == [(1, None), (2, 1)]
    assert store.rollback().id == 1
    assert active(root) == "0.1.0"
    # a change after a rollback branches from generation 1: the tree keeps generation 2
    with store.locked():
        store.commit({}, "remove hello")
    assert [(g.id, g.parent) for g in store.generations()][-1] == (3, 1)
    assert active(root) is None
    store.switch(2)
    assert active(root) == "0.2.0"


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("first", [True, False], ids=["install", "upgrade"])
def test_kill9_at_each_step(tmp_path: Path, pkgs: dict[str, Path], step: str,
                            first: bool) -> None:
    root = tmp_path / "root"
    before: str | None = None
    if not first:
        assert run_install(root, pkgs["0.1.0"]) == 0
        before = "0.1.0"
    new = pkgs["0.1.0" if first else "0.2.0"]
    assert run_install(root, new, crash=step) == -9
    store = Store(root)
    after = "0.1.0" if first else "0.2.0"
    # the previous generation (or, once switched, the new one) is intact and usable
    expected = after if step == "switched" else before
    assert active(root) == expected
    if expected:
        app = store.current()
        assert app is not None
        v = app.packages["hello"].version
        assert fmt.verify_installed(store.app_dir("hello", v)) == []
    # the next command recovers: no .tmp left, no unreferenced app, and it succeeds
    with store.locked():
        pass
    leftovers = [p.name for p in store.gens.iterdir() if ".tmp" in p.name]
    leftovers += [p.name for p in (store.apps / "hello").iterdir() if ".tmp" in p.name] \
        if (store.apps / "hello").exists() else []
    assert leftovers == []
    used = {g.packages["hello"].version for g in store.generations() if "hello" in g.packages}
    on_disk = {p.name for p in (store.apps / "hello").iterdir()} \
        if (store.apps / "hello").exists() else set()
    assert on_disk == used
    assert run_install(root, new) == 0
    assert active(root) == after


def test_lock_refuses_concurrent(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.locked(), pytest.raises(Exception, match="another package command"), \
            Store(tmp_path).locked():
        pass


def test_installed_roundtrip() -> None:
    assert Installed("a", "1").explicit
