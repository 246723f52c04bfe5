"""Dependency solving with libsolv (its ``solv`` bindings), conflicts in plain words.

libsolv is a SAT solver built for package dependencies (openSUSE's zypper, dnf): it is
complete (finds a solution when one exists), fast on large graphs, and explains a failure
as the chain of rules that conflict, which we reword for people.

Constraints in ``[dependencies]`` are comma-separated comparisons, e.g. ``">=1.2, <2"``;
``""`` or ``"*"`` is any version, a bare version means exactly that one. Versions compare
as RPM's do (numeric segments numerically: 1.10 > 1.9). One version of a name is active
per generation; older ones stay on disk for rollback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from exo.pkg import PkgError

_MAX_REASONS = 6  # a failure's explanation stays readable on one line
_OP = re.compile(r"^\s*(>=|<=|==|=|>|<)?\s*([0-9][A-Za-z0-9.+~-]*)\s*$")


class SolveError(PkgError):
    """No set of packages satisfies the request; the text says why."""


@dataclass(frozen=True)
class Candidate:
    """A package version the solver may pick (available in a repository, or installed)."""

    name: str
    version: str
    requires: tuple[tuple[str, str], ...] = ()
    repo: str = ""
    extra: Any = field(default=None, compare=False, hash=False)


@dataclass
class Plan:
    """What the solution changes: the full set afterwards, and what comes and goes."""

    final: dict[str, Candidate]
    added: list[Candidate]
    removed: list[Candidate]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


def parse_constraint(name: str, spec: str) -> str:
    """``(name, ">=1, <2")`` as a libsolv dependency string."""
    spec = spec.strip()
    if spec in ("", "*"):
        return name
    parts = []
    for piece in spec.split(","):
        m = _OP.match(piece)
        if m is None:
            raise SolveError(f"dependency {name} {spec!r}: expected comparisons like "
                             "'>=1.2, <2'")
        op = {"==": "=", None: "="}.get(m.group(1), m.group(1))
        parts.append(f"{name} {op} {m.group(2)}")
    return parts[0] if len(parts) == 1 else "(" + " with ".join(parts) + ")"


def _plain(text: str) -> str:
    """libsolv's rule text, reworded: ``hello-0.1.0.noarch`` → ``hello 0.1.0``, rich
    dependencies ``(lib >= 1 with lib < 2)`` → ``lib >= 1, < 2``."""
    text = re.sub(r"([a-z0-9][a-z0-9._-]*?)-([0-9][A-Za-z0-9.+~]*)\.noarch", r"\1 \2", text)

    def rich(m: re.Match[str]) -> str:
        pieces = m.group(1).split(" with ")
        name = pieces[0].split()[0]
        return name + " " + ", ".join(p.split(None, 1)[1] for p in pieces)

    text = re.sub(r"\(([^()]+ with [^()]+)\)", rich, text)
    text = text.replace("nothing provides", "no available package provides")
    return text.replace(" needed by", ", which is needed by")


class Solver:
    """One solve over the available candidates and what is installed."""

    def __init__(self, available: Iterable[Candidate],
                 installed: Iterable[Candidate] = ()) -> None:
        import solv

        self._solv = solv
        self.pool = pool = solv.Pool()
        pool.setarch()
        self._by_id: dict[int, Candidate] = {}
        self._versions: dict[str, list[str]] = {}
        avail = pool.add_repo("available")
        inst = pool.add_repo("installed")
        for c in available:
            self._add(avail, c)
            self._versions.setdefault(c.name, []).append(c.version)
        self._installed = list(installed)
        for c in self._installed:
            self._add(inst, c)
        avail.internalize()
        inst.internalize()
        pool.installed = inst
        pool.createwhatprovides()

    def _add(self, repo: Any, c: Candidate) -> None:
        solv, pool = self._solv, self.pool
        s = repo.add_solvable()
        s.name, s.evr, s.arch = c.name, c.version, "noarch"
        s.add_deparray(solv.SOLVABLE_PROVIDES,
                       pool.Dep(c.name).Rel(solv.REL_EQ, pool.Dep(c.version)))
        for dep_name, spec in c.requires:
            dep = parse_constraint(dep_name, spec)
            s.add_deparray(solv.SOLVABLE_REQUIRES,
                           pool.parserpmrichdep(dep) if dep.startswith("(") else
                           self._simple_dep(dep))
        self._by_id[s.id] = c

    def _simple_dep(self, dep: str) -> Any:
        solv, pool = self._solv, self.pool
        parts = dep.split()
        if len(parts) == 1:
            return pool.Dep(parts[0])
        flags = {"=": solv.REL_EQ, ">": solv.REL_GT, "<": solv.REL_LT,
                 ">=": solv.REL_GT | solv.REL_EQ, "<=": solv.REL_LT | solv.REL_EQ}[parts[1]]
        return pool.Dep(parts[0]).Rel(flags, pool.Dep(parts[2]))

    def _select(self, name: str, version: str | None) -> Any:
        solv = self._solv
        if name not in self._versions and all(c.name != name for c in self._installed):
            raise SolveError(f"no package named {name!r} in any repository")
        if version is not None and version not in self._versions.get(name, []):
            known = ", ".join(self._versions.get(name, [])) or "none"
            raise SolveError(f"{name} {version} is not in any repository (available: {known})")
        text = name if version is None else f"{name} = {version}"
        return self.pool.select(text, solv.Selection.SELECTION_NAME
                                | solv.Selection.SELECTION_REL)

    def _run(self, jobs: list[Any], what: str) -> Plan:
        solv = self._solv
        solver = self.pool.Solver()
        solver.set_flag(solv.Solver.SOLVER_FLAG_ALLOW_DOWNGRADE, 1)
        problems = solver.solve(jobs)
        if problems:
            lines: list[str] = []
            for p in problems:
                for rule in p.findallproblemrules():
                    line = _plain(rule.info().problemstr())
                    if line not in lines:
                        lines.append(line)
            more = f" (and {len(lines) - _MAX_REASONS} more reasons)" \
                if len(lines) > _MAX_REASONS else ""
            raise SolveError(f"cannot {what}: " + "; ".join(lines[:_MAX_REASONS]) + more)
        trans = solver.transaction()
        added = [self._by_id[s.id] for s in trans.newsolvables()]
        kept = [self._by_id[s.id] for s in trans.keptsolvables()]
        final = {c.name: c for c in kept + added}
        removed = [c for c in self._installed
                   if c.name not in final or final[c.name].version != c.version]
        return Plan(final, added, removed)

    def install(self, requests: list[tuple[str, str | None]]) -> Plan:
        """Install (or switch to) each ``(name, version or None for the newest)``."""
        solv = self._solv
        jobs = []
        for name, version in requests:
            jobs += self._select(name, version).jobs(solv.Job.SOLVER_INSTALL)
        names = ", ".join(n if v is None else f"{n}=={v}" for n, v in requests)
        return self._run(jobs, f"install {names}")

    def upgrade(self, names: list[str] | None = None) -> Plan:
        """Newest versions of ``names`` (all installed packages when None)."""
        solv = self._solv
        if not names:
            jobs = [self.pool.Job(solv.Job.SOLVER_UPDATE | solv.Job.SOLVER_SOLVABLE_ALL, 0)]
        else:
            jobs = []
            for n in names:
                jobs += self._select(n, None).jobs(solv.Job.SOLVER_UPDATE)
        return self._run(jobs, "upgrade")

    def remove(self, names: list[str]) -> Plan:
        """Remove ``names``; refuses when another installed package still needs one."""
        solv = self._solv
        installed = {c.name for c in self._installed}
        for n in names:
            if n not in installed:
                raise SolveError(f"{n} is not installed")
        needers = sorted({c.name for c in self._installed if c.name not in names
                          and any(dep in names for dep, _ in c.requires)})
        if needers:
            who = ", ".join(needers)
            raise SolveError(f"cannot remove {', '.join(names)}: {who} "
                             f"{'needs' if len(needers) == 1 else 'need'} it "
                             f"(remove {who} too, or first)")
        jobs = []
        for n in names:
            jobs += self._select(n, None).jobs(solv.Job.SOLVER_ERASE)
        return self._run(jobs, f"remove {', '.join(names)}")
