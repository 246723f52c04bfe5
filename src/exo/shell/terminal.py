"""The terminal as a job-control shell holds it: Ctrl-C and Ctrl-Z reach the foreground
job only — not background jobs, not ``make run`` above us.

The terminal sends Ctrl-C and Ctrl-Z as signals to its foreground process group. The
kernel and the sandboxes' outer processes (bubblewrap's monitors) share one group, so a
signal to it would reach every job's monitor, and ``make run``'s group would get it too.
So the shell (1) takes a process group of its own and makes it the terminal's foreground
group, so ``make`` never sees the keys; and (2) while a job runs in the foreground, hands
the terminal to a tiny relay process in a group of its own, which turns each Ctrl-C or
Ctrl-Z it receives into one byte on a pipe. The shell reads that pipe and interrupts
(``KeyboardInterrupt`` in the shell's thread) or stops (``take_suspend``) that job
alone. The sandboxed programs are in sessions of their own (``bwrap --new-session``):
they read and write the terminal through their descriptors either way.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import subprocess
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

_RELAY = """
import os, signal, sys
def on(sig, frame):
    os.write(1, b"I" if sig == signal.SIGINT else b"Z")
for s in (signal.SIGINT, signal.SIGTSTP, signal.SIGQUIT):
    signal.signal(s, on)
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
while os.read(0, 1):  # the shell closes the pipe: done
    pass
"""


def _set_foreground(fd: int, pgrp: int) -> bool:
    """``tcsetpgrp`` from a group that may be in the background (SIGTTOU blocked)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgrp)
        return True
    except OSError:
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _ignore(signum: int, frame: object) -> None:
    """Ctrl-Z or Ctrl-\\ at the login prompt: a handler, not SIG_IGN, so the programs the
    kernel starts get the default action back at exec."""


def take_terminal(fd: int = 0) -> int | None:
    """Put this process in a process group of its own, in the terminal's foreground;
    returns the group to give the terminal back to at the end (None: nothing changed).
    Ctrl-Z and Ctrl-\\ typed while the shell itself has the terminal (the login prompt)
    must not stop or kill the kernel."""
    if not os.isatty(fd):
        return None
    signal.signal(signal.SIGTSTP, _ignore)
    signal.signal(signal.SIGQUIT, _ignore)
    try:
        previous = os.tcgetpgrp(fd)
    except OSError:
        return None
    if os.getpgrp() != os.getpid():
        try:
            os.setpgid(0, 0)
        except OSError:
            return None
    if previous == os.getpgrp():
        return None
    _set_foreground(fd, os.getpgrp())
    return previous


def give_back(fd: int, previous: int | None) -> None:
    if previous is not None:
        _set_foreground(fd, previous)


class Terminal:
    """The relay and the keys it reported (see the module's docstring)."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self._suspend = threading.Event()
        self._relay: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-S", "-c", _RELAY], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, process_group=0, close_fds=True)
        self._reader = threading.Thread(target=self._read, name="exosh-keys", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._relay is not None and self._relay.stdout is not None
        while key := os.read(self._relay.stdout.fileno(), 1):
            if key == b"I":
                _thread.interrupt_main()  # KeyboardInterrupt where the shell waits
            elif key == b"Z":
                self._suspend.set()

    def ask(self, question: str) -> bool:
        """A yes/no question to the person at the terminal (the powerbox asks before
        granting a program more than its policy says)."""
        holder = os.tcgetpgrp(self.fd)  # the relay, while a job starts: ours to ask
        _set_foreground(self.fd, os.getpgrp())
        try:
            os.write(self.fd, question.encode())  # the terminal, read-write
            answer = b""
            while not answer.endswith(b"\n"):
                byte = os.read(self.fd, 1)
                if not byte:
                    break
                answer += byte
        finally:
            _set_foreground(self.fd, holder)
        return answer.strip().lower() in (b"y", b"yes")

    def take_suspend(self) -> bool:
        """Whether Ctrl-Z was pressed since last asked."""
        if self._suspend.is_set():
            self._suspend.clear()
            return True
        return False

    @contextlib.contextmanager
    def job_in_foreground(self) -> Iterator[None]:
        """The terminal's keys go to the relay while the body runs."""
        relay = self._relay
        handed = relay is not None and relay.poll() is None and _set_foreground(
            self.fd, relay.pid)
        try:
            yield
        finally:
            if handed:
                _set_foreground(self.fd, os.getpgrp())

    def close(self) -> None:
        relay, self._relay = self._relay, None
        if relay is None:
            return
        assert relay.stdin is not None
        relay.stdin.close()
        try:
            relay.wait(2.0)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()
        self._reader.join(1.0)
        if relay.stdout is not None:
            relay.stdout.close()
