"""Capabilities travelling inside channel messages, between two syscalls.

``transfer_out`` takes a handle out of the sender's space (it needs TRANSFER) and
returns a random one-use token that travels in the ring; ``transfer_in`` installs the
capability in whoever presents the token. A capability in flight belongs to no process,
like a Zircon handle inside a channel message; revoking an ancestor meanwhile makes the
token worthless. Tokens are random 32-bit numbers (a ring slot carries u32 handle
values), so a guess hits one of N outstanding tokens with probability N / 2**32; a
process may have at most ``MAX_PER_SENDER`` tokens outstanding.
"""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any

MAX_PER_SENDER = 1024


class InFlight:
    def __init__(self, caps: Any) -> None:
        self._caps = caps
        self._lock = threading.Lock()
        self._tokens: dict[int, tuple[Any, int]] = {}

    def put(self, pid: int, handle: int) -> int:
        with self._lock:
            if sum(1 for _, sender in self._tokens.values() if sender == pid) \
                    >= MAX_PER_SENDER:
                raise OverflowError(f"process {pid} has {MAX_PER_SENDER} capabilities "
                                    "in flight already")
        cap = self._caps.begin_transfer(pid, handle)
        with self._lock:
            token = 0
            while token == 0 or token in self._tokens:
                token = int.from_bytes(os.urandom(4), "little")
            self._tokens[token] = (cap, pid)
        return token

    def take(self, token: int, pid: int) -> int:
        with self._lock:
            entry = self._tokens.pop(token, None)
        if entry is None:
            raise LookupError("no capability travels under this token")
        return int(self._caps.complete_transfer(entry[0], pid))

    def cancel_all(self) -> None:
        with self._lock:
            entries, self._tokens = list(self._tokens.values()), {}
        for cap, _ in entries:
            self._caps.cancel_transfer(cap)

    def count(self) -> int:
        with self._lock:
            return len(self._tokens)
