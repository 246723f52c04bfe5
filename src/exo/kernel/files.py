"""Files the kernel opened for processes, kept so revocation and exit can find them."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exo.kernel.process import ExoProcess


class OpenFileTable:
    """Pins (kernel-held derived capabilities) of files opened through the kernel."""

    def __init__(self, caps: Any) -> None:
        self._caps = caps
        self._lock = threading.Lock()
        self._by_pid: dict[int, list[Any]] = defaultdict(list)

    def register(self, proc: ExoProcess, pin: Any, fd: int) -> None:
        with self._lock:
            first = proc.pid not in self._by_pid
            self._by_pid[proc.pid].append(pin)
        if first:
            proc.on_exit.append(self._release)

    def _release(self, proc: ExoProcess) -> None:
        with self._lock:
            pins = self._by_pid.pop(proc.pid, [])
        for pin in pins:
            self._caps.unpin(pin)

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_pid.values())
