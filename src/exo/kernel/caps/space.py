"""A process's capability space: the kernel-owned table from handle numbers to capabilities.

Handle numbers follow Zircon's idea, adapted: a number encodes a table slot and that slot's
generation, passed through a keyed bijection on 31 bits (xor a random per-space salt,
multiply by odd constants, xor-shift) so that neighbouring slots do not give neighbouring
numbers. So

* a closed handle is stale at once (its slot's generation moved on) and stays invalid until
  the same slot has been reused 2**15 times; freed slots are reused oldest-first;
* a handle copied from another process means nothing here (different salt);
* a guessed number hits a live handle with probability ``live / 2**31``.

The table itself is a dict keyed by the handle number, so a lookup is a single dict probe.
Not thread-safe on its own: the :class:`~.manager.CapabilityManager` lock guards it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator

from exo.abi.rights import Rights

from .capability import NO_OWNER, Capability
from .errors import InsufficientRights, InvalidHandle, QuotaExceeded, SpaceFull

SLOT_BITS = 16
GEN_BITS = 15
MAX_SLOTS = 1 << SLOT_BITS
MAX_PINS = 1 << 16  # when the kernel names no quota
_GEN_MASK = (1 << GEN_BITS) - 1
_RAW_MASK = (1 << (SLOT_BITS + GEN_BITS)) - 1
_M1 = 0x2C1B3C6D  # odd multipliers: bijective modulo 2**31
_M2 = 0x297A2D39


class Budget:
    """How many of one resource a process *and its descendants* hold together.

    Each space charges its own budget, whose ``parent`` is its parent process's: a child's
    handles (or pinned files) count against every ancestor's limit too, so a process cannot
    multiply its quota by spawning children. Guarded by the manager's lock, like the space.
    """

    __slots__ = ("limit", "name", "owner", "parent", "used", "what")

    def __init__(self, name: str, limit: int, owner: int, parent: Budget | None = None,
                 what: str = "") -> None:
        self.name = name
        self.what = what or name  # how a message names what is counted
        self.limit = limit
        self.owner = owner
        self.parent = parent
        self.used = 0

    def check(self, n: int = 1) -> None:
        """Raise QuotaExceeded (SpaceFull for handles) if ``n`` more would not fit."""
        budget: Budget | None = self
        while budget is not None:
            if budget.used + n > budget.limit:
                error = SpaceFull if budget.name == "handles" else QuotaExceeded
                raise error(budget.name, budget.limit,
                            f"process {budget.owner} (with its descendants) holds "
                            f"{budget.used} {budget.what}")
            budget = budget.parent

    def charge(self, n: int = 1) -> None:
        self.check(n)
        budget: Budget | None = self
        while budget is not None:
            budget.used += n
            budget = budget.parent

    def release(self, n: int = 1) -> None:
        budget: Budget | None = self
        while budget is not None:
            budget.used -= n
            budget = budget.parent


class CapabilitySpace:
    """Handle table of one process (``pid``)."""

    __slots__ = ("_free", "_gens", "_received", "_salt", "_salt2", "_table", "handle_budget",
                 "max_handles", "max_pins", "max_received", "pid", "pin_budget", "pins")

    def __init__(self, pid: int, max_handles: int = MAX_SLOTS,
                 max_received: int | None = None, max_pins: int | None = None,
                 parent: CapabilitySpace | None = None) -> None:
        if not 1 <= max_handles <= MAX_SLOTS:
            raise ValueError(f"max_handles must be in 1..{MAX_SLOTS}")
        self.pid = pid
        self.max_handles = max_handles
        # Handles that other processes moved in (transfers) are bounded separately, so a
        # peer cannot fill this table: the process decides how much it accepts from others.
        self.max_received = max_handles if max_received is None else max_received
        self._received: set[int] = set()
        # Kernel objects opened through this process's handles (open files, exports): they
        # cost the kernel descriptors and server state, so they are bounded too.
        self.max_pins = MAX_PINS if max_pins is None else max_pins
        self.pins: set[Capability] = set()
        # Shared with the parent process's space (``parent``): see Budget.
        self.handle_budget: Budget = Budget("handles", max_handles, pid,
                                            parent.handle_budget if parent is not None
                                            else None)
        self.pin_budget: Budget = Budget("files", self.max_pins, pid,
                                         parent.pin_budget if parent is not None else None,
                                         "files and directories open through the kernel")
        # os.urandom, like ``secrets``, without importing secrets' dependencies at boot.
        self._salt = _random_bits(SLOT_BITS + GEN_BITS)
        self._salt2 = _random_bits(SLOT_BITS + GEN_BITS)
        self._table: dict[int, Capability] = {}
        self._gens: list[int] = []  # per-slot generation, grows on demand
        self._free: deque[int] = deque()

    # -- handle numbers --------------------------------------------------------------------

    def _encode(self, slot: int, gen: int) -> int:
        x = (((gen << SLOT_BITS) | slot) ^ self._salt) * _M1 & _RAW_MASK
        x ^= x >> 15
        x = (x * _M2 & _RAW_MASK) ^ self._salt2
        # Bit 0 always set: 0 is never a valid handle (callers may use it as "none").
        return (x << 1) | 1

    # -- table operations ------------------------------------------------------------------

    def insert(self, cap: Capability, *, received: bool = False) -> int:
        """Put ``cap`` in a fresh slot; return its new handle number.

        ``received``: it comes from another process (a transfer), and counts against
        ``max_received`` as long as it is held here.
        """
        self.check_room(received=received)
        self.handle_budget.charge()
        if self._free:
            slot = self._free.popleft()
            gen = (self._gens[slot] + 1) & _GEN_MASK
            self._gens[slot] = gen
        else:
            slot = len(self._gens)
            gen = 1
            self._gens.append(gen)
        handle = self._encode(slot, gen)
        self._table[handle] = cap
        if received:
            self._received.add(handle)
        cap.slot = slot
        cap.owner = self.pid
        cap.handle = handle
        return handle

    def check_room(self, *, received: bool = False) -> None:
        """Raise what :meth:`insert` would raise for lack of room, without inserting."""
        if received and len(self._received) >= self.max_received:
            raise QuotaExceeded("received", self.max_received,
                                f"process {self.pid} holds {len(self._received)} "
                                "capabilities received from other processes")
        if not self._free and len(self._gens) >= self.max_handles:
            raise SpaceFull("handles", self.max_handles,
                            f"process {self.pid} already holds {len(self._table)} handles "
                            f"(limit {self.max_handles})")
        self.handle_budget.check()

    def add_pin(self, cap: Capability) -> None:
        """Count a kernel object opened through a handle here (quota ``files``)."""
        try:
            self.pin_budget.check()
        except QuotaExceeded:
            # Revoked pins whose objects are gone may not all have been handed back yet.
            for gone in [c for c in self.pins if c.revoked]:
                self.remove_pin(gone)
            self.pin_budget.check()
        self.pin_budget.charge()
        self.pins.add(cap)

    def remove_pin(self, cap: Capability) -> None:
        """The kernel object behind ``cap`` was closed (or it was revoked)."""
        if cap in self.pins:
            self.pins.discard(cap)
            self.pin_budget.release()

    def remove(self, handle: int) -> Capability:
        """Take a handle out of the table (the capability itself is left to the caller)."""
        cap = self._table.pop(handle, None)
        if cap is None:
            raise self.invalid(handle)
        self._received.discard(handle)
        self.handle_budget.release()
        self._free.append(cap.slot)
        cap.owner = NO_OWNER
        cap.handle = 0
        return cap

    def discard_many(self, caps: list[Capability]) -> None:
        """Bulk removal used by revocation: every cap must currently live in this space."""
        table_pop, free_append = self._table.pop, self._free.append
        received = self._received
        self.handle_budget.release(len(caps))
        for cap in caps:
            if received:
                received.discard(cap.handle)
            table_pop(cap.handle)
            free_append(cap.slot)
            cap.owner = NO_OWNER
            cap.handle = 0

    def get(self, handle: int, needed: Rights = Rights.NONE) -> Capability:
        """The capability behind ``handle``, which must hold ``needed``.

        Raises :class:`InvalidHandle` or :class:`InsufficientRights`.
        """
        cap = self._table.get(handle) if type(handle) is int else None
        if cap is None:
            raise self.invalid(handle)
        missing = needed._value_ & ~cap.rights._value_  # plain ints: Flag operators are slow
        if missing:
            raise InsufficientRights(
                f"rights {Rights(missing).format()} not held on {cap.resource} "
                f"(handle {handle:#x} in process {self.pid} has {cap.rights.format()})"
            )
        return cap

    def __contains__(self, handle: object) -> bool:
        return handle in self._table

    def __len__(self) -> int:
        return len(self._table)

    @property
    def received(self) -> int:
        """How many of the handles held here were moved in by other processes."""
        return len(self._received)

    def items(self) -> Iterator[tuple[int, Capability]]:
        """``(handle, capability)`` pairs, in insertion order."""
        return iter(list(self._table.items()))

    def clear(self) -> list[Capability]:
        """Remove every handle (process exit); return the capabilities that were held."""
        caps = list(self._table.values())
        self.discard_many(caps)
        return caps

    def invalid(self, handle: object) -> InvalidHandle:
        """The error for a handle that is not valid here (one message for every cause)."""
        shown = f"{handle:#x}" if type(handle) is int else repr(handle)
        return InvalidHandle(f"handle {shown} is not valid in process {self.pid}")


def _random_bits(n: int) -> int:
    return int.from_bytes(os.urandom((n + 7) // 8), "little") & ((1 << n) - 1)
