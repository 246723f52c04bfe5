"""Processes: ``spawn``, ``wait``, ``exit``, ``kill`` (rows of family "proc" in
``exo.abi.syscalls``). Arguments arrive validated against their row, descriptors counted."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from exo.abi import PARENT_PID_ENV
from exo.kernel.caps import Rights
from exo.kernel.manifest import Limits
from exo.kernel.syscalls.host import Handler, SyscallError, SyscallHost

if TYPE_CHECKING:
    from exo.kernel.process import ExoProcess


def spawn(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
          ) -> tuple[Any, list[int]]:
    groups: list[int] = args["channels"]
    if len(fds) != 3 + sum(groups):
        raise SyscallError("spawn needs stdin, stdout, stderr and each channel's descriptors")
    # The child receives capabilities derived from ones the caller holds (revoking
    # the caller's revokes the child's): it can never give more than it has.
    wanted: list[tuple[int, Rights]] = []
    for entry in args["caps"]:
        handle, want = entry["handle"], Rights.parse(entry["rights"])
        host.caps.check(proc.pid, handle, Rights.DUPLICATE)
        wanted.append((handle, want))

    def derive(child_pid: int) -> None:
        for handle, want in wanted:
            host.caps.delegate(proc.pid, handle, child_pid, want)

    # Limits the caller asks for the child; unnamed ones are the caller's own. Either way
    # the process manager caps each at the caller's value (a child never holds more).
    asked = args["limits"]
    limits = proc.limits if asked is None else Limits.from_request(asked, proc.limits)

    extra, env, at = fds[3:], [], 0
    for n in groups:  # the child finds them in EXO_CHANNEL_FDS, at the same numbers
        env.append(",".join(str(fd) for fd in extra[at:at + n]))
        at += n
    child_env = {PARENT_PID_ENV: str(proc.pid)}  # the peer of inherited channel endpoints
    if env:
        child_env["EXO_CHANNEL_FDS"] = ";".join(env)
    child = host.processes.spawn(args["argv"], [], stdio=(fds[0], fds[1], fds[2]),
                                 parent=proc.pid, limits=limits, derive=derive,
                                 extra_fds=tuple(extra), env=child_env)
    for fd in fds:
        os.close(fd)
    fds.clear()
    return {"pid": child.pid}, []


def wait(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
         ) -> tuple[Any, list[int]]:
    child = _own_child(host, proc, args["pid"])
    return {"status": host.processes.wait(child.pid)}, []


def _own_child(host: SyscallHost, proc: ExoProcess, pid: int) -> ExoProcess:
    child = host.processes.get(pid)
    if child.parent != proc.pid:
        raise LookupError(f"process {child.pid} is not a child of {proc.pid}")
    return child


def kill(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
         ) -> tuple[Any, list[int]]:
    # Only a child: a process holds no authority over its siblings, its parent or the
    # kernel (pid 1 is never anyone's child). The process manager refuses an exited one.
    host.processes.kill(_own_child(host, proc, args["pid"]).pid, args["signal"])
    return {}, []


def exit_(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
          ) -> tuple[Any, list[int]]:
    with contextlib.suppress(OSError):
        proc.sandbox.kill()
    return {}, []


HANDLERS: dict[str, Handler] = {
    "spawn": spawn,
    "wait": wait,
    "exit": exit_,
    "kill": kill,
}
