"""``exo module ...`` against a booted kernel, through its control socket."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.modules.modlib import build


def test_module_commands_on_a_running_kernel(
        exo_module: Callable[..., subprocess.CompletedProcess[str]], exo_root: Path,
        tmp_path: Path) -> None:
    exo = exo_module
    r = exo("list")
    assert r.stdout == "no modules loaded\n"
    # signed with this root's build key, which the kernel trusts
    v1, v2 = (build(tmp_path, exo_root, v) for v in ("1.0", "2.0"))
    r = exo("load", str(v1))
    assert r.returncode == 0 and "echo 1.0 serving ipc://echo" in r.stdout, r.stderr
    assert exo("load", str(v2)).returncode == 0
    r = exo("upgrade", "echo", "--version", "2.0", "--canary", "25", "--step", "25",
            "--interval", "0.05")
    assert r.returncode == 0 and "upgraded 1.0 → 2.0" in r.stdout, r.stderr
    rows = json.loads(exo("list", "--json").stdout)
    assert [(v["version"], v["traffic"], v["health"]) for v in rows[0]["versions"]] \
        == [("2.0", 100, "ok")]
    line = exo("list").stdout.splitlines()[1].split()
    assert line[:4] == ["echo", "ipc://echo", "2.0", "(100%)"]
    r = exo("rollback", "echo")
    assert r.returncode == 0 and "rolled back 2.0 → 1.0" in r.stdout, r.stderr
    r = exo("upgrade", "echo", "--version", "9.9")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "echo 9.9: no such module package" in r.stderr
    assert exo("unload", "echo").stdout == "echo unloaded\n"
    r = exo("unload", "echo")
    assert r.returncode == 1 and "no such module loaded" in r.stderr
