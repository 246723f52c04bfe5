"""Capability syscalls: the caller's own handles (rows of family "caps" in
``exo.abi.syscalls``). Arguments arrive validated against their row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exo.kernel.syscalls.host import Handler, SyscallHost, cap_result

if TYPE_CHECKING:
    from exo.kernel.process import ExoProcess

#: Bytes of rows one page of ``handles`` carries: a reply must fit in one 64 KiB message,
#: and a table of 4,096 handles with 4 KiB names does not.
HANDLES_PAGE_BYTES = 48 * 1024


def getpid(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
           ) -> tuple[Any, list[int]]:
    return {"pid": proc.pid}, []


def handles(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
            ) -> tuple[Any, list[int]]:
    """The caller's handles; with ``start``, one page of them from that index (an empty
    page: the end). Without it, the whole table, which may be ReplyTooLarge."""
    rows = [{"handle": i.handle, "resource": str(i.resource), "rights": int(i.rights)}
            for i in host.caps.handles(proc.pid)]
    start = args["start"]
    if start is None:
        return rows, []
    page: list[dict[str, Any]] = []
    size = 0
    for row in rows[start:]:
        size += len(str(row["resource"])) + 64
        if page and size > HANDLES_PAGE_BYTES:
            break
        page.append(row)
    return page, []


def request(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
            ) -> tuple[Any, list[int]]:
    handle = host.caps.request(proc.pid, args["name"], args["rights"])
    return cap_result(host, proc.pid, handle), []


def duplicate(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
              ) -> tuple[Any, list[int]]:
    handle = host.caps.duplicate(proc.pid, args["handle"], args["rights"])
    return cap_result(host, proc.pid, handle), []


def revoke(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
           ) -> tuple[Any, list[int]]:
    return {"count": host.caps.revoke(proc.pid, args["handle"])}, []


def close(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
          ) -> tuple[Any, list[int]]:
    host.caps.close(proc.pid, args["handle"])
    return {}, []


def accept_capabilities(host: SyscallHost, proc: ExoProcess, args: dict[str, Any],
                        fds: list[int]) -> tuple[Any, list[int]]:
    """Bound how many capabilities from other processes the caller holds (0: refuse all).

    At most the ``received`` quota; already-held ones stay. Returns the bound in force.
    """
    ceiling = proc.limits.quotas.received
    limit = min(args["limit"], ceiling)
    host.caps.set_max_received(proc.pid, limit)
    return {"limit": limit, "quota": ceiling}, []


HANDLERS: dict[str, Handler] = {
    "getpid": getpid,
    "handles": handles,
    "request": request,
    "duplicate": duplicate,
    "revoke": revoke,
    "close": close,
    "accept_capabilities": accept_capabilities,
}
