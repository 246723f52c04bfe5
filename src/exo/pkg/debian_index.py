"""Debian metadata and dependency closure: which Debian packages a bridged program needs
beyond the base system every Debian host has, solved with libsolv.

The metadata is apt's own: ``apt-cache dumpavail`` prints, for every package name, the
candidate version apt would install (its pinning and priorities applied) from the
configured, signature-checked lists. We load the part of it reachable from the request
and from the base system into a libsolv pool and solve twice:

1. **the base**: every ``Essential: yes`` and ``Priority: required`` package and what
   they need. Debian policy lets any package rely on these without declaring them, and
   every Debian host has them, which is why the sandbox shows the host's ``/usr``: they
   are shared, never bundled. Packages needed only by maintainer scripts (which the
   bridge never runs: ``adduser``, ``debconf``, ``init-system-helpers``…) count as base
   too, so they are not bundled for nothing.
2. **the request** with the base as the installed set: libsolv's new packages are
   exactly what to bundle.

The ``solv`` wheel from PyPI is built without Debian support (``setdisttype(DEB)`` is
refused), so versions compare with RPM's rules. For the candidate sets apt hands us
(one version per name) the two agree on every comparison a dependency makes here
(epochs, ``~``, ``+``, Debian revisions as RPM releases); the exact versions then go to
``apt-get download NAME=VERSION``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from exo.pkg import PkgError

#: Needed only by maintainer scripts, which the bridge does not run (see the docstring).
MAINTAINER_ONLY = ("adduser", "debconf", "init-system-helpers", "lsb-base", "ucf",
                   "sysvinit-utils", "systemd", "systemd-sysv", "dpkg", "install-info",
                   "procps", "iproute2", "lsb-release", "logrotate")
_FIELDS = re.compile(r"^(Package|Version|Architecture|Depends|Pre-Depends|Provides|"
                     r"Conflicts|Priority|Essential|Filename|SHA256|Size|Description|"
                     r"Multi-Arch): (.*)$", re.MULTILINE)
_DEP = re.compile(r"^\s*([a-z0-9][a-z0-9.+-]*)(?::[a-z0-9-]+)?\s*"
                  r"(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?\s*(?:\[[^]]*\])?\s*"
                  r"(?:<[^>]*>\s*)*$")
_REL = {"<<": "<", "<": "<=", "<=": "<=", "=": "=", ">=": ">=", ">": ">=", ">>": ">"}
_MAX_LIST = 512 << 20  # apt-cache dumpavail of a full Debian is ~50 MB


class DebianIndexError(PkgError):
    """Debian metadata that cannot be read, or dependencies that cannot be met."""


@dataclass(frozen=True)
class Dep:
    """One alternative of a Debian dependency: ``name (op version)``."""

    name: str
    op: str = ""
    version: str = ""


class DebPackage:
    """One candidate from apt's lists (the fields the bridge needs). Its relations are
    parsed when first asked for: a full Debian has ~64,000 candidates and a closure
    touches a few hundred."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.name = fields["Package"]
        self.version = fields["Version"]
        self.arch = fields.get("Architecture", "")
        self.priority = fields.get("Priority", "")
        self.essential = fields.get("Essential", "") == "yes"
        self.filename = fields.get("Filename", "")
        self.sha256 = fields.get("SHA256", "")
        self.description = fields.get("Description", "")
        try:
            self.size = int(fields.get("Size", "0"))
        except ValueError:
            raise DebianIndexError(f"{self}: bad Size {fields.get('Size')!r}") from None
        self._raw = {k: fields.get(k, "") for k in ("Pre-Depends", "Depends", "Conflicts")}
        self.provides = [a for c in parse_relations(fields.get("Provides", ""), str(self))
                         for a in c]
        self._depends: list[list[Dep]] | None = None

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def depends(self) -> list[list[Dep]]:
        """Pre-Depends and Depends: an AND of ORs."""
        if self._depends is None:
            self._depends = (parse_relations(self._raw["Pre-Depends"], str(self))
                             + parse_relations(self._raw["Depends"], str(self)))
        return self._depends

    @property
    def conflicts(self) -> list[Dep]:
        return [a for c in parse_relations(self._raw["Conflicts"], str(self)) for a in c]

    @property
    def spec(self) -> str:
        """How ``apt-get download`` names exactly this one."""
        return f"{self.name}={self.version}"


