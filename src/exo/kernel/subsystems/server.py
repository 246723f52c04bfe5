"""NORMAL: the syscall server (each process's bootstrap channel, served on its own
thread by ``exo.kernel.syscalls``) and the control socket (``exo run``, ``exo ps``,
``exo shutdown``), which also takes the lock that keeps two kernels off one root."""

from __future__ import annotations

import threading

from exo.kernel.api import KernelApi
from exo.kernel.control import ControlServer
from exo.kernel.subsystem import Subsystem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from exo.kernel.caps import CapabilityManager
    from exo.kernel.core import KernelCore
    from exo.kernel.fairshare import FairShare
    from exo.kernel.files import OpenFileTable
    from exo.kernel.inflight import InFlight
    from exo.kernel.process import ExoProcess, ProcessManager
    from exo.kernel.subsystems.caps import Capabilities
    from exo.kernel.subsystems.processes import Processes
    from exo.kernel.syscalls.host import AgentRouter


class SyscallContext:
    """Everything a syscall handler may reach, and nothing more."""

    __slots__ = ("agents", "boot_id", "caps", "fair_share", "files", "in_flight", "log",
                 "processes", "root")

    def __init__(self, core: KernelCore, caps: CapabilityManager, files: OpenFileTable,
                 in_flight: InFlight, processes: ProcessManager) -> None:
        self.caps = caps
        self.files = files
        self.in_flight = in_flight
        self.processes = processes
        self.root: Path = core.root
        self.boot_id: str = core.boot_id
        self.log: Callable[[str], None] = core.log
        self.fair_share: FairShare = core.fair_share
        #: AI-Core's router (``exo.agents.core.router``), set by the DEFERRED "AI agents"
        #: step: the kernel does not import the agents.
        self.agents: AgentRouter | None = None

    def agent_router(self) -> AgentRouter | None:
        return self.agents


class SyscallServer(Subsystem):
    __slots__ = ("caps", "context", "control", "core", "processes")

    def __init__(self, core: KernelCore, *, caps: Capabilities, processes: Processes) -> None:
        self.core = core
        self.caps = caps
        self.processes = processes
        self.context: SyscallContext | None = None
        self.control: ControlServer | None = None

    def start(self) -> str:
        caps, procs = self.caps, self.processes.manager
        assert caps.manager and caps.files and caps.in_flight and procs
        self.context = SyscallContext(self.core, caps.manager, caps.files, caps.in_flight,
                                      procs)
        procs.serve = self._serve
        if self.core.ephemeral:
            return "bootstrap channels only (ephemeral kernel: no control socket)"
        self.control = ControlServer(KernelApi(self.core, caps.manager, procs), self.core.root)
        self.control.start()
        return f"bootstrap channels, control socket {self.control.path.relative_to(self.core.root)}"

    def _serve(self, proc: ExoProcess) -> threading.Thread:
        """Serve a new process's bootstrap channel on its own thread."""
        from exo.kernel.syscalls import serve_process  # msgspec and the handlers: not at boot

        assert self.context is not None
        # The handlers reach only the context's attributes (SyscallHost, a Protocol).
        return serve_process(self.context, proc)

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
