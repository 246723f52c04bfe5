"""Repository metadata signed by hybrid keys in the HSM (SoftHSM2 through PKCS#11): no
key file in .keys, clients verify both halves, a forged signature is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.pkg.exocli import exo


def test_hsm_signed_repository(tmp_path: Path, env: dict[str, str]) -> None:
    if shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 not installed (make setup installs it)")
    for name in ("repo-root", "repo-online"):
        exo("keys", "create", name, "--type", "hybrid", cwd=tmp_path, env=env)
    r = exo("repo", "init", "./repo", "--root-key", "hsm:repo-root", "--online-key",
            "hsm:repo-online", cwd=tmp_path, env=env)
    assert "root key: HSM repo-root; online key: HSM repo-online" in r.stdout
    keys = tmp_path / "repo" / ".keys"
    assert sorted(p.name for p in keys.iterdir()) == ["signers.json"]  # no private key
    root_md = json.loads((tmp_path / "repo/metadata/1.root.json").read_text())["signed"]
    assert {k["keytype"] for k in root_md["keys"].values()} == {"exo-hybrid"}
    assert root_md["roles"]["root"]["keyids"] != root_md["roles"]["targets"]["keyids"]

    exo("new", "hello", cwd=tmp_path, env=env)
    exo("build", cwd=tmp_path / "hello", env=env)
    exo("publish", "--repo", "../repo", cwd=tmp_path / "hello", env=env)
    exo("repo", "add", "local", "./repo", cwd=tmp_path, env=env)
    exo("install", "-y", "hello", cwd=tmp_path, env=env)
    out = subprocess.run([str(tmp_path / "exo-root/exo/bin/hello")], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout == "Hello, world, from hello!\n"

    # a new timestamp whose hybrid signature has one byte changed: refused
    ts_path = tmp_path / "repo/metadata/timestamp.json"
    ts = json.loads(ts_path.read_text())
    ts["signed"]["version"] += 1
    sig = ts["signatures"][0]["sig"]
    ts["signatures"][0]["sig"] = sig[:-2] + ("00" if sig[-2:] != "00" else "01")
    ts_path.write_text(json.dumps(ts))
    r = exo("search", "hello", cwd=tmp_path, env=env, ok=False)
    assert r.returncode == 1 and "does not verify" in r.stderr

    r = exo("repo", "init", "./other", "--root-key", "hsm:nope", cwd=tmp_path, env=env,
            ok=False)
    assert r.returncode == 1 and "nope" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "other" / ".keys").exists()
