"""The kernel-side capability object: one node of the derivation tree.

A process never sees this object, only a handle number in its space. ``__slots__`` keeps a
node small and attribute access fast, which is what revocation of large trees pays for.
"""

from __future__ import annotations

import itertools

from exo.abi.rights import Rights

from .names import ResourceName

TYPE_CHECKING = False  # no runtime typing import on the boot path
if TYPE_CHECKING:
    from typing import Final

_ids = itertools.count(1)

#: ``owner`` of a capability that is in no space (in flight on a channel, or deleted).
NO_OWNER: Final = -1


class Capability:
    """Authority over ``resource`` with ``rights``, derived from ``parent``.

    ``revoked`` is set once, under the manager's lock, and never cleared: kernel objects
    opened through a capability (files, rings) keep a reference and test ``cap.revoked`` (or
    call :meth:`ensure_live`) on each operation, so revocation reaches them from the next
    operation on even before a revocation listener has closed them.
    """

    __slots__ = (
        "__weakref__",
        "badge",
        "children",
        "handle",
        "id",
        "owner",
        "parent",
        "resource",
        "revoked",
        "rights",
        "slot",
    )

    def __init__(
        self,
        resource: ResourceName,
        rights: Rights,
        parent: Capability | None = None,
        badge: int = 0,
    ) -> None:
        self.id: int = next(_ids)
        self.resource = resource
        self.rights = rights
        self.parent = parent
        self.children: set[Capability] = set()
        self.badge = badge
        self.owner: int = NO_OWNER
        self.handle: int = 0
        self.slot: int = -1  # table slot in the owner's space (kernel bookkeeping)
        self.revoked = False
        if parent is not None:
            parent.children.add(self)

    def ensure_live(self) -> None:
        """Raise :class:`CapabilityRevoked` if this capability has been revoked."""
        if self.revoked:
            from .errors import CapabilityRevoked

            raise CapabilityRevoked(f"capability #{self.id} on {self.resource} was revoked")

    def descendants(self) -> list[Capability]:
        """Every capability derived from this one, transitively (iterative: no recursion limit)."""
        out: list[Capability] = []
        stack = [self]
        extend, pop, push = out.extend, stack.pop, stack.extend
        while stack:
            kids = pop().children
            if kids:
                extend(kids)
                push(kids)
        return out

    def __repr__(self) -> str:
        state = " revoked" if self.revoked else ""
        return (
            f"<Capability #{self.id} {self.resource} {self.rights.format()} "
            f"owner={self.owner} handle={self.handle:#x}{state}>"
        )
