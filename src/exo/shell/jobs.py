"""Jobs: the pipelines a shell started, their stages and their processes."""

from __future__ import annotations

import contextlib
import signal
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.api import KernelApi
    from exo.kernel.process import ExoProcess


# Plain classes, not dataclasses: each @dataclass costs ~1.3 ms at import, on the boot path.
class Stage:
    """One command of a pipeline: its thread (a builtin) or its process, and its status."""

    __slots__ = ("close_after", "cpu", "job", "status", "thread")

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        #: (user, system) CPU seconds its builtin's thread used, when a ``time`` asked.
        self.cpu: tuple[float, float] | None = None
        self.job: ShellJob | None = None
        self.status = 0
        self.close_after: list[int] = []


class Cancel(threading.Event):
    """A job's end, asked: by Ctrl-C (SIGINT) or ``kill [-SIG] %N`` (``signal`` says
    which, so that a builtin ended by it exits 128+N, as a process would)."""

    signal: int = signal.SIGINT


class Job:
    """One pipeline the shell started: its stages, its state, its status once done."""

    __slots__ = ("cancel", "done", "number", "opened", "reads_terminal", "running", "source",
                 "stages", "state", "status")

    def __init__(self, source: str) -> None:
        self.source = source
        self.number = 0  # in the job table once backgrounded or stopped
        self.stages: list[Stage] = []
        self.opened: list[int] = []
        self.cancel: threading.Event = Cancel()
        self.done = threading.Event()
        #: Clear while the job is stopped (Ctrl-Z, ``kill -STOP %N``): its builtins wait
        #: (``CommandContext.running``), as its processes do on SIGSTOP.
        self.running = threading.Event()
        self.running.set()
        self.state = "Running"
        self.status = 0
        self.reads_terminal = False  # a builtin reads the terminal: the shell keeps it

    def processes(self) -> list[ShellJob]:
        return [s.job for s in self.stages if s.job is not None]

    def outcome(self) -> str:
        """How a finished job ended, as bash's ``jobs`` says it: ``Done``, ``Exit 3``,
        or the signal that ended it (``Terminated``, ``Killed``: its last program's, as
        its sandbox reported it; else a status of 128+N)."""
        if self.status == 0:
            return "Done"
        ended = self.end_signal()
        if ended is not None and self.status == 128 + ended[0]:
            return describe_signal(*ended)
        last = self.stages[-1] if self.stages else None
        known = last is not None and last.job is not None and last.job.proc.signal_known()
        if not known and ended is None and 128 < self.status < 128 + signal.NSIG:
            # (a builtin's stage, cancelled, or a program whose sandbox cannot tell a
            # signal from `exit 128+N`: read as the signal, as bash's status says it)
            return describe_signal(self.status - 128)
        return f"Exit {self.status}"

    def end_signal(self) -> tuple[int, bool] | None:
        """(signal, core dumped) that ended the last stage's program, if one did."""
        last = self.stages[-1].job if self.stages else None
        return last.proc.end_signal() if isinstance(last, ShellJob) else None


def describe_signal(sig: int, core: bool = False) -> str:
    """What sh says of a program signal ``sig`` ended: ``Segmentation fault (core
    dumped)``, ``Killed``, ``Terminated``..."""
    try:
        described = signal.strsignal(sig)
    except ValueError:
        described = None
    if not described or described.startswith("Unknown"):
        described = f"Signal {sig}"
    return described + (" (core dumped)" if core else "")


class ShellJob:
    """A sandboxed process in a pipeline: its exit status, or interrupted by Ctrl-C."""

    __slots__ = ("after", "kernel", "proc")

    def __init__(self, kernel: KernelApi, proc: ExoProcess) -> None:
        self.kernel, self.proc = kernel, proc
        #: Run once with its status, when that is first taken (the powerbox tidies up).
        self.after: Callable[[int], None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self) -> int:
        status = self.kernel.wait(self.proc)
        after, self.after = self.after, None
        if after is not None:
            after(status)
        return status

    def interrupt(self) -> None:
        self.kernel.interrupt(self.proc)

    def signal(self, sig: int, group: bool = False) -> None:
        """``group``: to what it started along too (its process group)."""
        with contextlib.suppress(LookupError):
            self.kernel.kill(self.proc.pid, sig, group)

    @property
    def state(self) -> str:
        """``running``, ``stopped`` (the host's own record: SIGSTOP, SIGTSTP, its own
        doing), ``exited`` or ``killed(N)``."""
        return self.proc.state
