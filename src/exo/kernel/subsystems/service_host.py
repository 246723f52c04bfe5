"""The base of a DEFERRED step that runs services above the kernel: the module manager
(``exo.modules.subsystem``) and the AI agents (``exo.agents.subsystem``)."""

from __future__ import annotations

from exo.kernel.subsystem import Subsystem

TYPE_CHECKING = False  # no runtime typing import on the boot path (exo/_value.py)
if TYPE_CHECKING:
    from exo.kernel.api import KernelApi
    from exo.kernel.core import KernelCore
    from exo.kernel.subsystems.caps import Capabilities
    from exo.kernel.subsystems.processes import Processes
    from exo.kernel.subsystems.server import SyscallServer


class ServiceHost(Subsystem):
    """A step that requires the capability space, the processes and the syscall server,
    and whose services reach the kernel only through a ``KernelApi`` built from them."""

    __slots__ = ("caps", "core", "processes", "syscalls")

    def __init__(self, core: KernelCore, *, caps: Capabilities, processes: Processes,
                 syscalls: SyscallServer) -> None:
        self.core = core
        self.caps = caps
        self.processes = processes
        self.syscalls = syscalls

    def kernel_api(self) -> KernelApi:
        """A ``KernelApi`` on this kernel, for the services this step starts."""
        from exo.kernel.api import KernelApi

        return KernelApi(self.core, self.caps.manager, self.processes.manager)
