"""The ring protocol stands without Python: ``src/exo/ipc/fring.{h,c}`` include no Python
header, and a C program linking only ``fring.c`` (``tests/ipc/c/ring_roundtrip.c``)
round-trips inline, handle-carrying and zero-copy messages (with their returns) between
two processes, and rejects a forged slot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "src" / "exo" / "ipc"
PROGRAM = Path(__file__).parent / "c" / "ring_roundtrip.c"
GCC = shutil.which("gcc")

needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed (make system-deps)")


def _includes(path: Path) -> list[str]:
    return re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', path.read_text(), re.MULTILINE)


def test_protocol_sources_do_not_include_python() -> None:
    for name in ("fring.h", "fring.c"):
        includes = _includes(PROTO / name)
        assert includes, name
        assert not [inc for inc in includes if "python" in inc.lower()], (name, includes)
    # and the binding is built on it
    assert "fring.h" in _includes(PROTO / "_fring.c")


@needs_gcc
def test_protocol_preprocesses_without_python_headers() -> None:
    """Everything fring.c pulls in, transitively, comes from the C library and Linux."""
    deps = subprocess.run(
        [str(GCC), "-std=c11", "-M", f"-I{PROTO}", str(PROTO / "fring.c")],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "fring.h" in deps
    assert "Python.h" not in deps and "python3" not in deps


@needs_gcc
def test_c_program_round_trips_between_two_processes(tmp_path: Path) -> None:
    exe = tmp_path / "ring_roundtrip"
    subprocess.run(
        [str(GCC), "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{PROTO}",
         str(PROGRAM), str(PROTO / "fring.c"), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "500 zero-copy round trips" in run.stdout
    assert "1 forged slot rejected" in run.stdout
