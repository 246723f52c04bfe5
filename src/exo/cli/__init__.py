"""The ``exo`` command: a thin dispatcher in front of the click command group.

``exo boot`` is on the boot-time budget (≤ 300 ms, ≤ 5 × ``python3 -c pass``), and
importing click alone costs a sizeable share of it. So ``exo boot`` (without ``--help``)
is parsed here with argparse, which is cheaper, and every other command — including
``exo boot --help``, which documents the same options — goes through click.
"""

from __future__ import annotations

import sys


def _boot_fast_path(argv: list[str]) -> int | None:
    if not argv or argv[0] != "boot" or any(a in ("-h", "--help") for a in argv[1:]):
        return None
    import argparse

    parser = argparse.ArgumentParser(prog="exo boot", add_help=False)
    parser.add_argument("--root")
    parser.add_argument("--quiet", "-q", action="store_true")
    parser.add_argument("--json-boot", action="store_true")
    ns, extra = parser.parse_known_args(argv[1:])
    if extra:
        return None  # let click produce its usual error message
    from exo.kernel.session import boot_and_run

    return boot_and_run(ns.root, quiet=ns.quiet, json_boot=ns.json_boot)


def main() -> None:
    status = _boot_fast_path(sys.argv[1:])
    if status is not None:
        raise SystemExit(status)
    from exo.cli.commands import main as click_main

    click_main()


__all__ = ["main"]
