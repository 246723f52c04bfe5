"""The compatibility suite (issue 10): every case natively and under ``posix-x run``,
compared; the whole suite takes a few seconds, so the test runs all of it."""

from __future__ import annotations

import shutil

import pytest

from exo.posix_x.compat import DOCUMENTED, KNOWN_FAILURES, run_suite


@pytest.mark.skipif(not shutil.which("python3"), reason="no python3")
def test_compat_suite_native_vs_posix_x(exo_cmd: list[str]) -> None:
    summary = run_suite(exo_cmd)
    cases = summary["cases"]
    assert isinstance(cases, int) and cases >= 150
    failures = summary["failures"]
    assert isinstance(failures, dict)
    # Exactly the documented gaps fail: a regression, or a fix nobody recorded, fails here.
    assert set(failures) == set(KNOWN_FAILURES), {n: failures.get(n) for n in
                                                  set(failures) ^ set(KNOWN_FAILURES)}
    results = summary["results"]
    assert isinstance(results, dict)
    for name, (answer, _why) in DOCUMENTED.items():
        assert results[name]["posix_x"] == answer
    # Every Legacy case ran under POSIX-X and was refused, never allowed.
    legacy = [r for r in results.values() if r["kind"] == "legacy"]
    assert len(legacy) >= 40
    assert all(r["posix_x"].startswith("err:E") for r in legacy)
