"""bash's ``ulimit``: the resource limits of the programs the shell starts.

The limits live in the shell (``Shell.rlimits``: the ones ``ulimit`` changed, resource
to (soft, hard), -1 unlimited); every program it starts gets them (``KernelApi.start``'s
``rlimits`` → ``SandboxSpec.rlimits`` → exo-stage2's ``setrlimit`` just before exec).
Those it did not change are the kernel's own, which a program inherits. As for a user's
bash, a hard limit can be lowered, never raised past the kernel's; a subshell's changes
stay its own. The shell's builtins run inside the kernel and are bounded by its own
budgets instead: ``ulimit -n 10`` limits ``cat`` the program, not the builtin.
"""

from __future__ import annotations

from collections.abc import Callable

from exo.sandbox._rlimits import RLIMIT_LOCKS, current
from exo.shell.context import CommandError

# Linux's resource numbers (sys/resource.h), as ``resource`` names them.
_CPU, _FSIZE, _DATA, _STACK, _CORE, _RSS, _NPROC, _NOFILE = range(8)
_MEMLOCK, _AS, _SIGPENDING, _MSGQUEUE, _NICE, _RTPRIO, _RTTIME = 8, 9, 11, 12, 13, 14, 15
_PIPE = -2  # -p: the pipe's size, shown, never set (Linux's is fixed: 8 × 512 bytes)
UNLIMITED = -1

#: option -> (description, unit, resource, scale), in the order of ``ulimit -a``.
ROWS: dict[str, tuple[str, str, int, int]] = {
    "R": ("real-time non-blocking time", "microseconds", _RTTIME, 1),
    "c": ("core file size", "blocks", _CORE, 1024),
    "d": ("data seg size", "kbytes", _DATA, 1024),
    "e": ("scheduling priority", "", _NICE, 1),
    "f": ("file size", "blocks", _FSIZE, 1024),
    "i": ("pending signals", "", _SIGPENDING, 1),
    "l": ("max locked memory", "kbytes", _MEMLOCK, 1024),
    "m": ("max memory size", "kbytes", _RSS, 1024),
    "n": ("open files", "", _NOFILE, 1),
    "p": ("pipe size", "512 bytes", _PIPE, 1),
    "q": ("POSIX message queues", "bytes", _MSGQUEUE, 1),
    "r": ("real-time priority", "", _RTPRIO, 1),
    "s": ("stack size", "kbytes", _STACK, 1024),
    "t": ("cpu time", "seconds", _CPU, 1),
    "u": ("max user processes", "", _NPROC, 1),
    "v": ("virtual memory", "kbytes", _AS, 1024),
    "x": ("file locks", "", RLIMIT_LOCKS, 1),
}
USAGE = "ulimit [-SH] [-a | -cdefilmnpqrstuvxR [LIMIT]]..."
_MAX = (1 << 63) - 1  # larger than any limit Linux keeps but unlimited


def run(args: list[str], limits: dict[int, tuple[int, int]], out: Callable[[str], None]
        ) -> int:
    """``ulimit ARGS``: show or change ``limits`` (the shell's, changed in place)."""
    soft = hard = show_all = False
    ops: list[tuple[str, str | None]] = []  # (option, value or None)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("-") and len(arg) > 1 and arg != "--":
            for ch in arg[1:]:
                if ch == "S":
                    soft = True
                elif ch == "H":
                    hard = True
                elif ch == "a":
                    show_all = True
                elif ch in ROWS:
                    ops.append((ch, None))
                else:
                    raise CommandError(f"-{ch}: invalid option\nusage: {USAGE}", 2)
            if ops and ops[-1][1] is None and i < len(args) and not args[i].startswith("-"):
                ops[-1] = (ops[-1][0], args[i])
                i += 1
        elif arg != "--":
            if not ops:
                ops.append(("f", arg))  # bash: a bare LIMIT is the file size's
            elif ops[-1][1] is None:
                ops[-1] = (ops[-1][0], arg)
            else:
                raise CommandError(f"{arg}: too many arguments\nusage: {USAGE}", 2)
    if show_all:
        for option in ROWS:
            out(_row(option, _shown(limits, option, hard and not soft)))
        return 0
    if not ops:
        ops = [("f", None)]
    labelled = len(ops) > 1
    failed: CommandError | None = None
    for option, value in ops:
        if value is None:
            shown = _shown(limits, option, hard and not soft)
            out(_row(option, shown) if labelled else shown)
            continue
        try:
            _set(limits, option, value, soft=soft or not hard, hard=hard or not soft)
        except CommandError as exc:  # the others are still set, as bash's
            failed = failed or exc
    if failed is not None:
        raise failed
    return 0


def _current(limits: dict[int, tuple[int, int]], res: int) -> tuple[int, int]:
    return limits.get(res) or current(res)


def _shown(limits: dict[int, tuple[int, int]], option: str, hard: bool) -> str:
    _, _, res, scale = ROWS[option]
    if res == _PIPE:
        return "8"
    value = _current(limits, res)[1 if hard else 0]
    return "unlimited" if value == UNLIMITED else str(value // scale)


def _row(option: str, value: str) -> str:
    """A line of ``ulimit -a``, as bash lays it out."""
    description, unit, _, _ = ROWS[option]
    paren = f"({unit}, -{option}) " if unit else f"(-{option}) "
    return f"{description:<20} {paren:>20}{value}"


def _above(a: int, b: int) -> bool:
    """``a`` is a higher limit than ``b`` (unlimited above every number)."""
    return (a == UNLIMITED and b != UNLIMITED) or (UNLIMITED not in (a, b) and a > b)


def _set(limits: dict[int, tuple[int, int]], option: str, text: str, *, soft: bool,
         hard: bool) -> None:
    description, _, res, scale = ROWS[option]
    if res == _PIPE:
        raise CommandError(f"{description}: cannot modify limit: Invalid argument")
    now_soft, now_hard = _current(limits, res)
    if text == "unlimited":
        value = UNLIMITED
    elif text in ("hard", "soft"):
        value = now_hard if text == "hard" else now_soft
    elif text.isascii() and text.isdigit():
        value = int(text) * scale
        if value > _MAX:
            raise CommandError(f"{text}: limit out of range")
    else:
        raise CommandError(f"{text}: invalid number")
    new_soft, new_hard = now_soft, now_hard
    if hard:
        if _above(value, current(res)[1]) or _above(value, now_hard):
            raise CommandError(f"{description}: cannot modify limit: Operation not permitted")
        new_hard = value
        if not soft and _above(new_soft, new_hard):  # (below the soft one: bash refuses)
            raise CommandError(f"{description}: cannot modify limit: Invalid argument")
    if soft:
        if _above(value, new_hard):
            raise CommandError(f"{description}: cannot modify limit: Invalid argument")
        new_soft = value
    if (new_soft, new_hard) == current(res):
        limits.pop(res, None)
    else:
        limits[res] = (new_soft, new_hard)


def records(limits: dict[int, tuple[int, int]]) -> tuple[tuple[int, int, int], ...]:
    """What ``KernelApi.start``'s ``rlimits`` takes, for the shell's ``limits``."""
    return tuple((res, soft, hard) for res, (soft, hard) in sorted(limits.items()))
