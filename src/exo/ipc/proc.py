"""``/proc/ipc``: the state of the Fusion Rings open in this process.

The shell renders :func:`proc_ipc_text`; scripts use :func:`ipc_stats`.
"""

from __future__ import annotations

from exo.ipc.ring import live_rings

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any


def ipc_stats() -> list[dict[str, Any]]:
    """One dict per open ring endpoint: name, role, indices, occupancy, counters."""
    out = []
    for ring in live_rings():
        st = ring.stats()
        st["name"] = ring.name
        out.append(st)
    return sorted(out, key=lambda s: (s["name"], s["role"]))


_COLUMNS = (
    ("name", 22),
    ("role", 8),
    ("capacity", 5),
    ("occupancy", 5),
    ("head", 10),
    ("tail", 10),
    ("sent_msgs", 10),
    ("recv_msgs", 10),
    ("producer_wakes", 8),
    ("consumer_sleeps", 8),
    ("rejected", 4),
    ("peer", 6),
)
_HEADINGS = {
    "capacity": "cap",
    "occupancy": "used",
    "sent_msgs": "sent",
    "recv_msgs": "received",
    "producer_wakes": "wakes",
    "consumer_sleeps": "sleeps",
    "rejected": "bad",
}


def proc_ipc_text() -> str:
    """A fixed-width table of :func:`ipc_stats`, one line per ring endpoint."""
    rows = []
    for st in ipc_stats():
        closed = st["consumer_closed"] if st["role"] == "producer" else st["producer_closed"]
        st["peer"] = "closed" if closed else "open"
        rows.append(st)
    head = " ".join(_HEADINGS.get(k, k).ljust(w) for k, w in _COLUMNS).rstrip()
    lines = [head]
    for st in rows:
        lines.append(" ".join(str(st[k])[:w].ljust(w) for k, w in _COLUMNS).rstrip())
    if not rows:
        lines.append("(no Fusion Rings open)")
    return "\n".join(lines) + "\n"
