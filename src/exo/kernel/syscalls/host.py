"""What a syscall handler may use of the kernel, and what every family shares.

Handlers take a ``SyscallHost``, not the ``Kernel``: exactly the parts they use, so the
kernel can be rebuilt from subsystems without touching them, and a test can serve
syscalls from a stand-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from exo.abi.errors import SyscallError as SyscallError

if TYPE_CHECKING:
    from pathlib import Path

    from exo.kernel.caps import CapabilityManager
    from exo.kernel.fairshare import FairShare
    from exo.kernel.files import OpenFileTable
    from exo.kernel.inflight import InFlight
    from exo.kernel.process import ExoProcess, ProcessManager


class AgentRouter(Protocol):
    """AI-Core as the ``agent_connect`` handler sees it (``exo.agents.core.router``):
    the kernel does not import the agents, the agents' subsystem registers this."""

    def connect(self, pid: int, name: str, allowed: Callable[[], bool] | None = None,
                charged: tuple[int, ...] = ()) -> list[int]:
        """The 6 descriptors of a new endpoint to agent ``name`` for process ``pid``
        (``allowed``, asked once it is registered: False refuses it, revoked meanwhile;
        ``charged``: the processes it counts against, ``pid`` and its ancestors)."""
        ...


class ServiceDirectory(Protocol):
    """Module services apps may open (``exo.modules.bridge.ServiceBridges``)."""

    def open(self, pid: int, service: str,
             charged: tuple[int, ...] = ()) -> tuple[Any, list[int]]:
        """A channel to ipc://``service`` for ``pid``, counted against each process of
        ``charged`` (``pid`` and its ancestors)."""
        ...


class SyscallHost(Protocol):
    """The kernel as the syscall server sees it."""

    @property
    def caps(self) -> CapabilityManager: ...

    @property
    def processes(self) -> ProcessManager: ...

    @property
    def files(self) -> OpenFileTable: ...

    @property
    def in_flight(self) -> InFlight: ...

    @property
    def root(self) -> Path: ...

    @property
    def boot_id(self) -> str: ...

    @property
    def fair_share(self) -> FairShare: ...

    @property
    def services(self) -> ServiceDirectory | None: ...

    def log(self, message: str) -> None: ...

    def agent_router(self) -> AgentRouter | None: ...


#: A handler: (host, caller, validated arguments, descriptors received) -> (result,
#: descriptors to send). Descriptors it keeps, it removes from the list (the dispatcher
#: closes the rest).
Handler = Callable[[SyscallHost, "ExoProcess", dict[str, Any], list[int]],
                   tuple[Any, list[int]]]


def cap_result(host: SyscallHost, pid: int, handle: int) -> dict[str, Any]:
    """The reply describing a handle the caller now holds."""
    cap = host.caps.check(pid, handle)
    return {"handle": handle, "resource": str(cap.resource), "rights": int(cap.rights)}
