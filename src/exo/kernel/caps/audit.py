"""The capability audit log: every grant, denial, transfer and revocation, structured.

Records go to a bounded in-memory ring (what ``caps --audit`` shows) and, when a path is
given, to a JSON Lines file (what AI-Sec reads, and what survives a kernel restart). A
revocation is one record carrying the number of capabilities it removed, so revoking a tree
of 10,000 costs one write, not 10,000.

Nothing a process does can make the log grow without bound (a hostile app can make the
kernel deny it as fast as it can send requests):

* each record is bounded: caller-supplied text (resource names, reasons) is cut to
  ``MAX_FIELD_BYTES`` and the record marked ``truncated``;
* the file rotates by size (``audit.jsonl`` -> ``audit.jsonl.1`` ... ``.keep``, the oldest
  dropped), so the log takes at most ``(keep + 1) * max_bytes`` on disk;
* denials are rate-limited per process (a token bucket): those over the rate are counted,
  not written, and one summary record says how many were suppressed; every other record
  a process causes (grants, releases...) is rate-limited the same way, more generously;
* denials are also kept in a stream of their own (``audit-deny.jsonl``, rotated alike,
  and a ring in memory), so a process cannot push the record of its own denials out of
  the log by flooding it with cheap grants and releases;
* the in-memory ring holds at most ``capacity`` records (16,384 by default), each bounded
  as above.

The file is a hash chain (tamper evidence, ``exo audit verify``): each record written
carries ``prev``, the SHA-256 of the previous line of the main stream (``GENESIS`` for the
very first), so a removed, altered or reordered record breaks the chain. The chain goes on
across rotations and kernel restarts (the head is read back from the newest line).
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from collections import deque
from pathlib import Path

from exo.kernel.rotating import RotatingFile

from .ratelimit import TokenBuckets

TYPE_CHECKING = False  # typing and dataclasses stay off the boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, Final, Literal

    AuditEvent = Literal["grant", "deny", "duplicate", "transfer", "revoke", "release",
                         "suppressed"]
else:
    AuditEvent = str
EVENTS: Final = frozenset({"grant", "deny", "duplicate", "transfer", "revoke", "release",
                           "suppressed"})

# Every field of a record and its default (the first three are required).
# The standard library's json rather than a faster codec: audit writes are one per
# operation (one per revoke, whatever its size), and importing a codec such as msgspec
# costs the kernel's boot more than all the encoding it would save.
_DEFAULTS: Final[dict[str, object]] = {
    "seq": None, "time": None, "event": None, "pid": None, "handle": None, "resource": None,
    "rights": None, "reason": "", "peer": None, "count": 1, "cap_id": None,
    "truncated": False, "prev": None,
}
_REQUIRED: Final = frozenset({"seq", "time", "event"})

#: Records kept in memory (``caps --audit``; the file keeps more): ~6 MB for typical
#: records, ~15 MB at most with every field at its bound (measured), inside the kernel's
#: memory budget even when a process fills the ring with grants it does not need.
DEFAULT_CAPACITY: Final = 16384
#: Longest caller-supplied text kept in a record (UTF-8 bytes); longer text is cut.
MAX_FIELD_BYTES: Final = 256
#: The JSON Lines file rotates when it would grow past this many bytes ...
DEFAULT_MAX_BYTES: Final = 8 << 20
#: ... keeping this many older files (audit.jsonl.1 is the newest of them).
DEFAULT_KEEP: Final = 3
#: Denials one process may cause: a burst, then this many per second.
DENY_BURST: Final = 64
DENY_RATE: Final = 10.0
#: Any other records one process may cause: a burst, then this many per second.
EVENT_BURST: Final = 1024
EVENT_RATE: Final = 200.0
#: Denials kept in memory beside the main ring (which a flood of grants could empty).
DENY_CAPACITY: Final = 4096
#: ``prev`` of the first record ever written to a log file.
GENESIS: Final = "0" * 64


def bound_text(text: str, limit: int = MAX_FIELD_BYTES) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` UTF-8 bytes plus a marker; (text, was_cut)."""
    # Fast paths (every record takes them): short enough even if every character took 4
    # bytes, or ASCII (one byte each) within the limit.
    if len(text) <= limit // 4 or (len(text) <= limit and text.isascii()):
        return text, False
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, False
    kept = data[:limit].decode("utf-8", "ignore")  # never half a character
    return f"{kept}...[truncated {len(data)} bytes]", True


