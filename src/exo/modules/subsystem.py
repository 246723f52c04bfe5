"""DEFERRED boot step "Module manager": cheap on purpose — it builds the manager (no
module is started at boot) and hands it to the control socket, so ``exo module ...``
reaches it. Deferred because nothing before the prompt needs it."""

from __future__ import annotations

from exo.kernel.subsystems.service_host import ServiceHost

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.core import KernelCore
    from exo.kernel.subsystems.caps import Capabilities
    from exo.kernel.subsystems.processes import Processes
    from exo.kernel.subsystems.server import SyscallServer
    from exo.modules.bridge import ServiceBridges
    from exo.modules.manager import ModuleManager


class Modules(ServiceHost):
    __slots__ = ("bridges", "manager")

    def __init__(self, core: KernelCore, *, caps: Capabilities, processes: Processes,
                 syscalls: SyscallServer) -> None:
        super().__init__(core, caps=caps, processes=processes, syscalls=syscalls)
        self.manager: ModuleManager | None = None
        self.bridges: ServiceBridges | None = None

    def start(self) -> str:
        from exo.modules.manager import ModuleManager

        self.manager = ModuleManager(self.kernel_api(), self.core.root, self.core.boot_id,
                                     log=self.core.log)
        from exo.modules.bridge import ServiceBridges

        self.bridges = ServiceBridges(self.manager)
        if self.syscalls.context is not None:  # apps: the open_service syscall
            self.syscalls.context.services = self.bridges
        control = self.syscalls.control
        if control is not None:
            control.modules = self.manager
            return "ready (exo module load PATH|NAME), control socket attached"
        return "ready (ephemeral kernel: no control socket)"

    def stop(self) -> None:
        if self.syscalls.context is not None:
            self.syscalls.context.services = None
        if self.bridges is not None:
            self.bridges.close()
            self.bridges = None
        control = self.syscalls.control
        if control is not None:
            control.modules = None
        if self.manager is not None:
            self.manager.stop()
            self.manager = None

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return {"modules": self._proc_modules}

    def _proc_modules(self) -> str:
        """``/proc/modules``: one line per running version."""
        if self.manager is None:
            return ""
        return "".join(f"{r['name']} {v['version']} {v['traffic']}% pid {v['pid']} "
                       f"{v['health']} requests {v['requests']} errors {v['errors']}\n"
                       for r in self.manager.list() for v in r["versions"])
