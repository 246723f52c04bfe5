"""The shell's variables, and ``readonly``: one mapping that refuses every change to a
name marked read-only, wherever the change comes from (``x=1``, ``read``, ``for``,
``let``, ``getopts``, ``local``, ``unset``, ``export``), as sh does."""

from __future__ import annotations

from collections import UserDict
from collections.abc import Iterable, Mapping

from exo.shell.parser import UnsetError


class ReadonlyError(UnsetError):
    """A change to a read-only variable: said, and the rest of the line is not run (as a
    failed assignment ends a script in sh); a builtin that tried it fails, status 1."""


class Variables(UserDict[str, str]):
    """``name -> value``. A UserDict, not a dict: its ``update``, ``pop``,
    ``setdefault`` and ``clear`` all go through ``__setitem__`` and ``__delitem__``, so
    the one check there covers them."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        #: The names ``readonly`` marked: no change reaches them until the shell ends
        #: (a subshell's own marks end with it).
        self.readonly: set[str] = set()
        super().__init__(values or {})

    def _check(self, name: str) -> None:
        if name in self.readonly:
            raise ReadonlyError(f"{name}: readonly variable")

    def __setitem__(self, name: str, value: str) -> None:
        self._check(name)
        self.data[name] = value

    def __delitem__(self, name: str) -> None:
        self._check(name)
        del self.data[name]

    def restore(self, values: Mapping[str, str], readonly: Iterable[str]) -> None:
        """Put back what a subshell (or a command's ``NAME=value``) changed: no check,
        the values and marks are the shell's own from before."""
        self.data.clear()
        self.data.update(values)
        self.readonly = set(readonly)
