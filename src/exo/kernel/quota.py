"""Per-process quotas: every kernel resource an application can make the kernel spend.

One place for the bounds and their defaults. The cgroup limits (memory, pids, CPU) bound
what a process spends of the *host*; these bound what it makes the *Exo kernel* spend:

=============  ======================================================================
``children``   child processes not yet waited for, running or exited (each costs the
               kernel a syscall thread, a capability space, a cgroup, a table entry);
               0: may not spawn
``handles``    entries in its capability table (its descendants' count too)
``received``   of those, capabilities moved in by other processes (``send_capability``,
               channel tokens); a process may lower it, down to 0 = refuse all
``inbox``      capabilities sent to it and not yet received (``recv_capability``)
``in_flight``  channel tokens it issued that nobody has redeemed yet
``files``      files and directories the kernel holds open for it and its descendants
               (revocable opens, exports of storage grants): descriptors, server state
=============  ======================================================================

The audit volume a process can cause is bounded by the audit log itself (a per-process
rate limit on denials, bounded records, rotation: ``exo.kernel.caps.audit``).

``handles`` and ``files`` are charged to the process and every ancestor
(``exo.kernel.caps.space.Budget``), like memory and pids in the nested cgroups; the others
are per process. A manifest's ``[limits]`` may set any of them; a spawned child gets at
most its parent's value of each (asking for more silently gets the parent's, as for memory
and pids: the cgroup nesting would cap those anyway, and one rule for all keeps it simple).
Reaching a quota raises ``QuotaExceeded`` naming it and its value. On the boot path:
no dataclasses, no typing at run time.
"""

from __future__ import annotations

from exo._value import Value
from exo.kernel.caps.errors import QuotaExceeded

NAMES = ("children", "handles", "received", "inbox", "in_flight", "files")
DEFAULTS = {"children": 16, "handles": 4096, "received": 1024, "inbox": 64,
            "in_flight": 256, "files": 1024}
#: Upper bound a manifest may ask for, per quota (a capability space has 2**16 slots).
CEILINGS = {"children": 256, "handles": 65536, "received": 65536, "inbox": 4096,
            "in_flight": 65536, "files": 65536}
#: Live Exo processes, kernel-wide: each holds a kernel thread (its syscall server).
MAX_PROCESSES = 1024
#: Host pids a sandbox needs to start (bubblewrap's monitor, its init, the target).
SPAWN_PIDS = 3

__all__ = ["CEILINGS", "DEFAULTS", "MAX_PROCESSES", "NAMES", "SPAWN_PIDS", "QuotaExceeded",
           "Quotas"]


class Quotas(Value):
    """The quota values of one process."""

    __slots__ = NAMES

    def __init__(self, children: int = DEFAULTS["children"],
                 handles: int = DEFAULTS["handles"], received: int = DEFAULTS["received"],
                 inbox: int = DEFAULTS["inbox"], in_flight: int = DEFAULTS["in_flight"],
                 files: int = DEFAULTS["files"]) -> None:
        self.children = children
        self.handles = handles
        self.received = received
        self.inbox = inbox
        self.in_flight = in_flight
        self.files = files
        for name in NAMES:
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= CEILINGS[name]:
                raise ValueError(f"quota {name!r} must be an integer in 0..{CEILINGS[name]}, "
                                 f"got {value!r}")
        if handles < 1:
            raise ValueError("quota 'handles' must be at least 1")

    def _key(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in NAMES)

    def within(self, parent: Quotas) -> Quotas:
        """Each value at most the parent's: a child never holds more than its parent."""
        return Quotas(*(min(getattr(self, n), getattr(parent, n)) for n in NAMES))

    def as_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in NAMES}

    def __repr__(self) -> str:
        return "Quotas(" + ", ".join(f"{n}={getattr(self, n)}" for n in NAMES) + ")"


def exceeded(quota: str, limit: int, detail: str) -> QuotaExceeded:
    """The error for reaching ``quota`` (its value ``limit``); ``detail`` says who and how."""
    return QuotaExceeded(quota, limit, detail)
