"""Processes: ``spawn`` (the native way; there is no fork), ``wait`` and ``kill``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from exo.abi import Rights
from exo_std._kernel import call
from exo_std.caps import Capability, _rights_text

TYPE_CHECKING = False  # no typing import at run time: every app imports this (exo/_value.py)
if TYPE_CHECKING:
    from exo_std.ipc import Endpoint


def spawn(argv: Sequence[str], caps: Sequence[Capability | tuple[Capability, Rights]] = (),
          *, stdin: int = 0, stdout: int = 1, stderr: int = 2,
          channels: Sequence[Endpoint] = (),
          limits: dict[str, int | float | str] | None = None) -> int:
    """Start ``argv`` as a new sandboxed process holding only ``caps``.

    Each entry is a capability we hold (the child gets a duplicate with the same
    rights) or ``(capability, rights)`` to pass an attenuated copy. ``channels`` are
    ``exo_std.ipc`` endpoints handed to the child (``ipc.inherited()`` there); they are
    detached here, and the ends we keep learn the child is their peer. ``limits`` may
    lower the child's limits and quotas below ours (``memory`` ``pids`` ``cpu``
    ``children`` ``handles`` ``received`` ``inbox`` ``in_flight``); unnamed ones, and
    anything above ours, are ours: a child runs inside our budget. Returns the child's
    Exo pid; ``QuotaExceeded`` when we may not start another process.
    """
    grants = []
    for entry in caps:
        cap, rights = entry if isinstance(entry, tuple) else (entry, entry.rights)
        grants.append({"handle": cap.handle, "rights": _rights_text(rights)})
    fds = [stdin, stdout, stderr]
    for endpoint in channels:
        fds += endpoint.fds
    extra = {} if limits is None else {"limits": dict(limits)}
    result, _ = call("spawn", fds=fds, argv=list(argv), caps=grants,
                     channels=[len(e.fds) for e in channels], **extra)
    pid = int(result["pid"])
    for endpoint in channels:
        endpoint.detach()
        twin = endpoint.twin
        if twin is not None:
            twin.peer = pid
            twin.twin = endpoint.twin = None  # the pair no longer keeps each other alive
    return pid


def wait(pid: int) -> int:
    """Wait for a child to exit; returns its exit status (128+N when signal N killed it)."""
    result, _ = call("wait", pid=pid)
    return int(result["status"])


def kill(pid: int, sig: int = 15) -> None:
    """Send signal ``sig`` (default SIGTERM) to ``pid``, a child we spawned; a process
    that is not our child, or has exited, raises ``NotFound``."""
    call("kill", pid=pid, signal=sig)


def getpid() -> int:
    """Our Exo pid (not the host pid)."""
    return int(os.environ.get("EXO_PID") or call("getpid")[0]["pid"])
