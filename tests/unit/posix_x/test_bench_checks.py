"""The POSIX-X benchmark compares like with like: bubblewrap's view lets nginx's workers
reach the site (it served 403 pages before), an error page fails the run instead of
passing for throughput, and "≥ bubblewrap" is judged on paired per-round ratios."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

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
