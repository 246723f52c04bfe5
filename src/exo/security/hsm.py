"""Signing keys in an HSM through PKCS#11 (python-pkcs11); SoftHSM2 for development.

Keys are generated inside the token as non-extractable, sensitive private keys: only
their public halves and signatures ever leave it. SoftHSM2's token lives under the Exo
tree (``var/lib/hsm``, its own ``softhsm2.conf``), created on first use with a random user
PIN kept beside it (mode 0600): a development token, protected by file permissions only
(docs/security.md). A hardware module is used instead when ``EXO_PKCS11_MODULE`` names
its library (``EXO_HSM_TOKEN`` its label, ``EXO_HSM_PIN`` its PIN).

A file key (PEM under ``var/lib/keys``) exists only when asked for explicitly
(``exo keys create --file-key``), with a warning: the private key is then on disk.

Key types: ``ed25519`` (CKM_EDDSA), ``p256`` (ECDSA: SoftHSM2 refuses
CKM_ECDSA_SHA256, so the message is hashed here and signed with CKM_ECDSA), and
``hybrid`` (Ed25519 + ML-DSA-65, ``exo.security.pq``): PKCS#11 tokens have no ML-DSA
mechanism, so the Ed25519 half is a token key as above and the ML-DSA-65 seed is stored in
the token wrapped by a non-extractable AES-256 token key (AES-GCM); it is unwrapped inside
the token and exists in this process's memory only while signing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

SOFTHSM_LIBS = ("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
TOKEN_LABEL = "exo"
KEY_TYPES = ("ed25519", "p256", "hybrid")
_ED25519_OID = "1.3.101.112"


class HsmError(Exception):
    """A key operation failed; the message is one line meant for the user."""


class HsmConfig:
    """Which PKCS#11 module, token and PIN; SoftHSM2 under the Exo tree by default."""

    __slots__ = ("conf", "module", "pin", "root", "softhsm", "token", "token_dir")

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        base = self.root / "var" / "lib" / "hsm"
        self.conf = base / "softhsm2.conf"
        self.token_dir = base / "tokens"
        module = os.environ.get("EXO_PKCS11_MODULE")
        self.softhsm = module is None
        self.module = module or next((p for p in SOFTHSM_LIBS if os.path.exists(p)), "")
        self.token = os.environ.get("EXO_HSM_TOKEN", TOKEN_LABEL)
        self.pin = os.environ.get("EXO_HSM_PIN", "")

    def pin_file(self) -> Path:
        return self.conf.parent / "user.pin"


def _ensure_softhsm_token(cfg: HsmConfig) -> None:
    """Create the development token (and its config) on first use."""
    import subprocess

    if not cfg.module:
        raise HsmError("no PKCS#11 module: install softhsm2 or set EXO_PKCS11_MODULE")
    cfg.token_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.conf.parent, 0o700)
    if not cfg.conf.exists():
        cfg.conf.write_text(f"directories.tokendir = {cfg.token_dir}\n"
                            "objectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(cfg.conf)
    pin_file = cfg.pin_file()
    if pin_file.exists() and any(cfg.token_dir.iterdir()):
        cfg.pin = cfg.pin or pin_file.read_text().strip()
        return
    pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    r = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", cfg.token,
                        "--pin", pin, "--so-pin", so_pin],
                       env=dict(os.environ), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise HsmError(f"cannot create the SoftHSM2 token: {r.stderr.strip() or r.stdout}")
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pin + "\n")
    cfg.pin = pin


_initialised_conf: str | None = None


@contextlib.contextmanager
def session(root: str | os.PathLike[str]) -> Iterator[Any]:
    """A read-write user session on the Exo token."""
    import pkcs11

    cfg = HsmConfig(root)
    if cfg.softhsm:
        _ensure_softhsm_token(cfg)
    global _initialised_conf
    try:
        lib = pkcs11.lib(cfg.module)  # one per process: SoftHSM2 reads its config once
        if cfg.softhsm and _initialised_conf not in (None, str(cfg.conf)):
            lib.reinitialize()  # another Exo tree's token was in use in this process
        _initialised_conf = str(cfg.conf) if cfg.softhsm else None
        token = lib.get_token(token_label=cfg.token)
    except (pkcs11.PKCS11Error, RuntimeError) as exc:
        raise HsmError(f"token {cfg.token!r} not available: {type(exc).__name__} {exc}") \
            from None
    with token.open(rw=True, user_pin=cfg.pin) as sess:
        yield sess


def _find(sess: Any, name: str, cls: Any) -> Any:
    from pkcs11 import Attribute

    found = list(sess.get_objects({Attribute.CLASS: cls, Attribute.LABEL: name}))
    return found[0] if found else None


