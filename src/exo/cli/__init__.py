"""The ``exo`` command: a thin dispatcher in front of the click command group.

``exo boot`` is on the boot-time budget (≤ 300 ms, ≤ 5 × ``python3 -c pass``), and
importing click alone costs a sizeable share of it. So ``exo boot`` (without ``--help``)
is parsed here by hand, which is cheaper, and every other command — including
``exo boot --help``, which documents the same options — goes through click.
"""

from __future__ import annotations

import sys


def _boot_fast_path(argv: list[str]) -> int | None:
    """Run ``exo boot [--root DIR] [-q|--quiet] [--json-boot]``; None: let click handle it.

    Parsed by hand: getopt imports gettext, argparse imports shutil (and with it bz2 and
    lzma), click costs more still. Anything unexpected goes to click, which owns the
    error messages and ``--help``.
    """
    if not argv or argv[0] != "boot":
        return None
    root: str | None = None
    quiet = json_boot = False
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-q", "--quiet"):
            quiet = True
        elif arg == "--json-boot":
            json_boot = True
        elif arg == "--root":
            root = next(args, None)
            if root is None:
                return None
        elif arg.startswith("--root="):
            root = arg.removeprefix("--root=")
        else:
            return None
    from exo.cli.boot import boot_and_run

    return boot_and_run(root, quiet=quiet, json_boot=json_boot)


def main() -> None:
    status = _boot_fast_path(sys.argv[1:])
    if status is not None:
        raise SystemExit(status)
    from exo.cli.commands import main as click_main

    click_main()


__all__ = ["main"]
