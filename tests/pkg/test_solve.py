"""libsolv solving: picks, upgrades, removals, and failures explained in plain words."""

from __future__ import annotations

import pytest

from exo.pkg.solve import Candidate, SolveError, Solver, parse_constraint


def c(name: str, version: str, **deps: str) -> Candidate:
    return Candidate(name, version, tuple(deps.items()))


REPO = [c("lib", "1.0"), c("lib", "1.5"), c("lib", "2.0"), c("lib", "1.10"),
        c("hello", "0.1.0", lib=">=1.0, <2"), c("hello", "0.2.0", lib=">=2"),
        c("old", "1", lib="<1.5"), c("bad", "1", lib=">=3"), c("other", "1", lib="==1.0")]


def test_constraints() -> None:
    assert parse_constraint("lib", "") == "lib"
    assert parse_constraint("lib", "1.0") == "lib = 1.0"
    assert parse_constraint("lib", ">=1, <2") == "(lib >= 1 with lib < 2)"
    with pytest.raises(SolveError, match="expected comparisons"):
        parse_constraint("lib", "~> 1")


def test_install_newest_matching() -> None:
    plan = Solver(REPO).install([("hello", "0.1.0")])
    assert {n: x.version for n, x in plan.final.items()} == {"hello": "0.1.0", "lib": "1.10"}
    plan = Solver(REPO).install([("hello", None)])
    assert {n: x.version for n, x in plan.final.items()} == {"hello": "0.2.0", "lib": "2.0"}


def test_upgrade_and_keep() -> None:
    installed = [c("hello", "0.1.0", lib=">=1.0, <2"), c("lib", "1.5")]
    plan = Solver(REPO, installed).upgrade()
    assert {n: x.version for n, x in plan.final.items()} == {"hello": "0.2.0", "lib": "2.0"}
    assert {x.version for x in plan.removed} == {"0.1.0", "1.5"}
    plan = Solver(REPO, installed).install([("other", None)])
    assert plan.final["lib"].version == "1.0" and plan.final["hello"].version == "0.1.0"


def test_missing_dependency_explained() -> None:
    with pytest.raises(SolveError) as err:
        Solver(REPO).install([("bad", None)])
    assert str(err.value) == ("cannot install bad: no available package provides lib >= 3, "
                              "which is needed by bad 1")


def test_conflict_explained() -> None:
    with pytest.raises(SolveError) as err:
        Solver(REPO).install([("old", None), ("hello", "0.2.0")])
    msg = str(err.value)
    assert msg.startswith("cannot install old, hello==0.2.0:")
    assert "old 1" in msg and "hello 0.2.0" in msg and "lib" in msg


def test_unknown_and_remove() -> None:
    with pytest.raises(SolveError, match="no package named 'nope'"):
        Solver(REPO).install([("nope", None)])
    with pytest.raises(SolveError, match=r"available: 0\.1\.0, 0\.2\.0"):
        Solver(REPO).install([("hello", "9")])
    installed = [c("hello", "0.1.0", lib=">=1.0, <2"), c("lib", "1.5")]
    with pytest.raises(SolveError, match="hello needs it"):
        Solver(REPO, installed).remove(["lib"])
    plan = Solver(REPO, installed).remove(["hello"])
    assert set(plan.final) == {"lib"}


def test_hundred_packages_fast() -> None:
    import time

    cands = [c(f"p{i}", f"{v}.0", **({f"p{i + 1}": f">={v}.0"} if i < 99 else {}))
             for i in range(100) for v in range(1, 4)]
    t0 = time.perf_counter()
    plan = Solver(cands).install([("p0", None)])
    assert len(plan.final) == 100
    assert time.perf_counter() - t0 < 1.0


def test_long_explanations_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import exo.pkg.solve as solve

    monkeypatch.setattr(solve, "_MAX_REASONS", 1)
    with pytest.raises(SolveError) as err:
        Solver(REPO).install([("old", None), ("hello", "0.2.0")])
    assert "more reasons)" in str(err.value) and ";" not in str(err.value)
