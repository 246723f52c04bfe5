"""``exo gc``: shows, then removes, the generations and app versions that neither the
current generation nor its rollback target needs, plus cached downloads; survives kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.pkg.test_store import make_pkg, run_install

from exo.pkg import sign
from exo.pkg.store import Store

EXO = [sys.executable, "-m", "exo"]


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gcpkgs")
    signer = sign.load_signer(d)
    return {v: make_pkg(d, v, signer) for v in ("0.1.0", "0.2.0", "0.3.0")}


def gc(root: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EXO_ROOT=str(root))
    env.pop("EXO_PKG_CRASH_AT", None)
    if crash:
        env["EXO_PKG_CRASH_AT"] = crash
    return subprocess.run([*EXO, "gc", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def _three_generations(root: Path, pkgs: dict[str, Path]) -> None:
    for v in ("0.1.0", "0.2.0", "0.3.0"):
        assert run_install(root, pkgs[v]) == 0
    (root / "var/lib/pkg/cache/old.exopkg").write_bytes(b"x" * 1000)


def test_gc_shows_then_removes_what_rollback_does_not_need(
        tmp_path: Path, pkgs: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _three_generations(root, pkgs)
    apps = root / "exo" / "apps" / "hello"
    r = gc(root)  # shows only
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("would remove generation 1, hello 0.1.0, 1 cached download")
    assert "keeps generations 2, 3" in r.stdout
    assert (apps / "0.1.0").is_dir() and (root / "var/lib/pkg/generations/1").is_dir()
    plan = json.loads(gc(root, "--json").stdout)
    assert plan["would_remove"] == {"generations": [1], "apps": [
        {"name": "hello", "version": "0.1.0"}], "cached": 1}
    assert json.loads(gc(root, "--keep", "3", "--json").stdout)["would_remove"][
        "generations"] == []

    r = gc(root, "-y")
    assert r.returncode == 0 and r.stdout.startswith("removed generation 1, hello 0.1.0")
    assert sorted(p.name for p in apps.iterdir()) == ["0.2.0", "0.3.0"]
    assert sorted(p.name for p in (root / "var/lib/pkg/generations").iterdir()) == ["2", "3"]
    assert not (root / "var/lib/pkg/cache/old.exopkg").exists()
    assert gc(root).stdout.startswith("nothing to remove (kept generations: 2, 3)")
    # what rollback needs is still whole
    store = Store(root)
    with store.locked():
        assert store.rollback().id == 2
    from exo.pkg import format as fmt

    assert fmt.verify_installed(apps / "0.2.0") == []


def test_gc_killed_midway_leaves_a_usable_store(tmp_path: Path,
                                               pkgs: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _three_generations(root, pkgs)
    r = gc(root, "-y", crash="gc-renamed")
    assert r.returncode == -9
    store = Store(root)
    assert store.current() is not None and store.current().id == 3  # type: ignore[union-attr]
    r = gc(root)  # the next command recovers: the half-removed generation is gone
    assert r.returncode == 0 and "generation 1" not in r.stdout
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]
    assert sorted(p.name for p in (root / "exo/apps/hello").iterdir()) == ["0.2.0", "0.3.0"]
