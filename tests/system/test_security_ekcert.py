"""EK certificates: a swtpm manufactured with one (swtpm_setup + the tree's local CA)
puts it in its quotes, and a verifier accepts it only if it chains to the CA it trusts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._support.kernels import swtpm_running

from exo.security import ekcert, tpm


def _swtpm(root: Path, ek_cert: bool) -> Iterator[Path]:
    with swtpm_running(root, ek_cert=ek_cert, needs=("swtpm", "swtpm_setup")):
        yield root


@pytest.fixture
def made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv(tpm.ENV_SWITCH, raising=False)
    yield from _swtpm(tmp_path / "made", ek_cert=True)


@pytest.fixture
def plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv(tpm.ENV_SWITCH, raising=False)
    yield from _swtpm(tmp_path / "plain", ek_cert=False)


def _check(root: Path, doc: dict[str, object], ca: str) -> None:
    policy = {"ek_ca": ca}
    tpm.verify_quote(doc, b"\x01" * 16, trusted_ak_pem=str(doc["ak_public"]), policy=policy)


def test_a_quote_carries_an_ek_certificate_that_chains_to_the_trees_ca(made: Path) -> None:
    doc = tpm.quote(made, b"\x01" * 16)
    assert str(doc["ek_certificate"]).startswith("-----BEGIN CERTIFICATE-----")
    _check(made, doc, ekcert.ca_bundle(made).read_text())


def test_another_ca_or_no_certificate_is_refused(made: Path, plain: Path) -> None:
    doc = tpm.quote(made, b"\x01" * 16)
    other = tpm.quote(plain, b"\x01" * 16)
    assert other["ek_certificate"] is None  # a TPM never manufactured has none
    with pytest.raises(tpm.VerifyError, match="requires an EK certificate"):
        _check(plain, other, ekcert.ca_bundle(made).read_text())
    # a CA of another tree (made here for the purpose) does not vouch for this TPM
    ekcert.manufacture(plain / "ca-only", plain / "ca-only-state")
    with pytest.raises(tpm.VerifyError, match="does not chain"):
        _check(made, doc, ekcert.ca_bundle(plain / "ca-only").read_text())


def _exo(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exo", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, EXO_ROOT=str(root)))


def test_the_ak_is_bound_to_the_certified_ek_by_credential_activation(
        made: Path, plain: Path, tmp_path: Path) -> None:
    nonce = "01" * 16
    quote, policy = tmp_path / "quote.json", tmp_path / "policy.json"
    doc = tpm.quote(made, bytes.fromhex(nonce))
    quote.write_text(json.dumps(doc))
    policy.write_text(json.dumps({"ek_ca": ekcert.ca_bundle(made).read_text(),
                                  "ak_public": doc["ak_public"]}))
    chal, keep, answer = tmp_path / "chal.json", tmp_path / "keep", tmp_path / "answer"
    r = _exo(made, "attest", "challenge", str(quote), "--policy", str(policy), "--out",
             str(chal), "--keep", str(keep))
    assert r.returncode == 0, r.stderr
    assert keep.stat().st_mode & 0o777 == 0o600
    # another TPM cannot answer a challenge made for this one's EK and AK
    other = _exo(plain, "attest", "activate", str(chal))
    assert other.returncode != 0 and "activation refused" in other.stderr
    assert other.stderr.count("\n") == 1
    got = _exo(made, "attest", "activate", str(chal))
    assert got.returncode == 0, got.stderr
    answer.write_text(got.stdout)
    ok = _exo(made, "attest", "verify", str(quote), "--nonce", nonce, "--policy", str(policy),
              "--ek-secret", str(keep), "--ek-answer", str(answer))
    assert ok.returncode == 0, ok.stderr
    assert "AK bound to that EK" in ok.stdout
    answer.write_text("00" * 32)
    bad = _exo(made, "attest", "verify", str(quote), "--nonce", nonce, "--policy",
               str(policy), "--ek-secret", str(keep), "--ek-answer", str(answer))
    assert bad.returncode != 0 and "could not recover the EK challenge" in bad.stderr