def parse_relations(text: str, where: str) -> list[list[Dep]]:
    """``a (>= 1), b | c:any (<< 2)`` → ``[[a>=1], [b, c<2]]``."""
    out: list[list[Dep]] = []
    for clause in (c for c in text.split(",") if c.strip()):
        alts = []
        for alt in clause.split("|"):
            m = _DEP.match(alt)
            if m is None:
                raise DebianIndexError(f"{where}: cannot read the dependency {alt.strip()!r}")
            alts.append(Dep(m.group(1), _REL[m.group(2)] if m.group(2) else "",
                            m.group(3) or ""))
        out.append(alts)
    return out


def parse_available(text: str, arches: Iterable[str]) -> dict[str, DebPackage]:
    """Parse ``apt-cache dumpavail`` output: the candidates for ``arches`` (and ``all``),
    by name. Malformed stanzas are an error, not skipped: this is the metadata we sign."""
    wanted = {*arches, "all"}
    found: dict[str, DebPackage] = {}
    for stanza in text.split("\n\n"):
        if not stanza.strip():
            continue
        f = dict(_FIELDS.findall(stanza))
        if not f.get("Package") or not f.get("Version"):
            raise DebianIndexError(f"apt's list has a stanza without Package/Version: "
                                   f"{stanza[:80]!r}")
        if f.get("Architecture") in wanted:
            found[f["Package"]] = DebPackage(f)
    return found


