"""The Hybrid tier's mechanism: seccomp user notification brokering ``open``/``openat``.

Linux-specific and self-contained (its integration into ``exo.sandbox`` comes later). A child
installs a seccomp filter that turns ``open`` and ``openat`` into notifications
(``SECCOMP_RET_USER_NOTIF``; ``openat2`` answers ENOSYS so a libc falls back to ``openat``)
and hands the listener descriptor (``SECCOMP_FILTER_FLAG_NEW_LISTENER``) to its supervisor
before it executes the target. For each notification the supervisor:

1. reads the path **once** from the target's memory (``/proc/PID/mem``), then checks with
   ``SECCOMP_IOCTL_NOTIF_ID_VALID`` that the thread is still waiting in that very syscall
   (so the bytes came from it and not from a recycled pid);
2. decides by **its own** allow-list (``Rule``: a directory or a file, read-only or
   writable) on the path it read;
3. opens the file **itself**, beneath the rule's root with ``openat2(RESOLVE_BENEATH |
   RESOLVE_NO_MAGICLINKS)`` so a symlink or ``..`` cannot lead out of it, the rule of
   where it really leads deciding (``Broker.open_for``), never a FIFO or a device
   (looked at with ``O_PATH`` first), and injects the
   descriptor into the target with ``SECCOMP_IOCTL_NOTIF_ADDFD`` (``SECCOMP_ADDFD_FLAG_SEND``
   answers the syscall with the new descriptor number in the same step).

The syscall never continues in the target (``SECCOMP_USER_NOTIF_FLAG_CONTINUE`` is never
used): the kernel documents that the target can change its memory after the supervisor read
it, so what is opened is always what the supervisor checked. A refusal answers EACCES, a
failed open answers the errno the supervisor's open got. The supervisor opens with its own
credentials: the allow-list, not the file's mode, is the authority (as a capability is).

The BPF program is compiled by libseccomp (``pyseccomp``); the notification ioctls, which
libseccomp 2.5 does not wrap (ADDFD not at all), go through ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import time

from exo._fdpass import recv_fds

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

_NR_SECCOMP = 317
_NR_OPENAT2 = 437
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_GET_NOTIF_SIZES = 3
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_PR_SET_NO_NEW_PRIVS = 38
_AT_FDCWD = -100
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_RESOLVE_NO_SYMLINKS = 0x04


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("!") << 8) | number


class _SeccompData(ctypes.Structure):
    _fields_ = (("nr", ctypes.c_int), ("arch", ctypes.c_uint32),
                ("instruction_pointer", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6))


class _Notif(ctypes.Structure):
    _fields_ = (("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("data", _SeccompData))


class _NotifResp(ctypes.Structure):
    _fields_ = (("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32))


class _NotifAddfd(ctypes.Structure):
    _fields_ = (("id", ctypes.c_uint64), ("flags", ctypes.c_uint32),
                ("srcfd", ctypes.c_uint32), ("newfd", ctypes.c_uint32),
                ("newfd_flags", ctypes.c_uint32))


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class _NotifSizes(ctypes.Structure):
    _fields_ = (("notif", ctypes.c_uint16), ("resp", ctypes.c_uint16),
                ("data", ctypes.c_uint16))


_IOCTL_RECV = _ioc(3, 0, ctypes.sizeof(_Notif))
_IOCTL_SEND = _ioc(3, 1, ctypes.sizeof(_NotifResp))
_IOCTL_ID_VALID = _ioc(1, 2, 8)
_IOCTL_ADDFD = _ioc(1, 3, ctypes.sizeof(_NotifAddfd))
_ADDFD_FLAG_SEND = 1 << 1

# O_TMPFILE includes O_DIRECTORY's bit: test it as a whole (_is_tmpfile), never as a mask.
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_KNOWN_FLAGS = (os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC | os.O_APPEND
                | os.O_NONBLOCK | os.O_DSYNC | os.O_SYNC | os.O_DIRECTORY | os.O_NOFOLLOW
                | os.O_CLOEXEC | 0o100000 | os.O_NOATIME | os.O_PATH | os.O_TMPFILE
                | os.O_DIRECT)  # 0o100000: O_LARGEFILE, which Python does not export
_PATH_MAX = 4096
#: Decisions a Broker keeps (a target makes as many opens as it likes).
MAX_DECISIONS = 256

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_libc.ioctl.restype = ctypes.c_int
_libc.prctl.restype = ctypes.c_int


class BrokerError(Exception):
    """The mechanism is unavailable or failed: one line."""


class Rule:
    """A path the supervisor will open for the target: a directory (everything beneath it)
    or a single file, read-only unless ``write``."""

    __slots__ = ("is_dir", "path", "real", "write")

    def __init__(self, path: str, write: bool = False) -> None:
        if not os.path.isabs(path):
            raise BrokerError(f"rule {path!r}: not an absolute path")
        self.path = os.path.normpath(path)
        self.real = os.path.realpath(self.path)  # where it leads (/lib is /usr/lib)
        self.write = write
        self.is_dir = os.path.isdir(self.path)

    def root_and_rest(self, path: str, *, real: bool = False) -> tuple[str, str] | None:
        """The directory to open beneath and the rest of ``path``, if the rule covers it
        (``real``: ``path`` is a real path, compared with where the rule leads)."""
        mine = self.real if real else self.path
        if self.is_dir:
            if path == mine:
                return mine, "."
            prefix = mine.rstrip("/") + "/"
            return (mine, path[len(prefix):]) if path.startswith(prefix) else None
        if path == mine:
            return os.path.dirname(mine), os.path.basename(mine)
        return None


class Decision:
    """One brokered call, for the audit log and for tests."""

    __slots__ = ("errno", "fd", "flags", "path", "pid", "rule")

    def __init__(self, pid: int, path: str, flags: int, rule: str | None, err: int) -> None:
        self.fd = -1  # the supervisor's descriptor between the open and the injection
        self.pid = pid
        self.path = path
        self.flags = flags
        self.rule = rule
        self.errno = err  # 0: opened and injected

    @property
    def allowed(self) -> bool:
        return self.errno == 0

    def __repr__(self) -> str:
        verdict = "opened" if self.allowed else errno.errorcode.get(self.errno, str(self.errno))
        return f"Decision({self.path!r}, {verdict})"


class Broker:
    """The allow-list and the decisions taken against it."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        # Longest path first: a narrower rule (read-only inside a writable tree) wins; of two
        # rules for the same path the writable one, as two capabilities' rights add up.
        self.rules = sorted(rules, key=lambda r: (len(r.path), r.write), reverse=True)
        self.decisions: list[Decision] = []

    def open_for(self, path: str, flags: int, mode: int) -> tuple[int, Rule | None]:
        """Open ``path`` (absolute, as the target named it) for the target: ``(fd, rule)``
        or ``(-errno, rule)``.

        The rule that decides is the one covering where the path *leads* (its real path,
        read from the descriptor), not the one its spelling names: a narrower read-only
        rule inside a writable one was written through ``rw/sub/../ro/f`` or a link in
        ``rw`` to it. What is there is looked at first (``O_PATH``) and reopened only if it
        is a regular file or a directory (the supervisor answers on one thread: a FIFO or
        a device would wait for its peer); a new file is created in a directory checked
        the same way, by one name and through no link."""
        if flags & ~_KNOWN_FLAGS:
            return -errno.EINVAL, None
        clean = os.path.normpath("/" + path.lstrip("/"))  # (normpath keeps a leading //)
        writes = bool(flags & _WRITE_FLAGS or _is_tmpfile(flags))
        rule = next((r for r in self.rules if r.root_and_rest(clean) is not None), None)
        if rule is None:
            return -errno.EACCES, None
        root, rest = rule.root_and_rest(clean) or (rule.path, ".")
        try:
            root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            return -(exc.errno or errno.EACCES), rule
        try:
            if flags & os.O_CREAT and not _is_tmpfile(flags):
                made, rule = self._create(root_fd, rest, flags, mode, rule)
                if made != -errno.EEXIST or flags & os.O_EXCL:
                    return made, rule
            there = _openat2(root_fd, rest, os.O_PATH, 0)
            if there < 0:
                return there, rule
            try:
                rule = self._rule_of(there)
                if rule is None or (writes and not rule.write):
                    return -errno.EACCES, rule
                kind = os.fstat(there).st_mode & 0o170000
                if kind not in (0o100000, 0o040000):  # S_IFREG, S_IFDIR
                    return -errno.EACCES, rule
                again = flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW) | os.O_CLOEXEC
                try:
                    return os.open(f"/proc/self/fd/{there}", again, mode & 0o7777), rule
                except OSError as exc:
                    return -(exc.errno or errno.EACCES), rule
            finally:
                os.close(there)
        finally:
            os.close(root_fd)

    def _create(self, root_fd: int, rest: str, flags: int, mode: int,
                rule: Rule) -> tuple[int, Rule | None]:
        """``O_CREAT``: the new file (``O_EXCL``) in its directory, which a writable rule
        must cover where it leads; -EEXIST when a file is already there."""
        head, name = os.path.split(rest)
        if not name or name in (".", ".."):
            return -errno.EISDIR, rule
        parent = _openat2(root_fd, head or ".", os.O_PATH | os.O_DIRECTORY, 0)
        if parent < 0:
            return parent, rule
        try:
            covering = self._rule_of(parent, name)
            if covering is None or not covering.write:
                return -errno.EACCES, covering
            how = _OpenHow(flags=(flags | os.O_EXCL | os.O_CLOEXEC) & 0xFFFFFFFF,
                           mode=mode & 0o7777,
                           resolve=_RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS
                           | _RESOLVE_NO_SYMLINKS)
            fd = _libc.syscall(ctypes.c_long(_NR_OPENAT2), ctypes.c_long(parent),
                               ctypes.c_char_p(os.fsencode(name)), ctypes.byref(how),
                               ctypes.c_size_t(ctypes.sizeof(how)))
            if fd < 0:
                err = ctypes.get_errno()
                return -(errno.EACCES if err in (errno.EXDEV, errno.ELOOP) else err), covering
            return int(fd), covering
        finally:
            os.close(parent)

    def _rule_of(self, fd: int, name: str = "") -> Rule | None:
        """The narrowest rule covering where ``fd`` (and ``name`` in it) really is."""
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        real = os.path.join(real, name) if name else real
        return next((r for r in self.rules if r.root_and_rest(real, real=True) is not None),
                    None)


