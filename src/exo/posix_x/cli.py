"""``posix-x`` on the command line: ``main(argv) -> int`` for the shell and ``exo`` to call.

Subcommands so far: ``analyze BINARY [--json] [--deep]`` and ``syscalls [NAME…] [--tier T]
[--json | --markdown]``. Bad input (a missing file, not an ELF, a truncated one, an unknown
syscall) is one line on stderr and a non-zero exit status, never a traceback: 2 for usage
errors (argparse's convention), 1 for a file that cannot be analysed.
"""

from __future__ import annotations

import argparse
import json
import sys

from exo._printable import printable

from . import table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from rich.console import Console


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns a status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _parser() -> _Parser:
    parser = _Parser(prog="posix-x", description="Run and inspect Linux programs under "
                     "Exo capabilities (POSIX-X).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    analyze = sub.add_parser("analyze", help="what a binary or script will need")
    analyze.add_argument("binary", help="an ELF executable or a script with #!")
    analyze.add_argument("--json", action="store_true", help="print the report as JSON")
    analyze.add_argument("--deep", action="store_true",
                         help="also read the imports of the libraries it needs")
    syscalls = sub.add_parser("syscalls", help="the syscall table: tier of every syscall")
    syscalls.add_argument("names", nargs="*", help="syscall names or numbers (default: all)")
    syscalls.add_argument("--tier", choices=table.TIERS, help="only this tier")
    form = syscalls.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the rows as JSON")
    form.add_argument("--markdown", action="store_true",
                      help="print docs/posix-x-compatibility.md")
    return parser


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args_list = sys.argv[1:] if argv is None else argv
    parser = _parser()
    if any(a in ("-h", "--help") for a in args_list):
        try:
            parser.parse_args(args_list)
        except SystemExit as exc:  # argparse printed the help
            return exc.code if isinstance(exc.code, int) else 0
    try:
        args = parser.parse_args(args_list)
    except _UsageError as exc:
        print(f"posix-x: {printable(str(exc), newlines=False)}", file=err)
        return 2
    if args.command == "analyze":
        return _analyze(args.binary, as_json=args.json, deep=args.deep, out=out, err=err)
    return _syscalls(args.names, args.tier, as_json=args.json, markdown=args.markdown,
                     out=out, err=err)


def _analyze(binary: str, *, as_json: bool, deep: bool, out: TextIO, err: TextIO) -> int:
    from .analyze import AnalyzeError, analyze, render

    try:
        report = analyze(binary, deep=deep)
    except AnalyzeError as exc:
        print(f"posix-x analyze: {printable(str(exc), newlines=False)}", file=err)
        return 1
    if as_json:
        json.dump(report.as_dict(), out, indent=1)
        out.write("\n")
    else:
        render(report, _console(out))
    return 0


def _syscalls(names: list[str], tier: str | None, *, as_json: bool, markdown: bool,
              out: TextIO, err: TextIO) -> int:
    if markdown:
        out.write(table.markdown())
        return 0
    rows: list[table.Syscall] = []
    for name in names:
        row = table.lookup(name)
        if row is None:
            print(f"posix-x syscalls: {printable(name, newlines=False)}: no such x86-64 "
                  "syscall", file=err)
            return 1
        rows.append(row)
    rows = rows or list(table.SYSCALLS)
    if tier:
        rows = [r for r in rows if r.tier == tier]
    if as_json:
        json.dump([r.as_dict() for r in rows], out, indent=1)
        out.write("\n")
        return 0
    from rich.markup import escape
    from rich.table import Table

    grid = Table(title=f"POSIX-X syscalls (x86-64, Linux {table.KERNEL_VERSION})")
    for column in ("#", "syscall", "tier", "errno", "allowed by", "note"):
        grid.add_column(column, justify="right" if column == "#" else "left")
    for r in rows:
        grid.add_row(str(r.number), r.name, r.tier, r.errno, escape(r.cap), escape(r.note))
    _console(out).print(grid)
    return 0


def _console(out: TextIO) -> Console:
    from rich.console import Console

    return Console(file=out, soft_wrap=not out.isatty())


if __name__ == "__main__":
    sys.exit(main())
