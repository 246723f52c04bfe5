"""The Exo kernel: one process that owns capability spaces, processes and the pool.

``Kernel`` is the composition root: it runs the boot table (``exo.kernel.boottable``),
hands each subsystem its collaborators, and stops them in reverse at shutdown.
``Kernel.boot()`` runs the CRITICAL and NORMAL phases synchronously (the prompt waits for
them) and ``start_deferred()`` runs DEFERRED in a background thread once the prompt is
up. Every step reports OK, FAILED or SKIP with what it found; nothing is pretended.

Above the kernel, the shell and the control socket use ``Kernel.api``
(``exo.kernel.api.KernelApi``), not the kernel itself.
"""

from __future__ import annotations

import functools  # already loaded by re
import sys
import threading
import time

from exo.kernel.api import KernelApi
from exo.kernel.bootlog import Phase, SkipStep, format_step, process_age_ms, write_step
from exo.kernel.boottable import BOOT_TABLE
from exo.kernel.core import KernelCore
from exo.kernel.procfs import VirtualTree, proc_tree, sys_tree

TYPE_CHECKING = False  # no runtime typing import on the boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

    from exo.kernel.bootlog import BootReport, BootStep
    from exo.kernel.caps import CapabilityManager
    from exo.kernel.config import KernelConfig
    from exo.kernel.files import OpenFileTable
    from exo.kernel.inflight import InFlight
    from exo.kernel.process import ProcessManager
    from exo.kernel.subsystem import Row, Subsystem


SWITCH_INTERVAL_S = 0.0005
#: How long a shutdown waits for a DEFERRED step still starting to end (seconds).
DEFERRED_STOP_WAIT = 5.0


