"""What a command sees while it runs: its arguments, its streams and the shell."""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from exo.kernel.process import ExoProcess
    from exo.shell.core import Shell


#: The longest line ``read_line`` takes (the shell reads in the kernel: ``read x <
#: /dev/zero`` grew it without end, a hostile review).
MAX_LINE = 1 << 20


def without_nul(text: str) -> str:
    """``text`` without its NUL bytes, as bash drops them from what it reads (a line,
    a sourced file, ``$(…)``'s output, ``read``'s input): no word or variable holds one,
    which the shell's own markers rely on (``parser.SUBSHELL``, ``arrays.MARK``)."""
    return text.replace("\0", "") if "\0" in text else text


class ReadTimeout(Exception):
    """``read -t``: no whole line came in time (what came is ``partial``)."""

    def __init__(self, partial: bytes) -> None:
        super().__init__("timed out")
        self.partial = partial


def read_line(fd: int, cancelled: threading.Event | None = None,
              delimiter: bytes = b"\n", deadline: float | None = None) -> bytes:
    """One line from ``fd``, newline (``delimiter``: ``read -d``'s byte) included,
    reading no byte past it (so whoever reads ``fd`` next, a command or the shell, gets
    the rest); ``b""`` at end of input. At most MAX_LINE bytes (ValueError past it);
    stops, with what it has, once ``cancelled`` is set (Ctrl-C, ``kill %N``).
    ``deadline`` (``time.monotonic``'s): ReadTimeout once it passes with no whole line."""
    line = bytearray()
    wait = deadline is not None or (cancelled is not None and os.isatty(fd))
    while not line.endswith(delimiter) and (not wait or _input(fd, cancelled, deadline, line)) \
            and (byte := os.read(fd, 1)):
        line += byte
        if len(line) > MAX_LINE:
            raise ValueError(f"a line longer than {MAX_LINE >> 20} MiB")
        if cancelled is not None and len(line) % 4096 == 0 and cancelled.is_set():
            break
    return bytes(line)


def _input(fd: int, cancelled: threading.Event | None, deadline: float | None = None,
           line: bytearray | None = None) -> bool:
    """Wait for a byte (or the end) on ``fd``: False once ``cancelled`` is set (a command
    reading the terminal never stays blocked there after its end: it took the next
    user's typed line, at the login prompt); ReadTimeout (with ``line``, what came) once
    ``deadline`` (``read -t``'s) passes. poll, not select: the kernel's descriptors go
    past select's 1024."""
    import select
    import time

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        step = 200
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReadTimeout(bytes(line or b""))
            step = int(min(left * 1000, step)) + 1
        if poller.poll(step):
            return True
        if cancelled is not None and cancelled.is_set():
            return False


class CommandError(Exception):
    """A command failed with a message for stderr and an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


#: The ``running`` of a command no job stops (never cleared).
_RUNNING = threading.Event()
_RUNNING.set()


# A plain class, not a dataclass: each @dataclass costs ~1.3 ms at import, on the boot path.
class CommandContext:
    __slots__ = ("adopt", "argv", "cancelled", "fds", "own_fds", "running", "shell", "stderr",
                 "stdin", "stdout")

    def __init__(
        self,
        shell: Shell,
        argv: list[str],
        stdin: int,
        stdout: int,
        stderr: int,
        cancelled: threading.Event | None = None,
    ) -> None:
        self.shell = shell
        self.argv = argv
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.cancelled = threading.Event() if cancelled is None else cancelled
        #: Clear while its job is stopped (``Job.running``): a long builtin waits then.
        self.running = _RUNNING
        # A builtin that starts a process (``run``) hands it to its job here, so that
        # Ctrl-Z, ``fg``, ``bg`` and ``kill %N`` reach it.
        self.adopt: Callable[[ExoProcess], None] | None = None
        #: Its descriptors 3 and up (``3< f``, the shell's ``exec 3> f``), by number.
        self.fds: dict[int, int] = {}
        self.own_fds: set[int] = set()  # those of them its own redirections set

    def descriptor(self, number: int) -> int:
        """The descriptor the command knows as ``number`` (``read -u N``, ``>&N``)."""
        fd = (self.stdin, self.stdout, self.stderr)[number] if number <= 2 else \
            self.fds.get(number, -1)
        if fd < 0:
            raise CommandError(f"{number}: bad file descriptor")
        return fd

    @property
    def name(self) -> str:
        return self.argv[0]

    @property
    def args(self) -> list[str]:
        return self.argv[1:]

    def write(self, data: bytes | str, fd: int | None = None) -> None:
        if not self.running.is_set():
            self.paused()
        buf = data.encode() if isinstance(data, str) else data
        view = memoryview(buf)
        target = self.stdout if fd is None else fd
        while view:
            n = os.write(target, view)
            view = view[n:]

    def out(self, text: str = "") -> None:
        self.write(text + "\n")

    def err(self, text: str) -> None:
        self.write(f"{self.name}: {text}\n", self.stderr)

    def isatty(self) -> bool:
        return os.isatty(self.stdout)

    def paused(self) -> None:
        """Wait while its job is stopped (Ctrl-Z; ``fg``/``bg`` resume it), as a stopped
        process waits; an end (Ctrl-C, ``kill %N``) ends the wait too."""
        while not self.running.wait(0.5) and not self.cancelled.is_set():
            pass

    def read_stdin(self, size: int = 65536) -> Iterator[bytes]:
        terminal = os.isatty(self.stdin)
        while not self.cancelled.is_set():
            if not self.running.is_set():
                self.paused()
            if terminal and not _input(self.stdin, self.cancelled):
                return
            chunk = os.read(self.stdin, size)
            if not chunk:
                return
            yield chunk

    def path(self, p: str) -> str:
        """Normalise a user-supplied path against the shell's working directory."""
        return self.shell.vfs.normalize(p, self.shell.cwd)
