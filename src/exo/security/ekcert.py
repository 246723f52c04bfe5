"""The TPM's endorsement-key (EK) certificate: made for a development swtpm, read from any
TPM, checked against a manufacturer CA.

A hardware TPM leaves the factory with an EK certificate in NV index ``0x01C00002`` (RSA
2048 EK), signed by its manufacturer: it says "this key is in a genuine TPM". swtpm can be
*manufactured* the same way: ``swtpm_setup --create-ek-cert`` creates the EKs and has
``swtpm_localca`` sign their certificates with a local CA. ``manufacture`` does that for
a tree's fresh swtpm state, with the CA kept under ``var/lib/tpm-ca`` (0700) — the
development stand-in for a TPM vendor — and its certificates in ``var/lib/tpm/ek-ca.pem``,
which a verifier's policy names as ``ek_ca``.

A verified EK certificate says the TPM is one that CA made. The attestation key (AK)
that signs quotes is bound to that EK by ``TPM2_ActivateCredential``: the verifier
encrypts a fresh secret to the certified EK for the AK's TPM name (``challenge``, in
software: ``tpm2_pytss.utils.make_credential``), and only the TPM holding both keys can
recover it (``activate``). A quote by a key in another TPM cannot answer.
"""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from exo.security.tpm import Location

#: NV index of the RSA 2048 EK certificate (TCG EK Credential Profile).
RSA_EK_CERT_INDEX = 0x01C00002
_NV_CHUNK = 768  # below every TPM's MAX_NV_BUFFER_SIZE
_MAX_CERT = 4096


def ca_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "var" / "lib" / "tpm-ca"


def ca_bundle(root: str | os.PathLike[str]) -> Path:
    """The local CA's certificates (root, then issuer), PEM: what a policy trusts."""
    return Path(root) / "var" / "lib" / "tpm" / "ek-ca.pem"


def manufacture(root: str | os.PathLike[str], state: Path, timeout: float = 60.0) -> None:
    """Create a fresh swtpm state in ``state`` with EKs and their certificates signed by
    this tree's local CA (made on first use). ``TpmError`` when swtpm_setup fails."""
    import shutil
    import subprocess

    from exo.security.tpm import TpmError

    for tool in ("swtpm_setup", "swtpm_localca"):
        if shutil.which(tool) is None:
            raise TpmError(f"{tool} is not installed (Debian package swtpm-tools)")
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    ca = ca_dir(root)
    ca.mkdir(parents=True, exist_ok=True)
    os.chmod(ca, 0o700)
    conf, options, setup = ca / "localca.conf", ca / "localca.options", ca / "setup.conf"
    conf.write_text(f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\n"
                    f"issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n")
    options.write_text("--platform-manufacturer Exo-OS\n--platform-version 2.1\n"
                       "--platform-model swtpm\n")
    setup.write_text(f"create_certs_tool = {shutil.which('swtpm_localca')}\n"
                     f"create_certs_tool_config = {conf}\n"
                     f"create_certs_tool_options = {options}\n"
                     "active_pcr_banks = sha256\n")
    r = subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--config",
                        str(setup), "--create-ek-cert", "--create-platform-cert",
                        "--lock-nvram", "--not-overwrite"],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines()
               or [f"exit status {r.returncode}"])[-1]
        raise TpmError(f"swtpm_setup could not create the EK certificate: {why}")
    bundle = ca_bundle(root)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text((ca / "swtpm-localca-rootca-cert.pem").read_text()
                      + (ca / "issuercert.pem").read_text())


def read(location: Location) -> bytes | None:
    """The RSA EK certificate (DER) from the TPM's NV, or None when it has none."""
    from tpm2_pytss import TSS2_Exception

    from exo.security.tpm import esapi

    with esapi(location) as ctx:
        try:
            handle = ctx.tr_from_tpmpublic(RSA_EK_CERT_INDEX)
        except TSS2_Exception:
            return None  # no such index: a TPM without an EK certificate
        public, _name = ctx.nv_read_public(handle)
        size = int(public.nvPublic.dataSize)
        if not 0 < size <= _MAX_CERT:
            return None
        data = b""
        while len(data) < size:
            data += bytes(ctx.nv_read(handle, min(_NV_CHUNK, size - len(data)), len(data)))
    return data


