"""The zygote's own program: runs inside one bubblewrap sandbox per session and starts
each command of the session in a sandbox of its own (``exo.sandbox.zygote``).

It runs as ``python -I -S _zygote_main.py FD`` with the standard library only (no
``exo`` import: nothing of the kernel is loaded into it). ``FD`` is its end of a
``SOCK_SEQPACKET`` socketpair whose other end only the kernel holds: no app can reach it
(it is close-on-exec; its name is in no filesystem). The zygote holds CAP_SYS_ADMIN and
CAP_NET_ADMIN (and SETUID/SETGID/SETPCAP) so that a command's sandbox can build its own
namespaces and bring its loopback up; the command gives all of them up in ``exo-stage2``
(account uid, empty bounding set) before it runs.

Requests (kernel → zygote): one datagram, ``JSON`` with the command's mounts, working
directory and descriptor numbers, carrying in SCM_RIGHTS, in this order: stdin, stdout,
stderr, the "go" pipe's two ends, the status pipe, stage 2's config memfd, the seccomp
memfd, each descriptor the command keeps, one detached mount (``open_tree``) per grant
(the last one the terminal's node for a command on a terminal), then the command's
``cgroup.procs`` files, opened by the kernel.

Answers (zygote → kernel): ``S ID PID`` with the command's pidfd, ``F ID MESSAGE`` when
it could not be started, ``X ID STATUS`` (the command's raw wait status) when it ended;
``READY`` once at start.

Every command runs in a *spare* made ahead of its request, so that its start pays
neither a fork nor a namespace's creation: ``exo-stage2 --spare FD --prepare``, started
with ``posix_spawn`` as pid 1 of a new pid namespace (``unshare(CLONE_NEWPID)`` around
the spawn). It makes mount, IPC and network namespaces (its loopback up), a ``/proc`` of
its own (``hidepid=invisible``) and private ``/tmp`` and ``/dev/shm``, forks the
command-to-be and stays its init, sending "P" and the command's pidfd up the socket.
The command-to-be waits for the request, which the zygote hands over as records
(``_spare_request``) with the kernel's descriptors: each grant's detached mount moved to
its Exo path, a ``/dev`` of its own on a terminal, ``/`` read-only, ``chdir``, its
descriptors at their numbers, no_new_privs; then stage 2 proper waits for "go". The
zygote meanwhile writes the command's pid into its cgroup, then "go"; stage 2 makes a
cgroup namespace rooted there, loads the seccomp filter, drops to the session's uid,
applies Landlock and execs the command. When the command ends, its init reports its
wait status ("X"), which the zygote passes on at once, and exits; the namespace, with
whatever the command left in it, ends too, and the zygote reaps the init (answering X
with the init's own status if no report came). Any failure before exec is one line on
the status pipe and exit 127; a spare that could not be prepared says why ("E") and the
command takes a fresh one.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import sys
from typing import Any

_MAX_REQUEST = 1 << 16
_MAX_FDS = 253  # SCM_MAX_FD
_FIXED = 8  # stdin stdout stderr go(read) status config seccomp go(write)
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
#: How long a command waits for its spare to be ready (it normally is, long since).
_READY_TIMEOUT = 10.0


class _Request:
    """A request, checked once: every field of the form the spare is sent."""

    def __init__(self, req: dict[str, Any], rid: int) -> None:
        self.id = rid
        self.mounts = [(str(d), bool(ro), bool(is_dir)) for d, ro, is_dir in req["mounts"]]
        self.keep = [int(fd) for fd in req["keep"]]
        self.cwd = str(req["cwd"])
        self.status_fd = int(req["status_fd"])
        self.config_fd = int(req["config_fd"])
        self.await_fd = int(req["await_fd"])
        self.tty = bool(req.get("tty", False))  # the last mount is the terminal's node
        self.procs = int(req["procs"])  # cgroup.procs files, after the mounts
        if not 0 <= self.procs <= 8 or (self.tty and not self.mounts):
            raise ValueError("malformed request")
        if any("\0" in text for text in (self.cwd, *(d for d, _, _ in self.mounts))):
            raise ValueError("malformed request")
        if not all(d.startswith("/") for d, _, _ in self.mounts) or \
                min([self.status_fd, self.config_fd, self.await_fd, *self.keep]) < 3 or \
                len({self.status_fd, self.config_fd, self.await_fd, *self.keep}) != \
                3 + len(self.keep):
            raise ValueError("malformed request")


def _spare_request(req: _Request, fds: list[int]) -> bytes:
    """The records ``exo-stage2 --spare`` reads (its header comment): indices into
    ``fds``, the descriptors as the kernel sent them (module docstring)."""
    first_mount, procs_at = _FIXED + len(req.keep), len(fds) - req.procs
    records = ["status", "4"]
    for i in (7, *range(procs_at, len(fds))):  # the zygote's "go" end, cgroup.procs
        records += ["close", str(i)]
    records += ["seccomp", "6"]
    mounts = list(enumerate(req.mounts, first_mount))
    if req.tty:  # the terminal's node: /dev/tty in a /dev of the command's own
        (terminal, _), mounts = mounts[-1], mounts[:-1]
        records += ["dev", str(terminal)]
    for index, (dest, ro, is_dir) in mounts:
        records += ["mount", dest, str(int(ro)), str(int(is_dir)), str(index)]
    records += ["cwd", req.cwd]
    targets = {0: 0, 1: 1, 2: 2, req.status_fd: 4, req.config_fd: 5, req.await_fd: 3}
    for i, number in enumerate(req.keep):
        targets[number] = _FIXED + i
    for number, index in targets.items():
        records += ["fd", str(number), str(index)]
    records += ["config", str(req.config_fd)]
    return b"".join(r.encode() + b"\0" for r in records)


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


class _Spare:
    """A command's sandbox, prepared ahead of its request: ``exo-stage2 --spare
    --prepare``, started as pid 1 of a pid namespace of its own (``pid``: here), which
    forks the command-to-be and stays its init; ``conn`` is the zygote's end of their
    socket: the request goes down it, "P" (with the command's pidfd), "E<why>" and
    "X<status>" come up."""

    def __init__(self, pid: int, conn: socket.socket) -> None:
        self.pid = pid
        self.conn = conn
        self.command = -1  # the command's pidfd, once "P" came (ready)

    def ready(self) -> str:
        """Wait for "P" (normally queued long since): "" when ready, else why not."""
        try:
            self.conn.settimeout(_READY_TIMEOUT)
            msg, fds, _, _ = socket.recv_fds(self.conn, 512, 1)
            self.conn.settimeout(None)
        except OSError as exc:
            return f"no answer ({exc})"
        if msg == b"P" and len(fds) == 1:
            self.command = fds[0]
            return ""
        for fd in fds:
            os.close(fd)
        return msg[1:].decode(errors="replace") if msg.startswith(b"E") else "it ended"

    def discard(self) -> None:
        """Give up on it (its init is this process's child, not yet reaped: the pid is
        still its own): the namespace goes with its init."""
        os.kill(self.pid, signal.SIGKILL)
        self.close()

    def close(self) -> None:
        self.conn.close()
        if self.command >= 0:
            os.close(self.command)
            self.command = -1


class _Spares:
    """The one spare kept prepared ahead of the next command, so that a command's start
    pays neither the forks nor the namespaces' creation."""

    def __init__(self, pidns: int) -> None:
        self.pidns = pidns  # this process's own pid namespace, to come back to
        self.spare: _Spare | None = None

    def fork(self) -> None:
        if self.spare is None:
            self.spare = self._spawn()

    def _spawn(self) -> _Spare | None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # A pid namespace for the next child only: unshare(CLONE_NEWPID) moves this
            # process's children's namespace, then setns puts it back. exo-stage2
            # prepares itself (--prepare: the other namespaces, /proc, private /tmp and
            # /dev/shm, the runtime kept visible), forks the command-to-be, which waits on
            # ``theirs`` for the records _spare_request makes of a request and the
            # kernel's descriptors. Started with posix_spawn (a vfork): a fork of this
            # Python process cost a command's start its copy-on-write faults and the
            # exec's teardown (~1 ms of CPU a spare, measured). Every other descriptor
            # of this process is close-on-exec.
            os.set_inheritable(theirs.fileno(), True)
            if _libc.unshare(CLONE_NEWPID) != 0:
                mine.close()
                return None
            try:
                pid = os.posix_spawn(
                    _STAGE2, [_STAGE2, "--spare", str(theirs.fileno()), "--prepare", *_KEEP],
                    os.environ, setsid=True, setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
            finally:
                if _libc.setns(self.pidns, CLONE_NEWPID) != 0:
                    # Its next child would be in that namespace: nothing safe is left.
                    os._exit(70)
        except OSError:
            mine.close()
            return None
        finally:
            theirs.close()
        return _Spare(pid, mine)

    def take(self) -> _Spare:
        """The prepared spare, or a new one if it failed; OSError saying why if neither
        is ready."""
        why = "cannot start one"
        for spare in (self.spare, None):
            spare = spare if spare is not None else self._spawn()
            self.spare = None
            if spare is None:
                continue
            why = spare.ready()
            if not why:
                return spare
            spare.discard()
        raise OSError(f"no sandbox could be prepared for the command: {why}")

    def ended(self, pid: int) -> None:
        if self.spare is not None and pid == self.spare.pid:
            self.spare.close()
            self.spare = None


class _Child:
    """A started command, by its init's pid: until the init is reaped."""

    __slots__ = ("conn", "reported", "rid")

    def __init__(self, rid: int, conn: socket.socket) -> None:
        self.rid, self.conn, self.reported = rid, conn, False


def _serve(sock: socket.socket, pidns: int) -> None:
    children: dict[int, _Child] = {}  # by its init's pid
    listening: dict[int, int] = {}  # an init's socket, until its report came -> its pid
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    spares = _Spares(pidns)
    spares.fork()
    # poll, not select: a session may run more commands than FD_SETSIZE allows.
    poller = select.poll()
    for fd in (sock.fileno(), wake_r):
        poller.register(fd, select.POLLIN)
    sock.send(b"READY")
    while True:
        ready = {fd for fd, _ in poller.poll()}
        for fd in ready & listening.keys():
            # The command ended: its init said so before tearing the namespace down, so
            # the kernel hears it now, not after what the command left behind is gone.
            pid = listening.pop(fd)
            poller.unregister(fd)
            child = children[pid]
            status = _report(child.conn)
            if status is not None:
                child.reported = True
                sock.send(f"X {child.rid} {status}".encode())
        if wake_r in ready:
            while True:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    break
            while True:
                try:
                    pid, raw = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                ended = children.pop(pid, None)
                if ended is None:
                    spares.ended(pid)
                    continue
                if ended.conn.fileno() in listening:
                    del listening[ended.conn.fileno()]
                    poller.unregister(ended.conn)
                if not ended.reported:  # no report: the init's own status (SIGKILL)
                    status = _report(ended.conn)
                    sock.send(f"X {ended.rid} {raw if status is None else status}".encode())
                ended.conn.close()
        if sock.fileno() in ready:
            msg, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, _MAX_FDS)
            if not msg:
                return  # the kernel is gone: so is every child (pid namespace)
            started = _handle(sock, msg, fds, children, spares)
            if started:
                listening[children[started].conn.fileno()] = started
                poller.register(children[started].conn, select.POLLIN)
            spares.fork()  # the next command's, after this one's answer


def _report(conn: socket.socket) -> int | None:
    """The command's raw wait status, as its init reports it before exiting ("X<n>"),
    if it is there."""
    try:
        msg = conn.recv(64, socket.MSG_DONTWAIT)
    except OSError:
        return None
    return int(msg[1:]) if msg.startswith(b"X") and msg[1:].isdigit() else None


def _handle(sock: socket.socket, msg: bytes, fds: list[int], children: dict[int, _Child],
            spares: _Spares) -> int:
    """Start the requested command in the spare; its init's pid, or 0 (answered F)."""
    rid = -1
    try:
        raw = json.loads(msg)
        rid = int(raw["id"])  # first: the answer to a malformed request says whose it is
        req = _Request(raw, rid)
        if len(fds) != _FIXED + len(req.keep) + len(req.mounts) + req.procs:
            raise ValueError("descriptor count does not match the request")
        spare = spares.take()
        try:
            socket.send_fds(spare.conn, [_spare_request(req, fds)], fds)
            pid = pidfd_pid(spare.command)
            if pid <= 0:  # the command-to-be is gone (its init would have said why)
                raise OSError("the command's sandbox ended before its start")
            # The command into its cgroup (the kernel's open cgroup.procs files, written
            # with the kernel's credentials), then "go": stage 2 may exec it. Its init
            # stays out (in the zygote's group): it counts against none of the command's
            # limits, and one migration less is on the start's path.
            for procs in fds[len(fds) - req.procs:]:
                os.write(procs, str(pid).encode())
            os.write(fds[7], b"g")
            socket.send_fds(sock, [f"S {rid} {pid}".encode()], [spare.command])
        except OSError:
            spare.discard()  # its init (and the command) killed, its socket closed
            raise
        os.close(spare.command)
        spare.command = -1
        children[spare.pid] = _Child(rid, spare.conn)  # answered S: X follows, once
        return spare.pid
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sock.send(f"F {rid} {exc}".encode()[:900])
        return 0
    finally:
        for fd in fds:
            os.close(fd)


def main() -> None:
    if len(sys.argv) > 2:
        keep = json.loads(sys.argv[2])
        _KEEP[:] = [str(k) for k in keep if str(k).startswith(PRIVATE_DIRS)]
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    _serve(sock, os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC))


if __name__ == "__main__":
    main()
