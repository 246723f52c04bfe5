"""What every part of the kernel shares: its settings, identity, log and boot report.

``KernelCore`` is what a subsystem receives besides the subsystems it requires (see
``exo.kernel.subsystem``): the Exo root, the boot id, the kernel log, the fair-share
meter and the shutdown request. It knows nothing of capabilities or processes, so every
module may depend on it without pulling in the rest of the kernel.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

from exo import __version__
from exo._printable import printable
from exo.kernel.bootlog import BootReport
from exo.kernel.fairshare import FairShare
from exo.kernel.rotating import RotatingFile

TYPE_CHECKING = False  # no runtime typing import on the boot path (exo/_value.py)
if TYPE_CHECKING:
    from exo.kernel.config import KernelConfig

LOG_LINES = 10_000  # kept in memory for dmesg
LOG_LINE_MAX = 16_384  # bytes of one message (a traceback fits)
LOG_FILE_MAX = 8 << 20  # kernel.log rotates to kernel.log.1 past this size


class KernelCore:
    """The kernel's state that is not a subsystem: fixed at construction, or append-only."""

    __slots__ = ("_down", "_log_file", "_log_lock", "boot_id", "config", "ephemeral",
                 "fair_share", "messages", "monotonic_start", "report", "root",
                 "shutdown_requested", "started_at")

    def __init__(self, config: KernelConfig, *, ephemeral: bool = False) -> None:
        self.config = config
        self.ephemeral = ephemeral  # the kernel of one `exo run`: no control socket
        self.root = config.root
        self.boot_id = os.urandom(4).hex()
        self.monotonic_start = time.monotonic()
        self.started_at = time.time()
        self.report = BootReport()
        self.fair_share = FairShare()
        self.shutdown_requested = threading.Event()
        # dmesg keeps the newest lines; the file rotates by size (a process that makes
        # the kernel log, e.g. by failing syscalls, must not grow it without bound)
        self.messages: deque[str] = deque(maxlen=LOG_LINES)
        self._log_file: RotatingFile | None = None
        self._log_lock = threading.Lock()
        self._down = False

    def version_line(self) -> str:
        return f"Exo-OS {__version__} ({os.uname().machine})"

    def log(self, message: str) -> None:
        """A kernel message: kept for ``dmesg`` and appended to /var/log/kernel.log.

        The file stays open: the kernel must still be able to say what happened when it
        runs out of descriptors. Past LOG_FILE_MAX bytes it rotates to kernel.log.1 (one
        old file kept)."""
        stamp = time.time() - self.started_at
        # what an app chose (a command line, a name) must not reach a terminal as escapes
        line = f"[{stamp:10.6f}] {printable(message[:LOG_LINE_MAX])}"
        with self._log_lock:
            self.messages.append(line)
            try:
                if self._log_file is None:
                    self._log_file = RotatingFile(self.root / "var" / "log" / "kernel.log",
                                                  LOG_FILE_MAX, 1)
                self._log_file.write((line + "\n").encode("utf-8", "replace"))
                if self._down:  # late lines (reapers) after shutdown: hold nothing open
                    self._log_file.close()
                    self._log_file = None
            except OSError:
                pass

    def close_log(self) -> None:
        """Close the log file; lines logged later (reapers) reopen and close it."""
        with self._log_lock:
            self._down = True
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def request_shutdown(self) -> None:
        """Shutdown asked for from inside (the shell) or the control socket."""
        self.log("shutdown requested")
        self.shutdown_requested.set()
