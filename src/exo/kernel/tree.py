"""The Exo file tree under EXO_ROOT: created on first boot, never overwritten.

``/proc`` and ``/sys`` exist as empty directories on disk only so that ``ls /``
shows them; their contents are synthesised from kernel state (see ``procfs``).
"""

from __future__ import annotations

import os
from pathlib import Path

from exo import __version__
from exo.sandbox.namespace import instance_path

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


# ------------------------------------------------------------ a /tmp for each user
# (where it is: exo.sandbox.namespace.instance_path, which the sandbox shares)


def instance_user(account: tuple[str, int] | None) -> str | None:
    """Whose ``/tmp`` a process of ``account`` (name, host uid) sees: None for root's and
    the kernel's own."""
    from exo.kernel.sessions import host_uid

    return None if account is None or account[1] == host_uid(0) else account[0]


def ensure_instance(tree_fd: int, user: str) -> None:
    """Make ``user``'s ``/tmp`` if it is missing, following no link on the way (a link
    planted at ``tmp/.users`` before it existed is refused, never followed)."""
    from exo.kernel import beneath

    instance_path("tmp", user)  # (checks the name)
    here = beneath.openat2(tree_fd, "tmp", os.O_PATH | os.O_DIRECTORY, 0, beneath.STRICT)
    try:
        for name, mode in ((".users", 0o711), (user, 0o1777)):
            try:
                os.mkdir(name, mode, dir_fd=here)
                made = True
            except FileExistsError:
                made = False
            below = beneath.openat2(here, name, os.O_PATH | os.O_DIRECTORY, 0,
                                    beneath.STRICT)
            os.close(here)
            here = below
            if made:  # (the umask took bits off)
                os.chmod(f"/proc/self/fd/{here}", mode)
    finally:
        os.close(here)
