"""The process table: spawning sandboxed Exo processes and reclaiming them.

Each process is a real Linux process started through ``exo.sandbox`` with a
sandbox built from its capabilities, a capability space in the kernel, and a
bootstrap channel (``exo.kernel.bootstrap``) served by ``exo.kernel.syscalls``. When
the process exits, everything it held is reclaimed: its capability space, its
channel, its cgroup and its shared-memory blocks.

The manager is given its collaborators (the capability manager, the open-file table, the
in-flight tokens, the kernel log) by the "Processes and sandbox" subsystem, and how to
serve a new process's syscalls by the "Syscall server" subsystem (``serve``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import queue
import signal
import stat
import sys
import threading
import time
from pathlib import Path

from exo._printable import printable
from exo.abi import PID_ENV
from exo.kernel.bootstrap import BootstrapChannel
from exo.kernel.caps import Rights
from exo.kernel.caps.errors import QuotaExceeded
from exo.kernel.manifest import Grant, Limits, ManifestError, PosixX
from exo.kernel.quota import MAX_PROCESSES, SPAWN_PIDS
from exo.kernel.sessions import ProcessUids
from exo.kernel.tree import instance_user
from exo.sandbox.errors import SandboxError
from exo.sandbox.namespace import RUNTIME_SRC, instance_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from exo.kernel.caps import CapabilityManager
    from exo.kernel.files import OpenFileTable
    from exo.kernel.inflight import InFlight

KERNEL_PID = 1
_REAPED_KEPT = 256  # reaped processes whose status a late wait(pid) can still get
#: Seconds a reclaim waits after publishing the exit, so that its waiters run first
#: (ProcessManager._reclaim).
RECLAIM_DELAY = 0.003
_CLK_TCK = os.sysconf("SC_CLK_TCK")
CLOSED = -1  # an inbox entry's sender when the receiver has exited (see close_inbox)


#: Sent to a dead process's syscall thread to cut its ring wait short (see _wake).
_WAKE_SIGNAL = signal.SIGRTMIN + 7


def _no_op(signum: int, frame: object) -> None:
    """The wake-up signal's handler: it only has to exist (SIG_IGN would not interrupt a
    futex wait)."""


def _install_wake() -> bool:
    """Install ``_WAKE_SIGNAL``'s handler, once, from the main thread (where Python lets
    one be installed); False when it cannot be (then waits end on the ring's tick)."""
    try:
        current = signal.getsignal(_WAKE_SIGNAL)
        if current is _no_op:
            return True
        if current not in (signal.SIG_DFL, None):
            return False  # someone else's: left alone
        signal.signal(_WAKE_SIGNAL, _no_op)
    except (ValueError, OSError):  # not the main thread
        return False
    return True


class NoSuchObject(ManifestError, SandboxError):
    """A capability names a process or a device that does not exist. Refused before
    anything starts, as any capability that cannot be used as given (status 2); a
    ``SandboxError`` too, so every caller that reports a failed start reports this one."""


class ExoProcess:
    """One Exo process as the kernel sees it, and what it is allowed to make the kernel
    spend (``limits``: cgroup limits and kernel quotas, ``exo.kernel.quota``)."""

    __slots__ = ("account", "argv", "channel", "children", "cpu_s", "cpu_times", "cwd",
                 "end_reason", "ended", "exited", "host_pid", "inbox", "limits", "on_exit",
                 "parent", "pid", "reclaimed", "report_fd", "sandbox", "server", "started",
                 "status", "uid")

    def __init__(self, pid: int, argv: list[str], parent: int,
                 limits: Limits | None = None) -> None:
        self.pid = pid
        self.argv = argv
        self.parent = parent
        self.limits = limits if limits is not None else Limits()
        self.started = time.monotonic()
        self.host_pid = 0
        #: (user, host uid) it runs as on the host (a session's; None: the kernel's uid).
        self.account: tuple[str, int] | None = None
        #: The host uid it runs as, its own (ProcessUids; None: the account's, or the kernel's).
        self.uid: int | None = None
        self.cwd = "/"  # the Exo path it started in
        self.status: int | None = None
        self.ended: float | None = None  # monotonic time of its exit
        #: CPU seconds it used, as last read (cpu_seconds); final once it has exited.
        self.cpu_s: float | None = None
        #: (user, system) CPU seconds of all it ran, from its cgroup once reclaimed (None:
        #: not accounted, or not yet).
        self.cpu_times: tuple[float, float] | None = None
        #: Why it ended, when the kernel knows more than the status says
        #: ("memory limit 64M reached").
        self.end_reason: str | None = None
        #: A copy of the stderr it was given, for that line (``spawn(report_end=True)``).
        self.report_fd = -1
        self.channel: BootstrapChannel | None = None
        self.server: threading.Thread | None = None
        # Capabilities sent to this process and not yet received: (sender, in-flight cap).
        # Bounded, so a sender cannot make the kernel hold an unbounded queue for it.
        self.inbox: queue.Queue[tuple[int, Any]] = queue.Queue(
            maxsize=max(1, self.limits.quotas.inbox))
        self.children: set[int] = set()  # children being spawned (quota ``children``)
        #: Set once its exit status is known (``status``); ``reclaimed``: once what it
        #: held (cgroup, exports, capability space, syscall thread) is gone too.
        self.exited = threading.Event()
        self.reclaimed = threading.Event()
        self.sandbox: Any = None
        self.on_exit: list[Callable[[ExoProcess], None]] = []

    def deliver(self, sender: int, cap: Any) -> None:
        """Queue an in-flight capability for ``recv_capability``; QuotaExceeded when full."""
        limit = self.limits.quotas.inbox
        try:
            if limit == 0:
                raise queue.Full
            self.inbox.put_nowait((sender, cap))
        except queue.Full:
            raise QuotaExceeded("inbox", limit,
                                f"process {self.pid} has {self.inbox.qsize()} capabilities "
                                "waiting to be received") from None

    def drain_inbox(self) -> list[Any]:
        """The capabilities still waiting (the process exited: they go nowhere)."""
        caps: list[Any] = []
        while True:
            try:
                sender, cap = self.inbox.get_nowait()
            except queue.Empty:
                return caps
            if sender != CLOSED:
                caps.append(cap)

    def close_inbox(self) -> None:
        """Wake a ``recv_capability`` blocked on the inbox of this exited process."""
        with contextlib.suppress(queue.Full):
            self.inbox.put_nowait((CLOSED, None))

    @property
    def state(self) -> str:
        """``running``, ``stopped`` (SIGSTOP, SIGTSTP, a tracer: the host's own record of
        the target in ``/proc/PID/stat``), ``exited`` or ``killed(N)``."""
        if self.status is None:
            return "stopped" if _host_state(self.host_pid) in ("T", "t") else "running"
        return "exited" if self.status >= 0 else f"killed({-self.status})"

    def end_signal(self) -> tuple[int, bool] | None:
        """(the signal that ended it, whether it dumped core), once it ended by one; None
        while it runs, when it exited, or when its sandbox cannot tell (``signal_known``)."""
        if self.status is None:
            return None
        sig = getattr(self.sandbox, "term_signal", None)
        return None if sig is None else (sig, bool(getattr(self.sandbox, "core_dumped", 0)))

    def signal_known(self) -> bool:
        """Whether its sandbox tells a signal from an exit status of 128+N (a zygote's
        spare does; bubblewrap reports both alike)."""
        return bool(getattr(self.sandbox, "signal_known", False))

    def elapsed(self, now: float) -> float:
        """Seconds since it started, stopping at its exit."""
        return (self.ended if self.ended is not None else now) - self.started

    def cpu_seconds(self) -> float | None:
        """CPU seconds it used, and the children it waited for (the host's
        ``/proc/PID/stat``, as ps's TIME), stopping at its exit (then its cgroup's
        account, where the host keeps one: what it started, all of it); None when
        never read."""
        fields = host_stat(self.host_pid) if self.status is None else []
        if len(fields) > 14:  # utime, stime, cutime, cstime
            self.cpu_s = sum(map(int, fields[11:15])) / _CLK_TCK
        return self.cpu_s

    def wait(self, timeout: float | None = None) -> int | None:
        self.exited.wait(timeout)
        return self.status


class _SpawnerThread:
    """Runs every sandbox spawn on one long-lived thread.

    A sandbox dies with the *thread* that started it (PR_SET_PDEATHSIG is per thread),
    and syscall or control-socket threads come and go. (A one-worker
    ThreadPoolExecutor would do, but importing concurrent.futures costs the boot ~10 ms.)
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], list[Any], threading.Event] | None]
        self._jobs = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="exo-spawner",
                                                daemon=True)
                self._thread.start()
        box: list[Any] = []
        done = threading.Event()
        self._jobs.put((fn, box, done))
        done.wait()
        ok, value = box
        if not ok:
            raise value
        return value

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, box, done = job
            try:
                box += [True, fn()]
            except BaseException as exc:  # handed to the caller's thread
                box += [False, exc]
            done.set()

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread.join()
                self._thread = None


class ProcessManager:
    def __init__(self, caps: CapabilityManager, files: OpenFileTable, in_flight: InFlight, *,
                 root: Path, boot_id: str, log: Callable[[str], None],
                 started: float) -> None:
        self.caps = caps
        self.files = files
        self.in_flight = in_flight
        self.root = root
        self._root_real: tuple[Path, Path] | None = None  # (root, its realpath): _real_root
        self.boot_id = boot_id
        self.log = log
        self.started = started  # the kernel's monotonic start: pid 1's elapsed time
        # Starts a thread serving a new process's bootstrap channel; set by the syscall
        # server's boot step (exo.kernel.subsystems.server), which comes after this one.
        self.serve: Callable[[ExoProcess], threading.Thread] | None = None
        self._lock = threading.Lock()
        self._next_pid = KERNEL_PID + 1
        self.uids = ProcessUids()  # each account process's own host uid
        self._table: dict[int, ExoProcess] = {}
        # Processes the kernel started, reaped: gone from the table (and ps) at once, kept
        # here (the newest _REAPED_KEPT) only so a late ``wait(pid)`` still gets the status.
        self._reaped: dict[int, ExoProcess] = {}
        self._reclaiming: set[ExoProcess] = set()  # exited, what they held still going
        self._reapers: list[threading.Thread] = []
        self.spawned = 0
        self.reclaimed = 0
        self._spawner = _SpawnerThread()
        self._wake = _install_wake()

    # ------------------------------------------------------------------ spawn
    def spawn(
        self,
        argv: Sequence[str],
        grants: Sequence[Grant],
        *,
        stdio: tuple[int, int, int] = (0, 1, 2),
        parent: int = KERNEL_PID,
        limits: Limits | None = None,
        env: dict[str, str] | None = None,
        derive: Callable[[int], None] | None = None,
        extra_fds: tuple[int, ...] = (),
        cwd: str | None = None,
        report_end: bool = False,
        posix_x: PosixX | None = None,
        account: tuple[str, int] | None = None,
        passthrough: bool = False,
        syscalls: bool = True,
        umask: int | None = None,
        rlimits: tuple[tuple[int, int, int], ...] = (),
    ) -> ExoProcess:
        """Start ``argv`` holding exactly ``grants`` (plus what ``derive`` installs), in the
        working directory ``cwd``, an Exo path the process must be able to see. Without
        one, a process started by another starts where its parent started when it can see
        that directory, else (and for the kernel's own spawns) in ``/``. ``report_end``:
        when it ends in a way its status does not say (killed at its memory limit), the
        kernel writes one line saying so to the stderr it was given (a shell's "Killed").
        ``posix_x``: an unmodified Linux program's needs (``[posix_x]`` of its manifest:
        host /etc files, fork and exec policy, passthrough exports, its own uid).
        ``passthrough``: export its read-only ``storage://`` grants in FUSE passthrough
        mode (a writable one stays served, so its writes keep the disk reserve; as a
        ``[posix_x]`` manifest may ask). ``account``: (user, unprivileged host uid) to
        run as (a login session's, ``exo.kernel.sessions``); a process spawned by another
        runs as its parent's. ``syscalls``: it gets a bootstrap channel and a syscall
        thread to make Exo syscalls (``exo_std``); without (the powerbox's host programs,
        which do not speak the Exo ABI), it holds its capabilities as its view of files
        only, and its start costs the kernel ~1.5 ms less CPU (a channel's rings and
        segments, a thread, its join at exit). ``umask``: its file mode mask (a shell's
        ``umask``; else the kernel's own, 022). ``rlimits``: (resource, soft, hard) limits
        it starts with, -1 unlimited (a shell's ``ulimit``; none above the kernel's own).

        A process spawned by another (``parent`` not the kernel) gets at most its parent's
        limits and quotas (asking for more gets the parent's), counts against the parent's
        ``children`` quota, and its cgroup is nested in the parent's so the parent's memory,
        pids and CPU limits bind both (docs/sandbox.md, "Limits of spawned processes").
        """
        from dataclasses import replace  # the spawn path: SandboxSpec is a dataclass

        from exo.kernel import reaper
        from exo.sandbox import spawn as sandbox_spawn
        from exo.sandbox.zygote import preferred as zygote_preferred
        from exo.sandbox.zygote import spawn as zygote_spawn

        if not argv:
            raise ValueError("empty command")
        serve = self.serve
        if serve is None:
            raise RuntimeError("the syscall server is not running")
        limits = limits or Limits()
        owner = None if parent == KERNEL_PID else self.get(parent)
        self._check_objects(grants)

        def refused(quota: str, limit: int, detail: str) -> QuotaExceeded:
            """The error, audited as a denial (rate-limited per process) of the parent."""
            exc = QuotaExceeded(quota, limit, detail)
            self.caps.audit.record("deny", pid=parent, reason=f"spawn: {exc}")
            return exc

        if owner is not None:
            limits = limits.within(owner.limits)
            room = owner.sandbox.cgroup.pids_room() if owner.sandbox.cgroup else None
            if room is not None and room < SPAWN_PIDS:
                raise refused("pids", owner.limits.pids or 0,
                              f"the cgroup of process {parent} and its children has room "
                              f"for {max(room, 0)} more tasks; a process needs {SPAWN_PIDS}")
        with self._lock:
            live = sum(1 for p in self._table.values() if p.status is None)
            if live >= MAX_PROCESSES:
                raise refused("processes", MAX_PROCESSES, f"the kernel runs {live} processes")
            if owner is not None:
                if owner.status is not None:
                    raise LookupError(f"process {parent} has exited")
                # Children not yet waited for count, running or exited (zombies keep a
                # table entry), and so do spawns under way (owner.children).
                mine = owner.children | {p.pid for p in self._table.values()
                                         if p.parent == parent}
                if len(mine) >= owner.limits.quotas.children:
                    raise refused("children", owner.limits.quotas.children,
                                  f"process {parent} has {len(mine)} children not waited for")
            pid = self._next_pid
            self._next_pid += 1
            if owner is not None:
                owner.children.add(pid)  # reserved now: concurrent spawns see it
        proc = ExoProcess(pid, list(argv), parent, limits)

        def unlink_child() -> None:
            if owner is not None:
                with self._lock:
                    owner.children.discard(pid)

        def release_kernel_state(_: ExoProcess) -> None:
            """On exit: capabilities that were on their way in, and table entries nobody
            will wait for (this process's exited children; itself if its parent is gone)."""
            with self._lock:
                for child in [c for c in self._table.values() if c.parent == pid]:
                    if child.status is not None:
                        del self._table[child.pid]
                if owner is not None and owner.status is not None:
                    self._table.pop(pid, None)
            for cap in proc.drain_inbox():
                self.caps.cancel_transfer(cap)
            proc.close_inbox()  # a recv_capability still blocked there returns
            self.in_flight.drop_receiver(pid)

        channel: BootstrapChannel | None = None
        broker: Any = None  # exo.posix_x.broker.Broker for a POSIX-X program
        try:
            self.caps.create_space(pid, max_handles=limits.quotas.handles,
                                   max_received=limits.quotas.received,
                                   max_pins=limits.quotas.files,
                                   parent=None if owner is None else parent)
        except BaseException:
            unlink_child()
            raise
        try:
            for g in grants:
                self.caps.grant_root(pid, g.name, g.rights)
            if derive is not None:
                derive(pid)
            channel = BootstrapChannel() if syscalls else None
            if owner is not None:
                account = owner.account
            if account is not None and os.geteuid() == 0:  # (else no uid to switch to)
                proc.uid = self.uids.take(account[1])
            # Built once with everything it holds (each dataclasses.replace of a spec
            # validates it all again); a POSIX-X program's account is settled below.
            spec = self._spec(pid, limits,
                              {**(env or {}), **(channel.child_env() if channel else {})},
                              cwd, None if owner is None else owner.cwd,
                              passthrough=passthrough or (posix_x is not None
                                                          and posix_x.passthrough),
                              passthrough_writes=posix_x is not None and posix_x.passthrough,
                              keep_fds=(*(channel.child_fds() if channel else ()), *extra_fds),
                              account=account if posix_x is None else None,
                              process_uid=proc.uid if posix_x is None else None,
                              tmp_user=instance_user(account), umask=umask,
                              rlimits=rlimits)
            if posix_x is not None:
                from exo.posix_x.broker import prepare
                from exo.posix_x.sandbox import apply

                spec = apply(spec, posix_x, list(argv))
                # The Hybrid tier: started through the broker's shim (exo.posix_x.broker).
                spec, argv, broker = prepare(
                    spec, list(argv), pid=pid,
                    audit=lambda reason: self.caps.audit.record("deny", pid=pid, reason=reason))
                if account is not None and spec.user is None:
                    spec = replace(spec, account=account, process_uid=proc.uid)
            nest = owner.sandbox if owner is not None else None
            # The powerbox's commands start in a spare of the session's zygote when they
            # can (exo.sandbox.zygote; on this thread: only the zygote's own start forks,
            # on the spawner); anything else, or what it declines, gets the launcher.
            sandbox = zygote_spawn(spec, list(argv), name=f"p{pid}", boot_id=self.boot_id,
                                   stdio=stdio, log=self.log, start_on=self._spawner.call) \
                if owner is None and posix_x is None and zygote_preferred.get() else None
            sandbox = sandbox or self._spawner.call(
                lambda: sandbox_spawn(spec, list(argv), name=f"p{pid}",
                                      boot_id=self.boot_id, stdin=stdio[0],
                                      stdout=stdio[1], stderr=stdio[2], cgroup_parent=nest))
        except BaseException:
            if proc.uid is not None:
                self.uids.give(proc.uid)
            if broker is not None:
                broker.close()
            if channel is not None:
                channel.close()
            self.files.release_exports(pid)
            self.caps.destroy_space(pid)
            unlink_child()
            raise
        if channel is not None:
            channel.forget_child_end()
        if broker is not None:
            broker.start()
        if report_end:
            with contextlib.suppress(OSError):
                proc.report_fd = fcntl.fcntl(stdio[2], fcntl.F_DUPFD_CLOEXEC, 3)
        proc.sandbox, proc.host_pid, proc.channel = sandbox, sandbox.pid, channel
        proc.cwd = str(spec.cwd)
        proc.account = spec.account
        proc.on_exit.append(release_kernel_state)
        with self._lock:
            self._table[pid] = proc
            self.spawned += 1
            if owner is not None:
                owner.children.discard(pid)  # counted through the table from now on
        if channel is not None:
            proc.server = serve(proc)
        # One kernel thread watches every process's exit (exo.kernel.reaper), rather than
        # a thread blocked per live process.
        reaper.watch(sandbox.monitor_pid, functools.partial(self._reap, proc),
                     getattr(sandbox, "pidfd", -1))
        self.log(f"spawned pid {pid} (host {proc.host_pid}): {' '.join(argv)}")
        return proc

    def _check_objects(self, grants: Sequence[Grant]) -> None:
        """Refuse a capability naming an object that does not exist, with a line saying so:
        a process that is not running, a device (this kernel has no drivers yet).
        Wildcards (``process://*``) name no one object and pass."""
        for g in grants:
            name = g.name
            if name.is_wildcard or name.scheme not in ("process", "device"):
                continue
            if name.scheme == "device":
                raise NoSuchObject(f"capability {g}: no such device {name.path!r} (this "
                                   "kernel has no device drivers yet)")
            pid = int(name.path)
            with self._lock:
                known = self._table.get(pid)
            if pid != KERNEL_PID and (known is None or known.status is not None):
                raise NoSuchObject(f"capability {g}: no such process {pid}")

    def _spec(self, pid: int, limits: Limits, env: dict[str, str], cwd: str | None,
              inherited: str | None, *, passthrough: bool = False,
              passthrough_writes: bool = False,
              keep_fds: tuple[int, ...] = (),
              account: tuple[str, int] | None = None,
              process_uid: int | None = None, tmp_user: str | None = None,
              umask: int | None = None,
              rlimits: tuple[tuple[int, int, int], ...] = ()) -> Any:
        """The sandbox of process ``pid``: its capabilities as the namespace of
        ``exo.sandbox.namespace`` (each ``storage://`` path at its Exo path).
        ``passthrough``: export its read-only grants in FUSE passthrough mode;
        ``passthrough_writes``: its writable ones too (``[posix_x] passthrough``, which
        trades the disk reserve for native speed: docs/revocable-files.md).
        ``tmp_user``: whose ``/tmp`` its ``storage://tmp`` grants name (``tree``)."""
        from exo.kernel.caps import ResourceName
        from exo.sandbox import NetPolicy, SandboxSpec
        from exo.sandbox.namespace import check_destination, exo_path, whole_tree

        read: list[Path] = []
        write: list[Path] = []
        execs: list[Path] = []
        connect: set[int] = set()
        net_any = False
        home: str | None = None
        exports: dict[Path, Any] = {}  # granted path -> the handle to export it through
        # Each granted path is opened once, O_PATH, from the kernel's pinned descriptor of
        # the tree with no symlink followed (_grant_fd), and that descriptor is what gets
        # exported: what is checked here is what the process gets, whatever it (or another
        # app) does to the names meanwhile.
        opened: dict[Path, int] = {}
        sources: dict[Path, Path] = {}
        # Host paths of grants are spelled from the tree's real path, so the sandbox sees
        # a path with no link on it (it refuses one where the kernel serves the path).
        root = self._real_root()
        try:
            for info in self.caps.handles(pid):
                res, rights = info.resource, info.rights
                if res.scheme == "storage":
                    # Shown at its Exo path; refused where the namespace owns the name.
                    # The whole tree is shown as its top-level entries (namespace.whole_tree).
                    parts = [(res, check_destination(exo_path(res.path), str(res)))] \
                        if res.path else [(ResourceName("storage", path=p[1:]), p)
                                          for p in whole_tree(self._top_level(root))]
                    for part, dest in parts:
                        inside = Path(dest)
                        if inside not in opened:
                            opened[inside] = self._grant_fd(part, tmp_user)
                        kind = stat.S_IFMT(os.fstat(opened[inside]).st_mode)
                        if Rights.WRITE in rights:
                            write.append(inside)
                        elif Rights.READ in rights:
                            read.append(inside)
                        if Rights.EXECUTE in rights:
                            execs.append(inside)
                        if kind == stat.S_IFDIR and home is None and res.path:
                            home = dest
                        best = exports.get(inside)
                        if best is None or (Rights.WRITE in rights
                                            and Rights.WRITE not in best.rights):
                            exports[inside] = info
                elif res.scheme == "net":
                    # Landlock filters TCP by port only: a host-specific grant still opens
                    # the port to every host (documented in docs/sandbox.md).
                    if res.port is None:
                        net_any = True
                    else:
                        connect.add(res.port)
            # Each granted directory or file is served through the kernel's FUSE
            # passthrough, pinned from its capability, so revoking it cuts every access,
            # even through the cwd and descriptors already open (docs/revocable-files.md).
            # No FUSE: plain bind mounts.
            for inside, info in exports.items():
                # A writable grant in passthrough would write past the disk reserve: the
                # powerbox's `yes | tee f` filled the disk so (a hostile review).
                through = passthrough_writes if Rights.WRITE in info.rights else passthrough
                exported = self._export(pid, info, opened.pop(inside),
                                        passthrough=through or None)
                if exported is not None:
                    sources[inside] = exported
        finally:
            for fd in opened.values():
                os.close(fd)
        if cwd is None:
            seen = [str(p) for p in (*read, *write, *execs)]
            cwd = "/" if inherited is None or not any(
                inherited == p or inherited.startswith(p + "/") for p in seen) else inherited
        if net_any:
            net = NetPolicy.any()
        elif connect:
            net = NetPolicy.tcp(connect=tuple(sorted(connect)), bind=tuple(sorted(connect)))
        else:
            net = NetPolicy.none()
        child_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home or "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONPATH": RUNTIME_SRC,  # exo and exo_std, at one path in every process
            "PYTHONDONTWRITEBYTECODE": "1",
            PID_ENV: str(pid),
        }
        if "TERM" in os.environ:
            child_env["TERM"] = os.environ["TERM"]
        child_env.update(env)
        child_env[PID_ENV] = str(pid)  # the kernel's, whatever a caller's env says
        return SandboxSpec(
            read_paths=tuple(read), write_paths=tuple(write), exec_paths=tuple(execs),
            net=net, memory_max=limits.memory, pids_max=limits.pids, cpu_max=limits.cpu,
            cwd=Path(cwd), env=child_env, bind_sources=sources, tree=root,
            keep_fds=keep_fds, account=account, process_uid=process_uid, tmp_user=tmp_user,
            umask=umask, rlimits=rlimits,
        )

    def _real_root(self) -> Path:
        """The tree's host path with no link on it, resolved once per root (the host
        directory the administrator booted from: no app reaches its parents); a
        ``realpath`` on each start was ~50 µs of it, cold."""
        cached = self._root_real
        if cached is None or cached[0] != self.root:
            cached = self._root_real = (self.root, Path(os.path.realpath(self.root)))
        return cached[1]

    @staticmethod
    def _top_level(root: Path) -> list[str]:
        """The names at the top of the Exo tree that can be granted: directories and
        regular files, never a link (a grant never follows one) or a special file."""
        names = []
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
                names.append(entry.name)
        return names

    def _grant_fd(self, res: Any, user: str | None = None) -> int:
        """An ``O_PATH`` descriptor of the granted ``storage://`` path ``res``.

        Resolved from the kernel's pinned descriptor of the tree with no symlink anywhere
        on the path and no mount crossed: a link an app planted in its own directory
        cannot turn a later grant of that name (by an operator, for another app) into the
        Exo ``/etc`` or the control socket. Only directories and regular files are granted:
        a socket, FIFO or device would be bound as it is, outside any revocable export.
        ``user``: whose ``/tmp`` a path in ``tmp`` is (``exo.kernel.tree``).
        """
        from exo.kernel import beneath
        from exo.sandbox import SandboxError

        try:
            fd = beneath.openat2(self.files.tree_fd, instance_path(res.path, user),
                                 os.O_PATH, 0, beneath.STRICT)
        except OSError as exc:
            why = {errno.ENOENT: "no such file or directory in the Exo tree",
                   errno.ELOOP: "a symbolic link is on the path (grants never follow links)",
                   errno.EXDEV: "the path crosses a mount point (never granted)",
                   errno.ENOTDIR: "a component of the path is not a directory"}
            raise SandboxError(f"{res}: {why.get(exc.errno or 0, exc.strerror)}") from None
        mode = os.fstat(fd).st_mode
        if not beneath.is_plain(mode):
            os.close(fd)
            raise SandboxError(f"{res} is {beneath.kind_name(mode)}: only directories and "
                               "regular files can be granted")
        return fd

    def _export(self, pid: int, info: Any, fd: int, *,
                passthrough: bool | None = None) -> Path | None:
        """A revocable export of the granted directory or file ``fd`` (None: bind it).

        Takes ``fd`` (the O_PATH descriptor ``_grant_fd`` checked): the directory server
        keeps it, or it is closed here. ``passthrough``: as ``export_dir``'s (None: the
        file table's default).
        """
        rights = info.rights & (Rights.READ | Rights.WRITE | Rights.EXECUTE)
        if not rights:
            os.close(fd)
            return None
        pin = self.caps.pin(pid, info.handle, rights)
        mount_dir = self.root / "var" / "run" / f"dirs-{self.boot_id}"
        try:
            path = self.files.export_dir(pid, pin, fd, writable=Rights.WRITE in rights,
                                         mount_dir=mount_dir, log=self.log,
                                         label=str(info.resource), passthrough=passthrough)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            self.caps.unpin(pin)
            raise
        if path is None:
            os.close(fd)
            self.caps.unpin(pin)
        exported: Path | None = path
        return exported

    # ------------------------------------------------------------------ reaping
    def _reap(self, proc: ExoProcess) -> None:
        # The status first (the cgroup is still there, and anything the command left in
        # it): the waiters go on as soon as the exit is known, as a shell's waitpid does,
        # and the reclaim (_reclaim) runs after, off their path: it was ~3 ms of each
        # command's Enter-to-prompt (cgroup removal, exports, capability space, the
        # syscall thread's join), measured on the powerbox's pipeline.
        sandbox = proc.sandbox
        status = getattr(sandbox, "exit_status", sandbox.wait)()
        if getattr(sandbox, "oom_killed", False):
            proc.end_reason = f"memory limit {format_size(proc.limits.memory)} reached"
            self.log(f"pid {proc.pid} was killed by its cgroup: {proc.end_reason}")
            if proc.report_fd >= 0:
                with contextlib.suppress(OSError):
                    os.write(proc.report_fd, f"exo: killed: {proc.end_reason}\n".encode())
        self._reclaim(proc, status)

    def _reclaim(self, proc: ExoProcess, status: int) -> None:
        with self._lock:
            if proc.status is not None:
                return
            proc.status = status
            proc.ended = time.monotonic()
            self._reclaiming.add(proc)
            report_fd, proc.report_fd = proc.report_fd, -1
            if proc.parent == KERNEL_PID and self._table.pop(proc.pid, None) is not None:
                # Nobody above the kernel is its parent: reaped now. (An Exo process's
                # child stays, exited, until its parent waits for it or exits.)
                self._reaped[proc.pid] = proc
                while len(self._reaped) > _REAPED_KEPT:
                    del self._reaped[next(iter(self._reaped))]
        if report_fd >= 0:
            os.close(report_fd)
        proc.exited.set()  # the status is known; what the process held goes now
        # ... a moment later: the waiters just woken (a shell's job thread, then its main
        # thread writing the prompt) run first, instead of taking turns for the GIL with
        # this reclaim's Python (cgroup removal, exports, capability space). Paired
        # in-process runs (100 two-stage powerbox pipelines each, alternating): 1 ms took
        # 0.62 and 0.73 ms off the pipeline's Enter-to-output, 3 ms 0.80 and 0.78 ms, a
        # bare GIL yield (0 s) nothing.
        time.sleep(RECLAIM_DELAY)
        cgroup = getattr(proc.sandbox, "cgroup", None)
        with contextlib.suppress(Exception):  # (its cgroup goes next)
            if cgroup is not None and (final := cgroup.cpu_seconds()) is not None:
                proc.cpu_s, proc.cpu_times = final, cgroup.cpu_times()
            elif (reported := getattr(proc.sandbox, "cpu_times", None)) is not None:
                # (no CPU account in its cgroup: a v1 host without cpuacct there) what
                # its init reaped, as a zygote's command's init reports it
                proc.cpu_s, proc.cpu_times = sum(reported), reported
        with contextlib.suppress(Exception):
            # the cgroup, and whatever the command left running in it (killed)
            proc.sandbox.wait()
        for hook in proc.on_exit:
            with contextlib.suppress(Exception):
                hook(proc)
        if proc.uid is not None:  # nothing runs as it any more (its cgroup is empty)
            self.uids.give(proc.uid)
        with contextlib.suppress(Exception):
            self.files.release_exports(proc.pid)
        with contextlib.suppress(Exception):
            self.caps.destroy_space(proc.pid)
        if proc.server is not None:
            # The syscall thread owns the channel (a ring endpoint serves one thread):
            # it sees the peer gone, closes the channel and ends.
            self._wake_server(proc.server)
        with self._lock:
            self.reclaimed += 1
            self._reclaiming.discard(proc)
        proc.reclaimed.set()
        self.log(f"pid {proc.pid} exited with status {status}; resources reclaimed")

    def _wake_server(self, server: threading.Thread) -> None:
        """Join a dead process's syscall thread. Asleep in its ring's wait, it would see
        the peer gone only at the ring's next tick (25 ms: measured as most of a short
        command's exit-to-wait); a signal to that thread alone ends the futex sleep
        (EINTR) and the ring then checks its peer at once. Sent again every 2 ms, in case
        one lands just before the thread goes to sleep; the tick still bounds the wait."""
        deadline = time.monotonic() + 5.0
        while server.is_alive() and time.monotonic() < deadline:
            ident = server.ident
            if self._wake and ident is not None:
                with contextlib.suppress(ProcessLookupError, OSError, ValueError):
                    signal.pthread_kill(ident, _WAKE_SIGNAL)
            server.join(0.002 if self._wake else 5.0)

    # ------------------------------------------------------------------ queries
    def get(self, pid: int) -> ExoProcess:
        with self._lock:
            proc = self._table.get(pid) or self._reaped.get(pid)
        if proc is None:
            raise LookupError(f"({pid}) - no such process")
        return proc

    def wait(self, pid: int, timeout: float | None = None) -> int:
        proc = self.get(pid)
        proc.exited.wait(timeout)
        if proc.status is None:
            raise TimeoutError(f"process {pid} still running")
        with self._lock:
            self._table.pop(pid, None)  # waited for: gone from the table
            self._reaped.pop(pid, None)
        return proc.status

    def kill(self, pid: int, sig: int = signal.SIGTERM, group: bool = False) -> None:
        """``sig`` to process ``pid`` (``group``: to its process group in its sandbox,
        what it started along: a terminal's Ctrl-C and Ctrl-Z)."""
        if pid == KERNEL_PID:
            raise LookupError("(1) - the kernel cannot be signalled; use shutdown")
        proc = self.get(pid)
        if proc.status is not None:
            raise LookupError(f"({pid}) - process has already exited")
        if group:
            proc.sandbox.send_signal(sig, group=True)
        else:
            proc.sandbox.send_signal(sig)

    def live(self) -> list[ExoProcess]:
        with self._lock:
            return [p for p in self._table.values() if p.status is None]

    def rows(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        rows = [{
            "pid": KERNEL_PID, "host_pid": os.getpid(), "state": "running",
            "caps": 0, "elapsed_s": now - self.started,
            "cpu_s": sum(os.times()[:2]),
            "command": "exo-kernel",
        }]
        with self._lock:
            procs = sorted(self._table.values(), key=lambda p: p.pid)
        for p in procs:
            try:
                ncaps = len(self.caps.handles(p.pid)) if p.status is None else 0
            except Exception:
                ncaps = 0
            rows.append({
                "pid": p.pid, "host_pid": p.host_pid, "state": p.state, "caps": ncaps,
                "elapsed_s": p.elapsed(now), "cpu_s": p.cpu_seconds(),
                "command": printable(" ".join(p.argv), newlines=False),
            })
        return rows

    def proc_pids(self) -> dict[int, dict[str, Callable[[], str]]]:
        out: dict[int, dict[str, Callable[[], str]]] = {}
        for row in self.rows():
            pid = int(row["pid"])
            out[pid] = {
                "cmdline": functools.partial(_text, str(row["command"]) + "\n"),
                "status": functools.partial(
                    _text, "".join(f"{k}:\t{v}\n" for k, v in row.items())),
                "caps": functools.partial(self._caps_text, pid),
            }
        return out

    def _caps_text(self, pid: int) -> str:
        try:
            infos = self.caps.handles(pid)
        except Exception:
            return ""
        return "".join(f"{i.handle:#010x} {i.rights.format():<30} {i.resource}\n" for i in infos)

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return {"processes": lambda: f"spawned {self.spawned}\nreclaimed {self.reclaimed}\n"
                f"running {len(self.live())}\n"}

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, grace: float = 2.0) -> None:
        procs = self.live()
        for p in procs:
            with contextlib.suppress(Exception):
                p.sandbox.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            if not p.exited.wait(max(0.0, deadline - time.monotonic())):
                with contextlib.suppress(Exception):
                    p.sandbox.kill()
        with self._lock:  # and those that ended just before, still being reclaimed
            procs += [p for p in self._reclaiming if p not in procs]
        for p in procs:
            p.reclaimed.wait(5.0)
        if "exo.sandbox.zygote" in sys.modules:  # started by a session's first command
            sys.modules["exo.sandbox.zygote"].stop_all(self.boot_id)
        self._spawner.stop()


def _text(value: str) -> str:
    return value


def host_stat(host_pid: int) -> list[bytes]:
    """The fields of the host's ``/proc/PID/stat`` for ``host_pid`` after the command
    name (which may hold spaces and parentheses, so from the last ``)``): the state
    first, utime at 11; empty when it is gone."""
    if host_pid <= 0:
        return []
    try:
        with open(f"/proc/{host_pid}/stat", "rb") as fh:
            text = fh.read()
    except OSError:
        return []
    return text[text.rfind(b")") + 1:].split()


def _host_state(host_pid: int) -> str:
    """The state letter the host kernel gives process ``host_pid`` (``R S D T t Z``...),
    ``""`` when it is gone."""
    rest = host_stat(host_pid)
    return rest[0].decode() if rest else ""


def format_size(size: int | None) -> str:
    """``64M``, ``1G``, ``1536K``: a limit as a manifest would write it."""
    if size is None:
        return "unlimited"
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)
