"""``serial/pty``: the far end of a serial line, a modem-like device answering one AT
command per line (the kernel's pump cuts the pty's input into lines and writes each
answer back, CRLF-terminated):

``AT`` → ``OK``; ``ATI`` → ``Exo serial/pty VERSION``; ``AT+ECHO=TEXT`` → ``TEXT``;
``AT+COUNT?`` → lines answered so far (state handed over across upgrades); anything
else → ``ERROR``.
"""

from __future__ import annotations

VERSION = "1.0.0"
_count = 0


def handle(request: bytes) -> bytes:
    global _count
    _count += 1
    line = request.strip().decode("ascii", errors="replace")
    command = line.upper()
    if command == "AT":
        out = "OK"
    elif command == "ATI":
        out = f"Exo serial/pty {VERSION}"
    elif command.startswith("AT+ECHO="):
        out = line[len("AT+ECHO="):]
    elif command == "AT+COUNT?":
        out = str(_count)
    else:
        out = "ERROR"
    return out.encode("ascii", errors="replace") + b"\r\n"


def export_state() -> bytes:
    return str(_count).encode()


def import_state(data: bytes) -> None:
    global _count
    _count = int(data or b"0")
