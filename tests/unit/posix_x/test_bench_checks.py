"""The POSIX-X benchmark compares like with like: bubblewrap's view lets nginx's workers
reach the site (it served 403 pages before), an error page fails the run instead of
passing for throughput, and "≥ bubblewrap" is judged on paired per-round ratios."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from exo.posix_x import benchmark as B


def test_bubblewraps_view_makes_every_parent_of_a_bind_crossable(tmp_path: Path) -> None:
    args = B._bwrap_view([(tmp_path, "/srv/www", False), (tmp_path, "/var/lib/nginx", True)])
    made = [args[i + 3] for i, a in enumerate(args) if a == "--perms" and args[i + 1] == "0755"
            and args[i + 2] == "--dir"]
    assert made == ["/srv", "/var", "/var/lib"]
    # each before the bind it leads to (bubblewrap would make it 0700 otherwise)
    assert args.index("/srv") < args.index("/srv/www")
    assert args.index("/var/lib") < args.index("/var/lib/nginx")


def test_an_error_page_fails_the_nginx_load(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    wrk = ("Running 1s test @ http://127.0.0.1:1/index.html\n"
           "  2004 requests in 1.00s, 600.00KB read\n"
           "  Non-2xx or 3xx responses: 2004\n"
           "Requests/sec:   2004.00\n")

    def run(*_a: Any, **_k: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], 0, stdout=wrk)

    app = B.Nginx(tmp_path / "root", 1)
    monkeypatch.setattr(B.subprocess, "run", run)
    with pytest.raises(B.BenchmarkError, match="answered 2004 requests with an error"):
        app.load(1.0)
    wrk = wrk.replace("  Non-2xx or 3xx responses: 2004\n", "")
    assert app.load(1.0) == 2004.0


def test_the_median_confidence_interval_uses_order_statistics() -> None:
    assert B._median_ci([float(x) for x in range(1, 11)]) == (2.0, 9.0)   # 97.9 %
    assert B._median_ci([float(x) for x in range(1, 21)]) == (6.0, 15.0)  # 95.9 %
    assert B._median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few rounds: the range


def test_bwrap_verdict() -> None:
    def app(median: float, lo: float, hi: float) -> dict[str, Any]:
        return {"ratio_median": 1.0, "bwrap_ratio_median": 1.0, "vs_bwrap_median": median,
                "vs_bwrap_ci95": [lo, hi]}

    assert B.bwrap_verdict(app(1.01, 0.95, 1.05)) == "✓"
    assert B.bwrap_verdict(app(0.98, 0.94, 1.02)) == "≈"
    assert B.bwrap_verdict(app(0.93, 0.90, 0.97)) == "✗"
    # an older result without paired ratios: its medians compared, as then
    assert B.bwrap_verdict({"ratio_median": 0.99, "bwrap_ratio_median": 1.11}) == "✗"


def test_the_applications_table_fits_80_columns_without_cutting_a_name() -> None:
    import io
    import json
    import re

    results = json.loads((B.REPO / "bench" / "results" / "posix_x.json").read_text())

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "80")
        B.render(results, out)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    table = text[text.index("Applications"):text.index("CPU/op:")]
    assert "…" not in table
    assert all(len(line) <= 80 for line in table.splitlines())
    for name in results["apps"]:
        assert re.search(rf"^{name}\s", table, re.M), name


class _Scripted(B.App):
    """An application whose every mode serves a set rate: the benchmark's round logic
    (lock step, rotation, pairing, the A/A control) without starting real servers. Each
    mode's "server" is a real process (``sleep``) whose CPU time the round reads."""

    name, comm = "scripted", "sleep"
    RATES: ClassVar[dict[str, float]] = {"native": 1000.0, "posix_x": 970.0,
                                         "bwrap": 980.0, B.CONTROL: 1020.0}

    def __init__(self, root: Path, mode: str, events: list[tuple[str, str]]) -> None:
        super().__init__(root, 1)
        self.mode, self.events = mode, events

    @contextlib.contextmanager
    def running(self, mode: str) -> Iterator[subprocess.Popen[bytes]]:
        assert mode == self.mode
        self.events.append(("start", mode))
        proc = subprocess.Popen(["sleep", "30"])
        try:
            yield proc
        finally:
            self.events.append(("stop", mode))
            proc.kill()
            proc.wait()

    def load(self, seconds: float) -> float:
        self.events.append(("load", self.mode))
        return self.RATES[self.mode]


def _scripted(tmp_path: Path, events: list[tuple[str, str]]) -> Any:
    return lambda mode: _Scripted(tmp_path / mode, mode, events)


