"""Post-quantum hybrids: signatures Ed25519 + ML-DSA-65, key exchange X25519 + ML-KEM-768.

A hybrid holds as long as either half does: a signature verifies only when both halves
verify, and the shared secret needs both shared secrets. Implementations are
``cryptography``'s (OpenSSL 3.5: ML-DSA per FIPS 204, ML-KEM per FIPS 203).

Encoding, version 1 (every object is self-describing and fixed-length; lengths in bytes):

====================  =======================================================  ======
object                layout                                                   length
====================  =======================================================  ======
signing public key    ``EXO1`` 0x01 · Ed25519 pk (32) · ML-DSA-65 pk (1952)      1989
signing private key   ``EXO1`` 0x81 · Ed25519 seed (32) · ML-DSA-65 seed (32)      69
signature             ``EXO1`` 0x02 · Ed25519 sig (64) · ML-DSA-65 sig (3309)    3378
KEM public key        ``EXO1`` 0x03 · X25519 pk (32) · ML-KEM-768 ek (1184)      1221
KEM private key       ``EXO1`` 0x83 · X25519 sk (32) · ML-KEM-768 seed (64)       101
KEM ciphertext        ``EXO1`` 0x04 · X25519 ephemeral pk (32) · ML-KEM ct (1088) 1125
====================  =======================================================  ======

Both signature halves sign the same bound message ``"exo-hybrid-sig-v1" 0x00 ·
len(context) (1 byte) · context · message``, so a half cannot be lifted into another
protocol or context. The ML-DSA half also gets ``context`` as its FIPS 204 context
string. The hybrid shared secret is X-Wing's combiner with our label:
``SHA3-256("exo-hybrid-kem-v1" · ss_mlkem · ss_x25519 · ct_x25519 · pk_x25519)``.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa, mlkem, x25519

MAGIC = b"EXO1"
SIG_PUB, SIG_SIG, KEM_PUB, KEM_CT = 0x01, 0x02, 0x03, 0x04
SIG_PRIV, KEM_PRIV = 0x81, 0x83
_SIG_DOMAIN = b"exo-hybrid-sig-v1\x00"
_KEM_LABEL = b"exo-hybrid-kem-v1"

ED_PK, ED_SIG, MLDSA_PK, MLDSA_SIG, SEED = 32, 64, 1952, 3309, 32
X_PK, MLKEM_EK, MLKEM_CT, MLKEM_SEED = 32, 1184, 1088, 64


class HybridError(ValueError):
    """A malformed hybrid object, or a signature that does not verify."""


def _parse(data: bytes, kind: int, *sizes: int) -> list[bytes]:
    """Split ``data`` (MAGIC, kind byte, then fields of ``sizes``) or raise."""
    if len(data) != 5 + sum(sizes) or data[:4] != MAGIC:
        raise HybridError(f"not a version-1 Exo hybrid object of type 0x{kind:02x}")
    if data[4] != kind:
        raise HybridError(f"hybrid object of type 0x{data[4]:02x}, expected 0x{kind:02x}")
    fields, off = [], 5
    for size in sizes:
        fields.append(data[off:off + size])
        off += size
    return fields


def _bound(message: bytes, context: bytes) -> bytes:
    if len(context) > 255:
        raise HybridError("a context is at most 255 bytes")
    return _SIG_DOMAIN + bytes([len(context)]) + context + message


def bound_message(message: bytes, context: bytes = b"") -> bytes:
    """What both halves of a hybrid signature sign (for signers that hold the halves in
    different places, such as an HSM's Ed25519 key and a wrapped ML-DSA seed)."""
    return _bound(message, context)


def assemble_signature(ed_sig: bytes, ml_sig: bytes) -> bytes:
    """A hybrid signature from its two halves, each over ``bound_message``."""
    if len(ed_sig) != ED_SIG or len(ml_sig) != MLDSA_SIG:
        raise HybridError("signature halves of the wrong length")
    return MAGIC + bytes([SIG_SIG]) + ed_sig + ml_sig


def assemble_public(ed_pk: bytes, ml_pk: bytes) -> bytes:
    """A hybrid public key (encoded) from the raw public halves."""
    _parse(MAGIC + bytes([SIG_PUB]) + ed_pk + ml_pk, SIG_PUB, ED_PK, MLDSA_PK)
    return MAGIC + bytes([SIG_PUB]) + ed_pk + ml_pk


_ARMOR = "EXO HYBRID PUBLIC KEY"


def armor(public: bytes) -> str:
    """An encoded hybrid public key as PEM-style text (base64 between markers)."""
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(public).decode(), 64))
    return f"-----BEGIN {_ARMOR}-----\n{body}\n-----END {_ARMOR}-----\n"