class AuditRecord:
    """One audited event. ``time`` is Unix time (seconds, float); ``seq`` is monotonic.

    ``pid``/``handle`` identify the acting process and handle; ``peer`` is the other process
    of a transfer; ``count`` is how many capabilities the event covered (revoke, release).
    Immutable by convention.
    """

    __slots__ = tuple(_DEFAULTS)

    def __init__(self, seq: int, time: float, event: str, pid: int | None = None,
                 handle: int | None = None, resource: str | None = None,
                 rights: str | None = None, reason: str = "", peer: int | None = None,
                 count: int = 1, cap_id: int | None = None, truncated: bool = False,
                 prev: str | None = None) -> None:
        self.seq = seq
        self.time = time
        self.event = event
        self.pid = pid
        self.handle = handle
        self.resource = resource
        self.rights = rights
        self.reason = reason
        self.peer = peer
        self.count = count
        self.cap_id = cap_id
        self.truncated = truncated
        self.prev = prev  # SHA-256 (hex) of the previous line in the file's chain

    def to_dict(self) -> dict[str, object]:
        """A plain dict (for the shell's table and JSON output)."""
        return {name: getattr(self, name) for name in _DEFAULTS}

    def to_json(self) -> bytes:
        """One JSON Lines record; fields still at their default are left out."""
        data = {k: v for k, v in self.to_dict().items() if k in _REQUIRED or v != _DEFAULTS[k]}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, line: bytes) -> AuditRecord:
        """Parse one line; raises ValueError if it is not a record."""
        data = json.loads(line)
        if not isinstance(data, dict) or not _REQUIRED <= data.keys() <= _DEFAULTS.keys():
            raise ValueError("not an audit record")
        return cls(**data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuditRecord) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.seq, self.time, self.event))

    def __repr__(self) -> str:
        return f"AuditRecord({self.to_json().decode()})"