def create(root: str | os.PathLike[str], name: str, key_type: str = "ed25519") -> str:
    """Generate a key pair in the token; returns its public key (PEM). The private key
    is sensitive and non-extractable: it can sign, never be read."""
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    _check(name, key_type)
    with session(root) as sess:
        if _find(sess, name, ObjectClass.PRIVATE_KEY) is not None:
            raise HsmError(f"a key named {name!r} already exists in the token")
        private_template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                            Attribute.SIGN: True, Attribute.TOKEN: True}
        public_template = {Attribute.VERIFY: True, Attribute.TOKEN: True}
        if key_type in ("ed25519", "hybrid"):
            params = sess.create_domain_parameters(
                KeyType.EC_EDWARDS,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(_ED25519_OID)}, local=True)
            mechanism = Mechanism.EC_EDWARDS_KEY_PAIR_GEN
        else:
            params = sess.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True)
            mechanism = Mechanism.EC_KEY_PAIR_GEN
        public, _private = params.generate_keypair(
            mechanism=mechanism, store=True, label=name,
            public_template=public_template, private_template=private_template)
        if key_type == "hybrid":
            return _create_mldsa_half(sess, name, public)
        return _public_pem(public, key_type)


def _raw_ec_point(public: Any) -> bytes:
    from pkcs11 import Attribute

    point = bytes(public[Attribute.EC_POINT])
    if point[:1] == b"\x04" and len(point) in (34, 67):  # DER OCTET STRING wrapping it
        point = point[2:]
    return point


def _seed_aad(name: str) -> bytes:
    return b"exo-hybrid-mldsa-seed-v1:" + name.encode()


def _create_mldsa_half(sess: Any, name: str, ed_public: Any) -> str:
    """Wrap a fresh ML-DSA-65 seed with a new token AES key; store the wrapped seed and
    the hybrid public key as token data objects. Returns the armored public key."""
    from cryptography.hazmat.primitives.asymmetric import mldsa
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
    from pkcs11.mechanisms import GCMParams

    from exo.security import pq

    wrap = sess.generate_key(KeyType.AES, 256, label=f"{name}.wrap", store=True, template={
        Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
        Attribute.ENCRYPT: True, Attribute.DECRYPT: True})
    seed = os.urandom(32)
    iv = os.urandom(12)
    wrapped = wrap.encrypt(seed, mechanism=Mechanism.AES_GCM,
                           mechanism_param=GCMParams(iv, _seed_aad(name)))
    ml_pub = mldsa.MLDSA65PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()
    del seed
    public = pq.assemble_public(_raw_ec_point(ed_public), ml_pub)
    sess.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: f"{name}.mldsa",
                        Attribute.VALUE: iv + bytes(wrapped), Attribute.TOKEN: True,
                        Attribute.PRIVATE: True})
    sess.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: f"{name}.pub",
                        Attribute.VALUE: public, Attribute.TOKEN: True,
                        Attribute.PRIVATE: False})
    return pq.armor(public)


def _hybrid_public(sess: Any, name: str) -> bytes | None:
    from pkcs11 import Attribute, ObjectClass

    obj = _find(sess, f"{name}.pub", ObjectClass.DATA)
    return bytes(obj[Attribute.VALUE]) if obj is not None else None


