"""Text an application chose, made safe to show: no terminal control sequences.

Command lines, names and messages that came from an app end up in the kernel log, in
``dmesg`` and in ``ps`` on the operator's terminal. An escape sequence in them could
clear the screen, rewrite the clipboard (OSC 52) or draw a fake prompt there, so every
control character (C0, DEL, C1) except newline and tab is shown as ``\\xNN`` instead.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with control characters escaped (newlines and tabs kept unless
    ``newlines`` is false, for one-line fields)."""
    pattern = _CONTROL if newlines else _ONE_LINE
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
