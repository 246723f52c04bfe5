"""What a subsystem is, and how the boot table names one.

A subsystem is one part of the kernel the boot starts and shutdown stops: the memory
pool, the capability space, the process manager... Its class takes the kernel's core
(``exo.kernel.core.KernelCore``) and, by keyword, the subsystems its row ``requires``
(the row's keys are the parameter names), so a subsystem sees only its collaborators,
never the whole kernel. ``start()`` returns the detail of its boot-log line, or raises
``SkipStep`` (not available here) or any other exception (FAILED); ``stop()`` releases
what ``start()`` took, and must cope with a ``start()`` that failed halfway.

The boot table (``exo.kernel.boottable``) lists rows, not classes: a row names its class
by import path, so booting imports only the subsystems that run, when they run.
"""

from __future__ import annotations

import importlib  # already loaded by the interpreter's start-up: free

from exo.kernel.bootlog import SkipStep

TYPE_CHECKING = False  # no runtime typing import on the boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.bootlog import Phase


class Subsystem:
    """Base of every subsystem; the driver sets ``name``, ``phase`` and ``requires`` from
    the subsystem's row before ``start()``."""

    __slots__ = ("name", "phase", "requires")
    name: str  # its step in the boot log
    phase: Phase
    requires: tuple[str, ...]  # the keys of the rows it needs started first

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        """Release what ``start`` took (nothing by default)."""

    def proc_files(self) -> dict[str, Callable[[], str]]:
        """Files this subsystem adds to ``/proc`` (name → text on read)."""
        return {}


class NotBuilt:
    """The target of a row whose subsystem does not exist yet: its step reports SKIP with
    ``message``, followed by what ``probe`` found on this host (if anything)."""

    __slots__ = ("message", "probe")

    def __init__(self, message: str, probe: Callable[[], str] | None = None) -> None:
        self.message = message
        self.probe = probe

    def skip(self) -> SkipStep:
        return SkipStep(self.message + (self.probe() if self.probe is not None else ""))


class Row:
    """One line of the boot table.

    ``key`` names the subsystem to those that require it (and is their constructor's
    parameter name); ``name`` is its step in the boot log, ``/proc/boot`` and
    ``--json-boot``; ``target`` is ``"module:Class"`` or ``NotBuilt``.
    """

    __slots__ = ("key", "name", "phase", "requires", "target")

    def __init__(self, key: str, name: str, phase: Phase, target: str | NotBuilt,
                 requires: tuple[str, ...] = ()) -> None:
        self.key = key
        self.name = name
        self.phase = phase
        self.target = target
        self.requires = requires

    def __repr__(self) -> str:
        return f"Row({self.key!r}, {self.name!r}, {self.phase.value})"

    def load(self) -> Callable[..., Subsystem]:
        """The subsystem's class, imported now (not for a NotBuilt row); it is called
        with the kernel's core and, by keyword, the subsystems in ``requires``."""
        assert isinstance(self.target, str)
        module, _, attr = self.target.partition(":")
        cls: Callable[..., Subsystem] = getattr(importlib.import_module(module), attr)
        return cls
