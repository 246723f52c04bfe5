"""Authority rule and policy hook for ``request``.

Authority comes first and is not pluggable: a process may obtain a capability for a name only
by deriving it from a capability it already holds that covers the name and carries the
requested rights *plus GRANT*. Policy comes second and can only say no (a deployment may,
say, forbid ``net://*`` to every process but one); it never adds authority.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from exo.abi.rights import Rights

from .capability import Capability
from .names import ResourceName

#: ``policy(pid, name, rights, source) -> None`` to allow, or a one-line reason to deny.
RequestPolicy = Callable[[int, ResourceName, Rights, Capability], "str | None"]


def allow_all(pid: int, name: ResourceName, rights: Rights, source: Capability) -> str | None:
    """The default policy: authority alone decides."""
    return None


def choose_source(
    caps: Iterable[Capability], name: ResourceName, rights: Rights
) -> Capability | None:
    """The capability a request for ``name`` with ``rights`` derives from, if any.

    Among held capabilities that cover ``name`` and hold ``rights | GRANT``, pick the most
    specific one (a covered name beats its coverer; then the longer name, then fewer rights):
    revoking the narrowest delegation that made the request possible then also revokes its
    result, and no broader authority than needed is tied to it.
    """
    need = rights | Rights.GRANT
    candidates = [c for c in caps if (c.rights & need) == need and c.resource.covers(name)]
    if not candidates:
        return None
    best = candidates[0]
    for c in candidates[1:]:
        if best.resource.covers(c.resource) and not c.resource.covers(best.resource):
            best = c
        elif c.resource.covers(best.resource) and not best.resource.covers(c.resource):
            continue
        elif (len(str(c.resource)), -int(c.rights).bit_count()) > (
            len(str(best.resource)),
            -int(best.rights).bit_count(),
        ):
            best = c
    return best
