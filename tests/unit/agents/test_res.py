"""AI-Res: its answers' wording in both languages, and its figures against psutil's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from exo.agents import res
from exo.agents.core.wire import WireError, frame, parse

SNAP: dict[str, Any] = {
    "cpu": {"percent": 11.5, "cores": [8.0, 15.0]},
    "memory": {"total": 4 << 30, "used": 1 << 30, "available": 3 << 30, "percent": 25.0},
    "disk": {"path": "/", "total": 40 << 30, "used": 10 << 30, "free": 30 << 30,
             "percent": 25.0},
    "info": {"version": "0.1", "machine": "x86_64", "cpus": 2, "memory_total": 4 << 30,
             "uptime_s": 7260, "kernel_uptime_s": 65},
    "procs": [{"pid": 1, "command": "exo-kernel", "state": "running"},
              {"pid": 2, "command": "sh", "state": "running", "cpu": 1.0, "cpu_ema": 0.5,
               "rss": 2 << 20, "class": "hot"},
              {"pid": 3, "command": "python3 busy.py", "state": "running", "cpu": 99.0,
               "cpu_ema": 90.0, "rss": 1 << 20, "class": "cold"}],
}


def test_cpu_answer_in_english_and_french() -> None:
    assert res.answer_text("sys.cpu_usage", SNAP, "en") == \
        "CPU usage: 12% (avg), cores: [8%, 15%]"
    assert res.answer_text("sys.cpu_usage", SNAP, "fr") == \
        "Utilisation CPU : 12 % (moyenne), cœurs : [8 %, 15 %]"


def test_memory_and_disk_answers() -> None:
    assert res.answer_text("sys.memory_usage", SNAP, "en") == \
        "Memory: 1.0 GiB used of 4.0 GiB (25%), 3.0 GiB available"
    assert res.answer_text("sys.memory_usage", SNAP, "fr") == \
        "Mémoire : 1,0 Gio utilisés sur 4,0 Gio (25 %), 3,0 Gio disponibles"
    assert res.answer_text("sys.disk_usage", SNAP, "en") == \
        "Disk (/): 10.0 GiB used of 40.0 GiB (25%), 30.0 GiB free"


def test_info_and_process_answers() -> None:
    info = res.answer_text("sys.info", SNAP, "en")
    assert info.startswith("Exo-OS 0.1 (x86_64), 2 CPUs, 4.0 GiB memory")
    assert "host up 2 h 01 min" in info
    listing = res.answer_text("proc.list", SNAP, "en").splitlines()
    assert listing[0] == "2 Exo processes:" and "busy.py" in listing[2]
    top = res.answer_text("proc.top_cpu", SNAP, "en").splitlines()
    assert "busy.py" in top[1] and "cold" in top[1]  # the busiest first
    mem = res.answer_text("proc.top_memory", SNAP, "fr").splitlines()
    assert mem[0].endswith(":") and " sh" in mem[1]


def test_an_intent_ai_res_does_not_answer_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pkg\.install"):
        res.answer_text("pkg.install", SNAP)


def test_classes_follow_the_cpu_ema() -> None:
    assert [res.klass(x) for x in (0.0, 4.9, 5.0, 49.9, 50.0, 100.0)] == \
        ["hot", "hot", "normal", "normal", "cold", "cold"]


def test_the_snapshot_matches_psutil_within_tolerance(tmp_path: Path) -> None:
    monitor = res.ResourceMonitor(None, tmp_path, "0.1")
    snap = monitor.snapshot()
    vm, disk = psutil.virtual_memory(), psutil.disk_usage(str(tmp_path))
    assert snap["memory"]["total"] == vm.total
    assert abs(snap["memory"]["percent"] - vm.percent) < 5
    assert snap["disk"]["total"] == disk.total
    assert abs(snap["disk"]["percent"] - disk.percent) < 1
    cores = snap["cpu"]["cores"]
    assert len(cores) == psutil.cpu_count()
    assert all(0 <= c <= 100 for c in cores)
    assert snap["cpu"]["percent"] == pytest.approx(sum(cores) / len(cores), abs=0.1)


def test_the_agent_handler_asks_the_kernel_for_a_snapshot_only() -> None:
    asked: list[str] = []

    class Link:
        def ask(self, service: str, **_: Any) -> dict[str, Any]:
            asked.append(service)
            return SNAP

    reply = res.handle({"intent": "sys.cpu_usage", "lang": "fr"}, Link())
    assert reply["ok"] and reply["agent"] == "AI-Res" and reply["text"].startswith(
        "Utilisation CPU : 12 %")
    refused = res.handle({"intent": "proc.kill"}, Link())
    assert not refused["ok"] and "sys.cpu_usage" in refused["error"]
    assert asked == ["snapshot"]


@pytest.mark.parametrize("data", [b"", b"\x02\x00", b"\x63\x00\x00\x00\x01"])
def test_malformed_router_frames_are_refused(data: bytes) -> None:
    with pytest.raises(WireError):
        parse(data)


def test_router_frames_round_trip() -> None:
    assert parse(frame(2, 7, b"body")) == (2, 7, b"body")
