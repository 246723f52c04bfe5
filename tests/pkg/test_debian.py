"""The Debian bridge: sqlite3 fetched with apt, bridged into a signed .exopkg with a
minimal manifest, installed, and run sandboxed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exo.pkg.debian import exo_version


def test_versions_map_in_order() -> None:
    assert exo_version("3.40.1-2+deb12u2") == "3.40.1-2.deb12u2"
    assert exo_version("1:1.22.1-9") == "1.22.1-9.e1"
    assert exo_version("1.2.3") == "1.2.3"


def test_install_from_debian_runs_sandboxed(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("not a Debian host")
    env = dict(os.environ, EXO_ROOT=str(tmp_path / "root"))
    env.pop("EXO_PKG_CRASH_AT", None)
    r = subprocess.run([sys.executable, "-m", "exo", "install", "-y", "--from-debian",
                        "sqlite3"], env=env, capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    if "apt-get download" in r.stderr:
        pytest.skip(f"apt cannot fetch here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    assert "storage://home/sqlite3=READ,WRITE" in r.stdout
    sqlite = tmp_path / "root" / "exo" / "bin" / "sqlite3"
    out = subprocess.run([str(sqlite), ":memory:", "select 6*7;"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "42\n", out.stderr
