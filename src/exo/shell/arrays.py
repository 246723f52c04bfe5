"""Bash's indexed arrays: ``a=(x y)``, ``a+=(z)``, ``a[3]=w``, ``${a[1]}``, ``${a[-1]}``,
``"${a[@]}"`` (a word each), ``${a[*]}``, ``${#a[@]}``, ``${!a[@]}``, ``unset 'a[1]'``.

An array lives in the shell's one variable mapping (``variables.Variables``) as a string no
word can spell (it starts with a NUL, which no argument or variable holds), so ``readonly``,
``local``, a subshell's undo and ``unset`` treat it as any variable, with no second store to
keep in step. ``$a`` is its element 0, as in bash; a plain variable read as an array is
one element. Arrays are never exported to programs (bash's rule too).
"""

from __future__ import annotations

import shlex

#: The start of an array's encoding: ``MARK`` then ``index NUL value`` pairs, NUL apart.
MARK = "\0array\0"
#: ``lookup(NAME + ELEMENTS)``: NAME's elements, encoded (a plain NAME as element 0).
ELEMENTS = "\0elements"
#: Elements one array may hold, and their bytes in all (`a+=("$four_mib")` in a loop
#: would otherwise grow the kernel by 4 MiB a round).
MAX_ELEMENTS = 1 << 16
MAX_BYTES = 16 << 20


def is_array(value: str | None) -> bool:
    return value is not None and value.startswith(MARK)


def encode(elements: dict[int, str]) -> str:
    if len(elements) > MAX_ELEMENTS:
        raise ValueError(f"an array holds at most {MAX_ELEMENTS} elements")
    if sum(len(v) for v in elements.values()) > MAX_BYTES:
        raise ValueError(f"an array holds at most {MAX_BYTES >> 20} MiB")
    return MARK + "\0".join(f"{i}\0{v}" for i, v in sorted(elements.items()))


def decode(value: str | None) -> dict[int, str]:
    """The elements of a variable's value (None: unset, no element)."""
    if value is None:
        return {}
    if not is_array(value):
        return {0: value}
    body = value[len(MARK):]
    if not body:
        return {}
    parts = body.split("\0")
    try:
        return {int(parts[k]): parts[k + 1] for k in range(0, len(parts) - 1, 2)}
    except ValueError:  # (not one this module made: what reaches the shell has no NUL)
        return {0: value.replace("\0", "")}


def scalar(value: str) -> str:
    """What ``$NAME`` reads: an array's element 0 ("" without one), else the value."""
    return decode(value).get(0, "") if is_array(value) else value


def index_of(elements: dict[int, str], index: int) -> int:
    """A subscript as bash reads it: a negative one counts back from the last index."""
    if index < 0:
        last = max(elements, default=-1)
        index += last + 1
        if index < 0:
            raise ValueError("bad array subscript")
    return index


def shown(name: str, value: str) -> str:
    """``NAME=VALUE`` as ``set`` and ``declare -p`` list it (an array as bash does)."""
    if not is_array(value):
        return f"{name}={shlex.quote(value)}"
    items = " ".join(f'[{i}]={shlex.quote(v)}' for i, v in decode(value).items())
    return f"{name}=({items})"
