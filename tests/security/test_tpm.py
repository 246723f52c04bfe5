"""TPM on a real swtpm: lifecycle, measured boot, quotes and their verification, sealing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exo.security import tpm

EXO = [sys.executable, "-m", "exo"]


def _exo(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EXO_ROOT=str(root))
    return subprocess.run([*EXO, *args], env=env, text=True, capture_output=True, timeout=120)


def _components(*names: str) -> list[tuple[str, str, bytes]]:
    return [("subsystem", n, tpm.extend(tpm.ZERO, n.encode())) for n in names]


def test_start_status_stop_through_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "root"
    r = _exo("tpm", "start", root=root)
    assert r.returncode == 0, r.stderr
    try:
        assert "swtpm running" in r.stdout
        info = tpm.swtpm_info(root)
        assert info is not None
        again = _exo("tpm", "start", root=root)  # idempotent: the same swtpm
        assert again.returncode == 0 and f"pid {info['pid']}" in again.stdout
        status = _exo("tpm", "status", "--json", root=root)
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["tpm"] == "swtpm" and data["pid"] == info["pid"]
        assert data["pcr_value"] == "00" * 32
        assert (root / "var" / "lib" / "tpm").is_dir()
    finally:
        stop = _exo("tpm", "stop", root=root)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert tpm.swtpm_info(root) is None
    assert not Path(f"/proc/{info['pid']}").exists() or \
        b"swtpm" not in Path(f"/proc/{info['pid']}/cmdline").read_bytes()
    status = _exo("tpm", "status", root=root)
    assert "no TPM" in status.stdout


def test_measuring_replays_to_the_pcr(swtpm_root: Path) -> None:
    location = tpm.locate(swtpm_root)
    assert location is not None and location.kind == "swtpm"
    count, value = tpm.measure(swtpm_root, _components("a", "b", "c"), location)
    assert count == 3
    assert tpm.read_pcr(location) == value == tpm.replay(tpm.read_event_log(swtpm_root))
    # a new measured session resets the PCR: the same components give the same value
    tpm.measure(swtpm_root, _components("a", "b", "c"), location)
    assert tpm.read_pcr(location) == value
    tpm.measure(swtpm_root, _components("a", "B", "c"), location)
    assert tpm.read_pcr(location) != value


def test_boot_measures_the_kernel_and_each_subsystem(swtpm_root: Path) -> None:
    r = subprocess.run([*EXO, "boot", "--json-boot"], env=dict(os.environ), text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    steps = {s["name"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["Security"]["status"] == "OK", steps["Security"]
    assert "measured into PCR 23" in steps["Security"]["detail"]
    events = tpm.read_event_log(swtpm_root)
    names = [e["name"] for e in events]
    assert names[0] == "kernel" and names[-1] == "Security"
    assert {"Memory pool", "Capability space", "Syscall server"} <= set(names)
    location = tpm.locate(swtpm_root)
    assert location is not None
    assert tpm.read_pcr(location) == tpm.replay(events)
    log = _exo("attest", "log", root=swtpm_root)
    assert log.returncode == 0 and "TPM: matches the replay" in log.stdout


def test_a_file_changed_since_it_was_hashed_is_hashed_again(tmp_path: Path) -> None:
    """The digest cache (IMA-like) re-hashes a file whose content changed even when its
    size and mtime were put back, and a file replaced by another; a stale or forged entry
    whose stat key does not match is never used."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.py").write_text("A = 1\n")
    (tree / "sub" / "b.py").write_text("B = 2\n")
    cache_path = tmp_path / "digests.json"

    def digest() -> bytes:
        cache = tpm.DigestCache(cache_path)
        got = tpm.tree_digest(tree, cache)
        cache.save()
        assert got == tpm.tree_digest(tree)  # always what hashing everything gives
        return got

    first = digest()
    assert digest() == first
    st = (tree / "a.py").stat()
    (tree / "a.py").write_text("A = 7\n")  # same size; mtime put back
    os.utime(tree / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    second = digest()
    assert second != first
    (tree / "new.py").write_text("B = 9\n")
    os.replace(tree / "new.py", tree / "sub" / "b.py")  # another inode
    assert digest() not in (first, second)
    data = json.loads(cache_path.read_text())  # forge every entry's digest
    for entry in data["files"].values():
        entry[2] += 1  # a wrong size: the key no longer matches
        entry[5] = "00" * 32
    cache_path.write_text(json.dumps(data))
    assert digest() == tpm.tree_digest(tree)


def test_every_boot_logs_every_component(swtpm_root: Path) -> None:
    """With the digests cached after the first boot, the next boot still extends and logs
    every component, to the same PCR value."""
    logs = []
    for _ in range(2):
        r = subprocess.run([*EXO, "boot", "--json-boot"], env=dict(os.environ), text=True,
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        logs.append([(e["name"], e["digest"]) for e in tpm.read_event_log(swtpm_root)])
    assert logs[0] == logs[1] and len(logs[1]) >= 5
    cache = swtpm_root / "var" / "lib" / "tpm" / "digests.json"
    assert cache.exists() and cache.parent.stat().st_mode & 0o077 == 0
    location = tpm.locate(swtpm_root)
    assert location is not None
    assert tpm.read_pcr(location) == tpm.replay(tpm.read_event_log(swtpm_root))


def test_boot_without_a_tpm_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.path.exists(tpm.DEVICE):
        pytest.skip("a hardware TPM is present")
    env = dict(os.environ, EXO_ROOT=str(tmp_path / "root"))
    env.pop(tpm.ENV_SWITCH, None)
    r = subprocess.run([*EXO, "boot", "--json-boot"], env=env, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    step = {s["name"]: s for s in json.loads(r.stdout)["steps"]}["Security"]
    assert step["status"] == "SKIP"
    assert "no TPM" in step["detail"] and "swtpm not running" in step["detail"]
    events = tpm.read_event_log(tmp_path / "root")  # kept in an event log either way
    assert events and all(e["tpm"] is None for e in events)


@pytest.fixture
def quoted(swtpm_root: Path) -> tuple[Path, Path]:
    """A measured boot's quote over nonce 00..1f, written by the CLI."""
    location = tpm.locate(swtpm_root)
    tpm.measure(swtpm_root, _components("kernel", "Memory pool", "Security"), location)
    out = swtpm_root / "quote.json"
    r = _exo("attest", "quote", "--nonce", bytes(range(32)).hex(), "--out", str(out),
             root=swtpm_root)
    assert r.returncode == 0, r.stderr
    return swtpm_root, out


NONCE = bytes(range(32)).hex()


def test_a_quote_verifies(quoted: tuple[Path, Path]) -> None:
    root, out = quoted
    r = _exo("attest", "verify", str(out), "--nonce", NONCE, root=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("verified: PCR 23")


def test_a_stale_nonce_is_rejected(quoted: tuple[Path, Path]) -> None:
    root, out = quoted
    r = _exo("attest", "verify", str(out), "--nonce", "ff" * 32, root=root)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "nonce mismatch" in r.stderr


def test_a_forged_event_log_is_rejected(quoted: tuple[Path, Path]) -> None:
    root, out = quoted
    doc = json.loads(out.read_text())
    doc["event_log"][1]["digest"] = "ab" * 32  # hide a changed component
    out.write_text(json.dumps(doc))
    r = _exo("attest", "verify", str(out), "--nonce", NONCE, root=root)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "do not replay" in r.stderr
    doc["event_log"].pop(1)  # or drop it
    out.write_text(json.dumps(doc))
    assert _exo("attest", "verify", str(out), "--nonce", NONCE, root=root).returncode != 0


def test_the_quote_covers_the_audit_anchors(quoted: tuple[Path, Path]) -> None:
    root, out = quoted
    doc = json.loads(out.read_text())
    assert doc["pcrs"] == [16, 23]
    doc["audit_anchors"] = [{"n": 1, "pcr": 16, "seq": 1, "hash": "ab" * 32,
                             "digest": "ab" * 32}]  # claim an audit head never anchored
    out.write_text(json.dumps(doc))
    r = _exo("attest", "verify", str(out), "--nonce", NONCE, root=root)
    assert r.returncode != 0 and "PCRs 16 and 23" in r.stderr


def test_a_tampered_signature_or_foreign_key_is_rejected(quoted: tuple[Path, Path]) -> None:
    root, out = quoted
    doc = json.loads(out.read_text())
    attest = bytearray.fromhex(doc["attest"])
    attest[-1] ^= 1
    out.write_text(json.dumps(dict(doc, attest=attest.hex())))
    r = _exo("attest", "verify", str(out), "--nonce", NONCE, root=root)
    assert r.returncode != 0 and "bad signature" in r.stderr
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    policy = root / "policy.json"
    policy.write_text(json.dumps({"ak_public": other}))
    out.write_text(json.dumps(doc))
    r = _exo("attest", "verify", str(out), "--nonce", NONCE, "--policy", str(policy),
             root=root)
    assert r.returncode != 0 and "does not trust" in r.stderr


def test_the_policy_is_checked(quoted: tuple[Path, Path]) -> None:
    root, out = quoted
    policy = root / "policy.json"
    r = _exo("attest", "policy", "--out", str(policy), root=root)
    assert r.returncode == 0, r.stderr
    ok = _exo("attest", "verify", str(out), "--nonce", NONCE, "--policy", str(policy),
              root=root)
    assert ok.returncode == 0, ok.stderr
    pol = json.loads(policy.read_text())
    pol["components"]["Memory pool"] = "cd" * 32  # the verifier expects other code
    policy.write_text(json.dumps(pol))
    bad = _exo("attest", "verify", str(out), "--nonce", NONCE, "--policy", str(policy),
               root=root)
    assert bad.returncode != 0 and "'Memory pool'" in bad.stderr


def test_seal_unseal_and_a_changed_component(swtpm_root: Path) -> None:
    location = tpm.locate(swtpm_root)
    tpm.measure(swtpm_root, _components("kernel", "Security"), location)
    tpm.seal(swtpm_root, "master", b"storage master key 32 bytes long")
    assert tpm.unseal(swtpm_root, "master") == b"storage master key 32 bytes long"
    # the next boot of the same code: same PCR, the secret comes back
    tpm.measure(swtpm_root, _components("kernel", "Security"), location)
    assert tpm.unseal(swtpm_root, "master") == b"storage master key 32 bytes long"
    # a changed component: the TPM refuses
    tpm.measure(swtpm_root, _components("kernel (modified)", "Security"), location)
    with pytest.raises(tpm.UnsealError, match="a measured component changed"):
        tpm.unseal(swtpm_root, "master")


def test_seal_and_unseal_through_the_cli(swtpm_root: Path) -> None:
    location = tpm.locate(swtpm_root)
    tpm.measure(swtpm_root, _components("kernel"), location)
    env = dict(os.environ, EXO_ROOT=str(swtpm_root))
    r = subprocess.run([*EXO, "tpm", "seal", "k"], input=b"s3cret", env=env,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*EXO, "tpm", "unseal", "k"], env=env, capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout == b"s3cret"
    tpm.measure(swtpm_root, _components("kernel", "extra"), location)
    r = subprocess.run([*EXO, "tpm", "unseal", "k"], env=env, capture_output=True, timeout=120)
    assert r.returncode != 0 and r.stdout == b""
    assert r.stderr.count(b"\n") == 1 and b"a measured component changed" in r.stderr


MEASURE_HARNESS = """
import json, sys
from exo.cli import main
sys.argv = ["exo", "boot", "--json-boot"]
try:
    main()
except SystemExit:
    pass
sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def test_measuring_loads_no_heavy_library(swtpm_root: Path) -> None:
    # the Security step speaks the three TPM commands itself: tpm2-pytss alone costs
    # ~100 ms to import, five times what measuring may add to a boot
    r = subprocess.run([sys.executable, "-c", MEASURE_HARNESS], env=dict(os.environ),
                       text=True, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("MODULES "))
    loaded = set(json.loads(line.removeprefix("MODULES ")))
    assert "exo.security.subsystem" in loaded
    steps = {s["name"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["Security"]["status"] == "OK"
    heavy = ("tpm2_pytss", "pkcs11", "cryptography", "nacl", "cffi", "click", "rich")
    assert sorted(m for m in loaded if m.split(".")[0] in heavy) == []


def test_the_software_policy_digest_is_the_tpm_s(swtpm_root: Path) -> None:
    """``pcr_policy_digest`` (used to seal to a predicted value) computes what the TPM's
    own trial session gives for the current value."""
    location = tpm.locate(swtpm_root)
    assert location is not None
    tpm.measure(swtpm_root, _components("kernel", "Security"), location)
    with tpm.esapi(location) as ctx:
        trial = tpm._pcr_policy_session(ctx, trial=True)
        try:
            digest = bytes(ctx.policy_get_digest(trial))
        finally:
            ctx.flush_context(trial)
    assert digest == tpm.pcr_policy_digest(tpm.read_pcr(location))


def test_sealed_to_the_running_and_the_next_kernel(swtpm_root: Path) -> None:
    """Sealed to two PCR values (PolicyOR): both boots unseal, a third does not, and its
    error says what to do."""
    location = tpm.locate(swtpm_root)
    old, new = _components("kernel v1", "Security"), _components("kernel v2", "Security")
    tpm.measure(swtpm_root, old, location)
    tpm.seal(swtpm_root, "master", b"k" * 32)
    tpm.seal(swtpm_root, "master", b"k" * 32,
             pcr_values=[tpm.replay(tpm.read_event_log(swtpm_root)),
                         tpm.replay([{"pcr": tpm.PCR, "digest": d.hex()} for *_, d in new])])
    assert tpm.unseal(swtpm_root, "master") == b"k" * 32  # before the reboot
    tpm.measure(swtpm_root, new, location)
    assert tpm.unseal(swtpm_root, "master") == b"k" * 32  # after it
    tpm.measure(swtpm_root, _components("kernel v3", "Security"), location)
    with pytest.raises(tpm.UnsealError, match="exo tpm reseal master"):
        tpm.unseal(swtpm_root, "master")
    with pytest.raises(tpm.TpmError, match="1 to 8"):
        tpm.seal(swtpm_root, "x", b"k", pcr_values=[bytes([i]) * 32 for i in range(9)])
    assert sorted(p.name for p in (swtpm_root / "var" / "lib" / "sealed").iterdir()) == \
        ["master.json"]  # no temporary left
