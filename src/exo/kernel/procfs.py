"""Synthesised ``/proc`` and ``/sys``: files generated from kernel state on read.

Nothing here is copied from the host's /proc. A provider is a nested mapping whose
leaves are callables producing the file's text, rebuilt on every lookup so a
listing always reflects the kernel as it is now. The trees are given what they show
(the boot report, the kernel's /proc files and per-pid files), not the kernel.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping

from exo import __version__

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import TypeAlias

    from exo.kernel.bootlog import BootReport
    from exo.kernel.core import KernelCore

Node: TypeAlias = "Callable[[], str] | Mapping[str, Node]"


class VirtualTree:
    """Read-only view of a synthesised tree; paths are relative ("" is the top)."""

    def __init__(self, build: Callable[[], Mapping[str, Node]]) -> None:
        self._build = build

    def _node(self, rel: str) -> Node | None:
        node: Node = self._build()
        for part in [p for p in rel.split("/") if p]:
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def exists(self, rel: str) -> bool:
        return self._node(rel) is not None

    def is_dir(self, rel: str) -> bool:
        return isinstance(self._node(rel), Mapping)

    def listdir(self, rel: str) -> list[str]:
        node = self._node(rel)
        if not isinstance(node, Mapping):
            raise NotADirectoryError(rel)
        return sorted(node)

    def read(self, rel: str) -> str:
        node = self._node(rel)
        if node is None:
            raise FileNotFoundError(rel)
        if isinstance(node, Mapping):
            raise IsADirectoryError(rel)
        return node()


def _const(text: str) -> Callable[[], str]:
    return lambda: text


def proc_tree(core: KernelCore, files: Callable[[], Mapping[str, Callable[[], str]]],
              pids: Callable[[], Mapping[int, Mapping[str, Callable[[], str]]]],
              ) -> VirtualTree:
    """``/proc``: version, uptime and boot report from ``core``; ``files()`` the kernel's
    other files (meminfo, ipc...), ``pids()`` one directory per process."""
    def build() -> Mapping[str, Node]:
        tree: dict[str, Node] = {
            "version": _const(f"Exo-OS {__version__} ({os.uname().machine}) hosted on "
                              f"Linux {os.uname().release}\n"),
            "uptime": lambda: f"{time.time() - core.started_at:.2f}\n",
            "boot": lambda: json.dumps(core.report.as_dict(), indent=2) + "\n",
        }
        for name, fn in files().items():
            tree[name] = fn
        for pid, per_pid in pids().items():
            tree[str(pid)] = per_pid
        return tree

    return VirtualTree(build)


def sys_tree(core: KernelCore) -> VirtualTree:
    report: BootReport = core.report

    def build() -> Mapping[str, Node]:
        return {
            "kernel": {
                "boot_id": _const(core.boot_id + "\n"),
                "version": _const(__version__ + "\n"),
                "root": _const(str(core.root) + "\n"),
                "dev_mode": _const(("1" if core.config.dev_mode else "0") + "\n"),
            },
            "boot": {_slug(s.name): _const(f"{s.status.value} {s.ms:.3f} ms {s.detail}\n")
                     for s in report.steps},
        }

    return VirtualTree(build)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