def _is_tmpfile(flags: int) -> bool:
    return flags & os.O_TMPFILE == os.O_TMPFILE


def _openat2(dirfd: int, rest: str, flags: int, mode: int) -> int:
    """openat2 beneath ``dirfd`` (links followed inside it, the rule of where it leads
    checked after): a descriptor, or -errno (leaving the root or a magic link on the way:
    EACCES, the rule does not cover it)."""
    how = _OpenHow(flags=(flags | os.O_CLOEXEC) & 0xFFFFFFFF, mode=mode,
                   resolve=_RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(ctypes.c_long(_NR_OPENAT2), ctypes.c_long(dirfd),
                       ctypes.c_char_p(os.fsencode(rest)), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        return -errno.EACCES if err in (errno.EXDEV, errno.ELOOP) else -err
    return int(fd)


def compile_filter() -> bytes:
    """The BPF program: notify on open/openat, ENOSYS for openat2, allow the rest."""
    from exo.sandbox import _seccomp

    sc = _seccomp.binding()

    filt = sc.SyscallFilter(sc.ALLOW)
    filt.add_rule(sc.NOTIFY, "open")
    filt.add_rule(sc.NOTIFY, "openat")
    filt.add_rule(sc.ERRNO(errno.ENOSYS), "openat2")
    return _seccomp.export(filt)


def supported() -> bool:
    """The kernel has user notification with the structure sizes this module uses."""
    sizes = _NotifSizes()
    if _libc.syscall(ctypes.c_long(_NR_SECCOMP), ctypes.c_long(_SECCOMP_GET_NOTIF_SIZES),
                     ctypes.c_long(0), ctypes.byref(sizes)) != 0:
        return False
    return bool(sizes.notif >= ctypes.sizeof(_Notif)
                and sizes.resp >= ctypes.sizeof(_NotifResp)
                and sizes.data >= ctypes.sizeof(_SeccompData))


def _install(program: bytes) -> int:
    """In the child: no_new_privs, then the filter; returns the listener descriptor."""
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len=len(program) // 8, filter=ctypes.cast(buf, ctypes.c_void_p).value)
    fd = _libc.syscall(ctypes.c_long(_NR_SECCOMP), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                       ctypes.c_long(_SECCOMP_FILTER_FLAG_NEW_LISTENER), ctypes.byref(prog))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SET_MODE_FILTER, NEW_LISTENER)")
    return int(fd)


def spawn(argv: Sequence[str], env: Mapping[str, str], *, cwd: str | None = None,
          stdout: int | None = None, stderr: int | None = None) -> tuple[int, int]:
    """Start ``argv`` under the filter: ``(pid, listener fd)``. Its opens block until the
    caller serves the listener (``serve``)."""
    program = compile_filter()
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    args = [os.fsencode(a) for a in argv]
    environ = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its failures are its exit status
        code = 127
        try:
            parent_sock.close()
            if cwd is not None:
                os.chdir(cwd)
            for src, dst in ((stdout, 1), (stderr, 2)):
                if src is not None:
                    os.dup2(src, dst)
            listener = _install(program)
            socket.send_fds(child_sock, [b"L"], [listener])
            os.close(listener)
            child_sock.close()
            os.execve(args[0], args, environ)
        except BaseException:
            code = 126
        finally:
            os._exit(code)
    child_sock.close()
    try:
        _, fds, _ = recv_fds(parent_sock, 1, 1)
    finally:
        parent_sock.close()
    if not fds:
        os.waitpid(pid, 0)
        raise BrokerError("the child could not install the seccomp filter")
    return pid, fds[0]


def _read_path(pid: int, address: int) -> str | int:
    """The NUL-terminated string at ``address`` in ``pid``, read once, or the errno Linux
    would give: EFAULT for memory that cannot be read, ENAMETOOLONG past PATH_MAX."""
    if address == 0:
        return errno.EFAULT
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return errno.EFAULT
    try:
        data = b""
        while len(data) < _PATH_MAX:
            here = address + len(data)
            chunk = os.pread(fd, min(4096 - here % 4096, _PATH_MAX - len(data)), here)
            if not chunk:
                return errno.EFAULT
            end = chunk.find(b"\0")
            if end >= 0:
                return os.fsdecode(data + chunk[:end])
            data += chunk
        return errno.ENAMETOOLONG
    except OSError:
        return errno.EFAULT
    finally:
        os.close(fd)


def _base_dir(pid: int, dirfd: int) -> str | None:
    link = f"/proc/{pid}/cwd" if dirfd == _AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
    try:
        return os.readlink(link)
    except OSError:
        return None


def _id_valid(listener: int, notif_id: int) -> bool:
    value = ctypes.c_uint64(notif_id)
    return bool(_libc.ioctl(listener, _IOCTL_ID_VALID, ctypes.byref(value)) == 0)


def _reply_error(listener: int, notif_id: int, err: int) -> None:
    resp = _NotifResp(id=notif_id, val=0, error=-err, flags=0)
    _libc.ioctl(listener, _IOCTL_SEND, ctypes.byref(resp))  # ENOENT: the target is gone


def _reply_fd(listener: int, notif_id: int, fd: int, cloexec: bool) -> int:
    addfd = _NotifAddfd(id=notif_id, flags=_ADDFD_FLAG_SEND, srcfd=fd, newfd=0,
                        newfd_flags=os.O_CLOEXEC if cloexec else 0)
    return int(_libc.ioctl(listener, _IOCTL_ADDFD, ctypes.byref(addfd)))


def handle_one(listener: int, broker: Broker) -> Decision | None:
    """Receive one notification and answer it; None when there was nothing to answer."""
    notif = _Notif()  # the kernel requires a zeroed buffer
    if _libc.ioctl(listener, _IOCTL_RECV, ctypes.byref(notif)) != 0:
        return None  # ENOENT: the target died or was interrupted before we received it
    nr, args, pid = notif.data.nr, notif.data.args, int(notif.pid)
    if nr == 2:  # open(path, flags, mode)
        dirfd, address, flags, mode = _AT_FDCWD, args[0], args[1], args[2]
    else:  # openat(dirfd, path, flags, mode)
        dirfd = ctypes.c_int(args[0] & 0xFFFFFFFF).value
        address, flags, mode = args[1], args[2], args[3]
    flags &= 0xFFFFFFFF
    path = _read_path(pid, address)
    if not _id_valid(listener, notif.id):
        return None  # not the same thread in the same syscall any more: nothing to answer
    decision = _decide(broker, pid, dirfd, path, flags, mode)
    if decision.errno:
        _reply_error(listener, notif.id, decision.errno)
    else:
        fd = decision.fd
        try:
            if _reply_fd(listener, notif.id, fd, bool(flags & os.O_CLOEXEC)) < 0:
                decision.errno = ctypes.get_errno()
        finally:
            os.close(fd)
        decision.fd = -1
    if len(broker.decisions) < MAX_DECISIONS:  # (for tests and the audit: the first few)
        broker.decisions.append(decision)
    return decision


def _decide(broker: Broker, pid: int, dirfd: int, path: str | int, flags: int,
            mode: int) -> Decision:
    """Check and open; the decision holds the supervisor's descriptor when it opened."""
    if isinstance(path, int):
        return Decision(pid, "", flags, None, path)
    if not path:
        return Decision(pid, path, flags, None, errno.ENOENT)  # as Linux for ""
    absolute = path
    if not path.startswith("/"):
        base = _base_dir(pid, dirfd)
        if base is None:
            return Decision(pid, path, flags, None, errno.EBADF)
        absolute = os.path.join(base, path)
    fd, rule = broker.open_for(absolute, flags & ~os.O_CLOEXEC, mode)
    decision = Decision(pid, absolute, flags, rule.path if rule else None, max(0, -fd))
    decision.fd = fd
    return decision


def serve(listener: int, broker: Broker, pid: int, *, timeout: float = 30.0) -> int:
    """Answer the target's opens until it exits; its exit status (128+N after signal N).
    Past ``timeout`` seconds the target is killed."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)
                break
            events = poller.poll(min(left, 1.0) * 1000)
            if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
                break  # every process using the filter has exited
            if events:
                handle_one(listener, broker)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return _status(status)
    finally:
        os.close(listener)
    _, status = os.waitpid(pid, 0)
    return _status(status)


def _status(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else \
        128 + os.WTERMSIG(status)


def run(argv: Sequence[str], rules: Iterable[Rule], *, env: Mapping[str, str] | None = None,
        cwd: str | None = None, stdout: int | None = None, stderr: int | None = None,
        timeout: float = 30.0) -> tuple[int, Broker]:
    """Run ``argv`` with every open brokered against ``rules``: ``(exit status, broker)``."""
    broker = Broker(rules)
    pid, listener = spawn(argv, env if env is not None else {}, cwd=cwd, stdout=stdout,
                          stderr=stderr)
    return serve(listener, broker, pid, timeout=timeout), broker
