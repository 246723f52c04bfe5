"""DESIGN.md §1 as written, on a booted ``exo``: ``exo module upgrade net/loop --version
2.1.5`` and ``exo module rollback net/loop``, and ``exo module list`` saying where the
interface is."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.system.test_module_drivers import build_driver


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                    reason="net/loop needs root (CAP_NET_ADMIN) and /dev/net/tun")
def test_exo_module_upgrade_and_rollback_net_loop(
        exo_module: Callable[..., subprocess.CompletedProcess[str]], exo_root: Path,
        tmp_path: Path) -> None:
    exo = exo_module
    loaded = [exo("load", str(build_driver(tmp_path, exo_root, "net_loop", "2.1.4", v)))
              for v in ("2.1.4", "2.1.5")]
    assert [r.returncode for r in loaded] == [0, 0], loaded[0].stderr + loaded[1].stderr
    assert loaded[0].stdout.startswith("net-loop 2.1.4 serving device://net/loop at "
                                       "interface exo-loop0, address 10.77.0.1/24")
    assert "kept: exo module upgrade net-loop --version 2.1.5" in loaded[1].stdout
    r = exo("upgrade", "net/loop", "--version", "2.1.5")
    assert r.returncode == 0 and "net-loop upgraded 2.1.4 → 2.1.5" in r.stdout, r.stderr
    listing = exo("list").stdout.splitlines()
    assert listing[1].split()[:4] == ["net-loop", "device://net/loop", "2.1.5", "(100%)"]
    assert listing[2].startswith("  device: interface exo-loop0, address 10.77.0.1/24")
    r = exo("rollback", "net/loop")
    assert r.returncode == 0 and "rolled back 2.1.5 → 2.1.4" in r.stdout, r.stderr
    (row,) = json.loads(exo("list", "--json").stdout)
    assert row["device"]["interface"] == "exo-loop0" and row["stable"] == "2.1.4"
    assert exo("unload", "net/loop").stdout == "net-loop unloaded\n"
