"""The kernel-wide capability manager: spaces, derivation tree, operations, audit.

Every operation takes one lock: the kernel serves syscalls from several threads, and one
lock makes each operation atomic with respect to revocation (a capability is either usable
or gone, never half-revoked). Revocation listeners run after the lock is released so that
they may call back into the manager.

Node lifecycle. A capability is held by a process space (``owner`` = pid), in flight on a
channel (``IN_FLIGHT``), or pinned by a kernel object such as an open file (``KERNEL``).
When its holder lets go (close, process exit) it leaves the tree only once it has no
children; until then it stays as an unheld interior node, so revoking any ancestor still
reaches everything that was derived through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from exo.abi.rights import Rights

from .audit import AuditLog
from .capability import NO_OWNER, Capability
from .errors import (
    CapabilityDenied,
    CapabilityError,
    CapabilityRevoked,
    InvalidHandle,
    NoSuchSpace,
    RightsEscalation,
    SpaceExists,
)
from .names import ResourceName, check_rights
from .policy import RequestPolicy, allow_all, choose_source
from .space import MAX_SLOTS, CapabilitySpace

TYPE_CHECKING = False  # typing and dataclasses stay off the boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Final

IN_FLIGHT: Final = -2
KERNEL: Final = -3

RevokeListener = Callable[[frozenset[Capability]], None]


class HandleInfo:
    """One row of ``caps``: what a process holds, without giving it the object."""

    __slots__ = ("badge", "cap_id", "children", "handle", "parent_id", "resource", "rights")

    def __init__(self, handle: int, cap_id: int, resource: ResourceName, rights: Rights,
                 badge: int, parent_id: int | None, children: int) -> None:
        self.handle = handle
        self.cap_id = cap_id
        self.resource = resource
        self.rights = rights
        self.badge = badge
        self.parent_id = parent_id
        self.children = children

    def __repr__(self) -> str:
        return f"HandleInfo(handle={self.handle}, {self.resource}, {self.rights})"


class CapabilityManager:
    """All capability spaces of the kernel and the operations on them."""

    def __init__(
        self,
        audit: AuditLog | None = None,
        policy: RequestPolicy | None = None,
        max_handles: int = MAX_SLOTS,
    ) -> None:
        self.audit = audit if audit is not None else AuditLog()
        self._policy: RequestPolicy = policy if policy is not None else allow_all
        self._max_handles = max_handles
        self._lock = threading.Lock()
        self._spaces: dict[int, CapabilitySpace] = {}
        self._roots: set[Capability] = set()
        self._listeners: list[RevokeListener] = []
        # pin -> the space it counts against (kept after the space is destroyed: the pin is
        # the kernel object's, and its budget, shared with ancestors, is charged until unpin)
        self._pinned_by: dict[Capability, CapabilitySpace] = {}

    # -- configuration -----------------------------------------------------------------------

    def set_policy(self, policy: RequestPolicy | None) -> None:
        """Replace the request policy hook (``None`` restores allow-all)."""
        with self._lock:
            self._policy = policy if policy is not None else allow_all

    def on_revoke(self, callback: RevokeListener) -> Callable[[], None]:
        """Call ``callback(revoked_caps)`` after every revocation; returns an unsubscribe.

        Kernel objects opened through a capability (files, rings) use this to close
        themselves; they should also test ``cap.revoked`` on each operation.
        """
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    # -- spaces ------------------------------------------------------------------------------

    def create_space(self, pid: int, *, max_handles: int | None = None,
                     max_received: int | None = None, max_pins: int | None = None,
                     parent: int | None = None) -> None:
        """Give process ``pid`` an empty capability space.

        ``max_handles`` (at most the manager's) bounds its table; ``max_received`` bounds
        how many of those may be capabilities moved in by other processes; ``max_pins`` how
        many kernel objects (open files) may be pinned through its handles at once. With
        ``parent`` (a process that has a space), its handles and pins also count against
        the parent's limits (``space.Budget``).
        """
        _check_pid(pid)
        limit = self._max_handles if max_handles is None else min(max_handles,
                                                                   self._max_handles)
        with self._lock:
            if pid in self._spaces:
                raise SpaceExists(f"process {pid} already has a capability space")
            above = self._spaces.get(parent) if parent is not None else None
            self._spaces[pid] = CapabilitySpace(pid, limit, max_received, max_pins, above)

    def set_max_received(self, pid: int, limit: int) -> None:
        """How many capabilities from other processes ``pid`` will hold (0: refuse all)."""
        with self._lock:
            self._space(pid).max_received = limit

    def received(self, pid: int) -> tuple[int, int]:
        """(capabilities from other processes ``pid`` holds, how many it accepts)."""
        with self._lock:
            space = self._space(pid)
            return space.received, space.max_received

    def destroy_space(self, pid: int) -> int:
        """Release every handle of ``pid`` (process exit); return how many were released.

        Releasing is not revoking: capabilities the process delegated to others survive and
        remain revocable through the tree.
        """
        with self._lock:
            space = self._spaces.pop(pid, None)
            if space is None:
                raise NoSuchSpace(f"process {pid} has no capability space")
            caps = space.clear()
            for cap in caps:
                self._let_go(cap)
        self.audit.record("release", pid=pid, count=len(caps), reason="process exit")
        self.audit.forget(pid)  # its rate-limit state, and how many denials it suppressed
        return len(caps)

    def has_space(self, pid: int) -> bool:
        with self._lock:
            return pid in self._spaces

    # -- granting ----------------------------------------------------------------------------

    def grant_root(self, pid: int, name: str | ResourceName, rights: Rights | str) -> int:
        """Kernel-initiated grant (e.g. ``exo run --cap``): a new root of a derivation tree."""
        try:
            res, want = ResourceName.parse(name), Rights.parse(rights)
            with self._lock:
                space = self._space(pid)
                cap = Capability(res, want)
                handle = space.insert(cap)
                self._roots.add(cap)
        except CapabilityError as exc:
            self._deny("grant_root", pid, None, name, rights, exc)
            raise
        self.audit.record(
            "grant", pid=pid, handle=handle, resource=res, rights=want, reason="kernel",
            cap_id=cap.id,
        )
        return handle

    def request(
        self,
        pid: int,
        name: str | ResourceName,
        rights: Rights | str,
        *,
        via: int | None = None,
    ) -> int:
        """Derive a capability for ``name`` from one the process holds (see ``policy``).

        With ``via``, only that handle is considered as the source; otherwise the most
        specific held capability that covers ``name`` with ``rights | GRANT`` is used.
        """
        try:
            res, want = ResourceName.parse(name), Rights.parse(rights)
            if want:  # rights the scheme does not use are refused, as in a grant
                check_rights(res, want)
            with self._lock:
                space = self._space(pid)
                if via is not None:
                    src = space.get(via, want | Rights.GRANT)
                    if not src.resource.covers(res):
                        raise CapabilityDenied(
                            f"handle {via:#x} ({src.resource}) does not cover {res}"
                        )
                else:
                    found = choose_source((c for _, c in space.items()), res, want)
                    if found is None:
                        raise CapabilityDenied(
                            f"process {pid} holds no capability covering {res} "
                            f"with {(want | Rights.GRANT).format()}"
                        )
                    src = found
                reason = self._policy(pid, res, want, src)
                if reason is not None:
                    raise CapabilityDenied(f"policy refused {res} {want.format()}: {reason}")
                cap = Capability(res, want, parent=src, badge=src.badge)
                handle = space.insert(cap)
        except CapabilityError as exc:
            self._deny("request", pid, via, name, rights, exc)
            raise
        self.audit.record(
            "grant", pid=pid, handle=handle, resource=res, rights=want,
            reason=f"request from cap #{src.id}", cap_id=cap.id,
        )
        return handle

    def duplicate(
        self, pid: int, handle: int, rights: Rights | str, *, badge: int | None = None
    ) -> int:
        """Attenuate: a new handle on the same resource with ``rights`` ⊆ the original's.

        Needs DUPLICATE. Asking for a right not held is an error (as in Zircon), not a
        silent narrowing. ``badge`` may be set once, on an unbadged capability (seL4 mint).
        """
        try:
            want = Rights.parse(rights)
            with self._lock:
                space = self._space(pid)
                src = space.get(handle, Rights.DUPLICATE)
                extra = want._value_ & ~src.rights._value_
                if extra:
                    raise RightsEscalation(
                        f"cannot add rights {Rights(extra).format()} to {src.resource} "
                        f"(handle {handle:#x} has {src.rights.format()})"
                    )
                if badge is not None and src.badge not in (0, badge):
                    raise CapabilityDenied(
                        f"handle {handle:#x} is already badged {src.badge:#x}"
                    )
                cap = Capability(src.resource, want, parent=src, badge=badge or src.badge)
                new = space.insert(cap)
        except CapabilityError as exc:
            self._deny("duplicate", pid, handle, None, rights, exc)
            raise
        self.audit.record(
            "duplicate", pid=pid, handle=new, resource=cap.resource, rights=want,
            reason=f"from handle {handle:#x}", cap_id=cap.id,
        )
        return new

    def delegate(self, from_pid: int, handle: int, to_pid: int, rights: Rights | str) -> int:
        """Derive a child of ``handle`` with ``rights`` straight into ``to_pid``'s space.

        How a parent passes capabilities to a process it spawns: like :meth:`duplicate`
        (needs DUPLICATE, rights must be a subset) followed by a move, but without
        requiring TRANSFER on the copy, and the child stays in the parent's derivation
        tree so revoking the parent's capability reaches it.
        """
        try:
            want = Rights.parse(rights)
            with self._lock:
                src = self._space(from_pid).get(handle, Rights.DUPLICATE)
                extra = want & ~src.rights
                if extra:
                    raise RightsEscalation(
                        f"cannot add rights {Rights(extra).format()} to {src.resource} "
                        f"(handle {handle:#x} has {src.rights.format()})"
                    )
                cap = Capability(src.resource, want, parent=src, badge=src.badge)
                new = self._space(to_pid).insert(cap)
        except CapabilityError as exc:
            self._deny("delegate", from_pid, handle, None, rights, exc, peer=to_pid)
            raise
        self.audit.record(
            "grant", pid=to_pid, handle=new, resource=cap.resource, rights=want,
            peer=from_pid, reason=f"delegated from handle {handle:#x}", cap_id=cap.id,
        )
        return new

    def derive_into(self, from_pid: int, to_pid: int, name: str | ResourceName,
                    rights: Rights | str) -> int:
        """Derive a capability for ``name`` with ``rights`` from one ``from_pid`` holds
        (covering ``name``, holding every right asked) straight into ``to_pid``'s space.

        How a login session's set bounds what its shell starts (``exo.kernel.sessions``):
        the session is a space with no process behind it, so no GRANT or DUPLICATE is
        asked of its capabilities (they are its root set, given by the kernel); the
        new capability is a child of the one it came from, so revoking that one (a
        logout) revokes it too. Rights the scheme does not use are refused, as in a grant.
        """
        try:
            res, want = ResourceName.parse(name), Rights.parse(rights)
            if want:
                check_rights(res, want)
            with self._lock:
                # The most specific capability covering the name with every right asked
                # (choose_source's rule without its GRANT: the session never runs code).
                held = [c for _, c in self._space(from_pid).items()
                        if (c.rights & want) == want and c.resource.covers(res)]
                src = max(held, key=lambda c: len(str(c.resource)), default=None)
                if src is None:
                    raise CapabilityDenied(
                        f"{res}={want.format()}: not held by this session "
                        f"(space {from_pid})")
                cap = Capability(res, want, parent=src, badge=src.badge)
                handle = self._space(to_pid).insert(cap)
        except CapabilityError as exc:
            self._deny("derive", from_pid, None, name, rights, exc, peer=to_pid)
            raise
        self.audit.record(
            "grant", pid=to_pid, handle=handle, resource=res, rights=want, peer=from_pid,
            reason=f"derived from cap #{src.id}", cap_id=cap.id,
        )
        return handle

    # -- moving ------------------------------------------------------------------------------

    def transfer(self, from_pid: int, handle: int, to_pid: int) -> int:
        """Move a handle to another process (needs TRANSFER); the sender's handle dies."""
        try:
            with self._lock:
                src_space, dst_space = self._space(from_pid), self._space(to_pid)
                src_space.get(handle, Rights.TRANSFER)
                received = from_pid != to_pid
                dst_space.check_room(received=received)  # a refusal leaves the sender whole
                cap = src_space.remove(handle)
                new = dst_space.insert(cap, received=received)
        except CapabilityError as exc:
            self._deny("transfer", from_pid, handle, None, None, exc, peer=to_pid)
            raise
        self.audit.record(
            "transfer", pid=from_pid, handle=new, resource=cap.resource, rights=cap.rights,
            peer=to_pid, reason=f"handle {handle:#x} -> {new:#x}", cap_id=cap.id,
        )
        return new

    def begin_transfer(self, pid: int, handle: int) -> Capability:
        """Take a handle out of ``pid`` to travel in a channel message (needs TRANSFER).

        The capability is then in no space (like a Zircon handle inside a message); finish
        with :meth:`complete_transfer` or :meth:`cancel_transfer`. Revoking it meanwhile
        makes ``complete_transfer`` fail.
        """
        try:
            with self._lock:
                space = self._space(pid)
                space.get(handle, Rights.TRANSFER)
                cap = space.remove(handle)
                cap.owner = IN_FLIGHT
        except CapabilityError as exc:
            self._deny("transfer", pid, handle, None, None, exc)
            raise
        return cap

    def complete_transfer(self, cap: Capability, to_pid: int, *, received: bool = True) -> int:
        """Install an in-flight capability into the receiver; return its new handle.

        ``received``: it comes from another process (counts against ``max_received``).
        """
        try:
            with self._lock:
                if cap.revoked:
                    raise CapabilityRevoked(f"capability #{cap.id} on {cap.resource} was revoked")
                if cap.owner != IN_FLIGHT:
                    raise InvalidHandle(f"capability #{cap.id} is not in flight")
                new = self._space(to_pid).insert(cap, received=received)
        except CapabilityError as exc:
            # The receiver is the actor here (its redemption failed): its rate limit applies.
            self._deny("transfer", to_pid, None, cap.resource, cap.rights, exc, peer=to_pid)
            raise
        self.audit.record(
            "transfer", handle=new, resource=cap.resource, rights=cap.rights, peer=to_pid,
            reason="delivered", cap_id=cap.id,
        )
        return new

    def cancel_transfer(self, cap: Capability) -> None:
        """Drop an in-flight capability that will never be delivered (channel closed)."""
        with self._lock:
            if cap.owner != IN_FLIGHT:
                return
            self._let_go(cap)
        self.audit.record(
            "release", resource=cap.resource, rights=cap.rights, reason="undelivered",
            cap_id=cap.id,
        )

    # -- kernel pins (open files, rings) -------------------------------------------------------

    def pin(self, pid: int, handle: int, rights: Rights | str) -> Capability:
        """Derive a kernel-held child for an object opened through ``handle`` (e.g. a file).

        The pin lives in the derivation tree, so revoking the handle or any ancestor marks
        it revoked (and hands it to revocation listeners), while the process closing its own
        handle leaves the open object usable, as with POSIX file descriptors.
        """
        try:
            want = Rights.parse(rights)
            with self._lock:
                space = self._space(pid)
                src = space.get(handle, want)
                cap = Capability(src.resource, want, parent=src, badge=src.badge)
                space.add_pin(cap)
                cap.owner = KERNEL
                self._pinned_by[cap] = space
        except CapabilityError as exc:
            self._deny("pin", pid, handle, None, rights, exc)
            raise
        return cap

    def unpin(self, cap: Capability) -> None:
        """The kernel object behind a pin was closed."""
        with self._lock:
            space = self._pinned_by.pop(cap, None)
            if space is not None:
                space.remove_pin(cap)
            if cap.owner == KERNEL:
                self._let_go(cap)

    # -- closing and revoking ----------------------------------------------------------------

    def close(self, pid: int, handle: int) -> None:
        """Release one handle of ``pid`` (not a revocation: derived capabilities survive)."""
        try:
            with self._lock:
                cap = self._space(pid).remove(handle)
                self._let_go(cap)
        except CapabilityError as exc:
            self._deny("close", pid, handle, None, None, exc)
            raise
        self.audit.record(
            "release", pid=pid, handle=handle, resource=cap.resource, rights=cap.rights,
            cap_id=cap.id,
        )

    def revoke(self, pid: int, handle: int, *, include_self: bool = False) -> int:
        """Revoke every capability derived from ``handle``, in every space (seL4 Revoke).

        The caller keeps ``handle`` unless ``include_self``. Returns how many capabilities
        were revoked. From the moment this returns, every one of them fails ``check``,
        ``pin`` holders see ``cap.revoked``, and listeners have been told.
        """
        try:
            with self._lock:
                cap = self._space(pid).get(handle)
                victims = self._revoke_locked(cap, include_self)
        except CapabilityError as exc:
            self._deny("revoke", pid, handle, None, None, exc)
            raise
        self.audit.record(
            "revoke", pid=pid, handle=handle, resource=cap.resource, rights=cap.rights,
            count=len(victims), reason="including self" if include_self else "descendants",
            cap_id=cap.id,
        )
        self._notify(victims)
        return len(victims)

    def revoke_resource(self, name: str | ResourceName) -> int:
        """Kernel/administrator revocation: every capability on a name covered by ``name``."""
        res = ResourceName.parse(name)
        with self._lock:
            tops: list[Capability] = []
            stack = list(self._roots)
            while stack:
                node = stack.pop()
                if res.covers(node.resource):
                    tops.append(node)
                else:
                    stack.extend(node.children)
            victims: list[Capability] = []
            for top in tops:
                if not top.revoked:
                    victims.extend(self._revoke_locked(top, include_self=True))
        self.audit.record("revoke", resource=res, count=len(victims), reason="kernel")
        self._notify(victims)
        return len(victims)

    # -- queries -----------------------------------------------------------------------------

    def check(self, pid: int, handle: int, rights: Rights | str = Rights.NONE) -> Capability:
        """The capability behind ``handle`` in ``pid`` if it holds ``rights``; else raise.

        Lock-free, because this is the hot path (every syscall on a handle): it only reads
        two dicts, each read atomic in CPython, and every writer changes them under the lock
        in an order that keeps a concurrent reader correct (a revoked capability is marked
        before it leaves the table, so a reader racing a revocation either sees it unrevoked,
        i.e. before the revocation, or fails). Failures are audited as denials.
        """
        try:
            if type(rights) is not Rights:
                rights = Rights.parse(rights)
            space = self._spaces.get(pid)
            if space is None:
                raise NoSuchSpace(f"process {pid} has no capability space")
            cap = space.get(handle, rights)
            if cap.revoked:
                raise space.invalid(handle)
            return cap
        except CapabilityError as exc:
            self._deny("check", pid, handle, None, rights, exc)
            raise

    def handles(self, pid: int) -> list[HandleInfo]:
        """What ``pid`` holds (the shell's ``caps``)."""
        with self._lock:
            return [
                HandleInfo(
                    handle=h,
                    cap_id=c.id,
                    resource=c.resource,
                    rights=c.rights,
                    badge=c.badge,
                    parent_id=c.parent.id if c.parent is not None else None,
                    children=len(c.children),
                )
                for h, c in self._space(pid).items()
            ]

    def pids(self) -> list[int]:
        """Processes that have a capability space."""
        with self._lock:
            return sorted(self._spaces)

    # -- internals (lock held) ---------------------------------------------------------------

    def _space(self, pid: int) -> CapabilitySpace:
        space = self._spaces.get(pid)
        if space is None:
            raise NoSuchSpace(f"process {pid} has no capability space")
        return space

    def _revoke_locked(self, cap: Capability, include_self: bool) -> list[Capability]:
        """Mark and remove ``cap``'s descendants (and ``cap`` if asked); bulk per space."""
        victims = cap.descendants()
        if include_self:
            victims.append(cap)
        by_owner: dict[int, list[Capability]] = {}
        for v in victims:
            v.revoked = True
            v.parent = None  # break parent/child cycles so refcounting frees the subtree
            owner = v.owner
            if owner >= 0:
                group = by_owner.get(owner)
                if group is None:
                    by_owner[owner] = [v]
                else:
                    group.append(v)
            else:
                v.owner = NO_OWNER
        spaces = self._spaces
        for owner, group in by_owner.items():
            spaces[owner].discard_many(group)
        cap.children = set()
        if include_self:
            self._roots.discard(cap)
        return victims

    def _let_go(self, cap: Capability) -> None:
        """``cap`` lost its holder: prune it (and unheld ancestors) once childless."""
        cap.owner = NO_OWNER
        node: Capability | None = cap
        while node is not None and node.owner == NO_OWNER and not node.children:
            parent = node.parent
            if parent is None:
                self._roots.discard(node)
            else:
                parent.children.discard(node)
            node = parent

    def _deny(
        self,
        op: str,
        pid: int | None,
        handle: int | None,
        name: object,
        rights: object,
        exc: CapabilityError,
        peer: int | None = None,
    ) -> None:
        self.audit.record(
            "deny",
            pid=pid,
            handle=handle if type(handle) is int else None,
            resource=name if name is None or isinstance(name, (str, ResourceName)) else None,
            rights=_rights_text(rights),
            reason=f"{op}: {type(exc).__name__}: {exc}",
            peer=peer,
        )

    def _notify(self, victims: list[Capability]) -> None:
        if not victims:
            return
        with self._lock:
            listeners = list(self._listeners)
        if not listeners:
            return
        revoked = frozenset(victims)
        for listener in listeners:
            try:
                listener(revoked)
            except Exception:
                import logging  # only on this error path: keeps boot imports lean

                logging.getLogger(__name__).exception(
                    "revocation listener %r failed", listener)


def _rights_text(value: object) -> str | None:
    """Best-effort rendering of caller-supplied rights for a denial record."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            return Rights.parse(value).format()
        except CapabilityError:
            return repr(value)[:80]
    return None


def _check_pid(pid: object) -> None:
    if type(pid) is not int or pid < 0:
        raise NoSuchSpace(f"invalid process id {pid!r}")
