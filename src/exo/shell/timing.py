"""``time PIPELINE``: bash's reserved word — how long a command took and the CPU it cost,
said on standard error in the layout ``$TIMEFORMAT`` gives.

``real`` is the wall time from the start of the command to its end. ``user`` and
``sys`` add up what ran for it: the shell's own thread (expanding, starting programs,
a builtin run in the shell), each builtin stage's thread (``getrusage(RUSAGE_THREAD)``)
and each program's cgroup account, which counts everything the program started, read as
the kernel reclaims its cgroup (``ExoProcess.cpu_times``). bash counts its children's
``getrusage``; an Exo program is not the shell's child, its cgroup is the account.
"""

from __future__ import annotations

import re
import resource
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.shell.jobs import Job

#: bash's layouts: its default, and ``time -p``'s (POSIX).
DEFAULT_FORMAT = "\nreal\t%3lR\nuser\t%3lU\nsys\t%3lS"
POSIX_FORMAT = "real %2R\nuser %2U\nsys %2S"
#: How long a report waits for an ended program's account (taken a few ms after its exit).
ACCOUNT_WAIT_S = 1.0

_SPEC = re.compile(r"%(?:(%)|([0-9])?(l)?([RUSP]))")


def thread_cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of the calling thread."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime


class Timer:
    """One ``time``'d command, from its start: the jobs it launched are added as they
    start (``Shell._launch``)."""

    __slots__ = ("jobs", "own", "started")

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.started = time.perf_counter()
        self.own = thread_cpu()

    def times(self) -> tuple[float, float, float]:
        """(real, user, sys) seconds so far; a program still running (a job stopped with
        Ctrl-Z) counts nothing."""
        real = time.perf_counter() - self.started
        now = thread_cpu()
        user, system = now[0] - self.own[0], now[1] - self.own[1]
        deadline = time.monotonic() + ACCOUNT_WAIT_S
        for job in self.jobs:
            for stage in job.stages:
                if stage.cpu is not None:
                    user += stage.cpu[0]
                    system += stage.cpu[1]
                proc = stage.job.proc if stage.job is not None else None
                if proc is None or proc.status is None:
                    continue
                proc.reclaimed.wait(max(0.0, deadline - time.monotonic()))
                if proc.cpu_times is not None:  # (None: not accounted on this host)
                    user += proc.cpu_times[0]
                    system += proc.cpu_times[1]
        return real, user, system


def _seconds(value: float, digits: int, long: bool) -> str:
    """``value`` with ``digits`` decimals, truncated as bash's are; ``long``: ``MmS.FFFs``."""
    scale = 10 ** digits
    total = int(max(value, 0.0) * scale)
    whole, fraction = divmod(total, scale)
    decimals = f".{fraction:0{digits}d}" if digits else ""
    if long:
        minutes, whole = divmod(whole, 60)
        return f"{minutes}m{whole}{decimals}s"
    return f"{whole}{decimals}"


def report(layout: str, real: float, user: float, system: float) -> str:
    """``layout`` (``$TIMEFORMAT``'s syntax: ``%[p][l]R``, ``U``, ``S``, ``%P``, ``%%``)
    filled in, with the newline bash ends it with; "" for an empty layout."""
    if not layout:
        return ""

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "%"
        what = m.group(4)
        if what == "P":  # the share of the wall time spent on a CPU
            return f"{(user + system) / real * 100 if real > 0 else 0.0:.2f}"
        digits = min(int(m.group(2) or 3), 3)  # (bash: at most 3)
        value = {"R": real, "U": user, "S": system}[what]
        return _seconds(value, digits, m.group(3) is not None)

    return _SPEC.sub(one, layout) + "\n"