def _public_pem(public: Any, key_type: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    point = _raw_ec_point(public)
    key: Any
    if key_type in ("ed25519", "hybrid"):
        key = ed25519.Ed25519PublicKey.from_public_bytes(point)
    else:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    pem: bytes = key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def _key_type(obj: Any) -> str:
    from pkcs11 import Attribute, KeyType

    return "ed25519" if obj[Attribute.KEY_TYPE] == KeyType.EC_EDWARDS else "p256"


def list_keys(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every key pair in the token (name, type, public key fingerprint), and the file keys."""
    from pkcs11 import Attribute, ObjectClass

    from exo.security import pq

    rows: list[dict[str, Any]] = []
    with session(root) as sess:
        for obj in list(sess.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})):
            kind = _key_type(obj)
            pem = _public_pem(obj, kind)
            hybrid = _hybrid_public(sess, obj.label) if kind == "ed25519" else None
            if hybrid is not None:
                kind, pem = "hybrid", pq.armor(hybrid)
            private = _find(sess, obj.label, ObjectClass.PRIVATE_KEY)
            rows.append({"name": obj.label, "type": kind, "where": "hsm",
                         "extractable": bool(private[Attribute.EXTRACTABLE]) if private
                         else None,
                         "fingerprint": hashlib.sha256(pem.encode()).hexdigest()[:16]})
    for path in sorted(_file_key_dir(root).glob("*.pem")):
        pem = _load_file_key(path).public_key().public_bytes(
            _enc().PEM, _fmt().SubjectPublicKeyInfo).decode()
        rows.append({"name": path.stem, "type": "ed25519", "where": "file",
                     "extractable": True,
                     "fingerprint": hashlib.sha256(pem.encode()).hexdigest()[:16]})
    return sorted(rows, key=lambda r: (r["name"], r["where"]))


def public_key(root: str | os.PathLike[str], name: str) -> str:
    """The public key (PEM) of the token's key ``name``."""
    from pkcs11 import ObjectClass

    with session(root) as sess:
        obj = _find(sess, name, ObjectClass.PUBLIC_KEY)
        if obj is None:
            raise HsmError(f"no key named {name!r} in the token")
        hybrid = _hybrid_public(sess, name)
        if hybrid is not None:
            from exo.security import pq

            return pq.armor(hybrid)
        return _public_pem(obj, _key_type(obj))


def sign(root: str | os.PathLike[str], name: str, message: bytes,
         context: bytes = b"") -> bytes:
    """Sign inside the token. Ed25519: the signature (64 bytes). P-256: DER ECDSA over
    SHA-256(message) (hashed here, signed with CKM_ECDSA). Hybrid: ``pq``'s encoding, the
    Ed25519 half by the token, the ML-DSA half by the seed the token unwraps."""
    from pkcs11 import Mechanism, ObjectClass
    from pkcs11.util.ec import encode_ecdsa_signature

    with session(root) as sess:
        key = _find(sess, name, ObjectClass.PRIVATE_KEY)
        if key is None:
            raise HsmError(f"no key named {name!r} in the token")
        if _hybrid_public(sess, name) is not None:
            return _sign_hybrid(sess, name, key, message, context)
        if _key_type(key) == "ed25519":
            return bytes(key.sign(message, mechanism=Mechanism.EDDSA))
        raw = key.sign(hashlib.sha256(message).digest(), mechanism=Mechanism.ECDSA)
        return bytes(encode_ecdsa_signature(raw))


def _sign_hybrid(sess: Any, name: str, ed_key: Any, message: bytes, context: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import mldsa
    from pkcs11 import Attribute, Mechanism, ObjectClass, PKCS11Error
    from pkcs11.mechanisms import GCMParams

    from exo.security import pq

    wrap = _find(sess, f"{name}.wrap", ObjectClass.SECRET_KEY)
    blob = _find(sess, f"{name}.mldsa", ObjectClass.DATA)
    if wrap is None or blob is None:
        raise HsmError(f"hybrid key {name!r} is incomplete in the token")
    value = bytes(blob[Attribute.VALUE])
    try:
        seed = bytes(wrap.decrypt(value[12:], mechanism=Mechanism.AES_GCM,
                                  mechanism_param=GCMParams(value[:12], _seed_aad(name))))
    except PKCS11Error:
        raise HsmError(f"hybrid key {name!r}: the wrapped ML-DSA seed fails "
                       "authentication") from None
    bound = pq.bound_message(message, context)
    ml_sig = mldsa.MLDSA65PrivateKey.from_seed_bytes(seed).sign(bound, context or None)
    del seed
    ed_sig = bytes(ed_key.sign(bound, mechanism=Mechanism.EDDSA))
    return pq.assemble_signature(ed_sig, ml_sig)


def verify(public_pem: str, signature: bytes, message: bytes, context: bytes = b"") -> bool:
    """Check a signature made by ``sign`` (or a file key) against a public key (PEM, or
    an armored hybrid key)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from exo.security import pq

    hybrid = pq.dearmor(public_pem)
    if hybrid is not None:
        try:
            pq.HybridVerifyKey.from_bytes(hybrid).verify(signature, message, context)
        except pq.HybridError:
            return False
        return True
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


# ---------------------------------------------------------------- file-key fallback


def _enc() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding


def _fmt() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.PublicFormat


def _file_key_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "var" / "lib" / "keys"


def _load_file_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def create_file_key(root: str | os.PathLike[str], name: str) -> str:
    """An Ed25519 key on disk (mode 0600): only on explicit request, for hosts without a
    token. Returns the public key (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    _check(name, "ed25519")
    directory = _file_key_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{name}.pem"
    if path.exists():
        raise HsmError(f"a file key named {name!r} already exists")
    key = ed25519.Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    pem: bytes = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def sign_with_file_key(root: str | os.PathLike[str], name: str, message: bytes) -> bytes:
    path = _file_key_dir(root) / f"{name}.pem"
    if not path.exists():
        raise HsmError(f"no file key named {name!r}")
    signature: bytes = _load_file_key(path).sign(message)
    return signature


def _check(name: str, key_type: str) -> None:
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(
            ".", "").isalnum():
        raise HsmError(f"bad key name {name!r} (letters, digits, '.', '-', '_'; ≤ 64)")
    if key_type not in KEY_TYPES:
        raise HsmError(f"unknown key type {key_type!r} (known: {', '.join(KEY_TYPES)})")
