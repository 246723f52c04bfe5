"""Verifying the capability audit log's hash chain, and signing its head.

``exo.kernel.caps.audit`` writes each record with ``prev`` = SHA-256 of the previous line
(``GENESIS`` for the first). Here the chain is walked across the rotated files, oldest
first (``audit.jsonl.3`` … ``.1``, ``audit.jsonl``): a removed, altered, inserted or
reordered record makes some ``prev`` disagree. A chain can only vouch for what follows its
first record, and its last record has no successor to vouch for it; so the head (count,
last hash) can be signed with an HSM key (``sign_head``), and ``verify`` then also checks
that the signed head is in the chain. When rotation has dropped the oldest file, the
chain starts at a record whose ``prev`` cannot be checked: reported, not an error.

While a TPM is present, the kernel also **anchors** the head in it (``Anchors``, run by
the Security subsystem): every ``ANCHOR_INTERVAL`` seconds and at shutdown, if the head
moved, it extends the head's hash into ``ANCHOR_PCR`` and appends it to
``var/log/audit-anchors.jsonl``. ``verify`` then checks every anchored head is still in
the chain, and that the anchor log replays to the TPM's PCR (rewriting the audit log and
its anchor log together does not get past the TPM).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
HEAD_VERSION = 1
#: The PCR audit heads are extended into (reset at each measured boot, like PCR 23);
#: ``exo.security.tpm.AUDIT_PCR`` (quotes cover it).
ANCHOR_PCR = 16
ANCHOR_INTERVAL = 60.0


class ChainReport:
    """The outcome of a verification: ``ok`` and what was found."""

    __slots__ = ("anchored", "anchors_checked", "files", "hashes", "head", "head_checked",
                 "problems", "records")

    def __init__(self) -> None:
        self.records = 0
        self.files: list[str] = []
        self.problems: list[str] = []
        self.anchored = True  # the first record chains to GENESIS (nothing rotated away)
        self.head = GENESIS
        self.head_checked = False
        self.anchors_checked = 0
        self.hashes: dict[str, int] = {}  # each record's hash → its position in the chain

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "files": self.files,
                "anchored": self.anchored, "head": self.head,
                "signed_head_checked": self.head_checked,
                "tpm_anchors_checked": self.anchors_checked, "problems": self.problems}


def log_files(root: str | os.PathLike[str]) -> list[Path]:
    """The main audit stream's files, oldest first."""
    base = Path(root) / "var" / "log" / "audit.jsonl"
    older = sorted((p for p in base.parent.glob("audit.jsonl.*") if p.suffix[1:].isdigit()),
                   key=lambda p: -int(p.suffix[1:]))
    return [*older, base] if base.exists() else older


def verify(files: list[Path], head: dict[str, Any] | None = None) -> ChainReport:
    """Walk the chain through ``files`` (oldest first)."""
    report = ChainReport()
    prev: str | None = None
    hashes = report.hashes
    for path in files:
        report.files.append(str(path))
        data = path.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop()  # after the last newline: empty, or a torn last write
        if torn:
            report.problems.append(f"{path.name}: ends with an incomplete record")
        for number, line in enumerate(lines, 1):
            where = f"{path.name} line {number}"
            try:
                rec = json.loads(line)
                claimed = rec["prev"]
                seq = rec.get("seq")
            except (ValueError, KeyError, TypeError):
                report.problems.append(f"{where}: not a chained audit record")
                prev = None
                continue
            if prev is None and report.records == 0:
                report.anchored = claimed == GENESIS
            elif claimed != prev:
                report.problems.append(
                    f"{where} (seq {seq}): chain broken — the record before it was removed, "
                    "altered or reordered" if prev is not None else
                    f"{where} (seq {seq}): follows an unreadable record")
            prev = hashlib.sha256(line).hexdigest()
            report.records += 1
            hashes[prev] = report.records
    report.head = prev or GENESIS
    if head is not None:
        _check_head(report, head, hashes)
    return report


def _check_head(report: ChainReport, head: dict[str, Any], hashes: dict[str, int]) -> None:
    from exo.security import hsm

    body = head_body(head)
    try:
        signature = bytes.fromhex(str(head["signature"]))
        ok = hsm.verify(str(head["public_key"]), signature, body)
    except (KeyError, ValueError) as exc:
        report.problems.append(f"signed head: malformed ({exc})")
        return
    if not ok:
        report.problems.append("signed head: the signature does not verify")
        return
    report.head_checked = True
    if str(head["hash"]) not in hashes:
        report.problems.append(f"signed head: record {str(head['hash'])[:16]}… (seq "
                               f"{head.get('seq')}) is no longer in the chain: the log was "
                               "truncated or rewritten")


