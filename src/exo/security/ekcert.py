"""The TPM's endorsement-key (EK) certificate: made for a development swtpm, read from any
TPM, checked against a manufacturer CA.

A hardware TPM leaves the factory with an EK certificate in NV index ``0x01C00002`` (RSA
2048 EK), signed by its manufacturer: it says "this key is in a genuine TPM". swtpm can be
*manufactured* the same way: ``swtpm_setup --create-ek-cert`` creates the EKs and has
``swtpm_localca`` sign their certificates with a local CA. ``manufacture`` does that for
a tree's fresh swtpm state, with the CA kept under ``var/lib/tpm-ca`` (0700) — the
development stand-in for a TPM vendor — and its certificates in ``var/lib/tpm/ek-ca.pem``,
which a verifier's policy names as ``ek_ca``.

What a verified EK certificate proves, and what it does not: the quote's
``ek_certificate`` chains to a CA the verifier trusts, so the TPM is one that CA made.
The attestation key is **not yet bound** to that EK (``TPM2_ActivateCredential``, a
challenge the verifier encrypts to the EK for the AK's name, is not built): the AK is
still trusted by pinning (docs/security.md).
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
