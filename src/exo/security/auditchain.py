"""Verifying the capability audit log's hash chain, and signing its head.

``exo.kernel.caps.audit`` writes each record with ``prev`` = SHA-256 of the previous line
(``GENESIS`` for the first). Here the chain is walked across the rotated files, oldest
first (``audit.jsonl.3`` … ``.1``, ``audit.jsonl``): a removed, altered, inserted or
reordered record makes some ``prev`` disagree. A chain can only vouch for what follows its
first record, and its last record has no successor to vouch for it; so the head (count,
last hash) can be signed with an HSM key (``sign_head``), and ``verify`` then also checks
that the signed head is in the chain. When rotation has dropped the oldest file, the
chain starts at a record whose ``prev`` cannot be checked: reported, not an error.

While a TPM is present, the kernel also **anchors** the head (``Anchors``, run by the
Security subsystem): every ``ANCHOR_INTERVAL`` seconds if the head moved, and once at
shutdown (a ``final`` anchor), it signs the head with the HSM key ``SIGNER`` (Ed25519 in
the PKCS#11 token, created on first use), extends the head's hash into ``ANCHOR_PCR`` and
appends the signed anchor to ``var/log/audit-anchors.jsonl`` (the previous boot's anchors
are kept as ``audit-anchors.jsonl.prev``). ``check_anchors`` then verifies every anchor's
signature against the token's own public key (pinned: a re-signed forgery fails), that
every anchored head is still in the chain (this boot's and the previous boot's), that the
anchor log replays to the TPM's PCR (rewriting the audit log and its anchor log together
does not get past the TPM, nor does dropping the last anchor), and the **tail**: after a
final anchor nothing may follow in the chain (records appended or a tail removed and
replaced after the kernel stopped fail); after a non-final one, the records that follow
are reported as not yet vouched for (the kernel is running, or it was killed).
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
#: The HSM key the kernel signs audit heads with.
SIGNER = "audit-head"


class ChainReport:
    """The outcome of a verification: ``ok`` and what was found."""

    __slots__ = ("anchored", "anchors_checked", "anchors_signed", "files", "hashes", "head",
                 "head_checked", "notes", "problems", "records", "unvouched")

    def __init__(self) -> None:
        self.records = 0
        self.files: list[str] = []
        self.problems: list[str] = []
        self.anchored = True  # the first record chains to GENESIS (nothing rotated away)
        self.head = GENESIS
        self.head_checked = False
        self.anchors_checked = 0
        self.anchors_signed = 0  # anchors whose HSM signature verified
        self.unvouched = 0  # records after the last anchor (not yet signed)
        self.notes: list[str] = []  # what is not a problem but a reader should know
        self.hashes: dict[str, int] = {}  # each record's hash → its position in the chain

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "files": self.files,
                "anchored": self.anchored, "head": self.head,
                "signed_head_checked": self.head_checked,
                "tpm_anchors_checked": self.anchors_checked,
                "signed_anchors_checked": self.anchors_signed,
                "records_after_last_anchor": self.unvouched, "notes": self.notes,
                "problems": self.problems}


def log_files(root: str | os.PathLike[str]) -> list[Path]:
    """The main audit stream's files, oldest first."""
    base = Path(root) / "var" / "log" / "audit.jsonl"
    older = sorted((p for p in base.parent.glob("audit.jsonl.*") if p.suffix[1:].isdigit()),
                   key=lambda p: -int(p.suffix[1:]))
    return [*older, base] if base.exists() else older


def verify(files: list[Path], head: dict[str, Any] | None = None,
           trusted: str | None = None) -> ChainReport:
    """Walk the chain through ``files`` (oldest first); check the signed ``head`` against
    ``trusted`` (the token's public key) when given, else against the key it carries."""
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
        _check_head(report, head, hashes, trusted)
    return report


def _check_head(report: ChainReport, head: dict[str, Any], hashes: dict[str, int],
                trusted: str | None = None) -> None:
    from exo.security import hsm

    body = head_body(head)
    try:
        signature = bytes.fromhex(str(head["signature"]))
        ok = hsm.verify(trusted or str(head["public_key"]), signature, body)
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


#: The anchors' log, relative to the Exo tree.
ANCHORS = "var/log/audit-anchors.jsonl"


def anchors_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / ANCHORS


