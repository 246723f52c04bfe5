"""A per-session zygote: one bubblewrap sandbox holding the base view, supplying the
kernel with prepared sandboxes ("spares") instead of a sandbox built per command.

Why: a host program started through the powerbox paid ~15 ms of sandbox start (three
process creations, bubblewrap's namespaces and ~30 mounts) for a command that runs in 1 ms.
The zygote pays that once per session (and mount view); a command's spare is made ahead
of it (an exec of ``exo-stage2`` in new namespaces), and its start costs a few mounts, the
seccomp load and one exec (docs/sandbox.md, "The zygote"). The kernel starts a command
in a spare itself (:meth:`Zygote.start`): the request goes down the spare's socket, and
no message to the zygote is on the command's path.

What a command keeps from the full launcher, and how:

* its own pid, mount, IPC, network and cgroup namespaces (the loopback up, as
  bubblewrap leaves it) and its own ``/proc``, mounted ``hidepid=invisible``;
* its own mount view: the child gets, at their Exo paths,
  only its grants, as detached mounts the kernel made with ``open_tree`` of its revocable
  FUSE exports (the same sources the launcher binds), a private ``/tmp`` and ``/dev/shm``,
  ``/`` read-only;
* the same Landlock ruleset, seccomp filter, no_new_privs and account uid
  (``exo-stage2``, with the same config the launcher writes);
* its own cgroup, created by the kernel and joined between the request and the exec
  (the kernel writes the command-to-be's pid into it, then "go"; stage 2 waits for it
  before exec);
* what it shares with its session's other commands: the uts namespace and the base
  view. It cannot signal or ptrace them or the zygote: each command is in its own
  Landlock domain with signal scoping (Landlock ABI 6), the zygote runs as root while
  the command runs as the session's uid, and seccomp refuses ptrace.

A command on a terminal gets a ``/dev`` of its own (the base's device nodes and the
terminal's node at ``/dev/tty``, on a fresh tmpfs), so the session's other commands never
see it. A command this path cannot keep every property of (a network capability, a
POSIX-X program, a kernel that is not root, a mount view that differs from the session's
base beyond its grants) is not started here: :func:`spawn` returns
None and the caller uses the full launcher.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import ctypes
import errno
import functools
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Protocol

from . import _bwrap, _cgroups, _landlock, _seccomp
from ._probe import check_requirements
from ._zygote_main import SPARES as _SPARES
from ._zygote_main import pidfd_pid as _pidfd_pid
from ._zygote_main import recv_fds as _recv_fds
from .errors import ExecFailed, SandboxError
from .namespace import DEVICES, TTY
from .spec import NetPolicy, SandboxSpec

#: Seconds an ended command's init has to report its status before it counts as killed.
REPORT_GRACE = 2.0
#: Set by a caller (the powerbox) that wants its spawns through a zygote when possible.
preferred: contextvars.ContextVar[bool] = contextvars.ContextVar("exo_zygote", default=False)
MAX_ZYGOTES = 8  # one per session and view; the oldest idle one stops beyond this
_MAIN = Path(__file__).with_name("_zygote_main.py")
_SYS_OPEN_TREE = 428
OPEN_TREE_CLONE = 1
AT_SYMLINK_NOFOLLOW = 0x100
AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count(1)
_zygotes: dict[tuple[object, ...], Zygote] = {}
_stopped: set[str] = set()  # boots whose kernel has shut down: no zygote starts for them
_lock = threading.Lock()


#: Set by a caller that starts several commands in a row (a shell's pipeline): a start
#: returns once the zygote has forked the command, and its confirmation (stage 2 exec'd
#: it, or why not) is appended here for the caller to take after its last start.
_deferred: contextvars.ContextVar[list[Callable[[], None]] | None] = \
    contextvars.ContextVar("exo_zygote_deferred", default=None)


@contextlib.contextmanager
def deferring() -> Iterator[list[Callable[[], None]]]:
    """Within this block, a zygote start does not wait for its command's exec: each
    appends to the yielded list a function that waits for it and raises what the start
    would have raised (``ExecFailed``, ``SandboxError``). The caller calls every one
    before the block ends (``Shell._launch``): the next command's preparation in the
    kernel then overlaps the last one's setup in its sandbox. A command whose exec
    failed ends by itself (status 127) and is reaped as any other."""
    pending: list[Callable[[], None]] = []
    token = _deferred.set(pending)
    try:
        yield pending
    finally:
        _deferred.reset(token)


@contextlib.contextmanager
def prefer() -> Iterator[None]:
    """Within this block, ``ProcessManager.spawn`` tries the zygote first."""
    token = preferred.set(True)
    try:
        yield
    finally:
        preferred.reset(token)


#: pidfd_send_signal's flag for the target's process group (Linux 6.9).
_PIDFD_SIGNAL_PROCESS_GROUP = 1 << 2


def _has_ended(pidfd: int, within: float = 0.1) -> bool:
    """Whether the process of ``pidfd`` has ended (its pidfd is readable), waiting at most
    ``within`` s (a process already refused as exiting may not be marked ended yet)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(int(within * 1000)))


