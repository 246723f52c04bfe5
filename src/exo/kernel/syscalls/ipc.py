"""Capabilities between processes: sent to an inbox, or carried in channel messages as
one-use tokens (rows of family "ipc" in ``exo.abi.syscalls``). Arguments arrive
validated against their row; the handle's TRANSFER right is checked from the row
(``handle_rights``) before these run."""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

from exo.kernel.caps import ResourceName, Rights
from exo.kernel.caps.errors import CapabilityDenied, CapabilityError, QuotaExceeded
from exo.kernel.syscalls.host import Handler, SyscallError, SyscallHost, cap_result

if TYPE_CHECKING:
    from exo.kernel.caps.manager import HandleInfo
    from exo.kernel.process import ExoProcess


def send_capability(host: SyscallHost, proc: ExoProcess, args: dict[str, Any],
                    fds: list[int]) -> tuple[Any, list[int]]:
    """Move a handle towards another process; it joins that space when received.

    Until the receiver calls ``recv_capability`` the capability is in flight (in no space),
    in the receiver's bounded inbox: a sender can neither fill the receiver's handle table
    nor make the kernel queue without bound. A receiver that refuses capabilities, or
    whose inbox or ``received`` quota is full, makes the send fail and the sender keeps
    its handle.
    """
    handle = args["handle"]
    target = host.processes.get(args["pid"])
    if target.status is not None:
        raise LookupError(f"process {target.pid} has exited")
    refusal: CapabilityError | None = None
    waiting, inbox = target.inbox.qsize(), target.limits.quotas.inbox
    if target.pid != proc.pid:
        held, accepts = host.caps.received(target.pid)
        if accepts == 0:
            refusal = CapabilityDenied(f"process {target.pid} refuses capabilities from "
                                       "other processes")
        elif held + waiting >= accepts:
            refusal = QuotaExceeded("received", accepts,
                                    f"process {target.pid} holds {held} capabilities from "
                                    f"other processes and has {waiting} waiting to be received")
    if refusal is None and waiting >= inbox:
        refusal = QuotaExceeded("inbox", inbox, f"process {target.pid} has {waiting} "
                                "capabilities waiting to be received")
    if refusal is not None:  # checked before the handle leaves: the sender keeps it
        host.caps.audit.record("deny", pid=proc.pid, handle=handle, peer=target.pid,
                               reason=f"send_capability: {type(refusal).__name__}: "
                                      f"{refusal}")
        raise refusal
    cap = host.caps.begin_transfer(proc.pid, handle)
    try:
        target.deliver(proc.pid, cap)
    except BaseException:
        # Only a concurrent sender filling the inbox in between gets here; the handle
        # number is gone, so the capability is released rather than returned.
        host.caps.cancel_transfer(cap)
        raise
    return {}, []


def recv_capability(host: SyscallHost, proc: ExoProcess, args: dict[str, Any],
                    fds: list[int]) -> tuple[Any, list[int]]:
    try:
        sender, cap = proc.inbox.get(timeout=args["timeout"])
    except queue.Empty:
        raise TimeoutError("no capability arrived before the timeout") from None
    if cap is None:  # the process exited while waiting (ExoProcess.close_inbox)
        proc.close_inbox()
        raise LookupError(f"process {proc.pid} has exited")
    try:
        handle = host.caps.complete_transfer(cap, proc.pid, received=sender != proc.pid)
    except QuotaExceeded:
        # The receiver lowered what it accepts after this was sent: the capability waits
        # again (at the back of the inbox) for the receiver to make room.
        try:
            proc.deliver(sender, cap)
        except QuotaExceeded:
            host.caps.cancel_transfer(cap)
        raise
    result = cap_result(host, proc.pid, handle)
    result["from"] = sender
    return result, []


def transfer_out(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
                 ) -> tuple[Any, list[int]]:
    """A handle leaves the caller to travel in a channel message; returns a token.

    ``to`` names the receiver (the process at the other end of the channel): only it can
    redeem the token.
    """
    to = args["to"]
    receiver = host.processes.get(to) if to != proc.pid else proc
    if receiver.status is not None:
        raise LookupError(f"process {to} has exited")
    token = host.in_flight.put(proc.pid, args["handle"], to,
                               limit=proc.limits.quotas.in_flight)
    return {"token": token}, []


