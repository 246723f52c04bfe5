"""The zygote's own program: runs inside one bubblewrap sandbox per session and starts
each command of the session in a sandbox of its own (``exo.sandbox.zygote``).

It runs as ``python -I -S _zygote_main.py FD`` with the standard library only (no
``exo`` import: nothing of the kernel is loaded into it). ``FD`` is its end of a
``SOCK_SEQPACKET`` socketpair whose other end only the kernel holds: no app can reach it
(it is close-on-exec; its name is in no filesystem). The zygote holds CAP_SYS_ADMIN and
CAP_NET_ADMIN (and SETUID/SETGID/SETPCAP) so that a command's sandbox can build its own
namespaces and bring its loopback up; the command gives all of them up in ``exo-stage2``
(account uid, empty bounding set) before it runs.

What it does: it keeps the kernel supplied with prepared *spares*, each a command's
sandbox made ahead of its request, and reaps them. The kernel then starts a command in a
spare itself, with no message to the zygote on the command's path (one process less
between the Enter and the exec: docs/sandbox.md, "The zygote").

Messages (kernel → zygote): ``N``, one more spare wanted (after the kernel took one);
an empty read means the kernel is gone. (zygote → kernel): ``READY`` once at start;
``R`` with two descriptors, the zygote's end of a prepared spare's socket and the
command-to-be's pidfd; ``E MESSAGE`` when a wanted spare could not be prepared (twice
in a row), so that a start waiting for it fails with the reason instead of waiting.
The zygote owes ``SPARES`` spares at start and one more per ``N``.

A spare is ``exo-stage2 --spare FD --prepare``, started with ``posix_spawn`` as pid 1 of
a new pid namespace (``unshare(CLONE_NEWPID)`` around the spawn). It makes mount, IPC
and network namespaces (its loopback up), a ``/proc`` of its own
(``hidepid=invisible``) and private ``/tmp`` and ``/dev/shm``, forks the command-to-be
and stays its init, sending "P" and the command's pidfd up the socket, which is when
the zygote hands both to the kernel and keeps neither. The command-to-be waits for the
request: NUL-terminated records and the kernel's descriptors (each grant's detached
mount moved to its Exo path, a ``/dev`` of its own on a terminal, ``/`` read-only,
``chdir``, its descriptors at their numbers, no_new_privs; the format is in
``_stage2.c``), then stage 2 proper waits for "go", which the kernel writes once it has
put the command in its cgroup; stage 2 makes a cgroup namespace rooted there, loads the
seccomp filter, drops to the session's uid, applies Landlock and execs the command.
When the command ends, its init reports its wait status and the CPU time of what it
reaped on the socket ("X", to the kernel, which holds the socket's other end now) and
exits; the namespace, with whatever
the command left in it, ends too, and the zygote reaps the init. A spare that could not
be prepared says why ("E") and a fresh one is tried.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import socket
import sys

#: Spares the kernel is kept supplied with: a two-stage pipeline starts with no wait and
#: leaves one, so that the kernel asks for the replacements after its burst of starts
#: (``Zygote._replenish``).
SPARES = 3
#: Failed preparations in a row before a wanted spare is given up (``E``).
_TRIES = 2
CLONE_NEWPID = 0x20000000
_libc = ctypes.CDLL(None, use_errno=True)
#: Paths of the Python runtime (interpreter, venv, Exo packages) the base view shows
#: under /tmp or /dev/shm (a checkout in /tmp): kept visible over a command's private
#: /tmp and /dev/shm (argv[2] of the zygote: JSON list, from the kernel).
_KEEP: list[str] = []
PRIVATE_DIRS = ("/tmp", "/dev/shm")  # a command gets fresh ones
#: exo-stage2, beside this file (the kernel runs both from RUNTIME_SRC).
_STAGE2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exo-stage2")
#: Signals the zygote handles or ignores, at their defaults in every command.
_DEFAULT_SIGNALS = (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT,
                    signal.SIGTERM)


def pidfd_pid(pidfd: int) -> int:
    """The pid a pidfd refers to (its ``Pid:`` line, in the reader's namespace), 0 when
    the process has already been reaped, -1 when ``pidfd`` is no pidfd (its fdinfo has
    no ``Pid:`` line). Shared with the kernel (``exo.sandbox.zygote``), whose reader runs
    it for every command while the kernel's other threads want the GIL: read with one
    ``read`` of the raw bytes (a text file object made four syscalls of it, each a
    chance to lose the GIL; 0.15-0.3 ms per command, against 0.04 alone)."""
    try:
        fd = os.open(f"/proc/self/fdinfo/{pidfd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        start = data.index(b"\nPid:") + 5
        return max(0, int(data[start:data.index(b"\n", start)]))
    except (OSError, ValueError):
        return -1


def recv_fds(sock: socket.socket, size: int, maxfds: int,
             block: bool = False) -> tuple[bytes, list[int]]:
    """One message and the descriptors it carries, close-on-exec, without waiting unless
    ``block`` (``socket.recv_fds`` of Python 3.11 drops its flags: what it receives is
    inheritable). Shared with the kernel (``exo.sandbox.zygote``); the rest of ``exo``
    has ``exo._fdpass``, which this standalone program cannot import. Descriptors
    beyond ``maxfds`` (the message truncated) are closed and the message refused
    (OSError)."""
    width = array.array("i").itemsize
    msg, ancdata, flags, _ = sock.recvmsg(
        size, socket.CMSG_SPACE(maxfds * width),
        socket.MSG_CMSG_CLOEXEC | (0 if block else socket.MSG_DONTWAIT))
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % width])
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or len(fds) > maxfds:
        for fd in fds:
            os.close(fd)
        raise OSError(errno.EMSGSIZE, "message or descriptors truncated")
    return msg, list(fds)


class _Spare:
    """A spare being prepared: its init's pid (here) and pidfd (killed through it: the
    pid may be reaped and reused first), and the zygote's end of its socket, on which
    "P" (and the command-to-be's pidfd) or "E<why>" comes."""

    __slots__ = ("conn", "pid", "pidfd")

    def __init__(self, pid: int, conn: socket.socket) -> None:
        self.pid, self.conn = pid, conn
        self.pidfd = os.pidfd_open(pid)  # a child not yet reaped: the pid is its own

    def close(self) -> None:
        os.close(self.pidfd)
        self.conn.close()


def _spawn_spare(pidns: int) -> _Spare:
    """Start a spare (OSError if it cannot be started). A pid namespace for the next
    child only: unshare(CLONE_NEWPID) moves this process's children's namespace, then
    setns puts it back. Started with posix_spawn (a vfork): a fork of this Python
    process cost a command's start its copy-on-write faults and the exec's teardown
    (~1 ms of CPU a spare, measured). Every other descriptor of this process is
    close-on-exec."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        os.set_inheritable(theirs.fileno(), True)
        if _libc.unshare(CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWPID) failed")
        try:
            pid = os.posix_spawn(
                _STAGE2, [_STAGE2, "--spare", str(theirs.fileno()), "--prepare", *_KEEP],
                os.environ, setsid=True, setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
        finally:
            if _libc.setns(pidns, CLONE_NEWPID) != 0:
                # Its next child would be in that namespace: nothing safe is left.
                os._exit(70)
        return _Spare(pid, mine)
    except OSError:
        mine.close()
        raise
    finally:
        theirs.close()


class _Supply:
    """The spares owed to the kernel: ``SPARES`` at start, one more per ``N``; each
    handed over ("R") once it is prepared, or given up ("E") after ``_TRIES`` failures
    in a row."""

    def __init__(self, sock: socket.socket, pidns: int) -> None:
        self.sock, self.pidns = sock, pidns
        self.owed = SPARES
        self.preparing: dict[int, _Spare] = {}  # by its socket's descriptor
        self.failures = 0

    def refill(self) -> None:
        while len(self.preparing) < self.owed:
            try:
                spare = _spawn_spare(self.pidns)
            except OSError as exc:
                self._give_up(f"cannot start one ({exc})")
                continue
            self.preparing[spare.conn.fileno()] = spare

    def settle(self, fd: int) -> None:
        """The spare on ``fd`` said something: hand it over, or try another."""
        spare = self.preparing.pop(fd)
        why, pidfd = _said(spare.conn)
        if not why:
            try:
                socket.send_fds(self.sock, [b"R"], [spare.conn.fileno(), pidfd])
            finally:
                os.close(pidfd)
                spare.close()  # its socket is the kernel's now, and only the kernel's
            self.owed -= 1
            self.failures = 0
            return
        with contextlib.suppress(ProcessLookupError):  # (ended already)
            signal.pidfd_send_signal(spare.pidfd, signal.SIGKILL)  # reaped with the others
        spare.close()
        self.failures += 1
        if self.failures >= _TRIES:
            self._give_up(why)
        self.refill()

    def _give_up(self, why: str) -> None:
        self.sock.send(f"E no sandbox could be prepared for the command: {why}"
                       .encode()[:900])
        self.owed -= 1
        self.failures = 0


def _said(conn: socket.socket) -> tuple[str, int]:
    """What a spare said: ("", the command-to-be's pidfd) for "P", else (why, -1)."""
    try:
        msg, fds = recv_fds(conn, 512, 1)
    except OSError as exc:
        return f"no answer ({exc})", -1
    if msg == b"P" and len(fds) == 1:
        return "", fds[0]
    for fd in fds:
        os.close(fd)
    return (msg[1:].decode(errors="replace") if msg.startswith(b"E") else "it ended"), -1


def _serve(sock: socket.socket, pidns: int) -> None:
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    supply = _Supply(sock, pidns)
    # poll, not select: no FD_SETSIZE bound on anything.
    poller = select.poll()
    for fd in (sock.fileno(), wake_r):
        poller.register(fd, select.POLLIN)
    sock.send(b"READY")
    while True:
        supply.refill()
        watched = set(supply.preparing)
        for fd in watched:
            poller.register(fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll()}
        for fd in watched:
            poller.unregister(fd)
        for fd in ready & watched:
            supply.settle(fd)
        if wake_r in ready:
            while True:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    break
            while True:  # every child is a spare's init: nothing to report
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
        if sock.fileno() in ready:
            msg = sock.recv(64)
            if not msg:
                return  # the kernel is gone: so is every spare and command (pid namespace)
            if msg == b"N":
                supply.owed += 1


def main() -> None:
    if len(sys.argv) > 2:
        keep = json.loads(sys.argv[2])
        _KEEP[:] = [str(k) for k in keep if str(k).startswith(PRIVATE_DIRS)]
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    _serve(sock, os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC))


if __name__ == "__main__":
    main()
