"""README.md's "Assistant" section runs as written: its host commands print what it shows,
and its Exo shell session (with net-loop 2.1.4 and 2.1.5 loaded) answers, asks back and
upgrades and rolls back the network driver as shown. Figures that change from run to run
(CPU percentages, confidences, swap times) are masked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.system.test_module_drivers import build_driver

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text.split("## Assistant\n", 1)[1].split("\n## ", 1)[0]


def _blocks() -> list[list[str]]:
    return [b.splitlines() for b in re.findall(r"```console\n(.*?)```", _section(), re.S)]


def _mask(line: str) -> str:
    line = re.sub(r"(cores|cœurs) ?: \[[^]]*\]", "<cores>", line)
    line = re.sub(r"\d+(\.\d+)? ?%", "<n>%", line)
    line = re.sub(r'"confidence": [0-9.]+', '"confidence": <c>', line)
    return re.sub(r"\(swap [0-9.]+ ms\)", "(swap <t> ms)", line)


def test_the_host_commands(exo_env: dict[str, str]) -> None:
    host, _shell = _blocks()
    assert host[0].startswith("$ ")
    pairs: list[tuple[str, list[str]]] = []
    for line in host:
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            pairs[-1][1].append(line)
    assert len(pairs) == 3
    for command, shown in pairs:
        argv = command.replace(".venv/bin/exo", f"{sys.executable} -m exo")
        r = subprocess.run(argv, shell=True, env=exo_env, text=True, capture_output=True,
                           timeout=120, check=False)
        assert r.returncode == 0, (command, r.stderr)
        assert [_mask(x) for x in r.stdout.splitlines()] == [_mask(x) for x in shown], command


def test_the_shell_session(exo_cmd: list[str], exo_env: dict[str, str], exo_root: Path,
                           tmp_path: Path) -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        pytest.skip("net/loop needs root (CAP_NET_ADMIN) and /dev/net/tun")
    _host, shell = _blocks()
    script: list[str] = []
    expected: list[str] = []
    for line in shell:
        if line.startswith("exo-os:~# "):
            script.append(line.split("# ", 1)[1])
        elif line.endswith("[y/N] y"):
            script.append("y")  # the answer typed at the question
            expected.append(line[:-2])
        else:
            expected.append(line)
    kernel = subprocess.Popen([*exo_cmd, "boot", "-q"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=exo_env,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*exo_cmd, "module", "list"], env=exo_env, capture_output=True,
                             timeout=60, check=False).returncode != 0:
            assert time.monotonic() < deadline  # the module manager is a DEFERRED step
            time.sleep(0.2)
        for version in ("2.1.4", "2.1.5"):
            package = build_driver(tmp_path, exo_root, "net_loop", "2.1.4", version)
            subprocess.run([*exo_cmd, "module", "load", str(package)], env=exo_env,
                           capture_output=True, timeout=120, check=True)
        out, err = kernel.communicate("\n".join([*script, "exo shutdown"]) + "\n",
                                      timeout=180)
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait()
    shown = [_mask(x) for x in out.splitlines()] + [_mask(err)]
    for line in expected:
        want = _mask(line)
        assert any(want in got for got in shown), (line, out, err)