def _apt(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, timeout=300)
    except FileNotFoundError:
        raise DebianIndexError(f"{argv[0]} is not installed (a Debian host is needed)") \
            from None
    if r.returncode != 0:
        last = (r.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
        raise DebianIndexError(f"{' '.join(argv[:2])}: {last}")
    if len(r.stdout) > _MAX_LIST:
        raise DebianIndexError(f"{' '.join(argv[:2])}: more than {_MAX_LIST >> 20} MiB")
    return r.stdout.decode(errors="replace")


def load_available() -> dict[str, DebPackage]:
    """apt's candidates for this host's architectures (``apt-get update`` first if the
    lists are empty)."""
    arches = [_apt(["dpkg", "--print-architecture"]).strip(),
              *_apt(["dpkg", "--print-foreign-architectures"]).split()]
    found = parse_available(_apt(["apt-cache", "dumpavail"]), arches)
    if not found:
        raise DebianIndexError("apt knows no packages (run apt-get update)")
    return found


class Closure:
    """What to bundle for a request, and what the base system provides."""

    def __init__(self, bundle: list[DebPackage], base: set[str]) -> None:
        self.bundle = bundle
        self.base = base


class DebianSolver:
    """libsolv over the reachable part of apt's candidates."""

    def __init__(self, available: dict[str, DebPackage]) -> None:
        self.available = available
        self.providers: dict[str, list[str]] = {}
        for p in available.values():
            self.providers.setdefault(p.name, []).append(p.name)
            for prov in p.provides:
                self.providers.setdefault(prov.name, []).append(p.name)

    def _reachable(self, roots: Iterable[str]) -> list[DebPackage]:
        seen: set[str] = set()
        todo = [r for r in roots if r in self.available]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for clause in self.available[name].depends:
                for alt in clause:
                    todo += [n for n in self.providers.get(alt.name, []) if n not in seen]
        return [self.available[n] for n in sorted(seen)]

    def base_roots(self) -> list[str]:
        return sorted(p.name for p in self.available.values()
                      if p.essential or p.priority == "required")

    def closure(self, names: list[str]) -> Closure:
        """Solve the base, then ``names`` on top of it; raise with libsolv's reasons.
        Maintainer-script-only packages count as present without being solved: they
        are never bundled, nor what they need."""
        for n in names:
            if n not in self.available:
                raise DebianIndexError(f"no Debian package named {n!r} (apt-cache policy {n})")
        roots = self.base_roots()
        base_set = _Pool(self._reachable(roots)).solve(roots, set(), "", weak=True)
        base_set |= {n for n in MAINTAINER_ONLY if n in self.available}
        pool = _Pool(self._reachable([*base_set, *names]))
        added = pool.solve(names, base_set, "install " + ", ".join(names))
        return Closure([self.available[n] for n in sorted(added)], base_set)


def _evr(version: str) -> str:
    """A Debian version as an RPM EVR libsolv compares the Debian way: a missing Debian
    revision is ``0`` (Debian policy), where RPM would ignore the release altogether
    (``libc6 (>> 2.36)`` must accept ``2.36-9``)."""
    return version if "-" in version.split(":", 1)[-1] else f"{version}-0"


class _Pool:
    """One libsolv pool of Debian candidates (RPM comparison rules: see the module doc)."""

    def __init__(self, packages: list[DebPackage]) -> None:
        import solv

        self._solv = solv
        self.pool = solv.Pool()
        self.pool.setarch()
        self.packages = packages

    def _dep(self, d: Dep) -> Any:
        solv, pool = self._solv, self.pool
        if not d.op:
            return pool.Dep(d.name)
        evr = _evr(d.version)
        flags = {"=": solv.REL_EQ, ">": solv.REL_GT, "<": solv.REL_LT,
                 ">=": solv.REL_GT | solv.REL_EQ, "<=": solv.REL_LT | solv.REL_EQ}[d.op]
        return pool.Dep(d.name).Rel(flags, pool.Dep(evr))

    def _clause(self, alts: list[Dep]) -> Any:
        dep = self._dep(alts[0])
        for alt in alts[1:]:
            dep = dep.Rel(self._solv.REL_OR, self._dep(alt))
        return dep

    def _fill(self, repo: Any, packages: Iterable[DebPackage]) -> dict[int, str]:
        solv = self._solv
        ids = {}
        for p in packages:
            s = repo.add_solvable()
            s.name, s.evr, s.arch = p.name, _evr(p.version), "noarch"
            s.add_deparray(solv.SOLVABLE_PROVIDES, self._dep(Dep(p.name, "=", p.version)))
            for prov in p.provides:
                s.add_deparray(solv.SOLVABLE_PROVIDES, self._dep(prov))
            for clause in p.depends:
                s.add_deparray(solv.SOLVABLE_REQUIRES, self._clause(clause))
            for c in p.conflicts:
                if c.name != p.name:
                    s.add_deparray(solv.SOLVABLE_CONFLICTS, self._dep(c))
            ids[s.id] = p.name
        repo.internalize()
        return ids

    def solve(self, names: list[str], installed: set[str], what: str,
              weak: bool = False) -> set[str]:
        """Install ``names`` over ``installed``; returns the names added. ``weak``: a
        name that cannot be installed is left out instead of failing (the base system
        is what can be had of it)."""
        solv = self._solv
        avail = self.pool.add_repo("debian")
        ids = self._fill(avail, (p for p in self.packages if p.name not in installed))
        inst = self.pool.add_repo("base")
        self._fill(inst, (p for p in self.packages if p.name in installed))
        self.pool.installed = inst
        self.pool.createwhatprovides()
        jobs = []
        for n in names:
            if n in installed:
                continue
            sel = self.pool.select(n, solv.Selection.SELECTION_NAME)
            jobs += sel.jobs(solv.Job.SOLVER_INSTALL | (solv.Job.SOLVER_WEAK if weak else 0))
        solver = self.pool.Solver()
        problems = solver.solve(jobs)
        if problems:
            reasons = []
            for p in problems:
                for rule in p.findallproblemrules():
                    line = rule.info().problemstr().replace(".noarch", "")
                    if line not in reasons:
                        reasons.append(line)
            raise DebianIndexError(f"cannot {what}: " + "; ".join(reasons[:6]))
        return {ids[s.id] for s in solver.transaction().newsolvables() if s.id in ids}
