"""The Exo kernel: one process that owns capability spaces, processes and the pool.

``Kernel.boot()`` runs the CRITICAL and NORMAL phases synchronously (the prompt
waits for them) and starts DEFERRED in a background thread after the prompt is up.
Every step reports OK, FAILED or SKIP with what it found; nothing is pretended.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from pathlib import Path

from exo import __version__
from exo._printable import printable
from exo.kernel.bootlog import (
    BootReport,
    BootStep,
    Phase,
    SkipStep,
    format_step,
    process_age_ms,
    write_step,
)
from exo.kernel.config import KernelConfig
from exo.kernel.fairshare import FairShare
from exo.kernel.procfs import VirtualTree, proc_tree, sys_tree
from exo.kernel.rotating import RotatingFile
from exo.kernel.tree import ensure_tree

TYPE_CHECKING = False  # no runtime typing import on the boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

    from exo.kernel.caps import CapabilityManager
    from exo.kernel.files import OpenFileTable
    from exo.kernel.inflight import InFlight
    from exo.kernel.process import ProcessManager


SWITCH_INTERVAL_S = 0.0005
LOG_LINES = 10_000  # kept in memory for dmesg
LOG_LINE_MAX = 16_384  # bytes of one message (a traceback fits)
LOG_FILE_MAX = 8 << 20  # kernel.log rotates to kernel.log.1 past this size


class Kernel:
    def __init__(self, config: KernelConfig, *, ephemeral: bool = False) -> None:
        self.config = config
        self.ephemeral = ephemeral
        self.monotonic_start = time.monotonic()
        self.root = config.root
        self.boot_id = os.urandom(4).hex()
        self.report = BootReport()
        self.started_at = time.time()
        self.first_boot = False
        self._deferred: threading.Thread | None = None
        self._shutdown_hooks: list[Callable[[], None]] = []
        self._down = False
        self.components: dict[str, Any] = {}
        # dmesg keeps the newest lines; the file rotates by size (a process that makes
        # the kernel log, e.g. by failing syscalls, must not grow it without bound)
        self.messages: deque[str] = deque(maxlen=LOG_LINES)
        self._log_file: RotatingFile | None = None
        self._log_lock = threading.Lock()
        self.shutdown_requested = threading.Event()
        self.fair_share = FairShare()
        # Under contention the interpreter lock changes hands after this long (5 ms by
        # default): one process's pure-Python request cannot hold every other process's
        # syscall for longer (see exo.kernel.fairshare).
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    # ----------------------------------------------------------------- boot
    def boot(self, log: TextIO | None = None) -> BootReport:
        raise_nofile_limit()
        if log is not None:
            log.write(self.version_line() + "\n")
        for phase, steps in ((Phase.CRITICAL, self._critical_steps()),
                             (Phase.NORMAL, self._normal_steps())):
            t0 = time.perf_counter()
            for name, fn in steps:
                step = self.report.run(phase, name, fn)
                self.log(format_step(step, colour=False))
                if log is not None:
                    write_step(log, step)
            self.report.phase_ms[phase.value] = (time.perf_counter() - t0) * 1000
        self.report.boot_ms = process_age_ms()
        return self.report

    def start_deferred(self, log: TextIO | None = None) -> None:
        """Start the DEFERRED phase in the background (after the prompt is ready)."""
        def run() -> None:
            t0 = time.perf_counter()
            for name, fn in self._deferred_steps():
                step = self.report.run(Phase.DEFERRED, name, fn)
                self.log(format_step(step, colour=False))
                if log is not None:
                    write_step(log, step)
            self.report.phase_ms[Phase.DEFERRED.value] = (time.perf_counter() - t0) * 1000

        self._deferred = threading.Thread(target=run, name="exo-deferred", daemon=True)
        self._deferred.start()

    def wait_deferred(self, timeout: float | None = None) -> None:
        if self._deferred is not None:
            self._deferred.join(timeout)

    def steps(self, phase: Phase) -> list[BootStep]:
        return [s for s in self.report.steps if s.phase is phase]

    # ------------------------------------------------------------ services
    @property
    def caps(self) -> CapabilityManager:
        component: CapabilityManager = self.components["caps"]
        return component

    @property
    def processes(self) -> ProcessManager:
        component: ProcessManager = self.components["processes"]
        return component

    @property
    def files(self) -> OpenFileTable:
        component: OpenFileTable = self.components["files"]
        return component

    @property
    def in_flight(self) -> InFlight:
        component: InFlight = self.components["in_flight"]
        return component

    def processes_or_none(self) -> ProcessManager | None:
        procs: ProcessManager | None = self.components.get("processes")
        return procs

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
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    # ------------------------------------------------------------- views
    def virtual_trees(self) -> dict[str, VirtualTree]:
        return {"proc": proc_tree(self), "sys": sys_tree(self)}

    def proc_files(self) -> dict[str, Callable[[], str]]:
        files: dict[str, Callable[[], str]] = {}
        for component in self.components.values():
            provider = getattr(component, "proc_files", None)
            if provider is not None:
                files.update(provider())
        pool = self.components.get("pool")
        if pool is not None:
            files["meminfo"] = pool.meminfo_text
        if "ipc" in self.components:
            from exo.ipc import proc_ipc_text

            files["ipc"] = proc_ipc_text
        files["fairshare"] = self.fair_share.proc_text
        return files

    def proc_pids(self) -> dict[int, dict[str, Callable[[], str]]]:
        procs = self.components.get("processes")
        return procs.proc_pids() if procs is not None else {}

    def process_rows(self) -> list[dict[str, Any]]:
        procs = self.components.get("processes")
        return procs.rows() if procs is not None else []

    def kill(self, pid: int, sig: int) -> None:
        procs = self.components.get("processes")
        if procs is None:
            raise LookupError(f"({pid}) - no such process")
        procs.kill(pid, sig)

    def spawn_program(self, shell: Any, ctx: Any, host_path: Path) -> Any:
        procs = self.components.get("processes")
        if procs is None:
            return None
        return procs.spawn_from_shell(shell, ctx, host_path)

    def request_shutdown(self) -> None:
        """Shutdown asked for from inside (the shell) or the control socket."""
        self.log("shutdown requested")
        self.shutdown_requested.set()

    # ------------------------------------------------------------- shutdown
    def on_shutdown(self, hook: Callable[[], None]) -> None:
        self._shutdown_hooks.append(hook)

    def shutdown(self) -> None:
        """Stop every Exo process and release every kernel resource. Idempotent."""
        if self._down:
            return
        self._down = True
        for hook in reversed(self._shutdown_hooks):
            try:
                hook()
            except Exception as exc:  # keep releasing the rest
                print(f"exo: shutdown: {exc}", file=sys.stderr)
        self._shutdown_hooks.clear()
        self.close_log()

    # ---------------------------------------------------------------- steps
    def _critical_steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("Exo tree", self._step_tree),
            ("Memory pool", self._step_pool),
            ("Capability space", self._step_caps),
            ("IPC (Fusion Rings)", self._step_ipc),
        ]

    def _normal_steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("Scheduler", self._step_scheduler),
            ("Processes and sandbox", self._step_processes),
            ("Syscall server", self._step_syscalls),
        ]

    def _deferred_steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("Sandbox filters", self._step_warm_sandbox),
            ("Security", self._step_security),
            ("AI agents", self._step_agents),
            ("POSIX-X", self._step_posix_x),
        ]

    def _step_tree(self) -> str:
        self.first_boot = ensure_tree(self.root)
        return f"{self.root}{', first boot: created' if self.first_boot else ''}"

    def _step_pool(self) -> str:
        try:
            from exo.mm import SharedPool
        except ImportError as exc:
            raise SkipStep(f"exo.mm not available: {exc}") from None
        pool = SharedPool.create(self.config.pool_size)
        self.components["pool"] = pool
        self.on_shutdown(pool.close)
        return f"{self.config.pool_size // (1024 * 1024)} MiB shared, memfd"

    def _step_caps(self) -> str:
        from exo.kernel.services import start_capabilities

        return start_capabilities(self)

    def _step_ipc(self) -> str:
        try:
            import exo.ipc as ipc
        except ImportError as exc:
            raise SkipStep(f"exo.ipc not available: {exc}") from None
        self.components["ipc"] = ipc
        return f"SPSC rings, {ipc.INLINE_MAX}-byte inline slots, zero-copy via the pool"

    def _step_scheduler(self) -> str:
        raise SkipStep(f"predictive scheduler not built yet; {os.cpu_count()} CPUs")

    def _step_processes(self) -> str:
        from exo.kernel.services import start_processes

        return start_processes(self)

    def _step_syscalls(self) -> str:
        from exo.kernel.services import start_syscalls

        return start_syscalls(self)

    def _step_warm_sandbox(self) -> str:
        from exo.kernel.services import warm_sandbox

        return warm_sandbox(self)

    def _step_security(self) -> str:
        found = []
        if Path("/dev/tpm0").exists() or Path("/dev/tpmrm0").exists():
            found.append("hardware TPM present")
        elif _which("swtpm"):
            found.append("swtpm installed")
        raise SkipStep(
            "TPM/HSM integration not built yet"
            + (f" ({', '.join(found)})" if found else " (no TPM on this host)")
        )

    def _step_agents(self) -> str:
        raise SkipStep("AI agents not built yet")

    def _step_posix_x(self) -> str:
        raise SkipStep("POSIX-X not built yet")


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


def _which(program: str) -> bool:
    """Whether ``program`` is on PATH (shutil.which without importing shutil at boot)."""
    return any(os.access(os.path.join(d, program), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep) if d)
