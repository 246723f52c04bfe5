"""The eight capability rights, as a bit set: the contract between the kernel and apps.

``IntFlag`` keeps rights cheap to combine and compare (``need & ~held`` is one integer
operation) on the hot path, while still printing as names in errors and the audit log.
"""

from __future__ import annotations

import enum

from exo.abi.errors import InvalidRights


class Rights(enum.IntFlag):
    """What a capability lets its holder do with the resource it names."""

    NONE = 0
    READ = 1 << 0
    WRITE = 1 << 1
    EXECUTE = 1 << 2
    SEND = 1 << 3
    RECV = 1 << 4
    DUPLICATE = 1 << 5
    TRANSFER = 1 << 6
    GRANT = 1 << 7

    @classmethod
    def all(cls) -> Rights:
        """Every right (what the kernel may hand out at the root of a derivation tree)."""
        return cls(_ALL)

    @classmethod
    def parse(cls, text: str | int | Rights) -> Rights:
        """Parse ``"READ,WRITE"`` (case-insensitive; ``,``, ``|``, ``+`` or spaces separate).

        ``"ALL"`` means every right and ``""``/``"NONE"`` means none. An ``int`` or ``Rights``
        is accepted too, so callers can pass whatever they hold; unknown bits are refused.
        """
        if type(text) is cls:
            return text
        if isinstance(text, bool):
            raise InvalidRights(f"rights must be a string or Rights, not {text!r}")
        if isinstance(text, int):
            if text < 0 or text & ~_ALL:
                raise InvalidRights(f"rights value {text:#x} has unknown bits")
            return cls(text)
        if not isinstance(text, str):
            raise InvalidRights(f"rights must be a string or Rights, not {type(text).__name__}")
        result = cls.NONE
        for raw in text.replace("|", ",").replace("+", ",").replace(" ", ",").split(","):
            word = raw.strip().upper()
            if not word or word == "NONE":
                continue
            if word == "ALL":
                result |= _ALL
                continue
            member = _BY_NAME.get(word)
            if member is None:
                known = ", ".join(_BY_NAME)
                raise InvalidRights(f"unknown right {raw.strip()!r} (known: {known}, ALL)")
            result |= member
        return cls(result)

    def format(self) -> str:
        """``"READ,WRITE"`` in canonical order, ``"NONE"`` for the empty set."""
        return _TEXT[self._value_]

    def __str__(self) -> str:
        return self.format()


_BY_NAME: dict[str, Rights] = {
    m.name: m for m in Rights if m.name is not None and m.name != "NONE" and m.value
}
_ALL: int = 0
for _m in _BY_NAME.values():
    _ALL |= int(_m)
# Every one of the 256 sets, formatted once: audit records format rights on every operation.
_TEXT: list[str] = [
    ",".join(n for n, m in _BY_NAME.items() if v & m._value_) or "NONE" for v in range(_ALL + 1)
]