def _seqpacket(fd: int) -> socket.socket | None:
    """``fd`` as a socket, which then owns it, if it is a Unix ``SOCK_SEQPACKET`` one (a
    spare's, as the zygote hands over); else None, ``fd`` left as it was."""
    try:
        conn = socket.socket(fileno=fd)  # its family and type read from the descriptor
    except OSError:  # no socket at all
        return None
    if conn.family == socket.AF_UNIX and conn.type == socket.SOCK_SEQPACKET:
        return conn
    conn.detach()
    return None


def _open_tree(path: str) -> int:
    fd = int(_libc.syscall(_SYS_OPEN_TREE, AT_FDCWD, path.encode(),
                           OPEN_TREE_CLONE | os.O_CLOEXEC | AT_SYMLINK_NOFOLLOW))
    if fd < 0:
        err = ctypes.get_errno()
        raise SandboxError(f"cannot take a mount of a grant: {os.strerror(err)}")
    return fd


def _binds(args: Sequence[str],
           kinds: tuple[str, ...] = ("--bind", "--ro-bind")) -> list[tuple[str, str, str]]:
    """``(option, source, dest)`` of each bind in a bubblewrap argument list."""
    out = []
    for i, a in enumerate(args):
        if a in kinds and i + 2 < len(args):
            out.append((a, args[i + 1], args[i + 2]))
    return out


def _dev_binds(args: Sequence[str]) -> list[tuple[str, str, str]]:
    """The device binds of a plan that the base view does not have (the terminal)."""
    return [b for b in _binds(args, ("--dev-bind",)) if b[2] not in DEVICES]


def _skeleton(args: Sequence[str], drop: set[str]) -> list[str]:
    """The arguments without the binds to ``drop`` and without ``--perms 0755 --dir``
    (parents of mount points, which a child makes itself)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--bind", "--ro-bind", "--dev-bind") and args[i + 2] in drop:
            i += 3
            continue
        if a == "--perms" and i + 2 < len(args) and args[i + 2] == "--dir":
            i += 4
            continue
        out.append(a)
        i += 1
    return out


#: What a command's spec holds beyond its zygote's: its grants, its streams, its limits
#: (and ``tmp_user``, which only names where its grants come from).
_OWN = frozenset({"read_paths", "write_paths", "exec_paths", "bind_sources", "cwd",
                  "keep_fds", "env", "memory_max", "pids_max", "cpu_max", "process_uid",
                  "tmp_user", "umask", "rlimits"})


def _base(spec: SandboxSpec) -> SandboxSpec:
    """What a session's zygote holds of ``spec``: its base view, without the command's
    own (``_OWN``)."""
    return replace(spec, read_paths=(), write_paths=(), exec_paths=(), bind_sources={},
                   cwd=None, keep_fds=(), env={}, memory_max=None, pids_max=None,
                   cpu_max=None, process_uid=None, tmp_user=None, umask=None,
                   rlimits=())


def _key(boot_id: str, spec: SandboxSpec) -> tuple[object, ...]:
    """Which zygote serves ``spec``: its boot and every field ``_base`` keeps (the
    session's account, tree and network mode...), read as they are, rather than a
    ``_base`` copy validated again and its repr (~0.1 ms of each start, cold)."""
    return (boot_id, *(getattr(spec, f.name) for f in fields(spec) if f.name not in _OWN))


def eligible(spec: SandboxSpec) -> str | None:
    """Why ``spec`` cannot run in a zygote (one phrase), or None when it can."""
    if os.environ.get("EXO_ZYGOTE") == "0":  # the kernel's own switch (benchmarks)
        return "turned off (EXO_ZYGOTE=0)"
    if os.geteuid() != 0:
        return "the kernel is not root (no uid to drop to)"
    if spec.account is None or spec.user is not None:
        return "no session account"
    if spec.net.mode != "none":
        return "a network capability (its own network policy)"
    if spec.exec_only is not None or spec.host_etc:
        return "a POSIX-X program"
    return None


def _under_private_dirs(path: Path) -> bool:
    """A path a command's private /tmp or /dev/shm covers (a checkout or venv under
    /tmp: a fresh clone in CI); the zygote keeps the runtime's visible over them."""
    return any(str(path).startswith(d + "/") for d in ("/tmp", "/dev/shm"))


