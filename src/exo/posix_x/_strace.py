"""What a program run under POSIX-X asked Linux for: ``strace -f -ff`` around the run, read
back for the sandboxed program's process tree only.

``posix-x profile`` needs every syscall of the program from its first instruction, in the
sandbox it really runs in. The sandbox forbids ``ptrace`` inside it, so the tracer sits
outside: ``strace -f --pidns-translation`` follows ``posix-x run`` on a kernel booted for
this one run (its own child, so the sandbox's processes are strace's descendants), one
output file per thread (``-ff``). The kernel's own threads are traced too and ignored here:
the program is the thread that ``execve``'d the sandbox's stage 2 (``exo-stage2``), counted
from its next ``execve`` that is not the broker's shim (the program's), plus every thread
and process it created (``clone``, ``fork``, ``vfork`` results), transitively.

Everything read here came from a hostile program's arguments (path strings strace printed):
lines are parsed with bounded regular expressions, at most ``MAX_PATHS`` distinct refused
paths are kept, and the whole trace is bounded (``MAX_TRACE_BYTES``) by the caller.
"""

from __future__ import annotations

import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

#: The trace directory is cut off past this size (a long run is stopped and reported
#: as truncated): strace writes a line per syscall.
MAX_TRACE_BYTES = 512 << 20
MAX_PATHS = 1000
STAGE2 = "exo-stage2"
SHIM = "exo/posix_x/_shim.py"  # the broker's shim (exo.posix_x.broker), before the program

_START = re.compile(r"^([a-z_0-9]{1,40})\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]{1,40}) resumed>(.*)$")
_RESULT = re.compile(r"\)\s+= (-?\d+|\?|0x[0-9a-f]+)(?: ([A-Z][A-Z0-9_]+))?[^<]*(?:<(\d+\.\d+)>)?$")
_FIRST_STRING = re.compile(r'"((?:[^"\\]|\\.){0,4096})"')
_PORT = re.compile(r"sin6?_port=htons\((\d{1,5})\)")
_ADDR = re.compile(r'(?:inet_addr\("([0-9.]{1,15})"\)|inet_pton\(AF_INET6, "([0-9a-f:.]{1,45})")')
_FORKS = ("clone", "clone3", "fork", "vfork")
#: ``--pidns-translation``: a child's pid as the tracer sees it (file names are those).
_HOST_PID = re.compile(r"/\* (\d{1,10}) in strace's PID NS \*/")
#: Calls whose first string argument is a path (its errors say what the view lacks).
PATH_CALLS = frozenset({
    "open", "openat", "openat2", "stat", "lstat", "newfstatat", "statx", "access",
    "faccessat", "faccessat2", "execve", "execveat", "mkdir", "mkdirat", "unlink",
    "unlinkat", "rename", "renameat", "renameat2", "readlink", "readlinkat", "chdir",
    "creat", "truncate", "chmod", "fchmodat", "chown", "lchown", "fchownat", "link",
    "linkat", "symlink", "symlinkat", "rmdir", "utimensat", "mknod", "mknodat",
    "statfs", "getxattr", "lgetxattr", "setxattr", "listxattr"})


def _unescape(text: str) -> str:
    """strace's C escapes (``\\"``, ``\\n``, ``\\x..``, octal) back to characters."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return text


class Call:
    """One syscall as strace printed it: name, argument text, result, errno, seconds."""

    __slots__ = ("args", "errno", "name", "result", "seconds")

    def __init__(self, name: str, args: str, result: int | None, err: str,
                 seconds: float) -> None:
        self.name = name
        self.args = args
        self.result = result
        self.errno = err
        self.seconds = seconds

    def path(self) -> str | None:
        """The first string argument (a path, for :data:`PATH_CALLS`)."""
        match = _FIRST_STRING.search(self.args)
        return _unescape(match[1]) if match else None

    def port(self) -> tuple[str, int] | None:
        """``(address, port)`` of an inet ``bind``/``connect``."""
        port = _PORT.search(self.args)
        if port is None:
            return None
        addr = _ADDR.search(self.args)
        host = (addr[1] or addr[2]) if addr else "?"
        return host, int(port[1])


def parse_lines(lines: Iterable[str]) -> list[Call]:
    """The calls of one thread's ``-ff`` file, in order (a call split by another thread's
    is counted once, with the result and time of its ``resumed`` half)."""
    calls: list[Call] = []
    pending: dict[str, Call] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith(("---", "+++")) or not line:
            continue
        resumed = _RESUMED.match(line)
        if resumed:
            call = pending.pop(resumed[1], None)
            if call is None:
                continue
            call.args += resumed[2]
            _finish(call, resumed[2])
            continue
        start = _START.match(line)
        if start is None:
            continue
        call = Call(start[1], start[2], None, "", 0.0)
        calls.append(call)
        if line.endswith("<unfinished ...>"):
            pending[call.name] = call
        else:
            _finish(call, start[2])
    return calls


def _finish(call: Call, tail: str) -> None:
    match = _RESULT.search(tail)
    if match is None:
        return
    value = match[1]
    if value != "?":
        call.result = int(value, 16) if value.startswith("0x") else int(value)
    call.errno = match[2] or ""
    if match[3]:
        call.seconds = float(match[3])


def program_calls(directory: str, prefix: str = "t") -> tuple[list[Call], int]:
    """The program's calls from ``strace -ff -o DIRECTORY/PREFIX``'s files, and how many
    of its threads and processes they came from (0: the program never started)."""
    threads: dict[int, list[Call]] = {}
    for entry in os.listdir(directory):
        head, _, number = entry.rpartition(".")
        if head != prefix or not number.isdigit():
            continue
        with open(os.path.join(directory, entry), encoding="utf-8",
                  errors="backslashreplace") as fh:
            threads[int(number)] = parse_lines(fh)
    roots = [tid for tid, calls in threads.items() if any(
        c.name == "execve" and c.result == 0 and STAGE2 in (c.path() or "")
        for c in calls)]
    selected: list[Call] = []
    seen: set[int] = set()
    todo: list[tuple[int, bool]] = [(tid, True) for tid in roots]
    while todo:
        tid, is_root = todo.pop()
        if tid in seen or tid not in threads:
            continue
        seen.add(tid)
        calls = threads[tid]
        if is_root:  # from the program's own execve on: stage 2 is the sandbox's
            starts = [i for i, c in enumerate(calls) if c.name == "execve" and c.result == 0
                      and STAGE2 not in (c.path() or "") and SHIM not in c.args]
            if not starts:  # the program never started (its execve failed)
                seen.discard(tid)
                continue
            calls = calls[starts[0]:]
        selected += calls
        todo += [(child, False) for c in calls
                 if c.name in _FORKS and (child := _child(c)) > 0]
    return selected, len(seen)


def _child(call: Call) -> int:
    """The host pid a fork or clone created (strace translates it: the sandbox has its own
    pid namespace), 0 if none."""
    if call.result is None or call.result <= 0:
        return 0
    host = _HOST_PID.search(call.args)
    return int(host[1]) if host else call.result


def trace_size(directory: str) -> int:
    total = 0
    for entry in os.scandir(directory):
        try:
            total += entry.stat().st_size
        except OSError:
            continue
    return total


__all__ = ["MAX_PATHS", "MAX_TRACE_BYTES", "PATH_CALLS", "Call", "parse_lines",
           "program_calls", "trace_size"]