def _rotate_anchors(root: str | os.PathLike[str]) -> None:
    """The boot before's anchors to ``.prev`` (still checked), and an empty file for this
    boot's — beneath the tree, through no link an app granted ``var/log`` planted there:
    the kernel runs as root (``exo.kernel.beneath``)."""
    from exo.kernel import beneath

    os.close(beneath.open_log(root, ANCHORS))  # makes var/log; refuses a link, a FIFO
    top = beneath.open_root(root)
    try:
        logs = beneath.openat2(top, os.path.dirname(ANCHORS), os.O_PATH | os.O_DIRECTORY)
    finally:
        os.close(top)
    try:
        name = os.path.basename(ANCHORS)
        os.replace(name, name + ".prev", src_dir_fd=logs, dst_dir_fd=logs)
    finally:
        os.close(logs)
    os.close(beneath.open_log(root, ANCHORS, truncate=True))


def read_anchors(root: str | os.PathLike[str], *, previous: bool = False
                 ) -> list[dict[str, Any]]:
    """This boot's anchors (``previous``: the boot before's); unparseable lines are kept
    as ``{"unreadable": line}`` so that ``check_anchors`` reports them."""
    path = anchors_path(root)
    if previous:
        path = path.with_name(path.name + ".prev")
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.strip():
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            found.append(item if isinstance(item, dict) else {"unreadable": line[:80]})
    return found