def test_the_servers_run_in_lock_step_and_the_control_is_native_again(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    result = B.bench_app(_scripted(tmp_path, events), rounds=3, seconds=0.5, control=True)
    modes = [*B.MODES, B.CONTROL]
    # Every mode's server starts once, before any load, and stops once, after all of them.
    assert events[:4] == [("start", m) for m in modes]
    assert sorted(events[-4:]) == sorted(("stop", m) for m in modes)
    loads = [m for what, m in events if what == "load"]
    assert loads[:4] == modes  # a warm-up each, not counted
    # Then each round loads all four, rotated: no mode is always first.
    rounds = [loads[i:i + 4] for i in range(4, 16, 4)]
    assert [r[0] for r in rounds] == ["native", "posix_x", "bwrap"]
    assert all(sorted(r) == sorted(modes) for r in rounds)
    assert result["control_ratio_median"] == 1.02
    assert result["control_ratios"] == [1.02, 1.02, 1.02]
    assert result["ratio_median"] == 0.97 and result["ratio_ci95"] == [0.97, 0.97]
    assert B.CONTROL not in result["placement"]
    assert result["interleaving"].startswith("lock step")
    # The control is started exactly as native is.
    assert B._started_as(B.CONTROL) == "native"
    redis = B.Redis(tmp_path / "redis-root", 6379)
    assert redis.argv(B._started_as(B.CONTROL)) == redis.argv("native")


def test_without_the_control_a_round_has_three_modes(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    result = B.bench_app(_scripted(tmp_path, events), rounds=2, seconds=0.5)
    loads = [m for what, m in events if what == "load"]
    assert loads == ["native", "posix_x", "bwrap"] * 2 + ["posix_x", "bwrap", "native"]
    assert "control_ratio_median" not in result


def test_a_server_that_fails_to_start_stops_the_ones_already_up(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []

    class Broken(_Scripted):
        @contextlib.contextmanager
        def running(self, mode: str) -> Iterator[subprocess.Popen[bytes]]:
            if mode == "bwrap":
                raise RuntimeError("server on port 1 did not start")
            with super().running(mode) as proc:
                yield proc

    with pytest.raises(RuntimeError, match="did not start"):
        B.bench_app(lambda mode: Broken(tmp_path / mode, mode, events), rounds=1,
                    seconds=0.5)
    assert events == [("start", "native"), ("start", "posix_x"), ("stop", "posix_x"),
                      ("stop", "native")]


def test_each_servers_files_are_its_own(tmp_path: Path) -> None:
    one, two = B.Redis(tmp_path / "redis-native-root", 1), B.Redis(tmp_path / "redis-bwrap-root", 2)
    assert one.manifest != two.manifest and one.ops_log != two.ops_log
    assert "1" in one.manifest.read_text() and "2" in two.manifest.read_text()


def test_the_table_states_the_controls_resolution() -> None:
    import io

    app = {"ratio_median": 0.97, "ratio_spread": 0.1, "bwrap_ratio_median": 0.98,
           "cpu_per_op_ratio": 1.01, "vs_bwrap_median": 0.99, "vs_bwrap_ci95": [0.95, 1.03],
           "control_ratio_median": 1.03, "control_ratio_ci95": [0.96, 1.08]}
    out = io.StringIO()
    B.render({"apps": {"redis": app}, "machine": {"rounds": 10}}, out)
    text = " ".join(out.getvalue().split())
    assert "A/A control" in text and "redis 1.03 (0.96–1.08)" in text
    assert "Syscalls" not in text  # none measured: no empty table


def test_a_merged_run_stamps_only_the_applications_it_measured() -> None:
    earlier = {"ratio_median": 1.0, "measured": {"date": "2026-12-01T00:00:00Z"}}
    results = {"apps": {"nginx": dict(earlier), "gcc": {"ratio_median": 0.99}}}
    B.stamp_measured(results, ["gcc", "syscalls"], rounds=30, seconds=5.0, control=True)
    gcc = results["apps"]["gcc"]["measured"]
    assert (gcc["rounds"], gcc["seconds"], gcc["control"], gcc["quick"]) == (30, 5.0, True,
                                                                          False)
    assert gcc["date"].endswith("Z") and gcc["date"] > "2026"
    assert results["apps"]["nginx"] == earlier


def test_the_table_names_rows_measured_in_another_run() -> None:
    import io

    row = {"ratio_median": 1.0, "ratio_spread": 0.1, "bwrap_ratio_median": 1.0,
           "cpu_per_op_ratio": 1.0, "vs_bwrap_median": 1.0, "vs_bwrap_ci95": [0.95, 1.05]}
    apps = {"nginx": {**row, "measured": {"rounds": 15, "date": "2026-12-03T23:00:00Z"}},
            "gcc": {**row, "measured": {"rounds": 30, "date": "2026-12-04T00:00:00Z"}}}
    out = io.StringIO()
    B.render({"apps": apps, "machine": {"rounds": 15}}, out)
    text = " ".join(out.getvalue().split())
    assert "Measured in other runs: gcc 30 rounds, 2026-12-04" in text
    assert "nginx 15 rounds" not in text
