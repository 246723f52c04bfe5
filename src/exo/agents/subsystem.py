"""DEFERRED boot step "AI agents started": AI-Core's router, AI-Res's monitor, power.

Cheap on purpose, and after the prompt: it builds the router (agents start on their
first connection), starts AI-Res's one-second sampler and registers the router with the
kernel so ``agent_connect`` reaches it. The shell finds the running step through
``running(boot_id)`` (it reaches the kernel only through ``KernelApi``, which knows
nothing of agents).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from exo.kernel.subsystems.service_host import ServiceHost

if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.agents.core.client import AgentClient
    from exo.agents.core.router import AgentCore
    from exo.agents.power import PowerControl, PowerReport
    from exo.agents.res import ResourceMonitor
    from exo.kernel.core import KernelCore
    from exo.kernel.subsystems.caps import Capabilities
    from exo.kernel.subsystems.processes import Processes
    from exo.kernel.subsystems.server import SyscallServer

_RUNNING: dict[str, Agents] = {}
_RUNNING_LOCK = threading.Lock()


def running(boot_id: str) -> Agents | None:
    """The started agents step of the kernel booted as ``boot_id`` (None: not started)."""
    with _RUNNING_LOCK:
        return _RUNNING.get(boot_id)


class Agents(ServiceHost):
    __slots__ = ("_clients", "_lock", "_unsubscribe", "api", "monitor", "power", "router")

    def __init__(self, core: KernelCore, *, caps: Capabilities, processes: Processes,
                 syscalls: SyscallServer) -> None:
        super().__init__(core, caps=caps, processes=processes, syscalls=syscalls)
        self.router: AgentCore | None = None
        self.monitor: ResourceMonitor | None = None
        self.power: PowerControl | None = None
        self.api: Any = None
        self._clients: dict[str, AgentClient] = {}
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> str:
        from exo import __version__
        from exo.agents.core.registry import AGENTS
        from exo.agents.core.router import AgentCore
        from exo.agents.power import PowerControl
        from exo.agents.res import ResourceMonitor

        self.api = self.kernel_api()
        self.monitor = ResourceMonitor(self.processes.manager, self.core.root, __version__)
        self.monitor.start()
        self.power = PowerControl(self.core.boot_id)
        self.router = AgentCore(self.api, self.core.root,
                                services={"snapshot": self.monitor.snapshot})
        if self.syscalls.context is not None:
            self.syscalls.context.agents = self.router
        assert self.caps.manager is not None
        self._unsubscribe = self.caps.manager.on_revoke(self._on_revoke)
        with _RUNNING_LOCK:
            _RUNNING[self.core.boot_id] = self
        names = ", ".join(f"agent://{n}" for n in sorted(AGENTS))
        return f"deferred; {names} on first connection, AI-Res sampling every 1 s"

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.syscalls.context is not None:
            self.syscalls.context.agents = None
        with _RUNNING_LOCK:
            if _RUNNING.get(self.core.boot_id) is self:
                del _RUNNING[self.core.boot_id]
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()
        if self.router is not None:
            self.router.stop()
            self.router = None
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        if self.power is not None:
            self.power.restore()
            self.power = None

    def _on_revoke(self, victims: frozenset[Any]) -> None:
        """A revoked ``agent://`` capability cuts the connections it allowed."""
        router = self.router
        if router is not None and any(v.resource.scheme == "agent" for v in victims):
            router.cut(self._holds)

    def _holds(self, pid: int, name: str) -> bool:
        from exo.kernel.caps import ResourceName, Rights

        manager = self.caps.manager
        want = ResourceName.parse(f"agent://{name}")
        try:
            infos = manager.handles(pid) if manager is not None else []
        except Exception:  # the process is gone: nothing it held counts
            return False
        return any(i.resource.covers(want) and Rights.SEND in i.rights for i in infos)

    # ------------------------------------------------------------ for the assistant
    def ask(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """One request to agent ``name`` over the kernel's own encrypted connection
        (made on first use, made again once if the agent was restarted)."""
        from exo.agents.core.client import AgentClient, AgentError

        for attempt in (0, 1):
            with self._lock:
                client = self._clients.get(name)
                if client is None:
                    if self.router is None:
                        raise AgentError("the AI agents are stopped")
                    client = AgentClient(self.router.endpoint(name), name)
                    self._clients[name] = client
            try:
                return client.request(request)
            except Exception:
                with self._lock:
                    self._clients.pop(name, None)
                client.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def power_profile(self, name: str, *, measure: float = 1.0) -> PowerReport:
        """Apply a profile and measure its effect: the CPU time the Exo tree gets over
        ``measure`` seconds, before and after (0: do not measure)."""
        assert self.power is not None
        before = self.power.measure(measure) if measure else None
        report = self.power.apply(name)
        after = self.power.measure(measure) if measure else None
        if before is not None and after is not None:
            report.effect = {"before_s": round(before, 3), "after_s": round(after, 3)}
        return report

    def modules(self) -> Any:
        """The kernel's module manager (exo.modules.manager.ModuleManager), or None when
        the "Module manager" step did not start. Found through the syscall server, where
        that step hands it over, so the agents do not require the step to boot."""
        context = self.syscalls.context
        bridges = getattr(context, "services", None) if context is not None else None
        manager = getattr(bridges, "manager", None)
        if manager is None and self.syscalls.control is not None:
            manager = getattr(self.syscalls.control, "modules", None)
        return manager

    def revoke(self, pid: int, capability: str | None) -> int:
        """Revoke ``pid``'s capabilities on ``capability`` (all of them when None)."""
        manager = self.caps.manager
        assert manager is not None  # the step requires the capability space
        count = 0
        for info in manager.handles(pid):
            if capability is None or str(info.resource) == capability or \
                    str(info.resource).startswith(capability.rstrip("/") + "/"):
                count += manager.revoke(pid, info.handle, include_self=True)
        return count

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return {"agents": self._proc_agents, "ai-res": self._proc_res}

    def _proc_agents(self) -> str:
        if self.router is None:
            return ""
        return "".join(f"agent://{r['name']} {r['label']} "
                       f"{'running pid ' + str(r['pid']) if r['running'] else 'idle'} "
                       f"connections {r['connections']}\n" for r in self.router.list())

    def _proc_res(self) -> str:
        return self.monitor.proc_text() if self.monitor is not None else ""
