"""AI-Core's router: starts each agent as a sandboxed Exo process and relays connections.

An app asks the kernel for ``agent_connect(NAME)`` holding ``agent://NAME`` with SEND; the
kernel hands it one end of a fresh Fusion Ring channel and the router keeps the other.
The router relays each frame between that channel and the agent's one channel, tagged
with the connection's number (``exo.agents.core.wire``). Frames are sealed end to end
(``exo.agents.core.secure``): the router sees sizes, never contents.

An agent starts on its first connection (socket activation, as systemd does) so that
booting costs nothing; a dead agent fails its connections (the app sees its peer gone)
and is started again by the next one. Everything an app can make the router hold is
bounded: connections per process (with its descendants) and per agent, the size of a
frame. An answer to an app whose channel is full is not waited for, the connection is cut
(one app that never reads must not hold up the agent's other connections); a full pool
towards the agent, which every connection shares, is waited out for at most
``SEND_TIMEOUT_S``; a message carrying capabilities is refused (the kernel's ends of
these channels take none: ``exo.kernel.syscalls.ipc.kernel_end``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from exo.agents.core import registry, wire

READY_TIMEOUT_S = 30.0
SEND_TIMEOUT_S = 5.0
POLL_S = 0.5
MAX_PER_AGENT = 64
MAX_PER_PROCESS = 4
POOL_SIZE = 4 << 20  # each direction's segment: a 1 MiB frame and a few in flight

Service = Callable[[dict[str, Any]], Any]


class AgentUnavailable(LookupError):
    """The agent cannot be reached (not known, failed to start, too many connections)."""


class _Connection:
    __slots__ = ("agent", "closing", "end", "ident", "owners", "pid", "thread")

    def __init__(self, agent: AgentProcess, ident: int, pid: int, end: Any,
                 owners: tuple[int, ...] = ()) -> None:
        self.agent = agent
        self.ident = ident
        self.pid = pid
        self.owners = owners or (pid,)  # the process and its ancestors: each is charged
        self.end = end  # the router's endpoint; the app holds the other
        self.closing = False
        self.thread = threading.Thread(target=self._relay, daemon=True,
                                       name=f"exo-agent-{agent.spec.name}-{ident}")

    def _relay(self) -> None:
        """App → agent, until the app hangs up, the agent closes it, or the router stops."""
        from exo.ipc import IpcError

        try:
            while not self.closing:
                try:
                    data, _ = self.end.recv(timeout=POLL_S)
                except TimeoutError:
                    continue
                body = wire.to_bytes(data)
                if len(body) > wire.MAX_BODY or self.closing:  # closing: revoked meanwhile
                    break
                self.agent.send(wire.DATA, self.ident, body)
        except (IpcError, OSError):  # gone, or broke the protocol (sent capabilities)
            pass
        finally:
            self.agent.forget(self.ident, tell_agent=not self.closing)
            with contextlib.suppress(Exception):
                self.end.close()

    def deliver(self, body: bytes) -> None:
        """Agent → app, on the agent's one reader thread: a reader that does not keep up
        (its channel is full) is cut off, not waited for, so it cannot hold up the
        agent's other connections."""
        try:
            self.end.send(body, timeout=0)
        except Exception:
            self.closing = True


