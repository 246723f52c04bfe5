"""The real ``exo`` command, run as a user would, for the package manager's tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

EXO = [sys.executable, "-m", "exo"]


def exo(*args: str, cwd: Path, env: dict[str, str], ok: bool = True
        ) -> subprocess.CompletedProcess[str]:
    """``exo ARGS...`` in ``cwd``; with ``ok``, asserts it succeeded (saying its output)."""
    r = subprocess.run([*EXO, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=180)
    if ok:
        assert r.returncode == 0, f"exo {' '.join(args)}: {r.stderr}{r.stdout}"
    return r


@contextlib.contextmanager
def serving(cwd: Path, env: dict[str, str], *extra: str) -> Iterator[str]:
    """``exo repo serve ./repo --port 0 EXTRA...`` in ``cwd`` (loopback HTTP); yields its
    URL once it says so, and stops it after."""
    proc = subprocess.Popen([*EXO, "repo", "serve", "./repo", "--port", "0", *extra],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving"), line
        yield line.split(" at ")[1].strip()
    finally:
        proc.terminate()
        proc.wait(10)
