"""The kernel's API for what stands above it: the shell, the control socket, a console.

One narrow object, ``KernelApi``: list, signal and run processes, read capabilities and
the audit log, the kernel's messages, ask for shutdown. It is built from the kernel's core
and the two managers it serves from (either may be missing when its boot step failed),
so whoever holds it reaches nothing else of the kernel.

``run`` is the one place where "start argv under these capabilities and this manifest,
wait for it, give its exit status" is done: the shell's ``run``, the control socket's
``run`` (``exo run`` on a running kernel) and ``exo run`` on an ephemeral kernel all call
it, and so do the shell's jobs for the waiting and interrupting part.
"""

from __future__ import annotations

import contextlib
import errno
import signal

TYPE_CHECKING = False  # no runtime typing import on the boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any

    from exo.kernel.caps import CapabilityManager
    from exo.kernel.core import KernelCore
    from exo.kernel.manifest import Grant, Manifest
    from exo.kernel.process import ExoProcess, ProcessManager

#: How long an interrupted process has between SIGINT and SIGKILL.
INTERRUPT_GRACE_S = 1.0
_POLL_S = 0.05  # how often a wait looks at its ``cancelled`` condition


class ProcessesUnavailable(RuntimeError):
    """This kernel cannot start processes (its "Processes and sandbox" step failed)."""


def exit_code(status: int) -> int:
    """Shell convention: a process killed by signal N exits 128+N."""
    return status if status >= 0 else 128 - status


def failure_status(exc: BaseException) -> int:
    """The exit status for a process that could not be started, as a shell would give it:
    127 when the program does not exist, 126 when it (or its sandbox) cannot be run, 2 for
    a capability or manifest that cannot be used as given, 1 for anything else. ``exc``
    may come from this process or from the running kernel (a ``KernelError`` carries the
    kernel's exception name as ``kind``)."""
    kind = getattr(exc, "kind", type(exc).__name__)
    if kind in ("ManifestError", "NoSuchObject"):  # a capability that cannot be used
        return 2
    if kind == "ExecFailed":
        return 127 if getattr(exc, "errno", None) == errno.ENOENT else 126
    return 126 if kind in ("SandboxError", "SandboxUnavailable", "ProcessesUnavailable") else 1


