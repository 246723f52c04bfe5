"""Who signs a repository's TUF metadata: key files, or a hybrid key in the HSM.

A repository's roles are signed either

* by **files** (the default, as ``exo repo init`` always did): per role group (root,
  online) an Ed25519 and an ML-DSA-65 key in ``.keys/``, both required (threshold 2);
* or by an **HSM key** (``--root-key hsm:NAME`` / ``--online-key hsm:NAME``): one hybrid
  Ed25519 + ML-DSA-65 key made by ``exo keys create NAME --type hybrid``, whose Ed25519
  half never leaves the token and whose ML-DSA seed the token unwraps only to sign. TUF
  sees one key of type ``exo-hybrid``, whose signature verifies only when both halves
  do (``exo.security.pq``), so the role needs threshold 1 — the same "both algorithms"
  rule as the file keys.

``.keys/signers.json`` records which (and the Exo tree whose token holds the HSM key).
Importing this module registers the ``exo-hybrid`` key type with ``securesystemslib``,
so every client that reads metadata (``exo.pkg.repo``) can verify such signatures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import KEY_FOR_TYPE_AND_SCHEME, Key, Signature, Signer

from exo.pkg import PkgError
from exo.security import pq

KEYTYPE = "exo-hybrid"
SCHEME = "ed25519+ml-dsa-65"
CONTEXT = b"exo-tuf-metadata-v1"
GROUPS = ("root", "online")


class KeyConfigError(PkgError):
    """A repository signing key that cannot be found or used."""


class HybridTufKey(Key):
    """A TUF public key whose signatures are ``exo.security.pq`` hybrid signatures."""

    @classmethod
    def from_public(cls, public: bytes) -> HybridTufKey:
        import hashlib

        from securesystemslib.formats import encode_canonical

        keyval = {"public": public.hex()}
        body = {"keytype": KEYTYPE, "scheme": SCHEME, "keyval": keyval}
        canonical = str(encode_canonical(body))
        keyid = hashlib.sha256(canonical.encode()).hexdigest()
        return cls(keyid, KEYTYPE, SCHEME, keyval)

    @classmethod
    def from_dict(cls, keyid: str, key_dict: dict[str, Any]) -> HybridTufKey:
        keytype, scheme, keyval = (key_dict.pop(k) for k in ("keytype", "scheme", "keyval"))
        if not isinstance(keyval, dict) or not isinstance(keyval.get("public"), str):
            raise ValueError("exo-hybrid key needs keyval.public")
        return cls(keyid, keytype, scheme, keyval, key_dict)

    def to_dict(self) -> dict[str, Any]:
        return {"keytype": self.keytype, "scheme": self.scheme, "keyval": self.keyval,
                **self.unrecognized_fields}

    def verify_signature(self, signature: Signature, data: bytes) -> None:
        try:
            key = pq.HybridVerifyKey.from_bytes(bytes.fromhex(self.keyval["public"]))
            key.verify(bytes.fromhex(signature.signature), data, CONTEXT)
        except (ValueError, pq.HybridError) as exc:
            raise UnverifiedSignatureError(
                f"exo-hybrid signature by {self.keyid[:16]} does not verify: {exc}") from None


KEY_FOR_TYPE_AND_SCHEME[(KEYTYPE, SCHEME)] = HybridTufKey


class HsmTufSigner(Signer):
    """Signs TUF metadata with a hybrid key in the PKCS#11 token."""

    def __init__(self, exo_root: Path, name: str) -> None:
        from exo.security import hsm

        self._root, self._name = exo_root, name
        try:
            public = pq.dearmor(hsm.public_key(exo_root, name))
        except hsm.HsmError as exc:
            raise KeyConfigError(f"HSM key {name!r}: {exc}") from None
        if public is None:
            raise KeyConfigError(f"HSM key {name!r} is not a hybrid key "
                                 "(exo keys create NAME --type hybrid)")
        self._public = HybridTufKey.from_public(public)

    @property
    def public_key(self) -> Key:
        return self._public

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key,
                          secrets_handler: Any = None) -> Signer:
        raise ValueError("HsmTufSigner is made from .keys/signers.json, not a URI")

    def sign(self, payload: bytes) -> Signature:
        from exo.security import hsm

        try:
            sig = hsm.sign(self._root, self._name, payload, CONTEXT)
        except hsm.HsmError as exc:
            raise KeyConfigError(f"HSM key {self._name!r}: {exc}") from None
        return Signature(self._public.keyid, sig.hex())


def parse_spec(spec: str | None) -> str | None:
    """``hsm:NAME`` (checked) or None for key files."""
    if spec is None or spec == "file":
        return None
    kind, _, name = spec.partition(":")
    if kind != "hsm" or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise KeyConfigError(f"bad repository key {spec!r} (expected hsm:NAME, or leave it "
                             "out for key files)")
    return name


def write_config(keys: Path, exo_root: Path, hsm: dict[str, str | None]) -> None:
    config = {g: ({"hsm": hsm[g], "exo_root": str(exo_root)} if hsm.get(g) else "file")
              for g in GROUPS}
    (keys / "signers.json").write_text(json.dumps(config, indent=1))


def signers(keys: Path, group: str) -> list[Any]:
    """The signers of ``group`` ("root" or "online") for this repository."""
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.signer import CryptoSigner

    try:
        config = json.loads((keys / "signers.json").read_text())
    except FileNotFoundError:
        config = {}  # repositories made before HSM keys: files
    except ValueError as exc:
        raise KeyConfigError(f"{keys / 'signers.json'}: {exc}") from None
    entry = config.get(group, "file")
    if isinstance(entry, dict):
        return [HsmTufSigner(Path(entry["exo_root"]), entry["hsm"])]
    out = []
    for algo in ("ed25519", "mldsa"):
        path = keys / f"{group}-{algo}.pem"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), None)
        except FileNotFoundError:
            raise KeyConfigError(f"{path}: missing (this repository's {group} keys are "
                                 "not here)") from None
        out.append(CryptoSigner(key))
    return out


def generate_files(keys: Path, group: str) -> None:
    """Fresh Ed25519 and ML-DSA-65 key files for ``group`` (mode 0600)."""
    import os

    from securesystemslib.signer import CryptoSigner

    for algo, gen in (("ed25519", CryptoSigner.generate_ed25519),
                      ("mldsa", CryptoSigner.generate_mldsa)):
        signer = gen()
        fd = os.open(keys / f"{group}-{algo}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signer.private_bytes)
