"""``posix-x`` on the command line: ``main(argv) -> int`` for the shell and ``exo`` to call.

Subcommands: ``run [--manifest FILE] [--cap NAME=RIGHTS]… [--cwd DIR] -- PROGRAM ARGS…``,
``analyze BINARY [--json] [--deep]``, ``profile [--manifest FILE] -- PROGRAM… [--json]``,
``migrate PROGRAM [--json]``, ``benchmark [--quick] [--json]`` and ``syscalls [NAME…]
[--tier T] [--json | --markdown]``. ``run`` fails to start in one line naming the
capability or manifest field that would allow what was refused (status 127: no such
program, 126: refused or the sandbox cannot start, 2: a manifest or capability error). Bad
input to ``analyze`` and ``syscalls`` (a missing file, not an ELF, a truncated one, an
unknown syscall) is one line on stderr and a non-zero exit status, never a traceback: 2 for
usage errors (argparse's convention), 1 for a file that cannot be analysed.
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
    run = sub.add_parser("run", help="run a Linux program as an Exo process")
    run.add_argument("--manifest", help="TOML manifest ([sandbox], [limits], [posix_x])")
    run.add_argument("--cap", action="append", default=[], metavar="NAME=RIGHTS",
                     help="a capability to hold, e.g. storage://var/lib/app=READ,WRITE")
    run.add_argument("--cwd", default="/", help="working directory (an Exo path)")
    run.add_argument("--root", help=argparse.SUPPRESS)
    run.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM ARGS…")
    analyze = sub.add_parser("analyze", help="what a binary or script will need")
    analyze.add_argument("binary", help="an ELF executable or a script with #!")
    analyze.add_argument("--json", action="store_true", help="print the report as JSON")
    analyze.add_argument("--deep", action="store_true",
                         help="also read the imports of the libraries it needs")
    prof = sub.add_parser("profile", help="run a program and report its syscalls by tier, "
                          "hotspots and suggestions")
    prof.add_argument("--manifest", help="TOML manifest ([sandbox], [limits], [posix_x])")
    prof.add_argument("--cap", action="append", default=[], metavar="NAME=RIGHTS")
    prof.add_argument("--cwd", default="/", help="working directory (an Exo path)")
    prof.add_argument("--timeout", type=float, help="stop the program after SECONDS "
                      "(a server) and report what it did")
    prof.add_argument("--json", action="store_true", help="print the profile as JSON")
    prof.add_argument("--root", help=argparse.SUPPRESS)
    prof.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM ARGS…")
    mig = sub.add_parser("migrate", help="profile a program and write the smallest "
                         "manifest that lets it run")
    mig.add_argument("--json", action="store_true", help="print the result as JSON")
    mig.add_argument("--output", "-o", help="where to write the manifest (default: "
                     "./NAME.toml)")
    mig.add_argument("--timeout", type=float, help="stop each run after SECONDS")
    mig.add_argument("--cwd", default="/", help="working directory (an Exo path)")
    mig.add_argument("--root", help=argparse.SUPPRESS)
    mig.add_argument("program", help="the program (a path, or a name in the system "
                     "directories)")
    mig.add_argument("args", nargs="*", help="-- its arguments")
    bench = sub.add_parser("benchmark", help="syscalls and real applications natively, "
                           "under POSIX-X and under plain bubblewrap, side by side")
    bench.add_argument("--quick", action="store_true", help="3 rounds of 2-second loads "
                       "(under 10 minutes)")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--rounds", type=int, help="interleaved rounds per application "
                       "(default 10, --quick 3)")
    bench.add_argument("--apps", help="comma-separated subset of syscalls,nginx,redis,"
                       "postgres,gcc,python")
    bench.add_argument("--output", help="the results file (default "
                       "bench/results/posix_x.json of this checkout)")
    bench.add_argument("--control", action="store_true", help="also run native a second "
                       "time each round (an A/A control: how far identical runs differ)")
    bench.add_argument("--seccomp-peer", action="store_true",
                       help="also run bubblewrap loading POSIX-X's seccomp program each "
                       "round (what the filter alone costs)")
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
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `posix-x profile -- PROGRAM… --json` (the form): a last --json after the
    # program is profile's own.
    if args_list[:1] == ["profile"] and args_list[-1] == "--json" and any(
            not a.startswith("-") for a in args_list[1:-1]):
        args_list = ["profile", "--json", *args_list[1:-1]]
    program_args: list[str] | None = None  # migrate's: everything after its --
    if args_list[:1] == ["migrate"] and "--" in args_list:
        cut = args_list.index("--")
        args_list, program_args = args_list[:cut], args_list[cut + 1:]
    parser = _parser()
    head = args_list[:args_list.index("--")] if "--" in args_list else args_list
    if any(a in ("-h", "--help") for a in head):
        try:
            parser.parse_args(args_list)
        except SystemExit as exc:  # argparse printed the help
            return exc.code if isinstance(exc.code, int) else 0
    try:
        args = parser.parse_args(args_list)
    except _UsageError as exc:
        print(f"posix-x: {printable(str(exc), newlines=False)}", file=err)
        return 2
    if args.command == "run":
        from .run import run

        return run(args.program, caps=args.cap, manifest=args.manifest, cwd=args.cwd,
                   root=args.root, err=err)
    if args.command == "analyze":
        return _analyze(args.binary, as_json=args.json, deep=args.deep, out=out, err=err)
    if args.command == "profile":
        return _profile(args, out=out, err=err)
    if args.command == "migrate":
        if program_args is not None:
            args.args = [*args.args, *program_args]
        return _migrate(args, out=out, err=err)
    if args.command == "benchmark":
        from .benchmark import BenchmarkError
        from .benchmark import main as bench_main

        try:
            return bench_main(quick=args.quick, as_json=args.json, rounds=args.rounds,
                              apps=args.apps, output=args.output, out=out, err=err,
                              control=args.control, seccomp_peer=args.seccomp_peer)
        except BenchmarkError as exc:
            print(f"posix-x benchmark: {printable(str(exc), newlines=False)}", file=err)
            return 1
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


def _positive(value: float | None, what: str) -> None:
    if value is not None and not value > 0:
        raise _UsageError(f"{what}: expected a positive number of seconds")


def _profile(args: argparse.Namespace, *, out: TextIO, err: TextIO) -> int:
    from .profile import ProfileError, profile, render

    try:
        _positive(args.timeout, "--timeout")
        prof = profile(args.program, caps=args.cap, manifest=args.manifest, cwd=args.cwd,
                       root=args.root, timeout=args.timeout,
                       stdout=err.fileno() if args.json and _has_fd(err) else None)
    except (ProfileError, _UsageError) as exc:
        print(f"posix-x profile: {printable(str(exc), newlines=False)}", file=err)
        return 2 if isinstance(exc, _UsageError) else 1
    if args.json:
        json.dump(prof.as_dict(), out, indent=1)
        out.write("\n")
    else:
        render(prof, _console(out))
    return 0


def _has_fd(stream: TextIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _migrate(args: argparse.Namespace, *, out: TextIO, err: TextIO) -> int:
    import os

    from .migrate import MigrateError, migrate, render
    from .profile import ProfileError

    extra = list(args.args)
    name = os.path.basename(args.program.rstrip("/")) or "program"
    output = args.output or f"{name}.toml"
    try:
        _positive(args.timeout, "--timeout")
        result = migrate(args.program, extra, root=args.root, output=output,
                         timeout=args.timeout, cwd=args.cwd)
    except (MigrateError, ProfileError, _UsageError, OSError) as exc:
        print(f"posix-x migrate: {printable(str(exc), newlines=False)}", file=err)
        return 2 if isinstance(exc, _UsageError) else 1
    if args.json:
        json.dump({**result.as_dict(), "output": output}, out, indent=1)
        out.write("\n")
    else:
        render(result, output, _console(out))
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
