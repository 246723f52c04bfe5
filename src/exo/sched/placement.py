"""Eco++ placement: CPU affinity and cgroup CPU weight of Exo processes from how they behave.

The predictive scheduler classes its tasks by burst length; one level up, AI-Res's
one-second sampler (``exo.agents.res.ResourceMonitor``, the single sampler of process
CPU) classes each Exo process by its CPU share's EMA, with the same α and the same
names: hot (mostly waiting: interactive), normal, cold (CPU-bound: batch). After each
sample it hands those stats to ``Placer.update``, which turns a class into a *role* and a
role into a CPU set and a weight (``plan``):

* **interactive** (hot): the cores batch work never gets (the last quarter of the CPUs,
  at least one, on identical cores; the efficiency cores on a heterogeneous machine), and
  a high weight (v1 ``cpu.shares`` 2048, v2 ``cpu.weight`` 200): when it wakes, a core
  with nothing CPU-bound on it is there;
* **batch** (cold): confined to the other cores (the performance cores), low weight (256 /
  25);
* **normal**: every CPU, the default weight.

Migrations are kept few: a process is placed once it has a measured rate, and moves to
another role only after the new class has been seen ``SETTLE`` samples in a row; nothing
is written when the placement already holds. A user overrides a process's role from the
shell (``sched place PID batch|interactive|auto``); an override sticks until ``auto``
or the process ends. Affinity is set on every thread of the processes of the Exo
process's own cgroup (not its child groups: an Exo child is placed on its own). On one
CPU there is nothing to separate: only the weights apply.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from exo.sched.topology import Topology
from exo.sched.topology import read as read_topology

ROLES = ("interactive", "normal", "batch")
MODES = ("interactive", "batch", "auto")
ROLE_OF_CLASS = {"hot": "interactive", "normal": "normal", "cold": "batch"}
WEIGHTS = {"interactive": (2048, 200), "normal": (1024, 100), "batch": (256, 25)}  # v1, v2
SETTLE = 2  # samples in a row a new class must hold before a placed process moves
MAX_TIDS = 1024  # threads per process touched per update: bounded work per sample

_RUNNING: dict[str, Placer] = {}
_RUNNING_LOCK = threading.Lock()


def running(boot_id: str) -> Placer | None:
    """The placer of the kernel booted as ``boot_id`` (None: the agents step is not up)."""
    with _RUNNING_LOCK:
        return _RUNNING.get(boot_id)


def plan(topology: Topology) -> dict[str, list[int]]:
    """The CPUs of each role on this machine (see the module doc)."""
    cpus = topology.cpus
    if len(cpus) < 2:
        return {role: list(cpus) for role in ROLES}
    if topology.heterogeneous:
        return {"interactive": list(topology.efficiency), "normal": list(cpus),
                "batch": list(topology.performance)}
    reserved = max(1, len(cpus) // 4)
    return {"interactive": cpus[-reserved:], "normal": list(cpus), "batch": cpus[:-reserved]}


class Decision:
    """The role history of one process: what it is placed as, and the pending change."""

    __slots__ = ("candidate", "role", "streak")

    def __init__(self) -> None:
        self.role: str | None = None
        self.candidate: str | None = None
        self.streak = 0

    def observe(self, klass: str) -> bool:
        """Fold in one sample's class; True when the role changes."""
        want = ROLE_OF_CLASS.get(klass, "normal")
        if self.role is None:
            self.role = want
            return True
        if want == self.role:
            self.candidate, self.streak = None, 0
            return False
        if want != self.candidate:
            self.candidate, self.streak = want, 0
        self.streak += 1
        if self.streak >= SETTLE:
            self.role, self.candidate, self.streak = want, None, 0
            return True
        return False


class _Placed:
    __slots__ = ("applied", "command", "cpu_ema", "decision", "klass", "moves", "override",
                 "weight")

    def __init__(self) -> None:
        self.decision = Decision()
        self.override: str | None = None
        self.applied: str | None = None  # the role last written
        self.weight: int | None = None
        self.klass = "-"
        self.cpu_ema = 0.0
        self.moves = 0
        self.command = ""

    @property
    def role(self) -> str | None:
        return self.override or self.decision.role


