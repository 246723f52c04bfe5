"""HSM keys on a real SoftHSM2 token (created in a temp dir), PQ hybrids, self-tests."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from exo.security import pq, selftest

EXO = [sys.executable, "-m", "exo"]


def _exo(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EXO_ROOT=str(root))
    env.pop("EXO_PKCS11_MODULE", None)
    return subprocess.run([*EXO, *args], env=env, text=True, capture_output=True, timeout=120)


@pytest.fixture
def hsm_root(tmp_path: Path) -> Path:
    if shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 not installed (make setup installs it)")
    return tmp_path / "root"


def test_keys_live_in_the_token_and_sign(hsm_root: Path) -> None:
    for name, kind in (("packages", "ed25519"), ("modules", "p256")):
        r = _exo("keys", "create", name, "--type", kind, root=hsm_root)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    dup = _exo("keys", "create", "packages", root=hsm_root)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    listed = json.loads(_exo("keys", "list", "--json", root=hsm_root).stdout)
    assert [(k["name"], k["type"], k["where"], k["extractable"]) for k in listed] == [
        ("modules", "p256", "hsm", False), ("packages", "ed25519", "hsm", False)]
    # no private key material anywhere outside the token's own object store
    tokens = hsm_root / "var" / "lib" / "hsm"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o700
    assert not (hsm_root / "var" / "lib" / "keys").exists()
    # sign inside the token, verify outside it; a tampered file is refused
    from exo.security import hsm

    message = hsm_root / "pkg.exopkg"
    message.write_bytes(b"package archive")
    for name in ("packages", "modules"):
        r = _exo("keys", "sign", name, str(message), root=hsm_root)
        assert r.returncode == 0, r.stderr
        pem = hsm.public_key(hsm_root, name)
        assert hsm.verify(pem, bytes.fromhex(r.stdout.strip()), b"package archive")
        assert not hsm.verify(pem, bytes.fromhex(r.stdout.strip()), b"package archivE")


def test_file_keys_need_the_flag_and_warn(hsm_root: Path) -> None:
    r = _exo("keys", "create", "dev", "--file-key", root=hsm_root)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "not in an HSM" in r.stderr
    key = hsm_root / "var" / "lib" / "keys" / "dev.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    listed = json.loads(_exo("keys", "list", "--json", root=hsm_root).stdout)
    assert [(k["name"], k["where"]) for k in listed] == [("dev", "file")]


def test_bad_key_names_and_types_fail_in_one_line(hsm_root: Path) -> None:
    r = _exo("keys", "create", "../evil", root=hsm_root)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "bad key name" in r.stderr


def test_crypto_selftest_passes() -> None:
    results = selftest.run()
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    assert len(results) == 8
    r = subprocess.run([*EXO, "crypto", "selftest"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.count("[ok  ]") == 8


def test_hybrid_signatures() -> None:
    key = pq.HybridSigningKey.generate()
    pub = key.public_key()
    sig = key.sign(b"module v2", b"exo-module")
    assert len(sig) == 3378 and len(pub.to_bytes()) == 1989 and len(key.to_bytes()) == 69
    pq.HybridVerifyKey.from_bytes(pub.to_bytes()).verify(sig, b"module v2", b"exo-module")
    again = pq.HybridSigningKey.from_bytes(key.to_bytes())
    assert again.public_key().to_bytes() == pub.to_bytes()
    with pytest.raises(pq.HybridError, match="Ed25519 half"):
        pub.verify(sig, b"module v3", b"exo-module")
    with pytest.raises(pq.HybridError):
        pub.verify(sig, b"module v2", b"exo-package")  # another context
    # each half is checked: a valid Ed25519 half with a broken ML-DSA half fails
    broken = bytearray(sig)
    broken[-1] ^= 1
    with pytest.raises(pq.HybridError, match="ML-DSA-65 half"):
        pub.verify(bytes(broken), b"module v2", b"exo-module")
    with pytest.raises(pq.HybridError, match="version-1"):
        pub.verify(b"EXO2" + sig[4:], b"module v2", b"exo-module")


def test_hybrid_kem() -> None:
    key = pq.HybridKemPrivate.generate()
    secret, ct = key.public_key().encapsulate()
    assert len(secret) == 32 and len(ct) == 1125
    assert pq.HybridKemPrivate.from_bytes(key.to_bytes()).decapsulate(ct) == secret
    other = pq.HybridKemPrivate.generate()
    assert other.decapsulate(ct) != secret
    with pytest.raises(pq.HybridError):
        key.decapsulate(ct[:-1])


def test_a_hybrid_key_signs_with_both_halves_held_by_the_token(hsm_root: Path) -> None:
    from exo.security import hsm

    r = _exo("keys", "create", "releases", "--type", "hybrid", root=hsm_root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("-----BEGIN EXO HYBRID PUBLIC KEY-----")
    listed = json.loads(_exo("keys", "list", "--json", root=hsm_root).stdout)
    assert [(k["name"], k["type"], k["extractable"]) for k in listed] == [
        ("releases", "hybrid", False)]
    public = pq.HybridVerifyKey.from_bytes(pq.dearmor(r.stdout) or b"")
    message = hsm_root / "module.wasm"
    message.write_bytes(b"module bytes")
    s = _exo("keys", "sign", "releases", str(message), root=hsm_root)
    assert s.returncode == 0, s.stderr
    sig = bytes.fromhex(s.stdout.strip())
    public.verify(sig, b"module bytes")  # both halves, pq's encoding
    assert hsm.verify(r.stdout, sig, b"module bytes")
    assert not hsm.verify(r.stdout, sig, b"module bytez")
    # the seed's wrapping key cannot be read out of the token
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    with hsm.session(hsm_root) as sess:
        wrap = next(iter(sess.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                           Attribute.LABEL: "releases.wrap"})))
        assert wrap[Attribute.EXTRACTABLE] is False and wrap[Attribute.SENSITIVE] is True
        with pytest.raises(pkcs11.PKCS11Error):
            wrap[Attribute.VALUE]  # reading it must fail
