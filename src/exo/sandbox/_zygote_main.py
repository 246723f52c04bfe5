"""The zygote's own program: runs inside one bubblewrap sandbox per session, forks one
child per command and turns it into that command's sandbox (``exo.sandbox.zygote``).

It runs as ``python -I -S _zygote_main.py FD`` with the standard library only (no
``exo`` import: nothing of the kernel is loaded into a process that forks for every
command). ``FD`` is its end of a ``SOCK_SEQPACKET`` socketpair whose other end only the
kernel holds: no app can reach it (children close it before anything runs; its name is
in no filesystem). The zygote holds CAP_SYS_ADMIN and CAP_NET_ADMIN (and
SETUID/SETGID/SETPCAP) so that a child can build its own namespaces and bring its
loopback up; every child gives all of them up in
``exo-stage2`` (account uid, empty bounding set) before the command runs.

Requests (kernel → zygote): one datagram, ``JSON`` with the command's mounts, working
directory and descriptor numbers, carrying in SCM_RIGHTS, in this order: stdin, stdout,
stderr, the "go" pipe's two ends, the status pipe, stage 2's config memfd, the seccomp
memfd, each descriptor the command keeps, one detached mount (``open_tree``) per grant,
then the command's ``cgroup.procs`` files, opened by the kernel: the zygote writes the
child's pid there right after the fork, then "go" (stage 2 waits for it before exec).

Answers (zygote → kernel): ``S ID NSPID`` with the child's pidfd, ``F ID MESSAGE`` when
the fork failed, ``X ID STATUS`` (the raw wait status) when a child ended; ``READY``
once at start.

A child, in order: leaves the zygote's session; ``unshare(CLONE_NEWNS | CLONE_NEWIPC |
CLONE_NEWNET)``, its loopback up; its own ``/proc`` (``hidepid=invisible``); a private
``/tmp`` and ``/dev/shm`` — ahead of time: the zygote keeps one child forked and so
prepared (a *spare*), which then execs ``exo-stage2 --spare`` and waits on a socketpair
of its own for the next request (the zygote hands it the kernel's descriptors and the
request as records, ``_spare_request``; it forks the next spare after answering) — then
each grant's detached mount moved to its Exo path (read-only where granted so); ``/``
read-only; ``chdir``; its descriptors at their numbers; no_new_privs and the seccomp
filter; then stage 2 proper, which drops to the session's uid, applies Landlock, waits
for "go" (the zygote writes it once the child is in its cgroup) and execs the command.
A command on a terminal (a whole ``/dev`` of its own), or one that finds no spare, gets
a child forked at once that does the same in Python (``_child``) and execs
``exo-stage2``. Any failure is one line on the status pipe and exit 127.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys

_MAX_REQUEST = 1 << 16
_MAX_FDS = 253  # SCM_MAX_FD
_FIXED = 8  # stdin stdout stderr go(read) status config seccomp go(write)
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_PROC_COVERED = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT = 428, 429
OPEN_TREE_CLONE = 1
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")  # namespace.DEVICES
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
_HIGH_FD = 512  # received descriptors are parked above every number the command keeps

AT_RECURSIVE = 0x8000
PRIVATE_DIRS = ("/tmp", "/dev/shm")  # a command gets fresh ones
_libc = ctypes.CDLL(None, use_errno=True)
#: Paths of the Python runtime (interpreter, venv, Exo packages) the base view shows
#: under /tmp or /dev/shm (a checkout in /tmp): kept visible over a command's private
#: /tmp and /dev/shm (argv[2] of the zygote: JSON list, from the kernel).
_KEEP: list[str] = []
#: exo-stage2, beside this file (the kernel runs both from RUNTIME_SRC).
_STAGE2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exo-stage2")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags),
                       enc(data)), f"mount {target}")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_seccomp(program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0),
           "seccomp")


def _read_fd(fd: int, limit: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while len(data) < limit:
        chunk = os.read(fd, limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _move_mount(fd: int, dest: str) -> None:
    _check(_libc.syscall(_SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, dest.encode(),
                         MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {dest}")


def _private_dev(terminal: int, shm: list[tuple[str, int]]) -> None:
    """A ``/dev`` of this command's own, as the launcher builds it with a terminal: the
    base view's device nodes, a private ``/dev/shm``, the links, and the terminal's node
    (``terminal``: its detached mount) at ``/dev/tty`` — made on a fresh tmpfs so that the
    session's other commands never see a ``/dev/tty`` of this one."""
    nodes = {}
    for name in DEVICES:
        fd = int(_libc.syscall(_SYS_OPEN_TREE, AT_FDCWD, name.encode(), OPEN_TREE_CLONE))
        _check(0 if fd >= 0 else -1, f"open_tree {name}")
        nodes[name] = fd
    nodes["/dev/tty"] = terminal
    _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=0755")
    for name, fd in nodes.items():
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        _move_mount(fd, name)
        _mount(None, name, None, MS_REMOUNT | MS_BIND | MS_NOSUID)
        if fd != terminal:
            os.close(fd)
    os.mkdir("/dev/shm", 0o1777)
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    _reattach(shm)  # the runtime's paths under /dev/shm, taken before /dev was covered
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{link}")
    _mount(None, "/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def _mount_point(dest: str, is_dir: bool, mounted: list[str]) -> None:
    """Create ``dest`` on the zygote's root tmpfs when it is missing; never inside a grant
    already mounted (that would write into the user's tree)."""
    if os.path.lexists(dest):
        return
    if any(dest.startswith(m.rstrip("/") + "/") for m in mounted):
        raise OSError(f"mount point {dest} is missing inside a grant")
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    if is_dir:
        os.mkdir(dest, 0o755)
    else:
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


class _Request:
    """A request, checked once: every field of the form the child uses."""

    def __init__(self, raw: bytes) -> None:
        req = json.loads(raw)
        self.id = int(req["id"])
        self.mounts = [(str(d), bool(ro), bool(is_dir)) for d, ro, is_dir in req["mounts"]]
        self.keep = [int(fd) for fd in req["keep"]]
        self.cwd = str(req["cwd"])
        self.status_fd = int(req["status_fd"])
        self.config_fd = int(req["config_fd"])
        self.await_fd = int(req["await_fd"])
        self.stage2 = str(req["stage2"])
        self.tty = bool(req.get("tty", False))  # the last mount is the terminal's node
        self.procs = int(req["procs"])  # cgroup.procs files, after the mounts
        if not 0 <= self.procs <= 8:
            raise ValueError("malformed request")
        if any("\0" in text for text in (self.cwd, *(d for d, _, _ in self.mounts))):
            raise ValueError("malformed request")
        if not all(d.startswith("/") for d, _, _ in self.mounts) or \
                min([self.status_fd, self.config_fd, self.await_fd, *self.keep]) < 3 or \
                len({self.status_fd, self.config_fd, self.await_fd, *self.keep}) != \
                3 + len(self.keep):
            raise ValueError("malformed request")


def _detach(under: str) -> list[tuple[str, int]]:
    """Detached copies (``open_tree``, with what is mounted below them) of the runtime
    paths under ``under``, taken before a private tmpfs covers them; outermost only."""
    inside = sorted(k for k in _KEEP if k.startswith(under.rstrip("/") + "/"))
    kept: list[tuple[str, int]] = []
    for path in inside:
        if any(path.startswith(k + "/") for k, _ in kept):
            continue
        fd = int(_libc.syscall(_SYS_OPEN_TREE, AT_FDCWD, path.encode(),
                               OPEN_TREE_CLONE | AT_RECURSIVE))
        _check(0 if fd >= 0 else -1, f"open_tree {path}")
        kept.append((path, fd))
    return kept


def _reattach(kept: list[tuple[str, int]]) -> None:
    """Put the runtime's detached copies back, read-only, at their paths on the new
    tmpfs (their mount points: root's directories there)."""
    for path, fd in kept:
        os.makedirs(path, mode=0o755, exist_ok=True)
        _move_mount(fd, path)
        os.close(fd)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _private_tmpfs(target: str) -> None:
    """A fresh tmpfs at ``target`` (/tmp, /dev/shm) with the runtime kept visible."""
    kept = _detach(target)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    _reattach(kept)


#: Signals the zygote handles or ignores, at their defaults in every command.
_DEFAULT_SIGNALS = (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT,
                    signal.SIGTERM)


def _loopback_up() -> None:
    """The loopback of a fresh network namespace up, as bubblewrap leaves it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def _private_proc() -> None:
    """A ``/proc`` of the command's own, ``hidepid=invisible`` (no ``/proc/PID`` of a
    process it cannot ptrace: the session's other commands, the zygote), with the
    directories bubblewrap covers read-only covered again (``private_proc`` in C)."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")
    for path in _PROC_COVERED:
        if os.path.lexists(path):
            _mount(path, path, None, MS_BIND | MS_REC)
            _mount(None, path, None,
                   MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _prepare() -> None:
    """What every command's child does first, before its request is known (a spare does
    the same in C ahead of time, ``exo-stage2 --spare FD --prepare``): default signals, a
    session, mount, IPC and network namespaces of its own (the loopback up), its own
    ``/proc``, a private ``/tmp``."""
    for sig in _DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    os.setsid()
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _loopback_up()
    _private_proc()
    _private_tmpfs("/tmp")


def _spare_request(req: _Request, fds: list[int]) -> bytes:
    """The records ``exo-stage2 --spare`` reads (its header comment): indices into
    ``fds``, the descriptors as the kernel sent them (module docstring)."""
    first_mount, procs_at = _FIXED + len(req.keep), len(fds) - req.procs
    records = ["status", "4"]
    for i in (7, *range(procs_at, len(fds))):  # the zygote's "go" end, cgroup.procs
        records += ["close", str(i)]
    records += ["seccomp", "6"]
    for n, (dest, ro, is_dir) in enumerate(req.mounts):
        records += ["mount", dest, str(int(ro)), str(int(is_dir)), str(first_mount + n)]
    records += ["cwd", req.cwd]
    targets = {0: 0, 1: 1, 2: 2, req.status_fd: 4, req.config_fd: 5, req.await_fd: 3}
    for i, number in enumerate(req.keep):
        targets[number] = _FIXED + i
    for number, index in targets.items():
        records += ["fd", str(number), str(index)]
    records += ["config", str(req.config_fd)]
    return b"".join(r.encode() + b"\0" for r in records)


def _child(req: _Request, fds: list[int]) -> None:
    """Everything between fork and exec of stage 2 for a command no spare takes (one on a
    terminal, or when the spare ended): see the module docstring."""
    status = fds[4]
    try:
        _prepare()
        os.close(fds[7])  # the zygote's "go" end
        mount_fds = fds[_FIXED + len(req.keep):len(fds) - req.procs]
        mounts = list(zip(req.mounts, mount_fds, strict=True))
        if req.tty:
            (_, terminal), mounts = mounts[-1], mounts[:-1]
            shm = _detach("/dev/shm")
            _private_dev(terminal, shm)
        else:
            _private_tmpfs("/dev/shm")
        mounted: list[str] = []
        for (dest, ro, is_dir), fd in mounts:
            _mount_point(dest, is_dir, mounted)
            _move_mount(fd, dest)
            _mount(None, dest, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV
                   | (MS_RDONLY if ro else 0))
            mounted.append(dest)
        _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.chdir(req.cwd)
        seccomp = _read_fd(fds[6], 1 << 20)
        # Park every received descriptor high, then put each at its number.
        used = _FIXED + len(req.keep)  # not the zygote's go end (closed), mounts, procs
        parked = [os.dup2(fd, _HIGH_FD + i) if fd >= 0 and i != 7 else -1
                  for i, fd in enumerate(fds[:used])]
        targets = {0: parked[0], 1: parked[1], 2: parked[2],
                   req.status_fd: parked[4], req.config_fd: parked[5],
                   req.await_fd: parked[3]}  # stage 2 waits on it for the kernel's go
        for i, number in enumerate(req.keep):
            targets[number] = parked[_FIXED + i]
        for number, fd in targets.items():
            if fd >= 0:
                os.dup2(fd, number, inheritable=True)
        status = req.status_fd
        _load_seccomp(seccomp)
        os.execve(req.stage2, [req.stage2, str(req.config_fd)], {})
    except BaseException as exc:  # the child reports everything, then exits
        message = f"Ezygote: {exc}".replace("\n", " ")[:900]
        try:
            os.write(status, message.encode(errors="replace"))
        finally:
            os._exit(127)


class _Spares:
    """The one child kept forked and prepared ahead of the next command (``_spare``), so
    that a command's start pays neither the fork nor the namespace's unshare."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock  # the kernel's: closed in every child
        self.pid = 0
        self.conn: socket.socket | None = None

    def fork(self) -> None:
        if self.conn is not None:
            return
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # exo-stage2 prepares itself (--prepare: its mount namespace, private /tmp and
            # /dev/shm, the runtime kept visible) and waits on ``theirs`` for the records
            # _spare_request makes of a request and the descriptors the kernel sent; it
            # then does in C what _child does. Started with posix_spawn (a vfork): a fork
            # of this Python process cost a command's start its copy-on-write faults and
            # the exec's teardown (~1 ms of CPU a spare, measured). The zygote ending, or
            # giving up on it, closes ``mine`` and the spare exits. Every other
            # descriptor of this process is close-on-exec.
            os.set_inheritable(theirs.fileno(), True)
            pid = os.posix_spawn(
                _STAGE2, [_STAGE2, "--spare", str(theirs.fileno()), "--prepare", *_KEEP],
                os.environ, setsid=True, setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
        except OSError:
            mine.close()
            theirs.close()
            return
        theirs.close()
        self.pid, self.conn = pid, mine

    def take(self, req: _Request, fds: list[int]) -> int:
        """Hand a request to the spare; its pid, or 0 when there is none (it ended)."""
        conn, pid = self.conn, self.pid
        self.conn, self.pid = None, 0
        if conn is None:
            return 0
        try:
            socket.send_fds(conn, [_spare_request(req, fds)], fds)
        except OSError:
            return 0
        finally:
            conn.close()
        return pid

    def ended(self, pid: int) -> None:
        if pid == self.pid and self.conn is not None:
            self.conn.close()
            self.conn, self.pid = None, 0


def _serve(sock: socket.socket) -> None:
    children: dict[int, int] = {}  # nspid -> request id
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    spares = _Spares(sock)
    spares.fork()
    sock.send(b"READY")
    while True:
        ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
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
                rid = children.pop(pid, None)
                if rid is not None:
                    sock.send(f"X {rid} {raw}".encode())
                else:
                    spares.ended(pid)
        if sock.fileno() in ready:
            msg, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, _MAX_FDS)
            if not msg:
                return  # the kernel is gone: so is every child (pid namespace)
            _handle(sock, msg, fds, children, spares)
            spares.fork()  # the next command's, after this one's answer


def _handle(sock: socket.socket, msg: bytes, fds: list[int], children: dict[int, int],
            spares: _Spares | None = None) -> None:
    rid = -1
    try:
        req = _Request(msg)
        rid = req.id
        if len(fds) != _FIXED + len(req.keep) + len(req.mounts) + req.procs:
            raise ValueError("descriptor count does not match the request")
        # A command on a terminal gets a /dev of its own: a child forked here builds it.
        pid = spares.take(req, fds) if spares is not None and not req.tty else 0
        if pid == 0:
            pid = os.fork()
            if pid == 0:
                sock.close()
                _child(req, fds)
        children[pid] = rid
        pidfd = os.pidfd_open(pid)
        try:
            # Into the command's cgroup (the kernel's open cgroup.procs files, written
            # with the kernel's credentials), then "go": stage 2 may exec the command.
            try:
                for procs in fds[len(fds) - req.procs:]:
                    os.write(procs, str(pid).encode())
            except OSError:
                os.kill(pid, signal.SIGKILL)
                raise
            os.write(fds[7], b"g")
            socket.send_fds(sock, [f"S {rid} {pid}".encode()], [pidfd])
        finally:
            os.close(pidfd)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sock.send(f"F {rid} {exc}".encode()[:900])
    finally:
        for fd in fds:
            os.close(fd)


def main() -> None:
    if len(sys.argv) > 2:
        keep = json.loads(sys.argv[2])
        _KEEP[:] = [str(k) for k in keep if str(k).startswith(PRIVATE_DIRS)]
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    _serve(sock)


if __name__ == "__main__":
    main()