class ZygoteProcess:
    """A command started in a zygote's spare: the same face as ``SandboxedProcess``.

    ``pid``/``init_pid``/``monitor_pid`` are all the command's host pid (its pid
    namespace's init, between the zygote and it, is not the kernel's to signal: killing
    the command ends the init and the namespace); signals go through the command's pidfd,
    so a recycled pid is never hit. Its exit status comes up its spare's socket
    (``conn``), which its init writes before exiting ("X", the raw wait status and the
    CPU time of what it reaped; the socket's end without it, when the init was killed:
    SIGKILL).
    """

    def __init__(self, zygote: Zygote, rid: int, cgroup: _cgroups.CgroupSet | None,
                 name: str) -> None:
        self.zygote = zygote
        self.rid = rid
        self.cgroup = cgroup
        self.name = name
        self.pid = 0
        self.init_pid = 0
        self.pidfd = -1
        self.conn: socket.socket | None = None
        self.returncode: int | None = None
        self.oom_killed = False
        #: The signal that ended the command (its init's raw wait status says, where a
        #: status of 128+N cannot: ``exit 139`` is no crash), and whether it dumped core.
        self.term_signal: int | None = None
        self.core_dumped = False
        self.signal_known = True
        self.stdin = self.stdout = self.stderr = None
        self._raw: int | None = None
        #: (user, system) CPU seconds of the command and all it waited for, as its init
        #: reported them (None: it ended with no report).
        self.cpu_times: tuple[float, float] | None = None
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._cleaned = False

    @property
    def monitor_pid(self) -> int:
        return self.pid

    def _exited(self, raw: int) -> None:
        self._raw = raw
        self._ended.set()
        self.zygote.ended(self)

    def _await_end(self, timeout: float | None) -> bool:
        """Wait (at most ``timeout`` s) for the init's report on ``conn`` and take it. Once
        the command itself has ended (its pidfd says so) the report has ``REPORT_GRACE``
        s to come, after which the command counts as killed: an init that never reports
        (it cannot be reached from the command; a compromised zygote's could) never
        holds a wait, a reclaim or a kill up."""
        if self._ended.is_set():
            return True
        conn = self.conn
        if conn is None:
            return self._ended.wait(timeout)
        poller = select.poll()
        deadline = None if timeout is None else time.monotonic() + timeout
        gone = False  # the command has ended: the report's grace is running
        with contextlib.suppress(ValueError, OSError):  # closed meanwhile: ended
            poller.register(conn, select.POLLIN)
            if self.pidfd >= 0:
                poller.register(self.pidfd, select.POLLIN)
            while not self._ended.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if gone:
                    left = REPORT_GRACE if left is None else min(left, REPORT_GRACE)
                ready = {fd for fd, _ in poller.poll(
                    -1 if left is None else max(0, int(left * 1000)))}
                if conn.fileno() in ready:
                    break
                if not ready and (gone or left is not None):
                    break  # the grace (or the caller's timeout) is over
                if self.pidfd in ready:
                    gone = True
                    poller.unregister(self.pidfd)
        with self._lock:
            if not self._ended.is_set():
                report = _report(conn)
                if report is None and gone and (deadline is None
                                                or time.monotonic() < deadline):
                    report = signal.SIGKILL, None  # ended, and no report within the grace
                if report is not None:
                    self.cpu_times = report[1]
                    self._exited(report[0])
        return self._ended.is_set()

    def poll(self) -> int | None:
        if self._await_end(0):
            self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._await_end(timeout):
            raise subprocess.TimeoutExpired(self.name, timeout or 0)
        self._finish()
        assert self.returncode is not None
        return self.returncode

    def exit_status(self, timeout: float | None = None) -> int:
        """The status as soon as the init reported it (``oom_killed`` set); the cgroup
        and what the command left in it go at ``wait()`` (``SandboxedProcess``'s)."""
        if not self._await_end(timeout):
            raise subprocess.TimeoutExpired(self.name, timeout or 0)
        self._status()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int, group: bool = False) -> None:
        """``sig`` to the command (``group``: to its process group, what it started with
        it, as a terminal's Ctrl-C reaches it; through its pidfd, never a pid reused)."""
        if self.returncode is None and self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, sig, None,
                                         _PIDFD_SIGNAL_PROCESS_GROUP if group else 0)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.returncode is not None:
            self._finish()  # ended: what it left in its cgroup goes with the group
            return
        self.send_signal(signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()
        self.wait(10.0)

    def stats(self) -> dict[str, int]:
        return self.cgroup.stat() if self.cgroup is not None else {}

    def _status(self) -> None:
        with self._lock:
            if self.returncode is not None:
                return
            raw = self._raw if self._raw is not None else signal.SIGKILL
            try:
                rc = os.waitstatus_to_exitcode(raw)
            except (ValueError, OverflowError):  # never from _report: killed, if it were
                rc = -signal.SIGKILL
            returncode = 128 - rc if rc < 0 else rc
            if rc < 0:
                self.term_signal = -rc
                self.core_dumped = os.WIFSIGNALED(raw) and os.WCOREDUMP(raw)
            if self.cgroup is not None:
                self.oom_killed = (returncode == 128 + signal.SIGKILL
                                   and self.cgroup.oom_kills() > 0)
            self.returncode = returncode

    def _finish(self) -> None:
        self._status()
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
            if self.cgroup is not None:
                with contextlib.suppress(Exception):
                    self.cgroup.remove()  # and any process the command left behind
            if self.pidfd >= 0:
                os.close(self.pidfd)
                self.pidfd = -1
            if self.conn is not None:
                self.conn.close()

    def close(self) -> None:
        self.kill()

    def __repr__(self) -> str:
        return f"<ZygoteProcess {self.name} pid={self.pid} returncode={self.returncode}>"


def _report(conn: socket.socket) -> tuple[int, tuple[float, float] | None] | None:
    """The raw wait status an init reported on ``conn`` ("X<status> <user> <system>",
    with the CPU microseconds of what it reaped) and that CPU time in seconds; SIGKILL
    (and no time) when the socket ended without a report (the init was killed) or said
    anything else; None when nothing is there yet."""
    try:
        msg = conn.recv(64, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return signal.SIGKILL, None
    fields = msg[1:].split(b" ")
    ok = msg[:1] == b"X" and len(fields) == 3 and len(fields[0]) < 6 and all(
        f.isdigit() and len(f) < 19 for f in fields)
    raw = int(fields[0]) if ok else -1
    # Only what an ended process's wait status can be: an exit (code << 8) or the signal
    # that killed it (and the core flag); never a stop, a continue or a bit elsewhere.
    exited = raw & 0xFF == 0 and raw <= 0xFF00
    killed = 0 < raw & 0x7F < 0x7F and raw & 0xFF00 == 0
    if raw < 0 or not (exited or killed):
        return signal.SIGKILL, None
    return raw, (int(fields[1]) / 1e6, int(fields[2]) / 1e6)


class _Spare:
    """A prepared spare the zygote handed over: the zygote's end of its socket (the
    request goes down it; the command's status comes up it) and the command-to-be's
    pidfd."""

    __slots__ = ("cgroup", "conn", "limits", "pidfd")

    def __init__(self, conn: socket.socket, pidfd: int) -> None:
        self.conn, self.pidfd = conn, pidfd
        #: The group its command-to-be was put in ahead (``Zygote._pre_enter``), for a
        #: command of these limits.
        self.cgroup: _cgroups.CgroupSet | None = None
        self.limits: tuple[int | None, int | None, float | None] | None = None

    def discard(self) -> None:
        """Give it up: the command-to-be killed, its init and namespace end with it (and
        the group it was put in ahead, once it is empty)."""
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        os.close(self.pidfd)
        self.conn.close()
        if self.cgroup is not None:  # once the killed process has left it: off this thread
            _remove_aside(self.cgroup)
            self.cgroup = None


#: Seconds after a take before its replacement spare is asked for (``Zygote._replenish``).
SETTLE = 0.01


class Zygote:
    """One running zygote and the kernel's end of its socket."""

    def __init__(self, base: SandboxSpec, plan: _bwrap.MountPlan, boot_id: str) -> None:
        # The mechanisms every command needs, checked once for the session's commands
        # (they do not go away while the kernel runs; each check looked bwrap up on PATH).
        self.abi = check_requirements("none", limits=[], allow_missing=frozenset())
        self.base = base
        self.plan = plan
        # What every command's plan is compared with (spawn): the base view's bind
        # destinations and its arguments without them, computed once.
        self.dests = {d for _, _, d in _binds(plan.args)}
        self.skeleton = _skeleton(plan.args, set())
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pending: dict[int, ZygoteProcess] = {}  # started, not ended (eviction)
        self.lock = threading.Lock()
        self.supplied = threading.Condition(self.lock)
        self.spares: collections.deque[_Spare] = collections.deque()
        self.coming = _SPARES  # owed by the zygote: at start, and one per "N" sent
        self.errors: collections.deque[str] = collections.deque()  # "E": spares not coming
        self.starved = False  # a start waited for a spare in vain, and none came since
        self.asking = False  # a thread will ask for spares at ``ask_after`` (_replenish)
        self.ask_after = 0.0
        #: The limits of the last command started here: a spare's group is made for them.
        self.limits: tuple[int | None, int | None, float | None] = (None, None, None)
        self.dead = False
        self.last_used = time.monotonic()
        self.cgroups = _cgroups.CgroupPool(boot_id, "zygote")  # the commands', made ahead
        self.starting = 0  # commands between their choice of this zygote and start (_lock)
        to_close = [theirs.fileno()]
        args = [_bwrap.require_bwrap(), *_bwrap.namespace_args(base),
                "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_NET_ADMIN", *plan.args]
        for dest, content in plan.data_files:
            fd = os.memfd_create("exo-etc")
            os.write(fd, content.encode())
            os.lseek(fd, 0, os.SEEK_SET)
            to_close.append(fd)
            args += ["--perms", "0644", "--ro-bind-data", str(fd), dest]
        python = os.path.realpath(sys.executable)
        main = f"{_bwrap.stage2_inside().rsplit('/', 1)[0]}/{_MAIN.name}"
        # The runtime's paths a command's private /tmp or /dev/shm would hide: the zygote
        # keeps them visible there (exo-stage2's private_tmpfs).
        keep = [str(p) for p in _bwrap.runtime_paths() if _under_private_dirs(p)
                and any(d == str(p) for _, _, d in _binds(plan.args))]
        args += ["--chdir", "/", "--", python, "-I", "-S", main, str(theirs.fileno()),
                 json.dumps(keep)]
        try:
            self.popen = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, close_fds=True, pass_fds=to_close, cwd="/",
                env={"PATH": "/usr/bin:/bin"})
        finally:
            theirs.close()
            for fd in to_close[1:]:
                os.close(fd)
        self.sock.settimeout(10.0)
        try:
            ready = self.sock.recv(64)
        except OSError as exc:
            self.stop()
            raise SandboxError(f"the zygote did not start: {exc}") from None
        if ready != b"READY":
            self.stop()
            raise SandboxError("the zygote did not start (see the kernel log)")
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._read, name="exo-zygote", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        """Spares from the zygote. It is a sandbox of its own: every message is checked
        (size, form, descriptors) and anything else ends it."""
        try:
            while True:
                msg, fds = _recv_fds(self.sock, 1024, 2, block=True)
                if not msg:
                    for fd in fds:
                        os.close(fd)
                    break
                if not self._supplied(msg, fds):
                    break
        except OSError:
            pass
        self._died()

    def _supplied(self, msg: bytes, fds: list[int]) -> bool:
        """Take one message: a spare ("R", its socket and the command-to-be's pidfd), or
        why a wanted one is not coming ("E ..."). False: not a message the zygote sends
        (one it was not asked for either: each answers one "N", so what the kernel holds
        stays bounded whatever the zygote does)."""
        with self.lock:
            asked = self.coming > 0
        if not asked:
            for fd in fds:
                os.close(fd)
            return False
        if msg.startswith(b"E ") and not fds:
            with self.lock:
                self.coming -= 1
                self.errors.append(msg[2:300].decode("utf-8", "replace"))
                self.supplied.notify()
            return True
        pid = _pidfd_pid(fds[1]) if msg == b"R" and len(fds) == 2 else -1  # -1: no pidfd
        conn = _seqpacket(fds[0]) if pid >= 0 else None
        if conn is None:
            for fd in fds:
                os.close(fd)
            return False
        spare = _Spare(conn, fds[1])
        if pid > 0:
            self._pre_enter(spare, pid)
        with self.lock:
            self.coming -= 1
            if pid != 0:  # (0: it ended already; a take asks for another)
                self.spares.append(spare)
                self.errors.clear()
                self.starved = False
            self.supplied.notify()
        if pid == 0:
            spare.discard()
        return True

    def _pre_enter(self, spare: _Spare, pid: int) -> None:
        """Put a new spare's command-to-be in a group of the limits the last command had
        (the session's, for the powerbox), as it arrives: its start then skips that move,
        ~0.25 ms of the kernel's thread (five v1 hierarchies) while it starts a
        pipeline's next stage. Failing, the start moves it as before."""
        limits = self.limits
        try:
            group = self.cgroups.take(*limits)
        except Exception:  # (on the thread that reads every spare: it must go on)
            return
        try:
            if _pidfd_pid(spare.pidfd) != pid:  # ended since: its pid may be another's
                raise SandboxError("the spare ended")
            group.enter(pid)
        except Exception:
            _remove_aside(group)
            return
        spare.cgroup, spare.limits = group, limits

    def _ask(self) -> None:
        """Ask for spares until the ones here and coming make ``_SPARES`` (caller locks)."""
        while not self.dead and len(self.spares) + self.coming < _SPARES:
            try:
                self.sock.send(b"N", socket.MSG_DONTWAIT)
            except OSError:
                return  # a zygote that reads nothing: a start times out, saying so
            self.coming += 1

    def _replenish(self) -> None:
        """After a take: the replacement spares are asked for ``SETTLE`` s after the last
        take, or now if none is left (caller locks). Preparing one copies the zygote's
        mount namespace under Linux's one global mount lock and forks: asked at once, it
        fell into the starts of a pipeline's next stages (their ``open_tree`` waited on
        that lock, ~1 ms measured) and into their programs' run. Settled 10 ms, a
        two-stage pipeline took 1.1-1.7 ms less from Enter to output (8.1 -> 6.5 ms run
        20 ms apart, 8.2 -> 7.1 ms 100 ms apart: in-process blocks of 10, 60 runs each);
        30 ms gained as much when lines came 50 ms or more apart, nothing when the
        replacements fell into the next line, 20 ms on; 5 ms as 10."""
        if not self.spares:
            self._ask()
            return
        self.ask_after = time.monotonic() + SETTLE
        if not self.asking:
            from exo import _threadcache

            self.asking = True
            try:
                _threadcache.start(self._ask_settled, "exo-zygote-ask")
            except RuntimeError:  # no thread to wait on: asked now, as before
                self.asking = False
                self._ask()

    def _ask_settled(self) -> None:
        while True:
            with self.lock:
                left = self.ask_after - time.monotonic()
                if left <= 0 or self.dead:
                    self.asking = False
                    self._ask()
                    return
            time.sleep(left)

    def take(self, timeout: float) -> tuple[_Spare, int]:
        """A live prepared spare and its command-to-be's host pid (waiting at most
        ``timeout`` s for one), the next one asked for; SandboxError saying why not."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                while not self.spares:
                    if self.dead:
                        raise SandboxError("sandbox start failed: the session's zygote "
                                           "has ended")
                    if self.errors:
                        why = self.errors.popleft()
                        self._ask()
                        raise SandboxError(f"sandbox start failed: zygote: {why}")
                    self._ask()
                    left = deadline - time.monotonic()
                    # After one start waited in vain, the next fail at once until a spare
                    # comes (a pipeline's stages each waited the whole timeout).
                    if self.starved or left <= 0 or not self.supplied.wait(left):
                        self.starved = True
                        raise SandboxError("sandbox start failed: zygote: no spare came")
                spare = self.spares.popleft()
                self._replenish()
            pid = _pidfd_pid(spare.pidfd)
            if pid > 0:
                return spare, pid
            spare.discard()  # ended while it waited: the next one

    def ended(self, proc: ZygoteProcess) -> None:
        with self.lock:
            self.pending.pop(proc.rid, None)

    def _died(self) -> None:
        """The zygote ended (or said what it never says): no more spares. Its commands
        end with its pid namespace, each reported on its own socket."""
        with self.lock:
            self.dead = True
            left, self.spares = list(self.spares), collections.deque()
            self.supplied.notify_all()
        for spare in left:
            spare.discard()
        with contextlib.suppress(OSError):
            self.sock.close()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.join(5.0)
        else:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.cgroups.close()

    def start(self, spec: SandboxSpec, argv: Sequence[str], plan: _bwrap.MountPlan,
              mounts: list[tuple[str, str, bool, bool]], *, name: str,
              stdio: tuple[int, int, int], timeout: float) -> ZygoteProcess:
        from .launcher import _stage2_config, landlock_rules

        landlock = _landlock.stage2_records(self.abi, landlock_rules(plan), net=((), ()),
                                            scoped=True)
        env = dict(spec.env)
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        status_fd = max([2, *spec.keep_fds]) + 1
        config_fd = status_fd + 1
        assert spec.account is not None
        config = _stage2_config(status_fd, spec.keep_fds, landlock, argv, env,
                                spec.host_ids(), await_fd=config_fd + 1, umask=spec.umask,
                                rlimits=spec.rlimits)
        rid = next(_counter)
        limits = self.limits = (spec.memory_max, spec.pids_max, spec.cpu_max)
        proc = ZygoteProcess(self, rid, None, name)
        ahead: _cgroups.CgroupSet | None = None  # the spare's own group, not this one's
        entered = False  # the spare is in the command's group already
        mine: list[int] = []
        go_w = status_r = -1
        spare: _Spare | None = None
        try:
            go_r, go_w = os.pipe2(os.O_CLOEXEC)
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            mine += [go_r, status_w]
            cfg = os.memfd_create("exo-stage2")
            mine.append(cfg)
            os.write(cfg, config)
            bpf = os.memfd_create("exo-seccomp")
            mine.append(bpf)
            os.write(bpf, _seccomp.compiled_filter("none", errno.EPERM, spec.fork))
            for _, source, _, _ in mounts:
                mine.append(_open_tree(source))
            tty = bool(mounts) and mounts[-1][0] == TTY
            records = _records(mounts, spec.keep_fds, str(spec.cwd or "/"), tty,
                               status_fd=status_fd, config_fd=config_fd,
                               await_fd=config_fd + 1)
            # The request goes straight to a spare (a second one if the first ended
            # meanwhile); the command into its cgroup, then "go": stage 2 may exec it.
            for attempt in (1, 2):
                spare, pid = self.take(timeout)
                try:
                    socket.send_fds(spare.conn, [records],
                                    [*stdio, *mine[:4], *spec.keep_fds, *mine[4:]],
                                    socket.MSG_DONTWAIT)
                    break
                except OSError as exc:
                    spare.discard()
                    spare = None
                    if attempt == 2:
                        raise SandboxError(f"sandbox start failed: zygote: its spare "
                                           f"ended ({exc.strerror})") from None
            assert spare is not None
            # Its group: the one it was put in ahead, for a command of these limits; else
            # one taken now (and the other removed once empty, off this thread).
            ahead, spare.cgroup = spare.cgroup, None
            if ahead is not None and spare.limits == limits:
                cgroup, ahead, entered = ahead, None, True
            else:
                cgroup = self.cgroups.take(*limits)
            proc.cgroup = cgroup
            proc.pidfd, proc.conn, spare = spare.pidfd, spare.conn, None
            proc.pid = proc.init_pid = pid
            with self.lock:
                self.pending[rid] = proc
            for fd in mine:  # the spare holds its own copies now
                os.close(fd)
            mine = []
            try:
                if not entered:
                    cgroup.enter(pid)
                os.write(go_w, b"g")
            except (SandboxError, OSError):
                # Gone already (a request it refused: it said why on the status pipe,
                # and that is the error to give), else the cgroup's or the pipe's.
                if _has_ended(proc.pidfd):
                    _confirm(proc, status_r, timeout)
                raise
            os.close(go_w)
            go_w = -1
            if ahead is not None:  # left for the command's group: empty, removed aside
                _remove_aside(ahead)
                ahead = None
            pending = _deferred.get()
            if pending is None:
                _confirm(proc, status_r, timeout)
            else:
                pending.append(functools.partial(_confirm_deferred, proc, status_r, timeout))
                status_r = -1  # the confirmation's now
            self.last_used = time.monotonic()
            return proc
        except BaseException:
            if spare is not None:
                spare.discard()
            proc.send_signal(signal.SIGKILL)
            for group in (proc.cgroup, ahead):
                if group is not None:
                    with contextlib.suppress(Exception):
                        group.kill_all()
            if ahead is not None:
                _remove_quietly(ahead)
            if proc.conn is not None:  # started: its init's report, or the grace
                with contextlib.suppress(Exception):
                    proc._await_end(5.0)
            if not proc._ended.is_set():
                proc._exited(signal.SIGKILL)  # (and out of pending: Zygote.ended)
            proc._finish()
            raise
        finally:
            for fd in (*mine, go_w, status_r):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)


def _remove_quietly(group: _cgroups.CgroupSet) -> None:
    with contextlib.suppress(SandboxError, OSError):
        group.remove()


def _remove_aside(group: _cgroups.CgroupSet) -> None:
    """``group`` removed on a thread of its own (its last process may still be ending:
    the removal then waits for it, up to seconds, which no start should)."""
    from exo import _threadcache

    try:
        _threadcache.start(functools.partial(_remove_quietly, group), "exo-cgroup-remove")
    except RuntimeError:
        _remove_quietly(group)


def _records(mounts: list[tuple[str, str, bool, bool]], keep: Sequence[int], cwd: str,
             tty: bool, *, status_fd: int, config_fd: int, await_fd: int) -> bytes:
    """The request ``exo-stage2 --spare`` reads (its header comment), for descriptors sent
    in this order: stdin, stdout, stderr, "go"'s read end, the status pipe, stage 2's
    config, the seccomp program, each kept descriptor, each grant's detached mount (the
    terminal's node last, on a terminal)."""
    fixed = 7
    records = ["status", "4", "seccomp", "6"]
    mounted = list(enumerate(mounts, fixed + len(keep)))
    if tty:  # the terminal's node: /dev/tty in a /dev of the command's own
        (terminal, _), mounted = mounted[-1], mounted[:-1]
        records += ["dev", str(terminal)]
    for index, (dest, _, ro, is_dir) in mounted:
        records += ["mount", dest, str(int(ro)), str(int(is_dir)), str(index)]
    records += ["cwd", cwd]
    targets = {0: 0, 1: 1, 2: 2, status_fd: 4, config_fd: 5, await_fd: 3}
    for i, number in enumerate(keep):
        targets[number] = fixed + i
    for number, index in targets.items():
        records += ["fd", str(number), str(index)]
    records += ["config", str(config_fd)]
    from .launcher import encode_records

    return encode_records(records, "sandbox start failed: a NUL in a path")


def _confirm(proc: ZygoteProcess, status_r: int, timeout: float) -> None:
    """Wait for the command's exec (stage 2's "R" and EOF on ``status_r``); raise what
    went wrong, as the launcher does."""
    from .launcher import _read_all

    status = _read_all(status_r, time.monotonic() + timeout, "stage 2")
    if status != b"R":
        report = status.removeprefix(b"R")
        proc.wait(timeout)
        if report.startswith(b"X"):
            err, _, message = report[1:].decode("utf-8", "replace").partition(" ")
            raise ExecFailed(message, int(err))
        detail = report.removeprefix(b"E").decode("utf-8", "replace") or \
            "the command ended before stage 2"
        raise SandboxError(f"sandbox start failed: {detail}")


def _confirm_deferred(proc: ZygoteProcess, status_r: int, timeout: float) -> None:
    """A deferred confirmation (``deferring``): it owns ``status_r``."""
    try:
        _confirm(proc, status_r, timeout)
    finally:
        os.close(status_r)


def spawn(spec: SandboxSpec, argv: Sequence[str], *, name: str, boot_id: str,
          stdio: tuple[int, int, int], timeout: float = 10.0,
          log: Callable[[str], None] | None = None,
          start_on: Callable[[Callable[[], Zygote]], Zygote] | None = None,
          ) -> ZygoteProcess | None:
    """Start ``argv`` as ``spec`` says through the session's zygote (started on first
    use), or return None when this command needs the full launcher (module docstring);
    ``log`` hears why. ``start_on`` runs the zygote's start on a long-lived thread
    (bubblewrap's ``--die-with-parent`` follows the thread that forked it); a command is
    only a message to the zygote, sent from the caller's thread."""
    from .launcher import _terminal

    if not isinstance(spec, SandboxSpec) or not argv:
        return None
    why = eligible(spec)
    if why is not None:
        if log is not None:
            log(f"{name}: full sandbox start, not the zygote: {why}")
        return None
    terminal = _terminal(*stdio)
    # Validates every grant, as the launcher; a terminal's node is shown at /dev/tty.
    plan = _bwrap.plan_mounts(spec, tty=terminal or False)
    tty = _dev_binds(plan.args)
    if len(tty) > 1 or (tty and tty[0][2] != TTY):
        return None
    key = _key(boot_id, spec)
    with _lock:
        zygote = _zygotes.get(key)
        dead = zygote if zygote is not None and zygote.dead else None
        if dead is not None:
            del _zygotes[key]
            zygote = None
        if zygote is not None:
            zygote.starting += 1  # not evicted before this command is pending in it
    if dead is not None:
        dead.stop()  # reaps its bubblewrap; a new one starts below
    marked = zygote  # the zygote whose `starting` this call counts in, if any
    try:
        if zygote is not None:
            base, base_dests, base_skeleton = zygote.plan, zygote.dests, zygote.skeleton
        else:
            base_spec = _base(spec)
            base = _bwrap.plan_mounts(base_spec, tty=False)
            base_dests = {d for _, _, d in _binds(base.args)}
            base_skeleton = _skeleton(base.args, set())
        grants = [(o, s, d) for o, s, d in _binds(plan.args) if d not in base_dests]
        dests = {d for _, _, d in grants} | {d for _, _, d in tty}
        if (_skeleton(plan.args, dests) != base_skeleton
                or plan.data_files != base.data_files):
            if log is not None:
                log(f"{name}: full sandbox start, not the zygote: its mount view differs "
                    "from the session's beyond its grants")
            return None
        if zygote is None:
            base_plan = base
            made = (start_on or (lambda fn: fn()))(lambda: Zygote(base_spec, base_plan, boot_id))
            with _lock:
                zygote = _zygotes.get(key)
                if boot_id in _stopped:
                    zygote = None
                elif zygote is None or zygote.dead:  # else a concurrent first command won
                    zygote = _zygotes[key] = made
                if zygote is not None:
                    marked = zygote
                    zygote.starting += 1  # before _evict: never the one this command needs
                    _evict()
            if zygote is not made:
                made.stop()
            if zygote is None:
                return None  # the kernel is shutting down: the launcher says so its own way
        return _start_in(zygote, spec, argv, plan, grants, tty, name=name,
                         stdio=stdio, timeout=timeout)
    finally:
        if marked is not None:
            with _lock:
                marked.starting -= 1


def _start_in(zygote: Zygote, spec: SandboxSpec, argv: Sequence[str],
              plan: _bwrap.MountPlan, grants: list[tuple[str, str, str]],
              tty: list[tuple[str, str, str]], *, name: str,
              stdio: tuple[int, int, int], timeout: float) -> ZygoteProcess:
    """The command's request to ``zygote``, its grants as detached mounts."""
    # Whether each mount point is a directory, asked of the granted host path, never of an
    # export (a stat there is a request to the kernel's own FUSE server: check_source).
    def is_dir(dest: str, source: str) -> bool:
        if Path(dest) not in spec.bind_sources:
            return os.path.isdir(source)
        # a granted Exo path's host path (as plan_mounts spells it)
        return (spec.host_of(dest) if spec.tree is not None else Path(dest)).is_dir()

    mounts = [(d, s, o == "--ro-bind", is_dir(d, s)) for o, s, d in grants]
    mounts += [(d, s, False, False) for _, s, d in tty]  # last: the child makes /dev its own
    return zygote.start(spec, argv, plan, mounts, name=name, stdio=stdio, timeout=timeout)


class _Spawner(Protocol):
    """What :func:`warm` needs of the kernel's process manager."""

    root: Path
    boot_id: str

    def log(self, text: str) -> None: ...


def warm(processes: _Spawner, account: tuple[str, int]) -> None:
    """Start a session's zygote in the background at login, so that its first host
    program does not wait for it (a failure is logged; the first command then tries
    again, or takes the launcher)."""
    if os.geteuid() != 0:
        return
    spawner = getattr(processes, "_spawner", None)
    start_on = getattr(spawner, "call", None)
    tree = Path(os.path.realpath(processes.root))
    spec = SandboxSpec(net=NetPolicy.none(), tree=tree, account=account)
    if eligible(spec) is not None:
        return

    def start() -> None:
        # The seccomp filter every command here loads, compiled now: the binding's import
        # looks libseccomp up with a subprocess (~35 ms, on the session's first command
        # until this), and at a descriptor shortage then said "Unable to find libseccomp".
        with contextlib.suppress(Exception):
            _seccomp.compiled_filter("none", errno.EPERM, True)
        try:
            base_spec = _base(spec)
            key = _key(processes.boot_id, spec)
            with _lock:
                if (key in _zygotes and not _zygotes[key].dead) or key[0] in _stopped:
                    return
            base = _bwrap.plan_mounts(base_spec, tty=False)
            boot = processes.boot_id
            made = (start_on or (lambda fn: fn()))(lambda: Zygote(base_spec, base, boot))
            with _lock:
                if (key not in _zygotes or _zygotes[key].dead) and key[0] not in _stopped:
                    _zygotes[key] = made
                    _evict()
                    return
            made.stop()  # the kernel shut down meanwhile, or a first command won
        except Exception as exc:  # logged, never raised into a login
            processes.log(f"zygote for {account[0]}: not started at login: {exc}")

    threading.Thread(target=start, name="exo-zygote-warm", daemon=True).start()


def _evict() -> None:
    """Stop the least recently used idle zygotes beyond ``MAX_ZYGOTES`` (caller locks)."""
    idle = sorted(((z.last_used, k) for k, z in _zygotes.items()
                   if not z.pending and not z.starting), key=lambda pair: pair[0])
    while len(_zygotes) > MAX_ZYGOTES and idle:
        _, k = idle.pop(0)
        _zygotes.pop(k).stop()


def running() -> int:
    """How many zygotes are up (tests, ``/proc``)."""
    with _lock:
        return sum(1 for z in _zygotes.values() if not z.dead)


def stop_all(boot_id: str | None = None) -> None:
    """Stop every zygote (of one boot): at shutdown, after its commands were reaped."""
    with _lock:
        if boot_id is not None:
            _stopped.add(boot_id)
        keys = [k for k in _zygotes if boot_id is None or k[0] == boot_id]
        stopping = [_zygotes.pop(k) for k in keys]
    for z in stopping:
        z.stop()