class AuditLog:
    """Thread-safe, bounded audit log with an optional, rotated JSON Lines sink."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        capacity: int = DEFAULT_CAPACITY,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        deny_rate: float = DENY_RATE,
        deny_burst: int = DENY_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("audit capacity must be at least 1")
        if max_bytes < 4096 or keep < 1:
            raise ValueError("audit rotation needs max_bytes >= 4096 and keep >= 1")
        self._lock = threading.Lock()
        self._ring: deque[AuditRecord] = deque(maxlen=capacity)
        self._seq = 0
        self.max_bytes = max_bytes
        self.keep = keep
        self.suppressed = 0  # records not written (denials and others), over the whole boot
        self._denials = TokenBuckets(deny_rate, deny_burst, clock=clock)
        self._events = TokenBuckets(EVENT_RATE, EVENT_BURST, clock=clock)
        self._deny_ring: deque[AuditRecord] = deque(maxlen=DENY_CAPACITY)
        self.path = Path(path) if path is not None else None
        self._sink: RotatingFile | None = None
        self._deny_sink: RotatingFile | None = None
        self._head = GENESIS  # the hash the next written record chains to
        self._head_seq = 0  # seq of the record that hash is of (0: none written this boot)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = RotatingFile(self.path, max_bytes, keep)
            self._head = _chain_head(self._sink.files()) or GENESIS
            self._deny_sink = RotatingFile(self.deny_path, max_bytes, keep)

    @property
    def deny_path(self) -> Path:
        """The denials' own file, beside the main one (``audit-deny.jsonl``)."""
        assert self.path is not None
        return self.path.with_name(f"{self.path.stem}-deny{self.path.suffix}")

    def files(self) -> list[Path]:
        """The JSON Lines files that exist, oldest first (for readers of the whole log)."""
        return self._sink.files() if self._sink is not None else []

    def deny_files(self) -> list[Path]:
        """The denials' files, oldest first: every denial written, whatever else happened."""
        return self._deny_sink.files() if self._deny_sink is not None else []

    def record(
        self,
        event: AuditEvent,
        *,
        pid: int | None = None,
        handle: int | None = None,
        resource: object = None,
        rights: object = None,
        reason: str = "",
        peer: int | None = None,
        count: int = 1,
        cap_id: int | None = None,
    ) -> AuditRecord | None:
        """Append one record; ``resource`` and ``rights`` are stored as their ``str()``.

        Returns ``None`` for a denial suppressed by the per-process rate limit.
        """
        res_text, cut_res = (None, False) if resource is None else bound_text(str(resource))
        rights_text, cut_rights = (None, False) if rights is None else bound_text(str(rights))
        reason, cut_reason = bound_text(reason)
        truncated = cut_res or cut_rights or cut_reason
        with self._lock:
            if pid is not None:
                denial = event == "deny"
                allowed, suppressed = (self._denials if denial else self._events).allow(pid)
                if not allowed:
                    self.suppressed += 1
                    return None
                if suppressed:
                    self._append_locked(self._summary(pid, suppressed, denial))
            self._seq += 1
            rec = AuditRecord(
                seq=self._seq, time=time.time(), event=event, pid=pid, handle=handle,
                resource=res_text, rights=rights_text, reason=reason, peer=peer,
                count=count, cap_id=cap_id, truncated=truncated,
            )
            self._append_locked(rec)
        return rec

    def chain_head(self) -> tuple[int, str]:
        """(seq, SHA-256 hex) of the last record written to the file: the chain's head,
        which the security subsystem anchors in the TPM."""
        with self._lock:
            return self._head_seq, self._head

    def forget(self, pid: int) -> None:
        """Process ``pid`` exited: write the summary of denials still suppressed, if any."""
        with self._lock:
            for denial, buckets in ((True, self._denials), (False, self._events)):
                suppressed = buckets.forget(pid)
                if suppressed:
                    self._append_locked(self._summary(pid, suppressed, denial))

    def _summary(self, pid: int, suppressed: int, denial: bool) -> AuditRecord:
        self._seq += 1
        buckets, what = (self._denials, "denials") if denial else (self._events, "records")
        return AuditRecord(
            seq=self._seq, time=time.time(), event="deny" if denial else "suppressed",
            pid=pid, count=suppressed,
            reason=f"rate limit: {suppressed} {what} of process {pid} suppressed "
                   f"(at most {buckets.burst} at once, then {buckets.rate:g} per second)",
        )

    def _append_locked(self, rec: AuditRecord) -> None:
        self._ring.append(rec)
        line = b""
        if self._sink is not None:
            rec.prev = self._head
            body = rec.to_json()
            self._head = sha256_hex(body)
            self._head_seq = rec.seq
            line = body + b"\n"
            self._sink.write(line)
        if rec.event == "deny":
            self._deny_ring.append(rec)
            if self._deny_sink is not None:
                self._deny_sink.write(line)

    def query(
        self,
        event: str | None = None,
        pid: int | None = None,
        resource_prefix: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Records matching every given filter, oldest first; ``limit`` keeps the newest N."""
        if event is not None and event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r} (known: {', '.join(sorted(EVENTS))})")
        with self._lock:
            records = list(self._ring)
            if event in (None, "deny") and self._deny_ring:
                # denials a flood pushed out of the main ring are still in their own
                oldest = records[0].seq if records else None
                older = [r for r in self._deny_ring if oldest is None or r.seq < oldest]
                records = older + records
        return _filter(records, event, pid, resource_prefix, since, limit)

    def __len__(self) -> int:
        return len(self._ring)

    def close(self) -> None:
        """Close the JSON Lines sink (the in-memory ring stays queryable)."""
        with self._lock:
            for sink in (self._sink, self._deny_sink):
                if sink is not None:
                    sink.close()

    @staticmethod
    def load(
        path: str | os.PathLike[str],
        event: str | None = None,
        pid: int | None = None,
        resource_prefix: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Read and filter a JSON Lines audit file (e.g. from another process or a past boot).

        A torn last line (kernel killed mid-write) is skipped, not fatal.
        """
        records: list[AuditRecord] = []
        with open(path, "rb") as f:
            for line in f:
                try:
                    records.append(AuditRecord.from_json(line))
                except (ValueError, TypeError):
                    continue
        return _filter(records, event, pid, resource_prefix, since, limit)


_sha256: Callable[[bytes], Any] | None = None


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data``, hex. The interpreter's own module (``_sha256``; ``_sha2`` from
    3.12) loads in ~1 ms where ``hashlib`` loads OpenSSL (3-8 ms measured), and the audit
    log is on the boot path."""
    global _sha256
    if _sha256 is None:
        for name in ("_sha256", "_sha2", "hashlib"):
            try:
                _sha256 = importlib.import_module(name).sha256
                break
            except (ImportError, AttributeError):
                continue
    assert _sha256 is not None
    digest: str = _sha256(data).hexdigest()
    return digest


def _chain_head(files: list[Path]) -> str | None:
    """The hash of the newest complete line of the main stream (the chain's head)."""
    for path in reversed(files):
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 8192))
            lines = f.read().split(b"\n")[:-1]  # what follows the last newline is torn
        if lines and lines[-1]:
            return sha256_hex(lines[-1])
    return None


def _filter(
    records: Iterable[AuditRecord],
    event: str | None,
    pid: int | None,
    resource_prefix: str | None,
    since: float | None,
    limit: int | None,
) -> list[AuditRecord]:
    out = [
        r
        for r in records
        if (event is None or r.event == event)
        and (pid is None or r.pid == pid or r.peer == pid)
        and (
            resource_prefix is None
            or (r.resource is not None and r.resource.startswith(resource_prefix))
        )
        and (since is None or r.time >= since)
    ]
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out
