"""Which CPUs this kernel may use and whether they differ, read from sysfs.

Eco++ sends light work to efficiency cores only when the machine has some: ARM's
``cpu_capacity`` (1024 for the biggest core) or, where that is missing, differing
``cpufreq/cpuinfo_max_freq`` say so; Intel hybrid parts list their small cores in
``/sys/devices/cpu_atom/cpus``. A machine with identical cores gets the same policy without
the efficiency split, and ``describe()`` says which case this is and what it read.
"""

from __future__ import annotations

import os
from pathlib import Path

SYSFS = Path("/sys/devices/system/cpu")
ATOM = Path("/sys/devices/cpu_atom/cpus")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def parse_cpulist(text: str, limit: int = 4096) -> set[int]:
    """``0-3,8`` -> {0, 1, 2, 3, 8}; malformed parts are skipped, ranges bounded."""
    out: set[int] = set()
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            continue
        if 0 <= a <= b < limit:
            out.update(range(a, b + 1))
    return out


class Topology:
    """The usable CPUs, their relative capacity, and the efficiency/performance split."""

    __slots__ = ("capacity", "cpus", "efficiency", "performance", "source")

    def __init__(self, cpus: list[int], capacity: dict[int, int], source: str) -> None:
        self.cpus = sorted(cpus)
        self.capacity = capacity
        self.source = source
        top = max((capacity.get(c, 0) for c in self.cpus), default=0)
        small = [c for c in self.cpus if capacity.get(c, top) < top]
        self.efficiency = small
        self.performance = [c for c in self.cpus if c not in small]

    @property
    def heterogeneous(self) -> bool:
        return bool(self.efficiency) and bool(self.performance)

    def describe(self) -> str:
        n = len(self.cpus)
        if self.heterogeneous:
            return (f"{n} CPUs, heterogeneous ({self.source}): efficiency "
                    f"{_cpus(self.efficiency)}, performance {_cpus(self.performance)}")
        return f"{n} CPU{'s' if n != 1 else ''}, identical ({self.source})"

    def to_json(self) -> dict[str, object]:
        return {"cpus": self.cpus, "heterogeneous": self.heterogeneous,
                "efficiency": self.efficiency, "performance": self.performance,
                "capacity": {str(c): v for c, v in sorted(self.capacity.items())},
                "source": self.source}


def _cpus(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus) or "-"


def read(sysfs: Path = SYSFS, atom: Path = ATOM, allowed: set[int] | None = None) -> Topology:
    """The topology of the CPUs in ``allowed`` (default: this process's affinity)."""
    cpus = sorted(allowed if allowed is not None else os.sched_getaffinity(0))
    caps = {c: v for c in cpus if (v := _read_int(sysfs / f"cpu{c}" / "cpu_capacity"))}
    if len(caps) == len(cpus) and len(set(caps.values())) > 1:
        return Topology(cpus, caps, "cpu_capacity")
    try:
        small = parse_cpulist(atom.read_text()) & set(cpus)
    except OSError:
        small = set()
    if small and small != set(cpus):
        return Topology(cpus, {c: 512 if c in small else 1024 for c in cpus},
                        "Intel hybrid cpu_atom")
    freqs = {c: v for c in cpus
             if (v := _read_int(sysfs / f"cpu{c}" / "cpufreq" / "cpuinfo_max_freq"))}
    if len(freqs) == len(cpus) and len(set(freqs.values())) > 1:
        return Topology(cpus, freqs, "cpuinfo_max_freq")
    seen = []
    if caps:
        seen.append("equal cpu_capacity")
    if freqs:
        seen.append("equal cpuinfo_max_freq")
    return Topology(cpus, {c: 1024 for c in cpus},
                    ", ".join(seen) or "no cpu_capacity, no cpufreq in sysfs")


__all__ = ["Topology", "parse_cpulist", "read"]
