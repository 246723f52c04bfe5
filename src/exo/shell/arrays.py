"""Bash's indexed arrays: ``a=(x y)``, ``a+=(z)``, ``a[3]=w``, ``${a[1]}``, ``${a[-1]}``,
``"${a[@]}"`` (a word each), ``${a[*]}``, ``${#a[@]}``, ``${!a[@]}``, ``unset 'a[1]'``;
and its associative ones (``declare -A m``, ``m=([k]=v)``, ``m[$key]=v``, ``${m[$key]}``:
string keys, in the order they were first set).

An array lives in the shell's one variable mapping (``variables.Variables``) as a string no
word can spell (it starts with a NUL, which no argument or variable holds), so ``readonly``,
``local``, a subshell's undo and ``unset`` treat it as any variable, with no second store to
keep in step. ``$a`` is its element 0, as in bash; a plain variable read as an array is
one element. Arrays are never exported to programs (bash's rule too).
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Mapping

#: The start of an array's encoding: ``MARK`` then ``index NUL value`` pairs, NUL apart.
MARK = "\0array\0"
#: An associative array's: ``AMARK`` then ``key NUL value`` pairs, NUL apart.
AMARK = "\0assoc\0"
#: ``lookup(NAME + ELEMENTS)``: NAME's elements, encoded (a plain NAME as element 0).
ELEMENTS = "\0elements"
#: Elements one array may hold, and their bytes in all (`a+=("$four_mib")` in a loop
#: would otherwise grow the kernel by 4 MiB a round).
MAX_ELEMENTS = 1 << 16
MAX_BYTES = 16 << 20


#: The elements of the last few arrays encoded or decoded, by their encoding, with their
#: last index: filling an array in a loop (``a[i]=…``, ``a+=(…)``) decoded and encoded it
#: whole at every round, in Python (20,000 rounds took 94 s); with these, a round past the
#: last index copies the elements and extends the old encoding, both in C (the dicts here
#: are never changed: another shell may be reading one).
_RECENT: dict[str, tuple[dict[int, str], int]] = {}
_RECENT_SIZE = 8


def _remember(encoded: str, elements: dict[int, str], last: int | None = None) -> None:
    with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # (threads race here)
        while len(_RECENT) >= _RECENT_SIZE:
            _RECENT.pop(next(iter(_RECENT)))
    _RECENT[encoded] = (elements, max(elements, default=-1) if last is None else last)


def is_array(value: str | None) -> bool:
    """Whether ``value`` is an array's, indexed or associative."""
    return value is not None and value.startswith(("\0array\0", "\0assoc\0"))


def is_assoc(value: str | None) -> bool:
    return value is not None and value.startswith(AMARK)


class Assoc(dict[str, str]):
    """An associative array's elements: string keys, in the order they were first set
    (bash's own order is its hash table's)."""


#: The last few associative arrays decoded, by their encoding (as ``_RECENT``).
_RECENT_ASSOC: dict[str, Assoc] = {}


def assoc_view(value: str | None) -> Assoc:
    """The elements of an associative array's value, to read only (an empty one for
    anything else)."""
    if value is None or not is_assoc(value):
        return Assoc()
    known = _RECENT_ASSOC.get(value)
    if known is not None:
        return known
    body = value[len(AMARK):]
    parts = body.split("\0") if body else []
    elements = Assoc(zip(parts[0::2], parts[1::2], strict=False))
    _remember_assoc(value, elements)
    return elements


def _remember_assoc(encoded: str, elements: Assoc) -> None:
    with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # (threads race here)
        while len(_RECENT_ASSOC) >= _RECENT_SIZE:
            _RECENT_ASSOC.pop(next(iter(_RECENT_ASSOC)))
    _RECENT_ASSOC[encoded] = elements


def encode_assoc(elements: dict[str, str]) -> str:
    if len(elements) > MAX_ELEMENTS:
        raise ValueError(f"an array holds at most {MAX_ELEMENTS} elements")
    encoded = _bounded(len(elements), AMARK + "\0".join(
        f"{k}\0{v}" for k, v in elements.items()))
    _remember_assoc(encoded, Assoc(elements))
    return encoded


