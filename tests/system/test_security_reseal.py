"""Kernel updates vs sealed secrets, on a real swtpm: a copy of the Exo sources is
booted (measured), one of its kernel files is changed as an update would, and
``exo tpm reseal`` re-seals the storage master to the PCR value the new code will
measure, before the reboot. Without it the next boot cannot unseal, and says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exo.security import tpm

SRC = Path(__file__).resolve().parents[2] / "src"
SECRET = b"storage master key, 32 bytes ok"


@pytest.fixture
def copy_env(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """(Exo tree, source copy, environment running that copy) with a swtpm for the tree."""
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm not installed (make setup installs it)")
    if os.path.exists(tpm.DEVICE):
        pytest.skip("a hardware TPM is present: these tests drive swtpm")
    src = tmp_path / "src"
    for pkg in ("exo", "exo_std"):
        shutil.copytree(SRC / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    root = tmp_path / "root"
    env = dict(os.environ, EXO_ROOT=str(root), PYTHONPATH=str(src))
    env.pop(tpm.ENV_SWITCH, None)
    info = tpm.start_swtpm(root)
    try:
        yield root, src, env
    finally:
        tpm.stop_swtpm(root)
        assert not Path(f"/proc/{info['pid']}").exists() or \
            b"swtpm" not in Path(f"/proc/{info['pid']}/cmdline").read_bytes()


def _exo(env: dict[str, str], *args: str, stdin: bytes = b""
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "exo", *args], env=env, input=stdin,
                          capture_output=True, timeout=120)


def _boot(env: dict[str, str], src: Path) -> None:
    r = _exo(env, "boot", "--json-boot")
    assert r.returncode == 0, r.stderr
    step = {s["name"]: s for s in json.loads(r.stdout)["steps"]}["Security"]
    assert step["status"] == "OK", step
    events = tpm.read_event_log(env["EXO_ROOT"])
    assert events[0]["name"] == "kernel"
    assert tpm.tree_digest(src / "exo" / "kernel").hex() == events[0]["digest"]  # the copy


def _update(src: Path, n: int) -> None:
    with open(src / "exo" / "kernel" / "bootlog.py", "a") as f:
        f.write(f"# update {n}\n")


def test_reseal_before_the_reboot_into_an_update(
        copy_env: tuple[Path, Path, dict[str, str]]) -> None:
    root, src, env = copy_env
    _boot(env, src)
    r = _exo(env, "tpm", "seal", "storage-master", stdin=SECRET)
    assert r.returncode == 0, r.stderr
    running = tpm.read_pcr(tpm.locate(root))  # type: ignore[arg-type]

    _update(src, 1)  # the update is installed; the old kernel still runs
    r = _exo(env, "tpm", "reseal", "storage-master")
    assert r.returncode == 0, r.stderr
    assert b"predicted for the code on disk" in r.stdout
    values = tpm.sealed_values(root, "storage-master")
    assert values is not None and len(values) == 2 and values[0] == running
    predicted = values[1]
    assert predicted != running
    r = _exo(env, "tpm", "unseal", "storage-master")  # before the reboot
    assert (r.returncode, r.stdout) == (0, SECRET), r.stderr

    _boot(env, src)  # the reboot: the new kernel is measured as predicted
    assert tpm.read_pcr(tpm.locate(root)) == predicted  # type: ignore[arg-type]
    r = _exo(env, "tpm", "unseal", "storage-master")
    assert (r.returncode, r.stdout) == (0, SECRET), r.stderr
    r = _exo(env, "tpm", "reseal", "storage-master")  # the old value is dropped
    assert r.returncode == 0 and b"what is running" in r.stdout, r.stderr
    assert tpm.sealed_values(root, "storage-master") == [predicted]

    _update(src, 2)  # a second update, rebooted without resealing: unseal fails, clearly
    _boot(env, src)
    r = _exo(env, "tpm", "unseal", "storage-master")
    assert r.returncode != 0 and r.stdout == b""
    assert r.stderr.count(b"\n") == 1, r.stderr
    assert b"a measured component changed" in r.stderr
    assert b"exo tpm reseal storage-master" in r.stderr


def test_reseal_needs_the_secret_to_unseal_now(
        copy_env: tuple[Path, Path, dict[str, str]]) -> None:
    """Resealing is no way around the policy: it unseals first, with the running
    kernel's PCR, so after an unsealed-for change it fails and changes nothing."""
    root, src, env = copy_env
    _boot(env, src)
    assert _exo(env, "tpm", "seal", "k", stdin=b"x").returncode == 0
    before = (root / "var" / "lib" / "sealed" / "k.json").read_bytes()
    _update(src, 1)
    _boot(env, src)  # rebooted into the update without resealing
    r = _exo(env, "tpm", "reseal", "k")
    assert r.returncode != 0 and b"unseal refused" in r.stderr
    assert (root / "var" / "lib" / "sealed" / "k.json").read_bytes() == before
