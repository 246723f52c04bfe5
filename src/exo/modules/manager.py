"""The module manager: runs module versions as sandboxed Exo processes and routes each
request to one of them over its Fusion Ring channel, by a traffic split.

Why it works without losing a request: a version stops *accepting* (under its own lock)
before it is drained, so a request either registered with it in time and is answered,
or is refused at once and routed again to a version that accepts; a version whose
process dies fails its in-flight requests with ``InstanceGone`` and they are routed
again too. An upgrade (``upgrade``) starts the new version beside the old, hands the
state over, moves traffic step by step while watching health and error rate, and rolls
back by itself when either goes bad.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exo.kernel.channel_service import last_log_line
from exo.modules import ModuleError, package, wire
from exo.modules.package import ModulePackage

READY_TIMEOUT_S = 15.0
CALL_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 10.0
MAX_ERROR_RATE = 0.05  # of the new version's requests in one step: above it, roll back
PYTHON = "/usr/bin/python3"
#: Supervision: a serving version whose process dies is started again after
#: ``RESTART_BACKOFF_S * 2**n`` (at most ``RESTART_BACKOFF_MAX_S``), at most
#: ``MAX_RESTARTS`` times in ``RESTART_WINDOW_S``; then the module is left failed.
RESTART_BACKOFF_S = 0.1
RESTART_BACKOFF_MAX_S = 5.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


class InstanceGone(Exception):
    """This version no longer takes requests (drained or dead): route the request again."""


class RequestFailed(Exception):
    """The module answered ERROR (its ``handle`` raised): the text it gave."""


class _Call:
    """One request waiting for its answer: a lock held until the reader releases it."""

    __slots__ = ("done", "kind", "reply")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.kind = 0
        self.reply = b""


class Instance:
    """One running version: its process, its channel and its in-flight requests."""

    def __init__(self, mod: ModulePackage, proc: Any, endpoint: Any, api: Any,
                 on_exit: Callable[[Instance], None] | None = None) -> None:
        from exo.kernel.syscalls.ipc import kernel_end

        self.mod = mod
        self.on_exit = on_exit  # told when the process dies (not when it is stopped)
        self.stopping = False
        self.proc = proc
        self.api = api
        # a module sending capabilities breaks its channel (the kernel's end takes none)
        self.ep = kernel_end(endpoint)
        self.accepting = True
        self.requests = 0
        self.errors = 0
        self.started = time.time()
        self._lock = threading.Lock()  # pending and accepting
        self._send = threading.Lock()  # the ring has a single producer
        self._pending: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self._idle = threading.Condition(self._lock)
        self._closing = False
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"exo-module-{mod.name}-{mod.version}")
        self._reader.start()

    @property
    def version(self) -> str:
        return self.mod.version

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def call(self, kind: int, body: bytes = b"", timeout: float = CALL_TIMEOUT_S,
             control: bool = False) -> bytes:
        """Send one frame and wait for its answer. ``control`` frames (health, state)
        pass even while draining."""
        rid, c = self.begin(kind, body, timeout, control)
        return self.finish(rid, c, kind, timeout)

    def begin(self, kind: int, body: bytes, timeout: float = CALL_TIMEOUT_S,
              control: bool = False) -> tuple[int, _Call]:
        """Register and send one frame without waiting (``finish`` waits): a device pump
        sends a burst of frames, then collects the answers."""
        c = _Call()
        with self._lock:
            if not (self.accepting or control) or self._closing:
                raise InstanceGone(self.version)
            rid = next(self._ids)
            self._pending[rid] = c
            if kind == wire.REQUEST:
                self.requests += 1
        try:
            with self._send:
                self.ep.send(wire.frame(kind, rid, body), timeout=timeout)
        except Exception:
            with self._lock:
                if self._pending.pop(rid, None) is not None:
                    self._idle.notify_all()
            raise InstanceGone(self.version) from None
        return rid, c

    def finish(self, rid: int, c: _Call, kind: int, timeout: float = CALL_TIMEOUT_S
               ) -> bytes:
        """Wait for the answer to ``begin``'s frame."""
        if not c.done.acquire(timeout=timeout):
            with self._lock:
                if self._pending.pop(rid, None) is not None:
                    self._idle.notify_all()
            raise TimeoutError(f"{self.mod.name} {self.version}: no answer in {timeout:g} s")
        if c.kind == wire.OK:
            return c.reply
        if c.kind == wire.ERROR:
            if kind == wire.REQUEST:
                self.errors += 1
            raise RequestFailed(c.reply.decode(errors="replace"))
        raise InstanceGone(self.version)

    def _read(self) -> None:
        from exo.ipc import IpcError

        while True:
            try:
                data, _ = self.ep.recv(timeout=0.5)
            except TimeoutError:
                if self._closing:
                    break
                continue
            except (IpcError, OSError, ValueError):
                break  # the process died or the channel closed
            try:
                kind, rid, body = wire.parse(data)
            except (struct.error, ValueError, TypeError):
                break  # not a frame: the module is broken; its requests go elsewhere
            with self._lock:
                c = self._pending.pop(rid, None)
                if not self._pending:
                    self._idle.notify_all()
            if c is not None:
                c.kind, c.reply = kind, body
                c.done.release()
        with self._lock:  # every request still waiting goes elsewhere
            self.accepting = False
            self._closing = True
            pending, self._pending = self._pending, {}
            self._idle.notify_all()
        for c in pending.values():
            c.done.release()  # kind 0: InstanceGone
        if not self.stopping and self.on_exit is not None:
            self.on_exit(self)

    @property
    def alive(self) -> bool:
        return not self._closing and self.proc.status is None

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """Stop accepting, then wait until every in-flight request is answered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self.accepting = False
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def health(self) -> str | None:
        """None when healthy, else why not."""
        if not self.alive:
            return f"process exited ({self.proc.status})" if self.proc.status is not None \
                else "channel closed"
        try:
            self.call(wire.HEALTH, timeout=2.0, control=True)
        except RequestFailed as exc:
            return f"health check failed: {exc}"
        except (InstanceGone, TimeoutError) as exc:
            return f"health check failed: {type(exc).__name__}: {exc}"
        return None

    def stop(self) -> None:
        """Ask the process to end, then make sure it does; release the channel (once)."""
        with self._lock:
            if self.stopping:
                return
            self.stopping = True
            self.accepting = False
        try:
            with self._send:
                if not self._closing:
                    self.ep.send(wire.frame(wire.STOP, 0), timeout=0.5)
        except Exception:
            pass
        if self.proc.wait(2.0) is None:
            self.api.interrupt(self.proc, grace=0)
        with contextlib.suppress(Exception):
            self.api.wait(self.proc)
        self._closing = True
        self._reader.join(2.0)
        self.ep.close()


@dataclass
class Service:
    """A module by name: the versions running, their traffic split, its history."""

    name: str
    service: str
    stable: str  # where traffic falls back to
    scheme: str = "ipc"
    device: Any = None  # exo.modules.devices.Device of a device:// module
    instances: dict[str, Instance] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)  # percent, sum 100
    previous: str | None = None  # what ``rollback`` restores
    last: str = ""  # the last thing that happened, for ``list``
    op_lock: threading.Lock = field(default_factory=threading.Lock)
    restarts: list[float] = field(default_factory=list)  # when the supervisor restarted it
    failed: str = ""  # why supervision gave up, "" while it has not
    changed: threading.Condition = field(default_factory=threading.Condition)
    _route: list[Instance] = field(default_factory=list)
    _tick: itertools.count[int] = field(default_factory=itertools.count)

    def set_weights(self, weights: dict[str, int]) -> None:
        """Publish a new split at once: a 100-slot table the request path indexes."""
        table: list[Instance] = []
        for version, pct in weights.items():
            table += [self.instances[version]] * pct
        # spread the slots so a 10 % canary gets every tenth request, not ten in a row
        order = sorted(range(100), key=lambda i: (i * 37) % 100)
        spread = [table[i] for i in order] if len(table) == 100 else table
        self.weights = dict(weights)
        self._route = spread
        with self.changed:
            self.changed.notify_all()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.service}"

    def pick(self) -> Instance:
        route = self._route
        if not route:
            raise ModuleError(f"{self.name}: no version is serving")
        return route[next(self._tick) % len(route)]


class ModuleManager:
    """Loads, routes, upgrades, rolls back and unloads modules for one kernel."""

    def __init__(self, api: Any, root: Path, boot_id: str = "",
                 measure: bool = True, log: Callable[[str], None] | None = None) -> None:
        self.api = api  # exo.kernel.api.KernelApi: the one way to start a process
        self.root = root
        self.boot_id = boot_id
        self.measure = measure
        self.log = log or (lambda message: None)  # the kernel log
        self._services: dict[str, Service] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- requests
    def request(self, name: str, body: bytes, timeout: float = CALL_TIMEOUT_S) -> bytes:
        """Send ``body`` to module ``name`` and return its answer. A version that is
        draining or dies is skipped; a new version's failure is retried on the stable one
        (and counted against the new version's error rate)."""
        svc = self._services.get(name) or self._service(name)
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            tries += 1
            if tries > 8:  # every version refused: one is being restarted or swapped in
                left = deadline - time.monotonic()
                if left <= 0 or svc.failed or svc.name not in self._services:
                    break
                with svc.changed:
                    svc.changed.wait(min(left, 0.05))
            inst = svc.pick()
            try:
                return inst.call(wire.REQUEST, body, timeout)
            except InstanceGone:
                continue
            except RequestFailed:
                stable = svc.instances.get(svc.stable)
                if stable is None or stable is inst:
                    raise
                try:
                    return stable.call(wire.REQUEST, body, timeout)
                except InstanceGone:
                    continue
        if svc.failed:
            raise ModuleError(f"{svc.name}: not serving: {svc.failed}")
        raise ModuleError(f"{name}: no version accepted the request")

    def request_many(self, name: str, bodies: list[bytes],
                     timeout: float = CALL_TIMEOUT_S) -> list[bytes | Exception]:
        """``request`` for each body, their frames sent as one burst before any answer is
        awaited (a device pump's backlog costs one wake-up of the module, not one per
        frame); answers in order, a failure as its exception. A frame whose version went
        away or failed it takes ``request``'s path (re-routed, or retried on the stable
        version)."""
        svc = self._services.get(name) or self._service(name)
        sent: list[tuple[Instance | None, int, _Call | None]] = []
        for body in bodies:
            try:
                inst = svc.pick()
                sent.append((inst, *inst.begin(wire.REQUEST, body, timeout)))
            except (InstanceGone, ModuleError):
                sent.append((None, 0, None))
        out: list[bytes | Exception] = []
        for body, (owner, rid, c) in zip(bodies, sent, strict=True):
            if owner is not None and c is not None:
                try:
                    out.append(owner.finish(rid, c, wire.REQUEST, timeout))
                    continue
                except (InstanceGone, RequestFailed):
                    pass
                except Exception as exc:  # a timeout: that frame's answer
                    out.append(exc)
                    continue
            try:
                out.append(self.request(name, body, timeout))
            except Exception as exc:
                out.append(exc)
        return out

    # --------------------------------------------------------------- operations
    def load(self, spec: str) -> dict[str, Any]:
        """``exo module load PATH|NAME``: verify, keep, and start it if its module does
        not run yet; a new version of a running module is kept for ``upgrade``."""
        path = Path(spec)
        if spec.endswith(".exopkg") or "/" in spec:
            if not path.is_file():
                raise ModuleError(f"{spec}: no such package file")
            mod = package.keep(self.root, package.verify(self.root, path))
        else:
            mod = package.keep(self.root, package.verify(
                self.root, package.find(self.root, spec)))
        with self._lock:
            svc = self._services.get(mod.name)
        if svc is not None:
            if mod.version in svc.instances:
                raise ModuleError(f"{mod.name} {mod.version} is already loaded")
            svc.last = f"{mod.version} kept for upgrade"
            return {"name": mod.name, "version": mod.version, "started": False,
                    "message": f"{mod.name} {mod.version} verified and kept: exo module "
                               f"upgrade {mod.name} --version {mod.version}"}
        with self._lock:
            clash = next((s for s in self._services.values() if s.service == mod.service
                          and s.scheme == mod.scheme), None)
        if clash is not None:
            raise ModuleError(f"{mod.name}: refused: {mod.url} is served by {clash.name}")
        svc = Service(mod.name, mod.service, mod.version, mod.scheme)
        inst = self._start(mod, svc)
        svc.instances[mod.version] = inst
        svc.set_weights({mod.version: 100})
        svc.last = f"loaded {mod.version}"
        with self._lock:
            if mod.name in self._services:
                inst.stop()
                raise ModuleError(f"{mod.name} was loaded meanwhile")
            self._services[mod.name] = svc
        where = ""
        if mod.scheme == "device":
            from exo.modules import devices

            try:
                svc.device = devices.open_device(mod.service)
            except ModuleError:
                self.unload(mod.name)
                raise
            svc.device.attach(lambda bodies: self.request_many(svc.name, bodies),
                              devices.PUMPS.get(mod.service, 1))
            where = " at " + ", ".join(f"{k} {v}" for k, v in svc.device.describe().items())
        return {"name": mod.name, "version": mod.version, "started": True,
                "pid": inst.proc.pid,
                "message": f"{mod.name} {mod.version} serving {mod.url}{where} "
                           f"(pid {inst.proc.pid})"}

    def upgrade(self, name: str, version: str, canary: int = 10, step: int = 30,
                interval: float = 0.5, max_error_rate: float = MAX_ERROR_RATE
                ) -> dict[str, Any]:
        """Start ``version`` beside the running one, hand the state over, move traffic
        canary → +step every ``interval`` s → 100 %, drain and unload the old version.
        Health or error rate going bad rolls back by itself: the answer says why."""
        svc = self._service(name)
        name = svc.name
        with svc.op_lock:
            old = svc.instances[svc.stable]
            if version == old.version:
                raise ModuleError(f"{name} {version} is already the serving version")
            mod = package.keep(self.root, package.verify(
                self.root, package.find(self.root, name, version)))
            if mod.url != svc.url:
                raise ModuleError(f"{name} {version}: refused: it serves {mod.url}, "
                                  f"not {svc.url}")
            t0 = time.monotonic()
            new = self._start(mod, svc)
            try:
                state = old.call(wire.EXPORT, control=True)
                new.call(wire.IMPORT, state, control=True)
                why = new.health()
                if why is not None:
                    raise ModuleError(f"{name} {version}: refused: {why}")
            except (RequestFailed, InstanceGone, TimeoutError) as exc:
                new.stop()
                raise ModuleError(f"{name} {version}: refused: state hand-over failed: "
                                  f"{exc}") from None
            except ModuleError:
                new.stop()
                raise
            svc.instances[version] = new
            pct = max(1, min(100, canary))
            while True:
                svc.set_weights({old.version: 100 - pct, version: pct} if pct < 100
                                else {version: 100})
                if pct >= 100:
                    break
                base_req, base_err = new.requests, new.errors
                time.sleep(interval)
                why = new.health()
                seen, failed = new.requests - base_req, new.errors - base_err
                if why is None and seen and failed / seen > max_error_rate:
                    why = (f"error rate {failed}/{seen} = {failed / seen:.0%} at {pct} % "
                           f"of traffic, above {max_error_rate:.0%}")
                if why is not None:
                    return self._abort(svc, old, new, why)
                pct = 100 if step <= 0 else min(100, pct + step)
            swap_ms = self._retire(svc, old)
            svc.stable, svc.previous = version, old.version
            svc.last = f"upgraded {old.version} → {version}"
            return {"name": name, "from": old.version, "to": version, "rolled_back": None,
                    "swap_ms": swap_ms, "total_ms": (time.monotonic() - t0) * 1000,
                    "message": f"{name} upgraded {old.version} → {version} "
                               f"(swap {swap_ms:.1f} ms)"}

    def rollback(self, name: str) -> dict[str, Any]:
        """Back to the version before the last upgrade, all traffic at once."""
        svc = self._service(name)
        name = svc.name
        with svc.op_lock:
            if svc.previous is None:
                raise ModuleError(f"{name}: nothing to roll back to (no upgrade yet)")
            current = svc.instances[svc.stable]
            mod = package.keep(self.root, package.verify(
                self.root, package.find(self.root, name, svc.previous)))
            back = self._start(mod, svc)
            try:
                back.call(wire.IMPORT, current.call(wire.EXPORT, control=True), control=True)
            except (RequestFailed, InstanceGone, TimeoutError) as exc:
                back.stop()
                raise ModuleError(f"{name}: rollback failed: state hand-over: {exc}") from None
            svc.instances[back.version] = back
            svc.set_weights({back.version: 100})
            swap_ms = self._retire(svc, current)
            svc.stable, svc.previous = back.version, current.version
            svc.last = f"rolled back {current.version} → {back.version}"
            return {"name": name, "from": current.version, "to": back.version,
                    "swap_ms": swap_ms,
                    "message": f"{name} rolled back {current.version} → {back.version} "
                               f"(swap {swap_ms:.1f} ms)"}

    def unload(self, name: str) -> dict[str, Any]:
        svc = self._service(name)
        name = svc.name
        with svc.op_lock:
            with self._lock:
                self._services.pop(name, None)
            if svc.device is not None:  # no new traffic; what is in flight is answered
                svc.device.close()
            for inst in list(svc.instances.values()):
                inst.drain()
                inst.stop()
            svc.instances.clear()
            svc.set_weights({})
        return {"name": name, "message": f"{name} unloaded"}

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            services = list(self._services.values())
        rows = []
        for svc in services:
            versions = [{"version": v, "traffic": svc.weights.get(v, 0), "pid": i.proc.pid,
                         "health": i.health() or "ok", "requests": i.requests,
                         "errors": i.errors, "in_flight": i.in_flight}
                        for v, i in list(svc.instances.items())]
            row: dict[str, Any] = {"name": svc.name, "service": svc.url,
                                   "stable": svc.stable, "previous": svc.previous,
                                   "versions": versions, "last": svc.last,
                                   "restarts": len(svc.restarts), "failed": svc.failed or None}
            if svc.device is not None:
                row["device"] = {**svc.device.describe(), **svc.device.stats()}
            rows.append(row)
        return rows

    def stop(self) -> None:
        """At shutdown: every module's processes."""
        with self._lock:
            names = list(self._services)
        for name in names:
            with contextlib.suppress(ModuleError):
                self.unload(name)

    def service_named(self, name: str) -> Service:
        """The loaded module ``name`` (package or service name); ModuleError if none."""
        return self._service(name)

    # ---------------------------------------------------------------- internals
    def _service(self, name: str) -> Service:
        """By package name, or by the service it provides (``net/loop`` for
        ``ipc://net/loop``: package names cannot hold a ``/``)."""
        with self._lock:
            svc = self._services.get(name) or next(
                (s for s in self._services.values() if s.service == name), None)
        if svc is None:
            raise ModuleError(f"{name}: no such module loaded")
        return svc

    def _abort(self, svc: Service, old: Instance, new: Instance, why: str) -> dict[str, Any]:
        """The automatic rollback: all traffic back to ``old``, ``new`` drained and gone."""
        svc.set_weights({old.version: 100})
        new.drain()
        new.stop()
        del svc.instances[new.version]
        svc.last = f"upgrade to {new.version} rolled back: {why}"
        return {"name": svc.name, "from": old.version, "to": new.version, "rolled_back": why,
                "message": f"{svc.name}: upgrade to {new.version} rolled back: {why}"}

    def _retire(self, svc: Service, old: Instance) -> float:
        """Drain ``old`` (no traffic routes to it any more) and stop it; the swap time is
        from the last routing change to its last in-flight answer."""
        t = time.monotonic()
        old.drain()
        swap_ms = (time.monotonic() - t) * 1000
        old.stop()
        svc.instances.pop(old.version, None)
        return swap_ms

    def _start(self, mod: ModulePackage, svc: Service | None = None) -> Instance:
        """Start ``mod``'s process with exactly its manifest's capabilities (plus reading
        its own files), measure it, and wait for READY; refuse it with one line if it
        crashes on start."""
        from exo.kernel.channel_service import ServiceStartError, start_channel_service
        from exo.kernel.manifest import manifest_from_dict, parse_grant
        from exo.pkg import format as fmt

        raw = fmt.parse_manifest(mod.manifest_bytes).raw
        manifest = manifest_from_dict({k: raw[k] for k in ("sandbox", "limits") if k in raw},
                                      mod.name)
        own = parse_grant(f"storage://exo/modules/{mod.name}/{mod.version}=READ,EXECUTE")
        data = self.root / "var" / "lib" / "modules" / mod.name
        data.mkdir(parents=True, exist_ok=True)
        self._measure(mod)
        entry = f"/exo/modules/{mod.name}/{mod.version}/{mod.entry}"
        if mod.kind == "wasm":  # wasmtime lives in the kernel's environment, not the system's
            from exo.modules.wasm import runner_argv

            argv = runner_argv(sys.executable, entry, raw)
        else:
            argv = [PYTHON, "-m", "exo.modules.runner", entry]
        try:
            proc, a = start_channel_service(
                self.api, argv, [own], manifest=manifest, log=self._log(mod),
                append_log=False, ready_kind=lambda frame: wire.parse(frame)[0],
                ready=wire.READY, timeout=READY_TIMEOUT_S)
        except ServiceStartError as exc:
            why = f"crashed on start ({exc})" if exc.started else f"cannot start: {exc}"
            raise ModuleError(f"{mod.name} {mod.version}: refused: {why}") from None
        on_exit = None if svc is None else (lambda inst: self._died(svc, inst))
        return Instance(mod, proc, a, self.api, on_exit)

    # -------------------------------------------------------------- supervision
    def _died(self, svc: Service, inst: Instance) -> None:
        """A version's process ended without being stopped: restart it (off the reader
        thread, which is the one telling us). A thread, not a task of the kernel's
        scheduler: the restart blocks in waitid on the dead process and then for up to
        READY_TIMEOUT_S (15 s) in the new one's ring recv and the sandbox's spawn, system calls
        that would stall every task on that one thread; it is one-shot, only on a crash."""
        threading.Thread(target=self._restart, args=(svc, inst), daemon=True,
                         name=f"exo-module-restart-{svc.name}").start()

    def _restart(self, svc: Service, dead: Instance) -> None:
        status = dead.proc.wait(2.0)
        why = f"{svc.name} {dead.version}: process exited ({status}): " \
              f"{last_log_line(self.root, self._log(dead.mod)) or 'no log line'}"
        now = time.monotonic()
        svc.restarts[:] = [t for t in svc.restarts if now - t < RESTART_WINDOW_S]
        if len(svc.restarts) >= MAX_RESTARTS:
            svc.failed = (f"{dead.version} crashed {len(svc.restarts) + 1} times in "
                          f"{RESTART_WINDOW_S:g} s; not restarted (exo module unload "
                          f"{svc.name}, then load a fixed version)")
            svc.last = svc.failed
            self.log(f"module {why}; {svc.failed}")
            with svc.changed:
                svc.changed.notify_all()
            return
        delay = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** len(svc.restarts))
        svc.restarts.append(now)
        self.log(f"module {why}; restart {len(svc.restarts)}/{MAX_RESTARTS} in "
                 f"{delay:.1f} s")
        time.sleep(delay)
        with svc.op_lock:
            if self._services.get(svc.name) is not svc or \
                    svc.instances.get(dead.version) is not dead:
                dead.stop()  # retired or unloaded meanwhile: nothing to restart
                return
            try:
                fresh = self._start(dead.mod, svc)
            except ModuleError as exc:  # counted as one more crash: backoff, then the limit
                self.log(f"module {svc.name} {dead.version}: restart failed: {exc}")
                self._died(svc, dead)
                return
            svc.instances[dead.version] = fresh
            svc.set_weights(dict(svc.weights))
            svc.last = f"{dead.version} restarted after a crash (pid {fresh.proc.pid})"
            self.log(f"module {svc.name} {dead.version} restarted (pid {fresh.proc.pid})")
        dead.stop()

    @staticmethod
    def _log(mod: ModulePackage) -> str:
        """A version's log, relative to the Exo tree (opened beneath it, no link followed)."""
        return f"var/log/modules/{mod.name}-{mod.version}.log"

    def _measure(self, mod: ModulePackage) -> None:
        """Each load goes into this boot's measured event log (and PCR 23 with a TPM)."""
        if not self.measure or os.environ.get("EXO_TPM", "").lower() == "off":
            return
        from exo.security import tpm

        tpm.measure_more(self.root, "module", f"{mod.name} {mod.version}", mod.digest,
                         boot_id=self.boot_id)
