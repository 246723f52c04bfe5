"""Clear ends (issue 9): a process killed at its memory limit is reported as such, on an
ephemeral kernel and through a running one's control socket."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.system.helpers import booted_kernel

HOG = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n"


def _manifest(tmp_path: Path) -> Path:
    m = tmp_path / "small.toml"
    m.write_text('[limits]\nmemory = "64M"\n')
    return m


def test_the_memory_limit_is_named_when_it_kills(exo_cmd: list[str], exo_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    r = subprocess.run([*exo_cmd, "run", "--manifest", str(_manifest(tmp_path)), "--",
                        "/usr/bin/python3", "-c", HOG], env=exo_env, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 137
    assert r.stderr == "exo: killed: memory limit 64M reached\n"


def test_a_kill_is_not_blamed_on_memory(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    r = subprocess.run([*exo_cmd, "run", "--", "/usr/bin/python3", "-c",
                        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                       env=exo_env, text=True, capture_output=True, timeout=120)
    assert r.returncode == 137 and r.stderr == ""


def test_through_the_running_kernel(exo_cmd: list[str], exo_env: dict[str, str],
                                    exo_root: Path, tmp_path: Path) -> None:
    with booted_kernel(exo_cmd, exo_env, exo_root):
        r = subprocess.run([*exo_cmd, "run", "--manifest", str(_manifest(tmp_path)), "--",
                            "/usr/bin/python3", "-c", HOG], env=exo_env, text=True,
                           capture_output=True, timeout=120)
        assert r.returncode == 137
        assert r.stderr == "exo: killed: memory limit 64M reached\n"


def test_the_shell_says_it_too(exo_cmd: list[str], exo_env: dict[str, str],
                               exo_root: Path) -> None:
    (exo_root / "tmp").mkdir(parents=True)
    (exo_root / "tmp" / "small.toml").write_text('[limits]\nmemory = "64M"\n')
    (exo_root / "tmp" / "hog.py").write_text(HOG)
    script = ("run --manifest /tmp/small.toml --cap storage://tmp/hog.py=READ -- "
              "/usr/bin/python3 /tmp/hog.py\necho status $?\n")
    r = subprocess.run([*exo_cmd, "boot", "-q"], input=script, env=exo_env, text=True,
                       capture_output=True, timeout=120)
    assert "status 137" in r.stdout, (r.stdout, r.stderr)
    assert "exo: killed: memory limit 64M reached\n" in r.stderr
