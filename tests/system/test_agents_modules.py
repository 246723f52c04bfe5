"""The assistant in a booted Exo shell, end to end: a driver named by a phrase ("the
network driver") is the loaded module net/loop, upgraded and rolled back through the
kernel's module manager once the user says yes; a close call is asked back and ``ai 1``
answers it; DESIGN.md §1's ``ai "Quel est l'usage CPU ?"`` answers as AI-Res."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from tests.system.test_module_drivers import build_driver


def _exo(exo_cmd: list[str], exo_env: dict[str, str], *args: str
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*exo_cmd, *args], env=exo_env, text=True, capture_output=True,
                          timeout=120, check=False)


def test_upgrade_the_network_driver_by_phrase_then_roll_it_back(
        exo_cmd: list[str], exo_env: dict[str, str], exo_root: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        pytest.skip("net/loop needs root (CAP_NET_ADMIN) and /dev/net/tun")
    packages = [build_driver(tmp_path, exo_root, "net_loop", "2.1.4", v)
                for v in ("2.1.4", "2.1.5")]
    kernel = subprocess.Popen([*exo_cmd, "boot", "-q"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=exo_env,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while (r := _exo(exo_cmd, exo_env, "module", "list")).returncode != 0:
            assert time.monotonic() < deadline, r.stderr  # a DEFERRED step
            time.sleep(0.2)
        for package in packages:
            r = _exo(exo_cmd, exo_env, "module", "load", str(package))
            assert r.returncode == 0, r.stderr
        script = ('ai "upgrade the network driver to 2.1.5"\n'
                  "yes\n"
                  'ai "list the modules"\n'
                  'ai "reviens à la version précédente du pilote réseau"\n'
                  "n\n"
                  'ai "roll back the network driver"\n'
                  "y\n"
                  "ai --json \"anything heavy on the cpu?\"\n"
                  "ai 1\n"
                  "ai \"Quel est l'usage CPU ?\"\n"
                  "exo shutdown\n")
        out, err = kernel.communicate(script, timeout=180)
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait()
    assert "ai: upgrade module net/loop to 2.1.5? [y/N]" in err
    assert "[Modules] net-loop upgraded 2.1.4 → 2.1.5" in out, out + err
    listing = out.split("[Modules] 1 modules loaded:")[1].splitlines()[1].split()
    assert listing[:3] == ["net/loop", "net-loop", "2.1.5"], out
    assert "ai: ramener le module net/loop à sa version précédente? [y/N]" in err
    assert "[Assistant] Annulé : ramener le module net/loop" in err
    assert "[Modules] net-loop rolled back 2.1.5 → 2.1.4" in out, out + err
    asked = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert asked["question"] and asked["text"].startswith("Did you mean: ")
    assert sorted(asked["choices"]) == ["proc.top_cpu", "sys.cpu_usage"]
    after = out.split(json.dumps(asked, ensure_ascii=False), 1)[1].splitlines()[1]
    expected = {"sys.cpu_usage": ("[AI-Res] CPU usage: ",),  # `ai 1`: the first choice
                "proc.top_cpu": ("[AI-Res] Top CPU", "[AI-Res] No Exo process")}
    assert after.startswith(expected[asked["choices"][0]]), out
    assert "[AI-Res] Utilisation CPU : " in out
