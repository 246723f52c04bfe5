"""The Hybrid tier inside ``posix-x run``: the kernel's broker for ``execve``, ``bind`` and
``connect``.

The process manager calls :func:`prepare` for a POSIX-X process: the program is then
started through ``_shim`` (``python3 -I -S``, inside the sandbox), which installs a
seccomp filter turning ``execve``/``execveat`` (and, with port-level network grants,
``bind``/``connect``) into user notifications and hands the listener to this module over
a socket. One kernel thread per process (:class:`Broker`) answers them:

* ``execve`` under an exec list: the path is read once from the target's memory; a file
  the exec policy (``[posix_x] exec``) does not list is refused with EACCES and the
  refusal written to the audit log (with the manifest line that would allow it); anything
  else continues, and Landlock's EXECUTE rules, not this check, decide (the notification
  has a time-of-check race, so it never allows what Landlock would refuse: it only
  explains and records). Under ``exec = true`` it does not notify at all (Fast).
* ``bind``/``connect`` of an inet socket: the address is read once and checked against the
  process's grants: loopback only, and a port of ``[posix_x] network`` (Landlock filters
  TCP by port, not by address: a program could bind ``0.0.0.0``). The kernel then performs
  the call itself on the program's socket (``pidfd_getfd`` gives it the same socket) with
  the address it checked, and answers with its result: what the program changes in its
  memory afterwards changes nothing. A refused address is EACCES, audited; so is an
  ``AF_UNSPEC`` bind (Linux binds an inet socket so to every address). Whether a socket is
  inet is asked of the socket (``SO_DOMAIN``), not of the family in memory, which a second
  thread can change before Linux reads it; the others (``AF_UNIX``) continue: the mount
  view and Landlock decide them. The notifying thread's pidfd (``PIDFD_THREAD``: a
  thread's id is no process's) is taken before the notification's id is checked again,
  so that it cannot be a reused pid's. A send that connects (``MSG_FASTOPEN``) is refused
  by the sandbox's filter.

* the refused Legacy rows (``mount``, ``ptrace``, ``bpf``…): the sandbox's own filter,
  built with ``SandboxSpec.broker``, notifies instead of answering EPERM (an ERRNO would
  take precedence over any notification); the shim's newer filter takes them, and the
  kernel answers the errno the syscall table documents (ENOSYS for the calls removed from
  Linux, EPERM for the others) and writes the refusal to the audit log. The call never
  runs: without a listener Linux answers a notification with ENOSYS.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import ipaddress
import json
import os
import select
import socket
import struct
import threading
import time
from pathlib import Path

from exo._fdpass import recv_fds

from . import _seccomp_notify as _sn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from exo.sandbox._seccomp import ArgRule
    from exo.sandbox.spec import NetMode, SandboxSpec

_NR_EXECVE, _NR_EXECVEAT, _NR_BIND, _NR_CONNECT = 59, 322, 49, 42
_NR_PIDFD_GETFD = 438
_CONTINUE = 1  # SECCOMP_USER_NOTIF_FLAG_CONTINUE
_AF_INET, _AF_INET6 = 2, 10
_SOCKADDR_MAX = 128
_TIMEVAL = struct.Struct("=qq")  # struct timeval, for SO_SNDTIMEO
_SLICE_US = 20_000  # a blocking connect's first wait, before it is waited for in slices
_AT_EMPTY_PATH = 0x1000
_PIDFD_THREAD = os.O_EXCL  # pidfd_open of a thread (Linux 6.9): the one that notified
_RESOLVE_IN_ROOT = 0x10
PYTHON = "/usr/bin/python3"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.bind.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
_libc.connect.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)


def _legacy() -> dict[int, tuple[str, int, str]]:
    """The refused Legacy rows the sandbox's filter hands over: number -> (name, errno,
    note), the errno the table documents (Linux's own for an unprivileged process)."""
    from exo.sandbox._seccomp import DENIED_SYSCALLS

    from . import table

    rows: dict[int, tuple[str, int, str]] = {}
    for name in DENIED_SYSCALLS:
        row = table.lookup(name)
        if row is not None and row.errno:
            rows[row.number] = (name, int(getattr(errno, row.errno)), row.note)
    return rows


LEGACY = _legacy()


def arg_rules(net_mode: NetMode, fork: bool) -> dict[int, tuple[ArgRule, ...]]:
    """The sandbox filter's argument-level refusals by syscall number, first match first."""
    from exo.sandbox import _seccomp

    from . import table

    by_nr: dict[int, tuple[ArgRule, ...]] = {}
    for rule in _seccomp.arg_rules(net_mode, fork):
        row = table.lookup(rule.syscall)
        if row is not None:
            by_nr[row.number] = (*by_nr.get(row.number, ()), rule)
    return by_nr


@functools.lru_cache(maxsize=16)
def compile_filter(net_mode: NetMode, fork: bool = True, exec_any: bool = False) -> bytes:
    """execve and execveat notify, unless ``exec_any`` (``[posix_x] exec = true``: the
    broker would let every one through, and each round trip cost a program ~70 µs of
    its fork and exec: 300 ``/bin/true`` from a shell, 611-665 against 522-570 µs under
    bubblewrap, 577-632 against 569-619 without the notification); bind and connect too
    with port-level grants; every refused Legacy row
    (``exo.sandbox._seccomp.DENIED_SYSCALLS``) and every argument-level refusal
    (``_seccomp.arg_rules``: the same calls *with the same arguments* only, so a thread's
    ``clone`` or an ordinary ``socket`` never reaches the kernel), which the sandbox's own
    filter defers to this one (``SandboxSpec.broker``)."""
    from exo.sandbox import _seccomp

    sc = _seccomp.binding()

    filt = sc.SyscallFilter(sc.ALLOW)
    names = [*(() if exec_any else ("execve", "execveat")),
             *(("bind", "connect") if net_mode == "tcp" else ())]
    names += [name for name, _, _ in LEGACY.values()]
    for name in names:
        if sc.resolve_syscall(sc.system_arch(), name) >= 0:
            filt.add_rule(sc.NOTIFY, name)
    _seccomp.add_arg_rules(filt, sc, _seccomp.arg_rules(net_mode, fork), sc.NOTIFY)
    return _seccomp.export(filt)


def shim_inside() -> str:
    """``_shim.py`` as the sandbox sees it (under the runtime directory)."""
    from exo.sandbox._bwrap import runtime_src
    from exo.sandbox.namespace import RUNTIME_SRC

    rel = Path(__file__).resolve().with_name("_shim.py").relative_to(runtime_src())
    return f"{RUNTIME_SRC}/{rel.as_posix()}"


def supported() -> bool:
    return os.path.exists(PYTHON) and _sn.supported()


class Broker:
    """The kernel's end of one POSIX-X process's broker."""

    def __init__(self, pid: int, spec: SandboxSpec, audit: Callable[[str], object]) -> None:
        self.pid = pid  # the Exo pid, for the audit log
        # The files it may execute, by identity: the sandbox shows the host's system
        # directories, so a program there has the same device and inode inside.
        self.exec_only: set[tuple[int, int]] | None = None
        if spec.exec_only is not None:
            self.exec_only = set()
            for p in spec.exec_only:
                with contextlib.suppress(OSError):
                    st = os.stat(p)
                    self.exec_only.add((st.st_dev, st.st_ino))
        self.exec_dirs = tuple(str(p) for p in spec.exec_paths)
        self.net_tcp = spec.net.mode == "tcp"
        self.net_mode: NetMode = spec.net.mode
        self.fork = spec.fork
        self.arg_rules = arg_rules(spec.net.mode, spec.fork)
        self.refusals: dict[str, int] = {}  # syscall name -> refusals, every one counted
        self.bind_ports = set(spec.net.bind_ports)
        self.connect_ports = set(spec.net.connect_ports)
        self.audit = audit
        self.decisions: list[tuple[str, str, int]] = []  # (syscall, target, errno) refused
        self._sock, self.child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        os.set_inheritable(self.child_sock.fileno(), True)
        self.config_fd = -1  # the shim's configuration (a memfd), until the spawn is done
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ serving
    def start(self) -> None:
        """Serve the listener the shim sends, on a kernel thread, until the process tree
        using the filter is gone."""
        self.child_sock.close()
        self._close_config()
        self._thread = threading.Thread(target=self._serve, name=f"posix-x-broker-{self.pid}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After a failed spawn: release both ends."""
        for s in (self._sock, self.child_sock):
            with contextlib.suppress(OSError):
                s.close()
        self._close_config()

    def _close_config(self) -> None:
        if self.config_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.config_fd)
            self.config_fd = -1

    def _serve(self) -> None:
        try:
            self._sock.settimeout(30)
            _, fds, _ = recv_fds(self._sock, 1, 1)
            if not fds:
                return
            listener = fds[0]
            self._sock.send(b"K")
        except OSError:
            return
        finally:
            self._sock.close()
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        try:
            while True:
                events = poller.poll()
                if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
                    return  # every process using the filter has exited
                self.handle_one(listener)
        finally:
            os.close(listener)

    def handle_one(self, listener: int) -> None:
        notif = _sn._Notif()
        if _sn._libc.ioctl(listener, _sn._IOCTL_RECV, ctypes.byref(notif)) != 0:
            return
        nr, args, pid = notif.data.nr, notif.data.args, int(notif.pid)
        try:
            if nr in (_NR_EXECVE, _NR_EXECVEAT):
                self._exec(listener, notif.id, pid, nr, args)
            elif nr in (_NR_BIND, _NR_CONNECT):
                self._net(listener, notif.id, pid, nr, args)
            elif nr in self.arg_rules:
                self._args(listener, notif.id, nr, tuple(args))
            elif nr in LEGACY:
                name, err, note = LEGACY[nr]
                self._refuse(listener, notif.id, name, "", err, f"Legacy: {note}")
            else:
                _continue(listener, notif.id)
        except Exception:  # a broker bug must never leave the target blocked
            _sn._reply_error(listener, notif.id, errno.EACCES)

    # ------------------------------------------------------------------ argument rules
    def _args(self, listener: int, notif_id: int, nr: int, args: tuple[int, ...]) -> None:
        """A call the filter refuses for its arguments: only those values notify, so the
        first rule that matches says which errno and why. The arguments are registers
        (no time-of-check race), and the call never continues here: none matching would
        be a filter this module does not know, refused rather than let through."""
        rules = self.arg_rules[nr]
        rule = next((r for r in rules if r.matches(args)), None)
        name = rules[0].syscall
        if rule is None:
            self._refuse(listener, notif_id, name, _show_args(name, args), errno.EPERM,
                         "refused by the sandbox's filter")
            return
        self._refuse(listener, notif_id, name, _show_args(name, args), rule.errno, rule.why)

    # ------------------------------------------------------------------ execve
    def _exec(self, listener: int, notif_id: int, pid: int, nr: int,
              args: Sequence[int]) -> None:
        if self.exec_only is None:
            _continue(listener, notif_id)
            return
        dirfd = ctypes.c_int(args[0] & 0xFFFFFFFF).value if nr == _NR_EXECVEAT else -100
        path = _sn._read_path(pid, args[1] if nr == _NR_EXECVEAT else args[0])
        pidfd = _thread_pidfd(listener, notif_id, pid)
        if pidfd < 0:
            return
        try:
            if not _sn._id_valid(listener, notif_id):
                return
            if isinstance(path, int):
                _continue(listener, notif_id)  # Linux answers EFAULT itself
                return
            # fexecve (execveat with AT_EMPTY_PATH, a register: no race) is refused under
            # an exec list: what the descriptor is can change between this check and
            # Linux's (a thread swapping a memfd copy of /usr/bin/id in at that number
            # ran it, 23 times in 100: a hostile review), and a memfd is on no path
            # Landlock's EXECUTE rules cover.
            if nr == _NR_EXECVEAT and args[4] & _AT_EMPTY_PATH:
                self._refuse(listener, notif_id, "execve", f"descriptor {dirfd}",
                             errno.EACCES, "a program runs by its path under [posix_x] exec "
                             "(fexecve is refused)")
                return
            # /proc/self/fd/N or /dev/fd/N: a descriptor named by a path, checked by what
            # it is now (a path in memory can change after this check: see docs).
            number = _fd_path(path)
            if number is not None:
                shown = f"descriptor {number}"
                found = _fd_identity(pidfd, number)
            elif not path:
                _continue(listener, notif_id)  # Linux answers ENOENT itself
                return
            else:
                if not path.startswith("/"):
                    base = _sn._base_dir(pid, dirfd)
                    path = os.path.normpath(os.path.join(base or "/", path))
                shown = path
                if path == "/proc" or path.startswith("/proc/"):
                    self._refuse(listener, notif_id, "execve", path, errno.EACCES,
                                 "a program is run by its path, not through /proc")
                    return
                found = _identity_inside(pid, path)
                if found is None or (found not in _loaders() and (
                        found in self.exec_only
                        or any(path == d or path.startswith(d + "/")
                               for d in self.exec_dirs))):
                    _continue(listener, notif_id)  # absent (ENOENT from Linux) or allowed
                    return
            if found is not None and found in _loaders():
                self._refuse(listener, notif_id, "execve", shown, errno.EACCES,
                             "the ELF loader run as a program would run any file; it "
                             "loads the listed programs only")
            elif found is None or found not in self.exec_only:
                self._refuse(listener, notif_id, "execve", shown, errno.EACCES,
                             f'allowed by [posix_x] exec = ["{path or shown}"]'
                             if number is None else "only a listed program's file runs "
                             "from a descriptor")
            else:
                _continue(listener, notif_id)
        finally:
            os.close(pidfd)

    # ------------------------------------------------------------------ bind, connect
    def _net(self, listener: int, notif_id: int, pid: int, nr: int,
             args: Sequence[int]) -> None:
        """What decides is the socket itself (its domain, asked of the kernel through the
        descriptor the target's table holds), never the family its memory says: that
        memory can change between this read and Linux's (a thread flipping AF_UNIX and
        AF_INET got a connection to any host). An inet socket's call always runs here,
        on the address read once; any other socket's continues."""
        fd, address, length = int(args[0] & 0xFFFFFFFF), args[1], int(args[2] & 0xFFFFFFFF)
        pidfd = _thread_pidfd(listener, notif_id, pid)
        if pidfd < 0:
            return
        sock = -1
        try:
            raw = _read_bytes(pid, address, min(length, _SOCKADDR_MAX))
            if not _sn._id_valid(listener, notif_id):
                return  # (so the pidfd is the notifying thread's, not a reused pid's)
            sock = _getfd(pidfd, fd)
            if sock < 0:
                _sn._reply_error(listener, notif_id, -sock)
                return
            try:
                domain = _domain(sock)
            except OSError as exc:  # not a socket
                _sn._reply_error(listener, notif_id, exc.errno or errno.ENOTSOCK)
                return
            if domain not in (_AF_INET, _AF_INET6):
                _continue(listener, notif_id)  # the mount view and Landlock decide
                return
            if raw is None:
                _sn._reply_error(listener, notif_id, errno.EFAULT)
                return
            self._inet_call(listener, notif_id, sock, raw, nr)
        finally:
            os.close(pidfd)
            if sock >= 0:
                os.close(sock)

    def _inet_call(self, listener: int, notif_id: int, sock: int, raw: bytes,
                   nr: int) -> None:
        """bind/connect of an inet socket, on ``raw`` as read: a granted loopback port
        runs (here, with these bytes); anything else is refused or fails as Linux says."""
        family = struct.unpack_from("=H", raw)[0] if len(raw) >= 2 else -1
        name = "bind" if nr == _NR_BIND else "connect"
        if family not in (_AF_INET, _AF_INET6):
            if nr == _NR_BIND:  # AF_UNSPEC binds an inet socket to INADDR_ANY: every host
                self._refuse(listener, notif_id, name, f"family {family}", errno.EACCES,
                             "only loopback addresses are granted: bind 127.0.0.1:PORT")
                return
            # connect(AF_UNSPEC) disconnects; another family fails as Linux says
            _sn._reply_error(listener, notif_id, _call(sock, raw, nr, listener, notif_id))
            return
        where = _inet(raw, family)
        if where is None:
            _sn._reply_error(listener, notif_id, errno.EINVAL)
            return
        host, port = where
        ports = self.bind_ports if nr == _NR_BIND else self.connect_ports
        loopback = ipaddress.ip_address(host).is_loopback
        if not loopback or port not in ports:
            why = (f"only loopback addresses are granted: {name} 127.0.0.1:{port}"
                   if not loopback else f"allowed by [posix_x] network = [{port}]")
            self._refuse(listener, notif_id, name, f"{host}:{port}", errno.EACCES, why)
            return
        _sn._reply_error(listener, notif_id, _call(sock, raw, nr, listener, notif_id))

    def _refuse(self, listener: int, notif_id: int, call: str, target: str, err: int,
                hint: str) -> None:
        self.refusals[call] = self.refusals.get(call, 0) + 1
        if len(self.decisions) < 256:
            self.decisions.append((call, target, err))
        self.audit(f"posix-x: {call}({target}) refused ({errno.errorcode[err]}); {hint}")
        # The audit log bounds its own volume (denials are rate-limited); this list is for
        # tests and /proc, so it keeps the first few only.
        _sn._reply_error(listener, notif_id, err)


_SHOWN_ARGS = {"clone": 1, "socket": 3, "ioctl": 2, "personality": 1}


def _show_args(name: str, args: tuple[int, ...]) -> str:
    """The arguments that decided, in hex (never memory: a hostile program chooses them,
    and the audit log bounds its text)."""
    count = _SHOWN_ARGS.get(name, 0)
    return ", ".join(f"{a & 0xFFFFFFFFFFFFFFFF:#x}" for a in args[:count])


def _continue(listener: int, notif_id: int) -> None:
    resp = _sn._NotifResp(id=notif_id, val=0, error=0, flags=_CONTINUE)
    _sn._libc.ioctl(listener, _sn._IOCTL_SEND, ctypes.byref(resp))


def _identity_inside(pid: int, path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of ``path`` resolved in the target's view (``RESOLVE_IN_ROOT``
    beneath its root: its links are followed as it would follow them), or None if it
    does not exist there."""
    try:
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        how = _sn._OpenHow(flags=os.O_PATH | os.O_CLOEXEC, mode=0, resolve=_RESOLVE_IN_ROOT)
        fd = _sn._libc.syscall(ctypes.c_long(_sn._NR_OPENAT2), ctypes.c_long(root),
                               ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                               ctypes.c_size_t(ctypes.sizeof(how)))
        if fd < 0:
            return None
        try:
            st = os.fstat(int(fd))
        finally:
            os.close(int(fd))
        return st.st_dev, st.st_ino
    finally:
        os.close(root)


def _fd_path(path: str) -> int | None:
    """N for ``/dev/fd/N`` or ``/proc/self/fd/N`` (``thread-self`` too): the program's
    own descriptor, named by a path."""
    for prefix in ("/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/"):
        if path.startswith(prefix) and path[len(prefix):].isdigit():
            return int(path[len(prefix):])
    return None


def _thread_pidfd(listener: int, notif_id: int, pid: int) -> int:
    """A pidfd of the notifying thread (``pid`` is its tid: ``PIDFD_THREAD``), to be
    taken before the notification's id is checked again, so that it cannot be a reused
    pid's; -1, answered ESRCH, when it is gone."""
    try:
        return os.pidfd_open(pid, _PIDFD_THREAD)
    except OSError:
        _sn._reply_error(listener, notif_id, errno.ESRCH)
        return -1


def _getfd(pidfd: int, number: int) -> int:
    """A copy of descriptor ``number`` of the thread ``pidfd`` names, or -errno."""
    fd = int(_libc.syscall(ctypes.c_long(_NR_PIDFD_GETFD), ctypes.c_long(pidfd),
                           ctypes.c_long(number), ctypes.c_long(0)))
    return fd if fd >= 0 else -(ctypes.get_errno() or errno.EBADF)


def _fd_identity(pidfd: int, number: int) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of descriptor ``number`` of the thread ``pidfd`` names."""
    fd = _getfd(pidfd, number)
    if fd < 0:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino


@functools.cache
def _loaders() -> frozenset[tuple[int, int]]:
    """The ELF loaders' identities (the sandbox shows the host's system directories)."""
    import glob

    found = set()
    for pattern in ("/lib64/ld-linux*.so*", "/lib/ld-linux*.so*", "/lib/*-linux-gnu/ld-*.so*",
                    "/usr/lib/*-linux-gnu/ld-*.so*", "/usr/lib64/ld-linux*.so*"):
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                found.add((st.st_dev, st.st_ino))
    return frozenset(found)


def _read_bytes(pid: int, address: int, length: int) -> bytes | None:
    if address == 0 or length <= 0:
        return None
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.pread(fd, length, address)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == length else None


def _inet(raw: bytes, family: int) -> tuple[str, int] | None:
    if family == _AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack_from("!H", raw, 2)[0]
    if family == _AF_INET6 and len(raw) >= 24:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack_from("!H", raw, 2)[0]
    return None


def _domain(sock: int) -> int:
    """The socket's own domain (SO_DOMAIN), whatever an address in memory says."""
    with socket.socket(fileno=os.dup(sock)) as s:
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)


