"""The capability audit log's hash chain: intact, tampered, rotated, restarted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exo.kernel.caps.audit import GENESIS, AuditLog
from exo.security import auditchain

EXO = [sys.executable, "-m", "exo"]


def _verify(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EXO_ROOT=str(root))
    return subprocess.run([*EXO, "audit", "verify"], env=env, text=True, capture_output=True,
                          timeout=120)


def _fill(root: Path, n: int, **kwargs: int) -> AuditLog:
    log = AuditLog(root / "var" / "log" / "audit.jsonl", **kwargs)
    for i in range(n):
        log.record("grant", resource=f"storage://home/f{i}", rights="READ", handle=i)
    return log


def test_an_intact_chain_verifies(tmp_path: Path) -> None:
    _fill(tmp_path, 50).close()
    lines = (tmp_path / "var" / "log" / "audit.jsonl").read_bytes().splitlines()
    assert json.loads(lines[0])["prev"] == GENESIS
    r = _verify(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "intact: 50 records" in r.stdout


@pytest.mark.parametrize("tamper", ["remove", "alter", "reorder", "insert"])
def test_tampering_is_detected(tmp_path: Path, tamper: str) -> None:
    _fill(tmp_path, 20).close()
    path = tmp_path / "var" / "log" / "audit.jsonl"
    lines = path.read_bytes().splitlines()
    if tamper == "remove":
        del lines[7]
    elif tamper == "alter":
        lines[7] = lines[7].replace(b'"READ"', b'"READ,WRITE"')
    elif tamper == "reorder":
        lines[7], lines[8] = lines[8], lines[7]
    else:
        lines.insert(7, lines[3])
    path.write_bytes(b"\n".join(lines) + b"\n")
    r = _verify(tmp_path)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "audit chain BROKEN" in r.stderr


def test_the_chain_continues_across_rotation_and_restart(tmp_path: Path) -> None:
    _fill(tmp_path, 300, max_bytes=4096, keep=20).close()
    _fill(tmp_path, 10, max_bytes=4096, keep=20).close()  # a kernel restart
    files = auditchain.log_files(tmp_path)
    assert len(files) > 3
    report = auditchain.verify(files)
    assert report.ok and report.records == 310 and report.anchored, report.problems
    # a record removed in the middle of a rotated file is still caught
    middle = files[1]
    lines = middle.read_bytes().splitlines()
    middle.write_bytes(b"\n".join(lines[:3] + lines[4:]) + b"\n")
    assert not auditchain.verify(files).ok
    assert _verify(tmp_path).returncode != 0


def test_dropped_old_files_leave_an_unanchored_but_intact_chain(tmp_path: Path) -> None:
    _fill(tmp_path, 300, max_bytes=4096, keep=2).close()
    report = auditchain.verify(auditchain.log_files(tmp_path))
    assert report.ok and not report.anchored
    r = _verify(tmp_path)
    assert r.returncode == 0 and "older files rotated away" in r.stdout


def test_a_signed_head_catches_truncation(tmp_path: Path) -> None:
    if shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 not installed")
    _fill(tmp_path, 20).close()
    env = dict(os.environ, EXO_ROOT=str(tmp_path))
    env.pop("EXO_PKCS11_MODULE", None)
    r = subprocess.run([*EXO, "audit", "sign-head"], env=env, text=True, capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    ok = _verify(tmp_path)
    assert ok.returncode == 0 and "signed head verified" in ok.stdout
    path = tmp_path / "var" / "log" / "audit.jsonl"
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join(lines[:-1]) + b"\n")  # drop the newest record
    bad = _verify(tmp_path)
    assert bad.returncode != 0 and "signed head" in bad.stderr


def test_the_kernel_anchors_the_head_in_the_tpm(swtpm_root: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from exo.kernel.config import KernelConfig
    from exo.kernel.kernel import Kernel
    from exo.security import tpm

    monkeypatch.setenv("EXO_AUDIT_ANCHOR_S", "0.05")
    kernel = Kernel(KernelConfig(root=swtpm_root), ephemeral=True)
    kernel.boot()
    try:
        kernel.start_deferred()
        kernel.wait_deferred(60)
        security = next(s for s in kernel.report.steps if s.name == "Security")
        assert security.status.value == "OK", security.detail
        assert "audit head anchored in PCR 16" in security.detail
        import time

        for i in range(6):
            kernel.caps.audit.record("grant", resource=f"storage://home/x{i}", rights="READ")
            time.sleep(0.15)  # a few intervals: several anchors
    finally:
        kernel.shutdown()
    anchors = auditchain.read_anchors(swtpm_root)
    assert anchors, "nothing anchored"
    location = tpm.locate(swtpm_root)
    assert location is not None
    assert tpm.read_pcr(location, auditchain.ANCHOR_PCR) == \
        tpm.replay(anchors, auditchain.ANCHOR_PCR)
    ok = _verify(swtpm_root)
    assert ok.returncode == 0, ok.stderr
    assert "TPM anchors match PCR 16" in ok.stdout
    # truncating the log behind the last anchor is caught
    path = swtpm_root / "var" / "log" / "audit.jsonl"
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join(lines[:-1]) + b"\n")
    bad = _verify(swtpm_root)
    assert bad.returncode != 0 and "TPM anchor" in bad.stderr
    # and rewriting both logs does not get past the TPM's PCR
    path.write_bytes(b"\n".join(lines) + b"\n")
    forged = auditchain.read_anchors(swtpm_root)[:-1]
    auditchain.anchors_path(swtpm_root).write_text(
        "".join(json.dumps(a) + "\n" for a in forged))
    bad = _verify(swtpm_root)
    assert bad.returncode != 0 and "does not replay to PCR 16" in bad.stderr


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "dir-symlink"])
def test_a_link_planted_at_the_anchors_log_is_never_written_through(
        tmp_path: Path, plant: str) -> None:
    """An app granted ``var/log`` plants a link where the kernel (root) keeps its TPM
    anchors: the kernel refuses to rotate or write there, and the host file is intact."""
    root = tmp_path / "root"
    logs = root / "var" / "log"
    host = tmp_path / "host-file"
    host.write_text("precious\n")
    if plant == "dir-symlink":
        (root / "var").mkdir(parents=True)
        os.symlink(tmp_path, logs)
        host = tmp_path / "audit-anchors.jsonl"
        host.write_text("precious\n")
    else:
        logs.mkdir(parents=True)
        target = logs / "audit-anchors.jsonl"
        if plant == "symlink":
            os.symlink(host, target)
        else:
            os.link(host, target)
    with pytest.raises(OSError):
        auditchain._rotate_anchors(root)
    assert host.read_text() == "precious\n"
    assert not (tmp_path / "audit-anchors.jsonl.prev").exists()


def test_anchors_rotate_to_prev_and_start_empty(tmp_path: Path) -> None:
    logs = tmp_path / "var" / "log"
    logs.mkdir(parents=True)
    (logs / "audit-anchors.jsonl").write_text('{"n": 1}\n')
    auditchain._rotate_anchors(tmp_path)
    assert (logs / "audit-anchors.jsonl").read_text() == ""
    assert auditchain.read_anchors(tmp_path, previous=True) == [{"n": 1}]
