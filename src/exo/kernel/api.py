"""The kernel's API for what stands above it: the shell, the control socket, a console.

One narrow object, ``KernelApi``: list, signal and run processes, read capabilities and
the audit log, the kernel's messages, ask for shutdown. It is built from the kernel's core
and the two managers it serves from (either may be missing when its boot step failed),
so whoever holds it reaches nothing else of the kernel.

``run`` is the one place where "start argv under these capabilities and this manifest,
wait for it, give its exit status" is done: the shell's ``run``, the control socket's
``run`` (``exo run`` on a running kernel) and ``exo run`` on an ephemeral kernel all call
it, and so do the shell's jobs for the waiting and interrupting part.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal

TYPE_CHECKING = False  # no runtime typing import on the boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any

    from exo.kernel.caps import CapabilityManager
    from exo.kernel.core import KernelCore
    from exo.kernel.manifest import Grant, Manifest
    from exo.kernel.process import ExoProcess, ProcessManager
    from exo.kernel.sessions import KernelSession, SessionTable

#: How long an interrupted process has between SIGINT and SIGKILL.
INTERRUPT_GRACE_S = 1.0
_POLL_S = 0.05  # how often a wait looks at its ``cancelled`` condition
_KILL_CHECK_S = 2.0  # after SIGKILL to the command, how long before the whole sandbox goes


class ProcessesUnavailable(RuntimeError):
    """This kernel cannot start processes (its "Processes and sandbox" step failed)."""


def exit_code(status: int) -> int:
    """Shell convention: a process killed by signal N exits 128+N."""
    return status if status >= 0 else 128 - status


def failure_status(exc: BaseException) -> int:
    """The exit status for a process that could not be started, as a shell would give it:
    127 when the program does not exist, 126 when it (or its sandbox) cannot be run, 2 for
    a capability or manifest that cannot be used as given, 1 for anything else. ``exc``
    may come from this process or from the running kernel (a ``KernelError`` carries the
    kernel's exception name as ``kind``)."""
    kind = getattr(exc, "kind", type(exc).__name__)
    if kind in ("ManifestError", "NoSuchObject"):  # a capability that cannot be used
        return 2
    if kind == "ExecFailed":
        return 127 if getattr(exc, "errno", None) == errno.ENOENT else 126
    return 126 if kind in ("SandboxError", "SandboxUnavailable", "ProcessesUnavailable") else 1


class KernelApi:
    """The kernel as the shell, the control socket and a console see it."""

    __slots__ = ("_caps", "_core", "_processes")

    def __init__(self, core: KernelCore, caps: CapabilityManager | None,
                 processes: ProcessManager | None) -> None:
        self._core = core
        self._caps = caps
        self._processes = processes

    # ------------------------------------------------------------ identity
    @property
    def root(self) -> Path:
        return self._core.root

    @property
    def boot_id(self) -> str:
        return self._core.boot_id

    @property
    def dev_mode(self) -> bool:
        return self._core.config.dev_mode

    def log(self, message: str) -> None:
        self._core.log(message)

    def open_log(self, relative: str, *, truncate: bool = False) -> int:
        """A descriptor to write the log file ``relative`` of the Exo tree (such as
        ``var/log/agents/ai-res.log``): ``exo.kernel.beneath.open_log``, which follows no
        link an app could have planted there."""
        from exo.kernel.beneath import open_log

        return open_log(self.root, relative, truncate=truncate)

    def dmesg(self) -> list[str]:
        return list(self._core.messages)

    def request_shutdown(self, session: str | None = None) -> None:
        """Power off. With ``session``, only if it holds ``device://power`` WRITE."""
        if session is not None:
            from exo.kernel.users import POWER

            self.require(session, POWER, "WRITE", "power off")
        self._core.request_shutdown()

    # ------------------------------------------------------------ processes
    def ps(self) -> list[dict[str, Any]]:
        """One row per process, the kernel (pid 1) first; empty without a process manager."""
        return self._processes.rows() if self._processes is not None else []

    # the control socket's handler asks for the rows by this name
    process_rows = ps

    def kill(self, pid: int, sig: int, group: bool = False) -> None:
        """``sig`` to Exo process ``pid`` (``group``: to its process group, as a
        terminal's keys reach a foreground job)."""
        if self._processes is None:
            raise LookupError(f"({pid}) - no such process")
        self._processes.kill(pid, sig, group)

    def start(self, argv: Sequence[str], grants: Sequence[Grant] = (), *,
              manifest: Manifest | None = None,
              stdio: tuple[int, int, int] = (0, 1, 2), cwd: str = "/",
              env: dict[str, str] | None = None,
              extra_fds: tuple[int, ...] = (),
              session: str | None = None, passthrough: bool = False,
              syscalls: bool = True, umask: int | None = None,
              rlimits: tuple[tuple[int, int, int], ...] = ()) -> ExoProcess:
        """Start ``argv`` holding exactly ``grants`` plus the manifest's, under the
        manifest's limits, in the working directory ``cwd`` (an Exo path; the shell passes
        its own), with ``env`` added to its environment. If the memory controller kills
        it at its limit, the kernel says so on its stderr when it reaps it (``exo:
        killed: memory limit 64M reached``), whoever waits. Raises what the spawn raised
        (``SandboxError``, ``ExecFailed``, ``QuotaExceeded``...) or
        ``ProcessesUnavailable``.

        ``session`` (a login's token, ``login``): the process runs as the session's
        unprivileged host uid, and every capability it gets, the manifest's included, is
        derived from the session's set in the kernel: one the session does not hold is
        refused (``CapabilityDenied``) before anything starts, whatever the caller checked.

        ``passthrough``: its ``storage://`` grants are exported in FUSE passthrough mode
        (reads and writes of open files skip the kernel's file server; revocation cuts them
        too, except mappings, splice and sendfile: docs/revocable-files.md). The shell's
        powerbox asks for it; a manifest's ``[posix_x] passthrough`` does too.

        ``syscalls=False``: no bootstrap channel, for a program that makes no Exo syscall
        (the powerbox's host programs; ``ProcessManager.spawn``). ``umask``: its file
        mode mask (the shell's ``umask``). ``rlimits``: (resource, soft, hard) limits it
        starts with, -1 unlimited (the shell's ``ulimit``); a hard limit above the
        kernel's own is refused (``SandboxError``).
        """
        if self._processes is None:
            failed = "; ".join(f"{s.name}: {s.detail}" for s in self._core.report.steps
                               if s.status.value == "FAILED")
            raise ProcessesUnavailable(f"cannot start processes on this host ({failed})"
                                       if failed else "cannot start processes on this host")
        all_grants = [*(manifest.grants if manifest is not None else ()), *grants]
        derive: Callable[[int], None] | None = None
        account: tuple[str, int] | None = None
        if session is not None:
            table = self._sessions()
            owner = table.get(session)
            if os.geteuid() == 0:  # a kernel that is not root cannot switch uids
                account = (owner.user, owner.host_uid)
            if not owner.everything:  # root's set is every root capability: as granted
                held, all_grants = all_grants, []

                def derive(pid: int) -> None:
                    table.derive(session, pid, held)
        return self._processes.spawn(argv, all_grants, stdio=stdio, cwd=cwd, env=env,
                                     report_end=True, extra_fds=extra_fds, derive=derive,
                                     account=account, passthrough=passthrough,
                                     syscalls=syscalls, umask=umask, rlimits=rlimits,
                                     limits=manifest.limits if manifest is not None else None,
                                     posix_x=manifest.posix_x if manifest is not None else None)

    def wait(self, proc: ExoProcess, *, cancelled: Callable[[], bool] | None = None,
             grace: float = INTERRUPT_GRACE_S) -> int:
        """Wait for ``proc`` and return its exit status (128+N if killed by signal N).

        When ``cancelled()`` turns true (Ctrl-C in the shell, the control socket's caller
        gone) or the wait is interrupted by KeyboardInterrupt (re-raised), the process is
        interrupted: SIGINT, then SIGKILL after ``grace`` seconds (0: SIGKILL at once)."""
        assert self._processes is not None  # ``proc`` came from start()
        try:
            if cancelled is None:
                proc.exited.wait()
            else:
                while not proc.exited.wait(_POLL_S):
                    if cancelled():
                        self.interrupt(proc, grace)
                        break
            return exit_code(self._processes.wait(proc.pid))
        except KeyboardInterrupt:
            self.interrupt(proc, grace)
            raise

    def interrupt(self, proc: ExoProcess, grace: float = INTERRUPT_GRACE_S) -> None:
        """SIGINT, then SIGKILL if ``proc`` is still running after ``grace`` seconds."""
        assert self._processes is not None
        if grace > 0:
            with contextlib.suppress(LookupError):
                self._processes.kill(proc.pid, signal.SIGINT)
            if proc.wait(grace) is not None:
                return
        with contextlib.suppress(LookupError):
            self._processes.kill(proc.pid, signal.SIGKILL)
        if not proc.exited.wait(_KILL_CHECK_S):
            # The signal reached only the command's own pid: whatever else runs in its
            # sandbox (its namespace's init, a child in another session) goes with the
            # whole sandbox: namespace init, then every process of its cgroup.
            with contextlib.suppress(Exception):
                proc.sandbox.kill()

    def run(self, argv: Sequence[str], grants: Sequence[Grant] = (), *,
            manifest: Manifest | None = None, stdio: tuple[int, int, int] = (0, 1, 2),
            cancelled: Callable[[], bool] | None = None,
            grace: float = INTERRUPT_GRACE_S, cwd: str = "/",
            env: dict[str, str] | None = None, session: str | None = None) -> int:
        """``start`` then ``wait``: the command's exit status, in the shell's convention."""
        return self.wait(self.start(argv, grants, manifest=manifest, stdio=stdio, cwd=cwd,
                                    env=env, session=session),
                         cancelled=cancelled, grace=grace)

    # ------------------------------------------------------------ capabilities
    def _manager(self) -> CapabilityManager:
        if self._caps is None:
            raise LookupError("the capability space is not running")
        return self._caps

    def caps(self, pid: int | None = None) -> list[dict[str, Any]]:
        """The capabilities of ``pid`` (of every process when None), one dict each."""
        manager = self._manager()
        rows: list[dict[str, Any]] = []
        for p in [pid] if pid is not None else manager.pids():
            try:
                infos = manager.handles(p)
            except Exception:
                if pid is not None:
                    raise
                continue  # exited while we listed the others
            rows += [{"pid": p, "handle": f"{i.handle:#x}", "resource": str(i.resource),
                      "rights": i.rights.format(), "derived": i.children} for i in infos]
        return rows

    def audit(self, *, event: str | None = None, pid: int | None = None,
              resource: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest audit records matching every filter given, as dicts."""
        records = self._manager().audit.query(event=event, pid=pid, resource_prefix=resource,
                                              limit=limit)
        return [r.to_dict() for r in records]

    # ------------------------------------------------------------ sessions
    def _sessions(self) -> SessionTable:
        from exo.kernel.sessions import table_for

        return table_for(self._manager())

    def login(self, name: str, password: str) -> KernelSession | None:
        """Authenticate ``name`` against ``/etc/passwd`` and open a session holding the
        user's set (``exo.kernel.users.session_grants``); None when the name or password
        is wrong. Raises ``UserError`` for a malformed ``/etc/exo/grants.toml``."""
        from exo.kernel.users import UserDatabase

        user = UserDatabase(self.root).authenticate(name, password, dev_mode=self.dev_mode)
        if user is None:
            return None
        session = self._open(user)
        if self._processes is not None:  # the shell's first host program finds it up
            from exo.sandbox.zygote import warm

            warm(self._processes, (session.user, session.host_uid))
        return session

    def open_session(self, user: str, uid: int, home: str,
                     grants: Sequence[Grant] | None) -> KernelSession:
        """A session holding exactly ``grants`` (None: every root capability), for the
        kernel's own front ends that authenticated the user themselves (``login`` is
        the way in for a person)."""
        return self._open_as(user, uid, home, grants)

    def _open_as(self, user: str, uid: int, home: str,
                 grants: Sequence[Grant] | None) -> KernelSession:
        """Open the session, a user's own ``/tmp`` made first (``exo.kernel.tree``)."""
        if uid != 0:
            from exo.kernel import beneath
            from exo.kernel.tree import ensure_instance

            tree = beneath.open_root(self.root)
            try:
                ensure_instance(tree, user)
            except (OSError, ValueError) as exc:
                raise PermissionError(f"{user}: no /tmp of their own could be made: "
                                      f"{getattr(exc, 'strerror', None) or exc}") from None
            finally:
                os.close(tree)
        return self._sessions().open(user, uid, home, grants)

    def console_session(self) -> KernelSession:
        """Root's session for the console the kernel was booted on in script mode (the
        host's user started it: no login). Holds every root capability."""
        return self._sessions().open("root", 0, "/home/root", None)

    def become(self, session: str, name: str, password: str | None) -> KernelSession:
        """``su`` / ``sudo``: a session of user ``name``, derived from that user's own
        set. Root's session needs no password; any other must give ``name``'s (an
        account without a password is never entered this way). ``PermissionError``
        when refused, ``LookupError`` for an unknown user."""
        from exo.kernel.users import UserDatabase

        caller = self._sessions().get(session)
        db = UserDatabase(self.root)
        user = db.get(name)
        if (not caller.everything or user is None) and (
                user is None or not user.password_hash or password is None
                or db.authenticate(name, password, dev_mode=False) is None):
            raise PermissionError("authentication failure")
        return self._open(user)

    def _open(self, user: Any) -> KernelSession:
        from exo.kernel.users import session_grants

        return self._open_as(user.name, user.uid, user.home, session_grants(self.root, user))

    def end_session(self, session: str) -> int:
        """Logout: the session's capabilities, and every one derived from them, are
        revoked. Returns how many were revoked (0 for an unknown session)."""
        return self._sessions().close(session)

    def session(self, session: str) -> KernelSession:
        """The open session ``session`` names (``SessionError`` if none)."""
        return self._sessions().get(session)

    def session_holds(self, session: str, name: str, rights: str) -> bool:
        """Whether the session holds ``name`` with ``rights`` (the kernel's answer)."""
        return self._sessions().holds(session, name, rights)

    def require(self, session: str, name: str, rights: str, what: str) -> None:
        """``SessionError`` (a ``PermissionError``) unless the session holds it."""
        from exo.kernel.sessions import SessionError

        if not self.session_holds(session, name, rights):
            user = self.session(session).user
            raise SessionError(f"permission denied: {what} needs {name}={rights}, which "
                               f"user {user} does not hold")

    def add_user(self, session: str, name: str, password: str) -> Any:
        """``useradd``: needs ``storage://etc/passwd`` WRITE (root's by default)."""
        from exo.kernel.users import UserDatabase

        self.require(session, "storage://etc/passwd", "WRITE", "adding a user")
        return UserDatabase(self.root).add(name, password)

    def set_password(self, session: str, name: str, password: str,
                     current: str | None = None) -> None:
        """``passwd``: anyone's with ``storage://etc/passwd`` WRITE; else one's own, given
        the ``current`` one (as passwd(1) asks it: a terminal left logged in is not
        enough to take the account). ``PermissionError`` when refused."""
        from exo.kernel.users import UserDatabase

        db = UserDatabase(self.root)
        if self.session_holds(session, "storage://etc/passwd", "WRITE"):
            db.set_password(name, password)
            return
        if name != self.session(session).user:
            self.require(session, "storage://etc/passwd", "WRITE",
                         "changing another user's password")
        user = db.get(name)
        if user is not None and user.password_hash and (
                current is None or db.authenticate(name, current, dev_mode=False) is None):
            raise PermissionError("authentication failure: that is not the current "
                                  "password; nothing changed")
        db.set_password(name, password)