def _call(sock: int, raw: bytes, nr: int, listener: int = -1, notif_id: int = 0) -> int:
    """bind/connect on the target's own socket (a copy of its descriptor) with the
    address as checked: 0 or an errno.

    A blocking connect waits here as it would have in the target, but never for longer
    than the target does: it is tried with a short send timeout, then waited for in
    slices, each ending with the question whether the notification still stands. A
    connect Linux makes wait (a listener's full queue: ~130 s of SYN retries) held this
    thread after its program had given up on it (a signal) or died, and every later call
    of that program that notifies waited behind it (134.9 s, measured). The target's own
    SO_SNDTIMEO still ends the wait, with EINPROGRESS, as Linux's connect does."""
    if nr == _NR_BIND or listener < 0 or os.get_blocking(sock) is False:
        call = _libc.bind if nr == _NR_BIND else _libc.connect
        return 0 if call(sock, raw, len(raw)) == 0 else ctypes.get_errno()
    with socket.socket(fileno=os.dup(sock)) as s:
        theirs = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL.size)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL.pack(0, _SLICE_US))
        try:
            err = 0 if _libc.connect(sock, raw, len(raw)) == 0 else ctypes.get_errno()
        finally:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, theirs)
        seconds, micros = _TIMEVAL.unpack(theirs)
        limit = seconds + micros / 1e6
        deadline = time.monotonic() + limit if limit > 0 else None
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        while err == errno.EINPROGRESS:  # (the short timeout ended the wait)
            if poller.poll(100):
                return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not _sn._id_valid(listener, notif_id):
                return errno.EINTR  # no one to answer: the connect goes on, as Linux's
            if deadline is not None and time.monotonic() >= deadline:
                return errno.EINPROGRESS
        return err


