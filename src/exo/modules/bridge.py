"""Apps reaching a module's service: the kernel's end of the channels ``open_service``
hands out (``exo.kernel.syscalls.ipc.open_service``; the app's end: ``exo.modules.client``).

Each opened service is one Fusion Ring channel and one kernel thread that reads the app's
frames (``exo.modules.wire``: REQUEST with an id and a body), sends each through the
module router (``ModuleManager.request``: the split, draining and re-routing apply, so an
app never sees an upgrade) and answers OK or ERROR with the same id. Everything the app
writes is hostile: a frame that does not parse or is not a REQUEST gets an ERROR answer,
one request is in flight per channel (the thread answers before it reads again), and a
process may hold at most ``MAX_PER_PROCESS`` channels with its descendants (a channel
counts against every ancestor, so children do not multiply it), the kernel at most
``MAX_TOTAL``, so an app cannot make the kernel spend threads or memory without bound. A
frame carrying capabilities ends the channel (the kernel's end takes none). The thread ends
when the app closes its end or dies, when the module is unloaded or at shutdown.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from typing import Any

from exo.modules import ModuleError, wire

MAX_PER_PROCESS = 16
MAX_TOTAL = 1024
POLL_S = 0.5  # how often an idle bridge looks whether it should end
CHANNEL_SLOTS = 64
CHANNEL_POOL = 1 << 20  # bytes each direction may have in flight zero-copy


class ServiceBridges:
    """The ``ServiceDirectory`` the syscall server knows (``SyscallHost.services``)."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager  # exo.modules.manager.ModuleManager
        self._lock = threading.Lock()
        self._by_pid: dict[int, int] = {}
        self._open: set[_Bridge] = set()
        self._closed = False

    def open(self, pid: int, service: str,
             charged: tuple[int, ...] = ()) -> tuple[dict[str, Any], list[int]]:
        """A channel to ipc://``service`` for process ``pid``: (reply, its 6 fds). The
        caller has checked the capability; this checks the service and the bounds
        (``charged``: ``pid`` and its ancestors, each counted)."""
        from exo.kernel.caps.errors import QuotaExceeded
        from exo.kernel.syscalls.ipc import kernel_end
        from exo_std import ipc

        try:
            svc = self.manager.service_named(service)
        except ModuleError as exc:  # NOT_FOUND for the app
            raise LookupError(str(exc)) from None
        if svc.scheme != "ipc":
            raise ValueError(f"{svc.url} is a device, not a service a process opens "
                             "(exo module list shows where it is reached)")
        with self._lock:
            if self._closed:
                raise LookupError("the module manager is stopping")
            owners = charged or (pid,)
            for owner in owners:
                held = self._by_pid.get(owner, 0)
                if held >= MAX_PER_PROCESS:
                    whose = "" if owner == pid else " with its descendants"
                    raise QuotaExceeded("module services", MAX_PER_PROCESS,
                                        f"process {owner} has {held} module services "
                                        f"open{whose} (close one first)")
            if len(self._open) >= MAX_TOTAL:
                raise QuotaExceeded("module channels", MAX_TOTAL,
                                    f"the kernel serves {MAX_TOTAL} module channels")
            for owner in owners:
                self._by_pid[owner] = self._by_pid.get(owner, 0) + 1
        try:
            a, b = ipc.channel(capacity=CHANNEL_SLOTS, pool_size=CHANNEL_POOL)
        except BaseException:
            self._forget(owners)
            raise
        a.peer = pid
        kernel_end(a)  # a frame carrying capabilities ends the channel
        out = [os.dup(fd) for fd in b.fds]  # sent with the reply, then closed here
        b.detach()
        bridge = _Bridge(self, pid, owners, svc.name, a)
        with self._lock:
            self._open.add(bridge)
        bridge.start()
        return {"service": svc.url, "module": svc.name, "version": svc.stable}, out

    def _forget(self, owners: tuple[int, ...]) -> None:
        with self._lock:
            for pid in owners:
                left = self._by_pid.get(pid, 0) - 1
                if left > 0:
                    self._by_pid[pid] = left
                else:
                    self._by_pid.pop(pid, None)

    def _ended(self, bridge: _Bridge) -> None:
        with self._lock:
            self._open.discard(bridge)
        self._forget(bridge.owners)

    def count(self, pid: int | None = None) -> int:
        with self._lock:
            return len(self._open) if pid is None else self._by_pid.get(pid, 0)

    def close(self) -> None:
        """At shutdown: every bridge ends (its app's next recv sees the peer closed)."""
        with self._lock:
            self._closed = True
            bridges = list(self._open)
        for b in bridges:
            b.stop()


class _Bridge:
    def __init__(self, owner: ServiceBridges, pid: int, owners: tuple[int, ...], name: str,
                 endpoint: Any) -> None:
        self.owner = owner
        self.pid = pid
        self.owners = owners  # pid and its ancestors, each charged for this channel
        self.name = name
        self.ep = endpoint
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"exo-module-bridge-{pid}-{name}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(POLL_S * 4)

    def _run(self) -> None:
        from exo.ipc import IpcError
        from exo.modules.manager import RequestFailed

        try:
            while not self._stop.is_set():
                try:
                    data, _ = self.ep.recv(timeout=POLL_S)
                except TimeoutError:
                    continue
                except (IpcError, OSError, ValueError):
                    return  # the app closed its end or died
                try:
                    kind, rid, body = wire.parse(data)
                except (struct.error, ValueError, TypeError):
                    self._answer(wire.ERROR, 0, b"ProtocolError: not a module frame")
                    continue
                if kind != wire.REQUEST:
                    self._answer(wire.ERROR, rid, f"ProtocolError: frame kind {kind} is not "
                                 "a request".encode())
                    continue
                try:
                    reply = self.owner.manager.request(self.name, body)
                except RequestFailed as exc:
                    self._answer(wire.ERROR, rid, str(exc).encode()[:1024])
                except (ModuleError, TimeoutError) as exc:
                    self._answer(wire.ERROR, rid, f"{type(exc).__name__}: {exc}"
                                 .encode()[:1024])
                else:
                    self._answer(wire.OK, rid, reply)
        finally:
            with contextlib.suppress(Exception):
                self.ep.close()
            self.owner._ended(self)

    def _answer(self, kind: int, rid: int, body: bytes) -> None:
        from exo.ipc import IpcError

        try:
            self.ep.send(wire.frame(kind, rid, body), timeout=POLL_S * 4)
        except (IpcError, OSError, ValueError, TimeoutError):
            self._stop.set()  # an app that does not read its answers loses its channel
