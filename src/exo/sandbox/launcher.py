"""Spawn a process inside a sandbox and own it until it is gone.

Order of application (each step can only tighten what the previous one allowed):

1. cgroup: ``/bin/sh`` writes its own pid into the new group(s), then execs bubblewrap, so
   bubblewrap and everything below it are limited and tracked before anything else runs.
2. bubblewrap: new pid/mount/ipc/uts/cgroup (and, without network, net) namespaces, the mount
   view of ``_bwrap.plan_mounts``, capabilities dropped, ``PR_SET_NO_NEW_PRIVS``, then the
   seccomp filter from ``_seccomp``, then exec of stage 2.
3. stage 2 (``exo-stage2``, compiled from ``_stage2.c``): closes inherited descriptors,
   applies Landlock, execs the target.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from . import _bwrap, _cgroups, _landlock, _seccomp
from ._probe import check_requirements
from .errors import ExecFailed
from .namespace import TTY
from .spec import SandboxError, SandboxSpec

#: Extra processes bubblewrap adds to the group: its monitor and the namespace's init.
BWRAP_OVERHEAD_PIDS = 2
_TRAMPOLINE = ('while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; '
               'shift; exec "$@"')
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_counter = itertools.count(1)
#: The errno the test-only "seccomp-marker" filter answers, to attribute refusals to seccomp.
SECCOMP_MARKER_ERRNO = errno.ENOTRECOVERABLE
_default_boot_id = f"pid{os.getpid()}"

_File = int | IO[Any] | None


def default_boot_id() -> str:
    """The boot id used when a caller passes none (one per kernel process)."""
    return _default_boot_id


def landlock_rules(plan: _bwrap.MountPlan) -> list[tuple[str, int]]:
    ll = _landlock
    rules: list[tuple[str, int]] = []
    rules += [(str(p), ll.READ) for p in plan.read]
    rules += [(str(p), ll.READ | ll.EXECUTE) for p in plan.exec_]
    rules += [(str(p), ll.READ | ll.WRITE) for p in plan.write]
    # A terminal opened inside needs its ioctls (TIOCSTI stays refused by seccomp).
    rules += [(str(p), ll.READ_FILE | ll.WRITE_FILE | (ll.IOCTL_DEV if str(p) == TTY else 0))
              for p in plan.devices]
    return rules


def _stage2_config(status_fd: int, keep_fds: Sequence[int], landlock: list[str],
                   argv: Sequence[str], env: dict[str, str],
                   account: tuple[int, int] | None = None,
                   await_fd: int | None = None, umask: int | None = None,
                   rlimits: tuple[tuple[int, int, int], ...] = ()) -> bytes:
    """exo-stage2's config: NUL-terminated strings, record after record (``_stage2.c``).
    ``account``: the unprivileged (uid, gid) stage 2 becomes before exec;
    ``await_fd``: a pipe stage 2 reads "g" from before exec (the zygote's go);
    ``umask``: the program's (else the kernel's own); ``rlimits``: the limits it starts
    with (``SandboxSpec.rlimits``, checked)."""
    records = ["status", str(status_fd)]
    if account is not None:
        records += ["account", str(account[0]), str(account[1])]
    if umask is not None:
        records += ["umask", str(umask)]
    if rlimits:
        from ._rlimits import records as rlimit_records

        records += rlimit_records(rlimits)
    if await_fd is not None:
        records += ["await", str(await_fd)]
    for fd in keep_fds:
        records += ["keep", str(fd)]
    records += landlock
    records += ["argv", str(len(argv)), *argv]
    records += ["env", str(len(env)), *(f"{k}={v}" for k, v in env.items())]
    return encode_records(records, "argv, environment and paths may not contain NUL bytes")


def encode_records(records: list[str], refusal: str) -> bytes:
    """``records`` as exo-stage2 reads them, each NUL-terminated; SandboxError(``refusal``)
    for one holding a NUL, which would end a string and start a record."""
    if not records:
        return b""
    text = "\0".join(records)
    if text.count("\0") != len(records) - 1:  # (one join and one count: ~100 records a start)
        raise SandboxError(refusal)
    return text.encode(sys.getfilesystemencoding(), "surrogateescape") + b"\0"


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd: int, deadline: float, what: str) -> bytes:
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxError(f"sandbox start timed out waiting for {what}")
        # poll, not select: the kernel process may hold more than FD_SETSIZE descriptors
        # (the directory file server keeps one per inode a sandbox looked up).
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(max(1, int(left * 1000))):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class SandboxedProcess:
    """A running sandboxed process: its host pid, exit status and cgroup.

    ``pid`` is the target's pid in the host pid namespace (inside, it is pid 2); ``init_pid``
    is the namespace's init (bubblewrap's reaper): killing it kills everything inside.
    ``returncode`` follows bubblewrap's convention: the exit status, or 128+N after signal N.
    """

    def __init__(self, popen: subprocess.Popen[bytes], cgroup: _cgroups.CgroupSet | None,
                 name: str) -> None:
        self._popen = popen
        self.cgroup = cgroup
        self.name = name
        self.init_pid = 0
        self.pid = 0
        self.returncode: int | None = None
        #: Killed by the memory controller at its cgroup's limit (read when it ended).
        self.oom_killed = False
        #: The signal that ended it: never known here (bubblewrap reports signal N as the
        #: status 128+N, as an ``exit 139`` is; a zygote's spare tells them apart).
        self.term_signal: int | None = None
        self.core_dumped = False
        self._lock = threading.Lock()
        self._cleaned = False

    @property
    def stdin(self) -> IO[bytes] | None:
        return self._popen.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self._popen.stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        return self._popen.stderr

    @property
    def monitor_pid(self) -> int:
        """bubblewrap's outer process, our direct child."""
        return self._popen.pid

    def poll(self) -> int | None:
        rc = self._popen.poll()
        if rc is not None:
            self._finish(rc)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit, then reclaim the cgroup; raises ``subprocess.TimeoutExpired``."""
        rc = self._popen.wait(timeout)
        self._finish(rc)
        assert self.returncode is not None
        return self.returncode

    def exit_status(self, timeout: float | None = None) -> int:
        """Wait for exit and return the status (``oom_killed`` set), leaving the cgroup
        and whatever still runs in it to ``wait()``: the kernel publishes a status before
        it reclaims (``ProcessManager._reap``)."""
        rc = self._popen.wait(timeout)
        self._status(rc)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int, group: bool = False) -> None:
        """``sig`` to the command (``group``: to its process group when it leads one;
        under bubblewrap it is in its init's, then it alone). Not reaped yet, so its pid
        is still its own."""
        if self.returncode is None and self.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group and os.getpgid(self.pid) == self.pid:
                    os.killpg(self.pid, sig)
                else:
                    os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL everything in the sandbox (namespace init, then the whole cgroup)."""
        if self.returncode is not None:
            self.wait()  # ended: what it left in its cgroup goes with the group
            return
        for pid in (self.init_pid, self._popen.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()
        self.wait()

    def stats(self) -> dict[str, int]:
        return self.cgroup.stat() if self.cgroup is not None else {}

    def _status(self, rc: int) -> None:
        with self._lock:
            if self.returncode is not None:
                return
            returncode = 128 - rc if rc < 0 else rc
            if self.cgroup is not None:
                # Read before the group goes: a SIGKILL with the group's OOM counter up is
                # the memory limit, not a kill someone sent.
                self.oom_killed = (returncode == 128 + signal.SIGKILL
                                   and self.cgroup.oom_kills() > 0)
            self.returncode = returncode

    def _finish(self, rc: int) -> None:
        self._status(rc)
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
            if self.cgroup is not None:
                self.cgroup.remove()
            for stream in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    def close(self) -> None:
        """Kill if still running and release everything; idempotent."""
        self.kill()

    def __enter__(self) -> SandboxedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<SandboxedProcess {self.name} pid={self.pid} "
                f"returncode={self.returncode}>")


def spawn(
    spec: SandboxSpec,
    argv: Sequence[str],
    *,
    name: str = "app",
    boot_id: str | None = None,
    stdin: _File = None,
    stdout: _File = None,
    stderr: _File = None,
    allow_missing: frozenset[str] = frozenset(),
    timeout: float = 10.0,
    cgroup_parent: SandboxedProcess | None = None,
    _ablate: frozenset[str] = frozenset(),
) -> SandboxedProcess:
    """Start ``argv`` inside the sandbox ``spec``; returns once the target has been exec'd.

    Raises :class:`SandboxUnavailable` if a needed mechanism is missing and not named in
    ``allow_missing``; :class:`SandboxError` (one line) for bad specs or a failed start,
    including the target's own exec error. The returned process's cgroup is removed when it
    is waited for, killed or closed.

    ``cgroup_parent``: create the cgroup inside that process's, so that its limits bind
    this one too (an Exo process's children count against its budget); killing or
    removing the parent's group then takes this one with it.

    ``_ablate`` exists for the escape tests only, to prove which mechanism refused what:
    ``"landlock"`` skips Landlock, ``"seccomp-marker"`` makes the filter answer ENOTRECOVERABLE
    instead of EPERM. The kernel must never pass it.
    """
    if not isinstance(spec, SandboxSpec):
        raise SandboxError(f"spec must be a SandboxSpec, not {type(spec).__name__}")
    if isinstance(argv, str | bytes) or not argv or not all(
            isinstance(a, str) and "\0" not in a for a in argv):
        raise SandboxError("argv must be a non-empty sequence of strings without NUL bytes")
    limits = [c for c, v in (("memory", spec.memory_max), ("pids", spec.pids_max),
                             ("cpu", spec.cpu_max)) if v is not None]
    abi = check_requirements(spec.net.mode, limits=limits, allow_missing=allow_missing)
    bwrap = _bwrap.require_bwrap()
    for fd in spec.keep_fds:
        try:
            os.fstat(fd)
        except OSError as exc:
            raise SandboxError(f"keep_fds: descriptor {fd} is not open") from exc
    plan = _bwrap.plan_mounts(spec, tty=_terminal(stdin, stdout, stderr) or False)
    boot_id = boot_id or _default_boot_id
    group_name = f"{name}.{os.getpid()}.{next(_counter)}"

    env = dict(spec.env)
    env.setdefault("PATH", _DEFAULT_PATH)
    landlock: list[str] = []  # stage 2's Landlock records; none: Landlock not applied
    if abi and "landlock" not in _ablate:
        net: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        if spec.net.mode == "none" and abi >= 4:
            net = ((), ())
        elif spec.net.mode == "tcp" and abi >= 4:
            # With a POSIX-X broker, the kernel performs every inet bind/connect it allows
            # (its own reference to the program's socket, checked by the socket's
            # domain): the program itself may do none. Else a second thread swapping an
            # AF_UNIX socket (let through) for an inet one at the same descriptor bound
            # 0.0.0.0 or reached any host on a granted port (a hostile review).
            net = ((), ()) if spec.broker else (spec.net.bind_ports, spec.net.connect_ports)
        landlock = _landlock.stage2_records(abi, landlock_rules(plan), net=net,
                                            scoped=abi >= 6)
    stage2 = _bwrap.stage2_inside()  # checks the helper is built

    cgroup: _cgroups.CgroupSet | None = None
    try:
        parent_group = cgroup_parent.cgroup if cgroup_parent is not None else None
        if cgroup_parent is not None and parent_group is None and "cgroup" not in allow_missing:
            raise SandboxError("the parent sandbox has no cgroup to nest this one in")
        cgroup = _cgroups.CgroupSet.create(
            boot_id, group_name, memory_max=spec.memory_max,
            pids_max=None if spec.pids_max is None else spec.pids_max + BWRAP_OVERHEAD_PIDS,
            cpu_max=spec.cpu_max, parent=parent_group)
    except SandboxError:
        if "cgroup" not in allow_missing:
            raise
    to_close: list[int] = []
    popen: subprocess.Popen[bytes] | None = None
    try:
        status_r, status_w = os.pipe()
        info_r, info_w = os.pipe()
        to_close += [status_r, status_w, info_r, info_w]
        # A kernel that is not root cannot switch uids: its processes stay its own uid.
        ids = spec.host_ids() if os.geteuid() == 0 else None
        config_fd = _memfd("exo-stage2", _stage2_config(status_w, spec.keep_fds, landlock,
                                                        argv, env, ids, umask=spec.umask,
                                                        rlimits=spec.rlimits))
        to_close.append(config_fd)
        args = [bwrap, *_bwrap.namespace_args(spec), *plan.args]
        for dest, content in plan.data_files:
            fd = _memfd("exo-etc", content.encode())
            to_close.append(fd)
            args += ["--perms", "0644", "--ro-bind-data", str(fd), dest]
        pass_fds = [status_w, info_w, config_fd, *spec.keep_fds]
        pass_fds += [int(args[i + 1]) for i, a in enumerate(args) if a == "--ro-bind-data"]
        if _seccomp_enabled(allow_missing):
            deny = SECCOMP_MARKER_ERRNO if "seccomp-marker" in _ablate else errno.EPERM
            seccomp_fd = _memfd("exo-seccomp", _seccomp.compiled_filter(spec.net.mode, deny,
                                                                           spec.fork,
                                                                           spec.broker))
            to_close.append(seccomp_fd)
            pass_fds.append(seccomp_fd)
            args += ["--seccomp", str(seccomp_fd)]
        args += ["--info-fd", str(info_w), "--chdir", str(spec.cwd or "/"),
                 "--remount-ro", "/", "--",
                 stage2, str(config_fd)]
        procs = [str(p) for p in cgroup.entry_files] if cgroup is not None else []
        popen = subprocess.Popen(
            ["/bin/sh", "-c", _TRAMPOLINE, "exo-sandbox", *procs, "--", *args],
            stdin=stdin, stdout=stdout, stderr=stderr, env=_HOST_ENV, close_fds=True,
            pass_fds=pass_fds, cwd="/")
        for fd in (status_w, info_w, config_fd, *pass_fds[3 + len(spec.keep_fds):]):
            os.close(fd)
            to_close.remove(fd)
        proc = SandboxedProcess(popen, cgroup, name)
        deadline = time.monotonic() + timeout
        info = _read_all(info_r, deadline, "bubblewrap")
        status = _read_all(status_r, deadline, "stage 2")
        if status != b"R":
            report = status.removeprefix(b"R")  # "R": it got as far as execve
            rc = popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            if report.startswith(b"X"):  # "X<errno> <message>": execve itself failed
                err, _, message = report[1:].decode("utf-8", "replace").partition(" ")
                raise ExecFailed(message, int(err))
            detail = report.removeprefix(b"E").decode("utf-8", "replace")
            if not detail:
                detail = f"bubblewrap exited with status {rc} before stage 2 (see its stderr)"
            raise SandboxError(f"sandbox start failed: {detail}")
        try:
            proc.init_pid = int(json.loads(info)["child-pid"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SandboxError(f"bubblewrap gave no child pid: {info[:200]!r}") from exc
        proc.pid = _first_child(proc.init_pid) or proc.init_pid
        return proc
    except BaseException:
        if popen is not None:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            if cgroup is not None:
                cgroup.kill_all()
            popen.wait()
        if cgroup is not None:
            cgroup.remove()
        raise
    finally:
        for fd in to_close:
            with contextlib.suppress(OSError):
                os.close(fd)


def _terminal(*files: _File) -> str | None:
    """The device path of the first standard stream given to ``spawn`` that is a
    terminal (``/dev/pts/3``), or None."""
    for f in files:
        if not _is_tty(f):
            continue
        fd = f if isinstance(f, int) else -1 if f is None else f.fileno()
        try:
            name = os.ttyname(fd)
        except OSError:
            continue
        if name.startswith("/dev/") and ".." not in name:
            return name
    return None


def _is_tty(f: _File) -> bool:
    """Whether a standard stream given to ``spawn`` is a terminal (None: the caller's)."""
    if f is None:
        fd = -1
    elif isinstance(f, int):
        fd = f
    else:
        try:
            fd = f.fileno()
        except (OSError, ValueError):
            return False
    return fd >= 0 and os.isatty(fd)


def _seccomp_enabled(allow_missing: frozenset[str]) -> bool:
    from ._probe import seccomp_available

    return seccomp_available() or "seccomp" not in allow_missing


def _first_child(pid: int) -> int:
    """The host pid of the namespace init's child: the sandboxed target itself."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def cleanup_all(boot_id: str | None = None) -> list[Path]:
    """Kill every sandboxed process of a boot and remove its cgroups (shutdown, leak checks).

    Returns the cgroup directories that had to be removed; empty when nothing leaked.
    """
    return _cgroups.cleanup_all(boot_id or _default_boot_id)


def sweep_dead_boots(own_boot_id: str) -> list[Path]:
    """Remove the cgroups left by kernels that died without shutting down (a later boot's
    housekeeping; see ``_cgroups.sweep_dead_boots``)."""
    return _cgroups.sweep_dead_boots(own_boot_id)


def hold_boot(boot_id: str) -> str:
    """Keep the boot's cgroup directories while the kernel runs (``_cgroups.hold_boot``)."""
    return _cgroups.hold_boot(boot_id)


def release_boot(boot_id: str) -> None:
    """Undo ``hold_boot`` (``_cgroups.release_boot``)."""
    _cgroups.release_boot(boot_id)


def favor_dynamic_moves() -> str:
    """Make cgroup moves cheap host-wide, once (see ``_cgroups.favor_dynamic_moves``)."""
    return _cgroups.favor_dynamic_moves()