def prepare(spec: SandboxSpec, argv: list[str], *, pid: int,
            audit: Callable[[str], object]) -> tuple[SandboxSpec, list[str], Broker | None]:
    """The spec and argv that start ``argv`` through the shim, and its broker (None when
    this host cannot broker: then the program runs as before, under its sandbox)."""
    import dataclasses

    from .sandbox import exec_allowed

    if not supported():
        return spec, argv, None
    broker = Broker(pid, spec, audit)
    config = {"sock": broker.child_sock.fileno(),
              "bpf": compile_filter(spec.net.mode, spec.fork, spec.exec_only is None).hex(),
              "exec": None if spec.exec_only is None
              else [*map(str, spec.exec_only), *map(str, spec.exec_paths)]}
    config_fd = os.memfd_create("exo-posix-x-shim", 0)  # inherited: the shim reads it
    os.write(config_fd, json.dumps(config).encode())
    broker.config_fd = config_fd
    exec_only = spec.exec_only
    if exec_only is not None:  # the interpreter of the shim, until the shim narrows it
        python = exec_allowed((PYTHON,), "/", None) or ()
        exec_only = tuple(dict.fromkeys([*exec_only, *python]))
    spec = dataclasses.replace(spec, exec_only=exec_only, broker=True, keep_fds=(
        *spec.keep_fds, broker.child_sock.fileno(), config_fd))
    return spec, [PYTHON, "-I", "-S", shim_inside(), str(config_fd), "--", *argv], broker


__all__ = ["Broker", "compile_filter", "prepare", "shim_inside", "supported"]
