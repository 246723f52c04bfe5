"""The ``exo`` command: a thin dispatcher in front of the click command group.

``exo boot`` is on the boot-time budget (≤ 300 ms, ≤ 5 × ``python3 -c pass``), and
importing click alone costs a sizeable share of it. So ``exo boot`` (without ``--help``)
is parsed here with getopt, which is cheaper, and every other command — including
``exo boot --help``, which documents the same options — goes through click.
"""

from __future__ import annotations

import sys


def _boot_fast_path(argv: list[str]) -> int | None:
    if not argv or argv[0] != "boot" or any(a in ("-h", "--help") for a in argv[1:]):
        return None
    # getopt rather than argparse: argparse imports shutil, and with it bz2 and lzma.
    import getopt

    try:
        opts, extra = getopt.gnu_getopt(argv[1:], "q", ["root=", "quiet", "json-boot"])
    except getopt.GetoptError:
        return None  # let click produce its usual error message
    if extra:
        return None
    options = dict(opts)
    from exo.kernel.session import boot_and_run

    return boot_and_run(options.get("--root"), quiet="-q" in options or "--quiet" in options,
                        json_boot="--json-boot" in options)


def main() -> None:
    status = _boot_fast_path(sys.argv[1:])
    if status is not None:
        raise SystemExit(status)
    from exo.cli.commands import main as click_main

    click_main()


__all__ = ["main"]
