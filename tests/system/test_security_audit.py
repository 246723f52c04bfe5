"""The kernel signs the audit chain's head with an HSM key at intervals and at shutdown,
and extends it into PCR 16: `exo audit verify` then catches a removed, altered, appended
or re-signed tail, not only breaks inside the chain. Real swtpm and SoftHSM2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._support.kernels import deferred_kernel, swtpm_tree

from exo.kernel.caps.audit import AuditLog
from exo.security import auditchain

EXO = [sys.executable, "-m", "exo"]


def _verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXO, "audit", "verify"], text=True, capture_output=True,
                          timeout=120, env=dict(os.environ, EXO_ROOT=str(root)))


@pytest.fixture
def stopped_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tree whose kernel ran (anchoring every 50 ms) and shut down; swtpm still up."""
    root = tmp_path / "root"
    monkeypatch.setenv("EXO_AUDIT_ANCHOR_S", "0.05")
    with swtpm_tree(root, monkeypatch, hsm=True):
        with deferred_kernel(root) as kernel:
            assert kernel.caps.audit is not None
            for i in range(5):
                kernel.caps.audit.record("grant", resource=f"storage://home/x{i}",
                                         rights="READ")
                time.sleep(0.3)  # an anchor (and its HSM signature) between records
        yield root


def _log(root: Path) -> Path:
    return root / "var" / "log" / "audit.jsonl"


def test_the_kernel_signs_every_anchor_and_a_final_one(stopped_tree: Path) -> None:
    anchors = auditchain.read_anchors(stopped_tree)
    assert len(anchors) >= 2 and all("signature" in a for a in anchors)
    assert anchors[-1]["final"] is True and not any(a["final"] for a in anchors[:-1])
    ok = _verify(stopped_tree)
    assert ok.returncode == 0, ok.stderr
    assert f"{len(anchors)} anchors signed by the HSM key" in ok.stdout
    assert "TPM anchors match PCR 16" in ok.stdout


def test_a_record_appended_after_the_final_anchor_is_caught(stopped_tree: Path) -> None:
    log = AuditLog(_log(stopped_tree))  # chains properly to the last record
    log.record("grant", resource="storage://home/forged", rights="READ,WRITE")
    log.close()
    bad = _verify(stopped_tree)
    assert bad.returncode != 0
    assert "follow the kernel's final signed anchor" in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_a_removed_tail_is_caught(stopped_tree: Path) -> None:
    lines = _log(stopped_tree).read_bytes().splitlines()
    _log(stopped_tree).write_bytes(b"\n".join(lines[:-1]) + b"\n")
    bad = _verify(stopped_tree)
    assert bad.returncode != 0 and "no longer in the chain" in bad.stderr


def test_a_removed_tail_and_its_anchor_together_are_caught_by_the_tpm(stopped_tree: Path
                                                                     ) -> None:
    anchors = auditchain.read_anchors(stopped_tree)
    before_last = anchors[-2]
    lines = _log(stopped_tree).read_bytes().splitlines()
    import hashlib

    keep = next(i for i, ln in enumerate(lines)
                if hashlib.sha256(ln).hexdigest() == before_last["hash"])
    _log(stopped_tree).write_bytes(b"\n".join(lines[:keep + 1]) + b"\n")
    auditchain.anchors_path(stopped_tree).write_text(
        "".join(json.dumps(a) + "\n" for a in anchors[:-1]))
    bad = _verify(stopped_tree)
    assert bad.returncode != 0 and "does not replay to PCR 16" in bad.stderr


def test_an_altered_or_re_signed_anchor_is_caught(stopped_tree: Path) -> None:
    anchors = auditchain.read_anchors(stopped_tree)
    path = auditchain.anchors_path(stopped_tree)
    altered = [dict(a) for a in anchors]
    altered[0]["seq"] = int(altered[0]["seq"]) + 1
    path.write_text("".join(json.dumps(a) + "\n" for a in altered))
    bad = _verify(stopped_tree)
    assert bad.returncode != 0 and "HSM signature does not verify" in bad.stderr
    # signed again by a key of the forger's own: the token's key is the one trusted
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    forger = ed25519.Ed25519PrivateKey.generate()
    pem = forger.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    for a in altered:
        a["public_key"] = pem.decode()
        a["signature"] = forger.sign(auditchain.anchor_body(a)).hex()
    path.write_text("".join(json.dumps(a) + "\n" for a in altered))
    bad = _verify(stopped_tree)
    assert bad.returncode != 0 and "HSM signature does not verify" in bad.stderr
