"""The libseccomp binding loads without the subprocesses ``ctypes.util.find_library``
runs (30-35 ms of a one-command kernel's only command, and "Unable to find libseccomp"
at a descriptor shortage)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exo.sandbox import _seccomp

PROBE = """
import ctypes.util, subprocess, sys
def refuse(*args, **kwargs):
    raise OSError("no subprocess may run here")
subprocess.Popen = refuse
from exo.sandbox import _seccomp
sc = _seccomp.binding()
assert ctypes.util.find_library.__module__ == "ctypes.util"  # put back
print(type(sc.SyscallFilter(sc.ALLOW)).__name__, _seccomp.binding() is sc)
"""


@pytest.mark.skipif(not _seccomp.available(), reason="no seccomp or libseccomp here")
def test_the_binding_loads_without_a_subprocess() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "SyscallFilter True\n"), done.stderr
