"""``Value``: equality and hashing from one ``_key()`` method.

Classes on the boot path are plain ``__slots__`` classes rather than dataclasses: importing
``dataclasses`` costs ~14 ms (it pulls in ``inspect``) and each decorated class ~1.3 ms more
at import, against a boot budget of about 100 ms (docs/ARCHITECTURE.md, "Boot budget").
The one thing those classes would still write over and over is value equality; this base
class writes it once.
"""

from __future__ import annotations


class Value:
    """Instances are equal when they are of the same class and their ``_key()`` is equal."""

    __slots__ = ()

    def _key(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Value) and type(other) is type(self)
                and self._key() == other._key())

    def __hash__(self) -> int:
        return hash(self._key())
