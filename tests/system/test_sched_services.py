"""The kernel's periodic services run as Exo tasks on the kernel's scheduler thread, on
time: AI-Res samples once a second, the audit anchor timer fires (real swtpm), and
/proc/sched lists them with class and prediction; neither has a thread of its own."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from tests._support.kernels import deferred_kernel, swtpm_tree
from tests.unit.shell._support import run

from exo.kernel.kernel import Kernel
from exo.security import auditchain
from exo.shell import Shell, Vfs


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def _proc_sched_once_listed(kernel: Kernel, task: str) -> str:
    """/proc/sched once it lists ``task`` (spawned through the scheduler's inbox, after
    the deferred step returned: it may take a moment)."""
    deadline = time.monotonic() + 10
    while task not in (proc_sched := kernel.proc_files()["sched"]()):
        assert time.monotonic() < deadline, f"the {task} task never showed"
        time.sleep(0.02)
    return proc_sched


def test_ai_res_samples_once_a_second_as_a_task_listed_in_proc_sched(kernel: Kernel) -> None:
    kernel.start_deferred()
    kernel.wait_deferred(60)
    monitor = kernel._started("agents").monitor
    svc = monitor.service
    assert svc.on_task and svc.interval == 1.0
    assert "exo-ai-res" not in _threads() and "exo-scheduler" in _threads()
    proc_sched = _proc_sched_once_listed(kernel, "exo-ai-res")
    row = next(line for line in proc_sched.splitlines() if "exo-ai-res" in line)
    assert row.split()[3] in ("hot", "normal", "cold")  # its class, then its prediction
    (kernel.root / "home" / "root").mkdir(parents=True, exist_ok=True)
    shell = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()))
    for line in ("top --once", "sched -a"):
        status, out, err = run(shell, line)
        assert (status, err) == (0, "")
        shown = next(r for r in out.splitlines() if "exo-ai-res" in r).split()
        assert shown[3] in ("hot", "normal", "cold") and float(shown[4]) >= 0  # class, ms
    t0 = svc.ticks
    time.sleep(4.5)
    # once a second: 4 or 5 samples in 4.5 s, give or take one for a loaded machine
    assert 3 <= svc.ticks - t0 <= 6
    assert len(monitor.snapshot()["cpu"]["cores"]) == os.cpu_count()  # the sampler filled it


def test_the_audit_anchor_timer_fires_as_a_task(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    monkeypatch.setenv("EXO_AUDIT_ANCHOR_S", "0.2")
    with swtpm_tree(root, monkeypatch, hsm=True), deferred_kernel(root) as kernel:
        anchors = kernel._started("security").anchors
        assert anchors is not None and anchors.service.on_task
        assert "exo-audit-anchor" not in _threads()
        _proc_sched_once_listed(kernel, "exo-audit-anchor")
        audit = kernel.caps.audit
        assert audit is not None
        for i in range(3):
            audit.record("grant", resource=f"storage://home/t{i}", rights="READ")
            seq = audit.chain_head()[0]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the timer anchors the new head
                lines = auditchain.anchors_path(root).read_text().splitlines()
                if lines and json.loads(lines[-1])["seq"] >= seq:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"no anchor of record {seq} within 20 s")
        assert not any(json.loads(x)["final"] for x in lines)


APP = """
import sys
from exo_std.ai import Agent
held = [Agent.connect("ai-res") for _ in range(4)]
print(" ".join(a.query("sys.info")[:6] for a in held), flush=True)
sys.stdin.read()  # hold the connections open until the test closes our stdin
print(held[2].query("sys.info")[:6], flush=True)
"""


def _agent_process(kernel: Kernel) -> psutil.Process:
    router = kernel._started("agents").router
    row = next(r for r in router.list() if r["name"] == "ai-res")
    proc = kernel.processes.get(row["pid"])
    top = psutil.Process(proc.host_pid)
    for p in [top, *top.children(recursive=True)]:
        if "exo.agents.core.runner" in " ".join(p.cmdline()):
            return p
    raise AssertionError("no agent runner process")


def test_the_agent_serves_its_connections_as_tasks_on_one_thread(kernel: Kernel) -> None:
    from exo.kernel.manifest import parse_grant

    kernel.start_deferred()
    kernel.wait_deferred(60)
    apps, pipes = [], []
    try:
        for _ in range(2):  # 4 connections each (the per-process bound): 8 in all
            r_in, w_in = os.pipe2(os.O_CLOEXEC)
            r_out, w_out = os.pipe2(os.O_CLOEXEC)
            try:
                apps.append(kernel.processes.spawn(
                    [sys.executable, "-c", APP], [parse_grant("agent://ai-res=SEND")],
                    stdio=(r_in, w_out, w_out)))
            finally:
                os.close(r_in)
                os.close(w_out)
            pipes.append((w_in, os.fdopen(r_out, "r")))
        for _, out in pipes:
            assert out.readline().split() == ["Exo-OS"] * 4
        router = kernel._started("agents").router
        row = next(r for r in router.list() if r["name"] == "ai-res")
        assert row["connections"] >= 8
        agent = _agent_process(kernel)
        # the main thread runs every connection's task; at most one more thread, the
        # scheduler's watcher of the one channel (it does not grow with connections)
        assert agent.num_threads() <= 2, [t.id for t in agent.threads()]
        for w_in, out in pipes:
            os.close(w_in)
            assert out.readline().strip() == "Exo-OS"  # still served after the others
        for app in apps:
            assert kernel.processes.wait(app.pid, timeout=120) == 0
    finally:
        for w_in, out in pipes:
            with contextlib.suppress(OSError):
                os.close(w_in)
            out.close()
