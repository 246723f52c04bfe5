"""Package signatures: hybrid Ed25519 + ML-DSA-65 (``exo.security.pq``).

A signature verifies only when both halves verify, so a package stays authentic as long
as either algorithm holds. Signing keys are either a file key (``file:NAME``, the pq
private encoding, mode 0600 under ``<root>/var/lib/pkg/keys``) for hosts without a token,
or a hybrid key in the HSM (``hsm:NAME``, made by ``exo keys create NAME --type hybrid``)
whose Ed25519 half never leaves the token.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from exo.pkg import PkgError
from exo.security import pq

CONTEXT = b"exopkg-header-v1"
DEFAULT_KEY = "file:default"


class SignatureError(PkgError):
    """A signature that does not verify, or a signer nobody trusts."""


class Signer(Protocol):
    public: bytes

    def sign(self, message: bytes) -> bytes: ...


class FileSigner:
    """A hybrid key kept in a file: for development hosts without an HSM."""

    def __init__(self, key: pq.HybridSigningKey) -> None:
        self._key = key
        self.public = key.public_key().to_bytes()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message, CONTEXT)


class HsmSigner:
    """A hybrid key in the PKCS#11 token (``exo.security.hsm``)."""

    def __init__(self, root: Path, name: str) -> None:
        from exo.security import hsm

        self._root, self._name = root, name
        public = pq.dearmor(hsm.public_key(root, name))
        if public is None:
            raise SignatureError(f"HSM key {name!r} is not a hybrid key "
                                 "(exo keys create NAME --type hybrid)")
        self.public = public

    def sign(self, message: bytes) -> bytes:
        from exo.security import hsm

        return hsm.sign(self._root, self._name, message, CONTEXT)


def key_dir(root: Path) -> Path:
    return root / "var" / "lib" / "pkg" / "keys"


def load_signer(root: Path, spec: str | None = None) -> Signer:
    """``hsm:NAME`` or ``file:NAME`` (default ``file:default``, created on first use)."""
    spec = spec or os.environ.get("EXO_PKG_KEY") or DEFAULT_KEY
    kind, _, name = spec.partition(":")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise SignatureError(f"bad signing key {spec!r} (expected file:NAME or hsm:NAME)")
    if kind == "hsm":
        try:
            return HsmSigner(root, name)
        except SignatureError:
            raise
        except Exception as exc:
            raise SignatureError(f"HSM key {name!r}: {exc}") from None
    if kind != "file":
        raise SignatureError(f"bad signing key {spec!r} (expected file:NAME or hsm:NAME)")
    path = key_dir(root) / f"{name}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pq.HybridSigningKey.generate().to_bytes())
    try:
        return FileSigner(pq.HybridSigningKey.from_bytes(path.read_bytes()))
    except pq.HybridError as exc:
        raise SignatureError(f"signing key {path}: {exc}") from None


def fingerprint(public: bytes) -> str:
    try:
        return pq.HybridVerifyKey.from_bytes(public).fingerprint()
    except pq.HybridError as exc:
        raise SignatureError(f"signer key: {exc}") from None


def verify(public: bytes, signature: bytes, message: bytes) -> str:
    """Check both halves; return the signer's fingerprint."""
    try:
        key = pq.HybridVerifyKey.from_bytes(public)
        key.verify(signature, message, CONTEXT)
    except pq.HybridError as exc:
        raise SignatureError(f"bad signature: {exc}") from None
    return key.fingerprint()