def assoc_with(value: str | None, items: dict[str, str]) -> str:
    """The associative array ``value`` with ``items`` set (``m[k]=v``, ``m+=([k]=v)``): a
    key it does not hold yet extends its encoding (filling one in a loop copies no dict
    and encodes nothing again, in Python)."""
    elements = assoc_view(value)
    if value is None or not is_assoc(value) or any(k in elements for k in items):
        merged = Assoc(elements)
        merged.update(items)
        return encode_assoc(merged)
    tail = "\0".join(f"{k}\0{v}" for k, v in items.items())
    encoded = _bounded(len(elements) + len(items),
                       value + ("\0" if value != AMARK else "") + tail)
    grown = Assoc(elements)
    grown.update(items)
    _remember_assoc(encoded, grown)
    return encoded


def _bounded(count: int, encoded: str) -> str:
    if count > MAX_ELEMENTS:
        raise ValueError(f"an array holds at most {MAX_ELEMENTS} elements")
    if len(encoded) > MAX_BYTES + 12 * count:  # (its values, and each one's index)
        raise ValueError(f"an array holds at most {MAX_BYTES >> 20} MiB")
    return encoded


def encode(elements: dict[int, str]) -> str:
    if len(elements) > MAX_ELEMENTS:
        raise ValueError(f"an array holds at most {MAX_ELEMENTS} elements")
    ordered = dict(sorted(elements.items()))  # (by index: "${a[@]}" reads them so)
    encoded = _bounded(len(elements), MARK + "\0".join(
        f"{i}\0{v}" for i, v in ordered.items()))
    _remember(encoded, ordered)
    return encoded


def with_items(value: str | None, items: dict[int, str]) -> str:
    """``value`` (an array, a plain value as element 0, or unset) with ``items`` set, as
    ``a[i]=v`` and ``a+=(…)`` make it: past its last index, its encoding extended."""
    if not items:
        return encode(decode(value))
    known = _RECENT.get(value) if value is not None and is_array(value) else None
    if known is None or min(items) <= known[1]:
        elements = decode(value)
        elements.update(items)
        return encode(elements)
    # (a copy: another shell, a background block's, may be reading the old one's)
    elements = dict(known[0])
    tail = "\0".join(f"{i}\0{v}" for i, v in sorted(items.items()))
    assert value is not None
    encoded = _bounded(len(elements) + len(items),
                       value + ("\0" if value != MARK else "") + tail)
    elements.update(sorted(items.items()))
    _remember(encoded, elements, max(items))
    return encoded


def decode(value: str | None) -> dict[int, str]:
    """The elements of a variable's value (None: unset, no element), a dict of the
    caller's own."""
    return dict(view(value))


def view(value: str | None) -> Mapping[int, str]:
    """The elements of a variable's value, to read only (``${a[i]}`` in a loop: no copy
    of the whole array each time)."""
    if value is None or is_assoc(value):  # (an associative array's: assoc_view)
        return {}
    if not is_array(value):
        return {0: value}
    known = _RECENT.get(value)
    if known is not None:
        return known[0]
    body = value[len(MARK):]
    if not body:
        return {}
    parts = body.split("\0")
    try:
        elements = {int(parts[k]): parts[k + 1] for k in range(0, len(parts) - 1, 2)}
    except ValueError:  # (not one this module made: what reaches the shell has no NUL)
        return {0: value.replace("\0", "")}
    _remember(value, elements)
    return elements


def scalar(value: str) -> str:
    """What ``$NAME`` reads: an array's element 0 (key "0"; "" without one), else the
    value."""
    if is_assoc(value):
        return assoc_view(value).get("0", "")
    return view(value).get(0, "") if is_array(value) else value


def index_of(elements: Mapping[int, str], index: int) -> int:
    """A subscript as bash reads it: a negative one counts back from the last index."""
    if index < 0:
        last = max(elements, default=-1)
        index += last + 1
        if index < 0:
            raise ValueError("bad array subscript")
    return index


def shown(name: str, value: str) -> str:
    """``NAME=VALUE`` as ``set`` and ``declare -p`` list it (an array as bash does)."""
    if is_assoc(value):
        pairs = " ".join(f'[{shlex.quote(k)}]={shlex.quote(v)}'
                         for k, v in assoc_view(value).items())
        return f"{name}=({pairs})"
    if not is_array(value):
        return f"{name}={shlex.quote(value)}"
    items = " ".join(f'[{i}]={shlex.quote(v)}' for i, v in decode(value).items())
    return f"{name}=({items})"