def transfer_in(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
                ) -> tuple[Any, list[int]]:
    """Redeem a token that arrived in a message: the capability joins our space.

    Only the receiver named by ``transfer_out`` may; anyone else is refused and the token
    stays valid.
    """
    handle = host.in_flight.take(args["token"], proc.pid)
    return cap_result(host, proc.pid, handle), []


def _refuse_capabilities(tokens: tuple[int, ...]) -> list[int]:
    from exo.ipc import ProtocolError

    raise ProtocolError(f"{len(tokens)} capabilities sent to the kernel's end of a channel "
                        "(it takes none)")


def kernel_end(endpoint: Any) -> Any:
    """Make ``endpoint`` (an ``exo_std.ipc.Endpoint`` the kernel keeps: an agent's or a
    module's channel, an app's end of ``agent_connect`` or ``open_service``) refuse
    capabilities: a message arriving with tokens raises ``exo.ipc.ProtocolError`` from
    ``recv`` (the caller closes the channel) instead of redeeming them with a syscall the
    kernel cannot make. Returns ``endpoint``."""
    endpoint._channel.on_recv_handles = _refuse_capabilities
    return endpoint


def _holding_send(host: SyscallHost, proc: ExoProcess, res: ResourceName,
                  op: str) -> list[HandleInfo]:
    """The caller's capabilities granting SEND on ``res``; none is a refusal, audited."""
    held = [info for info in host.caps.handles(proc.pid)
            if info.resource.covers(res) and Rights.SEND in info.rights]
    if not held:
        refusal = CapabilityDenied(f"no capability grants SEND on {res}")
        host.caps.audit.record("deny", pid=proc.pid, resource=res, rights="SEND",
                               reason=f"{op}: {refusal}")
        raise refusal
    return held


#: How far up a process's ancestry a per-process bound is charged (deeper trees are
#: refused by the cgroup's pids and the ``children`` quota long before).
MAX_LINEAGE = 64


def lineage(host: SyscallHost, proc: ExoProcess) -> tuple[int, ...]:
    """``proc`` and its ancestors up to (not including) the kernel: a connection is
    charged to each, so an app cannot multiply a per-process bound with children."""
    from exo.kernel.process import KERNEL_PID

    chain = [proc.pid]
    parent = proc.parent
    while parent != KERNEL_PID and len(chain) < MAX_LINEAGE:
        try:
            ancestor = host.processes.get(parent)
        except LookupError:
            break
        chain.append(ancestor.pid)
        parent = ancestor.parent
    return tuple(chain)


def agent_connect(host: SyscallHost, proc: ExoProcess, args: dict[str, Any],
                  fds: list[int]) -> tuple[Any, list[int]]:
    """A channel endpoint to a running agent, for a caller holding ``agent://NAME`` with
    SEND (the most specific covering capability is named in the reply)."""
    res = ResourceName.parse(f"agent://{args['name']}")
    held = _holding_send(host, proc, res, "agent_connect")
    router = host.agent_router()
    if router is None:
        raise LookupError(f"{res}: the AI agents are not running (they start in the "
                          "DEFERRED boot phase)")
    def still_held() -> bool:  # asked again once the connection is registered
        return any(info.resource.covers(res) and Rights.SEND in info.rights
                   for info in host.caps.handles(proc.pid))

    out = router.connect(proc.pid, res.path, still_held, lineage(host, proc))
    best = max(held, key=lambda info: len(info.resource.path))
    return {"agent": res.path, "resource": str(best.resource)}, out


def open_service(host: SyscallHost, proc: ExoProcess, args: dict[str, Any],
                 fds: list[int]) -> tuple[Any, list[int]]:
    """A channel to the module serving ``ipc://NAME``, for a caller holding SEND on a
    capability that covers the name (checked here, before the module manager is asked);
    the manager bounds how many each process holds (``exo.modules.bridge``)."""
    res = ResourceName.parse(args["name"])
    if res.scheme != "ipc" or res.path in ("", "*"):
        raise SyscallError(f"open_service: {res} is not an ipc://NAME")
    _holding_send(host, proc, res, "open_service")
    services = host.services
    if services is None:
        raise LookupError("no module manager is running (it starts after boot)")
    return services.open(proc.pid, res.path, lineage(host, proc))


HANDLERS: dict[str, Handler] = {
    "agent_connect": agent_connect,
    "open_service": open_service,
    "send_capability": send_capability,
    "recv_capability": recv_capability,
    "transfer_out": transfer_out,
    "transfer_in": transfer_in,
}
