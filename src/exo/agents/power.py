"""Power profiles: performance, balanced, power-saver, applied to the Exo cgroup tree.

Every Exo process's cgroup nests in this boot's top group (``exo-<boot id>``, see
``exo.sandbox._cgroups``), so one write there bounds them all: the CPU quota (v1
``cpu.cfs_quota_us``, v2 ``cpu.max``) caps what the whole tree may use per period, the
weight (v1 ``cpu.shares``, v2 ``cpu.weight``) sets its share against the host's other
work. Where the host exposes cpufreq, the governor follows the profile too; a VM usually
does not, and the report says so rather than pretending. Each change is reported with the
value before and after, and ``measure`` gives its effect: the CPU time the Exo tree got
over one second.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from exo.sandbox import _cgroups

CPUFREQ = Path("/sys/devices/system/cpu")
PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    quota_cpus: float | None  # CPUs the whole Exo tree may use (None: no cap)
    weight: int  # cgroup v2 cpu.weight (1..10000, default 100); v1 shares = weight*1024/100
    governor: str


PROFILES: dict[str, Profile] = {
    "performance": Profile("performance", None, 400, "performance"),
    "balanced": Profile("balanced", None, 100, "schedutil"),
    "power-saver": Profile("power-saver", 0.5, 25, "powersave"),
}
#: the catalogue's intents
BY_INTENT = {"power.performance": "performance", "power.balanced": "balanced",
             "power.save": "power-saver"}


class PowerError(Exception):
    """A profile could not be applied (no cgroup cpu controller, no permission)."""


@dataclass(slots=True)
class Change:
    path: str
    before: str
    after: str


@dataclass(slots=True)
class PowerReport:
    profile: str
    changes: list[Change] = field(default_factory=list)
    governor: str = ""
    effect: dict[str, float] = field(default_factory=dict)

    def lines(self, lang: str = "en") -> list[str]:
        fr = lang == "fr"
        out = [f"Profil {self.profile} appliqué" if fr else f"Profile {self.profile} applied"]
        for c in self.changes:
            out.append(f"  {c.path}: {c.before} -> {c.after}")
        if not self.changes:
            out.append("  (rien à changer)" if fr else "  (nothing to change)")
        out.append("  " + self.governor)
        return out


class PowerControl:
    """The CPU settings of one boot's Exo cgroup tree; remembers what it found so
    ``restore`` puts the tree back as the boot left it."""

    def __init__(self, boot_id: str) -> None:
        self.boot_id = boot_id
        self.current = "balanced"
        self._original: dict[Path, str] = {}

    def top(self) -> tuple[int, Path]:
        """(cgroup version, this boot's top group in the cpu hierarchy), created if it
        does not exist yet (as the first spawn would)."""
        try:
            version, hs = _cgroups.select(["cpu"])
        except Exception as exc:
            raise PowerError(f"no cgroup cpu controller here: {exc}") from None
        top = hs[0].base / _cgroups.boot_dirname(self.boot_id)
        try:
            top.mkdir(exist_ok=True)
        except OSError as exc:
            raise PowerError(f"cannot create {top}: {exc.strerror}") from None
        return version, top

    def files(self) -> dict[str, Path]:
        version, top = self.top()
        if version == 1:
            return {"quota": top / "cpu.cfs_quota_us", "period": top / "cpu.cfs_period_us",
                    "weight": top / "cpu.shares"}
        return {"quota": top / "cpu.max", "weight": top / "cpu.weight"}

    def read(self) -> dict[str, str]:
        return {k: _read(p) for k, p in self.files().items()}

    def apply(self, name: str) -> PowerReport:
        if name not in PROFILES:
            raise PowerError(f"unknown profile {name!r} (profiles: {', '.join(PROFILES)})")
        prof = PROFILES[name]
        files = self.files()
        v1 = "period" in files
        wanted: dict[str, str] = {}
        if v1:
            wanted["period"] = str(PERIOD_US)
            wanted["quota"] = ("-1" if prof.quota_cpus is None
                               else str(round(prof.quota_cpus * PERIOD_US)))
            wanted["weight"] = str(max(2, prof.weight * 1024 // 100))
        else:
            wanted["quota"] = ("max" if prof.quota_cpus is None
                               else f"{round(prof.quota_cpus * PERIOD_US)}") + f" {PERIOD_US}"
            wanted["weight"] = str(prof.weight)
        report = PowerReport(name)
        for key, value in wanted.items():
            path = files[key]
            before = _read(path)
            self._original.setdefault(path, before)
            if before.split() != value.split() and not (
                    key == "quota" and not v1 and before.split()[0] == value.split()[0]):
                _write(path, value)
                report.changes.append(Change(str(path), before, _read(path)))
        report.governor = _governor(prof.governor)
        self.current = name
        return report

    def restore(self) -> None:
        """Back to the values found before the first profile was applied."""
        for path, value in self._original.items():
            if path.exists():
                with contextlib.suppress(PowerError):
                    _write(path, value)
        self._original.clear()
        self.current = "balanced"

    def usage_s(self) -> float | None:
        """CPU seconds used so far by the processes now in the Exo tree (psutil over the
        tree's members: v1's cpu hierarchy does no accounting of its own here)."""
        import psutil

        try:
            _, top = self.top()
        except PowerError:
            return None
        total = 0.0
        for procs in top.rglob("cgroup.procs"):
            for pid in _read(procs).split():
                try:
                    t = psutil.Process(int(pid)).cpu_times()
                    total += t.user + t.system
                except (psutil.Error, ValueError):
                    continue
        return total

    def measure(self, seconds: float = 1.0) -> float | None:
        """CPU seconds the whole Exo tree got over ``seconds`` (None: not accounted)."""
        a = self.usage_s()
        if a is None:
            return None
        time.sleep(seconds)
        b = self.usage_s()
        return None if b is None else max(0.0, b - a)


def _governor(wanted: str) -> str:
    """Set every CPU's cpufreq governor if the host exposes it; say what happened."""
    paths = sorted(CPUFREQ.glob("cpu[0-9]*/cpufreq/scaling_governor"))
    if not paths:
        return "cpufreq: not exposed by this host (no scaling_governor): governors unchanged"
    available = _read(paths[0].with_name("scaling_available_governors")).split()
    if wanted not in available:
        return f"cpufreq: governor {wanted!r} not offered (available: {' '.join(available)})"
    done = 0
    for p in paths:
        try:
            p.write_text(wanted)
            done += 1
        except OSError:
            pass
    return f"cpufreq: governor {wanted} on {done}/{len(paths)} CPUs"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise PowerError(f"cannot write {value!r} to {path}: {exc.strerror}") from None
