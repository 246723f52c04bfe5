"""cgroup back-end: one group per sandboxed process, v1 hierarchies or the v2 unified tree.

Groups are created under the cgroup this process already belongs to (from
``/proc/self/cgroup``), as ``<current>/exo-<boot_id>/<name>``, so Exo never needs to own the
cgroup root and everything it creates sits in one subtree that :func:`cleanup_all` can sweep.
v1 is used when the needed controllers are mounted as v1 hierarchies (this is the case on the
machines the project runs on); otherwise v2, when the unified hierarchy offers them.

A group may be created *inside* another (``parent=``): an Exo process's children live in its
group, so the parent's memory, pids and CPU limits bind the whole subtree (all three
controllers are hierarchical: v1 memory with ``use_hierarchy``, always on in current
kernels; v2 by design). Killing or removing a group takes its subtree with it. On v2 the
no-internal-process rule means a group's own processes sit in a leaf ``<group>/self``, so
that child groups can sit beside it (that layout is used on v2 only).

CPU on v1 (a hierarchy of its own): a process gets a ``cpu`` group of its own only when it
has a CPU limit (``cpu_max``) or the scheduler gives it a weight of its own
(:meth:`CgroupSet.ensure_cpu_group`). Otherwise it *joins* the cpu group its parent is in:
this boot's top group ``<current>/exo-<boot_id>`` (where the power profiles set the
boot's quota and weight), or its parent process's own cpu group. Its CPU time is so still
accounted to (and capped by) everything above it, without a nested group per process
(issue 10: a cpu group per process cost redis and nginx heavily under load). A joined
group is written into at spawn (``entry_files``) but never removed by the process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from exo._value import Value

from ._mountinfo import mounts
from .errors import SandboxError, SandboxUnavailable

CONTROLLERS = ("memory", "pids", "cpu")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_CFS_PERIOD_US = 100_000
_V2_LEAF = "self"


class Hierarchy(Value):
    """One mounted cgroup hierarchy and the directory of our own group in it."""

    __slots__ = ("base", "controllers", "mountpoint", "version")

    def __init__(self, version: int, mountpoint: Path, controllers: frozenset[str],
                 base: Path) -> None:
        self.version = version
        self.mountpoint = mountpoint
        self.controllers = controllers
        self.base = base  # the cgroup this process is in, inside this hierarchy

    def _key(self) -> tuple[int, Path, frozenset[str], Path]:
        return (self.version, self.mountpoint, self.controllers, self.base)

    def __repr__(self) -> str:
        return f"Hierarchy(v{self.version}, {self.mountpoint}, base={self.base})"


#: How long a scan of the mounted hierarchies is reused. Every spawn asks twice (the
#: requirements check, then the group's creation); the scan reads /proc/self/mountinfo,
#: which in the kernel holds a line per FUSE export: ~2 ms a scan, measured. The mounts
#: of cgroup file systems and the kernel's own groups do not change while it runs; a
#: change is seen within this time, and a group created meanwhile fails with a clear line.
_SCAN_TTL_S = 2.0
_scan: tuple[float, list[Hierarchy]] | None = None
_scan_lock = threading.Lock()


def hierarchies() -> list[Hierarchy]:
    """Mounted cgroup hierarchies (v1 and v2) with this process's place in each (a scan
    at most ``_SCAN_TTL_S`` old)."""
    global _scan
    with _scan_lock:
        now = time.monotonic()
        if _scan is None or now - _scan[0] > _SCAN_TTL_S:
            _scan = (now, _scan_hierarchies())
        return list(_scan[1])


def _scan_hierarchies() -> list[Hierarchy]:
    own: dict[str, str] = {}  # controller list ("" for v2) -> path
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                own[parts[1]] = parts[2]
    found: list[Hierarchy] = []
    seen: set[str] = set()
    known: frozenset[str] | None = None
    for root, mountpoint, fstype, _, superopts in mounts():
        if fstype == "cgroup2":
            key, version = "", 2
            path = Path(mountpoint) / "cgroup.controllers"
            try:
                controllers = frozenset(path.read_text().split())
            except OSError:
                continue
        elif fstype == "cgroup":
            known = _known_v1() if known is None else known
            names = [o for o in superopts if o in known or o.startswith("name=")]
            key, version = ",".join(names), 1
            controllers = frozenset(o for o in names if not o.startswith("name="))
            if key not in own:  # order in /proc/self/cgroup may differ from superopts
                key = next((k for k in own if set(k.split(",")) == set(names)), key)
        else:
            continue
        if key not in own or key in seen:
            continue
        rel = own[key]
        if rel != root and not rel.startswith(root.rstrip("/") + "/"):
            continue  # our group is outside what this mount shows
        seen.add(key)
        rel = rel[len(root.rstrip("/")):].lstrip("/")
        found.append(Hierarchy(version, Path(mountpoint), controllers,
                               Path(mountpoint) / rel))
    return found


def _known_v1() -> frozenset[str]:
    try:
        with open("/proc/cgroups", encoding="ascii") as f:
            return frozenset(line.split()[0] for line in f if not line.startswith("#"))
    except OSError:
        return frozenset(CONTROLLERS)


def select(required: Iterable[str]) -> tuple[int, list[Hierarchy]]:
    """Pick the cgroup version and hierarchies providing memory, pids and cpu.

    Returns ``(version, hierarchies)``; raises :class:`SandboxUnavailable` naming any
    controller in ``required`` that neither v1 nor v2 offers here.
    """
    needed = set(required)
    all_h = hierarchies()
    v1 = [h for h in all_h if h.version == 1 and h.controllers & set(CONTROLLERS)]
    v1_ctl = set().union(*(h.controllers for h in v1)) if v1 else set()
    v2 = [h for h in all_h if h.version == 2]
    if v1 and needed <= v1_ctl:
        return 1, v1
    if v2 and needed <= v2[0].controllers:
        return 2, v2[:1]
    have = sorted(v1_ctl | (set(v2[0].controllers) if v2 else set()))
    missing = sorted(needed - v1_ctl - (set(v2[0].controllers) if v2 else set()))
    if missing:
        raise SandboxUnavailable(f"cgroup controllers {missing} are not available "
                                 f"(mounted: {have or 'none'})")
    if v1:  # the needed controllers are split over v1 and v2; use v1's
        raise SandboxUnavailable(f"cgroup controllers {sorted(needed)} are split between v1 "
                                 "and v2 hierarchies; this is not supported")
    raise SandboxUnavailable("no cgroup hierarchy is mounted")


def _write(path: Path, value: str) -> None:
    # os.open and os.write, not Path.write_text: no text layer for a control file (a
    # third of a group's creation, profiled).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SandboxError(f"cgroup: cannot write {value.strip()!r} to {path}: "
                           f"{exc.strerror}") from exc


#: Set to "0" to leave the host's cgroup mount options as they are (see below).
FAVOR_ENV = "EXO_CGROUP_FAVORDYNMODS"


def favor_dynamic_moves() -> str:
    """Make moving a process into a cgroup cheap, host-wide: remount the cgroup2 hierarchy
    (or, on a v1-only host, the first v1 one) with ``favordynmods``. Returns a line for the
    kernel log.

    Why: every sandboxed start writes its pid into ``cgroup.procs``, and Linux serialises
    that against every fork and exit with a per-CPU rwsem whose writer waits for an RCU
    grace period: ~7 ms for the first move after a quiet spell on this machine (measured:
    median of 20 moves, 7.0 ms; the later moves of a burst are 0.05 ms). ``favordynmods``
    (Linux ≥ 6.0, documented in cgroup-v2.rst) keeps that rwsem on its slow path for
    readers instead, so a move costs ~0.06 ms; what it costs forks and exits was below the
    noise of 2,000 fork+exit+wait rounds (~190 µs each, interleaved, before and after).
    The mount's other options are kept. Since Linux 6.17 the change cannot be undone
    until the host reboots, so the kernel sets it once and never clears it; an operator
    who does not want it sets ``EXO_CGROUP_FAVORDYNMODS=0``.
    """
    if os.environ.get(FAVOR_ENV, "") == "0":
        return f"left as they are ({FAVOR_ENV}=0): a process's first move costs a grace period"
    target: tuple[str, list[str]] | None = None
    for _, point, fstype, _, superopts in mounts():
        if fstype == "cgroup2" or (fstype == "cgroup" and target is None):
            target = (point, superopts)
            if fstype == "cgroup2":
                break
    if target is None:
        return "no cgroup hierarchy mounted"
    mountpoint, superopts = target
    if "favordynmods" in superopts:
        return f"moves are fast ({mountpoint} has favordynmods)"
    if os.geteuid() != 0:
        return "moves pay a grace period (favordynmods needs root)"
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    data = ",".join([o for o in superopts if o not in ("rw", "ro")] + ["favordynmods"])
    if libc.mount(None, mountpoint.encode(), None, ctypes.c_ulong(32),  # MS_REMOUNT
                  data.encode()) != 0:
        why = os.strerror(ctypes.get_errno())
        return f"moves pay a grace period (remount with favordynmods: {why})"
    return f"moves made fast: remounted {mountpoint} with favordynmods"


def boot_dirname(boot_id: str) -> str:
    if not _NAME_RE.match(boot_id):
        raise SandboxError(f"invalid boot id {boot_id!r}: use letters, digits, '._-'")
    return f"exo-{boot_id}"


class CgroupSet:
    """The group(s) of one sandboxed process: one directory per hierarchy used."""

    def __init__(self, version: int, dirs: list[Path], joined: list[Path] | None = None,
                 ) -> None:
        self.version = version
        self.dirs = dirs  # the groups of this process, removed with it
        #: v1 cpu groups of others (the boot's top, a parent's) this process joins
        self.joined: list[Path] = joined if joined is not None else []

    @classmethod
    def create(
        cls,
        boot_id: str,
        name: str,
        *,
        memory_max: int | None,
        pids_max: int | None,
        cpu_max: float | None,
        parent: CgroupSet | None = None,
    ) -> CgroupSet:
        if not _NAME_RE.match(name):
            raise SandboxError(f"invalid cgroup name {name!r}: use letters, digits, '._-'")
        if parent is not None:
            return cls._create_nested(parent, name, memory_max, pids_max, cpu_max)
        required = [c for c, v in (("memory", memory_max), ("pids", pids_max),
                                   ("cpu", cpu_max)) if v is not None]
        version, hs = select(required)
        boot = boot_dirname(boot_id)
        dirs: list[Path] = []
        group = cls(version, dirs)

        def joins(h: Hierarchy) -> bool:
            return version == 1 and cpu_max is None and _cpu_only(h.controllers)

        try:
            # The groups of its own first, the boot's cpu group it joins last: a boot's cpu
            # group never exists without a group of that boot beside it in another
            # hierarchy, except while its last process goes (sweep_dead_boots relies on it).
            for h in sorted(hs, key=joins):
                top = h.base / boot
                if joins(h):
                    _join_top(top)
                    group.joined.append(top)
                    continue
                for attempt in range(5):  # a concurrent cleanup may remove top in between
                    # v1: the boot's top is there, as a rule (hold_boot): tried first.
                    if attempt or version == 2:
                        top.mkdir(exist_ok=True)
                        if version == 2:
                            _enable_v2_controllers(h.base, top, h.controllers)
                    try:
                        (top / name).mkdir()
                        break
                    except FileNotFoundError:
                        continue
                else:
                    raise SandboxError(f"cgroup: cannot create {top / name}")
                dirs.append(top / name)
            group._set_limits(memory_max, pids_max, cpu_max)
            group._prepare_for_children(hs[0].controllers if version == 2 else frozenset())
        except FileExistsError as exc:
            group.remove()
            raise SandboxError(f"cgroup {name!r} already exists for boot {boot_id!r}") from exc
        except PermissionError as exc:
            group.remove()
            raise SandboxUnavailable(f"cgroup: no permission to create groups under "
                                     f"{exc.filename} (delegate it to this user)") from exc
        except BaseException:
            group.remove()
            raise
        return group

    @classmethod
    def _create_nested(cls, parent: CgroupSet, name: str, memory_max: int | None,
                       pids_max: int | None, cpu_max: float | None) -> CgroupSet:
        """A group inside ``parent``'s, in every hierarchy ``parent`` uses."""
        if not parent.dirs:
            raise SandboxError(f"cgroup: the parent group of {name!r} was removed")
        group = cls(parent.version, [])
        try:
            for d in [*parent.dirs, *parent.joined]:
                if parent.version == 1 and cpu_max is None and _is_cpu_dir(d):
                    _join_top(d, create=False)
                    group.joined.append(d)  # accounted in the parent's cpu group
                    continue
                (d / name).mkdir()
                group.dirs.append(d / name)
            group._set_limits(memory_max, pids_max, cpu_max)
            group._prepare_for_children(_v2_controllers(parent.dirs[0])
                                        if group.version == 2 else frozenset())
        except FileNotFoundError as exc:
            group.remove()
            raise SandboxError(f"cgroup: the parent group of {name!r} is gone") from exc
        except FileExistsError as exc:
            group.remove()
            raise SandboxError(f"cgroup {name!r} already exists in {parent.dirs[0]}") from exc
        except BaseException:
            group.remove()
            raise
        return group

    def _prepare_for_children(self, v2_controllers: frozenset[str]) -> None:
        """Let child groups be created inside this one, accounted hierarchically."""
        if self.version == 1:
            flag = self._find("memory.use_hierarchy")
            # Always 1 (and read-only) on current kernels; older ones must be told, before
            # the group has children. Inherited: once a sibling read 1, so does this one.
            if flag is not None and str(flag.parent.parent) not in _hierarchical:
                if flag.read_text().strip() == "0":
                    _write(flag, "1")
                elif len(_hierarchical) < 256:
                    _hierarchical.add(str(flag.parent.parent))
            return
        for d in self.dirs:  # v2: processes in a leaf, controllers enabled for the subtree
            _enable_v2_controllers(d, d, v2_controllers)
            (d / _V2_LEAF).mkdir(exist_ok=True)

    def pids_room(self) -> int | None:
        """How many more tasks the group's subtree may hold (None: no pids limit)."""
        limit, current = self._find("pids.max"), self._find("pids.current")
        if limit is None or current is None:
            return None
        try:
            text = limit.read_text().strip()
            if text == "max":
                return None
            return int(text) - int(current.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _find(self, filename: str) -> Path | None:
        for d in self.dirs:
            # A group's files are its hierarchy's: the answer for a sibling group holds
            # (a stat per file per hierarchy was ~10 % of a group's creation).
            key = (str(d.parent), filename)
            found = _files_seen.get(key)
            if found is None:
                found = (d / filename).exists()
                if len(_files_seen) >= 256:
                    _files_seen.clear()
                _files_seen[key] = found
            if found:
                return d / filename
        return None

    def _set_limits(self, memory_max: int | None, pids_max: int | None,
                    cpu_max: float | None) -> None:
        v1 = self.version == 1
        if memory_max is not None:
            limit = self._find("memory.limit_in_bytes" if v1 else "memory.max")
            assert limit is not None
            _write(limit, str(memory_max))
            swap = self._find("memory.memsw.limit_in_bytes" if v1 else "memory.swap.max")
            if swap is not None:  # no escape into swap
                _write(swap, str(memory_max) if v1 else "0")
        if pids_max is not None:
            pids = self._find("pids.max")
            assert pids is not None
            _write(pids, str(pids_max))
        if cpu_max is not None:
            quota = max(1000, round(cpu_max * _CFS_PERIOD_US))
            if v1:
                period = self._find("cpu.cfs_period_us")
                assert period is not None
                _write(period, str(_CFS_PERIOD_US))
                _write(period.with_name("cpu.cfs_quota_us"), str(quota))
            else:
                cpu = self._find("cpu.max")
                assert cpu is not None
                _write(cpu, f"{quota} {_CFS_PERIOD_US}")

    @property
    def procs_files(self) -> list[Path]:
        """The group's own processes (v2: its leaf, see the module doc)."""
        if self.version == 2:
            return [d / _V2_LEAF / "cgroup.procs" for d in self.dirs]
        return [d / "cgroup.procs" for d in self.dirs]

    @property
    def entry_files(self) -> list[Path]:
        """Where a new process of this group is written at spawn: its own groups and the
        cpu group it joins (``procs_files`` lists only its own: a joined group holds
        other processes too)."""
        return [*self.procs_files, *(d / "cgroup.procs" for d in self.joined)]

    def enter(self, pid: int) -> None:
        """Move process ``pid`` into this group (each of ``entry_files``)."""
        for path in self.entry_files:
            _write(path, str(pid))

    def ensure_cpu_group(self) -> bool:
        """Give the process a v1 cpu group of its own (for a weight of its own, set by
        the scheduler), inside the one it joined, and move its processes there; True
        when it has one (v2: always, one directory holds every controller)."""
        if self.version == 2 or not self.joined:
            return self.version == 2 or any(_is_cpu_dir(d) for d in self.dirs)
        if not self.dirs:
            return False
        outer = self.joined[0]
        own = outer / self.dirs[0].name
        own.mkdir(exist_ok=True)
        self.dirs.append(own)
        self.joined.remove(outer)
        if outer in _joiners:  # the boot's top: its own group keeps it from now on
            _leave_top(outer)
        for _ in range(3):  # a process forked meanwhile lands in the old group: again
            moved = 0
            for pid in (self.dirs[0] / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, OSError):
                    (own / "cgroup.procs").write_text(pid)
                    moved += 1
            if not moved:
                break
            procs = set((self.dirs[0] / "cgroup.procs").read_text().split())
            if procs <= set((own / "cgroup.procs").read_text().split()):
                break
        return True

    def members(self) -> set[int]:
        """Every process in the group's subtree (its own and its child groups')."""
        pids: set[int] = set()
        for d in self.dirs:
            for sub in _subtree(d):
                try:
                    pids.update(int(x) for x in (sub / "cgroup.procs").read_text().split())
                except OSError as exc:
                    # A child group removed meanwhile (by its own process's reclaim) reads
                    # as ENOENT, or ENODEV while the removal is under way.
                    if exc.errno not in (errno.ENOENT, errno.ENODEV):
                        raise
        return pids

    def stat(self) -> dict[str, int]:
        """Current usage: memory bytes, peak memory, process count (for the kernel)."""
        out: dict[str, int] = {}
        names = {"memory": ("memory.usage_in_bytes", "memory.current"),
                 "memory_peak": ("memory.max_usage_in_bytes", "memory.peak"),
                 "memory_failcnt": ("memory.failcnt", ""),
                 "pids": ("pids.current", "pids.current")}
        for key, (v1name, v2name) in names.items():
            name = v1name if self.version == 1 else v2name
            path = self._find(name) if name else None
            if path is not None:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    out[key] = int(path.read_text().split()[0])
        return out

    def cpu_seconds(self) -> float | None:
        """CPU time used by the group's processes, those gone included (v1
        ``cpuacct.usage``, v2 ``cpu.stat``'s ``usage_usec``); None when not accounted."""
        path = self._find("cpuacct.usage" if self.version == 1 else "cpu.stat")
        if path is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text()
            if self.version == 1:
                return int(text) / 1e9
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        return None

    def cpu_times(self) -> tuple[float, float] | None:
        """(user, system) CPU seconds of the group's processes, those gone included (v1
        ``cpuacct.usage_user``/``usage_sys``, v2 ``cpu.stat``'s ``user_usec``/
        ``system_usec``); None when not accounted so."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            if self.version == 1:
                user, system = self._find("cpuacct.usage_user"), self._find("cpuacct.usage_sys")
                if user is None or system is None:
                    return None
                return int(user.read_text()) / 1e9, int(system.read_text()) / 1e9
            path = self._find("cpu.stat")
            if path is None:
                return None
            stat = dict(line.partition(" ")[::2] for line in path.read_text().splitlines())
            return int(stat["user_usec"]) / 1e6, int(stat["system_usec"]) / 1e6
        return None

    def oom_kills(self) -> int:
        """How many processes the memory controller killed at this group's limit
        (v1 ``memory.oom_control``, v2 ``memory.events``: their ``oom_kill`` line)."""
        path = self._find("memory.oom_control" if self.version == 1 else "memory.events")
        if path is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every member until the groups are empty (members may still be forking)."""
        if self.version == 2:
            kill = self._find("cgroup.kill")
            if kill is not None:
                with contextlib.suppress(OSError):
                    kill.write_text("1")
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while members := self.members():
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise SandboxError(f"cgroup: processes {sorted(members)} survive SIGKILL")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left and remove the group directories (and the boot dir if empty)."""
        if not self._remove_empty():
            self.kill_all(timeout)
            for d in self.dirs:
                _remove_tree(d, timeout)
        for d in self.dirs:
            with _tops_lock:  # never under a process joining it (_join_top)
                if _joiners.get(d.parent, 0) == 0:
                    with contextlib.suppress(OSError):  # other groups of this boot use it
                        d.parent.rmdir()
        self.dirs = []
        joined, self.joined = self.joined, []
        for top in joined:
            _leave_top(top)

    def _remove_empty(self) -> bool:
        """The common end: the command left nothing behind, so each directory goes with
        one ``rmdir`` (the kernel refuses it, EBUSY, while a process or a child group is
        in it), without reading every member list first (``kill_all``). False: something
        is left; the directories not removed yet need the whole walk."""
        for d in self.dirs:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                continue
            except OSError:
                return False
        return True


Limits = tuple[int | None, int | None, float | None]  # memory_max, pids_max, cpu_max
_pool_numbers = iter(range(1, 1 << 62))
_pool_lock = threading.Lock()


class CgroupPool:
    """Groups made ahead of the processes that take them, for one boot: a group's creation
    (a directory per hierarchy, its limits, v1's cpu group joined) was ~0.35 ms of the
    kernel's main thread on every zygote command's start. ``SIZE`` are kept for each set
    of limits asked for lately (``KINDS`` sets at most), made again on a thread of the
    kernel's thread cache ``SETTLE`` seconds after the last take, so that the work falls
    after a burst of starts (a pipeline's), not into it. A take with none ready creates
    one then, as before. ``close`` removes the groups no process took."""

    SIZE = 2
    KINDS = 4
    SETTLE = 0.02

    def __init__(self, boot_id: str, prefix: str = "pool") -> None:
        self.boot_id, self.prefix = boot_id, prefix
        self._lock = threading.Lock()
        self._ready: dict[Limits, list[CgroupSet]] = {}  # most recently asked for last
        self._idle = threading.Event()  # no refill under way
        self._idle.set()
        self._closed = False

    def take(self, memory_max: int | None, pids_max: int | None,
             cpu_max: float | None) -> CgroupSet:
        key = (memory_max, pids_max, cpu_max)
        with self._lock:
            ready = self._ready.pop(key, [])
            self._ready[key] = ready  # the newest kind
            group = ready.pop() if ready else None
            dropped = []
            while len(self._ready) > self.KINDS:
                dropped += self._ready.pop(next(iter(self._ready)))
            refill = self._idle.is_set() and not self._closed
            if refill:
                self._idle.clear()
        for old in dropped:  # (made ahead and never entered: a failure here is no take's)
            with contextlib.suppress(SandboxError, OSError):
                old.remove()
        if refill:
            from exo import _threadcache

            try:
                _threadcache.start(self._refill, "exo-cgroup-pool")
            except RuntimeError:  # no thread to refill on: the next take tries again (a
                self._idle.set()  # refill marked under way forever held close() 10 s)
        return group if group is not None else self._make(key)

    def _make(self, key: Limits) -> CgroupSet:
        memory_max, pids_max, cpu_max = key
        with _pool_lock:  # one numbering for every pool of this process: a new pool's
            number = next(_pool_numbers)  # names never meet an old one's, still in use
        return CgroupSet.create(self.boot_id, f"{self.prefix}.{os.getpid()}.z{number}",
                                memory_max=memory_max, pids_max=pids_max, cpu_max=cpu_max)

    def _refill(self) -> None:
        try:
            time.sleep(self.SETTLE)
            while True:
                with self._lock:
                    short = [k for k, v in self._ready.items() if len(v) < self.SIZE]
                    if self._closed or not short:
                        return
                try:
                    group = self._make(short[0])
                except SandboxError:
                    return  # a take makes its own, and says why if it cannot
                with self._lock:
                    kept = not self._closed and short[0] in self._ready
                    if kept:
                        self._ready[short[0]].append(group)
                if not kept:
                    group.remove()
        finally:
            self._idle.set()

    def close(self) -> None:
        """Remove the groups no process took, once a refill under way has ended (nothing
        of this pool is created after)."""
        with self._lock:
            self._closed = True
        self._idle.wait(10.0)
        with self._lock:
            left = [g for groups in self._ready.values() for g in groups]
            self._ready.clear()
        for group in left:
            with contextlib.suppress(SandboxError, OSError):
                group.remove()


def _remove_tree(top: Path, timeout: float) -> None:
    """Remove ``top`` and its child groups, children first, killing what is left in them.

    A child group may appear while this runs (a spawn nested in a process that is exiting)
    and a group stays busy while its last member exits: so walk again until ``top`` is gone.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        for sub in reversed(_subtree(top)):
            try:
                sub.rmdir()
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
                    raise SandboxError(f"cgroup: cannot remove {sub}: {exc.strerror}"
                                       ) from exc
        if not top.exists():
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"cgroup: cannot remove {top}: still busy")
        CgroupSet(1, [top]).kill_all(max(0.0, deadline - time.monotonic()))
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _subtree(top: Path) -> list[Path]:
    """``top`` and every group below it, parents before children (empty if ``top`` is gone)."""
    out: list[Path] = []
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            subs = [e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
        except OSError as exc:  # removed meanwhile (see members)
            if exc.errno not in (errno.ENOENT, errno.ENODEV, errno.ENOTDIR):
                raise
            continue
        out.append(d)
        stack.extend(Path(p) for p in subs)
    return out


#: Whether a group file exists, by (parent directory, name) (CgroupSet._find); and the
#: v1 memory groups whose children are hierarchical already (_prepare_for_children).
_files_seen: dict[tuple[str, str], bool] = {}
_hierarchical: set[str] = set()

#: How many live groups of this kernel joined each boot's top cpu group: it is removed
#: (when empty) only when none does, so that a spawn that joined it never finds it gone.
_joiners: dict[Path, int] = {}
_tops_lock = threading.Lock()


def _join_top(top: Path, *, create: bool = True) -> None:
    """Count one more group in the boot's top ``top`` (``create``: made if missing; else
    counted only if already counted: a parent's own cpu group is not)."""
    with _tops_lock:
        if create:
            top.mkdir(exist_ok=True)
        elif top not in _joiners:
            return
        _joiners[top] = _joiners.get(top, 0) + 1


def _leave_top(top: Path) -> None:
    """A group that joined a cpu group has gone; the boot's top goes with its last one
    (a parent's cpu group is its own process's to remove)."""
    with _tops_lock:
        left = _joiners.get(top, 0) - 1
        if left > 0:
            _joiners[top] = left
            return
        if top not in _joiners:
            return
        del _joiners[top]
        with contextlib.suppress(OSError):  # busy: another group or process is in it
            top.rmdir()


def _cpu_only(controllers: frozenset[str]) -> bool:
    """A v1 hierarchy that, of the controllers used here, has only ``cpu``."""
    return controllers & set(CONTROLLERS) == {"cpu"}


def _is_cpu_dir(group: Path) -> bool:
    """A v1 group of a hierarchy with ``cpu`` but neither memory nor pids."""
    return ((group / "cpu.shares").exists() and not (group / "memory.limit_in_bytes").exists()
            and not (group / "pids.max").exists())


def _v2_controllers(group: Path) -> frozenset[str]:
    try:
        return frozenset((group / "cgroup.controllers").read_text().split())
    except OSError:
        return frozenset()


def _enable_v2_controllers(base: Path, parent: Path, available: frozenset[str]) -> None:
    wanted = [c for c in CONTROLLERS if c in available]
    line = " ".join(f"+{c}" for c in wanted)
    for d in (base, parent):
        enabled = set((d / "cgroup.subtree_control").read_text().split())
        if set(wanted) <= enabled:
            continue
        try:
            (d / "cgroup.subtree_control").write_text(line)
        except OSError as exc:
            raise SandboxUnavailable(
                f"cgroup v2: cannot enable {wanted} in {d} ({exc.strerror}); the current "
                "cgroup must be delegated with no processes of its own in it") from exc


def cleanup_all(boot_id: str) -> list[Path]:
    """Kill and remove every group of a boot; returns the group directories removed."""
    removed: list[Path] = []
    boot = boot_dirname(boot_id)
    with _held_lock:  # removed below with the rest
        _held.pop(boot_id, None)
    for h in hierarchies():
        top = h.base / boot
        if not top.is_dir():
            continue
        try:  # gone meanwhile: release_boot, on the DEFERRED thread, took the last group
            leaves = sorted(p for p in top.iterdir() if p.is_dir())
        except FileNotFoundError:
            leaves = []
        for leaf in leaves:
            group = CgroupSet(h.version, [leaf])
            group.remove()
            removed.append(leaf)
        # Processes that joined the boot's cpu group itself (no cpu group of their own):
        # each is in a memory and pids group of its own too, gone by now, or killed here.
        if h.version == 1:
            with _tops_lock:
                _joiners.pop(top, None)
            _remove_tree(top, 5.0)
        with contextlib.suppress(FileNotFoundError):
            top.rmdir()
    return removed


def hold_boot(boot_id: str) -> str:
    """Keep the boot's own directories (``<hierarchy>/exo-<boot>``) while the kernel runs:
    an empty group ``kernel.<pid>.0`` in them, so that they are not removed with the last
    process's group and made again with the next one (two cgroup ``mkdir`` and ``rmdir``
    a command when the kernel runs one command at a time, as a shell does: ~0.3 ms of
    kernel CPU each). Named like every group of this kernel, it goes with them: at
    shutdown (``cleanup_all``, or ``release_boot`` when the hold came after it) or, if
    the kernel dies, at the next boot's sweep. A line saying what was done, or why not."""
    try:
        group = CgroupSet.create(boot_id, f"kernel.{os.getpid()}.0", memory_max=None,
                                 pids_max=None, cpu_max=None)
    except (SandboxError, OSError) as exc:
        return f"not held ({exc})"
    with _held_lock:
        _held[boot_id] = group
    return f"held (kernel.{os.getpid()}.0)"


#: Each boot's hold (hold_boot), until release_boot or cleanup_all.
_held: dict[str, CgroupSet] = {}
_held_lock = threading.Lock()


def release_boot(boot_id: str) -> None:
    """Undo :func:`hold_boot`: remove this kernel's ``kernel.<pid>.0`` group, and each boot
    directory it alone kept. For a hold made after the shutdown's ``cleanup_all`` (the
    DEFERRED step that holds them still starting when the kernel was told to stop), which
    nothing else would remove until the next boot's sweep; a no-op without a hold, and a
    boot directory still in use stays for ``cleanup_all``."""
    with _held_lock:
        group = _held.pop(boot_id, None)
    if group is not None:
        group.remove()


#: A sandbox's group is NAME.KERNELPID.N (launcher.py; NAME.KERNELPID.zN from a zygote):
#: the host pid of the kernel that made it.
_LEAF_RE = re.compile(r"^.+\.(\d+)\.z?\d+$")


def sweep_dead_boots(own_boot_id: str) -> list[Path]:
    """Remove the groups of kernels that died without cleaning up (SIGKILL, a crash).

    A boot's groups are swept only when every group in it names a kernel pid that no
    longer exists and no process is left anywhere in its subtree; a live kernel's groups
    name its own pid, so they are never touched (a reused pid only keeps a dead boot's
    groups a little longer). Empty boot directories with no group are left alone: nothing
    tells a live kernel's from a dead one's — except a v1 ``cpu`` boot group (processes
    without a CPU limit join it, so it has no group of its own inside): it is swept when it
    is empty and no other hierarchy has a directory of that boot, which a live kernel's
    always has while it runs a process (``CgroupSet.create`` makes those first). Returns
    the group directories removed.
    """
    removed: list[Path] = []
    own = boot_dirname(own_boot_id)
    found = hierarchies()
    for h in found:
        try:
            boots = [d for d in h.base.iterdir() if d.name.startswith("exo-") and d.name != own]
        except OSError:
            continue
        for top in boots:
            with contextlib.suppress(OSError):
                leaves = [p for p in top.iterdir() if p.is_dir()]
                if not leaves or not all(_kernel_gone(p.name) for p in leaves):
                    continue
                if any(_members(sub) for sub in _subtree(top)):
                    continue
                for leaf in leaves:
                    _remove_tree(leaf, 1.0)
                    removed.append(leaf)
                top.rmdir()
    removed += _sweep_cpu_tops(found, own)
    return removed


def _sweep_cpu_tops(found: list[Hierarchy], own: str) -> list[Path]:
    """The empty v1 cpu boot groups no other hierarchy has a directory of (see above)."""
    cpu = [h for h in found if h.version == 1 and _cpu_only(h.controllers)]
    others = [h for h in found if h not in cpu]
    removed: list[Path] = []
    for h in cpu:
        with contextlib.suppress(OSError):
            for top in h.base.iterdir():
                if not top.name.startswith("exo-") or top.name == own:
                    continue
                if any((o.base / top.name).exists() for o in others):
                    continue
                if any(p.is_dir() for p in top.iterdir()) or _members(top):
                    continue
                with contextlib.suppress(OSError):  # busy: a process joined meanwhile
                    top.rmdir()
                    removed.append(top)
    return removed


def _kernel_gone(leaf: str) -> bool:
    match = _LEAF_RE.match(leaf)
    if match is None:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def _members(group: Path) -> bool:
    with contextlib.suppress(OSError):
        return bool((group / "cgroup.procs").read_text().strip())
    return False


def leftover_groups(boot_id: str) -> list[Path]:
    """Group directories of a boot that still exist (for leak checks)."""
    out: list[Path] = []
    boot = boot_dirname(boot_id)
    for h in hierarchies():
        top = h.base / boot
        if top.is_dir():
            out.extend(p for p in top.iterdir() if p.is_dir())
    return out
