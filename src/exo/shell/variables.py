"""The shell's variables, and ``readonly``: one mapping that refuses every change to a
name marked read-only, wherever the change comes from (``x=1``, ``read``, ``for``,
``let``, ``getopts``, ``local``, ``unset``, ``export``), as sh does."""

from __future__ import annotations

from collections import UserDict
from collections.abc import Callable, Iterable, Mapping

from exo.shell.arrays import is_array
from exo.shell.parser import UnsetError

#: What one shell's variables may hold in all, names and values (the shell runs in the
#: kernel: `for …; do eval "v$i=…"; done` grew the kernel without end, a review): two
#: arrays of the largest size (arrays.MAX_BYTES).
MAX_BYTES = 32 << 20
#: How many variables one shell may have.
MAX_NAMES = 1 << 16
#: What a copy of a shell (a background block's, a ``<(…)``'s) may add to what it was
#: given: 64 of them at MAX_BYTES each would be 2 GiB of the kernel.
COPY_ROOM = 4 << 20


class ReadonlyError(UnsetError):
    """A change to a read-only variable: said, and the rest of the line is not run (as a
    failed assignment ends a script in sh); a builtin that tried it fails, status 1."""


class VariablesFull(UnsetError):
    """An assignment past ``MAX_BYTES`` or ``MAX_NAMES``: refused as a read-only one is
    (said, the rest of the line not run); nothing is lost."""


class Variables(UserDict[str, str]):
    """``name -> value``. A UserDict, not a dict: its ``update``, ``pop``,
    ``setdefault`` and ``clear`` all go through ``__setitem__`` and ``__delitem__``, so
    the one check there covers them."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        #: The names ``readonly`` marked: no change reaches them until the shell ends
        #: (a subshell's own marks end with it).
        self.readonly: set[str] = set()
        #: The names ``declare -i`` marked: each value assigned is evaluated as
        #: arithmetic first (``evaluate``: the shell's, set by the shell).
        self.integers: set[str] = set()
        self.evaluate: Callable[[str], str] | None = None
        self.size = 0  # the names' and values' lengths, in all
        self.limit = MAX_BYTES  # what size may reach (a copy's: less, ``for_copy``)
        super().__init__(values or {})

    def _check(self, name: str) -> None:
        if name in self.readonly:
            raise ReadonlyError(f"{name}: readonly variable")

    def __setitem__(self, name: str, value: str) -> None:
        self._check(name)
        if name in self.integers and self.evaluate is not None and not is_array(value):
            value = self.evaluate(value)  # (an array's elements are kept as they are)
        old = self.data.get(name)
        size = self.size + len(value) - (len(old) if old is not None else -len(name))
        if size > self.limit and size > self.size:
            raise VariablesFull(f"{name}: the shell's variables would hold more than "
                                f"{self.limit >> 20} MiB (unset some)")
        if old is None and len(self.data) >= MAX_NAMES:
            raise VariablesFull(f"{name}: more than {MAX_NAMES} variables (unset some)")
        self.data[name] = value
        self.size = size

    def __delitem__(self, name: str) -> None:
        self._check(name)
        self.size -= len(name) + len(self.data.pop(name))

    def for_copy(self) -> None:
        """This shell is a copy of another: it may add at most COPY_ROOM to what it
        holds now (the strings it was given are the other's, not more memory)."""
        self.limit = min(MAX_BYTES, self.size + COPY_ROOM)

    def restore(self, values: Mapping[str, str], readonly: Iterable[str]) -> None:
        """Put back what a subshell (or a command's ``NAME=value``) changed: no check,
        the values and marks are the shell's own from before."""
        self.data.clear()
        self.data.update(values)
        self.size = sum(len(k) + len(v) for k, v in self.data.items())
        self.readonly = set(readonly)
