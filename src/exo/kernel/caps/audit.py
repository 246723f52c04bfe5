"""The capability audit log: every grant, denial, transfer and revocation, structured.

Records go to a bounded in-memory ring (what ``caps --audit`` shows) and, when a path is
given, to a JSON Lines file (what AI-Sec reads, and what survives a kernel restart). A
revocation is one record carrying the number of capabilities it removed, so revoking a tree
of 10,000 costs one write, not 10,000.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path

TYPE_CHECKING = False  # typing and dataclasses stay off the boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Final, Literal

    AuditEvent = Literal["grant", "deny", "duplicate", "transfer", "revoke", "release"]
else:
    AuditEvent = str
EVENTS: Final = frozenset({"grant", "deny", "duplicate", "transfer", "revoke", "release"})

# Every field of a record and its default (the first three are required).
# The standard library's json rather than a faster codec: audit writes are one per
# operation (one per revoke, whatever its size), and importing a codec such as msgspec
# costs the kernel's boot more than all the encoding it would save.
_DEFAULTS: Final[dict[str, object]] = {
    "seq": None, "time": None, "event": None, "pid": None, "handle": None, "resource": None,
    "rights": None, "reason": "", "peer": None, "count": 1, "cap_id": None,
}
_REQUIRED: Final = frozenset({"seq", "time", "event"})


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
                 count: int = 1, cap_id: int | None = None) -> None:
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
    """Thread-safe, bounded audit log with an optional JSON Lines sink."""

    def __init__(self, path: str | os.PathLike[str] | None = None, capacity: int = 65536) -> None:
        if capacity < 1:
            raise ValueError("audit capacity must be at least 1")
        self._lock = threading.Lock()
        self._ring: deque[AuditRecord] = deque(maxlen=capacity)
        self._seq = 0
        self.path = Path(path) if path is not None else None
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line-at-a-time writes with O_APPEND: readers never see half a record.
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - long-lived sink

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
    ) -> AuditRecord:
        """Append one record; ``resource`` and ``rights`` are stored as their ``str()``."""
        with self._lock:
            self._seq += 1
            rec = AuditRecord(
                seq=self._seq,
                time=time.time(),
                event=event,
                pid=pid,
                handle=handle,
                resource=None if resource is None else str(resource),
                rights=None if rights is None else str(rights),
                reason=reason,
                peer=peer,
                count=count,
                cap_id=cap_id,
            )
            self._ring.append(rec)
            if self._file is not None:
                self._file.write(rec.to_json() + b"\n")
        return rec

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
        return _filter(records, event, pid, resource_prefix, since, limit)

    def __len__(self) -> int:
        return len(self._ring)

    def close(self) -> None:
        """Close the JSON Lines sink (the in-memory ring stays queryable)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

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
