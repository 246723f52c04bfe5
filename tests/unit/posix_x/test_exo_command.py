"""``exo posix-x …`` on the host runs the same entry point the shell will (exo.posix_x.cli)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _exo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "exo"), "posix-x", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_analyze_json_through_exo() -> None:
    done = _exo("analyze", "/usr/bin/cat", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "openat" in json.dumps(report)


def test_missing_binary_is_one_line_and_fails() -> None:
    done = _exo("analyze", "/nonexistent/prog")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "no such file" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_is_posix_x_own() -> None:
    done = _exo("--help")
    assert done.returncode == 0
    assert "analyze" in done.stdout and "syscalls" in done.stdout


def test_run_passes_the_programs_own_options(tmp_path: Path) -> None:
    import os

    done = subprocess.run([str(Path(sys.executable).parent / "exo"), "posix-x", "run", "--",
                           "/bin/echo", "--help", "-h"], capture_output=True, text=True,
                          timeout=60, check=False,
                          env={**os.environ, "EXO_ROOT": str(tmp_path / "root")})
    assert (done.returncode, done.stdout) == (0, "--help -h\n"), done.stderr