def dearmor(text: str) -> bytes | None:
    """The encoded key inside ``armor``'s text; None when ``text`` is not one."""
    import base64
    import binascii

    lines = [ln.strip() for ln in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != f"-----BEGIN {_ARMOR}-----" or \
            lines[-1] != f"-----END {_ARMOR}-----":
        return None
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        return None


# ------------------------------------------------------------------- signatures


class HybridSigningKey:
    """Ed25519 + ML-DSA-65 private key, both from 32-byte seeds."""

    __slots__ = ("_ed", "_ml")

    def __init__(self, ed: ed25519.Ed25519PrivateKey, ml: mldsa.MLDSA65PrivateKey) -> None:
        self._ed = ed
        self._ml = ml

    @classmethod
    def generate(cls) -> HybridSigningKey:
        return cls(ed25519.Ed25519PrivateKey.generate(), mldsa.MLDSA65PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes) -> HybridSigningKey:
        ed_seed, ml_seed = _parse(data, SIG_PRIV, SEED, SEED)
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(ed_seed),
                   mldsa.MLDSA65PrivateKey.from_seed_bytes(ml_seed))

    def to_bytes(self) -> bytes:
        return (MAGIC + bytes([SIG_PRIV]) + self._ed.private_bytes_raw()
                + self._ml.private_bytes_raw())

    def public_key(self) -> HybridVerifyKey:
        return HybridVerifyKey(self._ed.public_key(), self._ml.public_key())

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        bound = _bound(message, context)
        return (MAGIC + bytes([SIG_SIG]) + self._ed.sign(bound)
                + self._ml.sign(bound, context or None))


class HybridVerifyKey:
    """Ed25519 + ML-DSA-65 public key."""

    __slots__ = ("_ed", "_ml")

    def __init__(self, ed: ed25519.Ed25519PublicKey, ml: mldsa.MLDSA65PublicKey) -> None:
        self._ed = ed
        self._ml = ml

    @classmethod
    def from_bytes(cls, data: bytes) -> HybridVerifyKey:
        ed_pk, ml_pk = _parse(data, SIG_PUB, ED_PK, MLDSA_PK)
        return cls(ed25519.Ed25519PublicKey.from_public_bytes(ed_pk),
                   mldsa.MLDSA65PublicKey.from_public_bytes(ml_pk))

    def to_bytes(self) -> bytes:
        return (MAGIC + bytes([SIG_PUB]) + self._ed.public_bytes_raw()
                + self._ml.public_bytes_raw())

    def fingerprint(self) -> str:
        """SHA-256 of the encoded key, hex: how people and policies name a key."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def verify(self, signature: bytes, message: bytes, context: bytes = b"") -> None:
        """Raise ``HybridError`` unless both halves verify."""
        ed_sig, ml_sig = _parse(signature, SIG_SIG, ED_SIG, MLDSA_SIG)
        bound = _bound(message, context)
        try:
            self._ed.verify(ed_sig, bound)
        except InvalidSignature:
            raise HybridError("hybrid signature: the Ed25519 half does not verify") from None
        try:
            self._ml.verify(ml_sig, bound, context or None)
        except InvalidSignature:
            raise HybridError("hybrid signature: the ML-DSA-65 half does not verify") from None


# ---------------------------------------------------------------- key exchange


def _combine(ss_ml: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    return hashlib.sha3_256(_KEM_LABEL + ss_ml + ss_x + ct_x + pk_x).digest()


class HybridKemPublic:
    """X25519 + ML-KEM-768 encapsulation key."""

    __slots__ = ("_ml", "_x")

    def __init__(self, x: x25519.X25519PublicKey, ml: mlkem.MLKEM768PublicKey) -> None:
        self._x = x
        self._ml = ml

    @classmethod
    def from_bytes(cls, data: bytes) -> HybridKemPublic:
        x_pk, ml_ek = _parse(data, KEM_PUB, X_PK, MLKEM_EK)
        return cls(x25519.X25519PublicKey.from_public_bytes(x_pk),
                   mlkem.MLKEM768PublicKey.from_public_bytes(ml_ek))

    def to_bytes(self) -> bytes:
        return MAGIC + bytes([KEM_PUB]) + self._x.public_bytes_raw() + self._ml.public_bytes_raw()

    def encapsulate(self) -> tuple[bytes, bytes]:
        """(shared secret of 32 bytes, ciphertext to send)."""
        eph = x25519.X25519PrivateKey.generate()
        ct_x = eph.public_key().public_bytes_raw()
        ss_x = eph.exchange(self._x)
        ss_ml, ct_ml = self._ml.encapsulate()
        secret = _combine(ss_ml, ss_x, ct_x, self._x.public_bytes_raw())
        return secret, MAGIC + bytes([KEM_CT]) + ct_x + ct_ml


class HybridKemPrivate:
    """X25519 + ML-KEM-768 decapsulation key."""

    __slots__ = ("_ml", "_x")

    def __init__(self, x: x25519.X25519PrivateKey, ml: mlkem.MLKEM768PrivateKey) -> None:
        self._x = x
        self._ml = ml

    @classmethod
    def generate(cls) -> HybridKemPrivate:
        return cls(x25519.X25519PrivateKey.generate(), mlkem.MLKEM768PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes) -> HybridKemPrivate:
        x_sk, ml_seed = _parse(data, KEM_PRIV, X_PK, MLKEM_SEED)
        return cls(x25519.X25519PrivateKey.from_private_bytes(x_sk),
                   mlkem.MLKEM768PrivateKey.from_seed_bytes(ml_seed))

    def to_bytes(self) -> bytes:
        return (MAGIC + bytes([KEM_PRIV]) + self._x.private_bytes_raw()
                + self._ml.private_bytes_raw())

    def public_key(self) -> HybridKemPublic:
        return HybridKemPublic(self._x.public_key(), self._ml.public_key())

    def decapsulate(self, ciphertext: bytes) -> bytes:
        ct_x, ct_ml = _parse(ciphertext, KEM_CT, X_PK, MLKEM_CT)
        ss_x = self._x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
        ss_ml = self._ml.decapsulate(ct_ml)
        return _combine(ss_ml, ss_x, ct_x, self._x.public_key().public_bytes_raw())
