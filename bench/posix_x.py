"""POSIX-X against native Linux and plain bubblewrap, in one run (issue 10).

The measurement is ``exo.posix_x.benchmark`` (``posix-x benchmark`` in the shell and
``exo posix-x benchmark`` run the same); this is its command line for the bench suite.
Writes ``bench/results/posix_x.json``. ``--quick``: 3 rounds of 2-second loads, under
10 minutes; the issue's figures need ``--rounds 10`` (the default). ``--apps
postgres,redis``: only those (``syscalls`` is one), merged into the existing file. Every
result carries the host's load averages per round (this machine is shared).
"""

from __future__ import annotations

import argparse
import sys

from exo.posix_x.benchmark import ALL, RESULTS, BenchmarkError
from exo.posix_x.benchmark import main as bench_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2-second loads")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per application")
    parser.add_argument("--seconds", type=float, help="load duration per measurement")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--control", action="store_true",
                        help="also run native a second time each round (an A/A control)")
    parser.add_argument("--seccomp-peer", action="store_true",
                        help="also run bubblewrap loading POSIX-X's seccomp program each "
                        "round (what the filter alone costs)")
    parser.add_argument("--apps", default=",".join(ALL),
                        help=f"comma-separated, of {','.join(ALL)} (default: all); results "
                        "are merged into an existing --output")
    args = parser.parse_args()
    try:
        return bench_main(quick=args.quick, as_json=args.json, rounds=args.rounds,
                          apps=args.apps, output=args.output, seconds=args.seconds,
                          out=sys.stdout, err=sys.stderr, control=args.control,
                          seccomp_peer=args.seccomp_peer)
    except BenchmarkError as exc:
        print(f"posix_x bench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
