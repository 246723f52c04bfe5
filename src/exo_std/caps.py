"""Capabilities as an application holds them: a handle number and what it names.

The object itself stays in the kernel; ``Capability`` is only a handle with
methods that ask the kernel to act on it.
"""

from __future__ import annotations

from exo._value import Value
from exo.abi import Rights
from exo_std._kernel import call


def _rights_text(rights: Rights | str) -> str:
    if isinstance(rights, str):
        return rights
    return ",".join(r.name for r in Rights if r.value and r in rights and r.name) or "NONE"


class Capability(Value):
    """A handle this process holds on ``resource`` with ``rights`` (immutable).

    A plain class rather than a dataclass: every Exo app imports this at start, and
    ``dataclasses`` alone costs ~14 ms (exo/_value.py).
    """

    __slots__ = ("handle", "resource", "rights")

    def __init__(self, handle: int, resource: str, rights: Rights) -> None:
        self.handle = handle
        self.resource = resource
        self.rights = rights

    def _key(self) -> tuple[int, str, Rights]:
        return (self.handle, self.resource, self.rights)

    def __repr__(self) -> str:
        return f"Capability(handle={self.handle}, resource={self.resource!r}, " \
               f"rights={_rights_text(self.rights)})"

    def attenuate(self, rights: Rights | str) -> Capability:
        """A new handle to the same resource with ``rights`` (a subset; needs DUPLICATE)."""
        result, _ = call("duplicate", handle=self.handle, rights=_rights_text(rights))
        return _from_result(result)

    duplicate = attenuate

    def revoke(self) -> int:
        """Revoke every capability derived from this one; returns how many."""
        result, _ = call("revoke", handle=self.handle)
        return int(result["count"])

    def close(self) -> None:
        call("close", handle=self.handle)


def _from_result(result: dict[str, object]) -> Capability:
    return Capability(int(str(result["handle"])), str(result["resource"]),
                      Rights(int(str(result["rights"]))))


def request_capability(name: str, rights: Rights | str) -> Capability:
    """Ask the kernel for a capability on ``name`` (checked against what we hold)."""
    result, _ = call("request", name=name, rights=_rights_text(rights))
    return _from_result(result)


def send_capability(pid: int, cap: Capability) -> None:
    """Move ``cap`` to process ``pid`` (needs TRANSFER); our handle becomes invalid."""
    call("send_capability", handle=cap.handle, pid=pid)


def receive_capability(timeout: float | None = None) -> tuple[int, Capability]:
    """Wait for a capability sent to us; returns (sender pid, capability)."""
    result, _ = call("recv_capability", timeout=timeout)
    return int(result["from"]), _from_result(result)


def accept_capabilities(limit: int) -> int:
    """Hold at most ``limit`` capabilities sent by other processes (0: refuse them all).

    Senders over the bound get an error and keep their handle; what we hold already stays.
    The kernel's ``received`` quota is the ceiling; returns the bound now in force.
    """
    result, _ = call("accept_capabilities", limit=limit)
    return int(result["limit"])


def handles() -> list[Capability]:
    """Every capability this process holds (asked for in pages: a table of thousands of
    handles does not fit in one reply)."""
    out: list[Capability] = []
    while True:
        page, _ = call("handles", start=len(out))
        if not page:
            return out
        out += [_from_result(r) for r in page]


__all__ = ["Capability", "Rights", "accept_capabilities", "handles", "receive_capability",
           "request_capability", "send_capability"]
