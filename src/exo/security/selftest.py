"""Known-answer tests of every primitive the security core uses (``exo crypto selftest``).

A library that loads but computes wrong answers (a bad build, a mis-linked OpenSSL) must
be caught before its keys or signatures are trusted. Each test compares against published
vectors: SHA-256 (FIPS 180-2), Ed25519 (RFC 8032 §7.1 test 1), X25519 (RFC 7748 §6.1),
XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03 A.3.1), ML-DSA-65 and ML-KEM-768 (the
NIST-derived KATs of cryptography-vectors, in ``_kat_vectors``); the hybrids, built from
those, get a pairwise round trip and a tamper check.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

_h = bytes.fromhex


def _sha256() -> None:
    assert hashlib.sha256(b"abc").hexdigest() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def _ed25519() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    sk = ed25519.Ed25519PrivateKey.from_private_bytes(
        _h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert sk.public_key().public_bytes_raw() == _h(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert sk.sign(b"") == _h(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc6"
        "1e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")


def _x25519() -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    alice = x25519.X25519PrivateKey.from_private_bytes(
        _h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    bob_pub = x25519.X25519PublicKey.from_public_bytes(
        _h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
    assert alice.public_key().public_bytes_raw() == _h(
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert alice.exchange(bob_pub) == _h(
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def _xchacha20poly1305() -> None:
    from nacl.bindings import (
        crypto_aead_xchacha20poly1305_ietf_decrypt,
        crypto_aead_xchacha20poly1305_ietf_encrypt,
    )

    key = bytes(range(0x80, 0xA0))
    nonce = bytes(range(0x40, 0x58))
    aad = _h("50515253c0c1c2c3c4c5c6c7")
    msg = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
           b"for the future, sunscreen would be it.")
    expected = _h(
        "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa644"
        "0bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e"
        "3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
        "c0875924c1c7987947deafd8780acf49")
    assert crypto_aead_xchacha20poly1305_ietf_encrypt(msg, aad, nonce, key) == expected
    assert crypto_aead_xchacha20poly1305_ietf_decrypt(expected, aad, nonce, key) == msg
    # sealed files assemble it from HChaCha20 (libsodium) and ChaCha20-Poly1305 (OpenSSL)
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from exo.security.sealedfile import _hchacha20

    subkey = _hchacha20(key, nonce[:16])
    assert subkey is not None, "libsodium's crypto_core_hchacha20 cannot be called"
    assert ChaCha20Poly1305(subkey).encrypt(b"\0" * 4 + nonce[16:], msg, aad) == expected


def _ml_dsa_65() -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import mldsa

    from exo.security import _kat_vectors as v

    sk = mldsa.MLDSA65PrivateKey.from_seed_bytes(_h(v.MLDSA65_XI))
    pk = sk.public_key()
    assert hashlib.sha256(pk.public_bytes_raw()).hexdigest() == v.MLDSA65_PK_SHA256
    msg, ctx, sig = _h(v.MLDSA65_MSG), _h(v.MLDSA65_CTX), _h(v.MLDSA65_SIG)
    pk.verify(sig, msg, ctx)
    bad = bytearray(sig)
    bad[100] ^= 1
    try:
        pk.verify(bytes(bad), msg, ctx)
    except InvalidSignature:
        return
    raise AssertionError("a corrupted ML-DSA-65 signature verified")


def _ml_kem_768() -> None:
    from cryptography.hazmat.primitives.asymmetric import mlkem

    from exo.security import _kat_vectors as v

    sk = mlkem.MLKEM768PrivateKey.from_seed_bytes(_h(v.MLKEM768_D) + _h(v.MLKEM768_Z))
    assert hashlib.sha256(sk.public_key().public_bytes_raw()).hexdigest() == \
        v.MLKEM768_PK_SHA256
    ct = _h(v.MLKEM768_CT)
    assert sk.decapsulate(ct) == _h(v.MLKEM768_SS)
    bad = bytearray(ct)
    bad[0] ^= 1  # implicit rejection: a different, pseudo-random secret
    assert sk.decapsulate(bytes(bad)) != _h(v.MLKEM768_SS)


def _hybrid_signature() -> None:
    from exo.security import pq

    key = pq.HybridSigningKey.generate()
    pub = pq.HybridVerifyKey.from_bytes(key.public_key().to_bytes())
    sig = key.sign(b"message", b"selftest")
    pub.verify(sig, b"message", b"selftest")
    for tampered in (b"messagE", b"message"):
        ctx = b"selftest" if tampered != b"message" else b"other"
        try:
            pub.verify(sig, tampered, ctx)
        except pq.HybridError:
            continue
        raise AssertionError("a hybrid signature verified for another message or context")


def _hybrid_kem() -> None:
    from exo.security import pq

    key = pq.HybridKemPrivate.generate()
    secret, ct = pq.HybridKemPublic.from_bytes(key.public_key().to_bytes()).encapsulate()
    assert pq.HybridKemPrivate.from_bytes(key.to_bytes()).decapsulate(ct) == secret
    bad = bytearray(ct)
    bad[10] ^= 1  # in the X25519 half
    assert key.decapsulate(bytes(bad)) != secret


TESTS: list[tuple[str, Callable[[], None]]] = [
    ("SHA-256 (FIPS 180-2)", _sha256),
    ("Ed25519 (RFC 8032)", _ed25519),
    ("X25519 (RFC 7748)", _x25519),
    ("XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha)", _xchacha20poly1305),
    ("ML-DSA-65 (FIPS 204 KAT)", _ml_dsa_65),
    ("ML-KEM-768 (FIPS 203 KAT)", _ml_kem_768),
    ("hybrid Ed25519+ML-DSA-65 (pairwise)", _hybrid_signature),
    ("hybrid X25519+ML-KEM-768 (pairwise)", _hybrid_kem),
]


def run() -> list[dict[str, object]]:
    """Every test's name, whether it passed, what failed, and how long it took."""
    results: list[dict[str, object]] = []
    for name, test in TESTS:
        t0 = time.perf_counter()
        try:
            test()
            ok, error = True, ""
        except Exception as exc:  # a failed vector of any kind is a result, not a crash
            ok, error = False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        results.append({"test": name, "ok": ok, "error": error,
                        "ms": round((time.perf_counter() - t0) * 1000, 3)})
    return results
