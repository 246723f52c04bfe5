"""Capabilities travelling inside channel messages, between two syscalls.

``transfer_out`` takes a handle out of the sender's space (it needs TRANSFER) and returns a
random one-use token that travels in the ring; ``transfer_in`` installs the capability in
the process the sender named when it issued the token, and only there. A capability in
flight belongs to no process, like a Zircon handle inside a channel message; revoking an
ancestor meanwhile makes the token worthless.

Why tokens are bound to their receiver: a ring slot carries a 32-bit value that anyone who
reads the message (or guesses) could present; a bearer token would let an unrelated process
steal the capability. A token presented by anyone else is refused and stays valid for its
receiver. The receiver's own bounds apply when it redeems (``received`` quota, or it refusing
capabilities from others); a refused redemption also leaves the token valid, so it can
retry after making room.

Tokens are random 32-bit numbers, so a guess hits one of N outstanding tokens with
probability N / 2**32 (and then only the receiver can use it); a process may have at most
its ``in_flight`` quota of tokens outstanding.
"""

from __future__ import annotations

import os
import threading

from exo.kernel.caps.errors import CapabilityDenied, QuotaExceeded

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any

MAX_PER_SENDER = 1024  # when the caller names no quota


class _Token:
    __slots__ = ("cap", "receiver", "sender")

    def __init__(self, cap: Any, sender: int, receiver: int) -> None:
        self.cap = cap
        self.sender = sender
        self.receiver = receiver


class InFlight:
    def __init__(self, caps: Any) -> None:
        self._caps = caps
        self._lock = threading.Lock()
        self._tokens: dict[int, _Token] = {}
        self._per_sender: dict[int, int] = {}

    def put(self, pid: int, handle: int, receiver: int, *,
            limit: int = MAX_PER_SENDER) -> int:
        """Take ``handle`` out of ``pid`` for ``receiver``; return the token to send it."""
        with self._lock:
            outstanding = self._per_sender.get(pid, 0)
            if outstanding >= limit:
                raise QuotaExceeded("in_flight", limit,
                                    f"process {pid} has {outstanding} capabilities in flight "
                                    "that no receiver has redeemed")
            self._per_sender[pid] = outstanding + 1  # reserved before the cap leaves
        try:
            cap = self._caps.begin_transfer(pid, handle)
        except BaseException:
            self._release_slot(pid)
            raise
        with self._lock:
            token = 0
            while token == 0 or token in self._tokens:
                token = int.from_bytes(os.urandom(4), "little")
            self._tokens[token] = _Token(cap, pid, receiver)
        return token

    def take(self, token: int, pid: int) -> int:
        """Redeem ``token`` as process ``pid``: only its named receiver may."""
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                raise LookupError("no capability travels under this token")
            if entry.receiver != pid:
                # The token stays valid for its receiver.
                exc = CapabilityDenied(f"this token was issued to process {entry.receiver}, "
                                       f"not {pid}")
            else:
                exc = None
                del self._tokens[token]
        if exc is not None:
            self._caps.audit.record("deny", pid=pid, resource=entry.cap.resource,
                                    peer=entry.receiver, reason=f"transfer_in: {exc}")
            raise exc
        try:
            handle = int(self._caps.complete_transfer(entry.cap, pid,
                                                      received=entry.sender != pid))
        except QuotaExceeded:
            with self._lock:  # the receiver is full: it may make room and redeem again
                self._tokens[token] = entry
            raise
        except BaseException:
            self._release_slot(entry.sender)
            raise
        self._release_slot(entry.sender)
        return handle

    def drop_receiver(self, pid: int) -> int:
        """``pid`` exited: tokens only it could redeem are worthless; release them."""
        with self._lock:
            gone = [t for t, e in self._tokens.items() if e.receiver == pid]
            entries = [self._tokens.pop(t) for t in gone]
            for e in entries:
                self._release_slot_locked(e.sender)
        for e in entries:
            self._caps.cancel_transfer(e.cap)
        return len(entries)

    def cancel_all(self) -> None:
        with self._lock:
            entries, self._tokens, self._per_sender = list(self._tokens.values()), {}, {}
        for e in entries:
            self._caps.cancel_transfer(e.cap)

    def count(self, sender: int | None = None) -> int:
        with self._lock:
            if sender is None:
                return len(self._tokens)
            return self._per_sender.get(sender, 0)

    def _release_slot(self, sender: int) -> None:
        with self._lock:
            self._release_slot_locked(sender)

    def _release_slot_locked(self, sender: int) -> None:
        left = self._per_sender.get(sender, 0) - 1
        if left > 0:
            self._per_sender[sender] = left
        else:
            self._per_sender.pop(sender, None)