def anchor_body(anchor: dict[str, Any]) -> bytes:
    """The signed bytes of an anchor: its fields but the signature and public key."""
    fields = {k: v for k, v in anchor.items() if k not in ("signature", "public_key")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def trusted_key(root: str | os.PathLike[str], key: str = SIGNER) -> str | None:
    """The public key of the HSM key ``key``, read from the token itself (None when the
    token or the key is not there): what anchors are checked against."""
    from exo.security import hsm

    cfg = hsm.HsmConfig(root)
    if cfg.softhsm and not cfg.token_dir.exists():
        return None  # no development token: do not make one just to look
    try:
        return hsm.public_key(root, key)
    except (hsm.HsmError, ImportError, OSError):
        return None


def check_anchors(report: ChainReport, anchors: list[dict[str, Any]],
                  pcr_value: bytes | None, *, trusted: str | None = None,
                  previous: list[dict[str, Any]] | None = None) -> None:
    """Check the kernel's anchors against the chain (see the module docstring).

    ``pcr_value``: the TPM's ``ANCHOR_PCR`` (None: no TPM; all zeros: it restarted since,
    not checked). ``trusted``: the signer's public key from the token (None: each anchor's
    own key is used, and a note says the key is not pinned). ``previous``: the anchors of
    the boot before (signatures and membership checked; its PCR is gone)."""
    from exo.security import hsm, tpm

    for label, group in (("previous boot's anchor", previous or []), ("TPM anchor", anchors)):
        for anchor in group:
            if "unreadable" in anchor:
                report.problems.append(f"{label}: unreadable line {anchor['unreadable']!r}")
                return
            where = f"{label} {anchor.get('n')}"
            if "signature" in anchor:
                key = trusted or str(anchor.get("public_key"))
                try:
                    good = hsm.verify(key, bytes.fromhex(str(anchor["signature"])),
                                      anchor_body(anchor))
                except ValueError:
                    good = False
                if not good:
                    report.problems.append(f"{where}: the HSM signature does not verify "
                                           "(forged or altered anchor)")
                    return
                report.anchors_signed += 1
            if str(anchor.get("hash")) not in report.hashes:
                report.problems.append(
                    f"{where}: record {str(anchor.get('hash'))[:16]}… (seq "
                    f"{anchor.get('seq')}) is no longer in the chain: the log was truncated "
                    "or rewritten")
                return
    if report.anchors_signed and trusted is None:
        report.notes.append("anchor signatures checked against the key they carry: the HSM "
                            "token is not reachable to pin it")
    if pcr_value is not None and pcr_value != tpm.ZERO:
        if tpm.replay(anchors, ANCHOR_PCR) != pcr_value:
            report.problems.append(f"the anchor log does not replay to PCR {ANCHOR_PCR}: "
                                   "it was rewritten, or anchors were removed")
            return
        report.anchors_checked = len(anchors)
    _check_tail(report, anchors)  # (a new boot's records follow the boot before's)


def _check_tail(report: ChainReport, anchors: list[dict[str, Any]]) -> None:
    """What follows the last anchor: nothing after a final one; else reported."""
    if not anchors:
        return
    last = anchors[-1]
    at = report.hashes.get(str(last.get("hash")), report.records)
    after = report.records - at
    if last.get("final") and after:
        report.problems.append(
            f"{after} record(s) follow the kernel's final signed anchor (seq "
            f"{last.get('seq')}): written after it shut down, or a removed tail was "
            "replaced")
    elif after:
        report.unvouched = after
        report.notes.append(f"{after} record(s) after the last anchor are not signed yet "
                            "(the kernel is running, or was killed before its next anchor)")


class Anchors:
    """Anchors the audit chain's head in a TPM at intervals (a task of the kernel)."""

    def __init__(self, root: str | os.PathLike[str], location: Any,
                 head: Any, interval: float = ANCHOR_INTERVAL, boot_id: str = "",
                 signer: str | None = SIGNER, reset: bool = True) -> None:
        import threading

        from exo.security import tpm

        self.root = Path(root)
        self.location = location
        self._head = head  # () -> (seq, hash)
        self.interval = interval
        self.boot_id = boot_id
        self.signer = signer  # the HSM key; None: anchors are not signed
        self.sign_error: str | None = None  # why the last anchor could not be signed
        self._public: str | None = None
        self._last = ""
        self._count = 0
        self._lock = threading.Lock()
        if reset:  # else the caller reset it (tpm.measure's also_reset)
            with tpm.RawTpm(location) as raw:
                raw.pcr_reset(ANCHOR_PCR)
        _rotate_anchors(root)
        from exo.sched.services import Periodic

        # an Exo task on the kernel's scheduler thread (its own thread outside a kernel):
        # one TPM extend and an fsync per interval, asleep in the scheduler's timer between
        self._service = Periodic(self._tick, interval, "exo-audit-anchor", boot_id=boot_id)
        self._service.start()

    @property
    def service(self) -> Any:
        """The ``exo.sched.services.Periodic`` that anchors."""
        return self._service

    def _tick(self) -> None:
        from exo.security import tpm

        # the TPM went away or refused for a moment: try again at the next interval
        with contextlib.suppress(OSError, tpm.TpmError):
            self.anchor()

    def anchor(self, final: bool = False) -> bool:
        """Sign the head and extend it into the TPM if it moved since the last anchor
        (``final``: at shutdown, even if it did not)."""
        from exo.security import tpm

        with self._lock:
            seq, head = self._head()
            if head == GENESIS or (head == self._last and not final):
                return False
            anchor: dict[str, Any] = {"n": self._count + 1, "pcr": ANCHOR_PCR, "seq": seq,
                                      "hash": head, "digest": head, "time": time.time(),
                                      "boot_id": self.boot_id, "final": final}
            self._sign(anchor)
            with tpm.RawTpm(self.location) as raw:
                raw.pcr_extend(ANCHOR_PCR, bytes.fromhex(head))
            self._count += 1
            from exo.kernel import beneath

            with os.fdopen(beneath.open_log(self.root, ANCHORS), "a") as f:
                f.write(json.dumps(anchor, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._last = head
            return True

    def _sign(self, anchor: dict[str, Any]) -> None:
        """Add the HSM signature (an anchor stays unsigned, and ``sign_error`` says why,
        when the token refuses: the TPM anchor still holds)."""
        if self.signer is None:
            return
        from exo.security import hsm

        try:
            if self._public is None:
                try:
                    self._public = hsm.public_key(self.root, self.signer)
                except hsm.HsmError:
                    self._public = hsm.create(self.root, self.signer, "ed25519")
            anchor["key"] = self.signer
            anchor["signature"] = hsm.sign(self.root, self.signer, anchor_body(anchor)).hex()
            anchor["public_key"] = self._public
            self.sign_error = None
        except (hsm.HsmError, ImportError, OSError) as exc:
            anchor.pop("key", None)
            self.sign_error = str(exc)

    def stop(self) -> None:
        """A last anchor, then the thread ends."""
        from exo.security import tpm

        self._service.stop(5)
        # shutting down without the TPM: the anchor log says what was anchored
        with contextlib.suppress(OSError, tpm.TpmError):
            self.anchor(final=True)