def to_pem(der: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def check_chain(ek_pem: str, trusted_pem: str) -> str:
    """Verify that the EK certificate was issued, through the given intermediates, by a
    certificate in ``trusted_pem`` (a PEM bundle: the first is the root the verifier
    trusts; the others may be intermediates). Returns the EK certificate's issuer.
    ``VerifyError`` with the reason otherwise."""
    from cryptography import x509

    from exo.security.tpm import VerifyError

    try:
        ek = x509.load_pem_x509_certificate(ek_pem.encode())
        bundle = x509.load_pem_x509_certificates(trusted_pem.encode())
    except ValueError as exc:
        raise VerifyError(f"unreadable EK certificate or CA bundle: {exc}") from None
    if not bundle:
        raise VerifyError("the policy's ek_ca holds no certificate")
    root, intermediates = bundle[0], bundle[1:]
    cert = ek
    for _ in range(len(intermediates) + 1):
        if _issued_by(cert, root):
            return ek.issuer.rfc4514_string()
        parent = next((c for c in intermediates if _issued_by(cert, c)), None)
        if parent is None:
            break
        cert = parent
    raise VerifyError(f"the EK certificate (issuer {ek.issuer.rfc4514_string()}) does not "
                      "chain to the trusted EK CA: not a TPM this verifier trusts")


def _issued_by(cert: Any, issuer: Any) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# ------------------------------------------------------------ binding the AK to the EK


def _ek_template(modulus: int | None = None) -> Any:
    """The TCG default RSA 2048 EK template (what swtpm_setup and vendors use), with
    ``modulus`` as its public key when given (the verifier's copy, from the certificate)."""
    from tpm2_pytss.utils import NoSuchIndex, create_ek_template

    def none(index: int) -> bytes:
        raise NoSuchIndex(index)

    _index, template = create_ek_template("EK-RSA2048", none)
    if modulus is not None:
        template.publicArea.unique.rsa = modulus.to_bytes(256, "big")
    return template


def challenge(doc: dict[str, Any], trusted_ca: str) -> tuple[dict[str, Any], bytes]:
    """The verifier's half of ``TPM2_ActivateCredential``: check the quote's EK
    certificate against ``trusted_ca``, then encrypt a fresh secret to that EK for the
    quote's attestation key (by its TPM name). Only the TPM holding both keys can recover
    it (``activate``). Returns (the challenge for the attested host, the secret to keep).
    ``VerifyError`` when the quote does not carry what is needed."""
    import secrets

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from tpm2_pytss import TPM2B_PUBLIC
    from tpm2_pytss.utils import make_credential

    from exo.security.tpm import VerifyError

    ek_pem, ak_hex = doc.get("ek_certificate"), doc.get("ak_tpm_public")
    if not ek_pem or not ak_hex:
        raise VerifyError("the quote carries no EK certificate or no AK public area")
    check_chain(str(ek_pem), trusted_ca)
    ek_key = x509.load_pem_x509_certificate(str(ek_pem).encode()).public_key()
    if not isinstance(ek_key, rsa.RSAPublicKey) or ek_key.key_size != 2048:
        raise VerifyError("the EK certificate is not for an RSA 2048 EK")
    try:
        ak_public, _ = TPM2B_PUBLIC.unmarshal(bytes.fromhex(str(ak_hex)))
    except Exception as exc:  # any parse error of the library: reject in one line
        raise VerifyError(f"malformed AK public area: {exc}") from None
    from cryptography.hazmat.primitives import serialization

    pinned = serialization.load_pem_public_key(str(doc.get("ak_public", "")).encode())
    area = ak_public.publicArea.unique.ecc
    if not isinstance(pinned, ec.EllipticCurvePublicKey) or \
            pinned.public_numbers().x != int.from_bytes(bytes(area.x), "big") or \
            pinned.public_numbers().y != int.from_bytes(bytes(area.y), "big"):
        raise VerifyError("the AK public area is not the key that signed the quote")
    secret = secrets.token_bytes(32)
    blob, encrypted = make_credential(_ek_template(ek_key.public_numbers().n), secret,
                                      ak_public.get_name())
    return {"version": 1, "credential_blob": bytes(blob.marshal()).hex(),
            "encrypted_secret": bytes(encrypted.marshal()).hex()}, secret


def activate(location: Location, doc: dict[str, Any]) -> bytes:
    """The attested host's half: the TPM recovers the secret only if the credential was
    made for its own EK and its own attestation key."""
    from tpm2_pytss import (
        ESYS_TR,
        TPM2_ALG,
        TPM2_SE,
        TPM2B_ENCRYPTED_SECRET,
        TPM2B_ID_OBJECT,
        TPMT_SYM_DEF,
        TSS2_Exception,
    )

    from exo.security.tpm import TpmError, _ak_template, esapi

    try:
        blob, _ = TPM2B_ID_OBJECT.unmarshal(bytes.fromhex(str(doc["credential_blob"])))
        enc, _ = TPM2B_ENCRYPTED_SECRET.unmarshal(bytes.fromhex(str(doc["encrypted_secret"])))
    except Exception as exc:  # a malformed challenge of any kind: one line
        raise TpmError(f"malformed challenge: {exc}") from None
    with esapi(location) as ctx:
        handles = []
        try:
            ek, *_ = ctx.create_primary(None, _ek_template(), ESYS_TR.ENDORSEMENT)
            handles.append(ek)
            ak, *_ = ctx.create_primary(None, _ak_template(), ESYS_TR.ENDORSEMENT)
            handles.append(ak)
            session = ctx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                             TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                                             TPM2_ALG.SHA256)
            handles.append(session)
            ctx.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
            secret = ctx.activate_credential(ak, ek, blob, enc,
                                             session1=ESYS_TR.PASSWORD, session2=session)
        except TSS2_Exception as exc:
            raise TpmError(f"activation refused: {exc} (the challenge was made for "
                           "another TPM or another attestation key)") from None
        finally:
            for handle in handles:
                ctx.flush_context(handle)
    return bytes(secret)