class Placer:
    """Applies placement to the live Exo processes; thread-safe (sampler and shell)."""

    def __init__(self, boot_id: str, topology: Topology | None = None,
                 enabled: bool = True, processes: Any = None) -> None:
        self.boot_id = boot_id
        self.processes = processes  # has live(): a process started since the last sample
        self.topology = topology if topology is not None else read_topology()
        self.cpus = plan(self.topology)
        self.enabled = enabled
        self.errors = 0
        self._placed: dict[int, _Placed] = {}
        self._procs: dict[int, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    def register(self) -> None:
        with _RUNNING_LOCK:
            _RUNNING[self.boot_id] = self

    def unregister(self) -> None:
        with _RUNNING_LOCK:
            if _RUNNING.get(self.boot_id) is self:
                del _RUNNING[self.boot_id]

    # ------------------------------------------------------------ the sampler's hook
    def update(self, stats: dict[int, dict[str, Any]], live: list[Any]) -> None:
        """One sample: ``stats`` as ``ResourceMonitor.stats()`` (``samples`` = rates
        measured so far), ``live`` the process table's live processes."""
        with self._lock:
            seen = set()
            for proc in live:
                pid = int(proc.pid)
                seen.add(pid)
                s = stats.get(pid)
                placed = self._placed.get(pid)
                if placed is None:
                    placed = self._placed[pid] = _Placed()
                self._procs[pid] = proc
                placed.command = " ".join(str(a) for a in getattr(proc, "argv", [])[:4])
                if s is None or int(s.get("samples", 1)) < 1:
                    if placed.override is None:
                        continue  # not measured yet: left where it started
                else:
                    placed.klass = str(s.get("class", "-"))
                    placed.cpu_ema = float(s.get("cpu_ema", 0.0))
                    placed.decision.observe(placed.klass)
                self._apply(pid, placed)
            for pid in [p for p in self._placed if p not in seen]:
                del self._placed[pid]
                self._procs.pop(pid, None)

    def override(self, pid: int, mode: str) -> dict[str, Any]:
        """``sched place PID MODE``: pin the role (or ``auto``: back to measurement)."""
        if mode not in MODES:
            raise ValueError(f"placement mode must be one of {', '.join(MODES)}, not {mode!r}")
        if pid not in self._placed and self.processes is not None:
            proc = next((p for p in self.processes.live() if int(p.pid) == pid), None)
            if proc is not None:
                self.track(proc)
        with self._lock:
            placed = self._placed.get(pid)
            if placed is None:
                raise KeyError(pid)
            placed.override = None if mode == "auto" else mode
            self._apply(pid, placed, force=True)
            return self._row(pid, placed)

    def track(self, proc: Any) -> None:
        """Know a process before its first sample (so it can be overridden at once)."""
        with self._lock:
            pid = int(proc.pid)
            self._procs[pid] = proc
            self._placed.setdefault(pid, _Placed())

    def set_enabled(self, enabled: bool) -> None:
        """Off: every placed process back to all CPUs and the default weight."""
        with self._lock:
            self.enabled = enabled
            for pid, placed in self._placed.items():
                self._apply(pid, placed, force=True)

    # ------------------------------------------------------------ applying
    def _apply(self, pid: int, placed: _Placed, force: bool = False) -> None:
        role = placed.role if self.enabled else "normal"
        if role is None:
            return
        proc = self._procs.get(pid)
        if proc is None:
            return
        if role != placed.applied:
            if placed.applied is not None:
                placed.moves += 1
            placed.applied = role
            force = True
        cpus = set(self.cpus[role])
        for hp in _own_pids(proc):
            for tid in _tids(hp):
                try:
                    if force or os.sched_getaffinity(tid) != cpus:
                        os.sched_setaffinity(tid, cpus)
                except (ProcessLookupError, PermissionError, OSError):
                    self.errors += 1
        if force or placed.weight is None:
            placed.weight = _set_weight(proc, role)

    # ------------------------------------------------------------ views
    def _row(self, pid: int, placed: _Placed) -> dict[str, Any]:
        role = placed.applied
        return {"pid": pid, "class": placed.klass, "cpu_ema": round(placed.cpu_ema, 1),
                "role": role or "unplaced",
                "mode": "override" if placed.override else "auto",
                "cpus": self.cpus[role] if role else [], "weight": placed.weight,
                "moves": placed.moves, "command": placed.command}

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._row(pid, p) for pid, p in sorted(self._placed.items())]

    def summary(self) -> str:
        """One line: the machine and what each role gets on it."""
        t = self.topology
        c = self.cpus
        if len(t.cpus) < 2:
            where = "one CPU: weights only, no affinity"
        else:
            small = "efficiency" if t.heterogeneous else "reserved"
            where = (f"interactive on {small} CPU {_list(c['interactive'])}, batch confined "
                     f"to CPU {_list(c['batch'])}, normal on {_list(c['normal'])}")
        state = "on" if self.enabled else "off"
        eff = "" if t.heterogeneous else "; no efficiency cores to prefer"
        return f"placement (Eco++) {state}: {t.describe()}{eff}; {where}"

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "topology": self.topology.to_json(),
                "cpus": self.cpus, "weights": {r: {"v1_shares": w[0], "v2_weight": w[1]}
                                               for r, w in WEIGHTS.items()},
                "errors": self.errors, "processes": self.rows()}


def _list(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus) or "-"


def _own_pids(proc: Any) -> list[int]:
    """Host pids in the process's own cgroup (its host pid when it has none)."""
    cgroup = getattr(getattr(proc, "sandbox", None), "cgroup", None)
    pids: set[int] = set()
    if cgroup is not None:
        for path in getattr(cgroup, "procs_files", []):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in path.read_text().split())
    host = int(getattr(proc, "host_pid", 0) or 0)
    if not pids and host > 0:
        pids.add(host)
    return sorted(p for p in pids if p > 0)[:64]


def _tids(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")[:MAX_TIDS]]
    except (OSError, ValueError):
        return []


def _set_weight(proc: Any, role: str) -> int | None:
    """Write the role's weight into the process's cgroup; the value written (None: no
    CPU controller for it)."""
    cgroup = getattr(getattr(proc, "sandbox", None), "cgroup", None)
    # cgroup v1: a process has a cpu group of its own only for a limit or a weight that
    # is not the default (exo.sandbox._cgroups); without one it has the default share.
    ensure = getattr(cgroup, "ensure_cpu_group", None)
    if ensure is not None and getattr(cgroup, "joined", None):
        if role == "normal":
            return WEIGHTS[role][0]
        with contextlib.suppress(OSError):
            ensure()
    for d in getattr(cgroup, "dirs", []) if cgroup is not None else []:
        for name, value in (("cpu.shares", WEIGHTS[role][0]), ("cpu.weight", WEIGHTS[role][1])):
            path = d / name
            if not path.exists():
                continue
            try:
                path.write_text(str(value))
                return value
            except OSError:
                return None
    return None


__all__ = ["MODES", "ROLES", "WEIGHTS", "Decision", "Placer", "plan", "running"]