class AgentProcess:
    """One running agent: its process, its channel, its connections."""

    def __init__(self, spec: registry.AgentSpec, proc: Any, endpoint: Any, api: Any,
                 services: dict[str, Service]) -> None:
        from exo.kernel.syscalls.ipc import kernel_end

        self.spec = spec
        self.proc = proc
        self.api = api
        self.ep = kernel_end(endpoint)  # an agent sending capabilities breaks its channel
        self.services = services
        self.conns: dict[int, _Connection] = {}
        self.dead = False
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # the ring has a single producer
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"exo-agent-{spec.name}")
        self._reader.start()

    def send(self, kind: int, ident: int, body: bytes = b"") -> None:
        """One frame to the agent. Its pool is shared by every connection: full (another
        app's large frames the agent has not taken yet) is waited out, up to
        ``SEND_TIMEOUT_S`` (then ``TimeoutError``), never an error of this connection."""
        import time

        data = wire.frame(kind, ident, body)
        deadline = time.monotonic() + SEND_TIMEOUT_S
        pause = 0.0005
        with self._send_lock:
            while True:
                try:
                    self.ep.send(data, timeout=max(0.0, deadline - time.monotonic()))
                    return
                except MemoryError:  # no block free yet: the agent frees them as it reads
                    if time.monotonic() >= deadline or self.dead:
                        raise TimeoutError(f"agent://{self.spec.name} took no frame in "
                                           f"{SEND_TIMEOUT_S:g} s") from None
                    time.sleep(pause)
                    pause = min(2 * pause, 0.01)

    def open(self, pid: int, allowed: Callable[[], bool] | None = None,
             charged: tuple[int, ...] = ()) -> Any:
        """A new connection for ``pid``: the app's endpoint (the router keeps the other).

        It counts against ``pid`` and each process in ``charged`` (its ancestors), each
        of which may hold ``MAX_PER_PROCESS`` with its descendants: an app cannot fill
        the agent's ``MAX_PER_AGENT`` with children.

        ``allowed`` is asked again once the connection is registered: a revocation that
        ran between the caller's check and the registration (and so found nothing to
        ``cut``) makes it fail here; one that runs later cuts it."""
        from exo.kernel.caps.errors import CapabilityDenied
        from exo.kernel.syscalls.ipc import kernel_end
        from exo_std import ipc

        with self._lock:
            if self.dead:
                raise AgentUnavailable(f"agent://{self.spec.name} has stopped")
            if len(self.conns) >= MAX_PER_AGENT:
                raise AgentUnavailable(f"agent://{self.spec.name}: {MAX_PER_AGENT} "
                                       "connections already open")
            owners = charged or (pid,)
            for owner in owners:
                if sum(owner in c.owners for c in self.conns.values()) >= MAX_PER_PROCESS:
                    whose = "" if owner == pid else " with its descendants"
                    raise AgentUnavailable(f"agent://{self.spec.name}: process {owner} "
                                           f"already has {MAX_PER_PROCESS} connections "
                                           f"open{whose}")
            ident = next(self._ids) & wire.MAX_ID
            mine, theirs = ipc.channel(capacity=64, pool_size=POOL_SIZE)
            conn = _Connection(self, ident, pid, kernel_end(mine), owners)
            self.conns[ident] = conn
        if pid > 0:
            mine.peer = pid
        if allowed is not None and not allowed():
            self.forget(ident, tell_agent=False)
            mine.close()
            theirs.close()
            raise CapabilityDenied(f"agent://{self.spec.name}: the capability was revoked "
                                   "while connecting")
        try:
            self.send(wire.OPEN, ident)
        except Exception:
            self.forget(ident, tell_agent=False)
            mine.close()
            theirs.close()
            raise AgentUnavailable(f"agent://{self.spec.name} does not answer") from None
        conn.thread.start()
        return theirs

    def forget(self, ident: int, *, tell_agent: bool) -> None:
        with self._lock:
            conn = self.conns.pop(ident, None)
        if conn is not None and tell_agent and not self.dead:
            with contextlib.suppress(Exception):
                self.send(wire.CLOSE, ident)

    def _read(self) -> None:
        """Agent → router: answers to relay, closes, and the agent's kernel requests."""
        from exo.ipc import IpcError

        try:
            while not self.dead:
                try:
                    data, _ = self.ep.recv(timeout=POLL_S)
                except TimeoutError:
                    continue
                kind, ident, body = wire.parse(data)
                if kind == wire.DATA:
                    conn = self.conns.get(ident)
                    if conn is not None and not conn.closing:
                        conn.deliver(body)
                elif kind == wire.CLOSE:
                    conn = self.conns.get(ident)
                    if conn is not None:
                        conn.closing = True
                elif kind == wire.SYS:
                    self._serve(ident, body)
        except (IpcError, wire.WireError, OSError):
            pass
        finally:
            self.dead = True
            for conn in list(self.conns.values()):
                conn.closing = True

    def _serve(self, rid: int, body: bytes) -> None:
        """A kernel service the agent asked for, if its spec lists it."""
        try:
            request = json.loads(body)
            name = request.get("service") if isinstance(request, dict) else None
            if name not in self.spec.services or name not in self.services:
                raise PermissionError(f"agent://{self.spec.name} may not use {name!r}")
            args = request.get("args")
            reply = self.services[name](args if isinstance(args, dict) else {})
            self.send(wire.SYS_REPLY, rid, json.dumps(reply).encode())
        except Exception as exc:
            with contextlib.suppress(Exception):
                self.send(wire.SYS_ERROR, rid, f"{type(exc).__name__}: {exc}".encode()[:500])

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.send(wire.STOP, 0)
        if self.proc.wait(2.0) is None:
            self.api.interrupt(self.proc, grace=0)
        with contextlib.suppress(Exception):
            self.api.wait(self.proc)
        self.dead = True
        for conn in list(self.conns.values()):
            conn.closing = True
            conn.thread.join(2 * POLL_S + 1)
        self._reader.join(2 * POLL_S + 1)
        self.ep.close()


