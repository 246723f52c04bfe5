"""The Exo file tree under EXO_ROOT: created on first boot, never overwritten.

``/proc`` and ``/sys`` exist as empty directories on disk only so that ``ls /``
shows them; their contents are synthesised from kernel state (see ``procfs``).
"""

from __future__ import annotations

import os
from pathlib import Path

from exo import __version__

TOP_LEVEL = ("bin", "dev", "etc", "exo", "home", "lib", "proc", "sys", "tmp", "usr", "var")
_SUBDIRS = (
    "home/root",
    "exo/apps",
    "usr/bin",
    "var/log",
    "var/run",
    "var/lib",
)


def _default_files() -> dict[str, str]:
    return {
        "etc/hostname": "exo-os\n",
        "etc/os-release": (
            'NAME="Exo-OS"\n'
            f'VERSION="{__version__}"\n'
            "ID=exo\n"
            f'PRETTY_NAME="Exo-OS {__version__} ({os.uname().machine})"\n'
        ),
        # name:hash:uid:gid:gecos:home:shell. An empty hash means "no password",
        # which login accepts for root only in development mode.
        "etc/passwd": "root::0:0:root:/home/root:/bin/exosh\n",
        "etc/motd": "Welcome to Exo-OS. Type 'help' for the list of commands.\n",
    }


def ensure_tree(root: Path) -> bool:
    """Create the tree if it is missing. Returns True when this was a first boot."""
    first = not (root / "etc" / "os-release").exists()
    for name in TOP_LEVEL:
        (root / name).mkdir(parents=True, exist_ok=True)
    for sub in _SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    for rel, text in _default_files().items():
        path = root / rel
        if not path.exists():
            path.write_text(text)
    return first
