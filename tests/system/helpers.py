"""What a system test needs to look at a host after Exo-OS has run."""

from __future__ import annotations

import os
from pathlib import Path


def shm_entries() -> set[str]:
    """POSIX shared memory segments, except iceoryx2's: the IPC benchmark measures that
    peer and may run beside the tests; Exo itself uses memfds, never /dev/shm."""
    return {e for e in os.listdir("/dev/shm") if not e.startswith("iox2_")}


def mounts() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


def exo_cgroups(boot_id: str) -> list[Path]:
    """Cgroup directories left by the kernel with this boot id (``exo-<boot_id>``)."""
    found = []
    for base in Path("/sys/fs/cgroup").iterdir():
        if base.is_dir():
            found += [p for p in base.rglob(f"exo-{boot_id}") if p.is_dir()]
    return found
