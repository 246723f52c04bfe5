"""Boot steps, their outcome and timing, and the seed-style boot log.

The log is written with plain ANSI escapes rather than rich: importing rich costs
tens of milliseconds, a sizeable share of the 300 ms boot budget.
"""

from __future__ import annotations

import enum
import os
import time

TYPE_CHECKING = False  # typing costs ~6 ms to import: annotations only (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO


class Phase(enum.Enum):
    CRITICAL = "CRITICAL"
    NORMAL = "NORMAL"
    DEFERRED = "DEFERRED"


class Status(enum.Enum):
    OK = "OK"
    FAILED = "FAILED"
    SKIP = "SKIP"


_TAGS = {Status.OK: "  OK  ", Status.FAILED: "FAILED", Status.SKIP: " SKIP "}
_COLOURS = {Status.OK: "32", Status.FAILED: "31", Status.SKIP: "33"}


class SkipStep(Exception):
    """Raised by a boot step that cannot run here; the message says why."""


class BootStep:
    __slots__ = ("detail", "ms", "name", "phase", "status")

    def __init__(self, name: str, phase: Phase, status: Status, detail: str, ms: float) -> None:
        self.name = name
        self.phase = phase
        self.status = status
        self.detail = detail
        self.ms = ms

    def __repr__(self) -> str:
        return f"BootStep({self.name!r}, {self.status.value}, {self.detail!r})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase.value,
            "status": self.status.value,
            "detail": self.detail,
            "ms": round(self.ms, 3),
        }


class BootReport:
    __slots__ = ("boot_ms", "phase_ms", "steps")

    def __init__(self) -> None:
        self.steps: list[BootStep] = []
        self.phase_ms: dict[str, float] = {}
        self.boot_ms = 0.0

    def run(self, phase: Phase, name: str, fn: Callable[[], str]) -> BootStep:
        """Run one step; an exception marks it FAILED (or SKIP) instead of aborting boot."""
        t0 = time.perf_counter()
        try:
            detail, status = fn(), Status.OK
        except SkipStep as exc:
            detail, status = str(exc), Status.SKIP
        except Exception as exc:  # a failed subsystem is reported, boot goes on
            detail, status = f"{type(exc).__name__}: {exc}", Status.FAILED
        step = BootStep(name, phase, status, detail, (time.perf_counter() - t0) * 1000)
        self.steps.append(step)
        return step

    def failed(self) -> list[BootStep]:
        return [s for s in self.steps if s.status is Status.FAILED]

    def as_dict(self) -> dict[str, Any]:
        return {
            "boot_ms": round(self.boot_ms, 3),
            "phases": {k: round(v, 3) for k, v in self.phase_ms.items()},
            "steps": [s.as_dict() for s in self.steps],
        }


def format_step(step: BootStep, *, colour: bool) -> str:
    tag = _TAGS[step.status]
    if colour:
        tag = f"\x1b[1;{_COLOURS[step.status]}m{tag}\x1b[0m"
    text = f"[{tag}] {step.name}"
    if step.detail:
        text += f" ({step.detail})"
    timing = f"{step.ms:.1f} ms"
    return f"{text}  \x1b[2m{timing}\x1b[0m" if colour else f"{text}  {timing}"


def write_step(out: TextIO, step: BootStep) -> None:
    out.write(format_step(step, colour=out.isatty()) + "\n")
    out.flush()


def process_age_ms() -> float:
    """Milliseconds since this process was created (exec of the interpreter).

    Uses the start time the Linux kernel records in /proc/self/stat (clock ticks
    since host boot), so the figure includes interpreter start-up. Resolution is one
    clock tick (10 ms at the usual 100 Hz); benchmarks time boot from outside.
    """
    with open("/proc/self/stat", "rb") as fh:
        stat = fh.read()
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    start_ticks = int(fields[19])
    hz = os.sysconf("SC_CLK_TCK")
    now = time.clock_gettime(time.CLOCK_BOOTTIME)
    return max(0.0, (now - start_ticks / hz) * 1000)
