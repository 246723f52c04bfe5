"""The control socket: how ``exo run``/``exo ps``/``exo shutdown`` reach a running kernel.

A SOCK_SEQPACKET Unix socket at ``<root>/var/run/kernel.sock`` (mode 0600: only the
user who booted the kernel may talk to it). ``run`` passes the caller's stdin,
stdout and stderr with SCM_RIGHTS, so the sandboxed process writes straight to the
caller's terminal; if the caller goes away, the process is killed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import threading
from pathlib import Path

from exo.abi import ProtocolError, recv_message, send_message
from exo.abi.errors import ErrorCode, SyscallError, code_of

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from exo.kernel.api import KernelApi
    from exo.modules.manager import ModuleManager


class KernelError(RuntimeError):
    """The running kernel refused or failed a request: ``kind`` is the exception it raised."""

    def __init__(self, kind: str, message: str, errno: int | None = None,
                 code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.errno = errno
        self.code = code  # the exo.abi.ErrorCode of the refusal


class KernelNotRunning(Exception):
    pass


class KernelBusy(Exception):
    """Another kernel already runs on this Exo root."""


def socket_path(root: Path) -> Path:
    return root / "var" / "run" / "kernel.sock"


def lock_path(root: Path) -> Path:
    return root / "var" / "run" / "kernel.lock"


def running_kernel(root: Path) -> str | None:
    """The pid of the kernel running on ``root`` (it holds ``kernel.lock``), else None.

    Probed with a non-blocking lock taken and released at once, so a second ``exo boot``
    refuses before it builds anything; the lock the syscall server step takes stays
    the one guarantee that two kernels never share a root."""
    try:
        fd = os.open(lock_path(root), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no kernel has run here, or it shut down cleanly
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)
    return None


#: The ControlServer method serving each control operation; its row is in
#: exo.abi.syscalls (tests/unit/test_syscall_table.py keeps the two in agreement).
CONTROL_METHODS = {"ping": "_ping", "ps": "_ps", "shutdown": "_shutdown", "run": "_run",
                   "module_load": "_module", "module_list": "_module",
                   "module_upgrade": "_module", "module_rollback": "_module",
                   "module_unload": "_module"}


class ControlServer:
    def __init__(self, kernel: KernelApi, root: Path) -> None:
        self.kernel = kernel  # the kernel as its front ends see it: exo.kernel.api
        self.root = root
        self.path = socket_path(root)
        self._lock_fd = -1
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self.modules: ModuleManager | None = None  # set by the "Module manager" boot step

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(self.root), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise KernelBusy(f"a kernel (pid {holder}) is already running on "
                             f"{self.root}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # stale: we hold the lock, so its kernel is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(16)
        self._sock = sock
        t = threading.Thread(target=self._accept, name="exo-control", daemon=True)
        t.start()

    def _accept(self) -> None:
        """Accept until close(). Every error but the socket's own closing is survived:
        out of descriptors (EMFILE/ENFILE) or memory, the loop backs off and tries
        again, and the pending connection is served once descriptors come back."""
        assert self._sock is not None
        sock = self._sock
        backoff = 0.0
        while not self._closing.is_set():
            try:
                conn, _ = sock.accept()
            except OSError as exc:
                if self._closing.is_set() or exc.errno in (errno.EBADF, errno.EINVAL):
                    return  # the socket was closed: shutdown
                if exc.errno in (errno.EINTR, errno.ECONNABORTED):
                    continue  # a signal, or a client that left before we took it
                # Out of descriptors, memory...: wait and retry; the connection stays
                # queued in the backlog until then.
                if not backoff:
                    self.kernel.log(f"control: accept failed ({exc.strerror}); "
                                    "retrying until resources come back")
                backoff = min(0.5, backoff * 2 or 0.01)
                self._closing.wait(backoff)
                continue
            if backoff:
                self.kernel.log("control: accepting connections again")
                backoff = 0.0
            try:
                t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                     name="exo-control-conn")
                t.start()
            except RuntimeError as exc:  # can't start new thread: refuse this one only
                self.kernel.log(f"control: cannot serve a connection ({exc})")
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    got = recv_message(conn)
                except (OSError, ProtocolError):
                    return
                if got is None:
                    return
                msg, fds = got
                try:
                    result = self._handle(conn, msg.get("op"), msg.get("args") or {}, fds)
                    reply: dict[str, Any] = {"ok": True, "result": result}
                except Exception as exc:  # every failure goes back to the caller
                    code = code_of(exc) or ErrorCode.INTERNAL
                    reply = {"ok": False, "error": type(exc).__name__, "code": int(code),
                             "message": str(exc), "errno": getattr(exc, "errno", None)}
                finally:
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                try:
                    send_message(conn, reply)
                except OSError:
                    return

    def _handle(self, conn: socket.socket, op: object, args: object,
                fds: list[int]) -> Any:
        """Serve one request, its arguments checked against its row of the syscall table
        (``exo.abi.syscalls``, channel "control") first."""
        from exo.abi.syscalls import CONTROL_OPS  # at the first request: off the boot path

        row = CONTROL_OPS.get(op) if isinstance(op, str) else None
        if row is None:
            raise SyscallError(f"unknown control operation {str(op)[:64]!r}",
                               ErrorCode.UNKNOWN_SYSCALL)
        if not isinstance(args, dict):
            raise SyscallError("a request's args must be an object", ErrorCode.PROTOCOL)
        args = row.validate(args)
        lo, hi = row.fds_in
        if not lo <= len(fds) <= hi:
            raise SyscallError(f"{op} takes {lo}..{hi} descriptors, not {len(fds)}")
        method: Callable[[socket.socket, dict[str, Any], list[int]], Any] = getattr(
            self, CONTROL_METHODS[row.name])
        if row.name.startswith("module_"):
            args = {**args, "_op": row.name.removeprefix("module_")}
        return method(conn, args, fds)

    def _ping(self, conn: socket.socket, args: dict[str, Any], fds: list[int]) -> Any:
        return {"pid": os.getpid(), "boot_id": self.kernel.boot_id}

    def _ps(self, conn: socket.socket, args: dict[str, Any], fds: list[int]) -> Any:
        return self.kernel.process_rows()

    def _shutdown(self, conn: socket.socket, args: dict[str, Any], fds: list[int]) -> Any:
        self.kernel.request_shutdown()
        os.kill(os.getpid(), signal.SIGTERM)
        return {}

    def _run(self, conn: socket.socket, args: dict[str, Any], fds: list[int]) -> Any:
        """``exo run`` on this kernel: the caller's stdio, its argv, capabilities and
        manifest; its process is killed if the caller hangs up."""
        from exo.kernel.manifest import manifest_from_dict, parse_grant

        # args and fds were checked against the row of "run" (_handle): stdin, stdout,
        # stderr; a non-empty argv of strings; caps a list of strings
        argv = args["argv"]
        manifest = manifest_from_dict(args["manifest"], args["manifest_path"] or "manifest") \
            if args["manifest"] else None
        grants = [parse_grant(c) for c in args["caps"]]
        proc = self.kernel.start(argv, grants, manifest=manifest, stdio=(fds[0], fds[1], fds[2]),
                                 cwd=args["cwd"] or "/")
        poller = select.poll()
        poller.register(conn, select.POLLIN | select.POLLHUP)
        # the caller hung up (or sent something): kill the process at once
        status = self.kernel.wait(proc, cancelled=lambda: bool(poller.poll(0)), grace=0)
        return {"status": status, "pid": proc.pid}

    def _module(self, conn: socket.socket, args: dict[str, Any], fds: list[int]) -> Any:
        """``exo module ...``: the module manager's operation of the same name."""
        manager = self.modules
        if manager is None:
            raise LookupError("the module manager is not running (its boot step is "
                              "deferred: try again in a moment, or see dmesg)")
        op = str(args.pop("_op"))
        if op == "load":
            return manager.load(args["spec"])
        if op == "list":
            return manager.list()
        if op == "upgrade":
            return manager.upgrade(args["name"], args["version"], canary=args["canary"],
                                   step=args["step"], interval=args["interval"] or 0.0)
        if op == "rollback":
            return manager.rollback(args["name"])
        return manager.unload(args["name"])

    def close(self) -> None:
        self._closing.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
            with contextlib.suppress(FileNotFoundError):
                lock_path(self.root).unlink()


class ControlClient:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def connect(cls, root: str | os.PathLike[str] | None) -> ControlClient:
        from exo.kernel.config import resolve_root

        path = socket_path(resolve_root(root))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise KernelNotRunning(f"no kernel is running on {path.parent.parent.parent}"
                                   " (start one with `exo boot`)") from None
        return cls(sock)

    def call(self, op: str, fds: list[int] | None = None, **args: Any) -> Any:
        with self._sock:
            send_message(self._sock, {"op": op, "args": args}, fds)
            got = recv_message(self._sock)
        if got is None:
            if op == "shutdown":
                return {}
            raise KernelNotRunning("the kernel closed the control connection")
        msg, extra = got
        for fd in extra:
            os.close(fd)
        if not msg.get("ok"):
            err, code = msg.get("errno"), msg.get("code")
            raise KernelError(str(msg.get("error")), str(msg.get("message")),
                              err if isinstance(err, int) else None,
                              code if isinstance(code, int) else None)
        return msg.get("result")
