"""What the boot loads before the prompt: the boot budget's guard (docs/ARCHITECTURE.md).

The boot target (≤ 5 × ``python3 -c pass``, bench/boot.py) is met by keeping heavy modules
off the path from process start to the shell being ready. Timing is for the benchmark; this
test checks the cause instead, so a change that drags ``dataclasses`` back onto the boot
path fails here, on any machine, however fast.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Each of these costs milliseconds to import (measured on the 2-core VM): typing ~6,
# dataclasses ~14 plus ~1.3 per class, argparse ~4, subprocess ~5, ctypes.util ~20 (pyseccomp),
# click and rich tens. They belong to the first spawn, the DEFERRED phase or other commands.
KEPT_OFF = ("typing", "dataclasses", "inspect", "argparse", "subprocess", "shutil",
            "tempfile", "ctypes.util", "pyseccomp", "click", "rich", "prompt_toolkit",
            "concurrent.futures", "asyncio", "exo.sandbox.spec", "exo.sandbox.launcher",
            "exo.kernel.syscalls", "exo.kernel.revocable", "msgspec",
            "exo.kernel.manifest_schema")

# Boots through the real entry point and records sys.modules the moment the shell is ready,
# which is when the kernel starts its DEFERRED phase.
HARNESS = """
import json, sys
from exo.kernel.kernel import Kernel

start_deferred = Kernel.start_deferred

def snapshot(self, *args, **kwargs):
    sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n")
    return start_deferred(self, *args, **kwargs)

Kernel.start_deferred = snapshot
from exo.cli import main
sys.argv = ["exo", "boot", "--quiet"]
main()
"""


def test_nothing_heavy_is_imported_before_the_shell_is_ready(exo_env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-c", HARNESS], input="echo ready\n", env=exo_env,
                       text=True, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ready\n"
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("MODULES "))
    loaded = set(json.loads(line.removeprefix("MODULES ")))
    assert "exo.kernel.process" in loaded and "exo.shell.core" in loaded  # it did boot
    assert sorted(m for m in KEPT_OFF if m in loaded) == []


def test_the_deferred_phase_loads_the_spawn_path(exo_env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-m", "exo", "boot", "--json-boot"], env=exo_env,
                       text=True, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    steps = {s["name"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["Sandbox filters"]["status"] == "OK"
    assert steps["Sandbox filters"]["phase"] == "DEFERRED"
    assert "spawn path loaded" in steps["Sandbox filters"]["detail"]


def test_an_apps_import_of_exo_std_stays_lean() -> None:
    # Every Exo application imports exo_std at start, inside its sandbox.
    code = "import json, sys, exo_std; print(json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=True)
    loaded = set(json.loads(r.stdout))
    assert "exo_std.caps" in loaded and "exo.abi.rights" in loaded
    assert not any(m == "exo.kernel" or m.startswith("exo.kernel.") for m in loaded)
    assert sorted(m for m in (*KEPT_OFF, "exo.kernel.caps.manager", "exo.kernel.caps.audit",
                              "exo.kernel.caps.names") if m in loaded) == []