def head_body(head: dict[str, Any]) -> bytes:
    """The signed bytes of a head: its fields but the signature, canonical JSON."""
    fields = {k: head[k] for k in ("version", "hash", "seq", "records", "time", "key")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def head_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "var" / "log" / "audit.head.json"


def sign_head(root: str | os.PathLike[str], key: str) -> dict[str, Any]:
    """Sign the chain's current head with the HSM key ``key`` (created as Ed25519 if
    missing) and save it beside the log."""
    from exo.security import hsm

    report = verify(log_files(root))
    if not report.ok:
        raise ValueError(f"the chain is broken, not signing it: {report.problems[0]}")
    last_seq = None
    files = log_files(root)
    if files:
        tail = files[-1].read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if tail:
            last_seq = json.loads(tail).get("seq")
    head: dict[str, Any] = {"version": HEAD_VERSION, "hash": report.head, "seq": last_seq,
                            "records": report.records, "time": time.time(), "key": key}
    try:
        public = hsm.public_key(root, key)
    except hsm.HsmError:
        public = hsm.create(root, key, "ed25519")
    head["signature"] = hsm.sign(root, key, head_body(head)).hex()
    head["public_key"] = public
    path = head_path(root)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(head, indent=2))
    os.replace(tmp, path)
    return head


# ------------------------------------------------------------------ TPM anchors


def anchors_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "var" / "log" / "audit-anchors.jsonl"


def read_anchors(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    try:
        text = anchors_path(root).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_anchors(report: ChainReport, anchors: list[dict[str, Any]],
                  pcr_value: bytes | None) -> None:
    """Every anchored head must be in the chain; with the TPM's ``ANCHOR_PCR`` value, the
    anchor log must replay to it (all zeros: the TPM restarted since, not checked)."""
    from exo.security import tpm

    for anchor in anchors:
        if str(anchor.get("hash")) not in report.hashes:
            report.problems.append(
                f"TPM anchor {anchor.get('n')}: record {str(anchor.get('hash'))[:16]}… (seq "
                f"{anchor.get('seq')}) is no longer in the chain: the log was truncated or "
                "rewritten")
            return
    if pcr_value is not None and pcr_value != tpm.ZERO:
        if tpm.replay(anchors, ANCHOR_PCR) != pcr_value:
            report.problems.append(f"the anchor log does not replay to PCR {ANCHOR_PCR}: "
                                   "it was rewritten")
            return
        report.anchors_checked = len(anchors)


class Anchors:
    """Anchors the audit chain's head in a TPM at intervals (a thread of the kernel)."""

    def __init__(self, root: str | os.PathLike[str], location: Any,
                 head: Any, interval: float = ANCHOR_INTERVAL, boot_id: str = "") -> None:
        import threading

        from exo.security import tpm

        self.root = Path(root)
        self.location = location
        self._head = head  # () -> (seq, hash)
        self.interval = interval
        self.boot_id = boot_id
        self._last = ""
        self._count = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        with tpm.RawTpm(location) as raw:
            raw.pcr_reset(ANCHOR_PCR)
        path = anchors_path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self._thread = threading.Thread(target=self._run, name="exo-audit-anchor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from exo.security import tpm

        while not self._stop.wait(self.interval):
            # the TPM went away or refused for a moment: try again at the next interval
            with contextlib.suppress(OSError, tpm.TpmError):
                self.anchor()

    def anchor(self) -> bool:
        """Extend the head into the TPM if it moved since the last anchor."""
        from exo.security import tpm

        with self._lock:
            seq, head = self._head()
            if head == self._last or head == GENESIS:
                return False
            with tpm.RawTpm(self.location) as raw:
                raw.pcr_extend(ANCHOR_PCR, bytes.fromhex(head))
            self._count += 1
            line = json.dumps({"n": self._count, "pcr": ANCHOR_PCR, "seq": seq, "hash": head,
                               "digest": head, "time": time.time(), "boot_id": self.boot_id},
                              separators=(",", ":"))
            with open(anchors_path(self.root), "a") as f:
                f.write(line + "\n")
            self._last = head
            return True

    def stop(self) -> None:
        """A last anchor, then the thread ends."""
        from exo.security import tpm

        self._stop.set()
        self._thread.join(5)
        # shutting down without the TPM: the anchor log says what was anchored
        with contextlib.suppress(OSError, tpm.TpmError):
            self.anchor()
