"""A redirection into a file: a pipe the kernel drains into it, above the disk reserve.

``cmd > notes.txt`` used to hand the command the file's own descriptor, opened by the
kernel in the Exo tree: a program writing there wrote straight onto the host's file
system, past the reserve the kernel's file server keeps for every ``storage://`` grant
(``exo.kernel.diskreserve``), and ``/usr/bin/yes > f`` as any user filled the host's disk
(a hostile review). Now the command writes into a pipe and a kernel thread moves what
comes into the file (``splice``: the bytes never enter Python), checking the reserve
before each move; at the reserve it stops and closes the pipe (the program gets EPIPE,
as from a reader that went away), and the shell says why where the line's errors go. An
append (``>>``) writes whole lines, as the program's own writes to the file would have
been whole against another job's appends.

What a program sees on its standard output is then a pipe, not the file: one that seeks
it (``dd seek=``) or maps it is told so by its own error; name the file as an argument
instead. A shell builtin's redirection goes the same way (``cat /dev/zero > f``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import termios
import threading

from exo import _threadcache
from exo.kernel import diskreserve

#: The most moved into the file between two looks at the reserve.
CHUNK = 1 << 20
#: What an append reads at a time (``splice`` refuses a file opened O_APPEND).
_APPEND_READ = 1 << 16


class FileSink:
    """The write end of a pipe (``fd``) whose bytes reach ``file_fd``; the sink owns both
    descriptors it was given and made but ``fd``, which its caller closes. ``name``: the
    file as the command line named it (in the error); ``max_size``: the most the file may
    hold (the shell's ``ulimit -f``: past it the sink stops as at the reserve, EFBIG)."""

    def __init__(self, file_fd: int, *, append: bool, name: str,
                 min_free: int | None = None, max_size: int | None = None) -> None:
        self._read, self.fd = os.pipe2(os.O_CLOEXEC)
        os.fchmod(self.fd, 0o666)  # (`tee /dev/stdout > f`: its program reopens it)
        self._file, self._append, self._name, self._min_free = file_fd, append, name, min_free
        self._max_size = max_size
        self._lock = threading.Lock()
        self._moved = threading.Condition(self._lock)
        self._busy = False  # moving bytes the pipe no longer counts (FIONREAD)
        self._done = False
        self._tail = b""  # an append's bytes after its last newline, held (_move)
        #: Why it stopped before the end (the reserve), for the shell to say.
        self.error: str | None = None
        try:
            _threadcache.start(self._pump, "exosh-sink")
        except BaseException as exc:  # no thread (the host's limit): nothing leaks
            os.close(self._read)
            os.close(self.fd)
            raise OSError(errno.EAGAIN, "no thread to move the output into the file"
                          ) from exc

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        try:
            while True:
                events = poller.poll()  # data, or every writer gone
                left = diskreserve.room(self._file, self._min_free)
                limited = False
                if self._max_size is not None:  # (`ulimit -f`'s room, when it is less)
                    below = self._max_size - os.fstat(self._file).st_size
                    if below < left:
                        left, limited = below, True
                if left <= 0:
                    if self._pending() > 0 or self._tail:
                        if limited:
                            raise OSError(errno.EFBIG, "file size limit (ulimit -f) reached")
                        raise diskreserve.NoRoom(errno.ENOSPC, diskreserve.NO_ROOM)
                    if any(ev & select.POLLHUP for _, ev in events):
                        return  # the end, with nothing left to write
                    continue
                with self._lock:
                    self._busy = True
                try:
                    moved = self._move(min(left, CHUNK))
                finally:
                    with self._moved:
                        self._busy = False
                        self._moved.notify_all()
                if moved == 0 and not self._tail:
                    return  # end of file: every writer closed its end
                # (an append's tail left past the room: said at the next look)
        except OSError as exc:
            what = exc.strerror or str(exc)
            self.error = f"{self._name}: {what[:1].lower()}{what[1:]}"
        finally:
            with self._moved:
                os.close(self._read)  # a writer still there gets EPIPE
                os.close(self._file)
                self._done = True
                self._moved.notify_all()

    def _move(self, most: int) -> int:
        """Bytes from the pipe into the file: at most ``most``, what the pipe holds now
        (0 only at its end)."""
        if not self._append:
            try:
                return os.splice(self._read, self._file, most, flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                return -1  # (a wakeup with nothing to read: look again)
        # An append writes whole lines (O_APPEND keeps each write whole against the other
        # appenders): the pipe gives a read whatever it holds, a record cut anywhere,
        # and two jobs' `>> log` tore 10 kB records (a hostile review).
        try:
            got = os.read(self._read, min(most, _APPEND_READ))
        except BlockingIOError:
            return -1
        data = self._tail + got
        cut = data.rfind(b"\n") + 1 if got else len(data)  # (at the end: all of it)
        if cut == 0 and len(data) >= _APPEND_READ:
            cut = len(data)  # a line longer than that goes in pieces
        cut = min(cut, most)  # (never past the room left: the reserve, `ulimit -f`)
        self._tail = data[cut:]
        view = memoryview(data)[:cut]
        while view:
            view = view[os.write(self._file, view):]
        return len(got)

    def _pending(self) -> int:
        """Bytes in the pipe not yet moved (the pump's thread, or the caller locks while
        the pipe is open)."""
        raw = fcntl.ioctl(self._read, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

    def settle(self) -> None:
        """Return once what was written so far is in the file: the pipe is drained, or
        the sink ended. (Its end may never come: a program's child may keep the pipe
        open and write later; the sink goes on moving that until it closes it.)"""
        with self._moved:
            # (in steps: on the shell's own thread a Ctrl-C comes between two waits)
            while not self._moved.wait_for(lambda: self._done or (
                    not self._busy and not self._tail and self._pending() == 0), 0.1):
                pass