class AgentCore:
    """The registry of running agents and the router to them, for one kernel."""

    def __init__(self, api: Any, root: Any, services: dict[str, Service] | None = None,
                 python: str = sys.executable) -> None:
        self.api = api  # exo.kernel.api.KernelApi: the one way to start a process
        self.root = root
        self.services = services or {}
        self.python = python  # the runtime's interpreter: PyNaCl and cryptography
        self._agents: dict[str, AgentProcess] = {}
        self._lock = threading.Lock()
        self._stopped = False

    def connect(self, pid: int, name: str, allowed: Callable[[], bool] | None = None,
                charged: tuple[int, ...] = ()) -> list[int]:
        """For the ``agent_connect`` syscall: the 6 descriptors of the app's endpoint
        (copies; the router's originals are released). ``allowed``, ``charged``: see
        ``AgentProcess.open``."""
        end = self._running(name).open(pid, allowed, charged)
        try:
            fds = [os.dup(fd) for fd in end.fds]
        finally:
            end.detach()
        return fds

    def endpoint(self, name: str, pid: int = 0) -> Any:
        """A connected endpoint to agent ``name`` (``pid`` 0: a client inside the kernel,
        such as the shell's assistant, which checks its own capabilities first)."""
        agent = self._running(name)
        return agent.open(pid)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            running = dict(self._agents)
        rows = []
        for name, spec in sorted(registry.AGENTS.items()):
            agent = running.get(name)
            alive = agent is not None and not agent.dead
            rows.append({"name": name, "label": spec.label, "summary": spec.summary,
                         "running": alive, "pid": agent.proc.pid if alive and agent else None,
                         "connections": len(agent.conns) if alive and agent else 0})
        return rows

    def cut(self, allowed: Callable[[int, str], bool]) -> int:
        """Close every app connection whose process no longer holds what ``allowed``
        checks (after a revocation): it stops working at once, mid-use included."""
        with self._lock:
            agents = list(self._agents.values())
        cut = 0
        for agent in agents:
            for conn in list(agent.conns.values()):
                if conn.pid > 0 and not conn.closing and not allowed(conn.pid,
                                                                     agent.spec.name):
                    conn.closing = True
                    cut += 1
        return cut

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            agents = list(self._agents.values())
            self._agents.clear()
        for agent in agents:
            agent.stop()

    def _running(self, name: str) -> AgentProcess:
        spec = registry.spec(name)
        with self._lock:
            if self._stopped:
                raise AgentUnavailable("the AI agents are stopping")
            agent = self._agents.get(name)
            if agent is not None and not agent.dead:
                return agent
            agent = self._start(spec)  # under the lock: one start per agent at a time
            self._agents[name] = agent
            return agent

    def _start(self, spec: registry.AgentSpec) -> AgentProcess:
        from exo.kernel.channel_service import ServiceStartError, start_channel_service
        from exo.kernel.manifest import manifest_from_dict

        manifest = manifest_from_dict({"sandbox": {"capabilities": list(spec.grants)},
                                       "limits": {"memory": spec.memory, "pids": spec.pids}},
                                      f"agent://{spec.name}")
        try:
            proc, a = start_channel_service(
                self.api, [self.python, "-m", "exo.agents.core.runner", spec.name], [],
                manifest=manifest, log=f"var/log/agents/{spec.name}.log", append_log=True,
                ready_kind=lambda frame: wire.parse(frame)[0], ready=wire.READY,
                timeout=READY_TIMEOUT_S, pool_size=POOL_SIZE)
        except ServiceStartError as exc:
            why = f"crashed on start ({exc})" if exc.started else f"cannot start: {exc}"
            raise AgentUnavailable(f"agent://{spec.name}: {why}") from None
        self.api.log(f"agent://{spec.name} started (pid {proc.pid})")
        return AgentProcess(spec, proc, a, self.api, self.services)
