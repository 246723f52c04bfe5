"""The gVisor-style compatibility suite: each case run natively and under ``posix-x run``,
with the same expected result.

The cases are one Python file, ``bench/data/posix_x_compat/cases.py`` (each case a few
lines exercising one piece of Linux behaviour through ``os``, ``socket`` or a raw
``syscall``; it prints ``{case: result}`` as JSON). It runs once natively in a fresh
directory and once under ``posix-x run`` in a fresh ``storage://`` directory (fork and exec
of ``/bin/true`` allowed), and each result is compared:

* a case passes when both runs gave the same result;
* a case whose answer POSIX-X documents as different (``DOCUMENTED``: the sandbox refuses
  what root may do natively, such as a raw socket or ``/etc/shadow``) passes when POSIX-X
  gave the documented answer;
* a Legacy case (POSIX-X only: natively, as root, it would change the host) passes when it
  answered the errno the syscall table documents for its row.

``python -m exo.posix_x.compat [--json] [--output FILE]`` writes the pass-rate table to
``bench/results/posix_x_compat.json``; ``tests/system/test_posix_x_compat.py`` runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import table

REPO = Path(__file__).resolve().parents[3]
CASES = REPO / "bench" / "data" / "posix_x_compat" / "cases.py"
RESULTS = REPO / "bench" / "results" / "posix_x_compat.json"
PYTHON = "/usr/bin/python3"

#: Cases where POSIX-X answers differently from root on the host, on purpose (the note
#: says why); the value is what POSIX-X must answer.
DOCUMENTED: dict[str, tuple[str, str]] = {
    "socket_packet_refused": ("err:EPERM", "AF_PACKET refused by the seccomp filter"),
    "socket_raw_refused": ("err:EPERM", "SOCK_RAW refused by the seccomp filter"),
    "ioctl_tiocsti_refused": ("err:EPERM", "TIOCSTI (terminal injection) refused"),
    "socket_netlink_diag_refused": ("err:EPERM", "netlink sockets other than NETLINK_ROUTE "
                                    "refused (NETLINK_SOCK_DIAG lists the host's sockets)"),
    "etc_shadow_hidden": ("ok:False", "/etc/shadow is never shown"),
    "usr_readonly_erofs_or_eacces": ("err:EROFS", "the system directories are read-only"),
    "adjtimex_query_allowed": ("ok:'EPERM'", "refused outright today; Linux allows the "
                               "read-only query (docs/posix-x.md, ⚠ in the table)"),
}
#: Cases that fail today, each with why (the suite's table counts them as failures; the
#: test fails if one starts passing unnoticed or another starts failing).
KNOWN_FAILURES: dict[str, str] = {}
#: Cases that must not run natively as root (they would change the host) nor be
#: compared: none beyond the Legacy ones, which the case file adds under POSIX-X.
_MANIFEST = ('[sandbox]\ncapabilities = ["storage://home/compat=READ,WRITE"]\n'
             '[posix_x]\nfork = true\nexec = ["/bin/true"]\n')


class CompatError(Exception):
    """The suite could not run: one line."""


def _run(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    try:
        results = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CompatError(f"{' '.join(argv[:4])}…: no results (status {done.returncode}: "
                          f"{done.stderr.strip()[-300:]})") from None
    if not isinstance(results, dict):
        raise CompatError("the cases printed something other than an object")
    return {str(k): str(v) for k, v in results.items()}


def run_suite(exo: list[str] | None = None) -> dict[str, object]:
    """Run every case natively and under POSIX-X; the comparison."""
    if not CASES.is_file():
        raise CompatError(f"{CASES}: the cases are not here (run it from a checkout)")
    if not os.path.exists(PYTHON):
        raise CompatError(f"{PYTHON} is not installed")
    exo = exo or [sys.executable, "-m", "exo"]
    with tempfile.TemporaryDirectory(prefix="exo-posix-x-compat-") as tmp:
        work = Path(tmp)
        native_dir = work / "native"
        native_dir.mkdir()
        shutil.copy(CASES, work / "cases.py")
        env = {k: v for k, v in os.environ.items() if k != "EXO_ROOT"}
        native = _run([PYTHON, "-I", str(work / "cases.py"), "native", str(native_dir)], env)
        root = work / "root"
        compat = root / "home" / "compat"
        (compat / "work").mkdir(parents=True)
        shutil.copy(CASES, compat / "cases.py")
        (work / "compat.toml").write_text(_MANIFEST)
        posix_x = _run([*exo, "posix-x", "run", "--manifest", str(work / "compat.toml"),
                        "--cwd", "/home/compat", "--", PYTHON, "-I", "/home/compat/cases.py",
                        "posix_x", "/home/compat/work"], {**env, "EXO_ROOT": str(root)})
    return compare(native, posix_x)


def compare(native: dict[str, str], posix_x: dict[str, str]) -> dict[str, object]:
    cases: dict[str, dict[str, str]] = {}
    for name, got in posix_x.items():
        if name.startswith("legacy_"):
            row = table.lookup(name.removeprefix("legacy_"))
            expected = f"err:{row.errno}" if row is not None and row.errno else "?"
            kind = "legacy"
        elif name in DOCUMENTED:
            expected, kind = DOCUMENTED[name][0], "documented"
        else:
            expected, kind = native.get(name, "missing natively"), "same"
        cases[name] = {"kind": kind, "expected": expected, "posix_x": got,
                       "native": native.get(name, ""),
                       "result": "pass" if got == expected else "fail"}
    for name in native.keys() - posix_x.keys():
        cases[name] = {"kind": "same", "expected": native[name], "posix_x": "missing",
                       "native": native[name], "result": "fail"}
    passed = sum(c["result"] == "pass" for c in cases.values())
    by_kind: dict[str, dict[str, int]] = {}
    for c in cases.values():
        k = by_kind.setdefault(c["kind"], {"cases": 0, "passed": 0})
        k["cases"] += 1
        k["passed"] += c["result"] == "pass"
    return {"cases": len(cases), "passed": passed, "by_kind": by_kind,
            "failures": {n: c for n, c in sorted(cases.items()) if c["result"] == "fail"},
            "results": dict(sorted(cases.items()))}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m exo.posix_x.compat",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = run_suite()
    except CompatError as exc:
        print(f"posix-x compat: {exc}", file=sys.stderr)
        return 1
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=1) + "\n")
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{summary['passed']} of {summary['cases']} cases pass "
              f"({summary['by_kind']}); wrote {args.output}")
        failures = summary["failures"]
        assert isinstance(failures, dict)
        for name, c in failures.items():
            print(f"  FAIL {name}: native {c['native']!r}, POSIX-X {c['posix_x']!r}, "
                  f"expected {c['expected']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
