"""The AI agents in a booted kernel: an app reaches AI-Res through agent://ai-res over an
encrypted channel (and not without it), tampering closes the connection, destructive
intents wait for a yes, and the boot reports the agents' step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from exo.agents.assistant import Context, act
from exo.agents.intents import Intent
from exo.agents.subsystem import running
from exo.kernel.kernel import Kernel
from exo.kernel.manifest import parse_grant

# The app needs PyNaCl and cryptography: the runtime's interpreter, not a bare python3.
APP_PYTHON = sys.executable


@pytest.fixture
def agents_kernel(kernel: Kernel) -> Iterator[Kernel]:
    kernel.start_deferred()
    kernel.wait_deferred()
    yield kernel


def _run(kernel: Kernel, code: str, *caps: str) -> tuple[int, str, str]:
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = kernel.processes.spawn(
                [APP_PYTHON, "-c", textwrap.dedent(code)], [parse_grant(c) for c in caps],
                stdio=(null, out.fileno(), err.fileno()))
        finally:
            os.close(null)
        status = kernel.processes.wait(proc.pid, timeout=120)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode()


def test_an_app_holding_the_capability_asks_ai_res(agents_kernel: Kernel) -> None:
    status, out, err = _run(agents_kernel, """
        import json
        from exo_std.ai import Agent
        with Agent.connect("ai-res") as a:
            print(a.query("sys.cpu_usage"))
            print(a.query("sys.cpu_usage", lang="fr"))
            print(json.dumps(a.request({"intent": "sys.memory_usage"})))
    """, "agent://ai-res=SEND")
    assert status == 0, err
    en, fr, raw = out.splitlines()
    assert en.startswith("CPU usage: ") and "(avg), cores: [" in en
    assert fr.startswith("Utilisation CPU : ") and "(moyenne), cœurs : [" in fr
    assert en.count("%") == psutil.cpu_count() + 1
    memory = json.loads(raw)
    vm = psutil.virtual_memory()
    assert memory["ok"] and memory["agent"] == "AI-Res"
    assert memory["data"]["memory"]["total"] == vm.total
    assert abs(memory["data"]["memory"]["percent"] - vm.percent) < 5


def test_an_app_without_the_capability_cannot_connect(agents_kernel: Kernel) -> None:
    status, out, err = _run(agents_kernel, """
        from exo_std.ai import Agent
        from exo_std.errors import CapabilityDenied
        for name in ("ai-res", "nobody"):
            try:
                Agent.connect(name)
            except CapabilityDenied as exc:
                print("refused:", exc)
    """, "agent://other=SEND")
    assert status == 0, err
    lines = out.splitlines()
    assert lines == ["refused: no capability grants SEND on agent://ai-res",
                     "refused: no capability grants SEND on agent://nobody"]
    denials = agents_kernel.caps.audit.query(event="deny", limit=20)
    assert any("agent_connect" in r.reason for r in denials)


def test_receiving_alone_does_not_let_an_app_connect(agents_kernel: Kernel) -> None:
    status, out, err = _run(agents_kernel, """
        from exo_std.ai import Agent
        from exo_std.errors import CapabilityDenied
        try:
            Agent.connect("ai-res")
        except CapabilityDenied:
            print("refused")
    """, "agent://ai-res=RECV")
    assert (status, out.strip()) == (0, "refused"), err


def test_tampering_closes_the_connection_and_keys_rotate(agents_kernel: Kernel) -> None:
    status, out, err = _run(agents_kernel, """
        from exo_std.ai import Agent
        from exo.agents.core.client import AgentError
        a = Agent.connect("ai-res")
        a._client.session.max_messages = 2      # rotate every 2 frames
        for _ in range(6):
            a.query("sys.info")
        print("rotations", a._client.session.rotations)
        s = a._client.session
        frame = bytearray(s.seal(b'{"intent": "sys.info"}'))
        frame[-1] ^= 1
        a._client.endpoint.send(bytes(frame))
        try:
            a._client._recv()
            print("answered a tampered frame")
        except AgentError as exc:
            print("closed:", exc)
        b = Agent.connect("ai-res")             # the agent itself is fine
        print(b.query("sys.info")[:6])
    """, "agent://ai-res=SEND")
    assert status == 0, err
    lines = out.splitlines()
    assert int(lines[0].split()[1]) >= 2
    assert lines[1] == "closed: agent://ai-res closed the connection"
    assert lines[2] == "Exo-OS"


@pytest.fixture
def target(agents_kernel: Kernel) -> Iterator[int]:
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        proc = agents_kernel.processes.spawn(["/bin/sleep", "300"], [],
                                             stdio=(null, null, null))
    finally:
        os.close(null)
    yield proc.pid
    if proc.status is None:
        agents_kernel.processes.kill(proc.pid, signal.SIGKILL)
        agents_kernel.processes.wait(proc.pid, timeout=30)


def test_kill_refused_leaves_the_process_running_and_yes_stops_it(
        agents_kernel: Kernel, target: int) -> None:
    ctx = Context(api=agents_kernel.api, agents=running(agents_kernel.core.boot_id))
    intent = Intent("proc.kill", {"target": str(target)}, 0.99)
    refused = act(intent, confirm=lambda _q: False, context=ctx)
    assert refused.text.startswith("Cancelled") and not refused.done
    time.sleep(0.2)
    assert agents_kernel.processes.get(target).status is None
    done = act(intent, confirm=lambda _q: True, context=ctx)
    assert done.ok and done.done and done.agent == "AI-Core"
    assert agents_kernel.processes.wait(target, timeout=30) == 128 + signal.SIGTERM


def test_the_assistant_reaches_ai_res_through_its_agent(agents_kernel: Kernel) -> None:
    agents = running(agents_kernel.core.boot_id)
    assert agents is not None
    ctx = Context(api=agents_kernel.api, agents=agents)
    a = act(Intent("proc.list", {}, 0.9), context=ctx)
    assert a.agent == "AI-Res" and a.data == {"via": "agent://ai-res"}
    assert "exo.agents.core.runner ai-res" in a.text  # the agent is an Exo process
    assert "agent://ai-res AI-Res running pid" in agents_kernel.proc_files()["agents"]()


def test_boot_reports_the_agents_step(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    out = subprocess.run([*exo_cmd, "boot", "--json-boot"], env=exo_env, capture_output=True,
                         text=True, timeout=120, check=False)
    steps = {s["name"]: s for s in json.loads(out.stdout)["steps"]}
    step = steps["AI agents started"]
    assert step["status"] == "OK" and step["phase"] == "DEFERRED"
    assert step["detail"].startswith("deferred; agent://ai-res")


def test_the_shell_ai_builtin_answers_and_asks_before_killing(
        exo_cmd: list[str], exo_env: dict[str, str], exo_root: Path) -> None:
    script = ("run -- /bin/sleep 300 &\n"
              "sleep 1\n"
              "ai --intent sys.memory_usage --lang fr\n"
              "ai --intent proc.kill target=2\n"
              "n\n"
              "ps\n"
              "kill %1\n")
    out = subprocess.run([*exo_cmd, "boot", "-q"], input=script, env=exo_env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert "[AI-Res] Mémoire : " in out.stdout, out.stderr
    assert "ai: stop process 2? [y/N]" in out.stderr
    assert "Cancelled: stop process 2 was not done." in out.stderr
    assert any(line.split()[:1] == ["2"] and "sleep" in line
               for line in out.stdout.splitlines())


def test_revoking_the_capability_cuts_a_connection_in_use(agents_kernel: Kernel) -> None:
    code = textwrap.dedent("""
        import sys, time
        from exo_std.ai import Agent
        from exo.agents.core.client import AgentError
        a = Agent.connect("ai-res")
        a.query("sys.info")
        print("connected", flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                a.query("sys.info")
            except AgentError as exc:
                print("cut:", exc, flush=True)
                sys.exit(0)
            time.sleep(0.05)
        print("still connected")
    """)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    with tempfile.NamedTemporaryFile() as out:
        try:
            proc = agents_kernel.processes.spawn(
                [APP_PYTHON, "-c", code], [parse_grant("agent://ai-res=SEND")],
                stdio=(null, out.fileno(), out.fileno()))
        finally:
            os.close(null)
        deadline = time.monotonic() + 60
        while b"connected" not in Path(out.name).read_bytes():
            assert time.monotonic() < deadline and proc.status is None, \
                Path(out.name).read_text()
            time.sleep(0.05)
        assert agents_kernel.caps.revoke_resource("agent://ai-res") >= 1
        assert agents_kernel.processes.wait(proc.pid, timeout=60) == 0
        text = Path(out.name).read_text()
    assert "cut: agent://ai-res closed the connection" in text, text


def test_connections_per_process_are_bounded_with_a_clear_error(
        agents_kernel: Kernel) -> None:
    status, out, err = _run(agents_kernel, """
        from exo_std.ai import Agent
        held = []
        try:
            for _ in range(10):
                held.append(Agent.connect("ai-res"))
        except Exception as exc:
            print(len(held), type(exc).__name__, exc)
        print(held[0].query("sys.info")[:6])
    """, "agent://ai-res=SEND")
    assert status == 0, err
    first, second = out.splitlines()
    assert first.startswith("4 ") and "already has 4 connections open" in first
    assert second == "Exo-OS"


def test_garbage_on_a_connection_closes_only_that_connection(agents_kernel: Kernel) -> None:
    status, out, err = _run(agents_kernel, """
        from exo_std.ai import Agent
        from exo.agents.core.client import AgentError
        good, bad = Agent.connect("ai-res"), Agent.connect("ai-res")
        for junk in (b"", b"S" * 100, bytes(70000)):
            try:
                bad._client.endpoint.send(junk)
                bad._client._recv()
                print("answered junk")
            except AgentError:
                print("closed")
                break
        print(good.query("sys.info")[:6])
    """, "agent://ai-res=SEND")
    assert status == 0, err
    assert out.splitlines() == ["closed", "Exo-OS"]


def test_the_assistant_applies_a_power_profile_and_back(agents_kernel: Kernel) -> None:
    agents = running(agents_kernel.core.boot_id)
    assert agents is not None and agents.power is not None
    found = agents.power.read()
    ctx = Context(api=agents_kernel.api, agents=agents)
    saver = act(Intent("power.save", {}, 0.9, "fr"), context=ctx)
    assert saver.ok and saver.agent == "AI-Res" and saver.done
    assert saver.text.startswith("Profil power-saver appliqué")
    assert "mesuré" in saver.text and "cpufreq" in saver.text
    assert agents.power.read() != found
    back = act(Intent("power.balanced", {}, 0.9), context=ctx)
    assert back.ok and back.text.startswith("Profile balanced applied")
    assert agents.power.read() == found