class KernelApi:
    """The kernel as the shell, the control socket and a console see it."""

    __slots__ = ("_caps", "_core", "_processes")

    def __init__(self, core: KernelCore, caps: CapabilityManager | None,
                 processes: ProcessManager | None) -> None:
        self._core = core
        self._caps = caps
        self._processes = processes

    # ------------------------------------------------------------ identity
    @property
    def root(self) -> Path:
        return self._core.root

    @property
    def boot_id(self) -> str:
        return self._core.boot_id

    @property
    def dev_mode(self) -> bool:
        return self._core.config.dev_mode

    def log(self, message: str) -> None:
        self._core.log(message)

    def dmesg(self) -> list[str]:
        return list(self._core.messages)

    def request_shutdown(self) -> None:
        self._core.request_shutdown()

    # ------------------------------------------------------------ processes
    def ps(self) -> list[dict[str, Any]]:
        """One row per process, the kernel (pid 1) first; empty without a process manager."""
        return self._processes.rows() if self._processes is not None else []

    # the control socket's handler asks for the rows by this name
    process_rows = ps

    def kill(self, pid: int, sig: int) -> None:
        if self._processes is None:
            raise LookupError(f"({pid}) - no such process")
        self._processes.kill(pid, sig)

    def start(self, argv: Sequence[str], grants: Sequence[Grant] = (), *,
              manifest: Manifest | None = None,
              stdio: tuple[int, int, int] = (0, 1, 2), cwd: str = "/",
              env: dict[str, str] | None = None,
              extra_fds: tuple[int, ...] = ()) -> ExoProcess:
        """Start ``argv`` holding exactly ``grants`` plus the manifest's, under the
        manifest's limits, in the working directory ``cwd`` (an Exo path; the shell passes
        its own), with ``env`` added to its environment. If the memory controller kills
        it at its limit, the kernel says so on its stderr when it reaps it (``exo:
        killed: memory limit 64M reached``), whoever waits. Raises what the spawn raised
        (``SandboxError``, ``ExecFailed``, ``QuotaExceeded``...) or
        ``ProcessesUnavailable``."""
        if self._processes is None:
            failed = "; ".join(f"{s.name}: {s.detail}" for s in self._core.report.steps
                               if s.status.value == "FAILED")
            raise ProcessesUnavailable(f"cannot start processes on this host ({failed})"
                                       if failed else "cannot start processes on this host")
        all_grants = [*(manifest.grants if manifest is not None else ()), *grants]
        return self._processes.spawn(argv, all_grants, stdio=stdio, cwd=cwd, env=env,
                                     report_end=True, extra_fds=extra_fds,
                                     limits=manifest.limits if manifest is not None else None,
                                     posix_x=manifest.posix_x if manifest is not None else None)

    def wait(self, proc: ExoProcess, *, cancelled: Callable[[], bool] | None = None,
             grace: float = INTERRUPT_GRACE_S) -> int:
        """Wait for ``proc`` and return its exit status (128+N if killed by signal N).

        When ``cancelled()`` turns true (Ctrl-C in the shell, the control socket's caller
        gone) or the wait is interrupted by KeyboardInterrupt (re-raised), the process is
        interrupted: SIGINT, then SIGKILL after ``grace`` seconds (0: SIGKILL at once)."""
        assert self._processes is not None  # ``proc`` came from start()
        try:
            if cancelled is None:
                proc.exited.wait()
            else:
                while not proc.exited.wait(_POLL_S):
                    if cancelled():
                        self.interrupt(proc, grace)
                        break
            return exit_code(self._processes.wait(proc.pid))
        except KeyboardInterrupt:
            self.interrupt(proc, grace)
            raise

    def interrupt(self, proc: ExoProcess, grace: float = INTERRUPT_GRACE_S) -> None:
        """SIGINT, then SIGKILL if ``proc`` is still running after ``grace`` seconds."""
        assert self._processes is not None
        if grace > 0:
            with contextlib.suppress(LookupError):
                self._processes.kill(proc.pid, signal.SIGINT)
            if proc.wait(grace) is not None:
                return
        with contextlib.suppress(LookupError):
            self._processes.kill(proc.pid, signal.SIGKILL)

    def run(self, argv: Sequence[str], grants: Sequence[Grant] = (), *,
            manifest: Manifest | None = None, stdio: tuple[int, int, int] = (0, 1, 2),
            cancelled: Callable[[], bool] | None = None,
            grace: float = INTERRUPT_GRACE_S, cwd: str = "/",
            env: dict[str, str] | None = None) -> int:
        """``start`` then ``wait``: the command's exit status, in the shell's convention."""
        return self.wait(self.start(argv, grants, manifest=manifest, stdio=stdio, cwd=cwd,
                                    env=env),
                         cancelled=cancelled, grace=grace)

    # ------------------------------------------------------------ capabilities
    def _manager(self) -> CapabilityManager:
        if self._caps is None:
            raise LookupError("the capability space is not running")
        return self._caps

    def caps(self, pid: int | None = None) -> list[dict[str, Any]]:
        """The capabilities of ``pid`` (of every process when None), one dict each."""
        manager = self._manager()
        rows: list[dict[str, Any]] = []
        for p in [pid] if pid is not None else manager.pids():
            try:
                infos = manager.handles(p)
            except Exception:
                if pid is not None:
                    raise
                continue  # exited while we listed the others
            rows += [{"pid": p, "handle": f"{i.handle:#x}", "resource": str(i.resource),
                      "rights": i.rights.format(), "derived": i.children} for i in infos]
        return rows

    def audit(self, *, event: str | None = None, pid: int | None = None,
              resource: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest audit records matching every filter given, as dicts."""
        records = self._manager().audit.query(event=event, pid=pid, resource_prefix=resource,
                                              limit=limit)
        return [r.to_dict() for r in records]
