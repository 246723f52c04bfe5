"""The syscall server and its handlers, one file per family of the syscall table
(``exo.abi.syscalls``): ``caps``, ``ipc``, ``storage``, ``proc``; ``server`` reads each
process's bootstrap channel and dispatches. A new syscall is a row in the table and a
handler in its family's ``HANDLERS`` (docs/ARCHITECTURE.md, "Where a new syscall goes").

Off the boot path: the process manager loads this at the first spawn.
"""

from exo.kernel.syscalls.host import SyscallError, SyscallHost
from exo.kernel.syscalls.server import HANDLERS, _decode, _dispatch, _encode, serve_process

__all__ = ["HANDLERS", "SyscallError", "SyscallHost", "_decode", "_dispatch", "_encode",
           "serve_process"]
