"""What a system test needs to look at a host after Exo-OS has run."""

from __future__ import annotations

import os
from pathlib import Path


def shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


def mounts() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


def exo_cgroups() -> list[Path]:
    found = []
    for base in Path("/sys/fs/cgroup").iterdir():
        if base.is_dir():
            found += [p for p in base.rglob("exo-*") if p.is_dir()]
    return found
