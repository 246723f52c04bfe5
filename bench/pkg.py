"""Benchmark: the package manager against its peers, all from one run (writes
bench/results/pkg.json).

Claims under test (issue 11): solving a 100-package dependency graph takes < 300 ms and
beats resolvelib on the same graph; installing a 10 MB package is no slower than
``pip install`` of an equivalent local wheel; a rollback takes < 100 ms.

* ``solve_ms``: one full solve of the same graph, median of runs, each building its
  solver from scratch: ``exo`` is ``exo.pkg.solve.Solver`` (libsolv), ``resolvelib`` a
  straightforward provider over the same candidates (pip's resolver library). The graph:
  100 packages × 5 versions, each version needing the next package and two random later
  ones with version ranges, some of which rule out the newest versions, so both solvers
  must backtrack; the root asks for ``p0``. Both solutions are checked to satisfy every
  constraint.
* ``install_s``: wall time of the command, median of runs, each into a fresh state:
  ``exo`` is ``exo install -y big`` from a directory repository (TUF refresh, solve,
  hash and hybrid-signature checks, unpack with fsync, new generation); ``pip`` is
  ``python -m pip install --no-index --no-deps big-1.0.0-py3-none-any.whl`` into a temp
  venv (uninstalled between runs, untimed). Both carry the same 10 MB of random bytes
  plus a small module.
* ``rollback_ms``: ``Store.rollback()`` under the store lock (which first runs crash
  recovery), median of runs switching between two generations. The wall time of the
  whole ``exo rollback -y`` command (interpreter start-up included) is printed too.

Run: ``.venv/bin/python bench/pkg.py [--quick]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from exo.pkg.solve import Candidate, Solver, parse_constraint

RESULTS = Path(__file__).resolve().parent / "results" / "pkg.json"
EXO = [sys.executable, "-m", "exo"]
N_PACKAGES, N_VERSIONS, SIZE = 100, 5, 10 << 20
TRAP = 0.05  # share of dependencies of non-solution versions that lead to a dead end


# ------------------------------------------------------------------------ solving


def make_graph(seed: int = 11, trap: float = TRAP) -> list[Candidate]:
    """Solvable by construction: a hidden version ``pick[i]`` of each package whose
    dependencies all admit the other hidden versions; every other version needs, for
    some random later package, a range that excludes that package's hidden version (so
    the newest versions often lead into dead ends the solver must back out of)."""
    rng = random.Random(seed)
    pick = [rng.randint(1, N_VERSIONS) for _ in range(N_PACKAGES)]
    cands = []
    for i in range(N_PACKAGES):
        later = list(range(i + 1, N_PACKAGES))
        for v in range(1, N_VERSIONS + 1):
            deps: dict[str, str] = {}
            if later:
                deps[f"p{i + 1}"] = ">=1.0"
            for j in rng.sample(later, min(2, len(later))):
                t = pick[j]
                if v == pick[i] or rng.random() >= trap:
                    lo, hi = rng.randint(1, t), rng.randint(t + 1, N_VERSIONS + 1)
                elif t < N_VERSIONS:
                    lo, hi = t + 1, N_VERSIONS + 1
                else:
                    lo, hi = 1, t
                deps[f"p{j}"] = f">={lo}.0, <{hi}.0"
            cands.append(Candidate(f"p{i}", f"{v}.0", tuple(sorted(deps.items()))))
    return cands


def _vt(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _ok(spec: str, version: str) -> bool:
    for piece in filter(None, (p.strip() for p in spec.split(","))):
        for op in (">=", "<=", "==", ">", "<", "="):
            if piece.startswith(op):
                want, have = _vt(piece[len(op):].strip()), _vt(version)
                if not {">=": have >= want, "<=": have <= want, ">": have > want,
                        "<": have < want, "==": have == want, "=": have == want}[op]:
                    return False
                break
    return True


def check_solution(final: Mapping[str, str], cands: Iterable[Candidate]) -> None:
    by = {(c.name, c.version): c for c in cands}
    for name, version in final.items():
        for dep, spec in by[(name, version)].requires:
            assert dep in final and _ok(spec, final[dep]), (name, version, dep, spec)


def solve_resolvelib(cands: Sequence[Candidate]) -> dict[str, str]:
    import resolvelib

    index: dict[str, list[Candidate]] = {}
    for c in cands:
        index.setdefault(c.name, []).append(c)
    for versions in index.values():
        versions.sort(key=lambda c: _vt(c.version), reverse=True)

    class Provider(resolvelib.AbstractProvider):  # type: ignore[misc]
        def identify(self, requirement_or_candidate: Any) -> str:
            return str(requirement_or_candidate[0] if isinstance(requirement_or_candidate,
                                                                 tuple)
                       else requirement_or_candidate.name)

        def get_preference(self, identifier: str, resolutions: Any, candidates: Any,
                           information: Any, backtrack_causes: Any) -> Any:
            return sum(1 for _ in candidates[identifier])

        def find_matches(self, identifier: str, requirements: Any,
                         incompatibilities: Any) -> list[Candidate]:
            reqs = list(requirements[identifier])
            bad = {c.version for c in incompatibilities[identifier]}
            return [c for c in index.get(identifier, []) if c.version not in bad
                    and all(_ok(spec, c.version) for _, spec in reqs)]

        def is_satisfied_by(self, requirement: Any, candidate: Candidate) -> bool:
            return _ok(requirement[1], candidate.version)

        def get_dependencies(self, candidate: Candidate) -> list[tuple[str, str]]:
            return list(candidate.requires)

    resolver = resolvelib.Resolver(Provider(), resolvelib.BaseReporter())
    result = resolver.resolve([("p0", "")], max_rounds=100_000)
    return {name: c.version for name, c in result.mapping.items()}


def bench_solve(runs: int) -> dict[str, float]:
    cands = make_graph()
    parse_constraint("p1", ">=1.0")  # import check
    exo_final = {n: c.version for n, c in Solver(cands).install([("p0", None)]).final.items()}
    rl_final = solve_resolvelib(cands)
    check_solution(exo_final, cands)
    check_solution(rl_final, cands)
    assert len(exo_final) == len(rl_final) == N_PACKAGES
    times: dict[str, list[float]] = {"exo": [], "resolvelib": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        Solver(cands).install([("p0", None)])
        times["exo"].append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        solve_resolvelib(cands)
        times["resolvelib"].append((time.perf_counter() - t0) * 1e3)
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


# ----------------------------------------------------------------------- installing


def _wheel(path: Path, data: bytes) -> Path:
    """A minimal valid wheel holding the same bytes as the package."""
    files = {"big/__init__.py": b"'''10 MB of data.'''\n", "big/data.bin": data,
             "big-1.0.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: big\n"
                                              b"Version: 1.0.0\n",
             "big-1.0.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\n"
                                          b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for name, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(content)}")
    record.append("big-1.0.0.dist-info/RECORD,,")
    files["big-1.0.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    whl = path / "big-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in files.items():
            z.writestr(name, content)
    return whl


def _run(cmd: list[str], **kw: Any) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)
    return time.perf_counter() - t0


def bench_install(runs: int, work: Path) -> tuple[dict[str, float], float]:
    data = os.urandom(SIZE)
    env = dict(os.environ)
    env.pop("EXO_PKG_CRASH_AT", None)
    env["EXO_ROOT"] = str(work / "keys-root")
    project = work / "big"
    (project / "big").mkdir(parents=True)
    (project / "big" / "__init__.py").write_text("'''10 MB of data.'''\n")
    (project / "big" / "data.bin").write_bytes(data)
    (project / "exopkg.toml").write_text(
        '[package]\nname = "big"\nversion = "1.0.0"\ndescription = "10 MB"\n'
        '[binary]\ntype = "python"\nentry = "big/__init__.py"\n')
    subprocess.run([*EXO, "build", "--release"], cwd=project, env=env, check=True,
                   capture_output=True)
    subprocess.run([*EXO, "repo", "init", str(work / "repo")], env=env, check=True,
                   capture_output=True)
    subprocess.run([*EXO, "publish", "--repo", str(work / "repo")], cwd=project, env=env,
                   check=True, capture_output=True)
    whl = _wheel(work, data)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    vpy = str(venv / "bin" / "python")
    times: dict[str, list[float]] = {"exo": [], "pip": []}
    rollback_cli: list[float] = []
    for i in range(runs):
        env["EXO_ROOT"] = str(work / f"root{i}")
        subprocess.run([*EXO, "repo", "add", "local", str(work / "repo")], env=env,
                       check=True, capture_output=True)
        times["exo"].append(_run([*EXO, "install", "-y", "big"], env=env))
        times["pip"].append(_run([vpy, "-m", "pip", "install", "-q", "--no-index",
                                  "--no-deps", "--disable-pip-version-check", str(whl)]))
        subprocess.run([vpy, "-m", "pip", "uninstall", "-q", "-y", "big"], check=True)
        subprocess.run([*EXO, "remove", "-y", "big"], env=env, check=True,
                       capture_output=True)
        rollback_cli.append(_run([*EXO, "rollback", "-y"], env=env))
    return ({k: round(statistics.median(v), 3) for k, v in times.items()},
            statistics.median(rollback_cli) * 1e3)


def bench_rollback(runs: int, root: Path) -> float:
    from exo.pkg.store import Store

    store = Store(root)
    gens = [g.id for g in store.generations()]
    assert len(gens) >= 2, gens
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with store.locked():
            cur = store.current()
            assert cur is not None
            store.rollback(gens[-1] if cur.id != gens[-1] else cur.parent)
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs (under 3 minutes)")
    args = ap.parse_args()
    solve_runs, install_runs, rollback_runs = (5, 3, 50) if args.quick else (21, 7, 500)
    results: dict[str, Any] = {"solve_ms": bench_solve(solve_runs)}
    work = Path(tempfile.mkdtemp(prefix="exo-bench-pkg-"))
    try:
        results["install_s"], cli_rollback_ms = bench_install(install_runs, work)
        results["rollback_ms"] = bench_rollback(rollback_runs, work / "root0")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"(exo rollback -y, whole command with interpreter start-up: "
          f"{cli_rollback_ms:.0f} ms)")


if __name__ == "__main__":
    main()