class Kernel:
    """Runs the boot table and holds what it started; the syscall handlers' view of it."""

    def __init__(self, config: KernelConfig, *, ephemeral: bool = False) -> None:
        self.core = core = KernelCore(config, ephemeral=ephemeral)
        # the core's parts, as the syscall handlers and tests know them
        self.config = config
        self.ephemeral = ephemeral
        self.root = core.root
        self.boot_id = core.boot_id
        self.report = core.report
        self.messages = core.messages
        self.fair_share = core.fair_share
        self.shutdown_requested = core.shutdown_requested
        self.started_at = core.started_at
        self.monotonic_start = core.monotonic_start
        self._lock = threading.Lock()
        self._running: list[Subsystem] = []  # in start order: stopped in reverse
        self._by_key: dict[str, Subsystem] = {}  # for the rows that require them
        self._deferred: threading.Thread | None = None
        self._down = False
        # Under contention the interpreter lock changes hands after this long (5 ms by
        # default): one process's pure-Python request cannot hold every other process's
        # syscall for longer (see exo.kernel.fairshare).
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    # ----------------------------------------------------------------- boot
    def boot(self, log: TextIO | None = None) -> BootReport:
        raise_nofile_limit()
        if log is not None:
            log.write(self.version_line() + "\n")
        self._run_phase(Phase.CRITICAL, log)
        self._run_phase(Phase.NORMAL, log)
        self.report.boot_ms = process_age_ms()
        return self.report

    def start_deferred(self, log: TextIO | None = None) -> None:
        """Start the DEFERRED phase in the background (after the prompt is ready)."""
        self._deferred = threading.Thread(target=self._run_phase, args=(Phase.DEFERRED, log),
                                          name="exo-deferred", daemon=True)
        self._deferred.start()

    def wait_deferred(self, timeout: float | None = None) -> None:
        if self._deferred is not None:
            self._deferred.join(timeout)

    def steps(self, phase: Phase) -> list[BootStep]:
        return [s for s in self.report.steps if s.phase is phase]

    def _run_phase(self, phase: Phase, log: TextIO | None) -> None:
        t0 = time.perf_counter()
        for row in BOOT_TABLE:
            if row.phase is not phase:
                continue
            if self._down:  # shut down while DEFERRED was still starting things
                break
            step = self.report.run(phase, row.name, functools.partial(self._start, row))
            self.log(format_step(step, colour=False))
            if log is not None:
                write_step(log, step)
        self.report.phase_ms[phase.value] = (time.perf_counter() - t0) * 1000

    def _start(self, row: Row) -> str:
        """Build and start the subsystem of ``row``: its detail for the boot log."""
        if not isinstance(row.target, str):
            raise row.target.skip()
        missing = [key for key in row.requires if key not in self._by_key]
        if missing:
            names = {r.key: r.name for r in BOOT_TABLE}
            raise RuntimeError("needs " + ", ".join(names.get(k, k) for k in missing))
        sub = row.load()(self.core, **{key: self._by_key[key] for key in row.requires})
        sub.name, sub.phase, sub.requires = row.name, row.phase, row.requires
        try:
            detail = sub.start()
        except BaseException:
            try:
                sub.stop()  # whatever it took before it failed
            except Exception as exc:
                self.log(f"{row.name}: releasing after a failed start: {exc}")
            raise
        with self._lock:
            late = self._down
            if not late:
                self._running.append(sub)
                self._by_key[row.key] = sub
        if late:
            sub.stop()
            raise SkipStep("the kernel is shutting down")
        return detail

    # ------------------------------------------------------------ subsystems
    def _started(self, key: str) -> Any:
        sub = self._by_key.get(key)
        if sub is None:
            raise LookupError(f"the kernel's {key} subsystem is not running")
        return sub

    @property
    def caps(self) -> CapabilityManager:
        manager: CapabilityManager = self._started("caps").manager
        return manager

    @property
    def files(self) -> OpenFileTable:
        files: OpenFileTable = self._started("caps").files
        return files

    @property
    def in_flight(self) -> InFlight:
        in_flight: InFlight = self._started("caps").in_flight
        return in_flight

    @property
    def processes(self) -> ProcessManager:
        manager: ProcessManager = self._started("processes").manager
        return manager

    def processes_or_none(self) -> ProcessManager | None:
        sub = self._by_key.get("processes")
        manager: ProcessManager | None = getattr(sub, "manager", None)
        return manager

    @property
    def api(self) -> KernelApi:
        """The kernel's API for the shell and other front ends (after ``boot``)."""
        caps = self._by_key.get("caps")
        return KernelApi(self.core, getattr(caps, "manager", None), self.processes_or_none())

    # ------------------------------------------------------------- core
    def version_line(self) -> str:
        return self.core.version_line()

    def log(self, message: str) -> None:
        """A kernel message: kept for ``dmesg`` and appended to /var/log/kernel.log."""
        self.core.log(message)

    def request_shutdown(self) -> None:
        self.core.request_shutdown()

    # ------------------------------------------------------------- views
    def virtual_trees(self) -> dict[str, VirtualTree]:
        return {"proc": proc_tree(self.core, self.proc_files, self.proc_pids),
                "sys": sys_tree(self.core)}

    def proc_files(self) -> dict[str, Callable[[], str]]:
        """The kernel's files in /proc: each running subsystem's, and the fair share."""
        with self._lock:
            running = list(self._running)
        files: dict[str, Callable[[], str]] = {}
        for sub in running:
            files.update(sub.proc_files())
        files["fairshare"] = self.core.fair_share.proc_text
        return files

    def proc_pids(self) -> dict[int, dict[str, Callable[[], str]]]:
        procs = self.processes_or_none()
        return procs.proc_pids() if procs is not None else {}

    # ------------------------------------------------------------- shutdown
    def shutdown(self) -> None:
        """Stop every subsystem, last started first, and close the log. Idempotent."""
        with self._lock:
            if self._down:
                return
            self._down = True
            running, self._running = self._running, []
            self._by_key.clear()
        for sub in reversed(running):
            try:
                sub.stop()
            except Exception as exc:  # keep releasing the rest
                print(f"exo: shutdown: {exc}", file=sys.stderr)
        # A DEFERRED step still starting ends by stopping what it started (_start sees
        # _down): waited for, within a bound, so that the process does not exit first and
        # leave it held (the boot's cgroup directories, for one).
        deferred = self._deferred
        if deferred is not None and deferred is not threading.current_thread():
            deferred.join(DEFERRED_STOP_WAIT)
        self.core.close_log()


def raise_nofile_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the soft limit.

    The kernel holds descriptors for every process (exports, open files, channels), so it
    may use all the host allows; per-process bounds (``kernel.files``, the directory
    server) keep any one application from taking them all.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:  # the soft limit cannot be infinite for files
        try:
            with open("/proc/sys/fs/nr_open") as fh:
                hard = int(fh.read())
        except (OSError, ValueError):
            return soft
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
    except (OSError, ValueError):
        return soft
    return hard
